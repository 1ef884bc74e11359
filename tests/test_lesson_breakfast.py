"""Lesson 08's breakfast workflows on the real server, and the tea-saga exercise check."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError

from sagakit import Fault, FaultPlan, Saga, running_worker
from sagakit.course.lessons.breakfast import (
    BreakfastInput,
    BreakfastRun,
    BreakfastWorkflow,
    FallThroughBreakfastWorkflow,
    NaiveBreakfastWorkflow,
    TeaKitchen,
    check_tea_saga,
    failure_summary,
    run_breakfast,
    undo_phase_seconds,
    wait_for_stage,
)
from sagakit.course.logs import quiet_expected_failures
from sagakit.course.services import BreakfastActivities, ViolationKind, World, check_world
from sagakit.history import ActivitySpan, activity_spans

WORKFLOWS = [BreakfastWorkflow, NaiveBreakfastWorkflow, FallThroughBreakfastWorkflow]


async def _make(
    client: Client,
    task_queue: str,
    world: World,
    workflow_class: type,
    breakfast: BreakfastInput,
    plan: FaultPlan | None = None,
) -> BreakfastRun:
    activities = BreakfastActivities(world.path, plan).all()
    with quiet_expected_failures():
        async with running_worker(
            client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities
        ):
            return await run_breakfast(
                client,
                workflow_class,
                breakfast,
                task_queue=task_queue,
                workflow_id=f"{task_queue}-{breakfast.breakfast_id}",
            )


async def _undos(run: BreakfastRun) -> list[ActivitySpan]:
    return [s for s in activity_spans(await run.handle.fetch_history()) if s.is_compensation]


async def test_breakfast_is_served(client: Client, task_queue: str, tmp_path: Path) -> None:
    world = World(tmp_path / "world.db")
    run = await _make(client, task_queue, world, BreakfastWorkflow, BreakfastInput("b1"))
    assert run.outcome == "served"
    assert world.breakfast.state("b1").served
    assert check_world(world).ok


async def test_undo_registered_after_the_step_leaves_the_bowl_out(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    world = World(tmp_path / "world.db")
    plan = FaultPlan.always("get_bowl", Fault.FAIL_AFTER)
    run = await _make(
        client,
        task_queue,
        world,
        NaiveBreakfastWorkflow,
        BreakfastInput("b2", step_attempts=1),
        plan,
    )
    assert run.outcome.startswith("failed: get_bowl: injected fault")
    report = check_world(world)
    assert report.kinds == {ViolationKind.PARTIAL_BREAKFAST}
    assert "bowl left on the counter" in str(report)
    assert world.ledger.count("put_bowl_away_if_present") == 0


async def test_undo_registered_before_the_step_puts_the_bowl_away(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    world = World(tmp_path / "world.db")
    plan = FaultPlan.always("get_bowl", Fault.FAIL_AFTER)
    run = await _make(
        client, task_queue, world, BreakfastWorkflow, BreakfastInput("b3", step_attempts=1), plan
    )
    assert run.outcome.startswith("failed: get_bowl")
    assert check_world(world).ok
    assert world.breakfast.state("b3").untouched
    assert world.ledger.count("put_bowl_away_if_present", "b3") == 1


async def test_undo_of_a_step_that_never_happened_does_nothing(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    world = World(tmp_path / "world.db")
    plan = FaultPlan.always("get_bowl", Fault.FAIL_BEFORE)
    run = await _make(
        client, task_queue, world, BreakfastWorkflow, BreakfastInput("b4", step_attempts=1), plan
    )
    assert run.outcome.startswith("failed: get_bowl")
    assert [s.outcome for s in await _undos(run)] == ["completed"]
    assert world.ledger.entries(service="breakfast") == []
    assert check_world(world).ok


async def test_out_of_milk_undoes_last_to_first(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    world = World(tmp_path / "world.db")
    world.breakfast.set_stock(milk_ml=0)
    run = await _make(client, task_queue, world, BreakfastWorkflow, BreakfastInput("b5"))
    assert run.outcome.startswith("failed: add_milk: Out of milk")
    operations = [e.operation for e in world.ledger.entries(service="breakfast")]
    assert operations == [
        "get_bowl",
        "add_cereal",
        "put_cereal_back_if_present",
        "put_bowl_away_if_present",
    ]
    assert world.breakfast.stock().cereal_g == 1000
    assert check_world(world).ok


async def test_parallel_undos_are_scheduled_together(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    world = World(tmp_path / "world.db")
    world.breakfast.set_stock(milk_ml=0)
    breakfast = BreakfastInput("b6", parallel_compensation=True)
    run = await _make(client, task_queue, world, BreakfastWorkflow, breakfast)
    history = await run.handle.fetch_history()
    scheduled = [
        e.event_id
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name.startswith("put_")
    ]
    completed = [
        e.event_id
        for e in history.events
        if e.HasField("activity_task_completed_event_attributes")
        and e.activity_task_completed_event_attributes.scheduled_event_id in scheduled
    ]
    assert len(scheduled) == 2
    assert max(scheduled) < min(completed)  # both started before either finished
    assert world.breakfast.state("b6").untouched
    assert check_world(world).ok


async def test_undo_restores_only_its_own_part(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    world = World(tmp_path / "world.db")
    world.breakfast.set_stock(milk_ml=200)
    activities = BreakfastActivities(world.path).all()
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=activities
    ):
        mine = await client.start_workflow(
            BreakfastWorkflow.run,
            BreakfastInput("mine", pause_before_milk=True),
            id=f"{task_queue}-mine",
            task_queue=task_queue,
        )
        await wait_for_stage(mine, "paused before the milk")
        theirs = await run_breakfast(
            client,
            BreakfastWorkflow,
            BreakfastInput("theirs"),
            task_queue=task_queue,
            workflow_id=f"{task_queue}-theirs",
        )
        await mine.signal(BreakfastWorkflow.resume)
        with quiet_expected_failures(), pytest.raises(WorkflowFailureError) as failed:
            await mine.result()
    assert theirs.outcome == "served"
    assert "Out of milk" in failure_summary(failed.value)
    stock = world.breakfast.stock()
    assert world.breakfast.state("mine").untouched
    assert world.breakfast.state("theirs").served
    assert stock.cereal_g == 1000 - 60  # theirs still holds its 60 g: not a snapshot rollback
    assert check_world(world).ok


async def test_article_fall_through_runs_every_undo_twice(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    world = World(tmp_path / "world.db")
    plan = FaultPlan.of({"add_milk": [Fault.FAIL_PERMANENT]})
    counts = []
    for parallel in (False, True):
        world.reset()
        breakfast = BreakfastInput(f"p{parallel}", parallel_compensation=parallel)
        run = await _make(client, task_queue, world, FallThroughBreakfastWorkflow, breakfast, plan)
        assert run.outcome.startswith("failed: add_milk")
        counts.append(len(await _undos(run)))
        assert check_world(world).ok  # the undos are "if present" and keyed: the bug hides
    assert counts == [2, 4]


def test_undo_phase_is_measured_from_first_undo_to_last() -> None:
    def span(name: str, start: float, end: float, undo: bool) -> ActivitySpan:
        return ActivitySpan(name, "1", 1, 1, start, start, end, "completed", None, None, undo)

    spans = [
        span("get_bowl", 0.0, 1.0, False),
        span("a", 2.0, 3.0, True),
        span("b", 2.5, 4.5, True),
    ]
    assert undo_phase_seconds(spans) == 2.5
    assert undo_phase_seconds(spans[:1]) == 0.0


async def _good_tea(kitchen: TeaKitchen) -> None:
    async def put_cup_away_if_present() -> None:
        if kitchen.cups_out:
            await kitchen.put_cup_away()

    async def take_teabag_out_if_present() -> None:
        if kitchen.teabags_in_cup:
            await kitchen.take_teabag_out()

    async with Saga(query=None) as saga:
        saga.add(put_cup_away_if_present)
        await kitchen.get_cup()
        saga.add(take_teabag_out_if_present)
        await kitchen.add_teabag()
        await kitchen.pour_water()


async def test_tea_check_accepts_a_right_saga() -> None:
    check = await check_tea_saga(_good_tea)
    assert check.ok, str(check)
    assert check.scenarios == 7


async def test_tea_check_explains_each_mistake() -> None:
    async def registered_after(kitchen: TeaKitchen) -> None:
        async with Saga(query=None) as saga:
            await kitchen.get_cup()
            saga.add(kitchen.put_cup_away)
            await kitchen.add_teabag()
            saga.add(kitchen.take_teabag_out)
            await kitchen.pour_water()

    async def strict_before(kitchen: TeaKitchen) -> None:
        async with Saga(query=None) as saga:
            saga.add(kitchen.put_cup_away)
            await kitchen.get_cup()
            saga.add(kitchen.take_teabag_out)
            await kitchen.add_teabag()
            await kitchen.pour_water()

    async def swallowed(kitchen: TeaKitchen) -> None:
        try:
            await _good_tea(kitchen)
        except Exception:
            return

    after = str(await check_tea_saga(registered_after))
    assert "cup was left on the counter" in after
    assert "register its undo BEFORE the step" in after
    assert "an undo failed" in str(await check_tea_saga(strict_before))
    assert "returned normally" in str(await check_tea_saga(swallowed))


async def test_tea_check_spots_undos_in_the_wrong_order() -> None:
    async def wrong_order(kitchen: TeaKitchen) -> None:
        async def put_cup_away_if_present() -> None:
            if kitchen.cups_out:
                await kitchen.put_cup_away()

        async def take_teabag_out_if_present() -> None:
            if kitchen.teabags_in_cup:
                await kitchen.take_teabag_out()

        async with Saga(query=None) as saga:
            saga.add(take_teabag_out_if_present)
            saga.add(put_cup_away_if_present)
            await kitchen.get_cup()
            await kitchen.add_teabag()
            await kitchen.pour_water()

    check = await check_tea_saga(wrong_order)
    assert not check.ok
    assert "teabag went in the bin" in str(check)


async def test_tea_check_says_not_done_for_the_starter() -> None:
    async def starter(kitchen: TeaKitchen) -> None:
        return None  # the learner edition's starter

    check = await check_tea_saga(starter)
    assert check.not_done
    assert not check.ok
    assert str(check).startswith("○ Not done yet:")
    assert "✗" not in str(check)
    assert "✓" not in str(check)


async def test_tea_check_that_does_one_step_is_not_called_not_done() -> None:
    async def cup_only(kitchen: TeaKitchen) -> None:
        await kitchen.get_cup()

    check = await check_tea_saga(cup_only)
    assert not check.not_done
    assert str(check).startswith("✗")
