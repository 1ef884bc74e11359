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

import functools
import io
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from google.protobuf.json_format import ParseError
from temporalio.api.enums.v1 import EventType
from temporalio.api.failure.v1 import Failure
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory

from sagakit.errors import SagakitError
from sagakit.tables import Table

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

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
    "history_table",
    "load_history",
    "looks_like_compensation",
    "plot_timeline",
    "save_history",
    "spans_table",
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


def history_table(
    history: WorkflowHistory, *, workflow_tasks: bool = True, title: str | None = None
) -> Table:
    """Show a history as a table with one row per event.

    The columns are the event id, the time since the first event (``+0.123 s``),
    the event type, the activity, the attempt and the failure. On an ``ActivityTaskStarted`` row of a
    retried activity, the failure column says how the previous attempt
    failed, the only trace that attempt leaves in the history.

    Args:
        history: the workflow's history.
        workflow_tasks: include the ``WorkflowTask*`` bookkeeping events; pass
            ``False`` to see only what the workflow did.
        title: a caption; by default ``"History of <workflow id>"``.
    """
    rows = []
    for row in history_rows(history):
        if not workflow_tasks and row.type.startswith("WorkflowTask"):
            continue
        failure = row.failure
        if failure is None and row.previous_failure is not None and row.attempt is not None:
            failure = f"attempt {row.attempt - 1} failed: {row.previous_failure}"
        rows.append(
            [row.event_id, _offset(row.offset), row.type, row.activity, row.attempt, failure]
        )
    return Table(
        ["id", "time", "type", "activity", "attempt", "failure"],
        rows,
        title=title if title is not None else f"History of {history.workflow_id}",
        align=["right", "right", "left", "left", "right", "left"],
    )


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


def spans_table(
    spans: Sequence[ActivitySpan], *, title: str | None = "Activity executions"
) -> Table:
    """Show activity spans as a table with one row per activity execution.

    The columns are the activity, its id, the number of attempts, the start and
    end (seconds since the workflow started), the outcome, whether it is a
    compensation, and the failure.
    """
    return Table(
        ["activity", "id", "attempts", "start", "end", "outcome", "compensation", "failure"],
        [
            [
                span.activity,
                span.activity_id,
                span.attempts,
                _offset(span.start),
                _offset(span.end) if span.end is not None else None,
                span.outcome,
                "yes" if span.is_compensation else "no",
                span.failure,
            ]
            for span in spans
        ],
        title=title,
        align=["left", "left", "right", "right", "right", "left", "left", "left"],
    )


_FORWARD = "#4c72b0"
_COMPENSATION = "#dd8452"
_FAILED = "#c44e52"


def plot_timeline(
    history_or_spans: WorkflowHistory | Sequence[ActivitySpan],
    *,
    ax: Axes | None = None,
    title: str | None = None,
    is_compensation: CompensationTest = None,
) -> Figure:
    """Draw one horizontal bar per activity execution on a time axis.

    The x axis is seconds since the workflow started. Forward steps and
    compensations have different colours; activities that ran at the same
    time have overlapping bars on separate rows. Failed, timed-out and
    canceled executions have a red hatched outline and an ``X`` at their end.
    For a retried execution, the part before the last attempt (earlier
    attempts plus retry waits) is drawn lighter and hatched, and the bar is
    labelled with the number of attempts. An execution that is still running
    is drawn up to the latest time in the data.

    Each execution's bar has the gid ``"activity"`` and each retry part the
    gid ``"retries"``, so tests and lessons can find them in ``ax.patches``.

    Args:
        history_or_spans: a workflow history, or spans from :func:`activity_spans`.
        ax: the axes to draw into; by default a new figure is made. It is not
            registered with pyplot (so Jupyter does not show it twice) and
            shows itself as PNG when it is a cell's result.
        title: the axes title; by default "Activity timeline" (with the
            workflow id when given a history).
        is_compensation: as for :func:`activity_spans`; ignored when spans are given.

    Returns:
        The figure that holds the plot.
    """
    from matplotlib.figure import Figure, SubFigure
    from matplotlib.patches import Patch

    if isinstance(history_or_spans, WorkflowHistory):
        spans = activity_spans(history_or_spans, is_compensation=is_compensation)
        now = _last_offset(history_or_spans)
        default_title = f"Activity timeline of {history_or_spans.workflow_id}"
    else:
        spans = list(history_or_spans)
        now = max(
            (t for s in spans for t in (s.start, s.last_attempt_start, s.end) if t), default=0.0
        )
        default_title = "Activity timeline"

    if ax is None:
        figure = _notebook_figure_class()(
            figsize=(9.0, max(2.6, 1.3 + 0.45 * len(spans))), layout="constrained"
        )
        ax = figure.add_subplot()
    else:
        parent = ax.figure
        figure = parent.figure if isinstance(parent, SubFigure) else parent
        assert isinstance(figure, Figure)

    names = [span.activity for span in spans]
    labels = [
        f"{span.activity} [{span.activity_id}]" if names.count(span.activity) > 1 else span.activity
        for span in spans
    ]
    right = max(now, 1e-3)
    for row, span in enumerate(spans):
        end = span.end if span.end is not None else now
        colour = _COMPENSATION if span.is_compensation else _FORWARD
        failed = span.outcome in ("failed", "timed_out", "canceled")
        running = span.outcome == "running"
        ax.barh(
            row,
            max(end - span.start, 0.0),
            left=span.start,
            height=0.6,
            color=colour,
            alpha=0.45 if running else 0.9,
            edgecolor=_FAILED if failed else colour,
            hatch="xx" if failed else None,
            linewidth=1.5 if failed else 0.8,
            linestyle="--" if running else "-",
            gid="activity",
        )
        if span.retried and span.last_attempt_start is not None:
            ax.barh(
                row,
                max(span.last_attempt_start - span.start, 0.0),
                left=span.start,
                height=0.6,
                color="white",
                alpha=0.55,
                edgecolor=colour,
                hatch="///",
                linewidth=0.0,
                gid="retries",
            )
        if failed:
            ax.plot([end], [row], marker="X", markersize=9, color=_FAILED, linestyle="none")
        note = []
        if span.retried:
            note.append(f"{span.attempts} attempts")
        if span.outcome != "completed":
            note.append(span.outcome.replace("_", " "))
        if note:
            ax.annotate(
                ", ".join(note),
                (end, row),
                xytext=(8, 0),
                textcoords="offset points",
                va="center",
                fontsize=8,
            )
        right = max(right, end)

    ax.set_yticks(range(len(spans)), labels)
    ax.set_ylim(max(len(spans), 1) - 0.5, -0.5)  # first scheduled on top
    ax.set_xlim(0.0, right * 1.25)
    ax.set_xlabel("time since the workflow started (s)")
    ax.set_ylabel("activity execution")
    ax.set_title(title if title is not None else default_title)
    ax.grid(axis="x", alpha=0.3)
    if not spans:
        ax.text(0.5, 0.5, "no activities in this history", ha="center", transform=ax.transAxes)

    legend = []
    if any(not s.is_compensation for s in spans):
        legend.append(Patch(color=_FORWARD, label="forward step"))
    if any(s.is_compensation for s in spans):
        legend.append(Patch(color=_COMPENSATION, label="compensation"))
    if any(s.retried for s in spans):
        legend.append(
            Patch(
                facecolor="white", edgecolor="grey", hatch="///", label="earlier attempts + waits"
            )
        )
    if any(s.outcome in ("failed", "timed_out", "canceled") for s in spans):
        legend.append(Patch(facecolor="white", edgecolor=_FAILED, hatch="xx", label="failed"))
    if legend:
        ax.legend(handles=legend, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    return figure


_CLOSE_OUTCOMES: dict[str, Outcome] = {
    "activity_task_completed_event_attributes": "completed",
    "activity_task_failed_event_attributes": "failed",
    "activity_task_timed_out_event_attributes": "timed_out",
    "activity_task_canceled_event_attributes": "canceled",
}


@functools.cache
def _notebook_figure_class() -> type[Figure]:
    """A Figure that Jupyter shows as PNG even if pyplot was never imported.

    Built on first use so that importing sagakit does not import matplotlib.
    """
    from matplotlib.figure import Figure

    class TimelineFigure(Figure):
        """A matplotlib Figure that renders itself as PNG in Jupyter."""

        def _repr_png_(self) -> bytes:
            buffer = io.BytesIO()
            self.savefig(buffer, format="png")
            return buffer.getvalue()

    return TimelineFigure


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


def _offset(seconds: float) -> str:
    # Zero-padded to a fixed width, so a run that crosses 10 s does not widen
    # the column (notebook outputs are compared as text).
    return f"+{seconds:06.3f} s"


def _last_offset(history: WorkflowHistory) -> float:
    if not history.events:
        return 0.0
    t0 = history.events[0].event_time.ToNanoseconds()
    return max(e.event_time.ToNanoseconds() - t0 for e in history.events) / 1e9
