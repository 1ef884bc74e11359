"""connect(): the configured cluster when there is one, else the local dev server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

import sagakit
import sagakit.course.client
from sagakit import ConfigurationError, course
from sagakit._runtime import quiet_runtime
from sagakit.course.client import web_ui_url
from sagakit.course.devserver import DevServer, DevServerConfig, default_data_dir
from sagakit.course.errors import ServerUnreachable
from tests.helpers import ROOT, free_port

SESSION_ADDRESS = os.environ.get("TEMPORAL_ADDRESS") or "127.0.0.1:7233"
"""The test session's server (conftest.py may point TEMPORAL_ADDRESS at its own)."""
SESSION_HOST, _, SESSION_PORT = SESSION_ADDRESS.rpartition(":")


def session_dev_server() -> DevServerConfig:
    """The session's dev server as a configuration, so that connect() reuses it."""
    if SESSION_HOST not in ("127.0.0.1", "localhost"):
        pytest.skip("the tests run against a configured Temporal server, not a local dev server")
    data = os.environ.get("SAGAKIT_DATA_DIR")
    return DevServerConfig(
        port=int(SESSION_PORT), data_dir=Path(data) if data else default_data_dir()
    )


@pytest.fixture(autouse=True)
def no_profile_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Keep a developer's own temporal.toml out of these tests."""
    missing = tmp_path_factory.mktemp("cfg") / "temporal.toml"
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(missing))
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.delenv("TEMPORAL_PROFILE", raising=False)


@pytest.fixture(autouse=True)
def forget_the_last_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    """web_ui_url() follows the last client connect() returned; start each test afresh."""
    monkeypatch.setattr(sagakit.course.client, "_last", None, raising=False)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", free_port()))
    sock.listen()
    yield int(sock.getsockname()[1])
    sock.close()


async def test_without_configuration_uses_the_local_dev_server() -> None:
    server = session_dev_server()
    assert sagakit.course.client.configured_profile() is None
    client = await course.connect(server=server)
    assert client.service_client.config.target_host == f"127.0.0.1:{server.port}"
    assert await client.service_client.check_health()


async def test_temporal_address_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    port = session_dev_server().port
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"localhost:{port}")
    client = await course.connect()
    assert client.service_client.config.target_host == f"localhost:{port}"


async def test_profile_file_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    port = session_dev_server().port
    config = tmp_path_factory.mktemp("profile") / "temporal.toml"
    config.write_text(f'[profile.course]\naddress = "localhost:{port}"\nnamespace = "default"\n')
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    monkeypatch.setenv("TEMPORAL_PROFILE", "course")
    client = await course.connect()
    assert client.service_client.config.target_host == f"localhost:{port}"


async def test_unreachable_address_fails_fast_with_advice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    with pytest.raises(ServerUnreachable, match="unset TEMPORAL_ADDRESS"):
        await course.connect(timeout=5)


async def test_silent_address_times_out_instead_of_hanging(
    monkeypatch: pytest.MonkeyPatch, silent_listener: int
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{silent_listener}")
    started = time.monotonic()
    with pytest.raises(ServerUnreachable, match=r"within 1s"):
        await course.connect(timeout=1)
    assert time.monotonic() - started < 30, "connect() must give up, not hang"


async def test_malformed_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "not a host::")
    with pytest.raises(ConfigurationError, match="host:port"):
        await course.connect(timeout=2)


async def test_unknown_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_PROFILE", "no-such-profile")
    with pytest.raises(ConfigurationError, match="TEMPORAL_PROFILE"):
        await course.connect()


def test_web_ui_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SAGAKIT_UI_URL", raising=False)
    assert web_ui_url("trip 1", "r1") == (
        "http://127.0.0.1:8233/namespaces/default/workflows/trip%201/r1/history"
    )
    monkeypatch.setenv("SAGAKIT_UI_URL", "https://ui.example/")
    assert web_ui_url("w") == "https://ui.example/namespaces/default/workflows/w"


async def test_client_fixture_is_real(client: Client) -> None:
    info = await client.service_client.workflow_service.get_system_info(GetSystemInfoRequest())
    assert info.server_version, "a real Temporal server reports its version"


async def test_web_ui_url_follows_the_clients_namespace_and_recorded_ui_port(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SAGAKIT_UI_URL", raising=False)
    monkeypatch.setenv("SAGAKIT_DATA_DIR", str(tmp_path))
    port = free_port()
    # What `python -m sagakit server start --port PORT --ui-port 9876` records.
    (tmp_path / f"temporal-{port}.pid").write_text(json.dumps({"port": port, "ui_port": 9876}))
    client = await Client.connect(f"127.0.0.1:{port}", namespace="payments", lazy=True)
    assert web_ui_url("w 1", "r1", client=client) == (
        "http://127.0.0.1:9876/namespaces/payments/workflows/w%201/r1/history"
    )
    monkeypatch.setenv("SAGAKIT_UI_URL", "https://ui.example/")
    assert web_ui_url("w", client=client) == "https://ui.example/namespaces/payments/workflows/w"


async def test_web_ui_url_follows_the_dev_server_that_connect_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SAGAKIT_UI_URL", raising=False)
    config = DevServerConfig(port=free_port(), ui_port=free_port(), data_dir=tmp_path)
    try:
        await course.connect(server=config)
        assert course.web_ui_url("w") == (
            f"http://127.0.0.1:{config.ui_port}/namespaces/default/workflows/w"
        )
    finally:
        DevServer(config).stop()


async def test_an_address_without_a_port_is_a_configuration_error_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "localhost")
    started = time.monotonic()
    with pytest.raises(ConfigurationError, match=r"'localhost' from TEMPORAL_ADDRESS .*no port"):
        await course.connect()
    assert time.monotonic() - started < 1


GIVE_UP = """
import asyncio, time
from sagakit import course
from sagakit.course.errors import ServerUnreachable
started = time.monotonic()
try:
    asyncio.run(course.connect(timeout=1))
except ServerUnreachable as err:
    print(f"gave up after {time.monotonic() - started:.1f}s: {err}", flush=True)
    print(f"exiting at {time.monotonic()}", flush=True)
"""
"""A script that exits right after connect() gives up: the moment a lingering native
connect used to crash the interpreter's exit ("panicked ... not initialized")."""

PROBE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes.fromhex("000000040000000000")
"""All that sagakit's own probe sends: the HTTP/2 preface and an empty SETTINGS frame."""


def _received(conn: socket.socket) -> bytes:
    conn.setblocking(False)
    data = b""
    with contextlib.suppress(OSError):
        while chunk := conn.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize("attempt", [1, 2, 3])
def test_after_giving_up_the_process_exits_cleanly(tmp_path: Path, attempt: int) -> None:
    """A silent listener: connect() gives up, and nothing native is left to crash the exit."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", free_port()))
    listener.listen()
    listener.settimeout(0.1)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": address,
        "TEMPORAL_CONFIG_FILE": str(tmp_path / "none.toml"),
    }
    env.pop("TEMPORAL_PROFILE", None)
    try:
        result = subprocess.run(
            [sys.executable, "-c", GIVE_UP],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        ended = time.monotonic()
        received = [_received(conn) for conn in accepted]
    finally:
        stop.set()
        acceptor.join()
        for conn in accepted:
            conn.close()
        listener.close()
    assert result.stdout.startswith("gave up after"), result.stdout + result.stderr
    assert f"No Temporal server answered at {address}" in result.stdout
    assert "within 1s" in result.stdout
    assert "panicked" not in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert result.returncode == 0
    # Timed by the script's own clock (CLOCK_MONOTONIC, the same in every process), not from
    # the start of the interpreter, whose imports take what a loaded machine gives them.
    gave_up = float(result.stdout.split("gave up after ")[1].split("s:")[0])
    exit_delay = ended - float(result.stdout.split("exiting at ")[1])
    assert gave_up < 10, f"connect() took {gave_up:.1f}s to give up"
    assert exit_delay < 10, f"the script took {exit_delay:.1f}s to exit after giving up"
    assert received, "connect() never asked the address"
    assert all(data in (b"", PROBE) for data in received), (
        "the native client was handed a silent address (it cannot be stopped once started)"
    )


# -- the server goes away while a notebook runs ------------------------------------------------------


async def test_a_server_that_stops_mid_run_is_explained_within_5_seconds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from sagakit.course.client import server_errors_explained

    config = DevServerConfig(port=free_port(), data_dir=tmp_path)
    server = DevServer(config)
    await server.start()
    loop = asyncio.get_running_loop()
    stop_began = 0.0

    async def stop_the_server() -> None:
        nonlocal stop_began
        await asyncio.sleep(1.0)
        stop_began = loop.time()
        await asyncio.to_thread(server.stop)

    try:
        client = await Client.connect(config.address, runtime=quiet_runtime())
        # No worker polls this queue: the result wait is a long poll on the server.
        handle = await client.start_workflow(
            "NobodyRunsThis", id=f"gone-{uuid.uuid4()}", task_queue=f"none-{uuid.uuid4()}"
        )
        stopper = asyncio.create_task(stop_the_server())
        with pytest.raises(ServerUnreachable) as raised:
            async with server_errors_explained(client):
                await handle.result()
        assert loop.time() - stop_began < 5, "the error came more than 5 s after the stop"
        await stopper
    finally:
        server.stop()
    message = str(raised.value)
    assert f"No Temporal server answered at {config.address}" in message
    assert f"python -m sagakit server start --port {config.port}" in message
    assert "TEMPORAL_ADDRESS" in message

    # connect() says the same, quickly, for that address.
    monkeypatch.setenv("TEMPORAL_ADDRESS", config.address)
    started = time.monotonic()
    with pytest.raises(ServerUnreachable, match=r"nothing listens there") as again:
        await course.connect()
    assert time.monotonic() - started < 5
    assert f"python -m sagakit server start --port {config.port}" in str(again.value)


async def test_the_watch_lets_other_errors_and_outside_cancellation_through(
    client: Client,
) -> None:
    from sagakit.course.client import server_errors_explained

    with pytest.raises(KeyError):
        async with server_errors_explained(client):
            raise KeyError("not about the server")

    async def cancelled_from_outside() -> None:
        async with server_errors_explained(client):
            await asyncio.sleep(30)

    task = asyncio.create_task(cancelled_from_outside())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    async with server_errors_explained(client, interval=0.05):
        await asyncio.sleep(0.3)  # a healthy server: nothing happens
