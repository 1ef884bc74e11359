"""Lesson 11: the choreographed trip, and the orchestrated one's messages and crash recovery."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.client import Client

from sagakit import Fault, FaultPlan, running_worker
from sagakit.course.eventbus import EventBus
from sagakit.course.lessons.choreography import (
    ChoreographyOptions,
    TripChoreography,
    choreography_arrows,
    orchestration_arrows,
    plot_sequence,
)
from sagakit.course.lessons.trip import TripSagaInput, TripSagaWorkflow
from sagakit.course.processes import start_worker_process
from sagakit.course.services import TripActivities, World, check_world

EXCURSION_FAILS_AFTER_EFFECT = FaultPlan.of(
    {"book_excursion": [Fault.FAIL_AFTER, Fault.FAIL_PERMANENT]}
)


def _choreography(
    tmp_path: Path, plan: FaultPlan, options: ChoreographyOptions | None = None
) -> TripChoreography:
    return TripChoreography(
        EventBus(tmp_path / "bus.db"), World(tmp_path / "world.db"), faults=plan, options=options
    )


def test_happy_path_is_a_chain_of_events(tmp_path: Path) -> None:
    trips = _choreography(tmp_path, FaultPlan())
    run = trips.run("t1")
    assert run.outcome == "confirmed"
    assert [m.kind for m in run.messages] == [
        "TripRequested",
        "HotelBooked",
        "FlightBooked",
        "ExcursionBooked",
        "TripConfirmed",
    ]
    assert check_world(trips.world).ok
    assert trips.world.trips.active("t1") == {"hotel": 1, "flight": 1, "excursion": 1}


def test_a_failed_flight_makes_the_hotel_cancel(tmp_path: Path) -> None:
    trips = _choreography(tmp_path, FaultPlan.of({"book_flight": [Fault.FAIL_PERMANENT]}))
    run = trips.run("t2")
    assert run.outcome == "cancelled"
    assert [m.kind for m in run.messages][2:] == ["FlightFailed", "HotelCancelled", "TripCancelled"]
    assert check_world(trips.world).ok


def test_without_own_clean_up_a_failure_after_effect_leaks_a_booking(tmp_path: Path) -> None:
    naive = _choreography(
        tmp_path, EXCURSION_FAILS_AFTER_EFFECT, ChoreographyOptions(cleans_up_own_failure=False)
    )
    assert naive.run("t3").outcome == "cancelled"
    report = check_world(naive.world)
    assert not report.ok
    assert "excursion booked" in str(report)


def test_with_own_clean_up_the_same_failure_leaves_nothing(tmp_path: Path) -> None:
    fixed = _choreography(tmp_path, EXCURSION_FAILS_AFTER_EFFECT)
    assert fixed.run("t4").outcome == "cancelled"
    assert check_world(fixed.world).ok


def test_a_crashed_participant_stalls_the_trip_until_it_restarts(tmp_path: Path) -> None:
    trips = _choreography(tmp_path, FaultPlan())
    trips.services["flight"].crash_after_next_effect()
    stalled = trips.run("t5")
    assert stalled.outcome == "no outcome yet"
    assert [m.kind for m in trips.bus.pending("flight")] == ["HotelBooked"]
    assert trips.world.trips.active("t5")["flight"] == 1  # booked before the crash
    trips.services["flight"].start()
    trips.bus.drain()
    assert trips.report("t5").outcome == "confirmed"
    assert check_world(trips.world).ok  # the redelivery did not book a second seat


def test_arrows_and_diagram_of_a_choreography(tmp_path: Path) -> None:
    run = _choreography(tmp_path, FaultPlan.of({"book_flight": [Fault.FAIL_PERMANENT]})).run("t6")
    arrows = choreography_arrows(run)
    assert [(a.sender, a.receiver, a.style) for a in arrows] == [
        ("desk", "hotel", "step"),
        ("hotel", "flight", "step"),
        ("flight", "hotel", "failure"),
        ("hotel", "desk", "undo"),
        ("desk", "desk", "undo"),
    ]
    figure = plot_sequence(["desk", "hotel", "flight", "excursion"], arrows, title="t6")
    # Imported here, not at the top: every test process imports this module to collect its
    # tests, and only one of them draws (matplotlib costs each about half a second of CPU).
    from matplotlib.figure import Figure

    assert isinstance(figure, Figure)
    assert len(figure.axes) == 1


async def test_orchestration_arrows_from_a_real_history(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    activities = TripActivities(tmp_path / "world.db", EXCURSION_FAILS_AFTER_EFFECT)
    async with running_worker(
        client, task_queue=task_queue, workflows=[TripSagaWorkflow], activities=activities.all()
    ):
        handle = await client.start_workflow(
            TripSagaWorkflow.run, TripSagaInput("t7"), id=f"t7-{task_queue}", task_queue=task_queue
        )
        with pytest.raises(Exception, match="Workflow execution failed"):
            await handle.result()
    arrows = orchestration_arrows(await handle.fetch_history())
    labels = [(a.sender, a.receiver, a.label) for a in arrows]
    assert labels[4:6] == [
        ("workflow", "excursion", "book_excursion"),
        ("excursion", "workflow", "failed (2 attempts)"),
    ]
    assert [a.label for a in arrows if a.sender == "workflow"][3:] == [
        "cancel_excursion",
        "cancel_flight",
        "cancel_hotel",
    ]
    assert check_world(activities.world).ok


async def test_a_killed_worker_process_is_replaced_and_the_saga_finishes(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    db = tmp_path / "world.db"
    world = World(db)
    child = await start_worker_process(
        client, "sagakit.course.lessons.choreography", task_queue, str(db), task_queue=task_queue
    )
    try:
        handle = await client.start_workflow(
            TripSagaWorkflow.run, TripSagaInput("t8"), id=f"t8-{task_queue}", task_queue=task_queue
        )
        async with asyncio.timeout(20):
            while True:
                if world.trips.active("t8")["hotel"] == 1:
                    break
                await asyncio.sleep(0.05)
    finally:
        child.kill()
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[TripSagaWorkflow],
        activities=TripActivities(db).all(),
    ):
        assert await handle.result() == "trip t8 booked for ada"
    assert check_world(world).ok
