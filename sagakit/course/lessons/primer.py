"""Lesson 00a: the asyncio the course relies on, and one workflow that awaits three activities at once.

The notebook defines its small coroutines in its own cells; this module holds what it shows
with ``show_source`` (the workflow, its activity, the "wait to the end" helper that sagakit's
saga uses around compensations) and the exercise's supplier and self-check.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity, workflow
from temporalio.client import WorkflowHistory

__all__ = [
    "PRICES",
    "QUOTE_DELAYS",
    "QUOTE_TIMEOUT",
    "SUPPLIERS",
    "BestQuoteWorkflow",
    "Quote",
    "QuoteCall",
    "QuoteRequest",
    "activity_seconds",
    "ask_for_quote",
    "check_fetch_quotes",
    "grade_fetch_quotes",
    "supplier_quote",
    "wait_to_the_end",
]

T = TypeVar("T")

PRICES = {"north": 42, "east": 39, "south": 35, "west": 44}
"""Each supplier's price, in euros."""


# --- The workflow: three quotes at once -------------------------------------------------------


@dataclass(frozen=True)
class QuoteCall:
    """Input of one ``ask_for_quote`` activity."""

    supplier: str
    """Who is asked (a key of ``PRICES``)."""
    item: str
    """What the quote is for."""
    seconds: float
    """How long the supplier takes to answer."""


@dataclass(frozen=True)
class Quote:
    """One supplier's answer."""

    supplier: str
    """Who answered."""
    item: str
    """What the price is for."""
    price: int
    """The price, in euros."""


@dataclass(frozen=True)
class QuoteRequest:
    """Input of ``BestQuoteWorkflow``."""

    item: str
    """What to buy."""
    suppliers: tuple[str, ...] = ("north", "east", "west")
    """Who to ask, all at once."""
    seconds: float = 0.5
    """How long each supplier takes to answer."""


@activity.defn
async def ask_for_quote(call: QuoteCall) -> Quote:
    """Activity: ask one supplier for a price. An ``async def``, so it runs on the worker's loop."""
    await asyncio.sleep(call.seconds)  # a slow remote service: mostly waiting
    return Quote(call.supplier, call.item, PRICES[call.supplier])


@workflow.defn
class BestQuoteWorkflow:
    """Workflow: ask every supplier at once with ``asyncio.gather`` and keep the cheapest."""

    @workflow.run
    async def run(self, request: QuoteRequest) -> Quote:
        """Schedule one activity per supplier, wait for all of them, return the cheapest quote."""
        quotes = await asyncio.gather(
            *(
                workflow.execute_activity(
                    ask_for_quote,
                    QuoteCall(supplier, request.item, request.seconds),
                    start_to_close_timeout=timedelta(seconds=10),
                )
                for supplier in request.suppliers
            )
        )
        return min(quotes, key=lambda quote: quote.price)


def activity_seconds(history: WorkflowHistory) -> float:
    """Seconds from the first activity scheduled to the last activity closed, as the History says.

    This leaves out what a stopwatch around the client call would add (starting the workflow,
    a fresh worker's first poll), so it shows what ``gather`` changed: the activities' own time.
    """
    scheduled = [
        event.event_time.ToDatetime()
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    closed = [
        event.event_time.ToDatetime()
        for event in history.events
        if event.HasField("activity_task_completed_event_attributes")
        or event.HasField("activity_task_failed_event_attributes")
        or event.HasField("activity_task_timed_out_event_attributes")
        or event.HasField("activity_task_canceled_event_attributes")
    ]
    if not scheduled or not closed:
        return 0.0
    return (max(closed) - min(scheduled)).total_seconds()


# --- Shield, and keep waiting ------------------------------------------------------------------


async def wait_to_the_end(task: asyncio.Task[T]) -> T:
    """Wait until ``task`` is done, even if the waiter is cancelled meanwhile; then raise the cancel.

    ``asyncio.shield`` keeps a cancel away from ``task``, but the waiter's ``await`` still ends
    at once with ``CancelledError``. So the waiter notes the cancel, waits again, and raises it
    once ``task`` has finished: nothing is swallowed, and nothing is cut short.
    """
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError as error:
            if task.cancelled():
                raise  # the task itself was cancelled: nothing left to wait for
            cancelled = error  # only the waiter was cancelled: note it, keep waiting
    if cancelled is not None:
        raise cancelled
    return result


# --- The exercise: quotes with a deadline ------------------------------------------------------

SUPPLIERS = ("north", "east", "south")
"""The suppliers the exercise asks, in this order."""

QUOTE_DELAYS = {"north": 0.2, "east": 0.3, "south": 3.0}
"""How many seconds each supplier takes to answer in the exercise (south is far too slow)."""

QUOTE_TIMEOUT = 0.5
"""How long the exercise gives each supplier, in seconds."""

_EXPECTED = [PRICES["north"], PRICES["east"], None]
_SEQUENTIAL = sum(min(QUOTE_DELAYS[s], QUOTE_TIMEOUT) for s in SUPPLIERS)  # 1.0 s one by one
_GUARD = 10.0  # the check gives up on a fetch_quotes that takes longer than this


async def supplier_quote(supplier: str) -> int:
    """Ask one supplier of the exercise for its price: it answers after ``QUOTE_DELAYS[supplier]``."""
    await asyncio.sleep(QUOTE_DELAYS[supplier])
    return PRICES[supplier]


async def grade_fetch_quotes(fetch_quotes: Callable[[Sequence[str]], Awaitable[Any]]) -> list[str]:
    """The self-check's lines for the learner's ``fetch_quotes``: ``○``, ``✗ …`` or ``✓ …``.

    ``fetch_quotes(SUPPLIERS)`` must return one entry per supplier, in order: the price, or
    None for a supplier that did not answer within ``QUOTE_TIMEOUT`` seconds. It must ask them
    all at once (about ``QUOTE_TIMEOUT`` seconds in all) and never wait for the slow one.
    """
    started = time.perf_counter()
    try:
        pending = fetch_quotes(SUPPLIERS)
        if not asyncio.iscoroutine(pending):
            return ["✗ fetch_quotes must be an `async def` function (it returned no coroutine)."]
        result = await asyncio.wait_for(pending, timeout=_GUARD)
    except TimeoutError:
        if time.perf_counter() - started >= _GUARD:
            return [f"✗ fetch_quotes did not return within {_GUARD:g} seconds."]
        return [
            "✗ fetch_quotes let a TimeoutError out: catch it for the supplier that is too slow "
            "and put None in its place."
        ]
    except Exception as error:  # the learner's bug, shown rather than raised
        return [f"✗ fetch_quotes raised {type(error).__name__}: {error}"]
    elapsed = time.perf_counter() - started
    if result is None:
        return [
            "○ Not done yet: write fetch_quotes: ask every supplier at once (asyncio.gather), "
            "give each one QUOTE_TIMEOUT seconds (asyncio.wait_for) and put None for the late ones."
        ]
    if not isinstance(result, list | tuple) or list(result) != _EXPECTED:
        lines = [
            f"✗ fetch_quotes returned {result!r}; expected one entry per supplier, in the order "
            "asked: its price, or None when it did not answer in time."
        ]
        if elapsed >= QUOTE_DELAYS["south"]:
            lines.append(
                "✗ It waited for south, which takes 3 seconds: give each supplier only "
                "QUOTE_TIMEOUT seconds (asyncio.wait_for)."
            )
        return lines
    if elapsed >= _SEQUENTIAL * 0.9:
        return [
            "✗ The right quotes, but asked one after another (it took as long as the waits added "
            "up): start them all at once with asyncio.gather."
        ]
    return [
        "✓ Right: north and east answered in time, south was given up after QUOTE_TIMEOUT "
        "seconds, and all three were asked at once, so the whole call took about one timeout."
    ]


async def check_fetch_quotes(fetch_quotes: Callable[[Sequence[str]], Awaitable[Any]]) -> None:
    """The exercise's self-check: print what :func:`grade_fetch_quotes` says, one line each."""
    for line in await grade_fetch_quotes(fetch_quotes):
        print(line)
