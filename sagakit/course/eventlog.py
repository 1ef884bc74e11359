"""A tiny event store in SQLite, and the fold that turns events back into state.

Event sourcing 🎤 keeps the *changes* instead of the current state: every
change is appended to a log as an event ("Deposited 50"), and nothing is ever
updated or deleted. The current state is whatever you get by applying the
events in order to an initial state, a *fold*; the state at any earlier
moment comes from folding only the events up to that moment::

    store = EventStore("bank.db")
    store.append("alice", "Deposited", {"amount": 50})
    store.append("alice", "Withdrew", {"amount": 20})
    balance = fold(store.read("alice"), 0, apply_to_balance)   # 30

Each stream (an account, an order, a workflow) numbers its events 1, 2, 3...
:meth:`EventStore.append` can insist on the version it expects the stream to
be at, so two writers that both read version 4 cannot both append version 5:
the second gets :class:`VersionConflict` and must read again (optimistic
concurrency). Triggers make the table append-only.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from sagakit import ConfigurationError, SagakitError
from sagakit._sqlite import connect, immediate_transaction

__all__ = [
    "EVENTS_SCHEMA",
    "EventStore",
    "EventStoreError",
    "StoredEvent",
    "VersionConflict",
    "fold",
    "running_fold",
]

E = TypeVar("E")
S = TypeVar("S")

EVENTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    position    INTEGER PRIMARY KEY AUTOINCREMENT,
    stream      TEXT NOT NULL,
    version     INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    data        TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    UNIQUE (stream, version)
);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only: append a correcting event instead'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are append-only: append a correcting event instead'); END;
"""
"""DDL of the event table: one row per event, unique per (stream, version), append-only."""


class EventStoreError(SagakitError):
    """The event store refused an operation."""


class VersionConflict(EventStoreError):
    """Another writer appended to the stream since the caller read it."""


@dataclass(frozen=True)
class StoredEvent:
    """One event as the store recorded it."""

    stream: str
    """The stream it belongs to, for example an account name."""

    version: int
    """Its number within the stream: 1 for the first event."""

    kind: str
    """What happened, for example ``"Deposited"``."""

    data: Mapping[str, Any]
    """The details (JSON-compatible), for example ``{"amount": 50}``."""

    recorded_at: str
    """When it happened, ISO 8601 (UTC), as given to :meth:`EventStore.append`."""

    position: int = 0
    """Its position in the whole store, across streams: 1 for the first event ever."""


class EventStore:
    """An append-only log of events in one SQLite file.

    Every call opens its own connection, so a store can be shared by threads
    and processes.
    """

    def __init__(self, path: str | Path) -> None:
        """Open (creating if needed) the event store in the SQLite file ``path``.

        Raises:
            ConfigurationError: ``path`` names an in-memory database.
        """
        if str(path) in ("", ":memory:"):
            raise ConfigurationError(
                "EventStore needs a database file (each call opens a new connection, and an "
                "in-memory database would be empty every time); pass a path like 'events.db'."
            )
        self.path = Path(path)
        """The SQLite file."""
        with self._connection() as conn:
            conn.executescript(EVENTS_SCHEMA)

    def _connection(self) -> contextlib.closing[sqlite3.Connection]:
        return contextlib.closing(connect(self.path))

    def append(
        self,
        stream: str,
        kind: str,
        data: Mapping[str, Any] | None = None,
        *,
        expected_version: int | None = None,
        recorded_at: str | None = None,
    ) -> StoredEvent:
        """Append one event to ``stream`` and return it with its version.

        Args:
            stream: the stream to append to (it exists once it has an event).
            kind: what happened.
            data: the details, JSON-compatible.
            expected_version: the stream's version the caller based its
                decision on (0 for a new stream); ``None`` appends blindly.
            recorded_at: when it happened (ISO 8601, UTC); by default now.

        Raises:
            VersionConflict: the stream is not at ``expected_version``.
            ConfigurationError: ``data`` cannot be stored as JSON.
        """
        details = dict(data or {})
        try:
            encoded = json.dumps(details, sort_keys=True)
        except TypeError as err:
            raise ConfigurationError(
                f"The data of a {kind!r} event must be JSON-compatible: {err}. Store plain "
                "numbers, strings, lists and dicts."
            ) from err
        when = recorded_at or datetime.now(UTC).isoformat(timespec="milliseconds")
        # One write transaction: no other writer between reading the version and appending.
        with self._connection() as conn, immediate_transaction(conn):
            (current,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = ?", (stream,)
            ).fetchone()
            if expected_version is not None and current != expected_version:
                raise VersionConflict(
                    f"Stream {stream!r} is at version {current}, not {expected_version}: "
                    "someone appended in the meantime. Read the stream again, decide again, "
                    "and append with the new version."
                )
            cursor = conn.execute(
                "INSERT INTO events (stream, version, kind, data, recorded_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (stream, current + 1, kind, encoded, when),
            )
        return StoredEvent(stream, current + 1, kind, details, when, int(cursor.lastrowid or 0))

    def read(
        self,
        stream: str,
        *,
        up_to_version: int | None = None,
        until: str | None = None,
    ) -> list[StoredEvent]:
        """Return the events of ``stream`` in order, optionally only the early ones.

        Args:
            stream: the stream to read.
            up_to_version: only events with this version or lower.
            until: only events recorded at or before this ISO 8601 time (or date).
        """
        query = (
            "SELECT stream, version, kind, data, recorded_at, position FROM events WHERE stream = ?"
        )
        params: list[Any] = [stream]
        if up_to_version is not None:
            query += " AND version <= ?"
            params.append(up_to_version)
        if until is not None:
            query += " AND recorded_at <= ?"
            params.append(until)
        with self._connection() as conn:
            rows = conn.execute(query + " ORDER BY version", params).fetchall()
        return [
            StoredEvent(stream, version, kind, json.loads(data), at, position)
            for stream, version, kind, data, at, position in rows
        ]

    def version(self, stream: str) -> int:
        """The version of the stream's last event, 0 if it has none."""
        with self._connection() as conn:
            (current,) = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM events WHERE stream = ?", (stream,)
            ).fetchone()
        return int(current)

    def streams(self) -> list[str]:
        """The names of all streams, sorted."""
        with self._connection() as conn:
            rows = conn.execute("SELECT DISTINCT stream FROM events ORDER BY stream").fetchall()
        return [name for (name,) in rows]


def fold(events: Iterable[E], initial: S, apply: Callable[[S, E], S]) -> S:
    """Apply each event in order to the state, starting from ``initial``; return the last state."""
    state = initial
    for event in events:
        state = apply(state, event)
    return state


def running_fold(events: Iterable[E], initial: S, apply: Callable[[S, E], S]) -> list[tuple[E, S]]:
    """Like :func:`fold`, but return every event with the state right after it."""
    states = []
    state = initial
    for event in events:
        state = apply(state, event)
        states.append((event, state))
    return states
