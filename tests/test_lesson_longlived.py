"""Lesson 13: Continue-As-New (and a saga's hand-over), Updates, patching, retry vs reset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.common import RetryPolicy
from temporalio.worker import Replayer

from sagakit import Fault, FaultPlan, running_worker
from sagakit.course.lessons.fineprint import reset_point_after, reset_workflow
from sagakit.course.lessons.longlived import (
    COUNTER_AMOUNTS,
    BatchInput,
    BatchWorkflow,
    ConcertInput,
    ConcertWorkflow,
    Items,
    ParcelV1,
    ParcelV2,
    ParcelV3,
    ReportService,
    ReportWorkflow,
    TourInput,
    TourWorkflow,
    _handled,
    check_counter,
    insure_parcel,
    pack_parcel,
    run_chain,
    ship_parcel,
)
from sagakit.course.logs import quiet_expected_failures
from sagakit.course.services import TripActivities, check_world
from sagakit.history import history_rows
from tests.helpers import ROOT

# The solved edition: its exercise cell holds the solution, its metadata the starter.
NOTEBOOK = ROOT / "notebooks" / "solutions" / "13-long-lived-workflows.ipynb"
V1_HISTORY = ROOT / "tests" / "data" / "longlived_parcel_v1.json"
PARCEL_ACTIVITIES = [pack_parcel, insure_parcel, ship_parcel]
TRIPS = ["a", "b", "c"]


async def test_batch_continues_as_new_and_processes_each_item_once(
    client: Client, task_queue: str
) -> None:
    items = Items()
    async with running_worker(
        client, task_queue=task_queue, workflows=[BatchWorkflow], activities=[items.process_item]
    ):
        handle = await client.start_workflow(
            BatchWorkflow.run,
            BatchInput("b", items=20, max_events=40),
            id=f"batch-{task_queue}",
            task_queue=task_queue,
        )
        assert await handle.result() == sum(i * i for i in range(20))
    assert items.calls == list(range(20))
    chain = await run_chain(client, handle.id, handle.result_run_id or "")
    assert len(chain) >= 3
    assert [run.ended for run in chain[:-1]] == ["WorkflowExecutionContinuedAsNew"] * (
        len(chain) - 1
    )
    assert chain[-1].ended == "WorkflowExecutionCompleted"
    assert all(run.events < 40 + 10 for run in chain)


@pytest.mark.parametrize("carry_undos", [False, True])
async def test_a_tour_is_undone_completely_only_if_the_undos_are_handed_over(
    client: Client, task_queue: str, tmp_path: Path, carry_undos: bool
) -> None:
    plan = FaultPlan.of({"book_excursion": [Fault.FAIL_PERMANENT]}, key="c")
    activities = TripActivities(tmp_path / "world.db", plan)
    with quiet_expected_failures():
        async with running_worker(
            client, task_queue=task_queue, workflows=[TourWorkflow], activities=activities.all()
        ):
            handle = await client.start_workflow(
                TourWorkflow.run,
                TourInput(f"tour-{carry_undos}", TRIPS, carry_undos=carry_undos),
                id=f"tour-{task_queue}",
                task_queue=task_queue,
            )
            with pytest.raises(WorkflowFailureError):
                await handle.result()
    chain = await run_chain(client, handle.id, handle.result_run_id or "")
    assert chain[0].ended == "WorkflowExecutionContinuedAsNew"
    still_booked = sum(sum(activities.world.trips.active(trip).values()) for trip in TRIPS)
    if carry_undos:
        assert still_booked == 0
        assert check_world(activities.world).ok
    else:
        assert activities.world.trips.active("a") == {"hotel": 1, "flight": 1, "excursion": 1}
        assert not check_world(activities.world).ok


async def test_a_refused_update_leaves_no_trace_and_a_signal_always_does(
    client: Client, task_queue: str
) -> None:
    async with running_worker(client, task_queue=task_queue, workflows=[ConcertWorkflow]):
        handle = await client.start_workflow(
            ConcertWorkflow.run,
            ConcertInput("c", seats=10),
            id=f"concert-{task_queue}",
            task_queue=task_queue,
        )
        for seats in (0, 11):
            with pytest.raises(WorkflowUpdateFailedError):
                await handle.execute_update(ConcertWorkflow.reserve, seats)
        assert await handle.execute_update(ConcertWorkflow.reserve, 4) == 6
        await handle.signal(ConcertWorkflow.reserve_later, 12)
        assert await handle.query(ConcertWorkflow.seats_left) == 6
        await handle.signal(ConcertWorkflow.close)
        assert await handle.result() == "4 of 10 seats sold"
    types = [row.type for row in history_rows(await handle.fetch_history())]
    assert types.count("WorkflowExecutionUpdateAccepted") == 1
    assert types.count("WorkflowExecutionUpdateCompleted") == 1
    assert not [t for t in types if "Rejected" in t]
    assert types.count("WorkflowExecutionSignaled") == 2


async def test_an_inserted_step_breaks_replay_and_a_patch_fixes_it(
    client: Client, task_queue: str
) -> None:
    async with running_worker(
        client, task_queue=task_queue, workflows=[ParcelV1], activities=PARCEL_ACTIVITIES
    ):
        old = await client.start_workflow(
            ParcelV1.run, "p1", id=f"parcel-1-{task_queue}", task_queue=task_queue
        )
        assert await old.result() == ["p1 packed", "p1 shipped"]
    v1_history = await old.fetch_history()

    v2 = await Replayer(workflows=[ParcelV2]).replay_workflow(
        v1_history, raise_on_replay_failure=False
    )
    assert type(v2.replay_failure).__name__ == "NondeterminismError"
    v3 = await Replayer(workflows=[ParcelV3]).replay_workflow(
        v1_history, raise_on_replay_failure=False
    )
    assert v3.replay_failure is None

    async with running_worker(
        client, task_queue=task_queue, workflows=[ParcelV3], activities=PARCEL_ACTIVITIES
    ):
        new = await client.start_workflow(
            ParcelV3.run, "p2", id=f"parcel-2-{task_queue}", task_queue=task_queue
        )
        assert await new.result() == ["p2 packed", "p2 insured", "p2 shipped"]
    types = [row.type for row in history_rows(await new.fetch_history())]
    assert "MarkerRecorded" in types


async def test_a_workflow_retry_starts_from_the_top_and_a_reset_does_not(
    client: Client, task_queue: str
) -> None:
    retried = ReportService(outages=1)
    with quiet_expected_failures():
        async with running_worker(
            client,
            task_queue=task_queue,
            workflows=[ReportWorkflow],
            activities=[retried.gather_figures, retried.publish_report],
        ):
            handle = await client.start_workflow(
                ReportWorkflow.run,
                "r1",
                id=f"retry-{task_queue}",
                task_queue=task_queue,
                retry_policy=RetryPolicy(maximum_attempts=2),
            )
            assert (await handle.result()).endswith("(workflow attempt 2)")
    assert retried.calls.count("gather_figures") == 2
    chain = await run_chain(client, handle.id, handle.result_run_id or "")
    assert [(run.attempt, run.ended) for run in chain] == [
        (1, "WorkflowExecutionFailed"),
        (2, "WorkflowExecutionCompleted"),
    ]

    reset = ReportService(outages=1)
    with quiet_expected_failures():
        async with running_worker(
            client,
            task_queue=task_queue,
            workflows=[ReportWorkflow],
            activities=[reset.gather_figures, reset.publish_report],
        ):
            handle = await client.start_workflow(
                ReportWorkflow.run, "r2", id=f"reset-{task_queue}", task_queue=task_queue
            )
            with pytest.raises(WorkflowFailureError):
                await handle.result()
            point = reset_point_after(await handle.fetch_history(), "gather_figures")
            new_run = await reset_workflow(client, handle, point, "test")
            assert (await new_run.result()).endswith("(workflow attempt 1)")
    assert reset.calls == ["gather_figures", "publish_report", "publish_report"]


@pytest.mark.parametrize(
    ("version", "replays"), [(ParcelV1, True), (ParcelV2, False), (ParcelV3, True)]
)
async def test_a_recorded_version_1_history_replays_offline(version: type, replays: bool) -> None:
    history = WorkflowHistory.from_json("longlived-parcel-v1", V1_HISTORY.read_text())
    result = await Replayer(workflows=[version]).replay_workflow(
        history, raise_on_replay_failure=False
    )
    assert (result.replay_failure is None) is replays, result.replay_failure


def _exercise_sources() -> tuple[str, str]:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    (cell,) = [c for c in cells if "exercise" in c.get("metadata", {}).get("tags", [])]
    return "".join(cell["source"]), cell["metadata"]["sagakit"]["starter"]


def _module(tmp_path: Path, source: str) -> Path:
    first, _, body = source.partition("\n")
    assert first.startswith("%%writefile")
    path = tmp_path / "counter.py"
    path.write_text("\n" + body)
    return path


async def test_exercise_solution_passes(client: Client, task_queue: str, tmp_path: Path) -> None:
    solution, _ = _exercise_sources()
    lines = await check_counter(client, _module(tmp_path, solution), task_queue=task_queue)
    assert len(lines) == 1
    assert lines[0].startswith("✓"), lines
    assert str(sum(COUNTER_AMOUNTS)) in lines[0]


async def test_exercise_that_continues_as_new_too_late_is_wrong(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    solution, _ = _exercise_sources()
    late = solution.replace("> counter.max_events", "> 2 * counter.max_events")
    assert late != solution
    lines = await check_counter(client, _module(tmp_path, late), task_queue=task_queue)
    assert len(lines) == 1
    assert lines[0].startswith("✗ One run grew to"), lines
    assert "continue as new as soon as it passes" in lines[0]


async def test_the_check_stops_pacing_signals_for_a_task_that_stays_pending(
    client: Client, task_queue: str
) -> None:
    """No worker polls this queue: the first task stays pending, and the wait gives up."""
    handle = await client.start_workflow("Counter", id=f"{task_queue}-stuck", task_queue=task_queue)
    try:
        assert await _handled(handle, wait=0.3) is False
    finally:
        await handle.terminate()


async def test_exercise_starter_is_not_done_yet(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    _, starter = _exercise_sources()
    assert "# TODO" in starter
    lines = await check_counter(client, _module(tmp_path, starter), task_queue=task_queue)
    assert len(lines) == 1
    assert lines[0].startswith("○ Not done yet:"), lines


async def test_exercise_that_forgets_the_total_is_wrong(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    solution, _ = _exercise_sources()
    forgetful = solution.replace("replace(counter, total=self.total)", "counter")
    assert forgetful != solution
    lines = await check_counter(client, _module(tmp_path, forgetful), task_queue=task_queue)
    assert lines
    assert all(line.startswith("✗") for line in lines), lines
    assert "carry the total" in lines[0]
