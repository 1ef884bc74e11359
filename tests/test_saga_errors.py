"""Which errors make a saga compensate, and which must not (bugs, Continue-As-New, eviction).

Also: partials of activities, the readable cause after a cancel, and guards on the
temporalio APIs that sagakit._saga relies on. Workflows run on the real dev server.
"""

from __future__ import annotations

import asyncio
import functools
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import RetryPolicy as RetryPolicyProto
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, CancelledError, FailureError

from sagakit import Saga, SagaState, SagaUsageError, running_worker
from tests.saga_activities import ACTIVITIES, StepCall, create_ledger, names, undo_step
from tests.saga_helpers import (
    assert_step_failed,
    failure_of,
    progress,
    scheduled_activities,
    start,
    status,
    wait_for_event,
    wait_until,
    wait_until_past_steps,
)
from tests.saga_workflows import (
    WORKFLOWS,
    BuggyTripWorkflow,
    EvictedTripWorkflow,
    FixedTripWorkflow,
    StepSpec,
    TripPlan,
)


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    return create_ledger(tmp_path / "ledger.sqlite")


# --- a bug is not a failure ------------------------------------------------------


async def test_a_bug_schedules_no_undo_and_a_fixed_worker_finishes_the_same_run(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(ledger, [StepSpec("hotel"), StepSpec("flight")])
    async with running_worker(
        client, task_queue=task_queue, workflows=[BuggyTripWorkflow], activities=ACTIVITIES
    ):
        # The old worker may take the task's retry before it stops; the new worker then gets
        # it when that attempt times out: after 2 s, not the default 10 s.
        handle = await start(
            client, task_queue, plan, BuggyTripWorkflow, task_timeout=timedelta(seconds=2)
        )
        failed_task = await wait_for_event(handle, "workflow_task_failed_event_attributes")
    stuck = await handle.fetch_history()
    # Version 2 of the same workflow type, on the same task queue, takes over the run.
    async with running_worker(
        client, task_queue=task_queue, workflows=[FixedTripWorkflow], activities=ACTIVITIES
    ):
        assert await handle.result() == ["hotel", "flight"]
        finished = await handle.fetch_history()
    failure = failed_task.workflow_task_failed_event_attributes.failure
    assert failure.application_failure_info.type == "KeyError"
    assert scheduled_activities(stuck) == ["do_step"]  # the hotel; no undo in the History
    assert names(ledger, "undo-start") == []
    assert scheduled_activities(finished) == ["do_step", "do_step"]
    task_failures = [
        e.workflow_task_failed_event_attributes.failure
        for e in finished.events
        if e.HasField("workflow_task_failed_event_attributes")
    ]
    # Only the bug failed tasks (the old worker may have tried twice): no nondeterminism error.
    assert {f.application_failure_info.type for f in task_failures} == {"KeyError"}
    assert finished.events[-1].HasField("workflow_execution_completed_event_attributes")
    assert names(ledger, "do") == ["hotel", "flight"]


async def test_compensate_on_chooses_the_error_types() -> None:
    class Refused(Exception):
        pass

    undone: list[str] = []

    async def undo() -> None:
        undone.append("undo")

    async def block(error: BaseException) -> None:
        async with Saga(compensate_on=(FailureError, Refused)) as saga:
            saga.add(undo)
            raise error

    with pytest.raises(KeyError):
        await block(KeyError("bug"))
    assert undone == []
    with pytest.raises(Refused):
        await block(Refused())
    assert undone == ["undo"]
    with pytest.raises(ApplicationError):
        await block(ApplicationError("declined"))
    with pytest.raises(asyncio.CancelledError):
        await block(asyncio.CancelledError())  # a cancellation always compensates
    assert undone == ["undo"] * 3


async def test_outside_a_workflow_every_exception_compensates_but_no_base_exception() -> None:
    class HandOver(BaseException):
        pass

    assert issubclass(workflow.ContinueAsNewError, BaseException)
    assert not issubclass(workflow.ContinueAsNewError, Exception)
    undone: list[str] = []

    async def undo() -> None:
        undone.append("undo")

    async def block(error: BaseException) -> None:
        async with Saga() as saga:
            saga.add(undo)
            raise error

    with pytest.raises(KeyError):
        await block(KeyError("no workflow task to retry here"))
    assert undone == ["undo"]
    with pytest.raises(HandOver):  # like workflow.ContinueAsNewError, a BaseException
        await block(HandOver())
    with pytest.raises(GeneratorExit):
        await block(GeneratorExit())
    assert undone == ["undo"]


@pytest.mark.parametrize(
    "compensate_on", [(), (int,), "ValueError", (KeyboardInterrupt,), [ValueError, "x"]]
)
def test_compensate_on_must_be_exception_classes(compensate_on: object) -> None:
    with pytest.raises(SagaUsageError, match="tuple of Exception classes"):
        Saga(compensate_on=compensate_on)  # type: ignore[arg-type]


def test_a_saga_that_waits_needs_its_update() -> None:
    with pytest.raises(SagaUsageError, match="wait_for_operator=False"):
        Saga(update=None)
    with pytest.raises(SagaUsageError, match="not a usable Update name"):
        Saga(update="")
    Saga(update=None, wait_for_operator=False)


# --- Continue-As-New and eviction ---------------------------------------------------


async def test_continue_as_new_inside_the_saga_undoes_nothing(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(ledger, [StepSpec("hotel"), StepSpec("flight")], continue_as_new=True)
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        assert await handle.result() == ["hotel", "flight"]  # the second run's result
        first_run = client.get_workflow_handle(handle.id, run_id=handle.result_run_id)
        first = await first_run.fetch_history()
        assert await status(first_run) == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert scheduled_activities(first) == ["do_step", "do_step"]
    assert names(ledger, "do") == ["hotel", "flight", "hotel", "flight"]
    assert names(ledger, "undo-start") == []


async def test_eviction_from_the_worker_cache_runs_no_compensation(
    client: Client, task_queue: str, ledger: str
) -> None:
    """With no workflow cache, the worker evicts the run after every workflow task.

    Each eviction cancels the run's tasks while the saga awaits an activity or a
    condition; an undo that ran would record "undo-in-workflow" in the ledger.
    """
    plan = TripPlan(ledger, [StepSpec("hotel"), StepSpec("flight")])
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=WORKFLOWS,
        activities=ACTIVITIES,
        max_cached_workflows=0,
    ):
        handle = await start(client, task_queue, plan, EvictedTripWorkflow)
        await wait_until(lambda: names(ledger, "do") == ["hotel"], "the hotel step")
        await wait_for_event(handle, "workflow_task_completed_event_attributes")
        await handle.signal("go")
        assert await handle.result() == ["hotel", "flight"]
        final = await progress(handle)
        history = await handle.fetch_history()
    tasks = sum(e.HasField("workflow_task_completed_event_attributes") for e in history.events)
    assert tasks >= 3  # so the run was evicted inside the block at least twice
    assert names(ledger, "undo-in-workflow") == []
    assert final.state is SagaState.COMPLETED


# --- partials, and the cause after a cancel -------------------------------------------


async def test_a_partial_of_an_activity_is_scheduled_as_that_activity(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(
        ledger,
        [
            StepSpec("hotel", undo="partial"),
            StepSpec("flight", undo="partial_async"),
            StepSpec("car", step="fail"),
        ],
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        assert_step_failed(await failure_of(handle), "car")
        history = await handle.fetch_history()
        final = await progress(handle)
    assert scheduled_activities(history)[3:] == ["undo_step", "undo_step_async", "undo_step"]
    assert names(ledger, "undo-end") == ["car", "flight (partial)", "hotel"]
    assert final.steps == ("undo_step", "undo_step_async", "undo_step")


def test_partials_of_activities_bind_their_arguments() -> None:
    class Trips:
        @activity.defn(name="cancel_trip")
        async def cancel(self, call: StepCall, why: str = "") -> None:
            """An activity method (never run)."""

    call = StepCall("ledger.sqlite", "hotel")
    saga = Saga()
    saga.add(functools.partial(functools.partial(undo_step), call))
    saga.add(functools.partial(Trips.cancel, why="late"), call)
    assert saga.progress().steps == ("undo_step", "cancel_trip")
    with pytest.raises(SagaUsageError, match="cannot be called with those arguments"):
        saga.add(functools.partial(undo_step, call, nonsense=1))  # type: ignore[call-arg]
    with pytest.raises(SagaUsageError, match="cannot be called with 2 argument"):
        saga.add(functools.partial(undo_step, call), call)


async def _cancel_with_a_broken_undo(
    client: Client, task_queue: str, ledger: str, *, during_the_flight: bool
) -> ApplicationError:
    """Book the hotel (its undo is broken), cancel at the flight, return the saga's error.

    ``during_the_flight``: cancel while the flight's activity runs (it blocks until then);
    otherwise once the workflow waits after a flight that succeeded.
    """
    flight = StepSpec("flight", step="block" if during_the_flight else "wait")
    plan = TripPlan(ledger, [StepSpec("hotel", undo="broken"), flight], wait_for_operator=False)
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        if during_the_flight:
            await wait_until(lambda: "flight" in names(ledger, "do"), "the flight step")
        else:
            await wait_until_past_steps(handle, 2)
        await handle.cancel()
        cause = await failure_of(handle)
        assert await status(handle) == WorkflowExecutionStatus.FAILED
    assert isinstance(cause, ApplicationError)
    assert cause.type == "CompensationError"
    assert "failed after the workflow was cancelled" in cause.message
    return cause


async def test_cancel_then_a_failed_undo_reads_as_a_cancellation(
    client: Client, task_queue: str, ledger: str
) -> None:
    cause = await _cancel_with_a_broken_undo(client, task_queue, ledger, during_the_flight=False)
    assert isinstance(cause.cause, CancelledError)  # not ApplicationError(type="CancelledError")
    assert "The workflow was cancelled" in cause.cause.message


async def test_a_cancel_during_a_step_then_a_failed_undo_reads_as_a_cancellation(
    client: Client, task_queue: str, ledger: str
) -> None:
    """The cancel reaches the block inside the flight's activity call: an ActivityError."""
    cause = await _cancel_with_a_broken_undo(client, task_queue, ledger, during_the_flight=True)
    assert isinstance(cause.cause, ActivityError)
    assert isinstance(cause.cause.cause, CancelledError)


# --- the temporalio APIs the saga relies on -----------------------------------------


def test_temporalio_still_recognises_activities_the_way_the_saga_asks() -> None:
    """sagakit._saga._activity_name uses the private ``activity._Definition.from_callable``."""
    definition_api = getattr(getattr(activity, "_Definition", None), "from_callable", None)
    assert definition_api is not None, (
        "temporalio no longer has activity._Definition.from_callable, which "
        "sagakit._saga._activity_name uses to tell activities from plain callables: "
        "port _activity_name to the new API."
    )
    found = definition_api(undo_step)
    assert getattr(found, "name", None) == "undo_step", (
        "activity._Definition.from_callable(an activity) no longer returns a definition "
        f"with the activity's name (got {found!r}): port sagakit._saga._activity_name."
    )
    assert definition_api(test_temporalio_still_recognises_activities_the_way_the_saga_asks) is (
        None
    ), "activity._Definition.from_callable no longer returns None for a plain function."


def test_temporalio_still_validates_a_retry_policy_when_converting_it() -> None:
    """The saga checks retry policies with the public ``RetryPolicy.apply_to_proto``."""
    with pytest.raises(ValueError, match="Backoff coefficient"):
        RetryPolicy(backoff_coefficient=0.5).apply_to_proto(RetryPolicyProto())
    with pytest.raises(SagaUsageError, match="invalid"):
        Saga().add(undo_step, StepCall("l", "n"), retry_policy=RetryPolicy(maximum_attempts=-1))
