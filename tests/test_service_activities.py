"""The service activities with injected faults, run by a real worker against the dev server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
from temporalio import activity
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import ActivityEnvironment

from sagakit import Fault, FaultPlan, UnknownStepError, running_worker
from sagakit.course.services import (
    ALL_STEPS,
    BankActivities,
    BreakfastActivities,
    TripActivities,
    TripRequest,
    ViolationKind,
    World,
    all_service_activities,
)
from tests.workflows import RunStepsWorkflow, Steps

T = TypeVar("T")


async def run_steps(
    client: Client, task_queue: str, activities: list[Any], steps: Steps
) -> WorkflowHandle[Any, Any]:
    """Run the workflow to its end with a worker for ``activities``; return its handle."""
    async with running_worker(
        client, task_queue=task_queue, workflows=[RunStepsWorkflow], activities=activities
    ):
        handle = await client.start_workflow(
            RunStepsWorkflow.run, steps, id=f"steps-{task_queue}", task_queue=task_queue
        )
        with contextlib.suppress(WorkflowFailureError):
            await handle.result()  # the caller looks at a failure through the handle
    return handle


async def started_attempts(handle: WorkflowHandle[Any, Any]) -> list[HistoryEvent]:
    history = await handle.fetch_history()
    return [e for e in history.events if e.HasField("activity_task_started_event_attributes")]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "world.db"


async def test_fail_after_without_a_key_books_the_hotel_twice(
    client: Client, task_queue: str, db: Path
) -> None:
    trips = TripActivities(db, FaultPlan.of({"book_hotel": [Fault.FAIL_AFTER]}))
    steps = Steps(("book_hotel",), {"trip_id": "t1", "customer": "ada"})
    handle = await run_steps(client, task_queue, trips.all(), steps)

    assert (await handle.result())[0]["trip_id"] == "t1"  # the workflow saw success...
    world = World(db)
    assert world.ledger.count("book_hotel", "t1") == 2  # ...but the hotel was booked twice
    report = world.check()
    assert ViolationKind.DOUBLE_BOOKING in report.kinds
    assert "trip t1: hotel booked 2 times (double booking)" in [
        v.message for v in report.violations
    ]


async def test_fail_after_with_a_key_books_the_hotel_once(
    client: Client, task_queue: str, db: Path
) -> None:
    trips = TripActivities(db, FaultPlan.of({"book_hotel": [Fault.FAIL_AFTER]}))
    steps = Steps(("book_hotel",), {"trip_id": "t1", "idempotency_key": "t1-hotel"})
    handle = await run_steps(client, task_queue, trips.all(), steps)

    [attempt] = await started_attempts(handle)
    assert attempt.activity_task_started_event_attributes.attempt == 2  # it was retried
    world = World(db)
    assert world.ledger.count("book_hotel", "t1") == 1
    assert world.trips.active("t1")["hotel"] == 1
    assert ViolationKind.DOUBLE_BOOKING not in world.check().kinds


async def test_fail_permanent_reaches_the_workflow_without_retry_or_effect(
    client: Client, task_queue: str, db: Path
) -> None:
    trips = TripActivities(db, FaultPlan.of({"book_flight": [Fault.FAIL_PERMANENT]}))
    steps = Steps(("book_hotel", "book_flight", "book_excursion"), {"trip_id": "t1"})
    handle = await run_steps(client, task_queue, trips.all(), steps)

    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    activity_error = caught.value.cause
    assert isinstance(activity_error, ActivityError)
    assert activity_error.activity_type == "book_flight"
    cause = activity_error.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InjectedPermanentFault"
    assert cause.non_retryable
    attempts = await started_attempts(handle)
    assert [e.activity_task_started_event_attributes.attempt for e in attempts] == [1, 1]
    assert World(db).trips.active("t1") == {"hotel": 1, "flight": 0, "excursion": 0}


async def test_a_hung_attempt_times_out_is_retried_and_has_no_effect(
    client: Client, task_queue: str, db: Path
) -> None:
    trips = TripActivities(
        db, FaultPlan.of({"book_hotel": [Fault.HANG]}), hang_for=timedelta(seconds=3)
    )
    steps = Steps(("book_hotel",), {"trip_id": "t1"}, timeout_ms=1_000)
    handle = await run_steps(client, task_queue, trips.all(), steps)
    # The worker has shut down, so the hung attempt's thread has finished by now.

    await handle.result()
    [started] = await started_attempts(handle)
    attributes = started.activity_task_started_event_attributes
    assert attributes.attempt == 2
    assert attributes.last_failure.HasField("timeout_failure_info")
    assert World(db).ledger.count("book_hotel") == 1


def test_a_hang_that_runs_its_full_course_still_does_nothing(db: Path) -> None:
    trips = TripActivities(
        db, FaultPlan.of({"book_hotel": [Fault.HANG]}), hang_for=timedelta(seconds=0.2)
    )
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_type="book_hotel", attempt=1)
    with pytest.raises(ApplicationError, match="without doing anything") as caught:
        env.run(trips.book_hotel, TripRequest("t1"))
    assert caught.value.type == "InjectedHang"
    assert not caught.value.non_retryable
    assert World(db).ledger.count("book_hotel") == 0


class _TimedTrips(TripActivities):
    """Trip activities that note how each attempt ended, and when."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ended: dict[int, tuple[float, str]] = {}
        self.first_ended = threading.Event()

    def _act(self, key: str, done: str, effect: Callable[[], T]) -> T:
        attempt, started = activity.info().attempt, time.monotonic()
        outcome = "returned"
        try:
            return super()._act(key, done, effect)
        except BaseException as err:
            outcome = type(err).__name__
            raise
        finally:
            self.ended[attempt] = (time.monotonic() - started, outcome)
            if attempt == 1:
                self.first_ended.set()


async def test_a_hung_attempt_that_heartbeats_learns_it_timed_out_and_stops(
    client: Client, task_queue: str, db: Path
) -> None:
    """With a heartbeat timeout, the heartbeat's answer cancels the hung attempt's thread."""
    trips = _TimedTrips(
        db, FaultPlan.of({"book_hotel": [Fault.HANG]}), hang_for=timedelta(seconds=8)
    )
    steps = Steps(("book_hotel",), {"trip_id": "t1"}, timeout_ms=1_000, heartbeat_ms=1_000)
    async with running_worker(
        client, task_queue=task_queue, workflows=[RunStepsWorkflow], activities=trips.all()
    ):
        handle = await client.start_workflow(
            RunStepsWorkflow.run, steps, id=f"steps-{task_queue}", task_queue=task_queue
        )
        await handle.result()
        # Still inside the worker: a shutdown would end the wait as well.
        assert await asyncio.to_thread(trips.first_ended.wait, 5), "still hanging"
    took, outcome = trips.ended[1]
    assert outcome == "CancelledError"
    assert 1 <= took < 4, took  # well before its 8 s were up
    assert World(db).ledger.count("book_hotel") == 1  # attempt 2 booked


def test_a_late_attempt_does_the_work_after_its_wait(db: Path) -> None:
    trips = TripActivities(
        db, FaultPlan.of({"book_hotel": [Fault.LATE]}), hang_for=timedelta(seconds=0.3)
    )
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_type="book_hotel", attempt=1)
    started = time.monotonic()
    booking = env.run(trips.book_hotel, TripRequest("t1", idempotency_key="t1"))
    assert time.monotonic() - started >= 0.3
    assert booking.status == "active"
    assert World(db).ledger.count("book_hotel") == 1


def test_a_late_attempt_after_its_undo_is_refused_unless_cancel_wins_is_off(db: Path) -> None:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, activity_type="book_hotel", attempt=1)
    late = FaultPlan.of({"book_hotel": [Fault.LATE]})
    request = TripRequest("t1", idempotency_key="t1")
    World(db).trips.cancel_hotel("t1", idempotency_key="t1")  # the undo ran first
    trips = TripActivities(db, late, hang_for=timedelta(seconds=0.1))
    with pytest.raises(ApplicationError, match="cancel wins") as caught:
        env.run(trips.book_hotel, request)
    assert (caught.value.type, caught.value.non_retryable) == ("CancelledBeforeBooking", True)
    assert World(db).trips.active("t1")["hotel"] == 0
    leaky = TripActivities(db, late, hang_for=timedelta(seconds=0.1), cancel_wins=False)
    assert env.run(leaky.book_hotel, request).status == "active"
    assert ViolationKind.PARTIAL_TRIP in World(db).check().kinds


async def test_out_of_milk_is_a_non_retryable_business_error(
    client: Client, task_queue: str, db: Path
) -> None:
    World(db).breakfast.set_stock(milk_ml=100)
    kitchen = BreakfastActivities(db)
    steps = Steps(("get_bowl", "add_cereal", "add_milk"), {"breakfast_id": "b1"})
    handle = await run_steps(client, task_queue, kitchen.all(), steps)

    with pytest.raises(WorkflowFailureError) as caught:
        await handle.result()
    assert isinstance(caught.value.cause, ActivityError)
    cause = caught.value.cause.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "OutOfStock"
    assert cause.non_retryable
    assert "Out of milk for breakfast b1" in cause.message
    report = World(db).check()
    assert [v.message for v in report.violations] == [
        "breakfast b1: bowl and cereal left out, but no milk (not all-or-nothing)"
    ]


async def test_fail_after_on_a_withdrawal_without_a_key_charges_twice(
    client: Client, task_queue: str, db: Path
) -> None:
    bank = BankActivities(db, FaultPlan.of({"withdraw": [Fault.FAIL_AFTER]}))
    payment = {"account": "alice", "amount": 100, "reference": "tx1"}
    handle = await run_steps(client, task_queue, bank.all(), Steps(("withdraw",), payment))
    await handle.result()
    await run_steps(
        client, f"{task_queue}-2", bank.all(), Steps(("deposit",), {**payment, "account": "bob"})
    )

    messages = [v.message for v in World(db).check().violations]
    assert messages == [
        "account alice: charged 2 times for 'tx1' (double charge)",
        "money not conserved: 1000 in, 900 now (100 missing)",
    ]


async def test_random_faults_with_keys_leave_a_consistent_trip(
    client: Client, task_queue: str, db: Path
) -> None:
    book = ("book_hotel", "book_flight", "book_excursion")
    plan = FaultPlan.random(seed=11, rate=0.5, steps=book)
    # Without keys this plan would double-book: some first attempt fails after its effect.
    assert any(plan.decide(step, 1, "t7") is Fault.FAIL_AFTER for step in book)
    steps = Steps(
        book,
        {"trip_id": "t7", "customer": "ada", "idempotency_key": "trip-t7"},
        maximum_attempts=20,
    )
    handle = await run_steps(client, task_queue, all_service_activities(db, plan), steps)
    await handle.result()
    retried = [
        e.activity_task_started_event_attributes.attempt for e in await started_attempts(handle)
    ]
    assert max(retried) > 1
    report = World(db).check()
    assert report.ok, str(report)
    assert World(db).trips.active("t7") == {"hotel": 1, "flight": 1, "excursion": 1}


def test_activity_objects_list_their_steps_and_check_the_plan(db: Path) -> None:
    names = [fn.__name__ for fn in TripActivities(db).all()]
    assert names == list(TripActivities.STEPS)
    assert len(all_service_activities(db)) == len(ALL_STEPS) == len(set(ALL_STEPS))
    # One plan can name steps of several services...
    shared = FaultPlan.of({"book_hotel": [Fault.FAIL_AFTER], "withdraw": [Fault.FAIL_BEFORE]})
    assert BankActivities(db, shared).faults == shared
    # ...but a misspelt step is refused before any workflow runs.
    with pytest.raises(UnknownStepError, match="Did you mean 'add_milk'"):
        BreakfastActivities(db, FaultPlan.of({"add_milkk": [Fault.HANG]}))
