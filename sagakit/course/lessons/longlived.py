"""Lesson 13: workflows that live long, grow long Histories and outlive their code.

- :class:`BatchWorkflow` processes many items and continues as new whenever its
  History passes ``max_events`` events; :func:`run_chain` follows the runs.
- :class:`TourWorkflow` books several trips as one saga and continues as new in
  the middle of it: with ``carry_undos=False`` the undos of the earlier runs are
  lost (the unsafe version), with ``carry_undos=True`` the next run registers them
  again from its input (the safe one).
- :class:`ConcertWorkflow` sells seats through an Update with a validator, next to
  a Signal and a Query.
- :class:`ParcelV1`, :class:`ParcelV2` and :class:`ParcelV3` are three versions of
  one workflow type: V2 adds a step and cannot replay V1's Histories, V3 adds it
  behind ``workflow.patched``.
- :class:`ReportWorkflow` fails once, to compare a workflow retry policy with a reset.
- :func:`check_counter` checks the lesson's exercise, a counter that must
  continue as new without losing its count.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from sagakit import Saga

# Helpers, not workflow code: the sandbox takes them from the worker's own imports instead of
# importing them afresh for every workflow run.
with workflow.unsafe.imports_passed_through():
    from sagakit.course.services.activities import TripActivities, TripRequest

if TYPE_CHECKING:
    from temporalio.client import Client, WorkflowHandle, WorkflowHistory

__all__ = [
    "COUNTER_AMOUNTS",
    "HISTORY_LIMIT_BYTES",
    "HISTORY_LIMIT_EVENTS",
    "HISTORY_SUGGEST_BYTES",
    "HISTORY_SUGGEST_EVENTS",
    "HISTORY_WARN_BYTES",
    "HISTORY_WARN_EVENTS",
    "PARCEL",
    "BatchInput",
    "BatchWorkflow",
    "Booked",
    "ConcertInput",
    "ConcertWorkflow",
    "CounterInput",
    "Items",
    "ParcelV1",
    "ParcelV2",
    "ParcelV3",
    "ReportService",
    "ReportWorkflow",
    "RunSummary",
    "TourInput",
    "TourWorkflow",
    "check_counter",
    "insure_parcel",
    "pack_parcel",
    "run_chain",
    "ship_parcel",
]

HISTORY_SUGGEST_EVENTS = 4_096
"""Events in one run's History at which the server suggests continue-as-new."""
HISTORY_SUGGEST_BYTES = 4 * 1024 * 1024
"""Bytes of one run's History at which the server suggests continue-as-new (4 MB)."""
HISTORY_WARN_EVENTS = 10_240
"""Events in one run's History at which the server starts to log warnings."""
HISTORY_WARN_BYTES = 10 * 1024 * 1024
"""Bytes of one run's History at which the server starts to warn (10 MB)."""
HISTORY_LIMIT_EVENTS = 51_200
"""Events at which the server terminates the run (no code runs, nothing is compensated)."""
HISTORY_LIMIT_BYTES = 50 * 1024 * 1024
"""Bytes at which the server terminates the run (50 MB)."""

_TIMEOUT = timedelta(seconds=5)
_QUICK = RetryPolicy(initial_interval=timedelta(seconds=0.2), maximum_interval=timedelta(seconds=1))


# -- continue-as-new --------------------------------------------------------------------------


class Items:
    """The activity that processes one item; it remembers every item it was given."""

    def __init__(self) -> None:
        """Start with no item processed."""
        self.calls: list[int] = []

    @activity.defn(name="process_item")
    async def process_item(self, item: int) -> int:
        """Process ``item`` and return its score (its square)."""
        self.calls.append(item)
        return item * item


@dataclass(frozen=True)
class BatchInput:
    """Which items to process, and where this run starts."""

    batch_id: str
    """Names the batch (and the workflow id)."""
    items: int
    """Process items ``0 .. items - 1``."""
    max_events: int = 40
    """Continue as new once this run's History has this many events."""
    next_item: int = 0
    """The first item this run processes (0 in the first run)."""
    total: int = 0
    """The sum of the scores of the items processed by the earlier runs."""


@workflow.defn
class BatchWorkflow:
    """Sum the scores of many items, in a chain of runs that each stay short."""

    @workflow.run
    async def run(self, batch: BatchInput) -> int:
        """Process the items from ``batch.next_item`` on; return the total of all scores."""
        total = batch.total
        for item in range(batch.next_item, batch.items):
            total += await workflow.execute_activity_method(
                Items.process_item, item, start_to_close_timeout=_TIMEOUT, retry_policy=_QUICK
            )
            info = workflow.info()
            long = info.get_current_history_length() >= batch.max_events
            if (long or info.is_continue_as_new_suggested()) and item + 1 < batch.items:
                workflow.continue_as_new(replace(batch, next_item=item + 1, total=total))
        return total


@dataclass(frozen=True)
class RunSummary:
    """One run of a workflow, as its History tells it."""

    run_id: str
    """The run's id."""
    events: int
    """How many events its History has."""
    activities: list[str]
    """The activities it scheduled, in order (with their input when it is short)."""
    ended: str
    """The type of its last event, e.g. ``"WorkflowExecutionContinuedAsNew"``."""
    attempt: int
    """The workflow attempt (2 and up for a run started by a workflow retry policy)."""
    next_run_id: str | None
    """The run the server started after this one (continue-as-new, retry), if any."""


async def run_chain(client: Client, workflow_id: str, first_run_id: str) -> list[RunSummary]:
    """Follow a workflow's runs from ``first_run_id``, each to the run the server started next.

    A run that continued as new, or failed under a workflow retry policy, names
    its successor in its last event; this reads each run's History in turn.
    """
    return [
        _summary(run_id, history)
        for run_id, history in await _run_histories(client, workflow_id, first_run_id)
    ]


async def _run_histories(
    client: Client, workflow_id: str, first_run_id: str
) -> list[tuple[str, WorkflowHistory]]:
    """Each run's id and History, from ``first_run_id`` along the runs the server started next."""
    runs: list[tuple[str, WorkflowHistory]] = []
    run_id: str | None = first_run_id
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        runs.append((run_id, history))
        run_id = _next_run_id(history)
    return runs


def _next_run_id(history: WorkflowHistory) -> str | None:
    last = history.events[-1]
    kind = last.WhichOneof("attributes") or ""
    return getattr(getattr(last, kind), "new_execution_run_id", "") or None


def _summary(run_id: str, history: WorkflowHistory) -> RunSummary:
    from temporalio.api.common.v1 import Payload

    activities = []
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            payloads: list[Payload] = list(attrs.input.payloads)
            argument = json.loads(payloads[0].data) if payloads else ""
            if isinstance(argument, dict):
                argument = argument.get("trip_id", "…")
            activities.append(f"{attrs.activity_type.name}({argument})")
    started = history.events[0].workflow_execution_started_event_attributes
    return RunSummary(
        run_id=run_id,
        events=len(history.events),
        activities=activities,
        ended=_event_type(history.events[-1].event_type),
        attempt=started.attempt,
        next_run_id=_next_run_id(history),
    )


def _event_type(value: int) -> str:
    from temporalio.api.enums.v1 import EventType

    name = EventType.Name(value)  # type: ignore[arg-type]
    return "".join(part.capitalize() for part in name.removeprefix("EVENT_TYPE_").split("_"))


# -- a saga that continues as new -------------------------------------------------------------

_KINDS = ("hotel", "flight", "excursion")
_BOOK = {
    "hotel": TripActivities.book_hotel,
    "flight": TripActivities.book_flight,
    "excursion": TripActivities.book_excursion,
}
_CANCEL = {
    "hotel": TripActivities.cancel_hotel,
    "flight": TripActivities.cancel_flight,
    "excursion": TripActivities.cancel_excursion,
}


@dataclass(frozen=True)
class Booked:
    """One booking an earlier run of a tour made, so that a later run can undo it."""

    trip_id: str
    """Which trip."""
    kind: str
    """``"hotel"``, ``"flight"`` or ``"excursion"``."""


@dataclass(frozen=True)
class TourInput:
    """A tour of several trips, booked all together or not at all."""

    tour_id: str
    """Names the tour; with a trip id, also the idempotency key of its requests."""
    trips: list[str]
    """The trips; each gets a hotel, a flight and an excursion, in this order."""
    carry_undos: bool
    """Hand the earlier runs' bookings to the next run, which registers their undos again."""
    max_events: int = 30
    """Continue as new once this run's History has this many events."""
    next_step: int = 0
    """The first booking this run makes (0 in the first run)."""
    booked: list[Booked] = field(default_factory=list)
    """What the earlier runs booked (empty unless ``carry_undos``)."""


@workflow.defn
class TourWorkflow:
    """Book every trip of a tour in one saga, continuing as new when the History grows."""

    @workflow.run
    async def run(self, tour: TourInput) -> str:
        """Book the tour, or undo what this saga knows it booked and fail."""
        steps = [(trip, kind) for trip in tour.trips for kind in _KINDS]
        booked = list(tour.booked)
        async with Saga() as saga:
            for earlier in booked:  # the safe hand-over: undos of the earlier runs first
                saga.add(_CANCEL[earlier.kind], self._request(tour, earlier.trip_id), **_UNDO)
            for index in range(tour.next_step, len(steps)):
                trip, kind = steps[index]
                request = self._request(tour, trip)
                saga.add(_CANCEL[kind], request, **_UNDO)
                await workflow.execute_activity_method(
                    _BOOK[kind], request, start_to_close_timeout=_TIMEOUT, retry_policy=_ONCE
                )
                booked.append(Booked(trip, kind))
                long = workflow.info().get_current_history_length() >= tour.max_events
                if long and index + 1 < len(steps):
                    handed_over = booked if tour.carry_undos else []
                    workflow.continue_as_new(replace(tour, next_step=index + 1, booked=handed_over))
        return f"tour {tour.tour_id} booked: {len(steps)} bookings"

    @staticmethod
    def _request(tour: TourInput, trip: str) -> TripRequest:
        return TripRequest(trip, "ada", idempotency_key=f"{tour.tour_id}/{trip}")


_ONCE = RetryPolicy(maximum_attempts=1)
_UNDO: dict[str, Any] = {
    "start_to_close_timeout": _TIMEOUT,
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=0.2), maximum_interval=timedelta(seconds=1)
    ),
}


# -- Updates, Signals and Queries -------------------------------------------------------------


@dataclass(frozen=True)
class ConcertInput:
    """A concert with a number of seats to sell."""

    concert_id: str
    """Names the concert."""
    seats: int
    """Seats for sale."""


@workflow.defn
class ConcertWorkflow:
    """Sell a concert's seats until the box office closes."""

    @workflow.init
    def __init__(self, concert: ConcertInput) -> None:
        """Put every seat up for sale."""
        self._left = concert.seats
        self._closed = False
        self._ignored: list[int] = []

    @workflow.run
    async def run(self, concert: ConcertInput) -> str:
        """Wait until the box office closes; report the seats sold."""
        await workflow.wait_condition(lambda: self._closed)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return f"{concert.seats - self._left} of {concert.seats} seats sold"

    @workflow.update
    def reserve(self, seats: int) -> int:
        """Reserve ``seats`` seats and return how many are left."""
        self._left -= seats
        return self._left

    @reserve.validator
    def _reserve_is_possible(self, seats: int) -> None:
        if seats < 1:
            raise ValueError(f"cannot reserve {seats} seats: reserve at least 1")
        if seats > self._left:
            raise ValueError(f"cannot reserve {seats} seats: only {self._left} left")

    @workflow.signal
    def reserve_later(self, seats: int) -> None:
        """Reserve seats without an answer: impossible requests are only noted."""
        if 1 <= seats <= self._left:
            self._left -= seats
        else:
            self._ignored.append(seats)

    @workflow.signal
    def close(self) -> None:
        """Close the box office."""
        self._closed = True

    @workflow.query
    def seats_left(self) -> int:
        """How many seats are still for sale."""
        return self._left


# -- versions of one workflow -----------------------------------------------------------------

PARCEL = "ShipParcel"
"""The workflow type that all three parcel versions register."""


@activity.defn
async def pack_parcel(parcel_id: str) -> str:
    """Pack the parcel."""
    return f"{parcel_id} packed"


@activity.defn
async def insure_parcel(parcel_id: str) -> str:
    """Insure the parcel (new in version 2)."""
    return f"{parcel_id} insured"


@activity.defn
async def ship_parcel(parcel_id: str) -> str:
    """Hand the parcel to the carrier."""
    return f"{parcel_id} shipped"


@workflow.defn(name=PARCEL)
class ParcelV1:
    """Version 1: pack, then ship."""

    @workflow.run
    async def run(self, parcel_id: str) -> list[str]:
        """Pack and ship the parcel; return what was done."""
        done = [await workflow.execute_activity(pack_parcel, parcel_id, **_PARCEL_STEP)]
        done.append(await workflow.execute_activity(ship_parcel, parcel_id, **_PARCEL_STEP))
        return done


@workflow.defn(name=PARCEL)
class ParcelV2:
    """Version 2: insure between packing and shipping (breaks the running version-1 runs)."""

    @workflow.run
    async def run(self, parcel_id: str) -> list[str]:
        """Pack, insure and ship the parcel; return what was done."""
        done = [await workflow.execute_activity(pack_parcel, parcel_id, **_PARCEL_STEP)]
        done.append(await workflow.execute_activity(insure_parcel, parcel_id, **_PARCEL_STEP))
        done.append(await workflow.execute_activity(ship_parcel, parcel_id, **_PARCEL_STEP))
        return done


@workflow.defn(name=PARCEL)
class ParcelV3:
    """Version 3: insure only runs that did not pass this point before the change."""

    @workflow.run
    async def run(self, parcel_id: str) -> list[str]:
        """Pack, insure (new runs only) and ship the parcel; return what was done."""
        done = [await workflow.execute_activity(pack_parcel, parcel_id, **_PARCEL_STEP)]
        if workflow.patched("insure-parcels"):
            done.append(await workflow.execute_activity(insure_parcel, parcel_id, **_PARCEL_STEP))
        done.append(await workflow.execute_activity(ship_parcel, parcel_id, **_PARCEL_STEP))
        return done


_PARCEL_STEP: dict[str, Any] = {"start_to_close_timeout": _TIMEOUT}


# -- workflow retry vs reset ------------------------------------------------------------------


class ReportService:
    """Gathers a report's figures and publishes it; publishing fails the first ``outages`` times."""

    def __init__(self, outages: int = 1) -> None:
        """Prepare a service whose first ``outages`` publish calls fail for good."""
        self.outages = outages
        self.calls: list[str] = []

    @activity.defn(name="gather_figures")
    async def gather_figures(self, report_id: str) -> int:
        """Gather the report's figures (slow and expensive in real life)."""
        self.calls.append("gather_figures")
        return 42

    @activity.defn(name="publish_report")
    async def publish_report(self, report_id: str) -> str:
        """Publish the report; fails (not retryable) while the outage lasts."""
        self.calls.append("publish_report")
        if self.outages > 0:
            self.outages -= 1
            raise ApplicationError("the publishing service is down", non_retryable=True)
        return f"{report_id} published"


@workflow.defn
class ReportWorkflow:
    """Gather a report's figures, then publish it."""

    @workflow.run
    async def run(self, report_id: str) -> str:
        """Gather, publish, and say which workflow attempt did it."""
        figures = await workflow.execute_activity_method(
            ReportService.gather_figures, report_id, start_to_close_timeout=_TIMEOUT
        )
        published = await workflow.execute_activity_method(
            ReportService.publish_report,
            report_id,
            start_to_close_timeout=_TIMEOUT,
            retry_policy=_ONCE,
        )
        return f"{published} with {figures} figures (workflow attempt {workflow.info().attempt})"


# -- the exercise -----------------------------------------------------------------------------


@dataclass(frozen=True)
class CounterInput:
    """The input of the exercise's counter."""

    max_events: int = 40
    """Continue as new once a run's History has more than this many events."""
    total: int = 0
    """The count carried over from the earlier runs."""


COUNTER_AMOUNTS = [
    5,
    5,
    3,
    4,
    3,
    4,
    3,
    3,
    2,
    9,
    4,
    5,
    1,
    7,
    3,
    1,
    5,
    3,
    2,
    5,
    8,
    7,
    3,
    5,
    6,
    4,
    8,
    9,
    7,
    6,
]
"""The amounts the exercise check adds, one Signal each (always the same)."""


async def check_counter(
    client: Client, path: str | Path, *, task_queue: str = "lesson-13-exercise"
) -> list[str]:
    """Run the learner's counter for real and say how it went, one line per finding.

    The counter is the workflow class ``Counter`` in the file at ``path``. The check
    sends it :data:`COUNTER_AMOUNTS` as ``add`` Signals, then ``finish``, and reads
    every run's History. The first line starts with ``✓`` when the counter kept
    its count across continue-as-new and every run stayed short, with ``○ Not
    done yet`` when it never continued as new, and each problem is a ``✗`` line.
    """
    from temporalio.client import WorkflowFailureError
    from temporalio.common import WorkflowIDConflictPolicy

    from sagakit import running_worker
    from sagakit.course.exercises.harness import ExerciseLoadError, find_workflow, load_exercise

    file = Path(path)
    try:
        counter = find_workflow(load_exercise(file), "Counter", file.name)
    except ExerciseLoadError as err:
        return [f"✗ {err}"]
    options = CounterInput()
    expected = sum(COUNTER_AMOUNTS)
    workflow_id = f"{task_queue}-counter"
    async with running_worker(client, task_queue=task_queue, workflows=[counter]):
        handle = await client.start_workflow(
            "Counter",
            options,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
            run_timeout=timedelta(seconds=30),
        )
        first_run = handle.result_run_id or ""
        paced = True  # until a task stays pending (a broken counter): then wait no more
        for amount in COUNTER_AMOUNTS:
            await handle.signal("add", amount)
            paced = paced and await _handled(handle)
        await handle.signal("finish")
        try:
            result: Any = await asyncio.wait_for(handle.result(), timeout=15)
        except TimeoutError:
            await handle.terminate("the exercise check gave up waiting")
            return ["✗ The counter did not finish within 15 s after the finish Signal."]
        except WorkflowFailureError as err:
            return [f"✗ The counter failed: {err.cause}"]
    histories = await _run_histories(client, workflow_id, first_run)
    chain = [_summary(run_id, history) for run_id, history in histories]
    lines = []
    if result != expected:
        lines.append(
            f"✗ The counter returned {result}, but the Signals added up to {expected}: "
            "carry the total into the next run's input."
        )
    longest = max(run.events for run in chain)
    if len(chain) == 1:
        return [
            "○ Not done yet: the counter ran as one long run; continue as new once its "
            f"History has more than {options.max_events} events, carrying the total."
        ]
    # How long a run grows depends on how fast the Signals arrive (several can land in one
    # workflow task), so judge the decision instead: a run must continue as new in the first
    # workflow task that starts with more than max_events events in its History.
    late = max(_tasks_past(history, options.max_events) for _, history in histories)
    if late > 1:
        lines.append(
            f"✗ One run grew to {longest} events, {late} workflow tasks past "
            f"{options.max_events}: check the History length while waiting, and continue "
            "as new as soon as it passes."
        )
    if lines:
        return lines
    return [
        f"✓ The counter continued as new and still counted {expected}; every run did so "
        f"as soon as its History passed {options.max_events} events."
    ]


async def _handled(handle: WorkflowHandle[Any, Any], wait: float = 2.0) -> bool:
    """Wait (up to ``wait`` seconds) until the workflow has no workflow task pending.

    Sent one after another, several Signals could land in one workflow task, and how many
    would depend on the machine's speed; waiting gives each Signal a task of its own, so
    every run's History is as long on a laptop as on a loaded server. Returns whether it
    got there in time.
    """
    from sagakit.course._polling import PollTimeout, poll_until

    async def settled() -> bool | None:
        description = await handle.describe()
        return None if description.raw_description.HasField("pending_workflow_task") else True

    try:
        return await poll_until(settled, timeout=wait, what="no workflow task", interval=0.01)
    except PollTimeout:
        return False


def _tasks_past(history: WorkflowHistory, limit: int) -> int:
    """How many workflow tasks of a run completed after starting with over ``limit`` events.

    A task sees the History as long as its own WorkflowTaskStarted event's id.
    """
    return sum(
        1
        for event in history.events
        if event.HasField("workflow_task_completed_event_attributes")
        and event.workflow_task_completed_event_attributes.started_event_id > limit
    )
