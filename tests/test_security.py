"""Security: servers bind loopback only, notebooks carry no secrets, credentials stay in the env.

Binding is checked where the kernel keeps it (``/proc/net/tcp`` and ``tcp6``),
for every socket the server *process* listens on (the dev server opens more
than its two public ports), not just by trying to connect.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from temporalio.client import Client

from sagakit import course
from sagakit.course.devserver import DevServer, DevServerConfig
from sagakit.course.errors import ServerUnreachable
from tests.helpers import ROOT, free_port
from tests.test_lab import _lab_command

Listener = tuple[str, int]

SESSION_ADDRESS = os.environ.get("TEMPORAL_ADDRESS") or "127.0.0.1:7233"
"""The test session's server (conftest.py may point TEMPORAL_ADDRESS at its own)."""


def _listening_sockets() -> dict[int, Listener]:
    """Every TCP socket in LISTEN state on this machine: inode -> (address, port)."""
    found: dict[int, Listener] = {}
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_address, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found[int(fields[9])] = (socket.inet_ntop(family, raw), int(hex_port, 16))
    return found


def _listeners_of(pid: int) -> list[Listener]:
    """The (address, port) pairs that process ``pid`` listens on."""
    sockets = _listening_sockets()
    mine = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inode = int(target[len("socket:[") : -1])
            if inode in sockets:
                mine.append(sockets[inode])
    return sorted(mine)


def _owner_of_port(port: int) -> int | None:
    """The process that listens on ``port``, found through its socket's inode."""
    inodes = {inode for inode, (_, p) in _listening_sockets().items() if p == port}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            targets = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in targets for inode in inodes):
            return int(entry.name)
    return None


def _not_loopback(listeners: list[Listener]) -> list[Listener]:
    return [(a, p) for a, p in listeners if not ipaddress.ip_address(a).is_loopback]


needs_proc = pytest.mark.skipif(
    not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to read bound addresses"
)


# -- loopback only --------------------------------------------------------------------------------


@needs_proc
def test_the_parser_reads_bound_addresses() -> None:
    """Guard the reader itself: a wildcard and a loopback listener are told apart."""
    with socket.socket() as anywhere, socket.socket() as local:
        anywhere.bind(("0.0.0.0", 0))
        anywhere.listen()
        local.bind(("127.0.0.1", 0))
        local.listen()
        mine = _listeners_of(os.getpid())
        assert ("0.0.0.0", anywhere.getsockname()[1]) in mine
        assert ("127.0.0.1", local.getsockname()[1]) in mine
        assert _not_loopback(mine) == [("0.0.0.0", anywhere.getsockname()[1])]


@pytest.fixture
async def private_server(tmp_path: Path) -> AsyncIterator[DevServerConfig]:
    config = DevServerConfig(port=free_port(), data_dir=tmp_path / "server")
    status = await DevServer(config).start()
    assert status.started_here
    assert status.pid
    try:
        yield config
    finally:
        DevServer(config).stop()


@needs_proc
async def test_a_dev_server_started_by_sagakit_listens_on_loopback_only(
    private_server: DevServerConfig,
) -> None:
    pid = DevServer(private_server)._recorded_pid()
    assert pid is not None
    listeners = _listeners_of(pid)
    ports = {port for _, port in listeners}
    assert {private_server.port, private_server.effective_ui_port} <= ports
    assert _not_loopback(listeners) == [], f"the dev server listens beyond loopback: {listeners}"


@needs_proc
async def test_the_shared_dev_server_listens_on_loopback_only(client: Client) -> None:
    host, _, port_text = client.service_client.config.target_host.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        pytest.skip("the tests use a Temporal server on another machine")
    port = int(port_text)
    pid = _owner_of_port(port)
    if pid is None:
        pytest.skip(f"the server on {port} belongs to another user or container")
    listeners = _listeners_of(pid)
    assert ("127.0.0.1", port) in listeners
    assert _not_loopback(listeners) == [], f"the dev server listens beyond loopback: {listeners}"


@needs_proc
@pytest.mark.slow
def test_jupyterlab_listens_on_loopback_only(tmp_path: Path) -> None:
    port = free_port()
    process = subprocess.Popen(
        _lab_command(port),
        cwd=ROOT,
        env={
            **os.environ,
            "JUPYTER_TOKEN": secrets.token_hex(16),
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            listeners = _listeners_of(process.pid)
            if any(p == port for _, p in listeners):
                break
            assert process.poll() is None, "JupyterLab exited early"
            assert time.monotonic() < deadline, "JupyterLab did not listen within 60 s"
            time.sleep(0.3)
        assert _not_loopback(listeners) == [], f"JupyterLab listens beyond loopback: {listeners}"
    finally:
        process.terminate()
        process.wait(timeout=30)


# -- committed notebooks ---------------------------------------------------------------------------

SECRETS = {
    "a token in a URL": re.compile(r"[?&]token=[^\s\"'&\\]+"),
    "a bearer token": re.compile(r"Bearer\s+[A-Za-z0-9._~+/-]{8,}"),
    "an AWS key": re.compile(r"AKIA[0-9A-Z]{16}"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY"),
    "a JWT": re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\."),
    "a literal credential": re.compile(
        r"(?i)(api[_-]?key|secret|password|passwd)\s*[:=]\s*\\?['\"][^'\"\\]{4,}"
    ),
    "an absolute path": re.compile(
        r"(?<![\w.~])/(home|root|Users|work|tmp|opt|usr|var|private|mnt|srv)/"
    ),
    "a Windows path": re.compile(r"[A-Z]:\\\\"),
    "a non-loopback IP address": re.compile(
        r"\b(?!127\.)(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}\d+\b"
    ),
}


def _committed_notebooks() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--", "notebooks/*.ipynb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    on_disk = {p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.ipynb")}
    return [ROOT / name for name in sorted(set(listed) | on_disk) if (ROOT / name).is_file()]


def test_the_scan_catches_what_it_looks_for() -> None:
    samples = {
        "a token in a URL": "http://127.0.0.1:8888/lab?token=abc123",
        "a literal credential": 'api_key = "sk-live-123"',
        "an absolute path": "saved to /home/ada/world.db",
        "a non-loopback IP address": "listening on 10.1.2.3",
    }
    for what, sample in samples.items():
        assert SECRETS[what].search(sample), what
    assert not SECRETS["a non-loopback IP address"].search("127.0.0.1:7233")


@pytest.mark.parametrize("path", _committed_notebooks(), ids=lambda p: p.name)
def test_committed_notebooks_hold_no_secret_or_machine_path(path: Path) -> None:
    text = path.read_text()
    found = {what: m.group(0) for what, rx in SECRETS.items() if (m := rx.search(text))}
    assert found == {}, f"{path.name}: {found}"


# -- Temporal Cloud credentials ---------------------------------------------------------------------


@pytest.fixture
def clean_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """HOME, the working folder and the data folder in tmp_path, with no Temporal settings."""
    home = tmp_path / "home"
    (home / "work").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("SAGAKIT_DATA_DIR", str(home / ".sagakit"))
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(home / "temporal.toml"))
    for name in ("TEMPORAL_ADDRESS", "TEMPORAL_PROFILE", "TEMPORAL_API_KEY", "TEMPORAL_TLS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(home / "work")
    return home


def _files(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


async def test_an_api_key_from_the_environment_reaches_the_client_and_no_file(
    clean_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"test-key-{secrets.token_hex(8)}"
    monkeypatch.setenv("TEMPORAL_ADDRESS", SESSION_ADDRESS)
    monkeypatch.setenv("TEMPORAL_API_KEY", key)
    monkeypatch.setenv("TEMPORAL_TLS", "false")  # the local server stands in for the cloud
    before = _files(clean_home)
    client = await course.connect()
    assert client.service_client.config.api_key == key
    assert await client.service_client.check_health()
    assert _files(clean_home) == before, "connect() must not write anything"


async def test_an_api_key_from_a_profile_file_is_read_not_rewritten(
    clean_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"profile-key-{secrets.token_hex(8)}"
    config = clean_home / "temporal.toml"
    config.write_text(
        f'[profile.cloud]\naddress = "{SESSION_ADDRESS}"\napi_key = "{key}"\n'
        "[profile.cloud.tls]\ndisabled = true\n"
    )
    monkeypatch.setenv("TEMPORAL_PROFILE", "cloud")
    before = _files(clean_home)
    client = await course.connect()
    assert client.service_client.config.api_key == key
    assert _files(clean_home) == before


async def test_a_failed_connection_does_not_echo_the_key(
    clean_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = f"secret-{secrets.token_hex(8)}"
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    monkeypatch.setenv("TEMPORAL_API_KEY", key)
    with pytest.raises(ServerUnreachable) as raised:
        await course.connect(timeout=3)
    shown = [str(raised.value), repr(raised.value), str(raised.value.__cause__)]
    assert not any(key in text for text in shown)
    assert not any(key.encode() in data for data in _files(clean_home).values())


def test_sagakit_reads_credentials_only_through_envconfig() -> None:
    """No module of sagakit reads a key, certificate or token file of its own."""
    pattern = re.compile(r"API_KEY|api_key|client_private_key|\.pem\b|credentials")
    offenders = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "sagakit").rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if pattern.search(line)
    ]
    assert offenders == []


# -- the pid file: stop and status act only on this configuration's own server -----------------


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A live process that has nothing to do with Temporal (this test started it)."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _write_pid_file(config: DevServerConfig, pid: object) -> None:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    config.pid_path.write_text(json.dumps({"pid": pid, "port": config.port}))


@pytest.fixture
def signals_sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Record every real signal sagakit tries to send, and send none of them.

    ``kill(pid, 0)`` (the "does it exist?" question) still reaches the system for
    a positive pid, so that a mistaken ``stop`` can be seen, not suffered.
    """
    sent: list[tuple[int, int]] = []
    real_kill = os.kill

    def spy(pid: int, sig: int) -> None:
        if sig == 0:
            if pid > 0:
                real_kill(pid, 0)
            return
        sent.append((pid, sig))

    monkeypatch.setattr(os, "kill", spy)
    return sent


def test_stop_leaves_alone_a_process_that_a_stale_pid_file_names(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    config = DevServerConfig(port=free_port(), data_dir=tmp_path / "server")
    _write_pid_file(config, bystander.pid)
    server = DevServer(config)
    assert server.stop() is False
    time.sleep(0.3)
    assert bystander.poll() is None, "stop() signalled a process that is not its server"
    assert not config.pid_path.exists(), "the stale pid file is discarded"
    assert server.notice is not None
    assert f"pid {bystander.pid} is not this dev server" in server.notice
    assert "sleep 60" in server.notice
    assert "No process was signalled" in server.notice


@pytest.mark.parametrize(
    "pid",
    [0, -1, 2**70, 2**31, os.getpid(), "123", True, None],
    ids=["zero", "minus-one", "huge", "above-pid-max", "this-process", "text", "true", "null"],
)
def test_stop_signals_nothing_for_a_pid_file_naming_an_impossible_or_foreign_pid(
    tmp_path: Path, signals_sent: list[tuple[int, int]], pid: object
) -> None:
    config = DevServerConfig(port=free_port(), data_dir=tmp_path / "server")
    _write_pid_file(config, pid)
    server = DevServer(config)
    assert server.stop() is False
    assert signals_sent == []
    assert not config.pid_path.exists()
    assert server.notice is not None
    assert "No process was signalled" in server.notice


async def test_status_does_not_report_an_unrelated_process_as_the_server(
    private_server: DevServerConfig, bystander: subprocess.Popen[bytes]
) -> None:
    real_record = private_server.pid_path.read_text()
    try:
        _write_pid_file(private_server, bystander.pid)
        server = DevServer(private_server)
        status = await server.status()
        assert status.running
        assert status.pid is None, "status() named an unrelated process as the server"
        assert str(bystander.pid) not in status.describe()
        assert server.notice is not None
        assert "not this dev server" in server.notice
    finally:
        private_server.pid_path.write_text(real_record)
    assert bystander.poll() is None
    assert DevServer(private_server)._recorded_pid() == json.loads(real_record)["pid"]
