"""The saga scenarios whose Histories tests/data/saga_*.json pin (see make_saga_histories.py).

Each scenario starts a workflow on a worker that the caller runs, drives it to its
end (cancelling it, fixing a fault or resolving it as an operator would) and
returns its handle. The ledger is a fresh file made by ``create_ledger``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from sagakit import SagaProgress, SagaResolution, SagaState
from tests.saga_activities import names, open_gate
from tests.saga_helpers import start, wait_for_state, wait_until, wait_until_cancel_seen
from tests.saga_workflows import StepSpec, TripPlan

Handle = WorkflowHandle[object, object]


async def _until_closed(handle: Handle) -> Handle:
    with contextlib.suppress(WorkflowFailureError):  # most end FAILED or CANCELED on purpose
        await handle.result()
    return handle


async def success(client: Client, task_queue: str, ledger: str) -> Handle:
    """Two steps succeed; nothing is undone."""
    plan = TripPlan(ledger, [StepSpec("hotel"), StepSpec("flight")])
    return await _until_closed(await start(client, task_queue, plan))


async def lifo(client: Client, task_queue: str, ledger: str) -> Handle:
    """The last step fails; four undos (one an async callable) run last to first."""
    plan = TripPlan(
        ledger,
        [
            StepSpec("hotel"),
            StepSpec("flight", undo="callable"),
            StepSpec("car"),
            StepSpec("excursion", step="fail"),
        ],
    )
    return await _until_closed(await start(client, task_queue, plan))


async def parallel(client: Client, task_queue: str, ledger: str) -> Handle:
    """The last step fails; the four undos start at once."""
    steps = [StepSpec("hotel"), StepSpec("flight"), StepSpec("car"), StepSpec("excursion", "fail")]
    plan = TripPlan(ledger, steps, parallel=True)
    return await _until_closed(await start(client, task_queue, plan))


async def cancel_during_compensation(client: Client, task_queue: str, ledger: str) -> Handle:
    """A cancel arrives while the first undo runs; every undo still runs (CANCELED)."""
    plan = TripPlan(
        ledger, [StepSpec("hotel"), StepSpec("flight"), StepSpec("car", step="fail", undo="gate")]
    )
    handle = await start(client, task_queue, plan)
    await wait_until(lambda: names(ledger, "undo-start") == ["car"], "compensation #1")
    await handle.cancel()
    await wait_until_cancel_seen(handle)
    open_gate(ledger, "car")
    return await _until_closed(handle)


async def failed_undo(client: Client, task_queue: str, ledger: str) -> Handle:
    """An undo is impossible and the saga must not wait: CompensationError (FAILED)."""
    plan = TripPlan(
        ledger,
        [StepSpec("hotel"), StepSpec("flight", undo="broken"), StepSpec("car", step="fail")],
        wait_for_operator=False,
    )
    return await _until_closed(await start(client, task_queue, plan))


async def operator_retry(client: Client, task_queue: str, ledger: str) -> Handle:
    """An undo fails for good; the saga waits; after the fix an operator retries it."""
    plan = TripPlan(
        ledger,
        [
            StepSpec("hotel"),
            StepSpec("flight", undo="until_fixed", undo_attempts=2),
            StepSpec("car", step="fail"),
        ],
    )
    handle = await start(client, task_queue, plan)
    await wait_for_state(handle, SagaState.NEEDS_ATTENTION)
    open_gate(ledger, "flight")
    await handle.execute_update(
        "saga_resolve", SagaResolution.retry("airline is back"), result_type=SagaProgress
    )
    return await _until_closed(handle)


async def operator_skip_after_cancel(client: Client, task_queue: str, ledger: str) -> Handle:
    """A waiting saga is cancelled, then an operator skips the failed undo (CANCELED)."""
    plan = TripPlan(
        ledger,
        [StepSpec("hotel", undo="until_fixed", undo_attempts=2), StepSpec("flight", step="fail")],
    )
    handle = await start(client, task_queue, plan)
    await wait_for_state(handle, SagaState.NEEDS_ATTENTION)
    await handle.cancel()
    await wait_until_cancel_seen(handle)
    await handle.execute_update(
        "saga_resolve", SagaResolution.skip(0, "refunded by phone"), result_type=SagaProgress
    )
    return await _until_closed(handle)


SCENARIOS: dict[str, Callable[[Client, str, str], Awaitable[Handle]]] = {
    "success": success,
    "lifo": lifo,
    "parallel": parallel,
    "cancel_during_compensation": cancel_during_compensation,
    "failed_undo": failed_undo,
    "operator_retry": operator_retry,
    "operator_skip_after_cancel": operator_skip_after_cancel,
}
"""Scenario name (the file is ``tests/data/saga_<name>.json``) → the function that acts it out."""
