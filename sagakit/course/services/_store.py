"""SQLite plumbing shared by the simulated services (private).

Every operation opens its own connection (through :func:`sagakit._sqlite.connect`),
so the services are safe to call from many worker threads and from several
processes at once. Writes run in a ``BEGIN IMMEDIATE`` transaction: SQLite then
takes the write lock up front, and the busy timeout makes a second writer wait
for it instead of failing. The file is in WAL mode, so readers never wait for
writers.

:func:`run_once` is where idempotency keys are honoured: the key's row, the
effect and its ledger entry commit together or not at all.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sagakit import ConfigurationError
from sagakit._sqlite import connect, immediate_transaction
from sagakit.course.services.errors import IdempotencyKeyReused

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R", bound="DataclassInstance")


def as_path(path: str | os.PathLike[str]) -> Path:
    """Return ``path`` as a :class:`Path`, refusing SQLite's in-memory names."""
    text = os.fspath(path)
    if text == ":memory:" or text == "" or text.startswith("file::memory:"):
        raise ConfigurationError(
            "The simulated services need a database FILE (each call opens a new connection, "
            "and an in-memory database would be empty every time); pass a path such as "
            "'world.db' or tmp_path / 'world.db'."
        )
    return Path(text)


def now() -> str:
    """Return the current UTC time as an ISO 8601 string with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@contextlib.contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    """Yield a fresh connection for reads (rows by column name); it is closed afterwards."""
    with contextlib.closing(connect(path, rows_by_name=True)) as conn:
        yield conn


@contextlib.contextmanager
def writing(path: Path) -> Iterator[sqlite3.Connection]:
    """Yield a connection inside one ``BEGIN IMMEDIATE`` transaction.

    The transaction commits when the block ends normally and rolls back when it
    raises, so a refused request leaves no trace.
    """
    with reading(path) as conn, immediate_transaction(conn):
        yield conn


def stocked_file(path: str | os.PathLike[str], *, meta: str, what: str, hint: str) -> Path:
    """Return ``path`` if it is a file that a service created and stocked; refuse anything else.

    A stocked file has a row in its ``meta`` table (``world_meta``, ``shop_meta``).
    The file is only read: a checker given a mistyped path must not create,
    seed or change anything, and report a fresh file as consistent.

    Args:
        path: The file to check.
        meta: The table its owner writes when it stocks the file.
        what: What the file should hold, for the message (``"world"``, ``"shop"``).
        hint: What to pass instead, for the message.

    Raises:
        ConfigurationError: No file is there, or it is not a stocked ``what`` file.
    """
    found = as_path(path)
    if not found.is_file():
        raise ConfigurationError(
            f"No {what} file at {os.fspath(path)!r}, so there is nothing to check. {hint}"
        )
    try:
        with reading(found) as conn:
            stocked = conn.execute(f"SELECT 1 FROM {meta} LIMIT 1").fetchone() is not None
    except sqlite3.DatabaseError:  # not SQLite, or SQLite without the table
        stocked = False
    if not stocked:
        raise ConfigurationError(
            f"{os.fspath(path)!r} is not a {what} file (nothing ever stocked a {what} in it), "
            f"so there is nothing to check; the file was left as it was. {hint}"
        )
    return found


def requests_table(name: str) -> str:
    """Return the DDL of a service's table of idempotency keys.

    A key is scoped to one operation, as if each operation (booking a hotel,
    booking a flight, ...) were its own service: one trip's key may be sent to
    all three booking steps. The primary key is the UNIQUE constraint that makes
    a second effect for the same operation and key impossible, even if two
    requests race.
    """
    return f"""
    CREATE TABLE IF NOT EXISTS {name} (
        operation       TEXT NOT NULL,
        idempotency_key TEXT NOT NULL,
        request         TEXT NOT NULL,
        result          TEXT NOT NULL,
        first_seen      TEXT NOT NULL,
        replays         INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (operation, idempotency_key)
    );
    """


def run_once(
    conn: sqlite3.Connection,
    *,
    table: str,
    idempotency_key: str | None,
    operation: str,
    request: dict[str, Any],
    result_type: type[R],
    effect: Callable[[], R],
) -> R:
    """Do ``effect`` once per operation and idempotency key, inside the caller's transaction.

    Without a key the effect simply runs. With a key this operation has seen
    before, the first result comes back and nothing else happens (the row's
    ``replays`` count goes up). A business error raised by ``effect`` rolls
    everything back and stores nothing, so the same key may be tried again later.

    Raises:
        IdempotencyKeyReused: This operation first saw the key with other arguments.
    """
    if idempotency_key is None:
        return effect()
    fingerprint = json.dumps(request, sort_keys=True)
    row = conn.execute(
        f"SELECT request, result FROM {table} WHERE operation = ? AND idempotency_key = ?",
        (operation, idempotency_key),
    ).fetchone()
    if row is not None:
        if row["request"] != fingerprint:
            raise IdempotencyKeyReused(
                f"Idempotency key {idempotency_key!r} was first sent to {operation} with "
                f"{row['request']}, and now with {fingerprint}. A key names ONE request: "
                "build it from what identifies that request (e.g. the trip id)."
            )
        conn.execute(
            f"UPDATE {table} SET replays = replays + 1 WHERE operation = ? AND idempotency_key = ?",
            (operation, idempotency_key),
        )
        return result_type(**json.loads(row["result"]))
    result = effect()
    conn.execute(
        f"INSERT INTO {table} (operation, idempotency_key, request, result, first_seen)"
        " VALUES (?, ?, ?, ?, ?)",
        (operation, idempotency_key, fingerprint, json.dumps(asdict(result)), now()),
    )
    return result


def seen(conn: sqlite3.Connection, *, table: str, operation: str, idempotency_key: str) -> bool:
    """Whether ``operation`` already ran (and committed) under ``idempotency_key``."""
    row = conn.execute(
        f"SELECT 1 FROM {table} WHERE operation = ? AND idempotency_key = ?",
        (operation, idempotency_key),
    ).fetchone()
    return row is not None


def record(
    conn: sqlite3.Connection,
    *,
    service: str,
    operation: str,
    entity: str,
    amount: int,
    idempotency_key: str | None,
    reference: str = "",
    detail: str = "",
) -> None:
    """Append one effect to the ledger, inside the caller's transaction."""
    conn.execute(
        "INSERT INTO ledger (at, service, operation, entity, amount, idempotency_key,"
        " reference, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (now(), service, operation, entity, amount, idempotency_key, reference, detail),
    )


def check_positive(what: str, value: int) -> None:
    """Raise :class:`ConfigurationError` unless ``value`` is a whole number above 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigurationError(f"{what} must be a whole number above 0, got {value!r}.")
