"""Lesson 07a: the default retry policy, the four activity timeouts, heartbeats and cancellation.

- :func:`flaky_step` fails its first attempts; :class:`DefaultRetryWorkflow` runs it
  with *no* retry policy, so the History shows the policy the server filled in
  (:func:`applied_retry_policy` reads it back).
- :func:`slow_step` takes a fixed time per attempt and never heartbeats;
  :func:`heartbeating_step` works through numbered items, heartbeats after each
  one, resumes from its last heartbeat on a retry, can hang on purpose, and
  cleans up when it is cancelled. Both write what they do to a :class:`StepLog`.
- :class:`TimeoutDemoWorkflow` runs one of them with the :class:`Timeouts` and
  :class:`~sagakit.course.lessons.cart.RetrySchedule` it is given;
  :class:`CancelStepWorkflow` starts the heartbeating step and cancels it when
  it is signalled.
- :func:`run_import_job` and :func:`exercise_feedback` are the lesson's exercise:
  timeouts that notice a hung attempt quickly and still let a live one finish.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from temporalio import activity, workflow
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError

from sagakit import ConfigurationError, running_worker
from sagakit.course.lessons.cart import RetrySchedule
from sagakit.history import event_type_name

if TYPE_CHECKING:
    from temporalio.api.failure.v1 import Failure
    from temporalio.client import Client, WorkflowHistory

    from sagakit.course.display import Table

__all__ = [
    "DEMO_RETRY",
    "EXERCISE_JOB",
    "EXERCISE_NOTICE_WITHIN_S",
    "TIMEOUT_SUMMARY",
    "CancelStepWorkflow",
    "DefaultRetryWorkflow",
    "FlakyStep",
    "ItemsStep",
    "JobOutcome",
    "LogLine",
    "SlowStep",
    "StepLog",
    "TimeoutDemo",
    "TimeoutDemoWorkflow",
    "Timeouts",
    "activity_events",
    "applied_retry_policy",
    "check_exercise",
    "exercise_feedback",
    "failure_kind",
    "flaky_step",
    "heartbeating_step",
    "run_import_job",
    "slow_step",
    "wait_for_log",
]


# --- What the activities write down -----------------------------------------------------------


@dataclass(frozen=True)
class LogLine:
    """One thing an activity attempt did, as it wrote it down."""

    attempt: int
    """The attempt number, 1 for the first."""
    what: str
    """What happened: ``"started"``, ``"item"``, ``"hangs"``, ``"cancelled"`` …"""
    item: int | None
    """The item it concerns, for the heartbeating step."""
    at: float
    """When, in seconds since the epoch (the worker's clock)."""


@dataclass(frozen=True)
class StepLog:
    """A file of JSON lines where the lesson's activities write down each thing they do.

    The History keeps only the last attempt of an activity, and nothing of what an
    attempt did after its timeout; the log keeps both.
    """

    path: str
    """The file; created on first write."""

    def write(self, attempt: int, what: str, item: int | None = None) -> None:
        """Append one line, stamped with the current time."""
        line = {"attempt": attempt, "what": what, "item": item, "at": time.time()}
        with open(self.path, "a", encoding="utf-8") as file:
            file.write(json.dumps(line) + "\n")

    def clear(self) -> None:
        """Start the log again, empty."""
        with open(self.path, "w", encoding="utf-8"):
            pass

    def read(self) -> list[LogLine]:
        """Every line written so far, oldest first (empty if nothing was written)."""
        try:
            with open(self.path, encoding="utf-8") as file:
                return [LogLine(**json.loads(text)) for text in file if text.strip()]
        except FileNotFoundError:
            return []


async def wait_for_log(
    log: StepLog, what: str, *, attempt: int | None = None, timeout_s: float = 10.0
) -> LogLine:
    """Wait until an attempt (any, or ``attempt``) writes a line ``what``; return that line.

    Raises:
        TimeoutError: no such line appeared within ``timeout_s`` seconds.
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in log.read():
            if line.what == what and attempt in (None, line.attempt):
                return line
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no attempt wrote {what!r} to {log.path} within {timeout_s} s")


# --- The activities ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FlakyStep:
    """Input of :func:`flaky_step`."""

    fails: int
    """How many attempts fail before one succeeds."""
    seconds: float = 0.0
    """How long each attempt works before it fails or succeeds."""


@dataclass(frozen=True)
class SlowStep:
    """Input of :func:`slow_step`."""

    log_path: str
    """Where each attempt writes when it started and finished (see :class:`StepLog`)."""
    seconds: tuple[float, ...]
    """How long attempt 1, 2, … takes; the last number is used for every later attempt."""


@dataclass(frozen=True)
class ItemsStep:
    """Input of :func:`heartbeating_step`: a job over numbered items, one heartbeat per item."""

    log_path: str
    """Where each attempt writes what it does (see :class:`StepLog`)."""
    items: int = 6
    """How many items the job has, numbered from 1."""
    item_seconds: float = 0.2
    """How long one item takes; the step heartbeats after each."""
    hang_on_attempt: int = 0
    """On this attempt (0: never) the step hangs after item ``hang_at``: it stops heartbeating."""
    hang_at: int = 0
    """The last item the hanging attempt finishes."""
    wait_at: int = 0
    """After this item (0: never) the step waits, heartbeating, until it is cancelled."""


@activity.defn
async def flaky_step(step: FlakyStep) -> int:
    """Activity: fail the first ``step.fails`` attempts; return the attempt that succeeded."""
    attempt = activity.info().attempt
    await asyncio.sleep(step.seconds)
    if attempt <= step.fails:
        raise ApplicationError(f"attempt {attempt} failed on purpose", type="NotYet")
    return attempt


@activity.defn
async def slow_step(step: SlowStep) -> int:
    """Activity: take ``step.seconds`` for this attempt, without heartbeating; return the attempt.

    It writes ``started`` and ``finished`` to the log, so the log shows an attempt
    that keeps running after its timeout.
    """
    attempt = activity.info().attempt
    log = StepLog(step.log_path)
    log.write(attempt, "started")
    await asyncio.sleep(step.seconds[min(attempt, len(step.seconds)) - 1])
    log.write(attempt, "finished")
    return attempt


@activity.defn
async def heartbeating_step(step: ItemsStep) -> int:
    """Activity: do items ``1 … step.items``, heartbeating each item's number; return the last.

    A retry resumes after the item in the last heartbeat that reached the cluster
    (``activity.info().heartbeat_details``). A cancellation arrives as
    ``asyncio.CancelledError`` at the first ``await`` after a heartbeat has brought
    it; the step writes down where it was, cleans up and lets the error go on.
    """
    info = activity.info()
    log = StepLog(step.log_path)
    done = int(info.heartbeat_details[0]) if info.heartbeat_details else 0
    log.write(info.attempt, "resumed" if done else "started", done + 1)
    item = done
    try:
        for item in range(done + 1, step.items + 1):
            await asyncio.sleep(step.item_seconds)  # the work on one item
            activity.heartbeat(item)  # "I am alive, and items up to this one are done"
            log.write(info.attempt, "item", item)
            if info.attempt == step.hang_on_attempt and item == step.hang_at:
                log.write(info.attempt, "hangs", item)
                await asyncio.sleep(3600)  # stuck, and no more heartbeats
            if item == step.wait_at:
                log.write(info.attempt, "waiting", item)
                while True:  # waiting for something else, still heartbeating
                    await asyncio.sleep(step.item_seconds)
                    activity.heartbeat(item)
    except asyncio.CancelledError:
        log.write(info.attempt, "cancelled", item)
        log.write(info.attempt, "cleaned up", item)  # release locks, delete temporary files …
        raise
    log.write(info.attempt, "finished", item)
    return item


# --- The workflows ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Timeouts:
    """The four activity timeouts, in seconds; ``None`` leaves one unset."""

    start_to_close: float | None = None
    """The most one attempt may take, from the moment a worker picks it up."""
    schedule_to_close: float | None = None
    """The most the whole step may take, every attempt and retry wait included."""
    schedule_to_start: float | None = None
    """The most an attempt may wait in the task queue for a worker to pick it up."""
    heartbeat: float | None = None
    """The most time between two heartbeats of a running attempt."""

    def options(self) -> dict[str, timedelta]:
        """These timeouts as keyword arguments of ``workflow.execute_activity``."""
        seconds = {
            "start_to_close_timeout": self.start_to_close,
            "schedule_to_close_timeout": self.schedule_to_close,
            "schedule_to_start_timeout": self.schedule_to_start,
            "heartbeat_timeout": self.heartbeat,
        }
        return {name: timedelta(seconds=s) for name, s in seconds.items() if s is not None}


DEMO_RETRY = RetrySchedule(
    initial_interval=0.2, backoff_coefficient=1.0, maximum_interval=0.2, maximum_attempts=5
)
"""The retry policy of the lesson's timeout demonstrations: 0.2 s between attempts, 5 at most."""


@dataclass(frozen=True)
class TimeoutDemo:
    """Input of :class:`TimeoutDemoWorkflow`: one step, its timeouts and its retry policy."""

    timeouts: Timeouts
    """The step's timeouts."""
    flaky: FlakyStep | None = None
    """Run :func:`flaky_step` with this input …"""
    slow: SlowStep | None = None
    """… or :func:`slow_step` with this one …"""
    items: ItemsStep | None = None
    """… or :func:`heartbeating_step` with this one."""
    retry: RetrySchedule = DEMO_RETRY
    """How failed or timed-out attempts are retried: 0.2 s apart, 5 attempts at most."""
    task_queue: str | None = None
    """The task queue of the activity; ``None`` is the workflow's own."""


@workflow.defn
class DefaultRetryWorkflow:
    """Workflow: run :func:`flaky_step` with a start-to-close timeout and NO retry policy."""

    @workflow.run
    async def run(self, step: FlakyStep) -> int:
        """Return the attempt on which the step succeeded."""
        return await workflow.execute_activity(
            flaky_step, step, start_to_close_timeout=timedelta(seconds=5)
        )


@workflow.defn
class TimeoutDemoWorkflow:
    """Workflow: run one step with the timeouts and retry policy it is given."""

    @workflow.run
    async def run(self, demo: TimeoutDemo) -> int:
        """Return what the step returned; fail with the step's failure if it gives up."""
        options: dict[str, Any] = {
            **demo.timeouts.options(),
            "retry_policy": demo.retry.to_policy(),
            "task_queue": demo.task_queue,
        }
        if demo.flaky is not None:
            return await workflow.execute_activity(flaky_step, demo.flaky, **options)
        if demo.slow is not None:
            return await workflow.execute_activity(slow_step, demo.slow, **options)
        if demo.items is not None:
            return await workflow.execute_activity(heartbeating_step, demo.items, **options)
        raise ApplicationError("the demo names no step", type="NoStep", non_retryable=True)


@workflow.defn
class CancelStepWorkflow:
    """Workflow: start the heartbeating step and cancel it when the ``cancel_step`` signal comes."""

    def __init__(self) -> None:
        self._cancel = False

    @workflow.run
    async def run(self, step: ItemsStep) -> str:
        """Return how the step ended: ``"finished"`` or ``"cancelled"``."""
        handle = workflow.start_activity(
            heartbeating_step,
            step,
            start_to_close_timeout=timedelta(seconds=30),
            heartbeat_timeout=timedelta(seconds=1),
            # Wait until the activity confirms it stopped, not just until the request is sent.
            cancellation_type=workflow.ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
        )
        await workflow.wait_condition(lambda: self._cancel or handle.done())
        if handle.done():
            await handle
            return "finished"
        handle.cancel()
        try:
            await handle
        except ActivityError as err:
            if isinstance(err.cause, CancelledError):
                return "cancelled"
            raise
        return "finished"

    @workflow.signal
    def cancel_step(self) -> None:
        """Signal: cancel the running step."""
        self._cancel = True


# --- Reading the History ----------------------------------------------------------------------


def applied_retry_policy(history: WorkflowHistory) -> dict[str, Any]:
    """The retry policy the cluster recorded for the first activity of ``history``.

    Returns the fields of the ``ActivityTaskScheduled`` event's ``retry_policy``:
    intervals in seconds, ``maximum_attempts`` (0 means no limit) and the
    non-retryable error types.

    Raises:
        ConfigurationError: the history has no scheduled activity.
    """
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            policy = event.activity_task_scheduled_event_attributes.retry_policy
            return {
                "initial_interval": policy.initial_interval.ToTimedelta().total_seconds(),
                "backoff_coefficient": policy.backoff_coefficient,
                "maximum_interval": policy.maximum_interval.ToTimedelta().total_seconds(),
                "maximum_attempts": policy.maximum_attempts,
                "non_retryable_error_types": list(policy.non_retryable_error_types),
            }
    raise ConfigurationError(
        f"The History of {history.workflow_id} has no ActivityTaskScheduled event: run a "
        "workflow that starts an activity first."
    )


_TIMEOUT_NAMES = {
    1: "StartToClose",
    2: "ScheduleToStart",
    3: "ScheduleToClose",
    4: "Heartbeat",
}


def failure_kind(failure: Failure) -> str:
    """A failure in a few stable words, such as ``"StartToClose timeout"`` or ``"NotYet error"``.

    Unlike the failure's message, which can word the same timeout in different
    ways, these words do not change from one run to the next.
    """
    if failure.HasField("timeout_failure_info"):
        name = _TIMEOUT_NAMES.get(failure.timeout_failure_info.timeout_type, "unknown")
        return f"{name} timeout"
    if failure.HasField("application_failure_info"):
        return f"{failure.application_failure_info.type or 'application'} error"
    if failure.HasField("canceled_failure_info"):
        return "cancelled"
    if failure.HasField("cause"):
        return failure_kind(failure.cause)
    return failure.message or "failure"


def activity_events(history: WorkflowHistory, *, title: str | None = None) -> Table:
    """The History's activity events (and how the run ended), one row each, in stable words.

    The columns are the event id, the event type, the attempt, and what the event
    says went wrong (:func:`failure_kind`): on an ``ActivityTaskStarted`` row, how
    the attempt before it ended.
    """
    from sagakit.course.display import Table

    started_attempts: dict[int, int] = {}
    rows: list[list[object]] = []
    for event in history.events:
        name = event_type_name(event)
        if not (name.startswith("Activity") or name.startswith("WorkflowExecution")):
            continue
        attrs = getattr(event, event.WhichOneof("attributes") or "")
        attempt: int | None = None
        what = ""
        if name == "ActivityTaskStarted":
            attempt = attrs.attempt
            started_attempts[event.event_id] = attempt
            if attrs.HasField("last_failure"):
                what = f"attempt {attempt - 1}: {failure_kind(attrs.last_failure)}"
        elif hasattr(attrs, "started_event_id"):
            attempt = started_attempts.get(attrs.started_event_id)
        if not what and hasattr(attrs, "failure") and attrs.HasField("failure"):
            what = failure_kind(attrs.failure)
        rows.append([event.event_id, name, attempt, what])
    return Table(
        ["id", "event", "attempt", "what went wrong"],
        rows,
        title=title if title is not None else f"Activity events of {history.workflow_id}",
        align=["right", "left", "right", "left"],
    )


TIMEOUT_SUMMARY: Sequence[tuple[str, str, str, str]] = (
    (
        "start-to-close",
        "one attempt, from pick-up to result",
        "yes",
        "always: a bit more than the slowest healthy attempt",
    ),
    (
        "schedule-to-close",
        "the whole step: every attempt and every wait",
        "no (it ends the retries)",
        "when the caller has a deadline for the step as a whole",
    ),
    (
        "schedule-to-start",
        "waiting in the task queue for a worker",
        "no",
        "rarely: only when another queue or a fallback can take the work",
    ),
    (
        "heartbeat",
        "the silence between two heartbeats",
        "yes",
        "for long steps: a few heartbeat intervals, so a hang is noticed early",
    ),
)
"""The lesson's summary table: timeout, what it bounds, whether it is retried, when to set it."""


# --- The exercise -----------------------------------------------------------------------------

EXERCISE_JOB = ItemsStep(log_path="", items=16, item_seconds=0.25, hang_on_attempt=1, hang_at=1)
"""The exercise's import job: 16 items of 0.25 s (4 s in all); attempt 1 hangs after item 1."""

EXERCISE_NOTICE_WITHIN_S = 4.0
"""A hung attempt must be replaced within this many seconds of its last heartbeat."""

_EXERCISE_LIMIT_S = 15.0


@dataclass(frozen=True)
class JobOutcome:
    """What happened when the exercise's import job ran with the learner's timeouts."""

    finished: bool
    """Whether the job returned within the time limit with every item done."""
    attempts: int
    """How many attempts started."""
    noticed_after_s: float | None
    """Seconds from the hung attempt's last heartbeat to the start of the next attempt."""
    error: str | None = None
    """Why the job did not finish, when it did not."""


async def run_import_job(
    client: Client,
    timeouts: Timeouts,
    *,
    log_path: str,
    task_queue: str,
    workflow_id: str = "lesson-07a-exercise",
) -> JobOutcome:
    """Run :data:`EXERCISE_JOB` for real with ``timeouts`` and report what happened.

    The workflow is given at most 15 seconds, then terminated; the job's attempts
    are read back from the :class:`StepLog` at ``log_path``, which is emptied first.
    """
    from temporalio.client import WorkflowFailureError

    if timeouts.start_to_close is None and timeouts.schedule_to_close is None:
        return JobOutcome(False, 0, None, "not started: no start_to_close or schedule_to_close")
    log = StepLog(log_path)
    log.clear()
    job = ItemsStep(
        log_path=log_path,
        items=EXERCISE_JOB.items,
        item_seconds=EXERCISE_JOB.item_seconds,
        hang_on_attempt=EXERCISE_JOB.hang_on_attempt,
        hang_at=EXERCISE_JOB.hang_at,
    )
    error: str | None = None
    finished = False
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[TimeoutDemoWorkflow],
        activities=[heartbeating_step],
    ):
        handle = await client.start_workflow(
            TimeoutDemoWorkflow.run,
            TimeoutDemo(timeouts, items=job),
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        )
        try:
            last = await asyncio.wait_for(handle.result(), timeout=_EXERCISE_LIMIT_S)
            finished = last == job.items
        except TimeoutError:
            error = f"not finished after {_EXERCISE_LIMIT_S:g} s"
            await handle.terminate("the exercise's time limit")
        except WorkflowFailureError as err:
            error = str(getattr(err.cause, "cause", None) or err.cause)
    lines = log.read()
    starts = [line for line in lines if line.what in ("started", "resumed")]
    hang = next((line for line in lines if line.what == "hangs"), None)
    after_hang = [line for line in starts if hang is not None and line.at > hang.at]
    noticed = round(after_hang[0].at - hang.at, 2) if hang is not None and after_hang else None
    return JobOutcome(finished, len(starts), noticed, error)


def exercise_feedback(timeouts: Timeouts | None, outcome: JobOutcome | None) -> list[str]:
    """The self-check's lines: ``○`` not done yet, ``✗`` what is wrong, or one ``✓``."""
    if timeouts is None:
        return [
            "○ Not done yet: set my_timeouts = Timeouts(start_to_close=…, heartbeat=…) "
            "and run the exercise cell."
        ]
    job = EXERCISE_JOB
    job_seconds = job.items * job.item_seconds
    limit = EXERCISE_NOTICE_WITHIN_S
    problems = []
    if timeouts.heartbeat is None:
        problems.append(
            "✗ No heartbeat timeout: the cluster then notices the hung attempt only when its "
            f"start-to-close timeout runs out, and that must be longer than the {job_seconds:g} s "
            f"a live attempt needs, so more than {limit:g} s. Set heartbeat."
        )
    elif timeouts.heartbeat < 2 * job.item_seconds:
        problems.append(
            f"✗ heartbeat={timeouts.heartbeat:g} s is less than twice the "
            f"{job.item_seconds:g} s between two heartbeats: a live attempt that is a little "
            "late would be timed out. Make it longer."
        )
    elif timeouts.heartbeat >= limit:
        problems.append(
            f"✗ heartbeat={timeouts.heartbeat:g} s: the cluster waits at least that long after "
            f"the last heartbeat, so it cannot notice the hang within {limit:g} s. Make it shorter."
        )
    if timeouts.start_to_close is None and timeouts.schedule_to_close is None:
        problems.append(
            "✗ Temporal needs start_to_close (or schedule_to_close) on every activity: set "
            "start_to_close."
        )
    elif timeouts.start_to_close is not None and timeouts.start_to_close <= job_seconds:
        problems.append(
            f"✗ start_to_close={timeouts.start_to_close:g} s: a live attempt that starts at item 1 "
            f"needs {job.items} × {job.item_seconds:g} s = {job_seconds:g} s. Give it more."
        )
    if problems:
        return problems
    if outcome is None:
        return ["○ Not done yet: run the exercise cell, then this check."]
    if not outcome.finished:
        return [f"✗ The job did not finish: {outcome.error}. Read the History in the Web UI."]
    if outcome.noticed_after_s is None or outcome.noticed_after_s > limit:
        return [
            f"✗ The hung attempt was replaced {outcome.noticed_after_s} s after its last "
            f"heartbeat, not within {limit:g} s. Shorten the heartbeat timeout."
        ]
    return [
        f"✓ The hung attempt was replaced within {limit:g} s of its last heartbeat, and the "
        f"job finished all {job.items} items on attempt {outcome.attempts}."
    ]


def check_exercise(timeouts: Timeouts | None, outcome: JobOutcome | None) -> None:
    """Print the self-check's lines (see :func:`exercise_feedback`)."""
    for line in exercise_feedback(timeouts, outcome):
        print(line)
