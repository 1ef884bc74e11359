"""Lesson 12: what stops a saga's compensations from running, and what does not.

:class:`ConfirmedTripWorkflow` books a hotel and a flight, then waits for the
customer to confirm (a signal) before it books the excursion; every step's undo
is registered with a :class:`~sagakit.Saga` first. It is the saga of the
lesson's demonstrations:

- closed by the *server* (a run timeout, ``terminate``): no workflow code runs
  any more, so no compensation runs and the trip stays half-booked;
- failed or cancelled: the saga's code runs the compensations, and a second
  cancellation during the compensations cannot cut them short;
- waiting with its own deadline (``confirm_within_s``): the workflow's timer
  fires, the workflow fails *itself*, and the compensations run.

:class:`HandRolledTripWorkflow` compensates with a plain ``try``/``except``
loop instead of the saga, to show what a cancellation during compensation does
to it. :class:`BuggyTripWorkflow` and :class:`FixedTripWorkflow` are two
deployments of one workflow type: the first has a bug (a ``KeyError``), which
fails the workflow *task*, not the workflow, so nothing is compensated and the
second continues the same run. :func:`reset_point_after` and
:func:`reset_workflow` rewind a history.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from sagakit import Saga, SagakitError
from sagakit.course.lessons.trip import run_key

# Helpers, not workflow code: the sandbox takes them from the worker's own imports instead of
# importing them afresh for every workflow run.
with workflow.unsafe.imports_passed_through():
    from sagakit.course.lessons._stage import wait_for_saga_state, wait_for_stage
    from sagakit.course.services.activities import TripActivities, TripRequest

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle, WorkflowHistory

__all__ = [
    "FIXABLE_TRIP",
    "NOT_CONFIRMED",
    "BuggyTripWorkflow",
    "FixedTripWorkflow",
    "ConfirmedTripInput",
    "ConfirmedTripWorkflow",
    "HandRolledTripWorkflow",
    "NoResetPoint",
    "reset_point_after",
    "reset_workflow",
    "wait_for_saga_state",
    "wait_for_stage",
]

NOT_CONFIRMED = "NotConfirmed"
"""The ``type`` of the error a trip fails with when its confirmation does not come in time."""


class NoResetPoint(SagakitError):
    """The history has no finished workflow task after the activity that was named."""


@dataclass(frozen=True)
class ConfirmedTripInput:
    """A trip that needs the customer's confirmation before the excursion is booked."""

    trip_id: str
    """Which trip; also the idempotency key sent to the services (see
    :func:`~sagakit.course.lessons.trip.run_key`: a reset run sends keys of its own)."""
    customer: str = "ada"
    """Who travels."""
    confirm_within_s: float | None = None
    """Seconds to wait for the ``confirm`` signal before undoing the trip; ``None`` waits
    forever (and leaves it to whoever stops the workflow)."""
    retry_interval_s: float = 0.2
    """First wait between attempts of a step or an undo, in seconds (doubling, at most 1 s)."""
    max_attempts: int = 3
    """Attempts per step before the saga gives up and compensates."""


def _retry(trip: ConfirmedTripInput, attempts: int) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=trip.retry_interval_s),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=1),
        maximum_attempts=attempts,
    )


_STEP_TIMEOUT = timedelta(seconds=5)


@workflow.defn
class ConfirmedTripWorkflow:
    """Hotel, flight, wait for the customer's confirmation, excursion; undo all on failure."""

    def __init__(self) -> None:
        self._confirmed = False
        self._stage = "starting"

    @workflow.signal
    def confirm(self) -> None:
        """The customer confirms the trip."""
        self._confirmed = True

    @workflow.query
    def stage(self) -> str:
        """What the workflow is doing now."""
        return self._stage

    @workflow.run
    async def run(self, trip: ConfirmedTripInput) -> str:
        """Book the trip, or undo whatever was booked and fail."""
        request = TripRequest(trip.trip_id, trip.customer, idempotency_key=run_key(trip.trip_id))
        steps = _retry(trip, trip.max_attempts)
        undo = {"retry_policy": _retry(trip, 10), "start_to_close_timeout": _STEP_TIMEOUT}
        try:
            async with Saga() as saga:
                self._stage = "booking"
                saga.add(TripActivities.cancel_hotel, request, **undo)
                await workflow.execute_activity_method(
                    TripActivities.book_hotel,
                    request,
                    start_to_close_timeout=_STEP_TIMEOUT,
                    retry_policy=steps,
                )
                saga.add(TripActivities.cancel_flight, request, **undo)
                await workflow.execute_activity_method(
                    TripActivities.book_flight,
                    request,
                    start_to_close_timeout=_STEP_TIMEOUT,
                    retry_policy=steps,
                )
                self._stage = "waiting for confirmation"
                await self._wait_for_confirmation(trip)
                self._stage = "booking"
                saga.add(TripActivities.cancel_excursion, request, **undo)
                await workflow.execute_activity_method(
                    TripActivities.book_excursion,
                    request,
                    start_to_close_timeout=_STEP_TIMEOUT,
                    retry_policy=steps,
                )
        finally:
            self._stage = "done"
        return f"trip {trip.trip_id} booked for {trip.customer}"

    async def _wait_for_confirmation(self, trip: ConfirmedTripInput) -> None:
        if trip.confirm_within_s is None:
            await workflow.wait_condition(lambda: self._confirmed)
            return
        try:
            await workflow.wait_condition(
                lambda: self._confirmed, timeout=timedelta(seconds=trip.confirm_within_s)
            )
        except TimeoutError:
            raise ApplicationError(
                f"trip {trip.trip_id} was not confirmed within {trip.confirm_within_s:g} s; "
                "undoing it",
                type=NOT_CONFIRMED,
                non_retryable=True,
            ) from None


@workflow.defn
class HandRolledTripWorkflow:
    """The same trip with a hand-written undo loop (do not copy: a cancel cuts it short)."""

    def __init__(self) -> None:
        self._stage = "starting"

    @workflow.query
    def stage(self) -> str:
        """What the workflow is doing now."""
        return self._stage

    @workflow.run
    async def run(self, trip: ConfirmedTripInput) -> str:
        """Book the three steps; on any error, undo the finished ones last-to-first."""
        request = TripRequest(trip.trip_id, trip.customer, idempotency_key=run_key(trip.trip_id))
        steps: list[tuple[Any, Any]] = [
            (TripActivities.book_hotel, TripActivities.cancel_hotel),
            (TripActivities.book_flight, TripActivities.cancel_flight),
            (TripActivities.book_excursion, TripActivities.cancel_excursion),
        ]
        done: list[Any] = []
        self._stage = "booking"
        try:
            for step, undo in steps:
                await workflow.execute_activity_method(
                    step,
                    request,
                    start_to_close_timeout=_STEP_TIMEOUT,
                    retry_policy=_retry(trip, trip.max_attempts),
                )
                done.append(undo)
        except (Exception, asyncio.CancelledError):
            self._stage = "compensating"
            for undo in reversed(done):  # a cancel arriving here stops the loop
                await workflow.execute_activity_method(
                    undo,
                    request,
                    start_to_close_timeout=_STEP_TIMEOUT,
                    retry_policy=_retry(trip, 10),
                )
            raise
        finally:
            if self._stage != "compensating":
                self._stage = "done"
        return f"trip {trip.trip_id} booked for {trip.customer}"


FIXABLE_TRIP = "FixableTrip"
"""The workflow type that :class:`BuggyTripWorkflow` and :class:`FixedTripWorkflow` both register."""

_NIGHTS = {"hotel": 3, "flight": 0}


@workflow.defn(name=FIXABLE_TRIP)
class BuggyTripWorkflow:
    """Deployment 1 of the trip: a bug after the hotel is booked (do not copy)."""

    @workflow.run
    async def run(self, trip_id: str) -> str:
        """Book a hotel, a flight and an excursion in a saga; report the nights."""
        request = TripRequest(trip_id, idempotency_key=run_key(trip_id))
        async with Saga() as saga:
            saga.add(TripActivities.cancel_hotel, request)
            hotel = await workflow.execute_activity_method(
                TripActivities.book_hotel, request, start_to_close_timeout=_STEP_TIMEOUT
            )
            nights = _NIGHTS[hotel.kind + "s"]  # the bug: there is no key "hotels"
            saga.add(TripActivities.cancel_flight, request)
            await workflow.execute_activity_method(
                TripActivities.book_flight, request, start_to_close_timeout=_STEP_TIMEOUT
            )
            saga.add(TripActivities.cancel_excursion, request)
            await workflow.execute_activity_method(
                TripActivities.book_excursion, request, start_to_close_timeout=_STEP_TIMEOUT
            )
        return f"trip {trip_id} booked: {nights} nights, a flight and an excursion"


@workflow.defn(name=FIXABLE_TRIP)
class FixedTripWorkflow:
    """Deployment 2 of the same workflow type: the bug is fixed, nothing else changed."""

    @workflow.run
    async def run(self, trip_id: str) -> str:
        """Book a hotel, a flight and an excursion in a saga; report the nights."""
        request = TripRequest(trip_id, idempotency_key=run_key(trip_id))
        async with Saga() as saga:
            saga.add(TripActivities.cancel_hotel, request)
            hotel = await workflow.execute_activity_method(
                TripActivities.book_hotel, request, start_to_close_timeout=_STEP_TIMEOUT
            )
            nights = _NIGHTS[hotel.kind]  # fixed
            saga.add(TripActivities.cancel_flight, request)
            await workflow.execute_activity_method(
                TripActivities.book_flight, request, start_to_close_timeout=_STEP_TIMEOUT
            )
            saga.add(TripActivities.cancel_excursion, request)
            await workflow.execute_activity_method(
                TripActivities.book_excursion, request, start_to_close_timeout=_STEP_TIMEOUT
            )
        return f"trip {trip_id} booked: {nights} nights, a flight and an excursion"


def reset_point_after(history: WorkflowHistory, activity: str) -> int:
    """Return the id of the first finished workflow task after ``activity`` completed.

    That is a valid reset point: a reset there keeps the activity's result and
    runs everything the workflow did afterwards again.

    Raises:
        NoResetPoint: ``activity`` never completed, or no workflow task finished after it.
    """
    scheduled: dict[int, str] = {}
    completed = False
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            scheduled[event.event_id] = attrs.activity_type.name
        elif event.HasField("activity_task_completed_event_attributes"):
            attrs_c = event.activity_task_completed_event_attributes
            completed = completed or scheduled.get(attrs_c.scheduled_event_id) == activity
        elif completed and event.HasField("workflow_task_completed_event_attributes"):
            return int(event.event_id)
    raise NoResetPoint(
        f"No workflow task finished after {activity!r} completed in the history of "
        f"{history.workflow_id}. Pick an activity that completed before the workflow went on."
    )


async def reset_workflow(
    client: Client, handle: WorkflowHandle[Any, Any], event_id: int, reason: str
) -> WorkflowHandle[Any, Any]:
    """Reset a workflow run to ``event_id`` and return a handle to the new run.

    The server copies the history up to that workflow task into a new run and
    ends the old one; workers then run the workflow code on from there.

    Args:
        client: The client of the workflow's server.
        handle: A handle with the run id to reset.
        event_id: A ``WorkflowTaskCompleted`` event id (see :func:`reset_point_after`).
        reason: Why, recorded in the history.
    """
    from temporalio.api.common.v1 import WorkflowExecution
    from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest

    response = await client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=handle.run_id or ""),
            reason=reason,
            workflow_task_finish_event_id=event_id,
            request_id=str(uuid.uuid4()),
        )
    )
    return client.get_workflow_handle(handle.id, run_id=response.run_id)
