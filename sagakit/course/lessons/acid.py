"""Lesson 03: ACID 🧪 with a real database: atomicity ⚛️, consistency, isolation 📦, durability 🗿.

Everything here runs against SQLite files, so what the lesson shows is what a
real database does, not a simulation:

- **atomicity**: :func:`transfer_without_transaction` moves money with two
  separately committed statements and loses it when the second one fails;
  :func:`transfer` wraps both in one transaction and rolls back.
- **consistency**: the ``CHECK (balance >= 0)`` constraint makes the database
  refuse any transaction that would break that rule.
- **isolation**: :func:`interleave` runs the steps of several connections in an
  order you choose, one step at a time, so a lost update happens every time
  rather than once in a blue moon. :func:`deposit_read_modify_write` loses
  updates; :func:`deposit_locked` (``BEGIN IMMEDIATE``) and
  :func:`deposit_atomic` (``SET balance = balance + ?``) do not.
- **durability**: ``python -m sagakit.course.lessons.acid writer DB`` commits three
  orders, then keeps writing more inside an open transaction until it is
  killed; :func:`count_orders` shows what survived.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sagakit import ConfigurationError, SagakitError
from sagakit._sqlite import connect
from sagakit.course.display import Table

__all__ = [
    "BANK_SCHEMA",
    "ORDERS_SCHEMA",
    "STILL_WRITING",
    "InterleavingStuck",
    "OrderCounts",
    "Step",
    "TraceLine",
    "UnknownAccount",
    "balances",
    "count_orders",
    "credit",
    "deposit_atomic",
    "deposit_locked",
    "deposit_read_modify_write",
    "interleave",
    "main",
    "open_bank",
    "sql_step",
    "trace_table",
    "transfer",
    "transfer_without_transaction",
    "write_orders_until_killed",
]

BANK_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    name    TEXT PRIMARY KEY,
    balance INTEGER NOT NULL CHECK (balance >= 0)
);
"""
"""DDL of the bank: a balance can never go below zero (the database enforces it)."""


class UnknownAccount(SagakitError, LookupError):
    """A transfer named an account that does not exist."""


class InterleavingStuck(SagakitError):
    """The interleaved sessions stopped making progress (every one of them is waiting)."""


# --- atomicity ⚛️ and consistency ---------------------------------------------------------


def open_bank(path: str | Path, opening_balances: Mapping[str, int]) -> sqlite3.Connection:
    """Create (or reset) the bank at ``path`` with the given balances; return a connection.

    The connection is in autocommit mode: every statement outside an explicit
    ``BEGIN`` … ``COMMIT`` is committed at once, the default of JDBC, of
    database consoles and of many other drivers.
    """
    conn = connect(path)
    conn.executescript(BANK_SCHEMA)
    conn.execute("DELETE FROM accounts")
    conn.executemany("INSERT INTO accounts (name, balance) VALUES (?, ?)", opening_balances.items())
    return conn


def balances(conn: sqlite3.Connection) -> dict[str, int]:
    """Every account's balance, by name."""
    return dict(conn.execute("SELECT name, balance FROM accounts ORDER BY name").fetchall())


def credit(conn: sqlite3.Connection, name: str, amount: int) -> None:
    """Add ``amount`` to an account.

    Raises:
        UnknownAccount: there is no account called ``name``.
    """
    cursor = conn.execute(
        "UPDATE accounts SET balance = balance + ? WHERE name = ?", (amount, name)
    )
    if cursor.rowcount == 0:
        raise UnknownAccount(f"There is no account {name!r}: check the spelling of the name.")


def transfer_without_transaction(
    conn: sqlite3.Connection, source: str, target: str, amount: int
) -> None:
    """Move money with two statements that are each committed on their own (BROKEN).

    If the credit fails, the debit has already been committed: the money is gone.
    """
    conn.execute("UPDATE accounts SET balance = balance - ? WHERE name = ?", (amount, source))
    credit(conn, target, amount)


def transfer(conn: sqlite3.Connection, source: str, target: str, amount: int) -> None:
    """Move money inside one transaction: both updates are committed, or neither is."""
    conn.execute("BEGIN")
    try:
        conn.execute("UPDATE accounts SET balance = balance - ? WHERE name = ?", (amount, source))
        credit(conn, target, amount)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


# --- isolation 📦 ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    """One step of a session: a few statements that run without interruption."""

    name: str
    """What the step does, for the trace, for example ``"read balance"``."""

    run: Callable[[sqlite3.Connection], str]
    """Runs the step on the session's connection and says what happened."""


@dataclass(frozen=True)
class TraceLine:
    """What one turn of :func:`interleave` did."""

    turn: int
    """1 for the first turn."""

    session: str
    """The session that took the turn, for example ``"A"``."""

    step: str
    """The step it tried."""

    outcome: str
    """What the step reported, or why it had to wait."""


def interleave(
    path: str | Path,
    sessions: Mapping[str, Sequence[Step]],
    schedule: str,
    *,
    max_turns: int = 100,
) -> list[TraceLine]:
    """Run the sessions' steps on separate connections, one step per turn, in a chosen order.

    Each session gets its own connection to the database at ``path``, like
    two programs (or two threads) talking to it at once. ``schedule`` names
    the session of each turn, for example ``"ABAB"``; when it runs out, the
    sessions that still have steps take turns in order. A step that finds the
    database locked by another session is not lost: it waits and is tried
    again on its session's next turn, just as a driver's busy timeout would
    retry it.

    Args:
        path: the SQLite database file.
        sessions: the steps of each session, by session name (one letter each).
        schedule: session names, one per turn.
        max_turns: give up after this many turns.

    Raises:
        ConfigurationError: the schedule names a session that does not exist.
        InterleavingStuck: ``max_turns`` passed and some steps never ran.
    """
    unknown = sorted(set(schedule) - set(sessions))
    if unknown:
        raise ConfigurationError(
            f"The schedule {schedule!r} names sessions {unknown} that do not exist; use only "
            f"{sorted(sessions)}."
        )
    # No busy timeout: a session that meets another's lock is told so at once ("database is
    # locked"), and the trace shows it waiting, instead of the whole interleaving hanging.
    connections = {name: connect(path, busy_timeout=timedelta(0)) for name in sessions}
    next_step = dict.fromkeys(sessions, 0)
    trace: list[TraceLine] = []
    try:
        turns = iter(schedule)
        while any(next_step[name] < len(steps) for name, steps in sessions.items()):
            if len(trace) >= max_turns:
                raise InterleavingStuck(
                    f"After {max_turns} turns some steps have not run: every session is "
                    "waiting for another. Release locks (COMMIT or ROLLBACK) in your steps."
                )
            name = next(turns, None) or _next_unfinished(sessions, next_step, trace)
            steps = sessions[name]
            if next_step[name] >= len(steps):
                continue
            step = steps[next_step[name]]
            try:
                outcome = step.run(connections[name])
                next_step[name] += 1
            except sqlite3.OperationalError as err:
                if "locked" not in str(err):
                    raise
                outcome = f"waits: {err}"
            trace.append(TraceLine(len(trace) + 1, name, step.name, outcome))
    finally:
        for conn in connections.values():
            conn.close()
    return trace


def _next_unfinished(
    sessions: Mapping[str, Sequence[Step]], next_step: Mapping[str, int], trace: Sequence[TraceLine]
) -> str:
    """Round-robin over the sessions that still have steps, starting after the last turn's."""
    names = list(sessions)
    last = names.index(trace[-1].session) if trace else -1
    for offset in range(1, len(names) + 1):
        name = names[(last + offset) % len(names)]
        if next_step[name] < len(sessions[name]):
            return name
    raise AssertionError("called with every session finished")  # pragma: no cover


def trace_table(trace: Sequence[TraceLine], *, title: str | None = None) -> Table:
    """Show an interleaving as a table, one row per turn."""
    rows = [[line.turn, line.session, line.step, line.outcome] for line in trace]
    return Table(["turn", "session", "step", "outcome"], rows, title=title)


def deposit_read_modify_write(account: str, amount: int) -> list[Step]:
    """Deposit by reading the balance into Python, adding, and writing it back (BROKEN).

    Read and write are separate statements, each committed on its own, so
    another session can change the balance in between and its update is lost.
    """
    seen: dict[str, int] = {}

    def read(conn: sqlite3.Connection) -> str:
        (seen["balance"],) = conn.execute(
            "SELECT balance FROM accounts WHERE name = ?", (account,)
        ).fetchone()
        return f"balance is {seen['balance']}"

    def write(conn: sqlite3.Connection) -> str:
        new_balance = seen["balance"] + amount
        conn.execute("UPDATE accounts SET balance = ? WHERE name = ?", (new_balance, account))
        return f"set balance to {new_balance}"

    return [Step("read balance", read), Step(f"write balance + {amount}", write)]


def deposit_locked(account: str, amount: int) -> list[Step]:
    """The same read-modify-write, inside a ``BEGIN IMMEDIATE`` transaction.

    ``BEGIN IMMEDIATE`` takes the database's write lock before reading, so a
    second session cannot start its own read-modify-write until the first
    one commits: it waits, then reads the new balance.
    """
    steps = deposit_read_modify_write(account, amount)

    def begin(conn: sqlite3.Connection) -> str:
        conn.execute("BEGIN IMMEDIATE")
        return "holds the write lock"

    def commit(conn: sqlite3.Connection) -> str:
        conn.execute("COMMIT")
        return "committed, lock released"

    return [Step("BEGIN IMMEDIATE", begin), *steps, Step("COMMIT", commit)]


def deposit_atomic(account: str, amount: int) -> list[Step]:
    """Deposit with one statement that reads and writes: ``SET balance = balance + ?``."""
    return [
        sql_step(
            f"add {amount}",
            "UPDATE accounts SET balance = balance + ? WHERE name = ?",
            (amount, account),
        )
    ]


def sql_step(name: str, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Step:
    """A step that runs one SQL statement and reports how many rows it changed."""

    def run(conn: sqlite3.Connection) -> str:
        cursor = conn.execute(sql, params)
        return f"changed {cursor.rowcount} row" + ("" if cursor.rowcount == 1 else "s")

    return Step(name, run)


# --- durability 🗿 --------------------------------------------------------------------------

ORDERS_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    id      INTEGER PRIMARY KEY,
    status  TEXT NOT NULL,
    payload TEXT NOT NULL
);
"""
"""DDL of the orders table that the writer process fills."""

STILL_WRITING = "still writing"
"""The writer prints a line with these words once it is in the middle of its open transaction."""


@dataclass(frozen=True)
class OrderCounts:
    """What :func:`count_orders` found in the orders table."""

    committed: int
    """Rows written by transactions that committed."""

    uncommitted: int
    """Rows written by the transaction that never committed."""


def write_orders_until_killed(path: str | Path, *, committed: int = 3) -> None:
    """Commit ``committed`` orders, then keep writing inside an open transaction until killed.

    Each committed order is announced only after its ``COMMIT`` returned.
    The open transaction writes 2,000 rows quickly (more than the tiny page
    cache holds, so SQLite has to write some into the database file before
    the commit, backed by its rollback journal), announces
    :data:`STILL_WRITING`, then adds a row every 10 ms for up to a minute.
    It stops early if its parent process is gone.
    """
    parent = os.getppid()
    conn = connect(path)
    conn.execute("PRAGMA synchronous = FULL")  # fsync on every commit
    conn.execute("PRAGMA cache_size = 8")  # 8 pages: uncommitted pages spill into the file
    conn.execute("DROP TABLE IF EXISTS orders")  # start from an empty table on every run
    conn.executescript(ORDERS_SCHEMA)
    for number in range(1, committed + 1):
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO orders (status, payload) VALUES ('committed', ?)", (f"order {number}",)
        )
        conn.execute("COMMIT")
        print(f"committed order {number}", flush=True)
    conn.execute("BEGIN")
    for number in range(1, 8001):
        conn.execute("INSERT INTO orders (status, payload) VALUES ('uncommitted', ?)", ("x" * 200,))
        if number == 2000:
            print(f"{number} uncommitted orders written, {STILL_WRITING}", flush=True)
        if number > 2000:
            time.sleep(0.01)
            if os.getppid() != parent:
                break
    conn.execute("ROLLBACK")  # only reached if nobody killed us


def count_orders(path: str | Path) -> OrderCounts:
    """Open the orders database (recovering it if a writer died) and count its rows."""
    conn = connect(path)
    try:
        counts = dict(
            conn.execute("SELECT status, COUNT(*) FROM orders GROUP BY status").fetchall()
        )
    finally:
        conn.close()
    return OrderCounts(
        committed=int(counts.get("committed", 0)), uncommitted=int(counts.get("uncommitted", 0))
    )


def main(argv: Sequence[str]) -> None:
    """Run ``writer DB``: :func:`write_orders_until_killed` on the database file ``DB``."""
    if len(argv) != 2 or argv[0] != "writer":
        print("usage: python -m sagakit.course.lessons.acid writer DB", file=sys.stderr)
        raise SystemExit(2)
    write_orders_until_killed(argv[1])


if __name__ == "__main__":
    main(sys.argv[1:])
