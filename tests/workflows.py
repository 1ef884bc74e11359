"""Small workflows that tests run, kept out of the test modules.

pytest rewrites a test module's asserts and adds an import of its own assertion machinery to
it; the workflow sandbox imports a workflow's module afresh for every run, so a workflow
defined in a test module would import that machinery again each time (a third of the CPU of
the tests that run them).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from sagakit import Saga

with workflow.unsafe.imports_passed_through():
    from sagakit.course.services.orders import OrderActivities, OrderRequest


@dataclass(frozen=True)
class Steps:
    """Input of the test workflow: run these activities one after another on one payload."""

    activities: tuple[str, ...]
    payload: dict[str, Any]
    timeout_ms: int = 5_000
    maximum_attempts: int = 5
    heartbeat_ms: int | None = None


@workflow.defn
class RunStepsWorkflow:
    """Run the activities named in ``steps`` one after another, each with its own retries."""

    @workflow.run
    async def run(self, steps: Steps) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        for name in steps.activities:
            result = await workflow.execute_activity(
                name,
                steps.payload,
                start_to_close_timeout=timedelta(milliseconds=steps.timeout_ms),
                heartbeat_timeout=None
                if steps.heartbeat_ms is None
                else timedelta(milliseconds=steps.heartbeat_ms),
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=100),
                    backoff_coefficient=1.0,
                    maximum_attempts=steps.maximum_attempts,
                ),
                result_type=dict,
            )
            results.append(result)
        return results


@workflow.defn
class TwoStepOrder:
    """Reserve and charge, undo both on failure (a test double of the capstone)."""

    @workflow.run
    async def run(self, order: OrderRequest) -> str:
        request = replace(order, idempotency_key=order.order_id)
        retry = RetryPolicy(initial_interval=timedelta(milliseconds=100), maximum_attempts=2)
        async with Saga() as saga:
            saga.add(OrderActivities.release_inventory, request)
            await workflow.execute_activity_method(
                OrderActivities.reserve_inventory,
                request,
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=retry,
            )
            saga.add(OrderActivities.refund_payment, request)
            await workflow.execute_activity_method(
                OrderActivities.charge_payment,
                request,
                start_to_close_timeout=timedelta(seconds=5),
                retry_policy=retry,
            )
        return "charged"


@workflow.defn
class SleepForADay:
    """Sleep for a day of workflow time; return how long the workflow saw pass."""

    @workflow.run
    async def run(self) -> str:
        start = workflow.now()
        await workflow.sleep(timedelta(days=1))
        return str(workflow.now() - start)


@workflow.defn
class CoreClassIdentity:
    """Return the ``id()`` of the ``Saga`` class that this module's ``from sagakit import Saga`` got.

    In the sandbox this module runs afresh, and so does ``sagakit/__init__.py``; the name
    itself must come from the host's ``sagakit._saga``, passed through, not from a re-import.
    """

    @workflow.run
    async def run(self) -> int:
        return id(Saga)
