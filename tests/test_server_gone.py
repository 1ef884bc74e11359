"""The course's entry points (and the core's ``running_worker``) when the server stops mid-run: a clear error within 5 seconds.

Each test starts a dev server of its OWN (free port, temporary data folder), starts
some work on it, stops that server a moment later, and measures how long the
entry point takes to raise :class:`~sagakit.course.errors.ServerUnreachable`. The
learner's server on 7233 and the session's server are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TypeVar, cast

import pytest
from temporalio.client import Client

from sagakit import Fault, running_worker
from sagakit._runtime import quiet_runtime
from sagakit._server_watch import ServerWatch
from sagakit.course.devserver import DevServer, DevServerConfig
from sagakit.course.errors import ServerUnreachable
from sagakit.course.exercises import check
from sagakit.course.playground import TripChoice, TripPlayground, run_trip
from sagakit.course.processes import start_worker_process
from tests.helpers import free_port
from tests.saga_workflows import WaitsForCancel

T = TypeVar("T")

# Every attempt of the flight hangs, so the saga is still running when the server stops.
HANGING = TripChoice(step="book_flight", fault=Fault.HANG, every_attempt=True)


@dataclass
class OwnServer:
    """A dev server of this test alone, and a client of it."""

    server: DevServer
    client: Client

    @property
    def address(self) -> str:
        return self.server.config.address

    @property
    def fix(self) -> str:
        return f"python -m sagakit server start --port {self.server.config.port}"


@pytest.fixture
async def own_server(tmp_path: Path) -> AsyncIterator[OwnServer]:
    data = tmp_path / "server"
    data.mkdir()
    server = DevServer(DevServerConfig(port=free_port(), data_dir=data))
    await server.start()
    try:
        client = await Client.connect(server.config.address, runtime=quiet_runtime())
        yield OwnServer(server, client)
    finally:
        server.stop()


async def _stopped_mid_run(own: OwnServer, work: Awaitable[T], *, after: float = 2.0) -> float:
    """Await ``work``, stop the server ``after`` seconds in; return the seconds from stop to error.

    Fails unless ``work`` raises :class:`ServerUnreachable` naming the address and the fix.
    """
    loop = asyncio.get_running_loop()
    stopped_at = 0.0

    async def stop() -> None:
        nonlocal stopped_at
        await asyncio.sleep(after)
        stopped_at = loop.time()
        await asyncio.to_thread(own.server.stop)

    stopper = asyncio.create_task(stop())
    try:
        with pytest.raises(ServerUnreachable) as raised:
            await asyncio.wait_for(work, timeout=60)
        took = loop.time() - stopped_at
    finally:
        await stopper
    assert stopped_at, "the work ended before the server was stopped"
    message = str(raised.value)
    assert f"No Temporal server answered at {own.address}" in message
    assert own.fix in message
    return took


async def test_run_trip_explains_a_server_that_stops_within_5_seconds(
    own_server: OwnServer, tmp_path: Path
) -> None:
    took = await _stopped_mid_run(
        own_server,
        run_trip(
            own_server.client,
            HANGING,
            workdir=tmp_path,
            workflow_id=f"gone-{uuid.uuid4()}",
            task_queue=f"gone-{uuid.uuid4()}",
        ),
    )
    assert took < 5, f"run_trip took {took:.1f} s after the stop to say so"


async def test_the_playground_shows_the_error_and_enables_its_button_again(
    own_server: OwnServer, tmp_path: Path
) -> None:
    playground = TripPlayground(
        own_server.client, workdir=tmp_path, task_queue=f"gone-{uuid.uuid4()}", id_prefix="gone"
    )
    playground.step.value = "book_flight"
    playground.fault.value = Fault.HANG.value
    playground.every_attempt.value = True
    loop = asyncio.get_running_loop()

    playground.button.click()  # what the browser's click does
    assert playground.task is not None
    assert playground.button.disabled
    await asyncio.sleep(2.0)
    stopped_at = loop.time()
    await asyncio.to_thread(own_server.server.stop)
    run = await asyncio.wait_for(playground.task, timeout=60)
    took = loop.time() - stopped_at

    assert run is None
    assert took < 5, f"the playground took {took:.1f} s after the stop to say so"
    assert not playground.button.disabled
    assert playground.status.value == "gone-1 could not run: the Temporal server does not answer"
    (message,) = playground.output.outputs
    assert message["name"] == "stderr"
    assert message["text"].startswith("ServerUnreachable: No Temporal server answered at ")
    assert own_server.fix in message["text"]


async def test_the_playground_says_so_when_its_run_is_cancelled(
    own_server: OwnServer, tmp_path: Path
) -> None:
    playground = TripPlayground(
        own_server.client, workdir=tmp_path, task_queue=f"stop-{uuid.uuid4()}", id_prefix="stop"
    )
    playground.step.value = "book_flight"
    playground.fault.value = Fault.HANG.value
    task = playground.click()
    await asyncio.sleep(1.0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not playground.button.disabled
    assert playground.status.value == "stop-1 was cancelled"
    (message,) = playground.output.outputs
    assert "cancelled" in message["text"]


SLOW_SAGA = """
from datetime import timedelta
from typing import Any

from temporalio import workflow

@workflow.defn
class BreakfastSagaWorkflow:
    @workflow.run
    async def run(self, request: Any) -> str:
        await workflow.sleep(timedelta(seconds=30))
        return "too late"
"""


async def test_an_exercise_check_explains_a_server_that_stops_within_5_seconds(
    own_server: OwnServer, tmp_path: Path
) -> None:
    module = tmp_path / "exercise_saga.py"
    module.write_text(SLOW_SAGA)
    took = await _stopped_mid_run(own_server, check("saga", module, client=own_server.client))
    assert took < 5, f"the check took {took:.1f} s after the stop to say so"


async def test_start_worker_process_explains_a_server_that_stops_within_5_seconds(
    own_server: OwnServer,
) -> None:
    # The child's worker polls another task queue than the one waited for: it never shows up.
    polled, awaited = f"polled-{uuid.uuid4()}", f"awaited-{uuid.uuid4()}"
    took = await _stopped_mid_run(
        own_server,
        start_worker_process(
            own_server.client,
            "sagakit.course.lessons.durable",
            "worker",
            polled,
            task_queue=awaited,
            timeout=40,
        ),
    )
    assert took < 5, f"start_worker_process took {took:.1f} s after the stop to say so"


async def test_running_worker_explains_a_server_that_stops_within_5_seconds(
    own_server: OwnServer,
) -> None:
    # What every lesson cell does: a worker for the block, and a result awaited in it.
    task_queue = f"gone-{uuid.uuid4()}"

    async def lesson_cell() -> None:
        async with running_worker(
            own_server.client, task_queue=task_queue, workflows=[WaitsForCancel]
        ):
            await own_server.client.execute_workflow(
                WaitsForCancel.run, id=f"gone-{uuid.uuid4()}", task_queue=task_queue
            )

    took = await _stopped_mid_run(own_server, lesson_cell())
    assert took < 5, f"running_worker took {took:.1f} s after the stop to say so"


async def test_running_worker_stops_a_block_that_makes_no_call_and_exits(
    own_server: OwnServer,
) -> None:
    # Nothing in the block talks to the server: only the watch can notice, and leaving
    # the block must not wait for pollers that retry until the server is back.
    async def idle_block() -> None:
        async with running_worker(
            own_server.client, task_queue=f"idle-{uuid.uuid4()}", workflows=[WaitsForCancel]
        ):
            await asyncio.sleep(50)

    took = await _stopped_mid_run(own_server, idle_block())
    assert took < 5, f"running_worker took {took:.1f} s after the stop to leave the block"


async def test_a_watch_is_patient_with_one_silence_but_not_two() -> None:
    # A busy server on a loaded machine may miss one probe's deadline; a server that
    # never answers is named after the second silent probe. (The "client" only carries
    # the address the watch probes: no Temporal call is made.)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts the connection, never answers it
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        config = SimpleNamespace(target_host=address, tls=None)
        client = cast(Client, SimpleNamespace(service_client=SimpleNamespace(config=config)))
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ServerUnreachable, match=r"did not answer within 0\.3s"):
            async with ServerWatch(client, interval=0.1, probe_timeout=0.3):
                await asyncio.sleep(30)
        assert loop.time() - started >= 2 * (0.1 + 0.3)


async def test_a_watch_that_was_told_to_stop_never_cancels_the_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On Python 3.11, asyncio.wait_for returns its result and drops a cancel that arrives
    # as the probe finishes. The watch must not act on that late answer: the block has
    # left and is explaining its own error, and a cancel now would replace the clear
    # ServerUnreachable with a bare CancelledError (a CI run failed just so).
    import sagakit._server_watch as server_watch

    probing = asyncio.Event()

    async def probe(client: Client, timeout: float) -> tuple[str, str]:
        if not probing.is_set():  # the watch's probe
            probing.set()
            # What wait_for does when its inner probe is done at the same moment:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(30)
            return "127.0.0.1:1", "refused"
        await asyncio.sleep(0.05)  # __aexit__'s own probe: still waiting when the watch resumes
        return "127.0.0.1:1", "refused"

    monkeypatch.setattr(server_watch, "_ask", probe)
    config = SimpleNamespace(target_host="127.0.0.1:1", tls=None)
    client = cast(Client, SimpleNamespace(service_client=SimpleNamespace(config=config)))

    async def block() -> None:
        async with ServerWatch(client, interval=0.0, probe_timeout=0.3):
            await probing.wait()
            raise RuntimeError("the SDK's call failed: the server went away")

    with pytest.raises(ServerUnreachable, match=r"No Temporal server answered at 127\.0\.0\.1:1"):
        await block()
