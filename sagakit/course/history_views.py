"""Views of a workflow's History for the lessons: tables and a timeline plot.

The parsing lives in the core (:mod:`sagakit.history`); this module draws it,
with the course's :class:`~sagakit.course.display.Table` and matplotlib (imported
on first use only).
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from temporalio.client import WorkflowHistory

from sagakit.course.display import Table
from sagakit.history import (
    ActivitySpan,
    CompensationTest,
    activity_spans,
    history_rows,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["history_table", "plot_timeline", "spans_table"]


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


def _offset(seconds: float) -> str:
    # Zero-padded to a fixed width, so a run that crosses 10 s does not widen
    # the column (notebook outputs are compared as text).
    return f"+{seconds:06.3f} s"


def _last_offset(history: WorkflowHistory) -> float:
    if not history.events:
        return 0.0
    t0 = history.events[0].event_time.ToNanoseconds()
    return max(e.event_time.ToNanoseconds() - t0 for e in history.events) / 1e9
