"""Lesson 07a on the real server: the default retry policy, the four timeouts, heartbeats, cancel."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutType
from temporalio.exceptions import TimeoutError as ActivityTimeout
from temporalio.worker import Worker

from sagakit import ConfigurationError, running_worker
from sagakit.course.lessons.timeouts import (
    EXERCISE_JOB,
    EXERCISE_NOTICE_WITHIN_S,
    CancelStepWorkflow,
    DefaultRetryWorkflow,
    FlakyStep,
    ItemsStep,
    JobOutcome,
    SlowStep,
    StepLog,
    TimeoutDemo,
    TimeoutDemoWorkflow,
    Timeouts,
    activity_events,
    applied_retry_policy,
    check_exercise,
    exercise_feedback,
    flaky_step,
    heartbeating_step,
    run_import_job,
    slow_step,
    wait_for_log,
)
from sagakit.history import event_counts

TERMINATE = WorkflowIDConflictPolicy.TERMINATE_EXISTING
SOLUTION = Timeouts(start_to_close=10, heartbeat=0.75)


# Failed attempts are expected throughout this file.
pytestmark = pytest.mark.usefixtures("quiet_worker_logs")


@asynccontextmanager
async def _worker(client: Client, task_queue: str) -> AsyncIterator[Worker]:
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[DefaultRetryWorkflow, TimeoutDemoWorkflow, CancelStepWorkflow],
        activities=[flaky_step, slow_step, heartbeating_step],
    ) as worker:
        yield worker


async def _failure(client: Client, task_queue: str, demo: TimeoutDemo) -> ActivityTimeout:
    """Run ``demo``, which must fail, and return the timeout it failed with."""
    with pytest.raises(WorkflowFailureError) as raised:
        await client.execute_workflow(
            TimeoutDemoWorkflow.run,
            demo,
            id=f"{task_queue}-demo",
            task_queue=task_queue,
            id_conflict_policy=TERMINATE,
        )
    activity_error = raised.value.cause
    assert isinstance(activity_error, ActivityError), raised.value
    timeout = activity_error.cause
    assert isinstance(timeout, ActivityTimeout), activity_error
    return timeout


def _rows(history: WorkflowHistory) -> list[tuple[str, object, str]]:
    return [(str(r[1]), r[2], str(r[3])) for r in activity_events(history).rows]


# --- Pure parts -------------------------------------------------------------------------------


def test_timeouts_become_execute_activity_options() -> None:
    assert Timeouts(start_to_close=1.5, heartbeat=0.5).options() == {
        "start_to_close_timeout": timedelta(seconds=1.5),
        "heartbeat_timeout": timedelta(seconds=0.5),
    }
    assert Timeouts().options() == {}


def test_a_history_without_an_activity_has_no_retry_policy() -> None:
    with pytest.raises(ConfigurationError, match="no ActivityTaskScheduled"):
        applied_retry_policy(WorkflowHistory(workflow_id="empty", events=[]))


async def test_step_log_reads_nothing_before_the_first_write(tmp_path: Path) -> None:
    log = StepLog(str(tmp_path / "log.jsonl"))
    assert log.read() == []
    with pytest.raises(TimeoutError, match="'finished'"):
        await wait_for_log(log, "finished", timeout_s=0.1)
    log.write(2, "finished", 5)
    line = await wait_for_log(log, "finished", attempt=2)
    assert (line.attempt, line.what, line.item) == (2, "finished", 5)
    log.clear()
    assert log.read() == []


# --- The default retry policy -----------------------------------------------------------------


async def test_no_retry_policy_means_the_servers_unlimited_default(
    client: Client, task_queue: str
) -> None:
    async with _worker(client, task_queue):
        handle = await client.start_workflow(
            DefaultRetryWorkflow.run, FlakyStep(fails=1), id=task_queue, task_queue=task_queue
        )
        assert await handle.result() == 2  # retried although the workflow set no policy
    policy = applied_retry_policy(await handle.fetch_history())
    assert policy == {
        "initial_interval": 1.0,
        "backoff_coefficient": 2.0,
        "maximum_interval": 100.0,
        "maximum_attempts": 0,
        "non_retryable_error_types": [],
    }


# --- The four timeouts ------------------------------------------------------------------------


async def test_start_to_close_times_out_one_attempt_which_is_retried_and_keeps_running(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    log = StepLog(str(tmp_path / "slow.jsonl"))
    demo = TimeoutDemo(Timeouts(start_to_close=1), slow=SlowStep(log.path, seconds=(3.0, 0.1)))
    async with _worker(client, task_queue):
        handle = await client.start_workflow(
            TimeoutDemoWorkflow.run, demo, id=task_queue, task_queue=task_queue
        )
        assert await handle.result() == 2
        finished_at = (await handle.describe()).close_time
        late = await wait_for_log(log, "finished", attempt=1)  # the timed-out attempt goes on
    assert ("ActivityTaskStarted", 2, "attempt 1: StartToClose timeout") in _rows(
        await handle.fetch_history()
    )
    assert finished_at is not None
    assert late.at > finished_at.timestamp()  # … and ends after the workflow has returned
    assert [(line.attempt, line.what) for line in log.read()] == [
        (1, "started"),
        (2, "started"),
        (2, "finished"),
        (1, "finished"),
    ]


async def test_schedule_to_close_ends_the_step_with_retries_left(
    client: Client, task_queue: str
) -> None:
    demo = TimeoutDemo(
        Timeouts(start_to_close=2, schedule_to_close=2.5), flaky=FlakyStep(fails=1000, seconds=1.5)
    )
    async with _worker(client, task_queue):
        timeout = await _failure(client, task_queue, demo)
    assert timeout.type == TimeoutType.SCHEDULE_TO_CLOSE
    assert isinstance(timeout.cause, ApplicationError)  # the last attempt's own failure
    assert timeout.cause.type == "NotYet"


async def test_schedule_to_start_without_a_worker_is_not_retried(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    demo = TimeoutDemo(
        Timeouts(start_to_close=1, schedule_to_start=1),
        slow=SlowStep(str(tmp_path / "never.jsonl"), seconds=(0.1,)),
        task_queue=f"{task_queue}-nobody-polls",
    )
    async with _worker(client, task_queue):
        timeout = await _failure(client, task_queue, demo)
        history = await client.get_workflow_handle(f"{task_queue}-demo").fetch_history()
    assert timeout.type == TimeoutType.SCHEDULE_TO_START
    counts = event_counts(history)
    assert "ActivityTaskStarted" not in counts
    assert counts["ActivityTaskTimedOut"] == 1
    assert StepLog(str(tmp_path / "never.jsonl")).read() == []


async def test_a_hung_attempt_is_noticed_by_its_heartbeat_timeout_and_the_retry_resumes(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    log = StepLog(str(tmp_path / "items.jsonl"))
    step = ItemsStep(log.path, items=6, item_seconds=0.2, hang_on_attempt=1, hang_at=3)
    demo = TimeoutDemo(Timeouts(start_to_close=10, heartbeat=1), items=step)
    async with _worker(client, task_queue):
        handle = await client.start_workflow(
            TimeoutDemoWorkflow.run, demo, id=task_queue, task_queue=task_queue
        )
        assert await handle.result() == 6
        lines = log.read()
    assert ("ActivityTaskStarted", 2, "attempt 1: Heartbeat timeout") in _rows(
        await handle.fetch_history()
    )
    hang = next(line for line in lines if line.what == "hangs")
    resumed = next(line for line in lines if line.what == "resumed")
    assert (hang.attempt, hang.item) == (1, 3)
    assert (resumed.attempt, resumed.item) == (2, 4)  # from the last heartbeat's details
    assert resumed.at - hang.at < 8  # well before start-to-close (10 s) would have noticed
    assert [line.item for line in lines if line.what == "item" and line.attempt == 2] == [4, 5, 6]


# --- Cancellation -----------------------------------------------------------------------------


async def test_a_heartbeating_step_hears_its_cancellation_and_cleans_up(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    log = StepLog(str(tmp_path / "cancel.jsonl"))
    async with _worker(client, task_queue):
        handle = await client.start_workflow(
            CancelStepWorkflow.run,
            ItemsStep(log.path, items=10, item_seconds=0.2, wait_at=3),
            id=task_queue,
            task_queue=task_queue,
        )
        await wait_for_log(log, "waiting")
        await handle.signal(CancelStepWorkflow.cancel_step)
        assert await handle.result() == "cancelled"
    assert [(line.what, line.item) for line in log.read()][-2:] == [
        ("cancelled", 3),
        ("cleaned up", 3),
    ]
    events = [row[0] for row in _rows(await handle.fetch_history())]
    assert events.index("ActivityTaskCancelRequested") < events.index("ActivityTaskCanceled")
    assert events.index("ActivityTaskCanceled") < events.index("WorkflowExecutionCompleted")


async def test_a_step_that_finishes_before_the_signal_is_not_cancelled(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    log = StepLog(str(tmp_path / "done.jsonl"))
    async with _worker(client, task_queue):
        result = await client.execute_workflow(
            CancelStepWorkflow.run,
            ItemsStep(log.path, items=2, item_seconds=0.05),
            id=task_queue,
            task_queue=task_queue,
        )
    assert result == "finished"
    assert "cancelled" not in [line.what for line in log.read()]


# --- The exercise -----------------------------------------------------------------------------


def test_the_starter_is_not_done_yet(capsys: pytest.CaptureFixture[str]) -> None:
    check_exercise(None, None)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("○ Not done yet:")
    assert "✗" not in out[0]
    assert "✓" not in out[0]


async def test_the_solution_passes_for_real(
    client: Client, task_queue: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outcome = await run_import_job(
        client,
        SOLUTION,
        log_path=str(tmp_path / "job.jsonl"),
        task_queue=task_queue,
        workflow_id=task_queue,
    )
    assert outcome.finished
    assert outcome.attempts == 2
    assert outcome.noticed_after_s is not None
    assert outcome.noticed_after_s <= EXERCISE_NOTICE_WITHIN_S
    check_exercise(SOLUTION, outcome)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("✓")


@pytest.mark.parametrize(
    ("timeouts", "says"),
    [
        (Timeouts(start_to_close=10), "No heartbeat timeout"),
        (Timeouts(start_to_close=10, heartbeat=0.3), "less than twice"),
        (Timeouts(start_to_close=10, heartbeat=5), "cannot notice the hang"),
        (Timeouts(start_to_close=2, heartbeat=0.75), "needs 16 × 0.25 s = 4 s"),
        (Timeouts(heartbeat=0.75), "needs start_to_close"),
    ],
)
def test_wrong_timeouts_say_what_is_wrong(timeouts: Timeouts, says: str) -> None:
    lines = exercise_feedback(timeouts, JobOutcome(True, 2, 1.0))
    assert lines
    assert all(line.startswith("✗") for line in lines)
    assert any(says in line for line in lines), lines


@pytest.mark.parametrize(
    ("outcome", "says"),
    [
        (JobOutcome(False, 1, None, "not finished after 15 s"), "did not finish"),
        (JobOutcome(True, 2, EXERCISE_NOTICE_WITHIN_S + 1), "not within"),
    ],
)
def test_a_run_that_went_wrong_is_a_cross(outcome: JobOutcome, says: str) -> None:
    lines = exercise_feedback(SOLUTION, outcome)
    assert len(lines) == 1
    assert lines[0].startswith("✗")
    assert says in lines[0]


def test_timeouts_set_but_not_run_yet_is_not_done() -> None:
    assert exercise_feedback(SOLUTION, None)[0].startswith("○ Not done yet:")


@pytest.mark.slow
async def test_without_a_heartbeat_the_real_run_does_not_notice_in_time(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    # start_to_close just above a live attempt's 4 s: the hang is noticed only when it runs out.
    timeouts = Timeouts(start_to_close=EXERCISE_JOB.items * EXERCISE_JOB.item_seconds + 0.5)
    outcome = await run_import_job(
        client,
        timeouts,
        log_path=str(tmp_path / "job.jsonl"),
        task_queue=task_queue,
        workflow_id=task_queue,
    )
    assert outcome.noticed_after_s is None or outcome.noticed_after_s > EXERCISE_NOTICE_WITHIN_S
