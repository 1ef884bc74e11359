"""Lesson 08: compensating actions, told with a breakfast of a bowl, cereal and milk.

- :class:`BreakfastWorkflow` is the right way: each undo is registered *before*
  its step, the undos tolerate a step that may not have happened
  (``put_bowl_away_if_present``), and a :class:`~sagakit.Saga` runs them
  last-to-first (or all at once with ``parallel_compensation``). It can pause
  before the milk, so that the lesson can let someone else use the kitchen in
  between.
- :class:`NaiveBreakfastWorkflow` registers each undo *after* its step: a step
  that fails after its effect (a lost reply, a timeout) leaves its effect behind.
- :class:`FallThroughBreakfastWorkflow` ports the parallel ``compensate()`` of the
  source article's TypeScript sample, bug included: with the parallel flag it
  starts every undo without waiting for them, then runs them all again one by one.
- :class:`TeaKitchen` and :func:`check_tea_saga` are the exercise: a tiny
  in-memory kitchen in which a learner writes a saga in plain asyncio, and a
  check that tries every failure on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.common import RetryPolicy, WorkflowIDConflictPolicy
from temporalio.exceptions import ActivityError, FailureError

from sagakit import Fault, Saga, SagakitError
from sagakit.history import ActivitySpan

# Helpers, not workflow code: the sandbox takes them from the worker's own imports instead of
# importing them afresh for every workflow run.
with workflow.unsafe.imports_passed_through():
    from sagakit.course.lessons._stage import StageNotReached, wait_for_stage
    from sagakit.course.services.activities import BreakfastActivities, BreakfastRequest
    from sagakit.course.services.breakfast import BreakfastState

__all__ = [
    "BREAKFAST_STEPS",
    "BreakfastInput",
    "BreakfastRun",
    "BreakfastWorkflow",
    "FallThroughBreakfastWorkflow",
    "NaiveBreakfastWorkflow",
    "NothingToUndo",
    "StageNotReached",
    "TeaCheck",
    "TeaKitchen",
    "TEA_STEPS",
    "TeaStepFailed",
    "check_tea_saga",
    "failure_summary",
    "run_breakfast",
    "undo_phase_seconds",
    "wait_for_stage",
]

BREAKFAST_STEPS: tuple[str, ...] = ("get_bowl", "add_cereal", "add_milk")
"""The forward steps (activity names), in the order a breakfast runs them."""


@dataclass(frozen=True)
class BreakfastInput:
    """Which breakfast to make, and how the workflow behaves."""

    breakfast_id: str
    """Which breakfast; also the idempotency key sent to the kitchen."""
    parallel_compensation: bool = False
    """Run the undos all at once instead of last-to-first."""
    step_attempts: int = 3
    """Attempts per step before the workflow gives up on it and compensates."""
    retry_interval_s: float = 0.2
    """First wait between attempts of a step or an undo, in seconds (doubling, at most 1 s)."""
    pause_before_milk: bool = False
    """Wait for the ``resume`` signal after the cereal and before the milk."""


def _retry(breakfast: BreakfastInput, attempts: int) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=breakfast.retry_interval_s),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(seconds=1),
        maximum_attempts=attempts,
    )


def _request(breakfast: BreakfastInput) -> BreakfastRequest:
    return BreakfastRequest(breakfast.breakfast_id, idempotency_key=breakfast.breakfast_id)


async def _step(
    step: Callable[[BreakfastActivities, BreakfastRequest], BreakfastState],
    breakfast: BreakfastInput,
) -> BreakfastState:
    """Run one forward step as an activity, with the breakfast's retry policy."""
    return await workflow.execute_activity_method(
        step,
        _request(breakfast),
        start_to_close_timeout=timedelta(seconds=5),
        retry_policy=_retry(breakfast, breakfast.step_attempts),
    )


def _undo_options(breakfast: BreakfastInput) -> dict[str, Any]:
    """Activity options for the undos: short timeout, patient retries."""
    return {
        "start_to_close_timeout": timedelta(seconds=5),
        "retry_policy": _retry(breakfast, 10),
    }


@workflow.defn
class NaiveBreakfastWorkflow:
    """The ordering trap: each undo is registered only AFTER its step has succeeded."""

    @workflow.run
    async def run(self, breakfast: BreakfastInput) -> str:
        """Get a bowl, add cereal, add milk; undo on failure, if the undo was registered."""
        request, undo = _request(breakfast), _undo_options(breakfast)
        async with Saga() as saga:
            await _step(BreakfastActivities.get_bowl, breakfast)
            saga.add(BreakfastActivities.put_bowl_away_if_present, request, **undo)  # too late
            await _step(BreakfastActivities.add_cereal, breakfast)
            saga.add(BreakfastActivities.put_cereal_back_if_present, request, **undo)  # too late
            await _step(BreakfastActivities.add_milk, breakfast)
        return f"breakfast {breakfast.breakfast_id} served"


@workflow.defn
class BreakfastWorkflow:
    """The fix: register each undo BEFORE its step, with undos that tolerate "not done"."""

    def __init__(self) -> None:
        self._stage = "starting"
        self._resume = False

    @workflow.run
    async def run(self, breakfast: BreakfastInput) -> str:
        """Get a bowl, add cereal, add milk; on failure undo what may have been done."""
        request, undo = _request(breakfast), _undo_options(breakfast)
        async with Saga(parallel=breakfast.parallel_compensation) as saga:
            saga.add(BreakfastActivities.put_bowl_away_if_present, request, **undo)
            self._stage = "getting a bowl"
            await _step(BreakfastActivities.get_bowl, breakfast)
            saga.add(BreakfastActivities.put_cereal_back_if_present, request, **undo)
            self._stage = "adding cereal"
            await _step(BreakfastActivities.add_cereal, breakfast)
            if breakfast.pause_before_milk:
                self._stage = "paused before the milk"
                await workflow.wait_condition(lambda: self._resume)
            self._stage = "adding milk"  # milk cannot go back: no undo to register
            await _step(BreakfastActivities.add_milk, breakfast)
        self._stage = "served"
        return f"breakfast {breakfast.breakfast_id} served"

    @workflow.signal
    def resume(self) -> None:
        """Let a breakfast that paused before the milk go on."""
        self._resume = True

    @workflow.query
    def stage(self) -> str:
        """What the workflow is doing now, e.g. ``"paused before the milk"``."""
        return self._stage


@workflow.defn
class FallThroughBreakfastWorkflow:
    """A port of the source article's TypeScript ``compensate()``, bug included (do not copy)."""

    def __init__(self) -> None:
        self._fired: list[asyncio.Task[None]] = []

    @workflow.run
    async def run(self, breakfast: BreakfastInput) -> str:
        """Make breakfast; on failure compensate the way the article's sample does."""
        request = _request(breakfast)
        undos: list[Callable[[BreakfastActivities, BreakfastRequest], BreakfastState]] = []
        try:
            undos.insert(0, BreakfastActivities.put_bowl_away_if_present)  # like unshift()
            await _step(BreakfastActivities.get_bowl, breakfast)
            undos.insert(0, BreakfastActivities.put_cereal_back_if_present)
            await _step(BreakfastActivities.add_cereal, breakfast)
            await _step(BreakfastActivities.add_milk, breakfast)
        except ActivityError:
            await self._compensate(undos, request, breakfast.parallel_compensation)
            raise
        return f"breakfast {breakfast.breakfast_id} served"

    async def _compensate(
        self,
        undos: Sequence[Callable[[BreakfastActivities, BreakfastRequest], BreakfastState]],
        request: BreakfastRequest,
        in_parallel: bool,
    ) -> None:
        if in_parallel:
            # BUG (as in the article): the undos are started but nobody waits for them...
            self._fired = [asyncio.create_task(self._undo(undo, request)) for undo in undos]
        # ...and with no `return` or `else`, the sequential loop runs them all again.
        for undo in undos:
            await self._undo(undo, request)

    async def _undo(
        self,
        undo: Callable[[BreakfastActivities, BreakfastRequest], BreakfastState],
        request: BreakfastRequest,
    ) -> None:
        try:
            await workflow.execute_activity_method(
                undo, request, start_to_close_timeout=timedelta(seconds=5)
            )
        except ActivityError as err:
            workflow.logger.warning("failed to compensate: %s", err)


# --- running a breakfast from a notebook ---------------------------------------------------------


@dataclass(frozen=True)
class BreakfastRun:
    """How one breakfast workflow ended."""

    outcome: str
    """``"served"``, or ``"failed: <step>: <why>"``."""
    handle: WorkflowHandle[Any, Any] = field(repr=False)
    """The workflow's handle (for its History and Web UI link)."""


def failure_summary(err: BaseException) -> str:
    """Say in one line which step failed and why, from a workflow's failure.

    Follows the chain of causes to the deepest Temporal error and names the
    activity it came from, e.g. ``"add_milk: Out of milk for breakfast b1: ..."``.
    """
    step: str | None = None
    why = str(err)
    current: BaseException | None = err
    while current is not None:
        if isinstance(current, ActivityError):
            step = current.activity_type
        if isinstance(current, FailureError):
            why = current.message
        current = current.__cause__
    return f"{step}: {why}" if step else why


async def run_breakfast(
    client: Client,
    workflow_class: type,
    breakfast: BreakfastInput,
    *,
    task_queue: str,
    workflow_id: str | None = None,
) -> BreakfastRun:
    """Execute a breakfast workflow (a worker must poll ``task_queue``) and report its end.

    Args:
        client: A connected Temporal client.
        workflow_class: One of this module's workflow classes.
        breakfast: The workflow's input.
        task_queue: Where the worker polls.
        workflow_id: The workflow id; by default ``"lesson-08-<breakfast id>"``.

    Returns:
        ``served`` or ``failed: ...`` and the workflow's handle; a failure is not raised.
    """
    handle = await client.start_workflow(
        workflow_class.run,  # type: ignore[attr-defined]
        breakfast,
        id=workflow_id or f"lesson-08-{breakfast.breakfast_id}",
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
    )
    try:
        await handle.result()
    except WorkflowFailureError as err:
        return BreakfastRun(f"failed: {failure_summary(err)}", handle)
    return BreakfastRun("served", handle)


def undo_phase_seconds(spans: Sequence[ActivitySpan]) -> float:
    """Seconds from the first compensation being scheduled until the last one closed.

    Returns 0.0 when no compensation ran.
    """
    undos = [span for span in spans if span.is_compensation and span.end is not None]
    if not undos:
        return 0.0
    return max(span.end for span in undos if span.end is not None) - min(s.start for s in undos)


# --- the exercise: a tea saga in plain asyncio ---------------------------------------------------


class TeaStepFailed(SagakitError):
    """A step of the tea kitchen failed (on purpose: the check injects it)."""


class NothingToUndo(SagakitError):
    """A strict undo was asked to undo something that is not there."""


TEA_STEPS: tuple[str, ...] = ("get_cup", "add_teabag", "pour_water")
"""The tea kitchen's forward steps, in order."""


class TeaKitchen:
    """A kitchen in memory: a cup, a teabag and hot water, with one fault on demand.

    The steps are ``async`` methods. ``put_cup_away`` and ``take_teabag_out`` are
    strict: they raise :class:`NothingToUndo` when there is nothing to undo.
    Putting the cup away throws away whatever is still in it.

    Args:
        fault_at: The step (``"get_cup"``, ``"add_teabag"`` or ``"pour_water"``) that fails.
        fault: ``Fault.FAIL_BEFORE`` (nothing happens) or ``Fault.FAIL_AFTER`` (the step's
            effect happens, then it fails, like a lost reply).
    """

    def __init__(self, fault_at: str | None = None, fault: Fault = Fault.FAIL_AFTER) -> None:
        self.fault_at = fault_at
        self.fault = fault
        self.cups_out = 0
        """Cups out on the counter."""
        self.teabags_in_cup = 0
        """Teabags in the cup."""
        self.water_in_cup = False
        """Whether hot water is in the cup."""
        self.thrown_away: list[str] = []
        """What went in the bin because the cup was put away with it inside."""
        self.tried: list[str] = []
        """Every step asked for, in order (failed ones too)."""

    def _act(self, step: str, effect: Callable[[], None]) -> None:
        self.tried.append(step)
        failing = step == self.fault_at
        if failing and self.fault is Fault.FAIL_BEFORE:
            raise TeaStepFailed(f"{step} failed before doing anything")
        effect()
        if failing:
            raise TeaStepFailed(f"{step} did its work, then failed (the reply was lost)")

    async def get_cup(self) -> None:
        """Take a cup out of the cupboard."""

        def effect() -> None:
            self.cups_out += 1

        self._act("get_cup", effect)

    async def add_teabag(self) -> None:
        """Put a teabag in the cup."""

        def effect() -> None:
            self.teabags_in_cup += 1

        self._act("add_teabag", effect)

    async def pour_water(self) -> None:
        """Pour hot water on the teabag (the last step; it cannot be undone)."""

        def effect() -> None:
            self.water_in_cup = True

        self._act("pour_water", effect)

    async def take_teabag_out(self) -> None:
        """Take the teabag out of the cup and put it back in the box (strict)."""
        if self.teabags_in_cup == 0:
            raise NothingToUndo(
                "take_teabag_out: there is no teabag in the cup. Check first, and take it "
                "out only if present."
            )
        self.teabags_in_cup = 0

    async def put_cup_away(self) -> None:
        """Empty the cup into the bin and put it back in the cupboard (strict)."""
        if self.cups_out == 0:
            raise NothingToUndo(
                "put_cup_away: no cup is out. Check first, and put it away only if present."
            )
        if self.teabags_in_cup:
            self.thrown_away.append("teabag")
        if self.water_in_cup:
            self.thrown_away.append("water")
        self.cups_out = 0
        self.teabags_in_cup = 0
        self.water_in_cup = False

    @property
    def tea_served(self) -> bool:
        """One cup with a teabag and water: tea is ready."""
        return self.cups_out == 1 and self.teabags_in_cup == 1 and self.water_in_cup

    @property
    def nothing_out(self) -> bool:
        """No cup on the counter."""
        return self.cups_out == 0


@dataclass(frozen=True)
class TeaCheck:
    """What :func:`check_tea_saga` found."""

    problems: tuple[str, ...]
    """Each problem in plain words; empty when the saga is right."""
    scenarios: int
    """How many scenarios were tried."""
    not_done: bool = False
    """True when ``make_tea`` did nothing at all: the exercise is not done yet."""

    @property
    def ok(self) -> bool:
        """True when the saga was written and no scenario found a problem."""
        return not self.problems and not self.not_done

    def __str__(self) -> str:
        if self.not_done:
            return (
                "○ Not done yet: write make_tea (a Saga that gets a cup, adds a teabag and pours "
                "water, with an undo for each step that has one), then run this check again."
            )
        if self.ok:
            return f"✓ your tea saga is right in all {self.scenarios} scenarios"
        lines = [f"✗ {len(self.problems)} problem(s) in {self.scenarios} scenarios:"]
        lines.extend(f"  - {problem}" for problem in self.problems)
        return "\n".join(lines)


async def check_tea_saga(make_tea: Callable[[TeaKitchen], Awaitable[None]]) -> TeaCheck:
    """Run ``make_tea`` with no fault, then with every step failing before and after its effect.

    Expected: with no fault, tea is served; with a fault, ``make_tea`` raises,
    no cup is left out, no undo fails, and the teabag goes back in the box
    instead of the bin (undos run last-to-first).

    Args:
        make_tea: ``async def make_tea(kitchen: TeaKitchen) -> None``.

    Returns:
        The problems found, in plain words; ``not_done`` when ``make_tea`` asked the kitchen
        for nothing with no fault (the starter).
    """
    problems: list[str] = []
    scenarios: list[tuple[str | None, Fault]] = [(None, Fault.OK)]
    scenarios += [
        (step, fault) for step in TEA_STEPS for fault in (Fault.FAIL_BEFORE, Fault.FAIL_AFTER)
    ]
    for step, fault in scenarios:
        kitchen = TeaKitchen(step, fault)
        where = "with no fault" if step is None else f"when {step} fails ({fault.name})"
        try:
            await make_tea(kitchen)
        except NothingToUndo as err:
            problems.append(f"{where}: an undo found nothing to undo ({err})")
            continue
        except ExceptionGroup as group:  # CompensationError: an undo failed
            problems.append(f"{where}: an undo failed: {'; '.join(map(str, group.exceptions))}")
            continue
        except TeaStepFailed:
            if step is None:
                problems.append(f"{where}: a step failed although none should")
                continue
        else:
            if step is None and not kitchen.tried:
                return TeaCheck((), len(scenarios), not_done=True)
            if step is not None:
                problems.append(
                    f"{where}: make_tea returned normally; let the error out of the saga "
                    "(the `async with Saga()` block re-raises it)"
                )
                continue
            if not kitchen.tea_served:
                problems.append(f"{where}: no tea was served; do all three steps")
            continue
        if not kitchen.nothing_out:
            problems.append(
                f"{where}: a cup was left on the counter; register its undo BEFORE the step"
            )
        elif "teabag" in kitchen.thrown_away:
            problems.append(
                f"{where}: the teabag went in the bin; take it out before the cup is put away "
                "(undos run last-to-first, so register the teabag's undo after the cup's)"
            )
    return TeaCheck(tuple(problems), len(scenarios))
