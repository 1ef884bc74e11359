"""One way to open SQLite files, for the idempotency store and every course database.

Each caller opens its own short-lived connection (threads and processes may
share the file), in autocommit mode with explicit transactions, and waits up to
``busy_timeout`` for another writer's lock instead of failing at once.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from datetime import timedelta

__all__ = ["DEFAULT_BUSY_TIMEOUT", "connect", "enable_wal", "immediate_transaction"]

DEFAULT_BUSY_TIMEOUT = timedelta(seconds=30)
"""How long a connection waits for another writer's lock before it reports 'database is locked'."""


def connect(
    path: str | os.PathLike[str],
    *,
    busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT,
    rows_by_name: bool = False,
) -> sqlite3.Connection:
    """Open ``path`` in autocommit mode with a busy timeout.

    Args:
        path: the database file.
        busy_timeout: how long to wait for another writer's lock.
        rows_by_name: return rows as :class:`sqlite3.Row` (columns by name).
    """
    conn = sqlite3.connect(path, timeout=busy_timeout.total_seconds(), isolation_level=None)
    if rows_by_name:
        conn.row_factory = sqlite3.Row
    return conn


@contextlib.contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block in one ``BEGIN IMMEDIATE`` transaction.

    SQLite takes the write lock up front, so two read-modify-write blocks never
    lose an update; the block commits when it ends normally and rolls back when
    it raises.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def enable_wal(conn: sqlite3.Connection, *, busy_timeout: timedelta = DEFAULT_BUSY_TIMEOUT) -> None:
    """Switch the file to WAL mode (readers never wait for the writer).

    Several processes creating the same new file at once can see 'database is
    locked' from this pragma at once, without SQLite's busy handler; it is
    retried until ``busy_timeout``.
    """
    deadline = time.monotonic() + busy_timeout.total_seconds()
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
