"""Lesson 06: the Temporal building blocks, a Cluster, Workers, Workflows and Activities.

The module holds four small programs, one per idea of the lesson:

- :class:`PackOrderWorkflow` packs the items of an order in parallel, one
  :func:`pack_item` activity per item. With no worker it waits; with two workers
  on its task queue, both share the activities (:func:`activity_workers` reads
  who ran what from the History).
- :class:`StampReceiptWorkflow` is the deterministic fix of
  :class:`UnsafeStampReceiptWorkflow`, which reads the machine's clock inside
  workflow code. Both register under the workflow type ``StampReceipt``, so a
  run that the unsafe code got stuck on can be finished by deploying the fix.
- :class:`QuoteThenChargeWorkflow` and :class:`ChargeCurrentPriceWorkflow` show
  how activity boundaries decide which data a retry sees: a price read in an
  earlier activity is reused, a price read inside the retried activity is fresh.
- :class:`ResilientOrderWorkflow` survives a flaky activity (retries) and a
  stopped worker (the timer and progress live in the Cluster, not the worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from sagakit import SagakitError
from sagakit._sqlite import connect
from sagakit.history import event_type_name

# Helpers, not workflow code: the sandbox takes them from the worker's own imports instead of
# importing them afresh for every workflow run.
with workflow.unsafe.imports_passed_through():
    from sagakit.course._polling import poll_until

__all__ = [
    "QUICK_RETRIES",
    "ActivityRun",
    "ChargeCurrentPriceWorkflow",
    "ChargeRequest",
    "CheckoutInput",
    "EventNotSeen",
    "OrderSummary",
    "PackOrderWorkflow",
    "PackedItem",
    "PackingOrder",
    "PriceBoard",
    "QuoteThenChargeWorkflow",
    "ResilientOrder",
    "ResilientOrderWorkflow",
    "StampReceiptWorkflow",
    "UnsafeStampReceiptWorkflow",
    "activity_runs",
    "activity_workers",
    "charge_at_current_price",
    "charge_card",
    "pack_item",
    "read_price",
    "reserve_stock",
    "ship_order",
    "stamp",
    "wait_for_event",
]


class EventNotSeen(SagakitError, TimeoutError):
    """An awaited event did not appear in a workflow's History in time."""


QUICK_RETRIES = RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=2.0)
"""Retries every lesson activity uses: first retry after 0.1 s, then twice as long each time."""


# --- Worker 👷: packing an order, one activity per item -------------------------------------


@dataclass(frozen=True)
class PackingOrder:
    """Input of :class:`PackOrderWorkflow`."""

    order_id: str
    """The order's id, echoed in the result."""
    items: tuple[str, ...]
    """What to pack; each item is one :func:`pack_item` activity."""
    seconds_per_item: float = 0.2
    """How long packing one item takes."""


@dataclass(frozen=True)
class PackedItem:
    """Input of :func:`pack_item`."""

    item: str
    """The item to pack."""
    seconds: float
    """How long packing it takes."""


@activity.defn
async def pack_item(request: PackedItem) -> str:
    """Activity: pack one item (a short sleep stands in for the real work)."""
    await asyncio.sleep(request.seconds)
    return f"{request.item} packed"


@workflow.defn
class PackOrderWorkflow:
    """Workflow: pack every item of an order at the same time, then return what was packed."""

    @workflow.run
    async def run(self, order: PackingOrder) -> list[str]:
        """Start one activity per item and wait for all of them."""
        return list(
            await asyncio.gather(
                *(
                    workflow.execute_activity(
                        pack_item,
                        PackedItem(item, order.seconds_per_item),
                        start_to_close_timeout=timedelta(seconds=10),
                        retry_policy=QUICK_RETRIES,
                    )
                    for item in order.items
                )
            )
        )


@dataclass(frozen=True)
class ActivityRun:
    """Who ran an activity execution, as the History tells it."""

    activity: str
    """The activity type, for example ``"pack_item"``."""
    activity_id: str
    """The activity id within the workflow."""
    attempts: int
    """How many attempts it took (the number of the last attempt)."""
    worker: str
    """The identity of the worker that ran the last attempt."""


def activity_runs(history: WorkflowHistory) -> list[ActivityRun]:
    """One :class:`ActivityRun` per activity execution that has started, in History order.

    Each ``ActivityTaskStarted`` event records the attempt number and the
    ``identity`` of the worker that picked the task up; the activity's name
    and id come from the matching ``ActivityTaskScheduled`` event.
    """
    scheduled = {
        event.event_id: event.activity_task_scheduled_event_attributes
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    }
    runs = []
    for event in history.events:
        if event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            asked = scheduled[started.scheduled_event_id]
            runs.append(
                ActivityRun(
                    activity=asked.activity_type.name,
                    activity_id=asked.activity_id,
                    attempts=started.attempt,
                    worker=started.identity,
                )
            )
    return runs


def activity_workers(history: WorkflowHistory) -> dict[str, int]:
    """Count the activity executions each worker identity ran, sorted by identity."""
    counts = Counter(run.worker for run in activity_runs(history))
    return dict(sorted(counts.items()))


async def wait_for_event(
    handle: WorkflowHandle[Any, Any], event_type: str, *, timeout: float = 10.0
) -> HistoryEvent:
    """Wait until the workflow's History has an event of ``event_type``, and return the first.

    Args:
        handle: the workflow to watch.
        event_type: a type name as :func:`sagakit.history.event_type_name` gives
            it, for example ``"TimerStarted"``.
        timeout: seconds to wait before giving up.

    Raises:
        EventNotSeen: no such event appeared within ``timeout`` seconds.
    """
    seen: set[str] = set()

    async def recorded() -> HistoryEvent | None:
        history = await handle.fetch_history()
        seen.update(event_type_name(event) for event in history.events)
        return next((e for e in history.events if event_type_name(e) == event_type), None)

    return await poll_until(
        recorded,
        timeout=timeout,
        what=f"a {event_type} event of workflow {handle.id!r}",
        timed_out=lambda: EventNotSeen(
            f"Workflow {handle.id!r} has no {event_type} event after {timeout:g} s "
            f"(it has: {', '.join(sorted(seen))}). Check that a worker polls its task queue "
            "and that the event type is spelt as in the History (CamelCase)."
        ),
    )


# --- Workflow 📖: deterministic code versus reading the clock --------------------------------


@activity.defn
async def stamp(moment: datetime) -> str:
    """Activity: print a receipt stamp for ``moment`` (an activity may do anything)."""
    return f"receipt stamped {moment.isoformat(timespec='seconds')}"


@workflow.defn(name="StampReceipt")
class UnsafeStampReceiptWorkflow:
    """Workflow (wrong on purpose): reads the machine's clock in workflow code.

    On a replay the clock would say something else, so the workflow could take
    another path than the one recorded. Temporal's sandbox refuses the call:
    the workflow task fails and the run waits until fixed code is deployed.
    """

    @workflow.run
    async def run(self) -> str:
        """Stamp the receipt with the worker machine's current time."""
        now = datetime.now()  # not allowed in a workflow: use workflow.now()
        return await workflow.execute_activity(
            stamp, now, start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn(name="StampReceipt")
class StampReceiptWorkflow:
    """Workflow: the fix, which takes the time from ``workflow.now()``.

    ``workflow.now()`` is the time of the current workflow task as recorded in
    the History, so every replay sees the same value.
    """

    @workflow.run
    async def run(self) -> str:
        """Stamp the receipt with the workflow's recorded time."""
        return await workflow.execute_activity(
            stamp, workflow.now(), start_to_close_timeout=timedelta(seconds=10)
        )


# --- Activity 💾: where the activity boundary goes decides what a retry sees ----------------


@dataclass(frozen=True)
class PriceBoard:
    """A shop's prices and its card payments, kept in a SQLite file.

    Plain data, so it can travel inside activity inputs; each method opens the
    file, does one thing and closes it.
    """

    path: str
    """The SQLite file."""

    def reset(self, sku: str, cents: int) -> None:
        """Create the tables if needed, set one price and forget all payments."""
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS prices (sku TEXT PRIMARY KEY, cents INTEGER)")
            db.execute("CREATE TABLE IF NOT EXISTS payments (order_id TEXT, cents INTEGER)")
            db.execute("DELETE FROM payments")
            db.execute("INSERT OR REPLACE INTO prices VALUES (?, ?)", (sku, cents))

    def price(self, sku: str) -> int:
        """The current price of ``sku`` in cents."""
        with self._connect() as db:
            row = db.execute("SELECT cents FROM prices WHERE sku = ?", (sku,)).fetchone()
        return int(row[0])

    def set_price(self, sku: str, cents: int) -> None:
        """Change the price of ``sku``."""
        with self._connect() as db:
            db.execute("UPDATE prices SET cents = ? WHERE sku = ?", (cents, sku))

    def record_payment(self, order_id: str, cents: int) -> None:
        """Write down that the card was charged ``cents`` for ``order_id``."""
        with self._connect() as db:
            db.execute("INSERT INTO payments VALUES (?, ?)", (order_id, cents))

    def payments(self, order_id: str) -> list[int]:
        """Every amount charged for ``order_id``, in the order they were charged."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT cents FROM payments WHERE order_id = ? ORDER BY rowid", (order_id,)
            ).fetchall()
        return [int(cents) for (cents,) in rows]

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with contextlib.closing(connect(self.path)) as db:
            yield db


@dataclass(frozen=True)
class CheckoutInput:
    """Input of the two checkout workflows."""

    board: PriceBoard
    """Where the prices and payments live."""
    order_id: str
    """The order being paid for."""
    sku: str
    """The one product in the order."""
    new_price_cents: int
    """The price the shop switches to while the first card charge is failing."""


@dataclass(frozen=True)
class ChargeRequest:
    """Input of :func:`charge_card`: charge an amount decided earlier."""

    checkout: CheckoutInput
    """The checkout this charge belongs to."""
    cents: int
    """The amount to charge."""


def _card_gateway(checkout: CheckoutInput, cents: int) -> int:
    """The card network: its first attempt fails, and meanwhile the shop changes its price.

    Both happen on attempt 1 so that every run of the lesson behaves the same.
    """
    if activity.info().attempt == 1:
        checkout.board.set_price(checkout.sku, checkout.new_price_cents)
        raise ApplicationError("card gateway timed out", type="GatewayTimeout")
    checkout.board.record_payment(checkout.order_id, cents)
    return cents


@activity.defn
def read_price(checkout: CheckoutInput) -> int:
    """Activity: look up the current price of the order's product."""
    return checkout.board.price(checkout.sku)


@activity.defn
def charge_card(request: ChargeRequest) -> int:
    """Activity: charge the amount it is given (on a retry: the same, possibly old, amount)."""
    return _card_gateway(request.checkout, request.cents)


@activity.defn
def charge_at_current_price(checkout: CheckoutInput) -> int:
    """Activity: read the price and charge it, so every attempt uses the price of that moment."""
    return _card_gateway(checkout, checkout.board.price(checkout.sku))


@workflow.defn
class QuoteThenChargeWorkflow:
    """Workflow: read the price in one activity, charge it in another.

    A retry of the charge reuses the price that was read before: right for a
    quote the customer accepted, wrong if the charge must follow the shop's price.
    """

    @workflow.run
    async def run(self, checkout: CheckoutInput) -> int:
        """Quote, then charge the quoted amount; return the cents charged."""
        cents = await workflow.execute_activity(
            read_price, checkout, start_to_close_timeout=timedelta(seconds=10)
        )
        return await workflow.execute_activity(
            charge_card,
            ChargeRequest(checkout, cents),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=QUICK_RETRIES,
        )


@workflow.defn
class ChargeCurrentPriceWorkflow:
    """Workflow: one activity reads the price and charges it, so a retry re-reads it."""

    @workflow.run
    async def run(self, checkout: CheckoutInput) -> int:
        """Charge the price of the moment; return the cents charged."""
        return await workflow.execute_activity(
            charge_at_current_price,
            checkout,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=QUICK_RETRIES,
        )


# --- Temporal ✧: survive a flaky activity and a stopped worker ------------------------------


@dataclass(frozen=True)
class ResilientOrder:
    """Input of :class:`ResilientOrderWorkflow`."""

    order_id: str
    """The order to reserve and ship."""
    stock_failures: int = 2
    """How many attempts of :func:`reserve_stock` fail before one succeeds."""
    warehouse_wait: float = 1.5
    """Seconds the workflow waits (a durable timer) between reserving and shipping."""


@dataclass(frozen=True)
class OrderSummary:
    """Result of :class:`ResilientOrderWorkflow`."""

    order_id: str
    """The order."""
    reserved: str
    """What :func:`reserve_stock` returned."""
    shipped: str
    """What :func:`ship_order` returned."""


@activity.defn
async def reserve_stock(order: ResilientOrder) -> str:
    """Activity: reserve stock; the inventory service fails the first ``stock_failures`` tries."""
    attempt = activity.info().attempt
    if attempt <= order.stock_failures:
        raise ApplicationError(f"inventory service unavailable (attempt {attempt})")
    return f"stock reserved on attempt {attempt}"


@activity.defn
async def ship_order(order: ResilientOrder) -> str:
    """Activity: hand the order to the carrier."""
    return f"{order.order_id} shipped"


@workflow.defn
class ResilientOrderWorkflow:
    """Workflow: reserve stock (retrying), wait for the warehouse (a timer), then ship."""

    @workflow.run
    async def run(self, order: ResilientOrder) -> OrderSummary:
        """Run the three steps in order and report what each did."""
        reserved = await workflow.execute_activity(
            reserve_stock,
            order,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=QUICK_RETRIES,
        )
        await workflow.sleep(timedelta(seconds=order.warehouse_wait))
        shipped = await workflow.execute_activity(
            ship_order, order, start_to_close_timeout=timedelta(seconds=10)
        )
        return OrderSummary(order.order_id, reserved, shipped)
