"""sagakit._saga.Saga against the real Temporal server, plus its pure-Python contract.

The activities write to a SQLite ledger (see saga_activities.py), so each test
reads what really ran, in what order, and how often.
"""

from __future__ import annotations

import asyncio
import inspect
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.common import RetryPolicy
from temporalio.converter import DataConverter
from temporalio.exceptions import ApplicationError, CancelledError
from temporalio.worker import Replayer

from sagakit import (
    CompensationError,
    CompensationProgress,
    CompensationStatus,
    ConfigurationError,
    Saga,
    SagakitError,
    SagaProgress,
    SagaState,
    SagaUsageError,
    running_worker,
)
from tests.saga_activities import ACTIVITIES, StepCall, create_ledger, events, names, open_gate
from tests.saga_helpers import (
    assert_step_failed,
    failure_of,
    progress,
    start,
    status,
    wait_until,
    wait_until_cancel_seen,
)
from tests.saga_workflows import WORKFLOWS, NaiveShieldWorkflow, StepSpec, TripPlan

# --- helpers -----------------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> str:
    return create_ledger(tmp_path / "ledger.sqlite")


# --- against the real server ---------------------------------------------------


async def test_compensations_run_lifo_and_the_original_error_fails_the_workflow(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(
        ledger,
        [
            StepSpec("hotel"),
            StepSpec("flight", undo="callable"),
            StepSpec("car"),
            StepSpec("excursion", step="fail"),
        ],
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        assert_step_failed(await failure_of(handle), "excursion")
        assert await status(handle) == WorkflowExecutionStatus.FAILED
        # The excursion's undo was registered before its step, so it runs too.
        assert names(ledger, "undo-end") == ["excursion", "car", "flight", "hotel"]
        final = await progress(handle)
    assert final.state is SagaState.COMPENSATED
    assert final.steps == (
        "undo_step",
        "TripWorkflow._undo_from_workflow",
        "undo_step",
        "undo_step",
    )
    assert [c.step for c in final.compensations] == [3, 2, 1, 0]
    assert {c.status for c in final.compensations} == {CompensationStatus.SUCCEEDED}


async def test_parallel_compensations_are_all_scheduled_before_any_completes(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(
        ledger,
        [
            StepSpec("hotel"),
            StepSpec("flight"),
            StepSpec("car"),
            StepSpec("excursion", step="fail"),
        ],
        parallel=True,
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        assert_step_failed(await failure_of(handle), "excursion")
        history = await handle.fetch_history()
    await Replayer(workflows=WORKFLOWS).replay_workflow(history)
    undo_scheduled = {
        e.event_id
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
        and e.activity_task_scheduled_event_attributes.activity_type.name == "undo_step"
    }
    undo_completed = [
        e.event_id
        for e in history.events
        if e.HasField("activity_task_completed_event_attributes")
        and e.activity_task_completed_event_attributes.scheduled_event_id in undo_scheduled
    ]
    assert len(undo_scheduled) == 4
    assert len(undo_completed) == 4
    assert max(undo_scheduled) < min(undo_completed)
    assert sorted(names(ledger, "undo-end")) == ["car", "excursion", "flight", "hotel"]


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("block", id="in-an-activity"),  # the block sees ActivityError(Cancelled)
        pytest.param("wait", id="in-workflow-code"),  # the block sees asyncio.CancelledError
    ],
)
async def test_cancel_while_a_step_runs_compensates_and_ends_canceled(
    client: Client, task_queue: str, ledger: str, how: str
) -> None:
    plan = TripPlan(ledger, [StepSpec("hotel"), StepSpec("flight", step=how), StepSpec("car")])
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        await wait_until(lambda: "flight" in names(ledger, "do"), "the flight step to start")
        await handle.cancel()
        cause = await failure_of(handle)
        assert isinstance(cause, CancelledError)
        assert await status(handle) == WorkflowExecutionStatus.CANCELED
    assert names(ledger, "undo-end") == ["flight", "hotel"]
    assert "car" not in names(ledger, "do")


async def test_cancel_during_compensation_still_runs_every_compensation(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(
        ledger,
        [StepSpec("hotel"), StepSpec("flight"), StepSpec("car", step="fail", undo="gate")],
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        await wait_until(lambda: names(ledger, "undo-start") == ["car"], "compensation #1")
        await handle.cancel()
        await wait_until_cancel_seen(handle)
        during = await progress(handle)
        open_gate(ledger, "car")
        cause = await failure_of(handle)
        assert isinstance(cause, CancelledError)
        assert await status(handle) == WorkflowExecutionStatus.CANCELED
        final = await progress(handle)
        # Deterministic: the recorded history replays without a nondeterminism error.
        await Replayer(workflows=WORKFLOWS).replay_workflow(await handle.fetch_history())
    assert during.state is SagaState.COMPENSATING
    assert [c.status for c in during.compensations] == [
        CompensationStatus.RUNNING,
        CompensationStatus.PENDING,
        CompensationStatus.PENDING,
    ]
    assert names(ledger, "undo-end") == ["car", "flight", "hotel"]
    assert final.state is SagaState.COMPENSATED


async def test_naive_single_shield_loses_the_rest_of_the_compensation(
    client: Client, task_queue: str, ledger: str
) -> None:
    """Control experiment: the pattern Saga replaces stops after compensation #1."""
    plan = TripPlan(
        ledger,
        [StepSpec("hotel"), StepSpec("flight"), StepSpec("car", step="fail", undo="gate")],
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan, NaiveShieldWorkflow)
        await wait_until(lambda: names(ledger, "undo-start") == ["car"], "compensation #1")
        await handle.cancel()
        await wait_until_cancel_seen(handle)
        open_gate(ledger, "car")
        assert isinstance(await failure_of(handle), CancelledError)
        assert await status(handle) == WorkflowExecutionStatus.CANCELED
    # The workflow is closed: nothing more can ever be scheduled for it.
    assert names(ledger, "undo-start") == ["car"]


async def test_a_flaky_compensation_is_retried_until_it_succeeds(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(
        ledger,
        [StepSpec("hotel", undo="flaky", undo_fail_times=2), StepSpec("flight", step="fail")],
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        assert_step_failed(await failure_of(handle), "flight")
        final = await progress(handle)
    assert [(n, a) for _, n, a in events(ledger, "undo-start")] == [
        ("flight", 1),
        ("hotel", 1),
        ("hotel", 2),
        ("hotel", 3),
    ]
    assert [(n, a) for _, n, a in events(ledger, "undo-end")] == [("flight", 1), ("hotel", 3)]
    assert final.state is SagaState.COMPENSATED


async def test_a_broken_compensation_does_not_stop_the_others_and_fails_the_workflow(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(
        ledger,
        [StepSpec("hotel"), StepSpec("flight", undo="broken"), StepSpec("car", step="fail")],
        wait_for_operator=False,
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        cause = await failure_of(handle)
        assert await status(handle) == WorkflowExecutionStatus.FAILED
        final = await progress(handle)
    assert isinstance(cause, ApplicationError)
    assert cause.type == "CompensationError"
    assert cause.non_retryable
    assert "1 of 3 compensations failed" in cause.message
    assert "undo of flight is impossible" in cause.message
    assert_step_failed(cause.cause, "car")  # chained to the original error
    assert names(ledger, "undo-start") == ["car", "flight", "hotel"]
    assert names(ledger, "undo-end") == ["car", "hotel"]
    assert final.state is SagaState.FAILED
    assert [(c.step, c.status) for c in final.compensations] == [
        (2, CompensationStatus.SUCCEEDED),
        (1, CompensationStatus.FAILED),
        (0, CompensationStatus.SUCCEEDED),
    ]
    assert "undo of flight is impossible" in (final.compensations[1].error or "")


async def test_stop_on_error_stops_at_the_first_failed_compensation(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(
        ledger,
        [StepSpec("hotel"), StepSpec("flight", undo="broken"), StepSpec("car", step="fail")],
        stop_on_error=True,
        wait_for_operator=False,
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        cause = await failure_of(handle)
        final = await progress(handle)
    assert isinstance(cause, ApplicationError)
    assert cause.type == "CompensationError"
    assert "skipped" in cause.message
    assert names(ledger, "undo-start") == ["car", "flight"]
    assert [c.status for c in final.compensations] == [
        CompensationStatus.SUCCEEDED,
        CompensationStatus.FAILED,
        CompensationStatus.SKIPPED,
    ]
    assert final.state is SagaState.FAILED


async def test_normal_completion_runs_no_compensation(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(ledger, [StepSpec("hotel"), StepSpec("flight")])
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        assert await handle.result() == ["hotel", "flight"]
        final = await progress(handle)
    assert names(ledger, "do") == ["hotel", "flight"]
    assert events(ledger, "undo-start") == []
    assert final == SagaProgress(SagaState.COMPLETED, ("undo_step", "undo_step"), ())


async def test_compensate_without_context_manager_runs_once(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(ledger, [StepSpec("hotel"), StepSpec("flight", step="fail")], manual=True)
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        assert_step_failed(await failure_of(handle), "flight")
    assert names(ledger, "undo-start") == ["flight", "hotel"]


async def test_query_shows_progress_while_the_saga_runs_and_compensates(
    client: Client, task_queue: str, ledger: str
) -> None:
    plan = TripPlan(
        ledger, [StepSpec("hotel"), StepSpec("flight", undo="gate"), StepSpec("car", step="block")]
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        handle = await start(client, task_queue, plan)
        await wait_until(lambda: "car" in names(ledger, "do"), "the car step to start")
        running = await progress(handle)
        await handle.cancel()
        await wait_until(lambda: "flight" in names(ledger, "undo-start"), "the flight undo")
        compensating = await progress(handle)
        open_gate(ledger, "flight")
        assert isinstance(await failure_of(handle), CancelledError)
        done = await progress(handle)
    assert running == SagaProgress(SagaState.RUNNING, ("undo_step",) * 3, ())
    assert compensating.state is SagaState.COMPENSATING
    assert compensating.compensations == (
        CompensationProgress(2, "undo_step", CompensationStatus.SUCCEEDED),
        CompensationProgress(1, "undo_step", CompensationStatus.RUNNING),
        CompensationProgress(0, "undo_step", CompensationStatus.PENDING),
    )
    assert done.state is SagaState.COMPENSATED
    assert {c.status for c in done.compensations} == {CompensationStatus.SUCCEEDED}


# --- the contract without a server ---------------------------------------------


@activity.defn
async def release(call: StepCall) -> None:
    """An activity only used to test add()'s checks (never run)."""


class Bookings:
    @activity.defn(name="cancel_booking")
    async def cancel(self, call: StepCall) -> None:
        """An activity method (never run)."""


def sync_undo(name: str) -> None:
    """A plain function: not allowed as a compensation."""


async def async_undo(name: str) -> None:
    """A plain async function: allowed."""


def call() -> StepCall:
    return StepCall("ledger.sqlite", "hotel")


@pytest.mark.parametrize(
    ("args", "options", "message"),
    [
        (("not callable",), {}, "needs a callable"),
        ((sync_undo, "hotel"), {}, "plain function"),
        (
            (async_undo, "hotel"),
            {"start_to_close_timeout": timedelta(seconds=1)},
            "not an activity",
        ),
        ((async_undo,), {}, "cannot be called with 0 argument"),
        ((release, call()), {"start_to_close_timout": timedelta(seconds=1)}, "Unknown activity"),
        ((release, call()), {"start_to_close_timeout": timedelta(seconds=-1)}, "must be positive"),
        ((release, call()), {"heartbeat_timeout": 5}, "must be a datetime.timedelta"),
        ((release, call()), {"start_to_close_timeout": None}, "neither start_to_close"),
        ((release, call()), {"retry_policy": RetryPolicy(backoff_coefficient=0.5)}, "invalid"),
        ((release, call()), {"retry_policy": {"maximum_attempts": 3}}, "RetryPolicy"),
        ((release, call()), {"arg": call()}, "positionally"),
        ((release, call(), call()), {}, "cannot be called with 2 argument"),
        ((Bookings().cancel,), {}, "cannot be called with 0 argument"),
    ],
)
def test_add_rejects_bad_compensations_at_once(
    args: tuple[object, ...], options: dict[str, object], message: str
) -> None:
    saga = Saga()
    with pytest.raises(SagaUsageError, match=message) as info:
        saga.add(*args, **options)  # type: ignore[arg-type]
    assert isinstance(info.value, ConfigurationError)
    assert saga.progress().steps == ()


def test_add_rejects_a_coroutine_and_closes_it() -> None:
    coroutine = async_undo("hotel")
    with pytest.raises(SagaUsageError, match=r"saga.add\(undo, arg\)"):
        Saga().add(coroutine)  # type: ignore[arg-type]
    # Closed, so no "never awaited" warning.
    assert inspect.getcoroutinestate(coroutine) == inspect.CORO_CLOSED


def test_add_accepts_activities_methods_and_async_callables() -> None:
    saga = Saga()
    saga.add(release, call(), start_to_close_timeout=timedelta(seconds=5))
    saga.add(Bookings().cancel, call())
    saga.add(async_undo, "hotel")
    assert saga.progress() == SagaProgress(
        SagaState.RUNNING, ("release", "cancel_booking", "async_undo"), ()
    )


def test_saga_options_that_cannot_work_are_rejected() -> None:
    with pytest.raises(SagaUsageError, match="Choose one"):
        Saga(parallel=True, stop_on_error=True)
    with pytest.raises(SagaUsageError, match="query=None"):
        Saga(query="")


def test_compensation_error_is_an_exception_group_a_sagakit_error_and_a_temporal_failure() -> None:
    first, second = ValueError("a"), KeyError("b")
    err = CompensationError("2 of 2 compensations failed", [first, second])
    assert isinstance(err, ExceptionGroup)
    assert isinstance(err, SagakitError)
    assert isinstance(err, ApplicationError)
    assert err.exceptions == (first, second)
    assert err.type == "CompensationError"
    assert err.non_retryable
    caught: dict[str, BaseExceptionGroup[BaseException]] = {}
    try:
        raise err from RuntimeError("original")
    except* KeyError as group:
        caught["key"] = group
    except* ValueError as group:
        caught["value"] = group
    assert isinstance(caught["key"], CompensationError)
    assert caught["key"].exceptions == (second,)
    assert str(caught["key"].__cause__) == "original"
    assert isinstance(caught["value"], CompensationError)
    assert caught["value"].exceptions == (first,)


async def test_plain_asyncio_error_policy_and_idempotent_compensate() -> None:
    ran: list[str] = []

    async def undo(name: str) -> None:
        ran.append(name)
        if name == "flight":
            raise RuntimeError("airline offline")

    saga = Saga()
    for name in ("hotel", "flight", "car"):
        saga.add(undo, name)
    original = ValueError("car step failed")

    async def fail_then_compensate() -> None:
        try:
            raise original
        except ValueError:
            await saga.compensate()

    with pytest.raises(CompensationError) as info:
        await fail_then_compensate()
    assert info.value.__cause__ is original
    assert [str(e) for e in info.value.exceptions] == ["airline offline"]
    assert ran == ["car", "flight", "hotel"]
    await saga.compensate()  # a second call does nothing
    assert ran == ["car", "flight", "hotel"]
    assert saga.state is SagaState.FAILED
    with pytest.raises(SagaUsageError, match="failed"):
        saga.add(undo, "late")


async def test_plain_asyncio_cancel_during_compensation_finishes_then_reraises() -> None:
    gate = asyncio.Event()
    ran: list[str] = []

    async def undo(name: str) -> None:
        if name == "car":
            await gate.wait()
        ran.append(name)

    async def body() -> None:
        async with Saga() as saga:
            for name in ("hotel", "flight", "car"):
                saga.add(undo, name)
            raise ValueError("boom")

    task = asyncio.create_task(body())
    for _ in range(100):
        await asyncio.sleep(0)
    task.cancel()
    for _ in range(100):
        await asyncio.sleep(0)
    assert not task.done()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ran == ["car", "flight", "hotel"]


def test_progress_round_trips_through_the_default_data_converter() -> None:
    snapshot = SagaProgress(
        SagaState.FAILED,
        ("book", "pay"),
        (
            CompensationProgress(1, "pay", CompensationStatus.FAILED, "ApplicationError: no"),
            CompensationProgress(0, "book", CompensationStatus.SKIPPED),
        ),
    )
    converter = DataConverter.default.payload_converter
    payloads = converter.to_payloads([snapshot])
    assert b'"state":"failed"' in payloads[0].data
    assert converter.from_payloads(payloads, [SagaProgress]) == [snapshot]


async def test_closing_the_coroutine_does_not_compensate() -> None:
    """A coroutine closed with GeneratorExit (say, garbage-collected unfinished) did not fail.

    (temporalio evicts by cancelling the workflow's tasks instead: see test_saga_errors.py.)
    """
    undone: list[str] = []
    gate = asyncio.Event()

    async def undo() -> None:
        undone.append("undo")

    async def body() -> None:
        async with Saga(query=None) as saga:
            saga.add(undo)
            await gate.wait()

    coroutine = body()
    waiter = coroutine.send(None)  # run up to the first suspension inside the block
    assert waiter is not None
    coroutine.close()
    assert undone == []
