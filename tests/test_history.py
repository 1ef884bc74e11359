"""History views over real event histories: rows, spans, tables and the timeline plot.

The live tests run small workflows on the real dev server and read their
histories back. The offline tests read a history stored in ``tests/data/``, so
the views can be checked without a server. To record the stored histories
again (after changing the workflows in ``tests/history_workflows.py``), run the whole module
with::

    SAGAKIT_RECORD_HISTORIES=1 .venv/bin/python -m pytest tests/test_history.py -p no:cacheprovider
"""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory

from sagakit import running_worker
from sagakit.course.history_views import history_table, plot_timeline, spans_table
from sagakit.history import (
    ActivitySpan,
    HistoryFileError,
    activity_spans,
    event_counts,
    event_type_name,
    fetch_history,
    history_rows,
    load_history,
    looks_like_compensation,
    save_history,
)
from tests.history_workflows import (
    FailingTrip,
    FlakyLookup,
    Gate,
    Gathering,
    ParallelUndo,
    SequentialTrip,
    WaitingTrip,
    book_hotel,
    charge_card,
    declined_card,
    flaky_lookup,
    reserve_car,
)

# matplotlib is imported inside the three tests that draw: each test process imports this
# module to collect the tests, and only one of them runs these (about a second of CPU each).
DATA = Path(__file__).parent / "data"
TRIP_HISTORY = DATA / "trip_saga_history.json"
FLAKY_HISTORY = DATA / "flaky_retry_history.json"


async def _run_failing_trip(client: Client, task_queue: str, workflow_id: str) -> WorkflowHistory:
    gathering = Gathering(2)
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[FailingTrip],
        activities=[
            reserve_car,
            book_hotel,
            declined_card,
            gathering.cancel_car,
            gathering.cancel_hotel,
        ],
    ):
        handle = await client.start_workflow(
            FailingTrip.run, "lisbon", id=workflow_id, task_queue=task_queue
        )
        with pytest.raises(WorkflowFailureError):
            await handle.result()
    return await handle.fetch_history()


async def _run_flaky(client: Client, task_queue: str, workflow_id: str) -> WorkflowHistory:
    async with running_worker(
        client, task_queue=task_queue, workflows=[FlakyLookup], activities=[flaky_lookup]
    ):
        handle = await client.start_workflow(
            FlakyLookup.run, "porto", id=workflow_id, task_queue=task_queue
        )
        assert await handle.result() == "found porto"
    return await handle.fetch_history()


def _activity_events(history: WorkflowHistory) -> list[tuple[str, str | None, int | None]]:
    return [
        (row.type, row.activity, row.attempt)
        for row in history_rows(history)
        if row.type.startswith("ActivityTask")
    ]


def _overlap(spans: list[ActivitySpan]) -> bool:
    """All spans' last attempts share a common moment."""
    starts = [s.last_attempt_start for s in spans]
    ends = [s.end for s in spans]
    assert all(t is not None for t in starts + ends)
    return max(t for t in starts if t is not None) < min(t for t in ends if t is not None)


# --- live tests --------------------------------------------------------------------------------


async def test_sequential_history_rows_spans_and_table(client: Client, task_queue: str) -> None:
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[SequentialTrip],
        activities=[reserve_car, book_hotel, charge_card],
    ):
        handle = await client.start_workflow(
            SequentialTrip.run, "rome", id=f"seq-{task_queue}", task_queue=task_queue
        )
        await handle.result()
    history = await fetch_history(client, handle.id)

    rows = history_rows(history)
    assert [r.event_id for r in rows] == list(range(1, len(rows) + 1))
    assert rows[0].type == "WorkflowExecutionStarted"
    assert rows[0].offset == 0.0
    assert rows[-1].type == "WorkflowExecutionCompleted"
    assert all(r.failure is None for r in rows)
    names = ["reserve_car", "book_hotel", "charge_card"]
    per_activity = [
        (t, name, attempt)
        for name in names
        for t, attempt in (
            ("ActivityTaskScheduled", None),
            ("ActivityTaskStarted", 1),
            ("ActivityTaskCompleted", 1),
        )
    ]
    assert _activity_events(history) == per_activity

    spans = activity_spans(history)
    assert [(s.activity, s.activity_id, s.attempts, s.outcome) for s in spans] == [
        (name, str(i), 1, "completed") for i, name in enumerate(names, start=1)
    ]
    assert not any(s.is_compensation or s.retried for s in spans)
    for earlier, later in itertools.pairwise(spans):
        assert earlier.end is not None
        assert later.start >= earlier.end, "a sequential step began before the previous ended"

    counts = event_counts(history)
    assert counts["ActivityTaskScheduled"] == counts["ActivityTaskCompleted"] == 3
    assert counts["WorkflowExecutionCompleted"] == 1

    text = history_table(history, workflow_tasks=False).text()
    assert "WorkflowTask" not in text
    assert text.splitlines()[1].split() == ["id", "time", "type", "activity", "attempt", "failure"]
    assert "+00.000 s  WorkflowExecutionStarted" in text


async def test_retried_activity_shows_attempts_and_previous_failure(
    client: Client, task_queue: str
) -> None:
    history = await _run_flaky(client, task_queue, f"flaky-{task_queue}")

    # Only the last attempt has events; the earlier two are visible through it.
    assert _activity_events(history) == [
        ("ActivityTaskScheduled", "flaky_lookup", None),
        ("ActivityTaskStarted", "flaky_lookup", 3),
        ("ActivityTaskCompleted", "flaky_lookup", 3),
    ]
    started = next(r for r in history_rows(history) if r.type == "ActivityTaskStarted")
    assert started.previous_failure == "lookup service unavailable (attempt 2)"
    assert (
        "attempt 2 failed: lookup service unavailable (attempt 2)" in history_table(history).text()
    )

    [span] = activity_spans(history)
    assert (span.attempts, span.outcome, span.retried) == (3, "completed", True)
    assert span.failure is None
    assert span.previous_failure == "lookup service unavailable (attempt 2)"
    assert span.last_attempt_start is not None
    assert span.end is not None
    assert span.start <= span.last_attempt_start <= span.end


async def test_parallel_activities_overlap_in_spans_and_plot(
    client: Client, task_queue: str
) -> None:
    gathering = Gathering(3)
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[ParallelUndo],
        activities=[gathering.cancel_car, gathering.cancel_hotel, gathering.refund_card],
    ):
        handle = await client.start_workflow(
            ParallelUndo.run, "oslo", id=f"parallel-{task_queue}", task_queue=task_queue
        )
        await handle.result()
    history = await handle.fetch_history()

    spans = activity_spans(history)
    assert sorted(s.activity for s in spans) == ["cancel_car", "cancel_hotel", "refund_card"]
    assert all(s.is_compensation and s.outcome == "completed" for s in spans)
    assert _overlap(spans), "activities that waited for each other must overlap"

    from matplotlib.patches import Rectangle  # imported here: see the note above DATA

    figure = plot_timeline(history)
    [ax] = figure.axes
    bars = [p for p in ax.patches if isinstance(p, Rectangle) and p.get_gid() == "activity"]
    assert len(bars) == 3
    assert len({bar.get_y() for bar in bars}) == 3, "each execution gets its own row"
    legend = ax.get_legend()
    assert legend is not None
    assert "compensation" in [t.get_text() for t in legend.get_texts()]


async def test_failing_saga_history(client: Client, task_queue: str) -> None:
    recording = bool(os.environ.get("SAGAKIT_RECORD_HISTORIES"))
    workflow_id = "trip-lisbon-example" if recording else f"trip-{task_queue}"
    history = await _run_failing_trip(client, task_queue, workflow_id)
    if recording:
        save_history(history, TRIP_HISTORY)

    rows = history_rows(history)
    failed = [r for r in rows if r.type == "ActivityTaskFailed"]
    assert [(r.activity, r.attempt, r.failure) for r in failed] == [
        ("charge_card", 2, "card declined on attempt 2")
    ]
    assert rows[-1].type == "WorkflowExecutionFailed"
    assert (
        rows[-1].failure
        == "trip lisbon not booked: Activity task failed: card declined on attempt 2"
    )

    spans = activity_spans(history)
    assert [(s.activity, s.outcome, s.is_compensation) for s in spans[:3]] == [
        ("reserve_car", "completed", False),
        ("book_hotel", "completed", False),
        ("charge_card", "failed", False),
    ]
    assert {s.activity for s in spans[3:]} == {"cancel_car", "cancel_hotel"}
    assert all(s.is_compensation for s in spans[3:])
    assert _overlap(spans[3:])


async def test_running_activity_has_no_started_event_yet(client: Client, task_queue: str) -> None:
    gate = Gate()
    async with running_worker(
        client, task_queue=task_queue, workflows=[WaitingTrip], activities=[gate.book_flight]
    ):
        handle = await client.start_workflow(
            WaitingTrip.run, "nice", id=f"waiting-{task_queue}", task_queue=task_queue
        )
        async with asyncio.timeout(20):
            await gate.started.wait()
        history = await handle.fetch_history()
        gate.opened.set()
        assert await handle.result() == "flight for nice"

    assert "ActivityTaskStarted" not in event_counts(history)
    [span] = activity_spans(history)
    assert (span.activity, span.outcome, span.attempts, span.end) == (
        "book_flight",
        "running",
        0,
        None,
    )
    assert span.last_attempt_start is None
    bars = [p for p in plot_timeline(history).axes[0].patches if p.get_gid() == "activity"]
    assert [bar.get_linestyle() for bar in bars] == ["--"]

    finished = activity_spans(await handle.fetch_history())
    assert [(s.outcome, s.attempts) for s in finished] == [("completed", 1)]


async def test_a_fresh_history_round_trips_through_a_file(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Save and load a live history; SAGAKIT_RECORD_HISTORIES=1 also refreshes the stored one."""
    history = await _run_flaky(client, task_queue, "flaky-lookup-example")
    target = FLAKY_HISTORY if os.environ.get("SAGAKIT_RECORD_HISTORIES") else tmp_path / "h.json"
    save_history(history, target)
    assert load_history(target).events == history.events


# --- offline tests on stored histories ---------------------------------------------------------


@pytest.fixture(scope="module")
def trip() -> WorkflowHistory:
    return load_history(TRIP_HISTORY)


def test_stored_history_loads_with_its_workflow_id(trip: WorkflowHistory) -> None:
    assert trip.workflow_id.startswith("trip-")
    assert event_type_name(trip.events[0]) == "WorkflowExecutionStarted"
    assert load_history(TRIP_HISTORY, workflow_id="other").workflow_id == "other"


def test_stored_rows_link_every_activity_event_to_its_activity(trip: WorkflowHistory) -> None:
    rows = history_rows(trip)
    activity_rows = [r for r in rows if r.type.startswith("ActivityTask")]
    assert activity_rows, "the stored history has activity events"
    assert all(r.activity is not None and r.activity_id is not None for r in activity_rows)
    closed = [r for r in activity_rows if r.type != "ActivityTaskScheduled"]
    assert all(r.attempt is not None for r in closed)
    assert [r.activity for r in rows if r.type == "ActivityTaskScheduled"][:3] == [
        "reserve_car",
        "book_hotel",
        "charge_card",
    ]
    assert all(r.offset >= 0 for r in rows)


def test_stored_spans(trip: WorkflowHistory) -> None:
    spans = activity_spans(trip)
    charge = next(s for s in spans if s.activity == "charge_card")
    assert (charge.attempts, charge.outcome) == (2, "failed")
    assert charge.failure == "card declined on attempt 2"
    assert charge.previous_failure == "card declined on attempt 1"
    undo = [s for s in spans if s.is_compensation]
    assert sorted(s.activity for s in undo) == ["cancel_car", "cancel_hotel"]
    assert _overlap(undo)
    assert all(s.start >= (charge.end or 0.0) for s in undo), "undo starts after the failure"


def test_custom_compensation_test(trip: WorkflowHistory) -> None:
    by_name = activity_spans(trip, is_compensation={"cancel_car"})
    assert [s.activity for s in by_name if s.is_compensation] == ["cancel_car"]
    by_predicate = activity_spans(trip, is_compensation=lambda name: name.endswith("_card"))
    assert [s.activity for s in by_predicate if s.is_compensation] == ["charge_card"]


def test_looks_like_compensation() -> None:
    assert looks_like_compensation("cancel_hotel")
    assert looks_like_compensation("RefundPayment")
    assert looks_like_compensation("put_back_stock")
    assert not looks_like_compensation("book_hotel")
    assert not looks_like_compensation("output_receipt")


def test_stored_tables(trip: WorkflowHistory) -> None:
    text = history_table(trip).text()
    lines = text.splitlines()
    assert lines[0] == f"History of {trip.workflow_id}"
    assert len(lines) == 3 + len(trip.events)
    assert "attempt 1 failed: card declined on attempt 1" in text
    assert "ActivityTaskFailed" in text

    spans_text = spans_table(activity_spans(trip)).text().splitlines()
    assert spans_text[1].split() == [
        "activity",
        "id",
        "attempts",
        "start",
        "end",
        "outcome",
        "compensation",
        "failure",
    ]
    assert any(line.startswith("charge_card") and "failed" in line for line in spans_text)


def test_stored_plot(trip: WorkflowHistory) -> None:
    from matplotlib.figure import Figure  # imported here: see the note above DATA

    figure = plot_timeline(trip, title="Lisbon trip")
    assert isinstance(figure, Figure)
    [ax] = figure.axes
    spans = activity_spans(trip)
    assert len([p for p in ax.patches if p.get_gid() == "activity"]) == len(spans) == 5
    assert len([p for p in ax.patches if p.get_gid() == "retries"]) == 1
    assert ax.get_title() == "Lisbon trip"
    assert ax.get_xlabel() == "time since the workflow started (s)"
    assert ax.get_ylabel()
    assert [t.get_text() for t in ax.get_yticklabels()] == [s.activity for s in spans]
    box = ax.get_legend()
    assert box is not None
    legend = [t.get_text() for t in box.get_texts()]
    assert {"forward step", "compensation", "failed"} <= set(legend)
    assert figure._repr_png_().startswith(b"\x89PNG")  # type: ignore[attr-defined]


def test_plot_into_given_axes_from_spans(trip: WorkflowHistory) -> None:
    from matplotlib.figure import Figure  # imported here: see the note above DATA

    figure = Figure()
    ax = figure.add_subplot()
    spans = activity_spans(trip)[:2]
    assert plot_timeline(spans, ax=ax) is figure
    assert ax.get_title() == "Activity timeline"
    assert len([p for p in ax.patches if p.get_gid() == "activity"]) == 2


def test_plot_of_no_activities() -> None:
    figure = plot_timeline([])
    assert figure.axes[0].texts[0].get_text() == "no activities in this history"


def test_save_and_load_round_trip(trip: WorkflowHistory, tmp_path: Path) -> None:
    path = save_history(trip, tmp_path / "nested" / "copy.json")
    again = load_history(path)
    assert again.workflow_id == trip.workflow_id
    assert list(again.events) == list(trip.events)


def test_load_errors_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(HistoryFileError, match="save_history"):
        load_history(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("not json")
    with pytest.raises(HistoryFileError, match="Web UI"):
        load_history(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text('{"events": []}')
    with pytest.raises(HistoryFileError, match="no history events"):
        load_history(tmp_path / "empty.json")


def test_stored_flaky_history() -> None:
    history = load_history(FLAKY_HISTORY)
    assert history.workflow_id == "flaky-lookup-example"
    [span] = activity_spans(history)
    assert (span.activity, span.attempts, span.outcome) == ("flaky_lookup", 3, "completed")


def test_time_offsets_keep_their_width_past_ten_seconds() -> None:
    from sagakit.course.history_views import _offset

    assert len(_offset(0.5)) == len(_offset(12.25)) == len(_offset(99.999))
