"""The activities and settings shared by the sagas of ``bench_sandbox.py``.

Every workflow module of that benchmark imports this one, so the sandbox
re-executes it for every run of every variant alike. It imports only
``temporalio`` (passed through the sandbox by default), never ``sagakit``.

The activities do nothing and return at once: the benchmark measures what the
worker spends on a workflow run, not on the work of its steps.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

__all__ = ["STEPS", "STEP_TIMEOUT", "UNDO_RETRY", "UNDO_TIMEOUT", "book", "cancel"]

STEPS = ("hotel", "flight", "excursion")
"""The saga's steps, in order; the last one is refused in the compensating shape."""

STEP_TIMEOUT = timedelta(seconds=10)
"""Start-to-close timeout of a step."""

UNDO_TIMEOUT = timedelta(seconds=30)
"""Start-to-close timeout of an undo: ``Saga``'s default, spelled out by the hand-written saga."""

UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
)
"""Retry policy of an undo: ``Saga``'s default, spelled out by the hand-written saga."""


@activity.defn
async def book(step: str, refuse: bool) -> str:
    """Book ``step``, or refuse it for good (not retryable) when ``refuse`` is set."""
    if refuse:
        raise ApplicationError(f"{step} refused", type="Refused", non_retryable=True)
    return step


@activity.defn
async def cancel(step: str) -> str:
    """Undo the booking of ``step``."""
    return step
