"""A recoverable rollback: a compensation that fails for good makes the saga wait for an operator.

The operator's ``saga_resolve`` Update (a :class:`SagaResolution`) retries the failed
compensations after the cause is fixed, or skips one with a reason. Against the real
dev server, plus the time-skipping test server where the default retry policy would
make the test wait a minute.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Replayer

from sagakit import (
    CompensationProgress,
    CompensationStatus,
    SagaProgress,
    SagaResolution,
    SagaState,
    running_worker,
    sandbox_runner,
)
from sagakit.testing import time_skipping_environment
from tests.saga_activities import ACTIVITIES, create_ledger, events, names, open_gate
from tests.saga_helpers import (
    assert_step_failed,
    current_details,
    failure_of,
    progress,
    start,
    status,
    wait_for_state,
    wait_until,
    wait_until_cancel_seen,
    wait_until_past_steps,
)
from tests.saga_workflows import WORKFLOWS, NestedTripWorkflow, StepSpec, TripPlan


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    return create_ledger(tmp_path / "ledger.sqlite")


def down_for_good(name: str) -> StepSpec:
    """A step whose undo fails (retryably) until the test fixes it: 2 attempts, 100 ms apart."""
    return StepSpec(name, undo="until_fixed", undo_attempts=2)


async def resolve(
    handle: WorkflowHandle[object, object], resolution: SagaResolution
) -> SagaProgress:
    answer: SagaProgress = await handle.execute_update(
        "saga_resolve", resolution, result_type=SagaProgress
    )
    return answer


async def rejection(handle: WorkflowHandle[object, object], resolution: SagaResolution) -> str:
    """The validator's message for a resolution it must reject."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await resolve(handle, resolution)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "SagaUsageError"
    return cause.message


def updates_in(history: WorkflowHistory) -> list[str]:
    """The arguments (JSON text) of the Updates that the History accepted."""
    return [
        accepted.accepted_request.input.args.payloads[0].data.decode()
        for accepted in (
            e.workflow_execution_update_accepted_event_attributes
            for e in history.events
            if e.HasField("workflow_execution_update_accepted_event_attributes")
        )
    ]


async def replay(history: WorkflowHistory) -> None:
    await Replayer(workflows=WORKFLOWS, workflow_runner=sandbox_runner()).replay_workflow(history)


# --- against the dev server ----------------------------------------------------


async def test_an_operator_retries_a_failed_undo_after_the_fix_and_the_saga_finishes(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(
        ledger, [StepSpec("hotel"), down_for_good("flight"), StepSpec("car", step="fail")]
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        waiting = await wait_for_state(handle, SagaState.NEEDS_ATTENTION)
        details = await current_details(handle)
        memo = await (await handle.describe()).memo()
        rejected = {
            "unknown step": await rejection(handle, SagaResolution.skip(7, "no such step")),
            "no reason": await rejection(handle, SagaResolution.skip(1, "   ")),
            "not failed": await rejection(handle, SagaResolution.skip(0, "it worked")),
            "no step": await rejection(handle, SagaResolution("skip", None, "which one?")),
        }
        before_fix = await handle.fetch_history()
        open_gate(ledger, "flight")  # the airline is back
        after = await resolve(handle, SagaResolution.retry("airline is back"))
        assert_step_failed(await failure_of(handle), "car")  # the original error, as always
        assert await status(handle) == WorkflowExecutionStatus.FAILED
        memo_at_end = await (await handle.describe()).memo()
        history = await handle.fetch_history()
    # Waiting, visibly: the query, the Web UI's current details, the memo.
    assert [(c.step, c.status) for c in waiting.compensations] == [
        (2, CompensationStatus.SUCCEEDED),
        (1, CompensationStatus.FAILED),
        (0, CompensationStatus.SUCCEEDED),
    ]
    assert "the airline is down" in (waiting.compensations[1].error or "")
    assert "Saga needs attention" in details
    assert "step 1 (undo_step)" in details
    assert "saga_resolve" in details
    assert "needs attention" in str(memo["saga"])
    # Nonsense was rejected before it reached the History.
    assert "Unknown step 7" in rejected["unknown step"]
    assert "needs a reason" in rejected["no reason"]
    assert "succeeded, not failed" in rejected["not failed"]
    assert "needs the step" in rejected["no step"]
    assert updates_in(before_fix) == []
    # The retry ran the failed undo again and finished the rollback.
    assert after.state is SagaState.COMPENSATED
    assert after.compensations[1] == CompensationProgress(
        1, "undo_step", CompensationStatus.SUCCEEDED
    )
    assert [(n, a) for _, n, a in events(ledger, "undo-start")] == [
        ("car", 1),
        ("flight", 1),
        ("flight", 2),
        ("hotel", 1),
        ("flight", 1),  # the operator's retry: a new activity
    ]
    assert names(ledger, "undo-end") == ["car", "hotel", "flight"]
    # The decision is in the History; the memo is cleared.
    assert len(updates_in(history)) == 1
    assert '"action":"retry"' in updates_in(history)[0]
    assert "saga" not in memo_at_end
    await replay(history)


async def test_a_skip_is_recorded_and_a_cancel_during_the_wait_waits_too(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(ledger, [down_for_good("hotel"), StepSpec("flight", step="fail")])
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        await wait_for_state(handle, SagaState.NEEDS_ATTENTION)
        await handle.cancel()
        await wait_until_cancel_seen(handle)
        still = await progress(handle)
        after = await resolve(handle, SagaResolution.skip(0, "refunded by phone, ticket 4711"))
        cause = await failure_of(handle)
        assert await status(handle) == WorkflowExecutionStatus.CANCELED
        final = await progress(handle)
        history = await handle.fetch_history()
    assert still.state is SagaState.NEEDS_ATTENTION  # the cancel did not end the wait
    assert isinstance(cause, CancelledError)
    for snapshot in (after, final):
        assert snapshot.state is SagaState.COMPENSATED
        assert snapshot.compensations[0].step == 1
        assert snapshot.compensations[0].status is CompensationStatus.SUCCEEDED
        skipped = snapshot.compensations[1]
        assert skipped.status is CompensationStatus.SKIPPED
        assert skipped.skip_reason == "refunded by phone, ticket 4711"
        assert "the airline is down" in (skipped.error or "")
    assert names(ledger, "undo-end") == ["flight"]
    assert "refunded by phone, ticket 4711" in updates_in(history)[0]
    await replay(history)


async def test_stop_on_error_waits_at_the_failed_undo_and_goes_on_after_the_retry(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(
        ledger,
        [StepSpec("hotel"), down_for_good("flight"), StepSpec("car", step="fail")],
        stop_on_error=True,
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        waiting = await wait_for_state(handle, SagaState.NEEDS_ATTENTION)
        open_gate(ledger, "flight")
        after = await resolve(handle, SagaResolution.retry(step=1))
        assert_step_failed(await failure_of(handle), "car")
    assert [c.status for c in waiting.compensations] == [
        CompensationStatus.SUCCEEDED,
        CompensationStatus.FAILED,
        CompensationStatus.PENDING,  # not skipped: it runs once the operator has decided
    ]
    assert after.state is SagaState.COMPENSATED
    assert names(ledger, "undo-end") == ["car", "flight", "hotel"]


async def test_an_update_while_nothing_waits_is_rejected(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(ledger, [StepSpec("hotel", step="wait")])
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        await wait_until_past_steps(handle, 1)  # waiting after the hotel step
        message = await rejection(handle, SagaResolution.retry())
        await handle.cancel()
        assert isinstance(await failure_of(handle), CancelledError)
        history = await handle.fetch_history()
    assert "Nothing is waiting" in message
    assert "running" in message
    assert updates_in(history) == []


async def test_the_progress_query_shows_the_outer_and_the_inner_saga(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(
        ledger, [StepSpec("hotel", undo="gate"), StepSpec("flight"), StepSpec("car", step="fail")]
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan, NestedTripWorkflow)
        await wait_until(lambda: "hotel" in names(ledger, "undo-start"), "the outer undo")
        during = await progress(handle)
        open_gate(ledger, "hotel")
        assert_step_failed(await failure_of(handle), "car")
    outer, inner = during.sagas
    assert (during.state, during.steps) == (SagaState.COMPENSATING, ("undo_step",))  # outer acts
    assert outer == SagaProgress(
        SagaState.COMPENSATING,
        ("undo_step",),
        (CompensationProgress(0, "undo_step", CompensationStatus.RUNNING),),
    )
    assert inner.state is SagaState.COMPENSATED
    assert [c.step for c in inner.compensations] == [1, 0]
    assert names(ledger, "undo-end") == ["car", "flight", "hotel"]


# --- with the time-skipping test server -----------------------------------------


async def test_with_the_default_retry_policy_the_saga_asks_for_help_after_ten_attempts(
    task_queue: str, ledger: str
) -> None:
    """The default policy retries for about a minute of backoff; the test server skips it."""
    plan = TripPlan(
        ledger,
        [
            StepSpec("hotel", undo="until_fixed", undo_default_policy=True),
            StepSpec("flight", step="fail"),
        ],
    )
    async with (
        time_skipping_environment() as env,
        running_worker(
            env.client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
        ),
    ):
        handle = await start(env.client, task_queue, plan)
        await env.sleep(timedelta(minutes=5))
        waiting = await wait_for_state(handle, SagaState.NEEDS_ATTENTION)
        after = await resolve(handle, SagaResolution.skip(0, "cancelled at the front desk"))
        assert_step_failed(await failure_of(handle), "flight")
    assert [a for _, n, a in events(ledger, "undo-start") if n == "hotel"] == list(range(1, 11))
    assert waiting.compensations[1].status is CompensationStatus.FAILED
    assert after.compensations[1].status is CompensationStatus.SKIPPED


# --- without a server ------------------------------------------------------------


def test_resolutions_and_nested_progress_round_trip_through_the_default_converter() -> None:
    converter = DataConverter.default.payload_converter
    resolution = SagaResolution.skip(1, "refunded by hand")
    payloads = converter.to_payloads([resolution])
    assert json.loads(payloads[0].data) == {
        "action": "skip",
        "step": 1,
        "reason": "refunded by hand",
    }
    assert converter.from_payloads(payloads, [SagaResolution]) == [resolution]
    inner = SagaProgress(
        SagaState.COMPENSATED,
        ("book",),
        (CompensationProgress(0, "book", CompensationStatus.SKIPPED, "E: no", "by hand"),),
    )
    snapshot = SagaProgress(SagaState.NEEDS_ATTENTION, ("pay",), (), (inner,))
    payloads = converter.to_payloads([snapshot])
    assert converter.from_payloads(payloads, [SagaProgress]) == [snapshot]
