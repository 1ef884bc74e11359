"""Lesson 01: concurrency, scalability and reliability, shown with real workflows.

Three small programs, one per idea:

* :class:`BatchWorkflow` makes the same slow calls one after another or all at
  once (concurrency ↠). :func:`max_in_flight` reads from the workflow's History
  how many of them were running at the same time.
* :class:`OrderWorkflow` handles one order; :func:`run_orders` runs a batch of
  them with 1, 2, 4 … workers and measures workflows per second (scalability 📈),
  and how many orders were being worked on at the same moment
  (:func:`most_at_once`). With a shared SQLite database each order holds the
  database's single write lock while it works, a bottleneck that more workers
  cannot remove.
* :class:`FlakyBatchWorkflow` calls a flaky service many times, with or
  without Temporal retries (reliability ✅). Which attempt fails is decided by
  a seeded :class:`~sagakit.FaultPlan`, so :func:`predict_outcomes` can
  say in advance what the server will record.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.client import Client, WorkflowHistory
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ApplicationErrorCategory
from temporalio.service import ServiceClient

with workflow.unsafe.imports_passed_through():
    from sagakit import ConfigurationError, Fault, FaultPlan, running_worker
    from sagakit._sqlite import connect, immediate_transaction

__all__ = [
    "Batch",
    "BatchWorkflow",
    "CallOutcome",
    "FlakyBatch",
    "FlakyBatchWorkflow",
    "FlakyCall",
    "Order",
    "OrderWorkflow",
    "SlowCall",
    "Throughput",
    "WorkSpan",
    "call_flaky_service",
    "create_stock_database",
    "handle_order",
    "max_in_flight",
    "most_at_once",
    "predict_outcomes",
    "probability_all_fail",
    "run_orders",
    "slow_call",
    "stock_left",
]

# -- concurrency ↠ ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SlowCall:
    """Input of :func:`slow_call`."""

    index: int
    """Which call of the batch this is (0, 1, 2 …)."""
    seconds: float
    """How long the call waits, like a slow remote service."""


@activity.defn
async def slow_call(call: SlowCall) -> int:
    """Activity: wait ``call.seconds`` (a slow service), then return the call's index."""
    await asyncio.sleep(call.seconds)
    return call.index


@dataclass(frozen=True)
class Batch:
    """Input of :class:`BatchWorkflow`."""

    calls: int = 20
    """How many slow calls to make."""
    seconds: float = 0.2
    """How long each call takes."""
    concurrent: bool = False
    """``False``: one call after another. ``True``: start all calls, then wait for all."""


@workflow.defn
class BatchWorkflow:
    """Workflow: make ``batch.calls`` slow calls, sequentially or concurrently."""

    @workflow.run
    async def run(self, batch: Batch) -> list[int]:
        """Return the calls' results in call order, whichever way they ran."""
        calls = [SlowCall(index=i, seconds=batch.seconds) for i in range(batch.calls)]
        if batch.concurrent:
            # Schedule every call now; the server hands them to the worker together.
            return list(await asyncio.gather(*(self._call(call) for call in calls)))
        results = []
        for call in calls:
            # Wait for each call to finish before starting the next one.
            results.append(await self._call(call))
        return results

    async def _call(self, call: SlowCall) -> int:
        return await workflow.execute_activity(
            slow_call, call, start_to_close_timeout=timedelta(seconds=10)
        )


def max_in_flight(history: WorkflowHistory) -> int:
    """Return the most activities that were scheduled but not yet closed at the same time.

    It walks the History in event order: a scheduled activity counts up, a
    completed, failed, timed-out or canceled one counts down. A sequential
    workflow gives 1; a workflow that schedules 20 calls at once gives 20.
    """
    closing = (
        "activity_task_completed_event_attributes",
        "activity_task_failed_event_attributes",
        "activity_task_timed_out_event_attributes",
        "activity_task_canceled_event_attributes",
    )
    running = highest = 0
    for event in history.events:
        kind = event.WhichOneof("attributes")
        if kind == "activity_task_scheduled_event_attributes":
            running += 1
            highest = max(highest, running)
        elif kind in closing:
            running -= 1
    return highest


# -- scalability 📈 ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Order:
    """Input of :class:`OrderWorkflow` and :func:`handle_order`."""

    seconds: float = 0.2
    """How long handling the order takes."""
    database: str | None = None
    """A stock database made by :func:`create_stock_database`. If set, the order takes one
    book from the stock and does its work while holding the database's write lock."""


@dataclass(frozen=True)
class WorkSpan:
    """When one order's work began and ended, as :func:`handle_order` measured it.

    Both are readings of the machine's monotonic clock (``time.monotonic()``), in
    seconds. They compare across workers on one machine, as in the lesson; workers
    on different machines would each have a clock of their own.
    """

    started: float
    """When the work began (with a shared database: once the write lock was held)."""
    finished: float
    """When the work ended (with a shared database: before the lock was released)."""


@activity.defn
def handle_order(order: Order) -> WorkSpan:
    """Activity: handle one order, optionally inside one write transaction of a shared database.

    SQLite lets one writer at a time hold its write lock (``BEGIN IMMEDIATE``);
    others wait. Work done while holding it is serial, however many workers run.
    Returns when the work began and ended.
    """
    if order.database is None:
        started = time.monotonic()
        time.sleep(order.seconds)
        return WorkSpan(started, time.monotonic())
    # BEGIN IMMEDIATE takes the single write lock (or waits for it); COMMIT releases it.
    with contextlib.closing(connect(order.database)) as db, immediate_transaction(db):
        started = time.monotonic()
        db.execute("UPDATE stock SET count = count - 1 WHERE item = 'book'")
        time.sleep(order.seconds)  # the work happens while the lock is held
        return WorkSpan(started, time.monotonic())


@workflow.defn
class OrderWorkflow:
    """Workflow: handle one order with one activity."""

    @workflow.run
    async def run(self, order: Order) -> WorkSpan:
        """Run :func:`handle_order` once; return when its work began and ended."""
        return await workflow.execute_activity(
            handle_order, order, start_to_close_timeout=timedelta(seconds=60)
        )


def most_at_once(spans: Iterable[WorkSpan]) -> int:
    """Return the most spans that were under way at the same moment (0 for none).

    A span that ends exactly when another begins does not overlap it: one order
    handing the lock to the next is one at a time.
    """
    edges: list[tuple[float, int]] = []
    for span in spans:
        edges += [(span.started, 1), (span.finished, -1)]
    edges.sort()  # in time order; at the same moment (t, -1), an end, sorts before a start
    under_way = highest = 0
    for _moment, change in edges:
        under_way += change
        highest = max(highest, under_way)
    return highest


def create_stock_database(path: str, books: int = 1000) -> str:
    """Create (or reset) a SQLite stock database holding ``books`` books; return ``path``."""
    with contextlib.closing(connect(path)) as db:
        db.execute("CREATE TABLE IF NOT EXISTS stock (item TEXT PRIMARY KEY, count INTEGER)")
        db.execute("INSERT OR REPLACE INTO stock VALUES ('book', ?)", (books,))
    return path


def stock_left(path: str) -> int:
    """Return how many books the stock database at ``path`` still holds."""
    with contextlib.closing(connect(path)) as db:
        row = db.execute("SELECT count FROM stock WHERE item = 'book'").fetchone()
    return int(row[0])


@dataclass(frozen=True)
class Throughput:
    """What :func:`run_orders` measured."""

    workers: int
    """How many workers polled the task queue."""
    workflows: int
    """How many order workflows ran to completion."""
    seconds: float
    """Wall-clock time from starting the first workflow until the last one finished."""
    most_at_once: int
    """The most orders whose work was under way at the same moment (:func:`most_at_once`).
    Unlike :attr:`seconds`, it does not grow when the machine is busy: it counts what
    the workers did, not how long starting workflows and handing out tasks took."""

    @property
    def per_second(self) -> float:
        """Completed workflows per second."""
        return self.workflows / self.seconds


async def run_orders(
    client: Client,
    *,
    workers: int,
    orders: int = 8,
    order: Order | None = None,
    task_queue: str,
    id_prefix: str,
) -> Throughput:
    """Run ``orders`` :class:`OrderWorkflow` executions with ``workers`` workers and time them.

    Each worker has its own connection to the server and runs one activity at
    a time (``max_concurrent_activities=1``), like a small machine of its own;
    all of them poll the same task queue, so the server spreads the orders
    over them. The clock runs from the first start until the last result;
    starting and stopping the workers is not counted. Each order also reports
    when its work began and ended, from which :attr:`Throughput.most_at_once`
    counts how many orders were worked on at the same moment.

    Args:
        client: A connected Temporal client.
        workers: How many workers to run (1 or more).
        orders: How many order workflows to run.
        order: The input of every workflow (default: 0.2 s of work, no database).
        task_queue: The task queue the workers poll.
        id_prefix: Workflow ids are ``f"{id_prefix}-{n}"``; a rerun replaces older runs.

    Returns:
        The measured throughput, and the most orders worked on at once.

    Raises:
        ConfigurationError: ``workers`` or ``orders`` is less than 1.
    """
    if workers < 1 or orders < 1:
        raise ConfigurationError(
            f"run_orders needs at least one worker and one order (got workers={workers}, "
            f"orders={orders}); pass positive numbers."
        )
    work = order or Order()
    async with contextlib.AsyncExitStack() as stack:
        for _ in range(workers):
            await stack.enter_async_context(
                running_worker(
                    await _own_connection(client),
                    task_queue=task_queue,
                    workflows=[OrderWorkflow],
                    activities=[handle_order],
                    max_concurrent_activities=1,
                )
            )
        started = time.perf_counter()
        handles = await asyncio.gather(
            *(
                client.start_workflow(
                    OrderWorkflow.run,
                    work,
                    id=f"{id_prefix}-{n}",
                    task_queue=task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
                )
                for n in range(1, orders + 1)
            )
        )
        spans = await asyncio.gather(*(handle.result() for handle in handles))
        elapsed = time.perf_counter() - started
    return Throughput(
        workers=workers, workflows=orders, seconds=elapsed, most_at_once=most_at_once(spans)
    )


async def _own_connection(client: Client) -> Client:
    """Return a client like ``client`` with a connection of its own (one per worker)."""
    config = client.config()
    config["service_client"] = await ServiceClient.connect(client.service_client.config)
    return Client(**config)


# -- reliability ✅ ---------------------------------------------------------------------------

FLAKY_STEP = "call_flaky_service"
"""The step name the fault plan uses for the flaky service (the activity's name)."""


@dataclass(frozen=True)
class FlakyCall:
    """Input of :func:`call_flaky_service`."""

    key: str
    """Which request this is, e.g. ``"call-07"``; part of the seeded decision."""
    failure_rate: float
    """Chance (0 to 1) that any one attempt fails."""
    seed: int
    """The seed of the fault plan: the same seed fails the same attempts."""


def _plan(failure_rate: float, seed: int) -> FaultPlan:
    return FaultPlan.random(
        seed=seed, rate=failure_rate, faults=[Fault.FAIL_BEFORE], steps=[FLAKY_STEP]
    )


@activity.defn(name=FLAKY_STEP)
def call_flaky_service(call: FlakyCall) -> int:
    """Activity: call a service that fails some attempts; return the attempt that worked.

    Whether this attempt fails is decided by a seeded fault plan from
    ``(seed, key, attempt)``, never by a global counter, so reruns repeat.
    """
    attempt = activity.info().attempt
    if _plan(call.failure_rate, call.seed).decide(FLAKY_STEP, attempt, call.key) is not Fault.OK:
        # BENIGN: an expected failure, so the worker logs it quietly (at DEBUG level).
        raise ApplicationError(
            f"service unavailable (request {call.key}, attempt {attempt})",
            category=ApplicationErrorCategory.BENIGN,
        )
    return attempt


@dataclass(frozen=True)
class FlakyBatch:
    """Input of :class:`FlakyBatchWorkflow`."""

    calls: int = 50
    """How many requests to send (keys ``call-00``, ``call-01`` …)."""
    failure_rate: float = 0.3
    """Chance (0 to 1) that any one attempt fails."""
    seed: int = 1701
    """The fault plan's seed."""
    max_attempts: int = 1
    """Attempts per request: 1 means no retries."""


@dataclass(frozen=True)
class CallOutcome:
    """How one request of a :class:`FlakyBatch` ended."""

    key: str
    """The request's key."""
    succeeded: bool
    """Whether some attempt worked."""
    attempts: int
    """How many attempts ran."""


def _keys(calls: int) -> list[str]:
    width = max(2, len(str(calls - 1)))
    return [f"call-{n:0{width}d}" for n in range(calls)]


@workflow.defn
class FlakyBatchWorkflow:
    """Workflow: send every request of the batch to the flaky service, with a retry policy."""

    @workflow.run
    async def run(self, batch: FlakyBatch) -> list[CallOutcome]:
        """Return one outcome per request, in key order."""
        retry = RetryPolicy(
            initial_interval=timedelta(milliseconds=100),
            backoff_coefficient=2.0,
            maximum_attempts=batch.max_attempts,
        )
        calls = [FlakyCall(key, batch.failure_rate, batch.seed) for key in _keys(batch.calls)]
        return list(await asyncio.gather(*(self._send(call, retry) for call in calls)))

    async def _send(self, call: FlakyCall, retry: RetryPolicy) -> CallOutcome:
        try:
            attempt = await workflow.execute_activity(
                call_flaky_service,
                call,
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=retry,
            )
        except ActivityError:
            assert retry.maximum_attempts is not None
            return CallOutcome(call.key, succeeded=False, attempts=retry.maximum_attempts)
        return CallOutcome(call.key, succeeded=True, attempts=attempt)


def predict_outcomes(batch: FlakyBatch) -> list[CallOutcome]:
    """Return what :class:`FlakyBatchWorkflow` will record for ``batch``, without running it.

    The fault plan is pure data, so asking it the same questions gives the same
    answers: this is how a seeded failure stays reproducible.
    """
    plan = _plan(batch.failure_rate, batch.seed)
    outcomes = []
    for key in _keys(batch.calls):
        for attempt in range(1, batch.max_attempts + 1):
            if plan.decide(FLAKY_STEP, attempt, key) is Fault.OK:
                outcomes.append(CallOutcome(key, succeeded=True, attempts=attempt))
                break
        else:
            outcomes.append(CallOutcome(key, succeeded=False, attempts=batch.max_attempts))
    return outcomes


def probability_all_fail(failure_rate: float, copies: int) -> float:
    """Return the chance that ``copies`` independent tries all fail: ``failure_rate ** copies``.

    The copies can be attempts one after another (retries) or replicas side by
    side (redundancy). The formula only holds if the failures are independent;
    a shared cause (the same bug, the same power supply) makes it far worse.

    Args:
        failure_rate: Chance (0 to 1) that one copy fails.
        copies: How many copies (1 or more).

    Raises:
        ConfigurationError: ``failure_rate`` is not a probability or ``copies`` is below 1.
    """
    if not 0.0 <= failure_rate <= 1.0:
        raise ConfigurationError(
            f"failure_rate={failure_rate} is not a probability; use a number from 0 to 1."
        )
    if copies < 1:
        raise ConfigurationError(f"copies={copies}: pass 1 or more copies.")
    return float(failure_rate**copies)
