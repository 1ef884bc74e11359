"""Wait until something is true by asking again and again, with a deadline (private).

The lessons often wait for a workflow to get somewhere: a step running, a stage
reached, an event in the History, a worker polling. Temporal offers no push for
most of these, so the course asks the server every few milliseconds until the
answer comes or the time is up. :func:`poll_until` is that loop, written once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sagakit import SagakitError

__all__ = ["DEFAULT_INTERVAL", "PollTimeout", "poll_until"]

T = TypeVar("T")

DEFAULT_INTERVAL = 0.05
"""Seconds between two looks: often enough to feel instant, rare enough to cost nothing."""


class PollTimeout(SagakitError, TimeoutError):
    """What was awaited did not happen before the deadline.

    Attributes:
        what: What was awaited, in words.
        timeout: How many seconds were allowed.
    """

    def __init__(self, what: str, timeout: float) -> None:
        """Name what was awaited and for how long."""
        super().__init__(f"Gave up waiting for {what} after {timeout:g} s.")
        self.what = what
        self.timeout = timeout


async def poll_until(
    check: Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str,
    interval: float = DEFAULT_INTERVAL,
    timed_out: Callable[[], Exception] | None = None,
) -> T:
    """Await ``check()`` every ``interval`` seconds until it returns something other than None.

    ``check`` runs at least once, and once more after the deadline has passed,
    so a slow answer that arrives just in time still counts. It may raise to
    stop the wait early (the workflow ended, the process died).

    Args:
        check: Looks once; returns the awaited value, or None for "not yet".
        timeout: Seconds to wait in all.
        what: What is awaited, in words, for the error ("workflow t1 to reach 'done'").
        interval: Seconds between two looks.
        timed_out: Builds the error to raise at the deadline instead of
            :class:`PollTimeout` (called then, so it can say what the last look saw).

    Returns:
        The first value ``check`` returned that is not None.

    Raises:
        PollTimeout: The deadline passed (or the error ``timed_out`` builds).
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await check()
        if found is not None:
            return found
        if loop.time() >= deadline:
            if timed_out is not None:
                raise timed_out()
            raise PollTimeout(what, timeout)
        await asyncio.sleep(interval)
