"""Read a workflow's event history as rows, activity spans and a timeline plot.

Temporal records everything a workflow does as an event history. This module
turns that history into views a learner can read:

- :func:`history_rows` / :func:`history_table`: one row per event, with the
  activity each activity event belongs to, the attempt number and any failure;
- :func:`activity_spans` / :func:`spans_table`: one span per activity execution,
  from the moment the workflow scheduled it until it closed;
- :func:`plot_timeline`: those spans as horizontal bars on a time axis, with
  failures marked and compensations in their own colour;
- :func:`fetch_history`, :func:`save_history` and :func:`load_history` to get a
  history from the server or from a JSON file (the same format the Web UI and
  ``temporal workflow show --output json`` download).

Two properties of real histories shape these views:

- **Retried attempts are not separate events.** An activity execution has one
  ``ActivityTaskScheduled`` event and, when its last attempt ends, one
  ``ActivityTaskStarted`` event carrying that attempt's number and the failure
  of the attempt before it (``last_failure``). Earlier attempts leave no events
  of their own, so their individual start and end times are not in the
  history. A span therefore covers a whole execution and splits it into what
  the history can tell apart: the time before the last attempt started (the
  earlier attempts plus the retry waits) and the last attempt itself.
- **``ActivityTaskStarted`` is written when the attempt ends,** but its time is
  when the attempt began. Event ids follow the order of writing, so in event-id
  order a started event's time can be earlier than the event just before it.
  An activity that is still running has no started event yet.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from google.protobuf.json_format import ParseError
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory

from sagakit._errors import SagakitError

__all__ = [
    "COMPENSATION_PREFIXES",
    "ActivitySpan",
    "CompensationTest",
    "HistoryFileError",
    "HistoryRow",
    "Outcome",
    "activity_spans",
    "event_counts",
    "event_type_name",
    "fetch_history",
    "history_rows",
    "load_history",
    "looks_like_compensation",
    "save_history",
]

Outcome = Literal["completed", "failed", "timed_out", "canceled", "running"]
"""How an activity execution ended; ``running`` means the history has no close event for it."""

CompensationTest = Callable[[str], bool] | Collection[str] | None
"""Which activity names are compensations: a predicate, a set of names, or ``None`` for
:func:`looks_like_compensation`."""

COMPENSATION_PREFIXES: tuple[str, ...] = (
    "cancel",
    "undo",
    "compensate",
    "refund",
    "put_",
    "release",
)
"""Activity-name prefixes that :func:`looks_like_compensation` treats as compensations."""


class HistoryFileError(SagakitError):
    """A stored workflow history could not be read or written."""


@dataclass(frozen=True)
class HistoryRow:
    """One event of a workflow history, reduced to what a reader needs."""

    event_id: int
    """The event's position in the history, starting at 1."""

    time: datetime
    """When the event happened, timezone-aware UTC."""

    type: str
    """The event type without its prefix, for example ``"ActivityTaskScheduled"``."""

    activity: str | None
    """The activity type name, for activity events; otherwise ``None``."""

    activity_id: str | None
    """The activity id the workflow gave the execution, for activity events."""

    attempt: int | None
    """The attempt number, for activity started, completed, failed, timed-out and canceled events."""

    failure: str | None
    """The failure message (with its causes, joined by ": "), for events that carry one."""

    offset: float = 0.0
    """Seconds between the first event of the history and this one."""

    previous_failure: str | None = None
    """On an ``ActivityTaskStarted`` event of attempt 2 or later: how the attempt before failed."""


@dataclass(frozen=True)
class ActivitySpan:
    """One activity execution: from being scheduled to closing, over all its attempts.

    The history does not record when earlier attempts ran (see the module
    docstring), so a span has one start, the time the last attempt started,
    and one end. Everything before ``last_attempt_start`` is earlier attempts
    and retry waits when ``attempts`` is more than 1.
    """

    activity: str
    """The activity type name, for example ``"book_hotel"``."""

    activity_id: str
    """The activity id within the workflow (``"1"``, ``"2"`` … unless the workflow chose one)."""

    scheduled_event_id: int
    """The id of the ``ActivityTaskScheduled`` event, unique within the history."""

    attempts: int
    """The number of the last attempt, which is how many attempts ran; 0 if none is recorded yet."""

    start: float
    """Seconds from the workflow's start until the workflow scheduled the activity."""

    last_attempt_start: float | None
    """Seconds from the workflow's start until the last attempt began; ``None`` if unknown."""

    end: float | None
    """Seconds from the workflow's start until the execution closed; ``None`` while it runs."""

    outcome: Outcome
    """How the execution ended."""

    failure: str | None
    """Why it failed, timed out or was canceled; ``None`` when it completed or still runs."""

    previous_failure: str | None
    """How the attempt before the last one failed, when there were retries."""

    is_compensation: bool
    """Whether the activity undoes an earlier step (see :data:`CompensationTest`)."""

    @property
    def retried(self) -> bool:
        """Whether the execution needed more than one attempt."""
        return self.attempts > 1

    @property
    def duration(self) -> float | None:
        """Seconds from scheduled to closed, or ``None`` while it runs."""
        return None if self.end is None else self.end - self.start


def looks_like_compensation(activity: str) -> bool:
    """Guess from its name whether an activity is a compensation.

    True when the lower-cased name starts with one of
    :data:`COMPENSATION_PREFIXES`, for example ``cancel_hotel`` or
    ``refund_payment``. Pass your own test to :func:`activity_spans` when your
    names follow another convention.
    """
    return activity.lower().startswith(COMPENSATION_PREFIXES)


def event_type_name(event: HistoryEvent) -> str:
    """The event's type as a CamelCase name, for example ``"ActivityTaskScheduled"``."""
    try:
        raw = EventType.Name(event.event_type)
    except ValueError:  # a type newer than this SDK: fall back to the attributes' name
        raw = (event.WhichOneof("attributes") or "unknown").removesuffix("_event_attributes")
    words = raw.removeprefix("EVENT_TYPE_").lower().split("_")
    return "".join(word.capitalize() for word in words)


async def fetch_history(
    client: Client, workflow_id: str, *, run_id: str | None = None
) -> WorkflowHistory:
    """Fetch the event history of a workflow (its latest run unless ``run_id`` is given).

    The same as ``await client.get_workflow_handle(workflow_id).fetch_history()``.
    """
    return await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()


def save_history(history: WorkflowHistory, path: str | Path) -> Path:
    """Write a history as JSON (the Web UI's download format), creating folders as needed.

    The file does not hold the workflow id; :func:`load_history` recovers it
    from the first event.

    Raises:
        HistoryFileError: the file could not be written.
    """
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(history.to_json() + "\n", encoding="utf-8")
    except OSError as err:
        raise HistoryFileError(
            f"Could not write the history of {history.workflow_id!r} to {target}: {err}. "
            "Choose a folder you can write to."
        ) from err
    return target


def load_history(path: str | Path, *, workflow_id: str | None = None) -> WorkflowHistory:
    """Read a history saved by :func:`save_history`, the Web UI or the ``temporal`` CLI.

    Args:
        path: the JSON file.
        workflow_id: the workflow id to attach; by default the one recorded in
            the first event, else the file name without its extension.

    Raises:
        HistoryFileError: the file is missing, is not a history, or has no events.
    """
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
        parsed = WorkflowHistory.from_json(workflow_id or "", text)
    except (OSError, ValueError, ParseError, KeyError, TypeError) as err:
        raise HistoryFileError(
            f"Could not read a workflow history from {source}: {err}. Give the path of a JSON "
            "file written by save_history() or downloaded from the Temporal Web UI."
        ) from err
    if not parsed.events:
        raise HistoryFileError(
            f"{source} holds no history events. Save a history that has at least the "
            "WorkflowExecutionStarted event."
        )
    if workflow_id is None:
        first = parsed.events[0]
        recorded = first.workflow_execution_started_event_attributes.workflow_id
        parsed = WorkflowHistory(recorded or source.stem, parsed.events)
    return parsed


def history_rows(history: WorkflowHistory) -> list[HistoryRow]:
    """Turn every event of a history into a :class:`HistoryRow`, in event-id order."""
    if not history.events:
        return []
    t0 = history.events[0].event_time.ToNanoseconds()
    scheduled: dict[int, tuple[str, str]] = {}
    attempts: dict[int, int] = {}  # started event id -> attempt
    rows = []
    for event in history.events:
        attrs = _attributes(event)
        activity: str | None = None
        activity_id: str | None = None
        attempt: int | None = None
        previous_failure: str | None = None
        if event.HasField("activity_task_scheduled_event_attributes"):
            activity = attrs.activity_type.name
            activity_id = attrs.activity_id
            scheduled[event.event_id] = (activity, activity_id)
        elif event.HasField("activity_task_started_event_attributes"):
            activity, activity_id = scheduled.get(attrs.scheduled_event_id, (None, None))
            attempt = attrs.attempt
            attempts[event.event_id] = attempt
            if attrs.HasField("last_failure"):
                previous_failure = _failure_text(attrs.last_failure)
        elif _is_activity_event(event) and hasattr(attrs, "scheduled_event_id"):
            activity, activity_id = scheduled.get(attrs.scheduled_event_id, (None, None))
            attempt = attempts.get(getattr(attrs, "started_event_id", 0))
        failure = None
        if hasattr(attrs, "failure") and attrs.HasField("failure"):
            failure = _failure_text(attrs.failure)
        rows.append(
            HistoryRow(
                event_id=event.event_id,
                time=event.event_time.ToDatetime(tzinfo=UTC),
                type=event_type_name(event),
                activity=activity,
                activity_id=activity_id,
                attempt=attempt,
                failure=failure,
                offset=(event.event_time.ToNanoseconds() - t0) / 1e9,
                previous_failure=previous_failure,
            )
        )
    return rows


def event_counts(history: WorkflowHistory) -> dict[str, int]:
    """Count the events of each type, in the order the types first appear."""
    counts: dict[str, int] = {}
    for event in history.events:
        name = event_type_name(event)
        counts[name] = counts.get(name, 0) + 1
    return counts


def activity_spans(
    history: WorkflowHistory, *, is_compensation: CompensationTest = None
) -> list[ActivitySpan]:
    """One :class:`ActivitySpan` per activity execution, in the order they were scheduled.

    Retries of one execution share a span: ``attempts`` says how many ran and
    ``last_attempt_start`` when the last one began, because the history holds
    no events for the earlier attempts (see the module docstring).

    Args:
        history: the workflow's history.
        is_compensation: which activities are compensations: a predicate on
            the activity name, a collection of names, or ``None`` for
            :func:`looks_like_compensation`.
    """
    if not history.events:
        return []
    test = _compensation_test(is_compensation)
    t0 = history.events[0].event_time.ToNanoseconds()

    def seconds(event: HistoryEvent) -> float:
        return (event.event_time.ToNanoseconds() - t0) / 1e9

    scheduled: dict[int, HistoryEvent] = {}
    started: dict[int, HistoryEvent] = {}
    closed: dict[int, tuple[HistoryEvent, Outcome]] = {}
    for event in history.events:
        attrs = _attributes(event)
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled[event.event_id] = event
        elif event.HasField("activity_task_started_event_attributes"):
            started[attrs.scheduled_event_id] = event
        else:
            outcome = _CLOSE_OUTCOMES.get(event.WhichOneof("attributes") or "")
            if outcome is not None:
                closed[attrs.scheduled_event_id] = (event, outcome)

    spans = []
    for event_id, event in scheduled.items():
        attrs = event.activity_task_scheduled_event_attributes
        start_event = started.get(event_id)
        start_attrs = start_event.activity_task_started_event_attributes if start_event else None
        close = closed.get(event_id)
        failure: str | None = None
        if close is not None:
            close_attrs = _attributes(close[0])
            if hasattr(close_attrs, "failure") and close_attrs.HasField("failure"):
                failure = _failure_text(close_attrs.failure)
            elif close[1] == "canceled":
                failure = "canceled by the workflow"
        previous = None
        if start_attrs is not None and start_attrs.HasField("last_failure"):
            previous = _failure_text(start_attrs.last_failure)
        spans.append(
            ActivitySpan(
                activity=attrs.activity_type.name,
                activity_id=attrs.activity_id,
                scheduled_event_id=event_id,
                attempts=start_attrs.attempt if start_attrs is not None else 0,
                start=seconds(event),
                last_attempt_start=seconds(start_event) if start_event is not None else None,
                end=seconds(close[0]) if close is not None else None,
                outcome=close[1] if close is not None else "running",
                failure=failure,
                previous_failure=previous,
                is_compensation=test(attrs.activity_type.name),
            )
        )
    return spans


_CLOSE_OUTCOMES: dict[str, Outcome] = {
    "activity_task_completed_event_attributes": "completed",
    "activity_task_failed_event_attributes": "failed",
    "activity_task_timed_out_event_attributes": "timed_out",
    "activity_task_canceled_event_attributes": "canceled",
}


def _attributes(event: HistoryEvent) -> Any:
    name = event.WhichOneof("attributes")
    return getattr(event, name) if name else None


def _is_activity_event(event: HistoryEvent) -> bool:
    return (event.WhichOneof("attributes") or "").startswith("activity_task_")


def _failure_text(failure: Failure) -> str:
    """The failure's message followed by its causes' messages, joined by ": "."""
    messages: list[str] = []
    current: Failure | None = failure
    while current is not None:
        if current.message and (not messages or messages[-1] != current.message):
            messages.append(current.message)
        current = current.cause if current.HasField("cause") else None
    return ": ".join(messages) or "(no message)"


def _compensation_test(test: CompensationTest) -> Callable[[str], bool]:
    if test is None:
        return looks_like_compensation
    if callable(test):
        return test
    names = frozenset([test] if isinstance(test, str) else test)
    return names.__contains__
