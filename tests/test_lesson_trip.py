"""The trip saga of lesson 09 on the real server: all or nothing, whatever fails."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError

from sagakit import Fault, FaultPlan, TripActivities, check_world, running_worker
from sagakit.lessons.trip import TripSagaInput, TripSagaWorkflow


async def _run(
    client: Client, task_queue: str, db: Path, plan: FaultPlan, trip: TripSagaInput
) -> str:
    activities = TripActivities(db, plan)
    async with running_worker(
        client, task_queue=task_queue, workflows=[TripSagaWorkflow], activities=activities.all()
    ):
        return await client.execute_workflow(
            TripSagaWorkflow.run, trip, id=f"trip-{task_queue}", task_queue=task_queue
        )


async def test_happy_path_books_all_three(client: Client, task_queue: str, tmp_path: Path) -> None:
    db = tmp_path / "world.db"
    result = await _run(client, task_queue, db, FaultPlan(), TripSagaInput("t1"))
    assert result == "trip t1 booked for ada"
    report = check_world(db)
    assert report.ok, report
    assert {b.kind for b in TripActivities(db).world.trips.bookings("t1")} == {
        "hotel",
        "flight",
        "excursion",
    }


@pytest.mark.parametrize("parallel", [False, True])
async def test_permanent_failure_undoes_everything(
    client: Client, task_queue: str, tmp_path: Path, parallel: bool
) -> None:
    db = tmp_path / "world.db"
    plan = FaultPlan.of({"book_excursion": [Fault.FAIL_PERMANENT]})
    with pytest.raises(WorkflowFailureError) as info:
        await _run(
            client, task_queue, db, plan, TripSagaInput("t2", parallel_compensation=parallel)
        )
    cause = info.value.cause
    assert isinstance(cause, ActivityError)
    assert isinstance(cause.cause, ApplicationError)
    assert cause.cause.type == "InjectedPermanentFault"
    assert check_world(db).ok
    bookings = TripActivities(db).world.trips.bookings("t2")
    assert {(b.kind, b.status) for b in bookings} == {
        ("hotel", "cancelled"),
        ("flight", "cancelled"),
    }


async def test_fail_after_effect_is_retried_without_a_double_booking(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "world.db"
    plan = FaultPlan.of({"book_flight": [Fault.FAIL_AFTER, Fault.FAIL_AFTER]})
    assert await _run(client, task_queue, db, plan, TripSagaInput("t3")) == "trip t3 booked for ada"
    assert check_world(db).ok


async def test_without_keys_the_same_fault_double_books(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "world.db"
    plan = FaultPlan.of({"book_flight": [Fault.FAIL_AFTER]})
    await _run(client, task_queue, db, plan, TripSagaInput("t4", idempotency_keys=False))
    report = check_world(db)
    assert not report.ok
    assert "flight" in str(report)
