"""The trip saga of lesson 09 on the real server: all or nothing, whatever fails."""

from __future__ import annotations

import contextlib
import json
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError

from sagakit import ConfigurationError, Fault, FaultPlan, running_worker
from sagakit.course.lessons.trip import (
    FAULT_TOUR,
    TRIP_STEPS,
    TripSagaInput,
    TripSagaWorkflow,
    check_safe_without_keys,
    check_undo_order,
)
from sagakit.course.lessons.trip_worker import (
    StepNotRunning,
    fault_plan_from_json,
    wait_until_step_running,
)
from sagakit.course.processes import start_worker_process
from sagakit.course.services import TripActivities, World, check_world
from sagakit.course.services.invariants import ViolationKind
from sagakit.history import activity_spans


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


async def test_a_first_run_keys_by_trip_and_its_steps_have_a_heartbeat_timeout(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    await _run(client, task_queue, tmp_path / "world.db", FaultPlan(), TripSagaInput("t1"))
    history = await client.get_workflow_handle(f"trip-{task_queue}").fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert [a.activity_type.name for a in scheduled] == list(TRIP_STEPS)
    for attributes in scheduled:
        assert json.loads(attributes.input.payloads[0].data)["idempotency_key"] == "t1"
        assert attributes.heartbeat_timeout.ToTimedelta() == timedelta(seconds=2)
    assert [
        e.idempotency_key for e in World(tmp_path / "world.db").ledger.entries(entity="t1")
    ] == ["t1"] * 3


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


async def test_trip_steps_are_the_forward_steps_in_order(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "world.db"
    await _run(client, task_queue, db, FaultPlan(), TripSagaInput("t5"))
    history = await client.get_workflow_handle(f"trip-{task_queue}").fetch_history()
    assert tuple(span.activity for span in activity_spans(history)) == TRIP_STEPS


def test_fault_plan_from_json_reads_steps_and_faults() -> None:
    plan = fault_plan_from_json('{"book_flight": ["hang", "fail_after"]}')
    assert plan.decide("book_flight", 1) is Fault.HANG
    assert plan.decide("book_flight", 2) is Fault.FAIL_AFTER
    assert plan.decide("book_flight", 3) is Fault.OK


@pytest.mark.parametrize("text", ["{nope", '["hang"]', '{"book_flight": "hang"}'])
def test_fault_plan_from_json_rejects_other_shapes(text: str) -> None:
    with pytest.raises(ConfigurationError, match="book_flight"):
        fault_plan_from_json(text)


async def test_waiting_for_a_step_of_a_finished_workflow_fails_clearly(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    await _run(client, task_queue, tmp_path / "world.db", FaultPlan(), TripSagaInput("t6"))
    handle = client.get_workflow_handle(f"trip-{task_queue}")
    with pytest.raises(StepNotRunning, match="ended"):
        await wait_until_step_running(handle, "book_flight")


async def test_a_worker_killed_mid_step_is_replaced_and_the_trip_completes(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "world.db"
    World(db)
    worker_args = (
        "sagakit.course.lessons.trip_worker",
        task_queue,
        str(db),
        '{"book_flight": ["hang"]}',
    )
    first = await start_worker_process(client, *worker_args, task_queue=task_queue)
    with first:
        handle = await client.start_workflow(
            TripSagaWorkflow.run,
            TripSagaInput("t7"),
            id=f"trip-{task_queue}",
            task_queue=task_queue,
        )
        assert await wait_until_step_running(handle, "book_flight") == 1
        assert first.kill() == -signal.SIGKILL
    mid_saga = check_world(db)
    assert mid_saga.kinds == {ViolationKind.PARTIAL_TRIP}  # the hotel only: a saga in flight
    with await start_worker_process(client, *worker_args, task_queue=task_queue) as second:
        assert await handle.result() == "trip t7 booked for ada"
        assert second.terminate() == 0
    assert check_world(db).ok
    spans = activity_spans(await handle.fetch_history())
    flight = next(span for span in spans if span.activity == "book_flight")
    assert flight.attempts == 2
    assert flight.previous_failure is not None
    assert "timeout" in flight.previous_failure.lower()


# The exercise checks of lessons 09 and 09a.

UNDOS_WHEN_FLIGHT_REFUSED = ["cancel_flight", "cancel_hotel"]


class _Runs:
    """A fake of the real run that the checks are given: counts its calls."""

    def __init__(self, undos: list[str], inconsistent: set[Fault]) -> None:
        self.undos = undos
        self.inconsistent = inconsistent
        self.calls = 0

    async def undo_order(self) -> list[str]:
        self.calls += 1
        return self.undos

    async def consistent(self, fault: Fault) -> bool:
        self.calls += 1
        return fault not in self.inconsistent


def _fake() -> _Runs:
    return _Runs(UNDOS_WHEN_FLIGHT_REFUSED, {Fault.FAIL_AFTER})


async def test_undo_order_check_says_not_done_for_the_starter_and_runs_nothing() -> None:
    runs = _fake()
    lines = await check_undo_order(None, runs.undo_order)
    assert len(lines) == 1
    assert lines[0].startswith("○ Not done yet:")
    assert "✓" not in lines[0]
    assert "✗" not in lines[0]
    assert runs.calls == 0


async def test_undo_order_check_accepts_the_solution() -> None:
    lines = await check_undo_order(["cancel_flight", "cancel_hotel"], _fake().undo_order)
    assert len(lines) == 1
    assert lines[0].startswith("✓ cancel_flight → cancel_hotel")


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        (["cancel_hotel", "cancel_flight"], "wrong order"),
        (
            ["cancel_excursion", "cancel_flight", "cancel_hotel"],
            "never registered cancel_excursion",
        ),
        (["cancel_hotel"], "registered *before* book_flight"),
        (["undo_hotel"], "not an undo of the trip saga"),
        ("cancel_hotel", "should be a list"),
    ],
)
async def test_undo_order_check_says_what_is_wrong(answer: list[str] | str, hint: str) -> None:
    lines = await check_undo_order(answer, _fake().undo_order)
    assert all(line.startswith("✗") for line in lines), lines
    assert hint in "\n".join(lines)


async def test_the_real_saga_undoes_flight_then_hotel_when_the_flight_is_refused(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    async def undo_order() -> list[str]:
        plan = FaultPlan.of({"book_flight": [Fault.FAIL_PERMANENT]})
        with pytest.raises(WorkflowFailureError):
            await _run(client, task_queue, tmp_path / "world.db", plan, TripSagaInput("t8"))
        history = await client.get_workflow_handle(f"trip-{task_queue}").fetch_history()
        return [s.activity for s in activity_spans(history) if s.is_compensation]

    lines = await check_undo_order(UNDOS_WHEN_FLIGHT_REFUSED, undo_order)
    assert lines[0].startswith("✓"), lines


async def test_safe_without_keys_check_says_not_done_for_the_starter_and_runs_nothing() -> None:
    runs = _fake()
    lines = await check_safe_without_keys(None, runs.consistent)
    assert len(lines) == 1
    assert lines[0].startswith("○ Not done yet:")
    assert "✓" not in lines[0]
    assert "✗" not in lines[0]
    assert runs.calls == 0


async def test_safe_without_keys_check_accepts_the_solution() -> None:
    runs = _fake()
    solution = {Fault.FAIL_BEFORE, Fault.HANG, Fault.FAIL_PERMANENT}
    lines = await check_safe_without_keys(solution, runs.consistent)
    assert runs.calls == len(FAULT_TOUR) == 4
    assert [line[0] for line in lines] == ["✓"] * 5
    assert lines[-1].startswith("✓ All right")


async def test_safe_without_keys_check_marks_each_wrong_answer() -> None:
    lines = await check_safe_without_keys({Fault.FAIL_BEFORE, Fault.FAIL_AFTER}, _fake().consistent)
    marks = {line.split()[1]: line[0] for line in lines[:-1]}
    assert marks == {"FAIL_BEFORE": "✓", "FAIL_AFTER": "✗", "HANG": "✗", "FAIL_PERMANENT": "✗"}
    assert "(you said safe)" in lines[1]
    assert lines[-1].startswith("✗ 3 answer(s) to rethink")


@pytest.mark.parametrize(
    ("answer", "hint"),
    [
        ([Fault.FAIL_BEFORE], "should be a set of Fault members"),
        ({"fail_before"}, "should be a set of Fault members"),
        ({Fault.LATE}, "LATE: not one of the four faults"),
    ],
)
async def test_safe_without_keys_check_refuses_other_shapes_without_running(
    answer: object, hint: str
) -> None:
    runs = _fake()
    lines = await check_safe_without_keys(answer, runs.consistent)  # type: ignore[arg-type]
    assert len(lines) == 1
    assert lines[0].startswith("✗")
    assert hint in lines[0]
    assert runs.calls == 0


async def test_without_keys_exactly_the_fault_with_an_effect_breaks_the_world(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    async def consistent(fault: Fault) -> bool:
        db = tmp_path / f"{fault.value}.db"
        queue = f"{task_queue}-{fault.value}"
        plan = FaultPlan.of({"book_flight": [fault]})
        with contextlib.suppress(WorkflowFailureError):  # FAIL_PERMANENT compensates
            await _run(client, queue, db, plan, TripSagaInput(fault.value, idempotency_keys=False))
        return check_world(db).ok

    solution = {f for f in FAULT_TOUR if not f.has_effect}
    lines = await check_safe_without_keys(solution, consistent)
    assert lines[-1].startswith("✓ All right"), lines
