"""Process faults: the worker is killed with SIGKILL, or the Temporal server restarts, mid-saga.

The claim under test is the course's: a saga whose steps are retried and whose
effects carry idempotency keys ends booked or fully undone, whatever process
dies, and nothing is lost or done twice (the ledger shows every effect once).
Every test uses the canonical trip saga; the activities pause where the test
wants the fault to land (tests/process_fault_worker.py).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError

from sagakit import running_worker
from sagakit._runtime import quiet_runtime
from sagakit.course.devserver import DevServer, DevServerConfig
from sagakit.course.lessons.trip import TripSagaInput, TripSagaWorkflow
from sagakit.course.logs import quiet_expected_failures
from sagakit.course.processes import ChildProcess, start_worker_process
from sagakit.course.services.invariants import check_world
from sagakit.course.services.world import World
from tests.helpers import free_port
from tests.process_fault_worker import PausingTripActivities, failures_only

WORKER = "tests.process_fault_worker"

BOOKED = Counter({"book_hotel": 1, "book_flight": 1, "book_excursion": 1})
UNDONE = Counter({"book_hotel": 1, "book_flight": 1, "cancel_flight": 1, "cancel_hotel": 1})


def _ledger(db: Path, trip: str) -> Counter[str]:
    return Counter(e.operation for e in World(db).ledger.entries(entity=trip))


async def _attempts(handle: WorkflowHandle[Any, Any], step: str) -> list[int]:
    """The attempt of ``step`` recorded in the History (only the last attempt is recorded)."""
    scheduled: dict[int, str] = {}
    attempts: list[int] = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attrs.activity_type.name
        if event.HasField("activity_task_started_event_attributes"):
            attrs2 = event.activity_task_started_event_attributes
            if scheduled.get(attrs2.scheduled_event_id) == step:
                attempts.append(attrs2.attempt)
    return attempts


async def _wait_for_lines(child: ChildProcess, lines: list[str]) -> None:
    for line in lines:
        await asyncio.to_thread(child.wait_for_line, line, timeout=60)


@pytest.mark.slow
async def test_a_killed_worker_loses_nothing_mid_step_or_mid_compensation(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """One power cut catches four sagas: two in a step, two in their compensation."""
    db = tmp_path / "world.db"
    World(db)
    run = task_queue[-8:]
    a, b, c, d = (f"kill-{run}-{name}" for name in "abcd")
    spec = ",".join(
        [
            f"{a}:book_flight:pause-after",  # flight booked, reply lost with the worker
            f"{b}:book_excursion:pause-before",  # killed before the excursion is booked
            f"{c}:book_excursion:fail",  # a business failure starts the compensation...
            f"{c}:cancel_flight:pause-after",  # ...killed after the flight was cancelled
            f"{d}:book_excursion:fail",
            f"{d}:cancel_hotel:pause-before",  # killed before the hotel is cancelled
        ]
    )
    with quiet_expected_failures():
        first = await start_worker_process(
            client, WORKER, task_queue, str(db), spec, task_queue=task_queue
        )
        try:
            handles = {
                trip: await client.start_workflow(
                    TripSagaWorkflow.run, TripSagaInput(trip), id=trip, task_queue=task_queue
                )
                for trip in (a, b, c, d)
            }
            await _wait_for_lines(
                first,
                [
                    f"PAUSED {a} book_flight after",
                    f"PAUSED {b} book_excursion before",
                    f"PAUSED {c} cancel_flight after",
                    f"PAUSED {d} cancel_hotel before",
                ],
            )
            # Every pause is reached: the effects so far are in the ledger, no reply was sent.
            assert _ledger(db, a)["book_flight"] == 1
            assert _ledger(db, c)["cancel_flight"] == 1
            assert _ledger(db, d)["cancel_hotel"] == 0
        finally:
            status = first.kill()
        assert status == -9

        second = await start_worker_process(
            client, WORKER, task_queue, str(db), failures_only(spec), task_queue=task_queue
        )
        try:
            assert await handles[a].result() == f"trip {a} booked for ada"
            assert await handles[b].result() == f"trip {b} booked for ada"
            for trip in (c, d):
                with pytest.raises(WorkflowFailureError) as failed:
                    await handles[trip].result()
                assert isinstance(failed.value.cause, ActivityError)
                assert isinstance(failed.value.cause.cause, ApplicationError)
                assert failed.value.cause.cause.type == "InjectedPermanentFault"
        finally:
            second.terminate()

    report = check_world(db)
    assert report.ok, report
    assert _ledger(db, a) == BOOKED, "the lost reply must not book the flight twice"
    assert _ledger(db, b) == BOOKED
    assert _ledger(db, c) == UNDONE, "the retried undo must not cancel twice"
    assert _ledger(db, d) == UNDONE
    # The kill really landed in the middle: each interrupted activity needed a second attempt.
    assert await _attempts(handles[a], "book_flight") == [2]
    assert await _attempts(handles[b], "book_excursion") == [2]
    assert await _attempts(handles[c], "cancel_flight") == [2]
    assert await _attempts(handles[d], "cancel_hotel") == [2]


@pytest.fixture
async def private_server(tmp_path: Path) -> AsyncIterator[DevServer]:
    """A dev server of this test alone (free ports, its own state file); never the shared one."""
    config = DevServerConfig(port=free_port(), data_dir=tmp_path / "server")
    assert config.port != 7233
    server = DevServer(config)
    await server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.slow
async def test_a_saga_survives_a_restart_of_the_temporal_server(
    private_server: DevServer, tmp_path: Path
) -> None:
    config = private_server.config
    client = await Client.connect(config.address, runtime=quiet_runtime())
    db = tmp_path / "world.db"
    trip = "restart-1"
    reached = threading.Event()
    release = threading.Event()
    activities = PausingTripActivities(
        db, f"{trip}:book_flight:pause-after", release=release, reached=lambda _: reached.set()
    )
    with quiet_expected_failures(level=100):  # the worker complains while the server is away
        async with running_worker(
            client,
            task_queue="restart",
            workflows=[TripSagaWorkflow],
            activities=activities.all(),
            watch_server=False,  # this worker rides out the restart: it reconnects by itself
        ):
            handle = await client.start_workflow(
                TripSagaWorkflow.run, TripSagaInput(trip), id=trip, task_queue="restart"
            )
            assert await asyncio.to_thread(reached.wait, 30), "book_flight never started"
            state_file = config.db_path
            assert private_server.stop() is True  # the saga waits on a step when its server goes
            assert not (await private_server.status()).running
            release.set()  # the flight is booked while no server is there to hear it
            await asyncio.sleep(1)

            status = await private_server.start()
            assert status.started_here
            assert config.db_path == state_file
            assert await asyncio.wait_for(handle.result(), 90) == f"trip {trip} booked for ada"

    report = check_world(db)
    assert report.ok, report
    assert _ledger(db, trip) == BOOKED
    assert (await handle.describe()).run_id == handle.result_run_id
