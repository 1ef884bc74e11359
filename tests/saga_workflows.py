"""Workflows for the saga tests (kept apart from the test module for the workflow sandbox)."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy

from sagakit import Saga

with workflow.unsafe.imports_passed_through():
    from tests.saga_activities import (
        StepCall,
        block_step,
        do_step,
        record,
        undo_step,
        undo_step_async,
    )

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
    """How its compensation behaves: ``ok``, ``flaky``, ``broken``, ``gate``, ``until_fixed``,
    ``callable`` (an async method of the workflow instead of an activity), ``partial``
    (``functools.partial(undo_step, call)``) or ``partial_async`` (a partial of the async
    activity ``undo_step_async`` with a keyword argument)."""
    undo_fail_times: int = 0
    """For a ``flaky`` undo: how many attempts fail first."""
    undo_attempts: int = 0
    """Attempts of the undo activity every 100 ms; 0 retries without limit."""
    undo_default_policy: bool = False
    """Register the undo without a retry policy, so the saga's default one applies."""


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
    wait_for_operator: bool | None = None
    """``Saga(wait_for_operator=...)``; ``None`` keeps the saga's default."""
    continue_as_new: bool = False
    """After the steps, still inside the saga, continue as new (with this flag off)."""


def _call(plan: TripPlan, spec: StepSpec, behaviour: str) -> StepCall:
    return StepCall(plan.ledger, spec.name, behaviour, spec.undo_fail_times)


def _saga(plan: TripPlan) -> Saga:
    options: dict[str, Any] = {}
    if plan.wait_for_operator is not None:
        options["wait_for_operator"] = plan.wait_for_operator
    return Saga(parallel=plan.parallel, stop_on_error=plan.stop_on_error, **options)


def _register_undo(saga: Saga, plan: TripPlan, spec: StepSpec) -> None:
    if spec.undo == "partial":
        undo: Any = functools.partial(undo_step, _call(plan, spec, "ok"))
        saga.add(undo, retry_policy=FAST_RETRY)
        return
    if spec.undo == "partial_async":
        undo = functools.partial(undo_step_async, note=" (partial)")
        saga.add(undo, _call(plan, spec, "ok"), retry_policy=FAST_RETRY)
        return
    options: dict[str, Any] = {}
    if spec.undo_attempts:
        options["retry_policy"] = replace(FAST_RETRY, maximum_attempts=spec.undo_attempts)
    elif not spec.undo_default_policy:
        options["retry_policy"] = FAST_RETRY
    saga.add(undo_step, _call(plan, spec, spec.undo), **options)


async def _do(plan: TripPlan, spec: StepSpec) -> None:
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


@workflow.defn
class TripWorkflow:
    """Books each step of a trip inside a saga; returns the step names."""

    @workflow.run
    async def run(self, plan: TripPlan) -> list[str]:
        if plan.manual:
            saga = _saga(plan)
            try:
                for spec in plan.steps:
                    await self._step(saga, plan, spec)
            except BaseException:
                await saga.compensate()
                await saga.compensate()  # idempotent: must not run anything again
                raise
        else:
            async with _saga(plan) as saga:
                for spec in plan.steps:
                    await self._step(saga, plan, spec)
                if plan.continue_as_new:
                    workflow.continue_as_new(replace(plan, continue_as_new=False))
        return [spec.name for spec in plan.steps]

    async def _step(self, saga: Saga, plan: TripPlan, spec: StepSpec) -> None:
        if spec.undo == "callable":
            saga.add(self._undo_from_workflow, _call(plan, spec, "ok"))
        else:
            _register_undo(saga, plan, spec)
        await _do(plan, spec)

    async def _undo_from_workflow(self, call: StepCall) -> None:
        """A compensation that is a plain async callable (it calls an activity itself)."""
        await workflow.execute_activity(
            undo_step, call, start_to_close_timeout=timedelta(seconds=10)
        )


@workflow.defn
class NestedTripWorkflow:
    """An outer saga (the first step) around an inner saga (the other steps)."""

    @workflow.run
    async def run(self, plan: TripPlan) -> None:
        first, *rest = plan.steps
        async with _saga(plan) as outer:
            _register_undo(outer, plan, first)
            await _do(plan, first)
            async with _saga(plan) as inner:
                for spec in rest:
                    _register_undo(inner, plan, spec)
                    await _do(plan, spec)


@workflow.defn
class EvictedTripWorkflow:
    """Steps with an undo that records from workflow code; waits for ``go`` half-way.

    Run with ``max_cached_workflows=0``, the worker evicts the run after every
    workflow task: the saga sees the eviction's cancellation each time, while
    awaiting an activity and while awaiting the signal, and must not compensate.
    """

    def __init__(self) -> None:
        self._go = False

    @workflow.signal
    def go(self) -> None:
        """Let the second half run."""
        self._go = True

    @workflow.run
    async def run(self, plan: TripPlan) -> list[str]:
        first, second = plan.steps
        async with Saga() as saga:
            saga.add(self._undo, plan, first.name)
            await _do(plan, first)
            saga.add(self._undo, plan, second.name)
            await workflow.wait_condition(lambda: self._go)
            await _do(plan, second)
        return [first.name, second.name]

    async def _undo(self, plan: TripPlan, name: str) -> None:
        # A side effect straight from workflow code, only to see whether this ever runs.
        with workflow.unsafe.sandbox_unrestricted():
            record(plan.ledger, "undo-in-workflow", name)


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


@workflow.defn(name="FixableTrip")
class BuggyTripWorkflow:
    """Version 1 of ``FixableTrip``: a bug (a ``KeyError``) right after the first step."""

    @workflow.run
    async def run(self, plan: TripPlan) -> list[str]:
        prices: dict[str, int] = {}
        async with Saga() as saga:
            for spec in plan.steps:
                _register_undo(saga, plan, spec)
                await _do(plan, spec)
                prices[spec.name] += 1  # the bug: KeyError, the dict was never filled
        return [spec.name for spec in plan.steps]


@workflow.defn(name="FixableTrip")
class FixedTripWorkflow:
    """Version 2 of ``FixableTrip``, deployed to finish the runs that version 1 left stuck."""

    @workflow.run
    async def run(self, plan: TripPlan) -> list[str]:
        prices: dict[str, int] = {}
        async with Saga() as saga:
            for spec in plan.steps:
                _register_undo(saga, plan, spec)
                await _do(plan, spec)
                prices[spec.name] = prices.get(spec.name, 0) + 1  # the fix
        return [spec.name for spec in plan.steps]


WORKFLOWS = [TripWorkflow, NestedTripWorkflow, EvictedTripWorkflow, NaiveShieldWorkflow]
"""Every workflow the saga tests run (except the two versions of ``FixableTrip``)."""


@workflow.defn
class WaitsForCancel:
    """Waits until it is cancelled (for the tests in which the server goes away)."""

    @workflow.run
    async def run(self) -> None:
        await workflow.wait_condition(lambda: False)
