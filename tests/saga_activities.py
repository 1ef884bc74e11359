"""Activities for the saga tests: each one writes what it did to a SQLite ledger file.

The ledger is the test's eye on the worker: rows get increasing ids, so their
order is the order in which the activities did things. No module-level state.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from temporalio import activity
from temporalio.exceptions import ApplicationError

GATE_WAIT_S = 60.0
"""Longest a gated compensation waits for the test to open its gate."""


@dataclass(frozen=True)
class StepCall:
    """Input of every test activity."""

    ledger: str
    """Path of the SQLite file to record into."""
    name: str
    """Name of the step (``"hotel"``, ``"flight"``, ...)."""
    behaviour: str = "ok"
    """Steps: ``ok``, ``fail``, ``block``. Undos: ``ok``, ``flaky``, ``broken``, ``gate``,
    ``until_fixed`` (fails at once, retryably, until the test opens the step's gate)."""
    fail_times: int = 0
    """For a ``flaky`` undo: how many attempts fail before one succeeds."""


def create_ledger(path: Path) -> str:
    """Create an empty ledger file and return its path as a string."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " kind TEXT NOT NULL, name TEXT NOT NULL, attempt INTEGER NOT NULL)"
        )
        db.execute("CREATE TABLE gates (name TEXT PRIMARY KEY)")
    return str(path)


def record(ledger: str, kind: str, name: str, attempt: int = 1) -> None:
    """Append one event to the ledger."""
    with sqlite3.connect(ledger, timeout=10) as db:
        db.execute(
            "INSERT INTO events (kind, name, attempt) VALUES (?, ?, ?)", (kind, name, attempt)
        )


def events(ledger: str, kind: str | None = None) -> list[tuple[str, str, int]]:
    """All events (of one kind, if given) in the order they happened."""
    with sqlite3.connect(ledger, timeout=10) as db:
        rows = db.execute("SELECT kind, name, attempt FROM events ORDER BY id").fetchall()
    return [(k, n, a) for k, n, a in rows if kind is None or k == kind]


def names(ledger: str, kind: str) -> list[str]:
    """Names of the events of one kind, in order."""
    return [name for _, name, _ in events(ledger, kind)]


def open_gate(ledger: str, name: str) -> None:
    """Let the gated compensation of step ``name`` finish."""
    with sqlite3.connect(ledger, timeout=10) as db:
        db.execute("INSERT INTO gates (name) VALUES (?)", (name,))


def _gate_is_open(ledger: str, name: str) -> bool:
    with sqlite3.connect(ledger, timeout=10) as db:
        return db.execute("SELECT 1 FROM gates WHERE name = ?", (name,)).fetchone() is not None


@activity.defn
def do_step(call: StepCall) -> str:
    """A forward step: records itself, then succeeds or fails for good."""
    record(call.ledger, "do", call.name, activity.info().attempt)
    if call.behaviour == "fail":
        raise ApplicationError(f"{call.name} is sold out", type="StepFailed", non_retryable=True)
    return call.name


@activity.defn
async def block_step(call: StepCall) -> str:
    """A forward step that runs until it is cancelled (it heartbeats to hear the cancel)."""
    record(call.ledger, "do", call.name, activity.info().attempt)
    for _ in range(int(GATE_WAIT_S / 0.05)):
        activity.heartbeat()
        await asyncio.sleep(0.05)
    raise ApplicationError("block_step was never cancelled", non_retryable=True)


@activity.defn
def undo_step(call: StepCall) -> None:
    """A compensation: records its start and end; can be flaky, broken or gated."""
    attempt = activity.info().attempt
    record(call.ledger, "undo-start", call.name, attempt)
    if call.behaviour == "flaky" and attempt <= call.fail_times:
        raise ApplicationError(f"undo of {call.name}: attempt {attempt} failed", type="Flaky")
    if call.behaviour == "broken":
        raise ApplicationError(
            f"undo of {call.name} is impossible", type="UndoBroken", non_retryable=True
        )
    if call.behaviour == "until_fixed" and not _gate_is_open(call.ledger, call.name):
        raise ApplicationError(f"undo of {call.name}: the airline is down", type="UndoDown")
    if call.behaviour == "gate":
        deadline = time.monotonic() + GATE_WAIT_S
        while not _gate_is_open(call.ledger, call.name):
            if time.monotonic() > deadline:
                raise ApplicationError("the test never opened the gate", non_retryable=True)
            time.sleep(0.05)
    record(call.ledger, "undo-end", call.name, attempt)


@activity.defn
async def undo_step_async(call: StepCall, note: str = "") -> None:
    """An ``async`` compensation activity: records ``undo-start`` and ``undo-end`` (attempt 1).

    It calls ``activity.info()``, which raises outside an activity: run inside a
    workflow by mistake, it could not record anything.
    """
    attempt = activity.info().attempt
    record(call.ledger, "undo-start", call.name + note, attempt)
    record(call.ledger, "undo-end", call.name + note, attempt)


ACTIVITIES = [do_step, block_step, undo_step, undo_step_async]
"""Every activity the saga test workflows call."""
