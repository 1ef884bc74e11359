"""Lesson 10: idempotency keys, told with a payment that must be charged exactly once.

- :class:`PaymentWorkflow` takes an order's amount from the customer's account
  and pays it to the shop. Which idempotency key it sends to the bank is set by
  :class:`KeyStrategy`: none, the customer id, the customer id and the workflow
  id, or a UUID made in the workflow with ``workflow.uuid4()``.
- :func:`try_key_strategy` runs three real situations for a strategy (a retry
  after the charge, a second order, the same order sent twice) and says what
  each did to the bank.
- :class:`CheckThenActStore` is the naive store: look the key up, act, then
  record it, in three separate steps. :func:`race_same_key` lets several threads
  use one key at once, to compare it with :class:`~sagakit.IdempotencyStore`.
- :func:`check_cart_key` is the exercise's self-check.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from sagakit import (
    ConfigurationError,
    Fault,
    FaultPlan,
    IdempotencyConflict,
    IdempotencyStore,
    key_from_parts,
    running_worker,
)
from sagakit._sqlite import connect
from sagakit.course.lessons.breakfast import failure_summary

# Helpers, not workflow code: the sandbox takes them from the worker's own imports instead of
# importing them afresh for every workflow run.
with workflow.unsafe.imports_passed_through():
    from sagakit.course.services.activities import BankActivities, PaymentRequest
    from sagakit.course.services.world import World, WorldSeed

__all__ = [
    "PAYMENT_SEED",
    "CartKeyCheck",
    "CheckThenActStore",
    "KeyStrategy",
    "KeyTrial",
    "PaymentInput",
    "PaymentOutcome",
    "PaymentResult",
    "PaymentWorkflow",
    "check_cart_key",
    "pay",
    "race_same_key",
    "try_key_strategy",
]


def _payment_accounts() -> dict[str, int]:
    return {"alice": 500, "shop": 0}


PAYMENT_SEED = WorldSeed(accounts=_payment_accounts())
"""The lesson's world: Alice has 500, the shop has nothing yet."""


class KeyStrategy(StrEnum):
    """Which idempotency key the payment workflow sends to the bank."""

    NONE = "no key"
    """No key: every attempt that reaches the bank charges."""
    CLIENT = "client id"
    """The customer id: at most one payment per customer (while the bank keeps the key)."""
    CLIENT_AND_WORKFLOW = "client id + workflow id"
    """Customer and workflow id: one payment per order, if each order has its own workflow id."""
    WORKFLOW_UUID = "workflow.uuid4()"
    """A UUID made by the workflow run: one payment per run, whatever the ids."""


@dataclass(frozen=True)
class PaymentInput:
    """One order to pay."""

    customer: str
    """The customer's account, e.g. ``"alice"``."""
    order_id: str
    """The order; the payment's reference is ``"order <order_id>"``."""
    amount: int
    """How much to charge (a whole number above 0)."""
    key_strategy: KeyStrategy = KeyStrategy.WORKFLOW_UUID
    """Which idempotency key to send to the bank."""
    merchant: str = "shop"
    """The account that receives the money."""
    attempts: int = 3
    """Attempts per bank call before the payment fails."""
    retry_interval_s: float = 0.2
    """First wait between attempts, in seconds."""


@dataclass(frozen=True)
class PaymentResult:
    """What a finished payment reports."""

    order_id: str
    """The order paid for."""
    idempotency_key: str | None
    """The key sent to the bank, or ``None``."""
    customer_balance: int
    """The customer's balance right after the charge."""


@workflow.defn
class PaymentWorkflow:
    """Charge the customer, then pay the shop, with the idempotency key the input asks for."""

    @workflow.run
    async def run(self, payment: PaymentInput) -> PaymentResult:
        """Withdraw from the customer and deposit to the merchant, retrying each call."""
        key = self._key(payment)
        reference = f"order {payment.order_id}"
        options: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=5),
            "retry_policy": RetryPolicy(
                initial_interval=timedelta(seconds=payment.retry_interval_s),
                maximum_interval=timedelta(seconds=1),
                maximum_attempts=payment.attempts,
            ),
        }
        receipt = await workflow.execute_activity_method(
            BankActivities.withdraw,
            PaymentRequest(payment.customer, payment.amount, reference, key),
            **options,
        )
        await workflow.execute_activity_method(
            BankActivities.deposit,  # the bank scopes keys per operation: one key serves both
            PaymentRequest(payment.merchant, payment.amount, reference, key),
            **options,
        )
        return PaymentResult(payment.order_id, key, receipt.balance)

    @staticmethod
    def _key(payment: PaymentInput) -> str | None:
        match payment.key_strategy:
            case KeyStrategy.NONE:
                return None
            case KeyStrategy.CLIENT:
                return key_from_parts("customer", payment.customer)
            case KeyStrategy.CLIENT_AND_WORKFLOW:
                return key_from_parts(payment.customer, workflow.info().workflow_id)
            case KeyStrategy.WORKFLOW_UUID:
                return str(workflow.uuid4())  # seeded per run: the same value on replay


# --- running payments ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PaymentOutcome:
    """How one payment workflow ended."""

    paid: bool
    """True when the workflow completed."""
    error_type: str | None = None
    """For a failed payment, the type of the error that failed it, e.g. ``"InsufficientFunds"``."""
    summary: str = "paid"
    """``"paid"``, or ``"failed: <step>: <why>"``."""

    def __str__(self) -> str:
        return self.summary


async def pay(
    client: Client, payment: PaymentInput, *, task_queue: str, workflow_id: str
) -> PaymentOutcome:
    """Execute one payment workflow (a worker must poll ``task_queue``) and say how it ended.

    Returns:
        Whether it was paid and, if not, why; a failure is not raised.
    """
    try:
        await client.execute_workflow(
            PaymentWorkflow.run,
            payment,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        )
    except WorkflowFailureError as err:
        error_type: str | None = None
        current: BaseException | None = err
        while current is not None:
            if isinstance(current, ApplicationError):
                error_type = current.type
            current = current.__cause__
        return PaymentOutcome(False, error_type, f"failed: {failure_summary(err)}")
    return PaymentOutcome(True)


@dataclass(frozen=True)
class KeyTrial:
    """What three real situations did to the bank under one key strategy."""

    strategy: KeyStrategy
    """The strategy tried."""
    retry_after_charge: str
    """Order 1, whose first withdrawal loses its reply after charging (and is retried)."""
    second_order: str
    """Order 1 and then order 2 of the same customer, each in its own workflow."""
    same_order_twice: str
    """Order 1 started twice with the same workflow id (say, the customer pressed Pay twice)."""

    def row(self) -> list[str]:
        """The trial as a table row: strategy, then the three situations."""
        return [
            self.strategy.value,
            self.retry_after_charge,
            self.second_order,
            self.same_order_twice,
        ]


def _charges(world: World, customer: str, reference: str | None = None) -> int:
    return sum(
        1
        for entry in world.ledger.entries(service="bank", entity=customer, operation="withdraw")
        if reference is None or entry.reference == reference
    )


def _times(n: int) -> str:
    return {0: "not charged", 1: "charged once"}.get(n, f"charged {n} times")


async def try_key_strategy(
    client: Client, world: World, strategy: KeyStrategy, *, task_queue: str
) -> KeyTrial:
    """Run the three situations of :class:`KeyTrial` for real, each on a freshly reset world.

    Args:
        client: A connected Temporal client (this function runs its own workers).
        world: The world to use; it is reset to :data:`PAYMENT_SEED` before each situation.
        strategy: The key strategy to try.
        task_queue: The task queue for the workers.

    Returns:
        One plain-words verdict per situation, e.g. ``"charged once ✓"``.
    """
    prefix = f"lesson-10-{strategy.name.lower().replace('_', '-')}"
    order1 = PaymentInput("alice", "1", 80, strategy)
    order2 = PaymentInput("alice", "2", 30, strategy)

    world.reset(PAYMENT_SEED)
    lose_reply = FaultPlan.of({"withdraw": [Fault.FAIL_AFTER]})
    bank = BankActivities(world.path, lose_reply)
    async with running_worker(
        client, task_queue=task_queue, workflows=[PaymentWorkflow], activities=bank.all()
    ):
        await pay(client, order1, task_queue=task_queue, workflow_id=f"{prefix}-order-1")
    n = _charges(world, "alice")
    retry = f"{_times(n)} {'✓' if n == 1 else '✗'}"

    world.reset(PAYMENT_SEED)
    bank = BankActivities(world.path)
    async with running_worker(
        client, task_queue=task_queue, workflows=[PaymentWorkflow], activities=bank.all()
    ):
        await pay(client, order1, task_queue=task_queue, workflow_id=f"{prefix}-order-1")
        second = await pay(client, order2, task_queue=task_queue, workflow_id=f"{prefix}-order-2")
        second_charged = _charges(world, "alice", "order 2")
        world.reset(PAYMENT_SEED)
        for _ in range(2):
            await pay(client, order1, task_queue=task_queue, workflow_id=f"{prefix}-order-1")
    if second.paid and second_charged == 1:
        second_order = "both charged ✓"
    elif second.paid:
        second_order = "order 2 never charged ✗"
    else:
        second_order = f"order 2 refused ({second.error_type}) ✗"
    n = _charges(world, "alice")
    twice = f"{_times(n)} {'✓' if n == 1 else '✗'}"
    return KeyTrial(strategy, retry, second_order, twice)


# --- check-then-act versus one atomic claim -------------------------------------------------------


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[sqlite3.Connection]:
    """An autocommit connection: each statement is its own transaction."""
    with contextlib.closing(connect(path)) as conn:
        yield conn


class CheckThenActStore:
    """A NAIVE idempotency store: look the key up, run the effect, record the key.

    The three steps are three separate statements, so two callers can both look
    before either records: both run the effect. It exists to be raced against
    :class:`~sagakit.IdempotencyStore`; do not use it.

    Args:
        path: A SQLite file for the seen keys.
        window: Called between the look-up and the effect. Pass a
            ``threading.Barrier(n).wait`` to make ``n`` callers all look before
            any acts: the unlucky timing that otherwise happens only now and then.
    """

    def __init__(self, path: str | Path, *, window: Callable[[], object] | None = None) -> None:
        self.path = Path(path)
        self.window = window
        with _connect(self.path) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS seen (key TEXT NOT NULL, result TEXT)")

    def run(self, key: str, effect: Callable[[], object]) -> str:
        """Run ``effect`` unless ``key`` was seen; return the (stored) result as text."""
        with _connect(self.path) as conn:  # 1. check
            row = conn.execute("SELECT result FROM seen WHERE key = ?", (key,)).fetchone()
        if row is not None:
            return str(row[0])
        if self.window is not None:
            self.window()
        result = str(effect())  # 2. act
        with _connect(self.path) as conn:  # 3. record
            conn.execute("INSERT INTO seen (key, result) VALUES (?, ?)", (key, result))
        return result


def race_same_key(run_once: Callable[[Callable[[], int]], object], *, callers: int = 5) -> int:
    """Let ``callers`` threads start at the same moment, each asking for the same effect once.

    Args:
        run_once: Given the effect, runs it through an idempotency store with one
            fixed key, e.g. ``lambda effect: store.run("pay-1", request, effect)``.
        callers: How many threads.

    Returns:
        How many times the effect (a charge) really ran.

    Raises:
        ConfigurationError: ``callers`` is below 2, or a caller failed.
    """
    if callers < 2:
        raise ConfigurationError(f"A race needs at least 2 callers, got {callers}.")
    lock = threading.Lock()
    charges = [0]
    errors: list[BaseException] = []
    start = threading.Barrier(callers, timeout=10)

    def charge() -> int:
        with lock:
            charges[0] += 1
            return charges[0]

    def caller() -> None:
        try:
            start.wait()
            run_once(charge)
        except BaseException as err:  # reported below, in the calling thread
            errors.append(err)

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    if errors:
        raise ConfigurationError(
            f"{len(errors)} of {callers} callers failed, first: {errors[0]!r}. Check that "
            "run_once passes the effect to the store with the same key every time."
        ) from errors[0]
    return charges[0]


# --- the exercise ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CartKeyCheck:
    """What :func:`check_cart_key` found."""

    problems: tuple[str, ...]
    """Each problem in plain words; empty when the key function is right."""
    charges: Mapping[str, int] = field(default_factory=dict)
    """How many charges each situation made."""
    not_done: bool = False
    """True when ``cart_key`` returned ``None``: the exercise is not done yet."""

    @property
    def ok(self) -> bool:
        """True when the key function was written and no situation found a problem."""
        return not self.problems and not self.not_done

    def __str__(self) -> str:
        if self.not_done:
            return (
                "○ Not done yet: make cart_key return a key (a str) built from its arguments, "
                "then run this check again."
            )
        if self.ok:
            return "✓ your key charges each cart once, and every cart of every customer"
        return "\n".join(
            [f"✗ {len(self.problems)} problem(s):", *(f"  - {p}" for p in self.problems)]
        )


def check_cart_key(cart_key: Callable[[str, str], str]) -> CartKeyCheck:
    """Try ``cart_key(customer, cart_id)`` as the key of a card charge, in three situations.

    Each situation pays through a fresh :class:`~sagakit.IdempotencyStore`:
    Alice presses Pay twice for cart 1 (one charge expected), Alice pays cart 1
    and then cart 2 (two), Alice and Bob each pay their own cart 1 (two).

    Returns:
        The problems found, in plain words; ``not_done`` when ``cart_key`` returns ``None``
        (the starter).
    """
    if cart_key("alice", "cart-1") is None:
        return CartKeyCheck((), not_done=True)
    situations = {
        "double click": [("alice", "cart-1"), ("alice", "cart-1")],
        "two carts": [("alice", "cart-1"), ("alice", "cart-2")],
        "two customers": [("alice", "cart-1"), ("bob", "cart-1")],
    }
    charges: dict[str, int] = {}
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="cart-key-") as folder:
        for number, (name, payments) in enumerate(situations.items()):
            store = IdempotencyStore(Path(folder) / f"keys-{number}.db")
            count = [0]

            def charge(count: list[int] = count) -> int:
                count[0] += 1
                return count[0]

            for customer, cart in payments:
                key = cart_key(customer, cart)
                if not isinstance(key, str) or not key:
                    problems.append(
                        f"cart_key({customer!r}, {cart!r}) returned {key!r}; return a non-empty str"
                    )
                    return CartKeyCheck(tuple(problems), charges)
                with contextlib.suppress(IdempotencyConflict):  # refused: not charged
                    store.run(key, {"customer": customer, "cart": cart}, charge)
            charges[name] = count[0]
    if charges["double click"] != 1:
        problems.append(
            f"pressing Pay twice for one cart charged {charges['double click']} times: the key "
            "must come out the same for the same cart (nothing random, no clock)"
        )
    if charges["two carts"] != 2:
        problems.append(
            "Alice's second cart was not charged: the key must change when the cart id changes"
        )
    if charges["two customers"] != 2:
        problems.append(
            "Bob's cart-1 was not charged because Alice has a cart-1 too: put the customer "
            "in the key (cart ids are only unique per customer)"
        )
    return CartKeyCheck(tuple(problems), charges)
