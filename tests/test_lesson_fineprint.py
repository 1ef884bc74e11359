"""Lesson 12: what stops compensations (timeouts, terminate, reset) and what runs them."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError, CancelledError, TimeoutError

from sagakit import Fault, FaultPlan, SagaProgress, SagaState, running_worker
from sagakit.course.lessons.fineprint import (
    NOT_CONFIRMED,
    ConfirmedTripInput,
    ConfirmedTripWorkflow,
    HandRolledTripWorkflow,
    NoResetPoint,
    reset_point_after,
    reset_workflow,
    wait_for_stage,
)
from sagakit.course.lessons.trip import TripSagaInput, TripSagaWorkflow
from sagakit.course.logs import quiet_expected_failures
from sagakit.course.services import TripActivities, check_world
from sagakit.testing import time_skipping_environment

WORKFLOWS = [ConfirmedTripWorkflow, HandRolledTripWorkflow, TripSagaWorkflow]
SLOW_UNDO = FaultPlan.of(
    {"book_excursion": [Fault.FAIL_PERMANENT], "cancel_flight": [Fault.FAIL_BEFORE] * 2}
)


async def test_terminate_leaves_the_trip_half_booked(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    activities = TripActivities(tmp_path / "world.db")
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities.all()
    ):
        handle = await client.start_workflow(
            ConfirmedTripWorkflow.run,
            ConfirmedTripInput("t1"),
            id=f"t1-{task_queue}",
            task_queue=task_queue,
        )
        await wait_for_stage(handle, "waiting for confirmation")
        await handle.terminate("changed my mind")
        assert (await handle.describe()).status is WorkflowExecutionStatus.TERMINATED
    assert activities.world.trips.active("t1") == {"hotel": 1, "flight": 1, "excursion": 0}
    assert not check_world(activities.world).ok


async def test_cancel_runs_the_compensations(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    activities = TripActivities(tmp_path / "world.db")
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities.all()
    ):
        handle = await client.start_workflow(
            ConfirmedTripWorkflow.run,
            ConfirmedTripInput("t2"),
            id=f"t2-{task_queue}",
            task_queue=task_queue,
        )
        await wait_for_stage(handle, "waiting for confirmation")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as info:
            await handle.result()
    assert isinstance(info.value.cause, CancelledError)
    assert check_world(activities.world).ok


@pytest.mark.parametrize(
    ("workflow", "all_undone"), [(ConfirmedTripWorkflow, True), (HandRolledTripWorkflow, False)]
)
async def test_cancel_during_compensation(
    client: Client, task_queue: str, tmp_path: Path, workflow: type, all_undone: bool
) -> None:
    activities = TripActivities(tmp_path / "world.db", SLOW_UNDO)
    with quiet_expected_failures():
        async with running_worker(
            client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities.all()
        ):
            handle = await client.start_workflow(
                workflow.run,  # type: ignore[attr-defined]
                ConfirmedTripInput("t3"),
                id=f"t3-{task_queue}",
                task_queue=task_queue,
            )
            if workflow is ConfirmedTripWorkflow:
                await wait_for_stage(handle, "waiting for confirmation")
                await handle.signal(ConfirmedTripWorkflow.confirm)
                async with asyncio.timeout(10):
                    while True:
                        progress = await handle.query("saga_progress", result_type=SagaProgress)
                        if progress.state is SagaState.COMPENSATING:
                            break
                        await asyncio.sleep(0.05)
            else:
                await wait_for_stage(handle, "compensating")
            await handle.cancel()
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    assert (await handle.describe()).status is WorkflowExecutionStatus.CANCELED
    assert check_world(activities.world).ok is all_undone


async def test_reset_after_compensation_books_into_a_cancelled_trip(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "world.db"
    failing = TripActivities(db, FaultPlan.of({"book_excursion": [Fault.FAIL_PERMANENT]}))
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=failing.all()
    ):
        handle = await client.start_workflow(
            TripSagaWorkflow.run, TripSagaInput("t4"), id=f"t4-{task_queue}", task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    assert check_world(db).ok
    history = await handle.fetch_history()
    with pytest.raises(NoResetPoint, match="book_excursion"):
        reset_point_after(history, "book_excursion")
    point = reset_point_after(history, "book_hotel")
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=TripActivities(db).all()
    ):
        new_run = await reset_workflow(client, handle, point, "excursion service fixed")
        assert new_run.run_id != handle.run_id
        assert await new_run.result() == "trip t4 booked for ada"
    # The hotel's booking is kept from the History, but the hotel stays cancelled; the new
    # run is a new saga run, so it books the flight and the excursion with keys of its own.
    assert failing.world.trips.active("t4") == {"hotel": 0, "flight": 1, "excursion": 1}
    assert not check_world(db).ok
    new_key = f"t4@{new_run.run_id}"
    booked = failing.world.ledger.entries(entity="t4")
    assert [(e.operation, e.idempotency_key) for e in booked if e.operation.startswith("book")] == [
        ("book_hotel", "t4"),
        ("book_flight", "t4"),
        ("book_flight", new_key),
        ("book_excursion", new_key),
    ]
    assert failing.world.trips.cancelled_under("excursion", "t4")  # the first run's tombstone


async def test_time_skipping_run_timeout_vs_a_timer_in_the_workflow(tmp_path: Path) -> None:
    activities = TripActivities(tmp_path / "world.db")
    async with (
        time_skipping_environment() as env,
        running_worker(
            env.client, task_queue="fineprint", workflows=WORKFLOWS, activities=activities.all()
        ),
    ):
        timed_out = await env.client.start_workflow(
            ConfirmedTripWorkflow.run,
            ConfirmedTripInput("t5"),
            id="t5",
            task_queue="fineprint",
            run_timeout=timedelta(hours=1),
        )
        with pytest.raises(WorkflowFailureError) as info:
            await timed_out.result()
        assert isinstance(info.value.cause, TimeoutError)

        undone = await env.client.start_workflow(
            ConfirmedTripWorkflow.run,
            ConfirmedTripInput("t6", confirm_within_s=86_400),
            id="t6",
            task_queue="fineprint",
        )
        with pytest.raises(WorkflowFailureError) as info:
            await undone.result()
        assert isinstance(info.value.cause, ApplicationError)
        assert info.value.cause.type == NOT_CONFIRMED

        confirmed = await env.client.start_workflow(
            ConfirmedTripWorkflow.run,
            ConfirmedTripInput("t7", confirm_within_s=86_400),
            id="t7",
            task_queue="fineprint",
        )
        await wait_for_stage(confirmed, "waiting for confirmation")
        await confirmed.signal(ConfirmedTripWorkflow.confirm)
        assert await confirmed.result() == "trip t7 booked for ada"
    trips = activities.world.trips
    assert trips.active("t5") == {"hotel": 1, "flight": 1, "excursion": 0}
    assert trips.active("t6") == {"hotel": 0, "flight": 0, "excursion": 0}
    assert trips.active("t7") == {"hotel": 1, "flight": 1, "excursion": 1}
