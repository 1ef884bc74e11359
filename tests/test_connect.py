"""connect(): the configured cluster when there is one, else the local dev server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest
from temporalio.client import Client

import sagakit
import sagakit.course.client
from sagakit import ConfigurationError, course
from sagakit.course.client import web_ui_url
from sagakit.course.errors import ServerUnreachable
from tests.helpers import free_port


@pytest.fixture(autouse=True)
def no_profile_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Keep a developer's own temporal.toml out of these tests."""
    missing = tmp_path_factory.mktemp("cfg") / "temporal.toml"
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(missing))
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.delenv("TEMPORAL_PROFILE", raising=False)


@pytest.fixture
def silent_listener() -> Iterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", free_port()))
    sock.listen()
    yield int(sock.getsockname()[1])
    sock.close()


async def test_without_configuration_uses_the_local_dev_server() -> None:
    assert sagakit.course.client.configured_profile() is None
    client = await course.connect()
    assert client.service_client.config.target_host == "127.0.0.1:7233"
    assert await client.service_client.check_health()


async def test_temporal_address_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "localhost:7233")
    client = await course.connect()
    assert client.service_client.config.target_host == "localhost:7233"


async def test_profile_file_is_used(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = tmp_path_factory.mktemp("profile") / "temporal.toml"
    config.write_text('[profile.course]\naddress = "localhost:7233"\nnamespace = "default"\n')
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    monkeypatch.setenv("TEMPORAL_PROFILE", "course")
    client = await course.connect()
    assert client.service_client.config.target_host == "localhost:7233"


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
