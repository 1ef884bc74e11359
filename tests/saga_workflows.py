"""Workflows for the saga tests (kept apart from the test module for the workflow sandbox)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from sagakit import Saga

with workflow.unsafe.imports_passed_through():
    from saga_activities import StepCall, block_step, do_step, undo_step

FAST_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0)
"""Compensation retries every 100 ms, so a flaky undo is retried quickly."""

NO_RETRY = RetryPolicy(maximum_attempts=1)


@dataclass(frozen=True)
class StepSpec:
    """One step of a test trip."""

    name: str
    """Step name, also recorded in the ledger."""
    step: str = "ok"
    """How the forward step behaves: ``ok``, ``fail``, ``block`` (an activity that runs
    until cancelled) or ``wait`` (succeeds, then the workflow waits forever)."""
    undo: str = "ok"
    """How its compensation behaves: ``ok``, ``flaky``, ``broken``, ``gate``, or
    ``callable`` (an async method of the workflow instead of an activity)."""
    undo_fail_times: int = 0
    """For a ``flaky`` undo: how many attempts fail first."""


@dataclass(frozen=True)
class TripPlan:
    """Input of :class:`TripWorkflow`."""

    ledger: str
    """SQLite file the activities record into."""
    steps: list[StepSpec] = field(default_factory=list)
    """The steps, in order."""
    parallel: bool = False
    """``Saga(parallel=...)``."""
    stop_on_error: bool = False
    """``Saga(stop_on_error=...)``."""
    manual: bool = False
    """Call ``saga.compensate()`` (twice) in ``except`` instead of ``async with``."""


def _call(plan: TripPlan, spec: StepSpec, behaviour: str) -> StepCall:
    return StepCall(plan.ledger, spec.name, behaviour, spec.undo_fail_times)


@workflow.defn
class TripWorkflow:
    """Books each step of a trip inside a saga; returns the step names."""

    @workflow.run
    async def run(self, plan: TripPlan) -> list[str]:
        if plan.manual:
            saga = Saga()
            try:
                for spec in plan.steps:
                    await self._step(saga, plan, spec)
            except BaseException:
                await saga.compensate()
                await saga.compensate()  # idempotent: must not run anything again
                raise
        else:
            async with Saga(parallel=plan.parallel, stop_on_error=plan.stop_on_error) as saga:
                for spec in plan.steps:
                    await self._step(saga, plan, spec)
        return [spec.name for spec in plan.steps]

    async def _step(self, saga: Saga, plan: TripPlan, spec: StepSpec) -> None:
        if spec.undo == "callable":
            saga.add(self._undo_from_workflow, _call(plan, spec, "ok"))
        else:
            saga.add(undo_step, _call(plan, spec, spec.undo), retry_policy=FAST_RETRY)
        if spec.step == "block":
            await workflow.execute_activity(
                block_step,
                _call(plan, spec, "block"),
                start_to_close_timeout=timedelta(seconds=90),
                heartbeat_timeout=timedelta(seconds=2),
            )
        else:
            await workflow.execute_activity(
                do_step,
                _call(plan, spec, "ok" if spec.step == "wait" else spec.step),
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=NO_RETRY,
            )
        if spec.step == "wait":
            await workflow.wait_condition(lambda: False)  # only a cancel ends this

    async def _undo_from_workflow(self, call: StepCall) -> None:
        """A compensation that is a plain async callable (it calls an activity itself)."""
        await workflow.execute_activity(
            undo_step, call, start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn
class NaiveShieldWorkflow:
    """The single-``shield`` pattern, kept to show that it loses compensations."""

    @workflow.run
    async def run(self, plan: TripPlan) -> None:
        done: list[StepCall] = []
        try:
            for spec in plan.steps:
                done.append(_call(plan, spec, spec.undo))
                await workflow.execute_activity(
                    do_step,
                    _call(plan, spec, spec.step),
                    start_to_close_timeout=timedelta(seconds=10),
                    retry_policy=NO_RETRY,
                )
        except BaseException:

            async def compensate() -> None:
                for call in reversed(done):
                    await workflow.execute_activity(
                        undo_step, call, start_to_close_timeout=timedelta(seconds=90)
                    )

            await asyncio.shield(asyncio.ensure_future(compensate()))
            raise


WORKFLOWS = [TripWorkflow, NaiveShieldWorkflow]
"""Every workflow the saga tests run."""
