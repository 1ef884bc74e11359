"""Helpers shared by the saga tests and by make_saga_histories.py (no fixtures here)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

import pytest
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
)
from temporalio.exceptions import ActivityError, ApplicationError

from sagakit import SagaProgress, SagaState
from tests.saga_workflows import TripPlan, TripWorkflow

WAIT_S = 30.0
"""Longest any helper waits for something to happen on the server."""
POLL_S = 0.05
"""How often the helpers look."""

T = TypeVar("T")


async def poll(probe: Callable[[], Awaitable[T | None]], failure: Callable[[], str]) -> T:
    """Await ``probe`` every :data:`POLL_S` until it returns something, and return that; fail
    the test with ``failure()`` after :data:`WAIT_S` worth of looks."""
    for _ in range(int(WAIT_S / POLL_S)):
        found = await probe()
        if found is not None:
            return found
        await asyncio.sleep(POLL_S)
    pytest.fail(failure())


async def start(
    client: Client,
    task_queue: str,
    plan: TripPlan,
    workflow: type = TripWorkflow,
    *,
    task_timeout: timedelta | None = None,
) -> WorkflowHandle[object, object]:
    """Start ``workflow`` with ``plan`` on ``task_queue`` (its id is derived from the queue).

    ``task_timeout`` is the workflow task timeout (the server's default is 10 s).
    """
    handle: WorkflowHandle[object, object] = await client.start_workflow(
        workflow.run,  # type: ignore[attr-defined]
        plan,
        id=f"saga-{task_queue}",
        task_queue=task_queue,
        task_timeout=task_timeout,
    )
    return handle


async def wait_until(check: Callable[[], bool], what: str) -> None:
    """Poll ``check`` every 50 ms; fail the test after :data:`WAIT_S`."""

    async def passed() -> bool | None:
        return True if check() else None

    await poll(passed, lambda: f"gave up after {WAIT_S} s waiting for {what}")


async def wait_for_event(handle: WorkflowHandle[object, object], attribute: str) -> HistoryEvent:
    """The first History event that has ``attribute`` (e.g. ``workflow_task_failed_...``)."""

    async def first() -> HistoryEvent | None:
        events = (await handle.fetch_history()).events
        return next((e for e in events if e.HasField(attribute)), None)  # type: ignore[arg-type]

    return await poll(
        first, lambda: f"gave up after {WAIT_S} s waiting for a History event with {attribute}"
    )


async def _wait_until_run_on_after(
    handle: WorkflowHandle[object, object], attribute: str, count: int, failure: str
) -> None:
    """Wait until the History has ``count`` events with ``attribute`` and the workflow code has
    run on after the last of them (a workflow task completed after it)."""

    async def ran_on() -> bool | None:
        events = (await handle.fetch_history()).events
        found = [e.event_id for e in events if e.HasField(attribute)]  # type: ignore[arg-type]
        done = len(found) >= count and any(
            e.event_id > found[count - 1] and e.HasField("workflow_task_completed_event_attributes")
            for e in events
        )
        return True if done else None

    await poll(ran_on, lambda: failure)


async def wait_until_cancel_seen(handle: WorkflowHandle[object, object]) -> None:
    """Wait until the workflow code has run with the cancellation (a task completed after it)."""
    await _wait_until_run_on_after(
        handle,
        "workflow_execution_cancel_requested_event_attributes",
        1,
        "the workflow never processed the cancellation",
    )


async def wait_until_past_steps(handle: WorkflowHandle[object, object], steps: int) -> None:
    """Wait until ``steps`` activities have completed and the workflow code has run on after the
    last of them (a workflow task completed after it).

    A step's own ledger entry is written while its activity runs, before the workflow has
    seen the result: a cancel sent then reaches the workflow inside the activity call (an
    ActivityError caused by a CancelledError), not in what the workflow does next.
    """
    await _wait_until_run_on_after(
        handle,
        "activity_task_completed_event_attributes",
        steps,
        f"the workflow never got past its first {steps} step(s)",
    )


async def status(handle: WorkflowHandle[object, object]) -> WorkflowExecutionStatus | None:
    """The workflow's status on the server."""
    return (await handle.describe()).status


async def failure_of(handle: WorkflowHandle[object, object]) -> BaseException:
    """The cause of the workflow's failure (it must fail)."""
    with pytest.raises(WorkflowFailureError) as info:
        async with asyncio.timeout(WAIT_S):
            await handle.result()
    assert info.value.cause is not None
    return info.value.cause


def assert_step_failed(err: BaseException | None, step: str) -> None:
    """``err`` is the ActivityError of the forward step ``step`` that failed for good."""
    assert isinstance(err, ActivityError), err
    assert isinstance(err.cause, ApplicationError)
    assert err.cause.type == "StepFailed"
    assert err.cause.message == f"{step} is sold out"


async def progress(handle: WorkflowHandle[object, object]) -> SagaProgress:
    """The answer to the ``saga_progress`` query."""
    snapshot: SagaProgress = await handle.query("saga_progress", result_type=SagaProgress)
    return snapshot


async def wait_for_state(handle: WorkflowHandle[object, object], state: SagaState) -> SagaProgress:
    """Poll ``saga_progress`` until the saga reaches ``state``; return that snapshot."""
    last: SagaProgress | None = None

    async def reached() -> SagaProgress | None:
        nonlocal last
        last = await progress(handle)
        return last if last.state is state else None

    return await poll(reached, lambda: f"the saga never reached {state.value}; last: {last}")


async def current_details(handle: WorkflowHandle[object, object]) -> str:
    """The workflow's current details, as the Web UI reads them (a built-in query)."""
    metadata: WorkflowMetadata = await handle.query(
        "__temporal_workflow_metadata", result_type=WorkflowMetadata
    )
    return str(metadata.current_details)


def scheduled_activities(history: WorkflowHistory) -> list[str]:
    """Activity type names in the order they were scheduled."""
    return [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
