"""Lesson 04: durable execution 🔜, idempotent functions 🥪 and deterministic functions 🧮.

Three small programs, one per term:

- :class:`OrderWorkflow` runs five steps, one activity each. Every step writes a
  ``started`` and a ``completed`` row to a SQLite *step log*, with its attempt
  number and the id of the worker process that ran it. The lesson runs the
  worker in its own process (``python -m sagakit.course.lessons.durable worker
  TASK_QUEUE``), kills it with SIGKILL in the middle of a step, starts a new
  one, and reads the step log: no completed step ran twice.
- :class:`CheckoutWorkflow` charges a card through a payment call whose first
  reply is lost, so Temporal retries it. :func:`charge_card` then charges
  twice; :func:`charge_card_once` carries an idempotency key and charges once.
- Three dispatch workflows decide between same-day and next-day shipping by
  looking at the clock. :class:`SandboxedClockWorkflow` calls
  ``datetime.now()`` and the workflow sandbox stops it;
  :class:`UnsafeClockWorkflow` switches the sandbox off and later fails to
  replay; :class:`DispatchWorkflow` uses ``workflow.now()`` and
  ``workflow.random()`` and replays cleanly.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from sagakit import SagakitError
    from sagakit._sqlite import connect
    from sagakit.course._polling import poll_until
    from sagakit.course.display import Table

__all__ = [
    "ORDER_STEPS",
    "Checkout",
    "CheckoutWorkflow",
    "Dispatch",
    "DispatchWorkflow",
    "OrderInput",
    "OrderWorkflow",
    "SandboxedClockWorkflow",
    "StepInput",
    "StepLogTimeout",
    "StepRecord",
    "UnsafeClockWorkflow",
    "charge_card",
    "charge_card_once",
    "create_ledger",
    "create_step_log",
    "email_receipt",
    "hand_to_courier",
    "ledger_rows",
    "main",
    "pack_parcel",
    "read_step_log",
    "reserve_stock",
    "ship_today",
    "ship_tomorrow",
    "step_log_table",
    "steps_completed_more_than_once",
    "take_payment",
    "wait_for_step",
]

FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=2.0)
"""Retry quickly (100 ms, then 200 ms, 400 ms, ...) so the lesson does not wait for the defaults."""


# --- durable execution 🔜 ----------------------------------------------------------------

STEP_LOG_SCHEMA = """
CREATE TABLE IF NOT EXISTS step_log (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow_id TEXT NOT NULL,
    step        TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    pid         INTEGER NOT NULL,
    event       TEXT NOT NULL CHECK (event IN ('started', 'completed'))
);
"""
"""DDL of the step log: one row when a step starts and one when it completes."""


class StepLogTimeout(SagakitError):
    """The step log did not show the expected row in time."""


@dataclass(frozen=True)
class OrderInput:
    """Input of :class:`OrderWorkflow`."""

    order_id: str
    """The order being processed, for people reading the log."""

    step_log: str
    """Path of the SQLite step log (create it with :func:`create_step_log`)."""

    step_seconds: float = 0.5
    """How long each step works, so there is time to kill a worker in the middle of one."""

    step_timeout_seconds: float = 2.0
    """How long an attempt may take before Temporal gives up on it and retries."""


@dataclass(frozen=True)
class StepInput:
    """Input of every order step."""

    workflow_id: str
    """The workflow the step belongs to."""

    step_log: str
    """Path of the SQLite step log."""

    seconds: float
    """How long the step works."""


@dataclass(frozen=True)
class StepRecord:
    """One row of the step log."""

    id: int
    """Position in the log, 1 for the first row."""

    workflow_id: str
    """The workflow that ran the step."""

    step: str
    """The step's activity name, for example ``"pack_parcel"``."""

    attempt: int
    """Temporal's attempt number for the step (1 unless it was retried)."""

    pid: int
    """The id of the worker process that ran the attempt."""

    event: str
    """``"started"`` or ``"completed"``."""


_connect = connect  # the activities shown in lesson 04 open their files by this name


def create_step_log(path: str | Path) -> Path:
    """Create an empty step log at ``path`` (emptying an existing one) and return its path."""
    conn = _connect(path)
    try:
        conn.executescript(STEP_LOG_SCHEMA)
        conn.execute("DELETE FROM step_log")
    finally:
        conn.close()
    return Path(path)


def _log_step(step: StepInput, name: str, event: str) -> None:
    conn = _connect(step.step_log)
    try:
        conn.execute(
            "INSERT INTO step_log (workflow_id, step, attempt, pid, event) VALUES (?, ?, ?, ?, ?)",
            (step.workflow_id, name, activity.info().attempt, os.getpid(), event),
        )
    finally:
        conn.close()


def _perform(step: StepInput) -> str:
    name = activity.info().activity_type
    _log_step(step, name, "started")
    time.sleep(step.seconds)  # the step's real work would happen here
    _log_step(step, name, "completed")
    return name


@activity.defn
def reserve_stock(step: StepInput) -> str:
    """Step 1: put the ordered items aside in the warehouse."""
    return _perform(step)


@activity.defn
def take_payment(step: StepInput) -> str:
    """Step 2: take the customer's payment."""
    return _perform(step)


@activity.defn
def pack_parcel(step: StepInput) -> str:
    """Step 3: pack the items into a parcel."""
    return _perform(step)


@activity.defn
def hand_to_courier(step: StepInput) -> str:
    """Step 4: hand the parcel to the courier."""
    return _perform(step)


@activity.defn
def email_receipt(step: StepInput) -> str:
    """Step 5: email the customer a receipt."""
    return _perform(step)


ORDER_STEPS: tuple[Callable[[StepInput], str], ...] = (
    reserve_stock,
    take_payment,
    pack_parcel,
    hand_to_courier,
    email_receipt,
)
"""The steps of :class:`OrderWorkflow`, in order."""


@workflow.defn
class OrderWorkflow:
    """Workflow: run the order's five steps one after the other and return their names."""

    @workflow.run
    async def run(self, order: OrderInput) -> list[str]:
        """Run every step; a step whose attempt dies or times out is retried."""
        step_input = StepInput(
            workflow_id=workflow.info().workflow_id,
            step_log=order.step_log,
            seconds=order.step_seconds,
        )
        done = []
        for step in ORDER_STEPS:
            done.append(
                await workflow.execute_activity(
                    step,
                    step_input,
                    start_to_close_timeout=timedelta(seconds=order.step_timeout_seconds),
                    retry_policy=FAST_RETRY,
                )
            )
        return done


def read_step_log(path: str | Path, workflow_id: str | None = None) -> list[StepRecord]:
    """Return the rows of the step log in the order they were written.

    Args:
        path: the step log.
        workflow_id: only the rows of this workflow; by default all rows.
    """
    conn = _connect(path)
    try:
        query = "SELECT id, workflow_id, step, attempt, pid, event FROM step_log"
        params: tuple[str, ...] = ()
        if workflow_id is not None:
            query += " WHERE workflow_id = ?"
            params = (workflow_id,)
        rows = conn.execute(query + " ORDER BY id", params).fetchall()
    finally:
        conn.close()
    return [StepRecord(*row) for row in rows]


async def wait_for_step(
    path: str | Path,
    workflow_id: str,
    step: str,
    *,
    event: str = "started",
    timeout: float = 30.0,
) -> StepRecord:
    """Wait until the step log has an ``event`` row for ``step`` of ``workflow_id``; return it.

    Raises:
        StepLogTimeout: no such row appeared within ``timeout`` seconds.
    """

    async def logged() -> StepRecord | None:
        rows = read_step_log(path, workflow_id)
        return next((r for r in rows if r.step == step and r.event == event), None)

    return await poll_until(
        logged,
        timeout=timeout,
        what=f"a {event!r} row for step {step!r} of {workflow_id!r}",
        timed_out=lambda: StepLogTimeout(
            f"The step log shows no {event!r} row for step {step!r} of {workflow_id!r} "
            f"after {timeout:g} s. Is a worker polling the workflow's task queue?"
        ),
    )


def steps_completed_more_than_once(records: Sequence[StepRecord]) -> list[str]:
    """Return the steps that have more than one ``completed`` row (none, if all went well)."""
    completed = [r.step for r in records if r.event == "completed"]
    return sorted({step for step in completed if completed.count(step) > 1})


def step_log_table(records: Sequence[StepRecord], *, title: str | None = None) -> Table:
    """Show step-log rows with workers numbered 1, 2, ... in the order they first appear.

    Process ids change on every run; the worker numbers do not.
    """
    workers: dict[int, int] = {}
    rows = []
    for record in records:
        worker = workers.setdefault(record.pid, len(workers) + 1)
        rows.append([record.id, record.step, record.attempt, f"worker {worker}", record.event])
    return Table(["row", "step", "attempt", "ran on", "event"], rows, title=title)


# --- idempotent functions 🥪 -------------------------------------------------------------

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id        TEXT NOT NULL,
    amount_cents    INTEGER NOT NULL,
    idempotency_key TEXT UNIQUE
);
"""
"""DDL of the payment ledger: one row per charge the card company made."""


@dataclass(frozen=True)
class Checkout:
    """Input of :class:`CheckoutWorkflow`."""

    order_id: str
    """The order to pay for."""

    amount_cents: int
    """How much to charge, in cents."""

    ledger: str
    """Path of the SQLite payment ledger (create it with :func:`create_ledger`)."""

    idempotent: bool
    """Charge with :func:`charge_card_once` (True) or :func:`charge_card` (False)."""

    lose_first_reply: bool = True
    """Make the first attempt fail after charging, as if the reply got lost on the network."""


@dataclass(frozen=True)
class ChargeRequest:
    """Input of the charge activities."""

    order_id: str
    """The order to pay for."""

    amount_cents: int
    """How much to charge, in cents."""

    ledger: str
    """Path of the payment ledger."""

    idempotency_key: str
    """Names this charge: every retry of it carries the same key."""

    lose_first_reply: bool
    """Fail attempt 1 after the charge went through."""


def create_ledger(path: str | Path) -> Path:
    """Create an empty payment ledger at ``path`` (emptying an existing one) and return its path."""
    conn = _connect(path)
    try:
        conn.executescript(LEDGER_SCHEMA)
        conn.execute("DELETE FROM charges")
    finally:
        conn.close()
    return Path(path)


def ledger_rows(path: str | Path) -> list[tuple[int, str, int, str | None]]:
    """Return every charge as ``(id, order_id, amount_cents, idempotency_key)``."""
    conn = _connect(path)
    try:
        rows = conn.execute(
            "SELECT id, order_id, amount_cents, idempotency_key FROM charges ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [(int(a), str(b), int(c), d) for a, b, c, d in rows]


def _maybe_lose_reply(request: ChargeRequest) -> None:
    if request.lose_first_reply and activity.info().attempt == 1:
        raise ConnectionResetError(
            "connection reset by peer: the card was charged, but the reply never arrived"
        )


@activity.defn
def charge_card(request: ChargeRequest) -> int:
    """Charge the card: every call adds a charge to the ledger. NOT idempotent."""
    conn = _connect(request.ledger)
    try:
        cursor = conn.execute(
            "INSERT INTO charges (order_id, amount_cents) VALUES (?, ?)",
            (request.order_id, request.amount_cents),
        )
        charge_id = cursor.lastrowid
    finally:
        conn.close()
    _maybe_lose_reply(request)
    return int(charge_id or 0)


@activity.defn
def charge_card_once(request: ChargeRequest) -> int:
    """Charge the card once per idempotency key; a repeated call returns the first charge."""
    conn = _connect(request.ledger)
    try:
        conn.execute(
            "INSERT INTO charges (order_id, amount_cents, idempotency_key) VALUES (?, ?, ?) "
            "ON CONFLICT (idempotency_key) DO NOTHING",
            (request.order_id, request.amount_cents, request.idempotency_key),
        )
        (charge_id,) = conn.execute(
            "SELECT id FROM charges WHERE idempotency_key = ?", (request.idempotency_key,)
        ).fetchone()
    finally:
        conn.close()
    _maybe_lose_reply(request)
    return int(charge_id)


@workflow.defn
class CheckoutWorkflow:
    """Workflow: charge the card for an order (retried until the charge call succeeds)."""

    @workflow.run
    async def run(self, checkout: Checkout) -> int:
        """Charge and return the charge id that the payment call finally returned."""
        request = ChargeRequest(
            order_id=checkout.order_id,
            amount_cents=checkout.amount_cents,
            ledger=checkout.ledger,
            idempotency_key=f"{workflow.info().workflow_id}/charge",
            lose_first_reply=checkout.lose_first_reply,
        )
        charge = charge_card_once if checkout.idempotent else charge_card
        return await workflow.execute_activity(
            charge,
            request,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=FAST_RETRY,
        )


# --- deterministic functions 🧮 ----------------------------------------------------------


@dataclass(frozen=True)
class Dispatch:
    """Input of the dispatch workflows."""

    order_id: str
    """The order to ship."""

    same_day_window_seconds: float = 2.0
    """Orders handled within this many seconds of being placed (of the workflow's start) ship
    today: a stand-in for a real "ordered before 3 pm" cut-off, shrunk so the lesson does not
    take a day."""


@activity.defn
def ship_today(order_id: str) -> str:
    """Book a same-day courier for the order."""
    return f"{order_id}: ships today"


@activity.defn
def ship_tomorrow(order_id: str) -> str:
    """Book a next-day courier for the order."""
    return f"{order_id}: ships tomorrow"


def _shipping_for(order: Dispatch, now: datetime) -> Callable[[str], str]:
    """Same-day shipping if ``now`` is still inside the order's same-day window."""
    placed_at = workflow.info().workflow_start_time
    cutoff = placed_at + timedelta(seconds=order.same_day_window_seconds)
    return ship_today if now < cutoff else ship_tomorrow


@workflow.defn
class SandboxedClockWorkflow:
    """Workflow (broken): reads the machine's clock directly. The sandbox refuses."""

    @workflow.run
    async def run(self, order: Dispatch) -> str:
        """Pick the courier from the machine's clock."""
        now = datetime.now(UTC)  # the sandbox raises RestrictedWorkflowAccessError here
        return await workflow.execute_activity(
            _shipping_for(order, now), order.order_id, start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn
class UnsafeClockWorkflow:
    """Workflow (broken): switches the sandbox off to read the machine's clock. Replay breaks."""

    @workflow.run
    async def run(self, order: Dispatch) -> str:
        """Pick the courier from the machine's clock, which is different on every replay."""
        with workflow.unsafe.sandbox_unrestricted():
            now = datetime.now(UTC)  # a new value each time this code runs
        return await workflow.execute_activity(
            _shipping_for(order, now), order.order_id, start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn
class DispatchWorkflow:
    """Workflow (fixed): takes the time and a random number from Temporal, not from the machine."""

    def __init__(self) -> None:
        self._tracking_number = ""

    @workflow.run
    async def run(self, order: Dispatch) -> str:
        """Pick the courier from ``workflow.now()``; draw a tracking number with ``workflow.random()``."""
        now = workflow.now()  # the time this workflow task started, recorded in the History
        self._tracking_number = f"TRK-{workflow.random().randrange(10**6):06d}"
        shipped = await workflow.execute_activity(
            _shipping_for(order, now), order.order_id, start_to_close_timeout=timedelta(seconds=10)
        )
        return f"{shipped} (tracking {self._tracking_number})"

    @workflow.query
    def tracking_number(self) -> str:
        """The tracking number the workflow drew."""
        return self._tracking_number


# --- worker process -----------------------------------------------------------------------


def main(argv: Sequence[str]) -> None:
    """Run ``worker TASK_QUEUE``: a worker for :class:`OrderWorkflow` until it is killed."""
    if len(argv) != 2 or argv[0] != "worker":
        print("usage: python -m sagakit.course.lessons.durable worker TASK_QUEUE", file=sys.stderr)
        raise SystemExit(2)
    from sagakit.course.processes import run_worker

    run_worker(task_queue=argv[1], workflows=[OrderWorkflow], activities=list(ORDER_STEPS))


if __name__ == "__main__":
    main(sys.argv[1:])
