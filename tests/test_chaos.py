"""Chaos: generated fault schedules against the real trip saga on the real dev server.

Each example is a batch of trips, every trip with its own id and its own
schedule of faults (per attempt of each booking step, and failures of each
undo), run concurrently on one worker. After each batch the world must be
consistent (every trip all-or-nothing, nothing booked twice, no effect repeated
under one key) and every trip must end the way its schedule predicts.

The quick, derandomized profile below runs in `make test`. The long profile is
``python tools/chaos.py --schedules 300``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from temporalio.client import Client, WorkflowFailureError

from sagakit import ConfigurationError, Fault, running_worker
from sagakit.course.chaos import (
    ChaosSettings,
    SagaOutcome,
    TripSchedule,
    run_schedules,
    schedule_strategy,
)
from sagakit.course.lessons.trip import TripSagaInput, TripSagaWorkflow
from sagakit.course.logs import quiet_expected_failures
from sagakit.course.services.invariants import ViolationKind, check_world
from sagakit.course.services.trip import Booking, TripKind, TripService
from sagakit.course.services.world import World
from tests.process_fault_worker import PausingTripActivities

BATCH = 24
"""Trips run at once in one example."""

FAST = ChaosSettings(step_timeout_s=1.0, hang_s=1.5)
"""Short timeouts for `make test`; a slow attempt that times out anyway is told apart."""

QUICK = settings(
    # Hypothesis tries the simplest example first (fault-free trips), then a random batch.
    max_examples=2,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each failing trip is reported alone
    suppress_health_check=list(HealthCheck),
)

OK, BEFORE, AFTER, HANG, PERMANENT, LATE = (
    Fault.OK,
    Fault.FAIL_BEFORE,
    Fault.FAIL_AFTER,
    Fault.HANG,
    Fault.FAIL_PERMANENT,
    Fault.LATE,
)


@pytest.mark.slow
@QUICK
@given(batch=st.lists(schedule_strategy(max_undo_failures=1), min_size=BATCH, max_size=BATCH))
async def test_every_schedule_leaves_the_world_consistent(
    client: Client, tmp_path_factory: pytest.TempPathFactory, batch: list[TripSchedule]
) -> None:
    db = tmp_path_factory.mktemp("chaos") / "world.db"
    with quiet_expected_failures():
        report = await run_schedules(client, batch, db, settings=FAST)
    assert report.ran == BATCH
    assert report.inconsistent == 0, report
    assert report.unexpected == 0, report
    assert SagaOutcome.ERROR not in report.outcomes, report


async def test_the_same_schedules_without_idempotency_keys_are_caught(
    client: Client, tmp_path: Path
) -> None:
    """The property can fail: lost replies without keys double-book, and the run says so."""
    schedules = [
        TripSchedule(bookings=((AFTER,), (), ())),  # booked twice, then all booked
        TripSchedule(bookings=((), (AFTER,), (PERMANENT,))),  # flight twice, then undone
        TripSchedule(),  # nothing goes wrong
    ]
    with quiet_expected_failures():
        report = await run_schedules(
            client, schedules, tmp_path / "world.db", settings=ChaosSettings(idempotency_keys=False)
        )
    first, second, third = report.verdicts
    assert report.inconsistent == 1, report
    assert {v.kind for v in first.violations} == {ViolationKind.DOUBLE_BOOKING}
    assert first.ledger["book_hotel"] == 2
    assert second.consistent, "a cancel undoes every copy of a double booking"
    assert second.ledger["book_flight"] == 2
    assert third.consistent
    assert third.as_expected
    assert "booked 2 times" in str(report)


async def test_a_slow_first_attempt_the_history_cannot_show_is_excused(
    client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A correct trip that met one unplanned timeout is excused, not counted as unexpected.

    The hotel's first attempt (planned OK) is slow, as on a loaded machine: it times
    out, and its booking lands late. Attempts 2 and 3 fail as planned, so the step gives
    up and the saga cancels the hotel. The History keeps only attempt 3, which started
    after attempt 2's failure: attempt 1's timeout is not in it. The activities saw it.
    """
    slow_once = threading.Event()
    book = TripService.book

    def slow_book(self: TripService, kind: TripKind, *args: Any, **kwargs: Any) -> Booking:
        if kind == "hotel" and not slow_once.is_set():
            slow_once.set()
            time.sleep(1.3)  # longer than the step's 1 s timeout
        return book(self, kind, *args, **kwargs)

    monkeypatch.setattr(TripService, "book", slow_book)
    schedule = TripSchedule(bookings=((OK, BEFORE, BEFORE), (), ()))
    settings = ChaosSettings(step_timeout_s=1.0, hang_s=1.5, retry_interval_s=0.5)
    with quiet_expected_failures():
        report = await run_schedules(client, [schedule], tmp_path / "world.db", settings=settings)
    (trip,) = report.verdicts
    assert trip.consistent, report
    assert (trip.expected, trip.outcome) == (SagaOutcome.BOOKED, SagaOutcome.COMPENSATED)
    assert trip.ledger == {"book_hotel": 1, "cancel_hotel": 1}
    assert trip.unplanned_timeouts == ("book_hotel#1",)
    assert (report.unexpected, report.excused) == (0, 1), report


def test_the_model_predicts_outcomes_and_ledgers() -> None:
    assert TripSchedule().expected_outcome(3) is SagaOutcome.BOOKED
    assert TripSchedule().expected_ledger(3) == Counter(
        {"book_hotel": 1, "book_flight": 1, "book_excursion": 1}
    )
    # Attempts 1-3 fail and there are only 3: the flight step gives up after its effect.
    exhausted = TripSchedule(bookings=((), (BEFORE, AFTER, HANG), ()))
    assert exhausted.expected_outcome(3) is SagaOutcome.COMPENSATED
    assert exhausted.expected_ledger(3) == Counter(
        {"book_hotel": 1, "cancel_hotel": 1, "book_flight": 1, "cancel_flight": 1}
    )
    assert exhausted.expected_outcome(4) is SagaOutcome.BOOKED  # a fourth attempt gets through
    permanent = TripSchedule(bookings=((PERMANENT, OK), (), ()))
    assert permanent.expected_outcome(4) is SagaOutcome.COMPENSATED
    assert permanent.expected_ledger(4) == Counter()
    assert permanent.describe() == "book_hotel FAIL_PERMANENT,OK"
    rules = TripSchedule(undo_failures=((), (AFTER, BEFORE), ())).rules("t9")
    assert [(r.step, r.attempt, r.fault, r.key) for r in rules] == [
        ("cancel_flight", 1, AFTER, "t9"),
        ("cancel_flight", 2, BEFORE, "t9"),
    ]


def test_the_model_allows_a_zombie_to_land_before_or_after_its_undo() -> None:
    # The excursion's first attempt times out and lands late; the second fails for good.
    zombie = TripSchedule(bookings=((), (), (LATE, PERMANENT)))
    assert zombie.expected_outcome(3) is SagaOutcome.COMPENSATED
    assert zombie.late_attempts("book_excursion", 3) == 1
    landed_first, undone_first = zombie.expected_ledgers(3)
    trip = Counter({"book_hotel": 1, "cancel_hotel": 1, "book_flight": 1, "cancel_flight": 1})
    assert landed_first == trip + Counter({"book_excursion": 1, "cancel_excursion": 1})
    assert undone_first == trip + Counter({"book_excursion_refused": 1})
    assert zombie.describe() == "book_excursion LATE,FAIL_PERMANENT"
    # A late attempt of a step that then succeeds is answered from its key: one booking.
    retried = TripSchedule(bookings=((LATE, OK), (), ()))
    assert retried.expected_outcome(3) is SagaOutcome.BOOKED
    assert retried.expected_ledgers(3) == [
        Counter({"book_hotel": 1, "book_flight": 1, "book_excursion": 1})
    ]


@pytest.mark.parametrize("cancel_wins", [True, False])
async def test_a_zombie_schedule_is_caught_without_cancel_wins(
    client: Client, tmp_path: Path, cancel_wins: bool
) -> None:
    """The property can fail: without cancel wins, the late excursion is left booked."""
    schedules = [TripSchedule(bookings=((), (), (LATE, PERMANENT)))]
    settings = ChaosSettings(step_timeout_s=1.0, hang_s=3.0, cancel_wins=cancel_wins)
    with quiet_expected_failures():
        report = await run_schedules(client, schedules, tmp_path / "world.db", settings=settings)
    (trip,) = report.verdicts
    assert trip.outcome is SagaOutcome.COMPENSATED
    if cancel_wins:
        assert trip.consistent, report
        assert trip.ledger["book_excursion_refused"] == 1
        assert trip.as_expected, report
    else:
        assert {v.kind for v in trip.violations} == {ViolationKind.PARTIAL_TRIP}
        assert trip.ledger["book_excursion"] == 1
        assert report.inconsistent == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bookings": ((), ())}, "one tuple of faults per step"),
        ({"undo_failures": ((PERMANENT,), (), ())}, "may only fail with FAIL_BEFORE, FAIL_AFTER"),
        ({"undo_failures": ((BEFORE,) * 10, (), ())}, "use at most 9 failures"),
    ],
)
def test_impossible_schedules_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        TripSchedule(**kwargs)  # type: ignore[arg-type]


def test_impossible_settings_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="must be longer than step_timeout_s"):
        ChaosSettings(step_timeout_s=2, hang_s=1)


async def test_an_attempt_that_lands_after_its_undo_is_not_left_booked(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """A zombie attempt: the excursion times out, the saga undoes it, then the booking lands.

    The undo found nothing, but the service remembers it under the trip's key (a tombstone),
    so the late booking is refused: cancel wins.
    """
    db = tmp_path / "world.db"
    trip = "zombie-1"
    reached, release = threading.Event(), threading.Event()
    activities = PausingTripActivities(
        db, f"{trip}:book_excursion:pause-before", release=release, reached=lambda _: reached.set()
    )
    saga = replace(TripSagaInput(trip), max_attempts=1, step_timeout_s=1.0)
    with quiet_expected_failures():
        async with running_worker(
            client, task_queue=task_queue, workflows=[TripSagaWorkflow], activities=activities.all()
        ):
            handle = await client.start_workflow(
                TripSagaWorkflow.run, saga, id=f"{trip}-{task_queue}", task_queue=task_queue
            )
            assert await asyncio.to_thread(reached.wait, 30)
            with pytest.raises(WorkflowFailureError):  # timed out, undone, failed
                await asyncio.wait_for(handle.result(), 60)
            release.set()  # ...and now the slow attempt books the excursion
            await asyncio.sleep(0.5)
    world = World(db)
    assert world.ledger.count("cancel_excursion", trip) == 0  # its undo found nothing
    assert world.trips.cancelled_under("excursion", trip)  # ...and left a tombstone
    assert world.trips.active(trip) == {"hotel": 0, "flight": 0, "excursion": 0}, check_world(db)
    (refusal,) = world.ledger.entries(operation="book_excursion_refused", entity=trip)
    assert (refusal.amount, refusal.idempotency_key) == (0, trip)
    assert world.ledger.count("book_excursion", trip) == 0
    assert check_world(db).ok


def test_settings_default_to_the_fast_profile() -> None:
    opts = ChaosSettings()
    assert opts.hang_s > opts.step_timeout_s
    assert timedelta(seconds=opts.hang_s) < timedelta(seconds=5)
