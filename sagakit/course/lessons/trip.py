"""The trip saga: book a hotel, a flight and an excursion, or none of them.

This is the workflow that lesson 09 runs, the chaos tests attack and the
benchmarks time. Each step registers its undo *before* it runs (a step can fail
after its effect), retries transient failures (forward recovery) and, when a
step cannot succeed, undoes what was done (backward recovery).

The idempotency key names one saga *run* (see :func:`run_key`): the trip service
lets a cancel win over a late booking with the same key, so a run that books
again (after a reset) needs keys of its own. The booking steps have a heartbeat
timeout, so an attempt that heartbeats while it waits learns that it timed out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from sagakit import Saga
from sagakit.course.services.activities import TripActivities, TripRequest

__all__ = ["TRIP_STEPS", "TripSagaInput", "TripSagaWorkflow", "run_key"]

TRIP_STEPS: tuple[str, ...] = ("book_hotel", "book_flight", "book_excursion")
"""The saga's forward steps (activity names), in the order it runs them."""


def run_key(trip_id: str) -> str:
    """Return the idempotency key of this saga run of ``trip_id`` (call it in a workflow).

    The first run of a workflow id sends the plain trip id. Any later run of it (a
    reset, a retry) is a new saga run and sends ``"<trip id>@<run id>"``: its bookings
    are new requests, and the undos of the earlier run do not refuse them.
    """
    info = workflow.info()
    if info.run_id == info.first_execution_run_id:
        return trip_id
    return f"{trip_id}@{info.run_id}"


@dataclass(frozen=True)
class TripSagaInput:
    """What to book, and how the saga behaves."""

    trip_id: str
    """Which trip; also the idempotency key sent to the services (see :func:`run_key`)."""
    customer: str = "ada"
    """Who travels."""
    parallel_compensation: bool = False
    """Undo all steps at once instead of last-to-first."""
    idempotency_keys: bool = True
    """Send an idempotency key (:func:`run_key`), so a retried step never books twice and a
    late booking whose undo already ran is refused."""
    step_timeout_s: float = 2.0
    """Start-to-close (and heartbeat) timeout of each step, in seconds; a hung call is
    abandoned after it."""
    max_attempts: int = 4
    """Attempts per step (forward recovery) before the saga gives up and compensates."""
    retry_interval_s: float = 0.2
    """First wait between attempts, in seconds (doubling, at most 1 s)."""
    undo_attempts: int = 0
    """Attempts per undo before the saga waits for an operator; 0 keeps sagakit's default policy."""


@workflow.defn
class TripSagaWorkflow:
    """Book hotel, flight and excursion; on failure cancel whatever was booked."""

    @workflow.run
    async def run(self, trip: TripSagaInput) -> str:
        """Run the three steps inside a :class:`~sagakit.Saga` and report the result."""
        request = TripRequest(
            trip_id=trip.trip_id,
            customer=trip.customer,
            idempotency_key=run_key(trip.trip_id) if trip.idempotency_keys else None,
        )
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=trip.retry_interval_s),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=1),
            maximum_attempts=trip.max_attempts,
        )
        steps = (
            (TripActivities.cancel_hotel, TripActivities.book_hotel),
            (TripActivities.cancel_flight, TripActivities.book_flight),
            (TripActivities.cancel_excursion, TripActivities.book_excursion),
        )
        undo_options = {}
        if trip.undo_attempts:
            undo_options["retry_policy"] = RetryPolicy(
                initial_interval=timedelta(seconds=trip.retry_interval_s),
                maximum_interval=timedelta(seconds=1),
                maximum_attempts=trip.undo_attempts,
            )
        async with Saga(parallel=trip.parallel_compensation) as saga:
            for undo, step in steps:
                saga.add(undo, request, **undo_options)  # before the step: it may fail after it
                await workflow.execute_activity_method(
                    step,
                    request,
                    start_to_close_timeout=timedelta(seconds=trip.step_timeout_s),
                    # An attempt that heartbeats hears of its timeout at its next heartbeat.
                    heartbeat_timeout=timedelta(seconds=trip.step_timeout_s),
                    retry_policy=retry,
                )
        return f"trip {trip.trip_id} booked for {trip.customer}"
