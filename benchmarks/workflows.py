"""Workflows that only the benchmarks run: the trip without a saga, and the fan-out of undos.

The canonical trip saga is :class:`sagakit.course.lessons.trip.TripSagaWorkflow`
(variant c of ``bench_overhead.py``). The two workflows beside it here do the
same three steps with the same activities, timeouts and retry policy:

- :class:`NoCompensationTrip` (variant a) registers no undo at all, so it is
  the floor: what three activities cost.
- :class:`HandWrittenCompensationTrip` (variant b) keeps a list of undo
  callables, and on failure runs them in reverse inside ``try``/``except``:
  the approach the source articles show for SDKs without a saga class.

:class:`UndoFanout` registers several compensations that each sleep for the
same time, and runs them with :class:`~sagakit._saga.Saga`, one after the other
or all at once (``bench_fanout.py``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy

from sagakit import Saga
from sagakit.course.lessons.trip import TripSagaInput

# As in the lesson modules: the services are passed through the sandbox, not imported afresh
# for every run, so the variants compared here pay the same.
with workflow.unsafe.imports_passed_through():
    from sagakit.course.services.activities import TripActivities, TripRequest

__all__ = [
    "FanoutInput",
    "HandWrittenCompensationTrip",
    "NoCompensationTrip",
    "UndoFanout",
    "pause",
]

_STEPS = (
    (TripActivities.cancel_hotel, TripActivities.book_hotel),
    (TripActivities.cancel_flight, TripActivities.book_flight),
    (TripActivities.cancel_excursion, TripActivities.book_excursion),
)
_UNDO_TIMEOUT = timedelta(seconds=30)
_UNDO_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
)


def _request(trip: TripSagaInput) -> TripRequest:
    return TripRequest(
        trip_id=trip.trip_id,
        customer=trip.customer,
        idempotency_key=trip.trip_id if trip.idempotency_keys else None,
    )


def _step_retry(trip: TripSagaInput) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=trip.retry_interval_s),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=1),
        maximum_attempts=trip.max_attempts,
    )


@workflow.defn
class NoCompensationTrip:
    """Variant (a): the three bookings and nothing else; a failure leaves what was booked."""

    @workflow.run
    async def run(self, trip: TripSagaInput) -> str:
        request = _request(trip)
        retry = _step_retry(trip)
        for _undo, step in _STEPS:
            await workflow.execute_activity_method(
                step,
                request,
                start_to_close_timeout=timedelta(seconds=trip.step_timeout_s),
                retry_policy=retry,
            )
        return f"trip {trip.trip_id} booked for {trip.customer}"


@workflow.defn
class HandWrittenCompensationTrip:
    """Variant (b): a list of undo callables, run last-to-first when a step fails."""

    @workflow.run
    async def run(self, trip: TripSagaInput) -> str:
        request = _request(trip)
        retry = _step_retry(trip)
        undos: list[Callable[[], Awaitable[object]]] = []
        try:
            for undo, step in _STEPS:
                # Registered before the step, which may fail after its effect.
                undos.append(
                    functools.partial(
                        workflow.execute_activity_method,
                        undo,
                        request,
                        start_to_close_timeout=_UNDO_TIMEOUT,
                        retry_policy=_UNDO_RETRY,
                    )
                )
                await workflow.execute_activity_method(
                    step,
                    request,
                    start_to_close_timeout=timedelta(seconds=trip.step_timeout_s),
                    retry_policy=retry,
                )
        except BaseException:
            for run_undo in reversed(undos):
                try:
                    await run_undo()
                except Exception:
                    workflow.logger.exception("a compensation failed; going on with the rest")
            raise
        return f"trip {trip.trip_id} booked for {trip.customer}"


@dataclass(frozen=True)
class FanoutInput:
    """How many undos the fan-out registers, how long each takes, and how they run."""

    compensations: int
    """Number of compensations registered (each one sleeps ``seconds``)."""
    seconds: float
    """How long each compensation sleeps."""
    parallel: bool
    """Run them all at once (``Saga(parallel=True)``) instead of last-to-first."""


@activity.defn
async def pause(seconds: float) -> None:
    """A compensation that takes ``seconds`` and does nothing else."""
    await asyncio.sleep(seconds)


@workflow.defn
class UndoFanout:
    """Register N equal compensations, then run them with a Saga; return the seconds it took.

    The time is measured with ``workflow.now()`` (the server's clock at each
    workflow task), from the task that starts compensating to the task that
    sees the last compensation finish, so workflow start-up is left out.
    """

    @workflow.run
    async def run(self, job: FanoutInput) -> float:
        saga = Saga(parallel=job.parallel)
        for _ in range(job.compensations):
            saga.add(pause, job.seconds, start_to_close_timeout=timedelta(seconds=30))
        started = workflow.now()
        await saga.compensate()
        return (workflow.now() - started).total_seconds()
