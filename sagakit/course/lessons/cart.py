"""Lesson 07: a shopping cart driven by Signals, read by Queries, paid for with retries.

- :class:`ShoppingCartWorkflow` keeps a cart while it runs. Signals add and
  remove items and check out; the ``view`` query reads the cart. Checking out
  charges the card with :func:`charge_payment` under the retry policy the cart
  was started with (:class:`RetrySchedule`).
- :class:`PaymentGateway` is a fake card network whose first attempts time out
  or whose card is declined, and which writes every attempt's start time to an
  :class:`AttemptLog` (a SQLite file), because the History keeps only the last
  attempt's start.
- :class:`MisbehavingCartWorkflow` adds two queries that break the rules on
  purpose, and :class:`ReorderedCartWorkflow` is a code change that no longer
  matches old Histories; the lesson uses them to show what goes wrong.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from sagakit import ConfigurationError
from sagakit._sqlite import connect

__all__ = [
    "EVENT_MEANINGS",
    "AttemptLog",
    "AttemptRecord",
    "CartInput",
    "CartItem",
    "CartView",
    "Charge",
    "MisbehavingCartWorkflow",
    "PaymentGateway",
    "Receipt",
    "ReorderedCartWorkflow",
    "RetrySchedule",
    "ShoppingCartWorkflow",
    "charge_payment",
    "reserve_items",
]


# --- Retry 🔄: a policy you can predict -------------------------------------------------------


@dataclass(frozen=True)
class RetrySchedule:
    """A retry policy in plain numbers (seconds), which can also predict its own waits.

    :meth:`to_policy` turns it into the :class:`temporalio.common.RetryPolicy`
    that the workflow gives the activity.
    """

    initial_interval: float = 0.2
    """Seconds to wait before the second attempt."""
    backoff_coefficient: float = 2.0
    """Each wait is this many times the one before (1.0 means always the same wait)."""
    maximum_interval: float = 1.6
    """No wait is longer than this many seconds."""
    maximum_attempts: int = 6
    """Attempts in all, the first one included; after the last one the activity fails."""
    non_retryable_error_types: tuple[str, ...] = ("CardDeclined",)
    """Error types that are never retried, however many attempts are left."""

    def __post_init__(self) -> None:
        problems = []
        if self.initial_interval <= 0:
            problems.append("initial_interval must be more than 0 seconds")
        if self.backoff_coefficient < 1:
            problems.append("backoff_coefficient must be at least 1")
        if self.maximum_interval < self.initial_interval:
            problems.append("maximum_interval must be at least initial_interval")
        if self.maximum_attempts < 1:
            problems.append(
                "maximum_attempts must be at least 1 (this course never retries forever)"
            )
        if problems:
            raise ConfigurationError(
                f"RetrySchedule{self._numbers()} is not valid: {'; '.join(problems)}. "
                "Change those fields, for example RetrySchedule(initial_interval=0.2, "
                "backoff_coefficient=2.0, maximum_interval=1.6, maximum_attempts=6)."
            )

    def to_policy(self) -> RetryPolicy:
        """The Temporal retry policy with these numbers."""
        return RetryPolicy(
            initial_interval=timedelta(seconds=self.initial_interval),
            backoff_coefficient=self.backoff_coefficient,
            maximum_interval=timedelta(seconds=self.maximum_interval),
            maximum_attempts=self.maximum_attempts,
            non_retryable_error_types=list(self.non_retryable_error_types),
        )

    def waits(self) -> list[float]:
        """The waits the policy asks for before attempts 2, 3, … ``maximum_attempts``."""
        return [
            min(self.initial_interval * self.backoff_coefficient**n, self.maximum_interval)
            for n in range(self.maximum_attempts - 1)
        ]

    def predicted_starts(self, run_seconds: float = 0.0) -> list[float]:
        """When each attempt would start, in seconds after the first, if every attempt fails.

        Args:
            run_seconds: how long one failing attempt runs before the wait begins.
        """
        starts = [0.0]
        for wait in self.waits():
            starts.append(starts[-1] + run_seconds + wait)
        return [round(start, 6) for start in starts]

    def _numbers(self) -> str:
        return (
            f"(initial_interval={self.initial_interval}, "
            f"backoff_coefficient={self.backoff_coefficient}, "
            f"maximum_interval={self.maximum_interval}, maximum_attempts={self.maximum_attempts})"
        )


@dataclass(frozen=True)
class AttemptRecord:
    """One attempt of an activity, as the activity itself wrote it down."""

    attempt: int
    """The attempt number, 1 for the first."""
    started_at: float
    """When the attempt began, in seconds since the epoch (the worker's clock)."""


@dataclass(frozen=True)
class AttemptLog:
    """A SQLite file where activities write down each attempt's start time.

    The History records only the last attempt's start (earlier attempts leave
    no events), so a lesson that wants every attempt's time asks the activity.
    """

    path: str
    """The SQLite file; created on first use."""

    def record(self, run_id: str, attempt: int, started_at: float) -> None:
        """Append one attempt of the activity in workflow run ``run_id``."""
        with self._connect() as db:
            db.execute("INSERT INTO attempts VALUES (?, ?, ?)", (run_id, attempt, started_at))

    def read(self, run_id: str) -> list[AttemptRecord]:
        """Every attempt recorded for workflow run ``run_id``, in attempt order."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT attempt, started_at FROM attempts WHERE run_id = ? ORDER BY attempt",
                (run_id,),
            ).fetchall()
        return [AttemptRecord(int(attempt), float(at)) for attempt, at in rows]

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with contextlib.closing(connect(self.path)) as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS attempts (run_id TEXT, attempt INTEGER, started_at REAL)"
            )
            yield db


@dataclass(frozen=True)
class PaymentGateway:
    """A fake card network: how its attempts go is fixed in advance, so every run is the same."""

    attempts_log: AttemptLog
    """Where each attempt writes down when it started."""
    timeouts: int = 0
    """How many attempts time out (a retryable ``GatewayTimeout``) before the network answers."""
    declines: bool = False
    """Whether the card is declined (a ``CardDeclined`` error) once the network answers."""


# --- Signal 🧑‍🏫 and Query 🙋: the cart --------------------------------------------------------


@dataclass(frozen=True)
class CartItem:
    """A line of the cart."""

    sku: str
    """The product's code."""
    quantity: int = 1
    """How many; adding the same product again adds to it."""
    unit_cents: int = 0
    """The price of one, in cents."""


@dataclass(frozen=True)
class CartView:
    """What the ``view`` query returns: the cart as it is right now."""

    items: tuple[CartItem, ...]
    """The lines of the cart, in the order they were first added."""
    total_cents: int
    """The sum of quantity × unit price."""
    status: str
    """``"open"``, ``"checking out"`` or ``"paid"``."""

    def summary(self) -> str:
        """The cart in one line, for example ``2 × apple, 1 × pear = 1.80 (open)``."""
        lines = ", ".join(f"{item.quantity} × {item.sku}" for item in self.items) or "empty"
        return f"{lines} = {self.total_cents / 100:.2f} ({self.status})"


@dataclass(frozen=True)
class CartInput:
    """Input of :class:`ShoppingCartWorkflow`."""

    customer: str
    """Whose cart it is."""
    gateway: PaymentGateway
    """The card network checkout will use."""
    retry: RetrySchedule = RetrySchedule()
    """How the card charge is retried."""


@dataclass(frozen=True)
class Charge:
    """Input of :func:`charge_payment`."""

    customer: str
    """Who pays."""
    cents: int
    """How much."""
    gateway: PaymentGateway
    """How the card network behaves."""


@dataclass(frozen=True)
class Receipt:
    """Result of :class:`ShoppingCartWorkflow`."""

    customer: str
    """Who paid."""
    items: tuple[CartItem, ...]
    """What they bought."""
    total_cents: int
    """What they paid."""
    paid_on_attempt: int
    """Which attempt of the card charge went through."""


@activity.defn
def charge_payment(charge: Charge) -> int:
    """Activity: charge the card; return the attempt number that went through.

    Every attempt first writes its start time to the gateway's attempt log.
    """
    info = activity.info()
    charge.gateway.attempts_log.record(info.workflow_run_id or "", info.attempt, time.time())
    if info.attempt <= charge.gateway.timeouts:
        raise ApplicationError("card gateway timed out", type="GatewayTimeout")
    if charge.gateway.declines:
        raise ApplicationError(f"card of {charge.customer} declined", type="CardDeclined")
    return info.attempt


@activity.defn
def reserve_items(items: list[CartItem]) -> int:
    """Activity: reserve the cart's items in the warehouse; return how many lines."""
    return len(items)


@workflow.defn
class ShoppingCartWorkflow:
    """Workflow: a cart that lives until checkout, then charges the card."""

    def __init__(self) -> None:
        self._items: dict[str, CartItem] = {}
        self._status = "open"

    @workflow.run
    async def run(self, cart: CartInput) -> Receipt:
        """Wait for the checkout signal, then charge the total and return a receipt."""
        await workflow.wait_condition(lambda: self._status == "checking out")
        return await self._pay(cart)

    async def _pay(self, cart: CartInput) -> Receipt:
        view = self.view()
        if not view.items:
            raise ApplicationError("checkout of an empty cart", type="EmptyCart")
        attempt = await workflow.execute_activity(
            charge_payment,
            Charge(cart.customer, view.total_cents, cart.gateway),
            start_to_close_timeout=timedelta(seconds=5),
            retry_policy=cart.retry.to_policy(),
        )
        self._status = "paid"
        return Receipt(cart.customer, view.items, view.total_cents, attempt)

    @workflow.signal
    def add_item(self, item: CartItem) -> None:
        """Signal: put ``item`` in the cart (ignored once checkout has begun)."""
        if self._status != "open":
            return
        old = self._items.get(item.sku)
        quantity = item.quantity + (old.quantity if old else 0)
        self._items[item.sku] = CartItem(item.sku, quantity, item.unit_cents)

    @workflow.signal
    def remove_item(self, sku: str) -> None:
        """Signal: take every unit of ``sku`` out of the cart (ignored once checkout has begun)."""
        if self._status == "open":
            self._items.pop(sku, None)

    @workflow.signal
    def checkout(self) -> None:
        """Signal: stop changing the cart and pay for it."""
        if self._status == "open":
            self._status = "checking out"

    @workflow.query
    def view(self) -> CartView:
        """Query: the cart right now. Reads state, changes nothing."""
        items = tuple(self._items.values())
        total = sum(item.quantity * item.unit_cents for item in items)
        return CartView(items, total, self._status)


@workflow.defn
class MisbehavingCartWorkflow(ShoppingCartWorkflow):
    """The cart with two queries that break the rules, to see what goes wrong. Do not copy."""

    @workflow.run
    async def run(self, cart: CartInput) -> Receipt:
        """The same as the good cart."""
        return await super().run(cart)

    @workflow.query
    def take_first_item(self) -> str:
        """WRONG: a query that changes the cart. No event records the change."""
        sku = next(iter(self._items))
        del self._items[sku]
        return sku

    @workflow.query
    def reserve_now(self) -> str:
        """WRONG: a query that tries to start an activity. The SDK refuses."""
        workflow.start_activity(
            reserve_items, list(self._items.values()), start_to_close_timeout=timedelta(seconds=5)
        )
        return "reserved"


@workflow.defn(name="ShoppingCartWorkflow")
class ReorderedCartWorkflow(ShoppingCartWorkflow):
    """A new version of the cart that reserves the items before charging the card.

    It registers under the old name, so it would receive the old carts' Histories,
    which have no ``reserve_items`` step where this code now expects one.
    """

    @workflow.run
    async def run(self, cart: CartInput) -> Receipt:
        """Wait for checkout, reserve the items, then pay."""
        await workflow.wait_condition(lambda: self._status == "checking out")
        await workflow.execute_activity(
            reserve_items,
            list(self._items.values()),
            start_to_close_timeout=timedelta(seconds=5),
        )
        return await self._pay(cart)


# --- History 🗃️: what each event means ----------------------------------------------------------

EVENT_MEANINGS: Mapping[str, str] = {
    "WorkflowExecutionStarted": "the cluster accepted the start request, with the input",
    "WorkflowTaskScheduled": "there is something new for the workflow code to look at",
    "WorkflowTaskStarted": "a worker picked that workflow task up",
    "WorkflowTaskCompleted": "the worker ran the workflow code and sent back its commands",
    "WorkflowTaskFailed": "the workflow code raised an error that is not a workflow failure",
    "WorkflowTaskTimedOut": "the worker took too long over a workflow task, or went away",
    "WorkflowExecutionSignaled": "a signal arrived, with its name and arguments",
    "ActivityTaskScheduled": "the workflow asked for an activity, with its input and retry policy",
    "ActivityTaskStarted": "a worker began the last attempt (written when the attempt ends)",
    "ActivityTaskCompleted": "the activity returned; its result is stored here",
    "ActivityTaskFailed": "the activity failed and no retry is left (or the error is non-retryable)",
    "ActivityTaskTimedOut": "the activity ran out of time and no retry is left",
    "TimerStarted": "the workflow started a durable timer",
    "TimerFired": "the timer's time came",
    "WorkflowExecutionCompleted": "the workflow returned; its result is stored here",
    "WorkflowExecutionFailed": "the workflow raised a failure; the run is over",
    "WorkflowExecutionTerminated": "someone terminated the run from outside",
}
"""A one-line meaning for the event types the lessons meet, keyed by type name."""
