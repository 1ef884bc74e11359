"""Lesson 10: keys expire; retries may not. A retry that arrives after its key expired charges again.

- :class:`CardActivities` charges a card through an :class:`~sagakit.IdempotencyStore`
  whose keys live for ``retention``. Its first attempt loses the reply *after* the
  charge (the card network took the money, the answer never came back). Every
  charge is a row in a small SQLite ledger.
- :class:`LateRetryWorkflow` makes the key once and calls the activity with a
  retry policy whose first retry comes ``retry_after`` later (two hours by default).
- :func:`charge_with_late_retry` runs one payment and counts the charges. On the
  time-skipping test server the two-hour wait takes no real time.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from sagakit import IdempotencyOptions, IdempotencyStore, key_from_parts, running_worker
from sagakit._sqlite import connect

# Helpers, not workflow code: the sandbox takes them from the worker's own imports instead of
# importing them afresh for every workflow run.
with workflow.unsafe.imports_passed_through():
    from sagakit.course.logs import quiet_expected_failures

__all__ = [
    "REPLY_LOST",
    "CardActivities",
    "CardCharge",
    "LateRetryInput",
    "LateRetryWorkflow",
    "charge_with_late_retry",
]

REPLY_LOST = "ReplyLost"
"""The ``type`` of the error the first attempt raises after it charged."""


@dataclass(frozen=True)
class CardCharge:
    """One card charge, as sent by the workflow on every attempt."""

    key: str
    """The idempotency key, made once by the workflow."""
    customer: str
    """Whose card."""
    amount: int
    """How much."""


@dataclass(frozen=True)
class LateRetryInput:
    """One order to pay, and how the step is retried."""

    order_id: str
    """The order; the key is ``charge/<order_id>``."""
    amount: int = 80
    """How much to charge."""
    retry_after_s: float = 2 * 3600
    """Wait before the first retry, in seconds: two hours."""
    horizon_s: float = 3 * 3600
    """The step's whole retry horizon (its ``schedule_to_close_timeout``), in seconds."""


@workflow.defn
class LateRetryWorkflow:
    """Charge a card once for an order, with a key, and a retry that may come late."""

    @workflow.run
    async def run(self, order: LateRetryInput) -> str:
        """Charge through the card activity; every attempt sends the same key."""
        charge = CardCharge(key_from_parts("charge", order.order_id), "alice", order.amount)
        return await workflow.execute_activity_method(
            CardActivities.charge_card,
            charge,
            start_to_close_timeout=timedelta(seconds=10),
            schedule_to_close_timeout=timedelta(seconds=order.horizon_s),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=order.retry_after_s),
                maximum_attempts=3,
            ),
        )


@contextlib.contextmanager
def _ledger(path: Path) -> Iterator[sqlite3.Connection]:
    with contextlib.closing(connect(path)) as conn:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS charges "
            "(id INTEGER PRIMARY KEY, key TEXT NOT NULL, amount INTEGER NOT NULL, attempt INTEGER)"
        )
        yield conn


class CardActivities:
    """A card network behind an idempotency store whose keys live for ``retention``.

    Args:
        folder: Where the ledger (``card.db``) and the keys (``keys.db``) are kept.
        retention: How long the store keeps a key after its last use.
    """

    def __init__(self, folder: str | Path, retention: timedelta) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.ledger_path = self.folder / "card.db"
        self.keys_path = self.folder / "keys.db"
        self.options = IdempotencyOptions(retention=retention)
        with _ledger(self.ledger_path):
            pass

    def charges(self, key: str | None = None) -> int:
        """How many times the card was charged (for one key, or in all)."""
        with _ledger(self.ledger_path) as conn:
            if key is None:
                (n,) = conn.execute("SELECT COUNT(*) FROM charges").fetchone()
            else:
                (n,) = conn.execute("SELECT COUNT(*) FROM charges WHERE key = ?", (key,)).fetchone()
        return int(n)

    @activity.defn(name="charge_card")
    def charge_card(self, charge: CardCharge) -> str:
        """Charge the card once per live key; the first attempt loses its reply after charging."""
        info = activity.info()
        # The store's clock decides when a key has expired, so it must follow the
        # server's clock. The wall clock does not move during a skipped two-hour wait:
        # with it the key would never expire on the time-skipping server. The time the
        # server started this attempt does, skipped time included. (Not
        # current_attempt_scheduled_time: the test server stamps a retry with the moment
        # it was decided, before the two-hour backoff.) An attempt lasts milliseconds,
        # so the store reads that one moment as "now" for the whole attempt.
        started: datetime = info.started_time
        store = IdempotencyStore(self.keys_path, self.options, clock=lambda: started)

        def charge_once() -> str:
            with _ledger(self.ledger_path) as conn:
                cursor = conn.execute(
                    "INSERT INTO charges (key, amount, attempt) VALUES (?, ?, ?)",
                    (charge.key, charge.amount, info.attempt),
                )
            return f"ch_{cursor.lastrowid}"

        request: dict[str, Any] = {"customer": charge.customer, "amount": charge.amount}
        receipt = store.run(charge.key, request, charge_once)
        if info.attempt == 1:  # charged, then the reply is lost on the way back
            raise ApplicationError("the card network's reply was lost", type=REPLY_LOST)
        return receipt


async def charge_with_late_retry(
    client: Client,
    folder: str | Path,
    *,
    retention: timedelta,
    order: LateRetryInput,
    workflow_id: str,
    task_queue: str = "lesson-10-expiry",
) -> int:
    """Pay ``order`` with keys kept for ``retention``; return how often the card was charged.

    Use the client of a time-skipping test server (``sagakit.testing``), or wait
    for real the ``order.retry_after_s`` seconds. The first attempt's lost reply is
    on purpose, so the worker's warning about it is not logged.
    """
    cards = CardActivities(folder, retention)
    with quiet_expected_failures():  # the lost reply is on purpose
        async with running_worker(
            client,
            task_queue=task_queue,
            workflows=[LateRetryWorkflow],
            activities=[cards.charge_card],
        ):
            await client.execute_workflow(
                LateRetryWorkflow.run,
                order,
                id=workflow_id,
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
            )
    return cards.charges(key_from_parts("charge", order.order_id))
