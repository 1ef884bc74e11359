"""A saga for Temporal workflows: register an undo before each step, run the undos on failure.

Register the compensation *before* the step it undoes. A step can fail after it
has already done its work (a timeout, a lost reply, a cancellation), so its undo
must already be on the list::

    from datetime import timedelta

    from temporalio import workflow

    from sagakit import Saga


    @workflow.defn
    class BookTrip:
        @workflow.run
        async def run(self, trip: Trip) -> str:
            async with Saga() as saga:
                saga.add(cancel_hotel, trip)
                await workflow.execute_activity(
                    book_hotel, trip, start_to_close_timeout=timedelta(seconds=10)
                )
                saga.add(cancel_flight, trip)
                await workflow.execute_activity(
                    book_flight, trip, start_to_close_timeout=timedelta(seconds=10)
                )
            return "booked"

A compensation is either a Temporal activity (run with ``workflow.execute_activity``,
30 s start-to-close timeout and :data:`DEFAULT_COMPENSATION_RETRY_POLICY` unless you
pass other options to :meth:`Saga.add`; a ``functools.partial`` of an activity is
scheduled as that activity with the bound arguments) or any ``async`` callable,
awaited with the arguments you registered.

Which errors compensate: failures, not bugs.
    In a workflow, an error that leaves the ``async with`` block compensates only if
    it would fail the *workflow*: a Temporal failure
    (``temporalio.exceptions.FailureError`` and its subclasses: ``ActivityError``,
    ``ChildWorkflowError``, ``ApplicationError``, ``TimeoutError`` …), an
    ``asyncio.TimeoutError``, or a type listed in the worker's
    ``workflow_failure_exception_types`` or the workflow's ``failure_exception_types``
    (the saga asks ``workflow.is_failure_exception``). A cancellation
    (``asyncio.CancelledError``) always compensates. Any other exception, say a
    ``KeyError`` from a bug, propagates untouched and nothing is scheduled: it fails
    the workflow *task*, Temporal retries the task until you deploy a fixed worker,
    and the fixed worker replays the History and goes on. Had the saga compensated
    first, the undos would be in the History, the fixed code would not schedule
    them, and the run could never finish (a nondeterminism error on every replay).
    Pass ``Saga(compensate_on=(FailureError, MyError))`` to choose the types
    yourself. Outside a workflow (plain asyncio, unit tests) there is no task to
    retry, so by default every ``Exception`` compensates.

What never compensates:
    ``workflow.continue_as_new()`` raises ``ContinueAsNewError`` (a ``BaseException``):
    the steps are handed over to the next run, so the saga lets it through. The
    same goes for every other ``BaseException`` that is not a cancellation
    (``GeneratorExit``, ``KeyboardInterrupt``, and temporalio's private eviction
    error). When a worker evicts a workflow from its cache (after a task failure, when
    the cache is full, at shutdown, or after the run closed on the server), temporalio
    cancels every task of the workflow: an ``await`` on an activity or timer raises its
    private eviction error, a bare ``await`` raises ``asyncio.CancelledError``. From
    then on it refuses workflow operations; the saga makes one (a no-op) before it
    starts its undos, so an eviction runs none of them, and the run goes on from its
    History on the next worker (a test pins this with ``max_cached_workflows=0``).

How the workflow ends, by what happened in the ``async with`` block:

- Nothing went wrong: nothing is undone and the workflow goes on.
- An error (or a cancellation) left the block and every compensation succeeded:
  the original error is re-raised, so the workflow ends FAILED (CANCELED if the
  error was a cancellation), never "completed".
- The workflow was cancelled while the compensations ran and all of them
  succeeded: ``asyncio.CancelledError`` once the last one has finished (CANCELED).
- A compensation still failed after its retry policy: the saga waits for an
  operator (below), then ends as above. With ``wait_for_operator=False`` (and
  always outside a workflow) it raises :class:`CompensationError` instead, chained
  with ``raise ... from`` to the original error (FAILED, even after a cancellation;
  the cause then reads as a Temporal ``CancelledError``, "the workflow was cancelled", or
  as the cancelled activity's ``ActivityError`` when the cancel came during a step).

:class:`CompensationError` is a Temporal ``ApplicationError`` (type
``"CompensationError"``, not retryable), so it fails the workflow instead of
failing the workflow task forever. It is also an ``ExceptionGroup`` of the
compensation failures and a :class:`~sagakit._errors.SagakitError`.

A recoverable rollback: waiting for an operator.
    Garcia-Molina and Salem's sagas (1987) assume that a compensating transaction
    eventually succeeds: it is retried until it does, and a person steps in if
    it cannot. Temporal's own default retry policy is unlimited for the same
    reason. A saga that *ends* half-undone leaves the repair to someone who must
    notice the FAILED run, work out which undos ran, and redo the rest by hand:
    the workflow can no longer help. So by default (``wait_for_operator=True``) a
    compensation that still fails after its retry policy (about a minute with
    :data:`DEFAULT_COMPENSATION_RETRY_POLICY`) makes the saga *wait*, visibly:

    - the ``"saga_progress"`` query reports :attr:`SagaState.NEEDS_ATTENTION`, and
      each failed compensation is :attr:`CompensationStatus.FAILED` with its last error;
    - the Web UI shows it in the workflow's *current details*
      (``workflow.set_current_details``) and in its memo under ``"saga"``
      (``workflow.upsert_memo``), which ``client.list_workflows()`` returns too;
    - the worker logs an error.

    An operator fixes the cause and sends the workflow Update ``"saga_resolve"``
    with a :class:`SagaResolution`: ``SagaResolution.retry()`` runs the failed
    compensations again, ``SagaResolution.skip(step, reason)`` gives one up (the
    operator repaired that step by hand, or it needs no undo). A validator rejects
    an unknown step, a step that has not failed, a skip without a reason, and any
    Update while nothing waits, so a rejected request never reaches the History.
    An accepted one is recorded there with its reason, and logged; the Update
    returns the saga's :class:`SagaProgress` once the decision has been carried
    out. When nothing has failed any more, the workflow ends as if every undo had
    succeeded: FAILED with the original error, or CANCELED. A skipped compensation
    stays visible in the final ``saga_progress`` as
    :attr:`CompensationStatus.SKIPPED` with its ``skip_reason`` and last ``error``.
    A cancellation while the saga waits does not end the wait (it is raised
    afterwards, as during the compensations). Terminate the workflow to give up
    without a decision.

Cancellation while compensating cannot cut the undo short: the undos run in
their own task, and the saga waits on ``asyncio.shield(task)`` in a loop until
that task is done, swallowing each ``CancelledError`` and raising it again
afterwards. (A single ``await asyncio.shield(...)`` is not enough: the cancel
ends the workflow and the rest of the undo never runs.)

Progress can be watched from outside: the sagas of a workflow answer the workflow
query ``"saga_progress"`` (see :class:`SagaProgress`)::

    progress = await handle.query("saga_progress", result_type=SagaProgress)
    await handle.execute_update("saga_resolve", SagaResolution.retry(), result_type=SagaProgress)

With several sagas in one workflow (nested, or one after the other), the answer
describes the one acting now (waiting for an operator, else compensating, else
running, else the latest) and lists all of them in :attr:`SagaProgress.sagas`;
the Update goes to the most recently created saga that waits.

The saga only uses asyncio and workflow APIs, so it is deterministic and safe in
the workflow sandbox. It also runs in plain asyncio (with ``async`` callables),
which is handy in unit tests.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from types import TracebackType
from typing import Any, Literal, Self

from temporalio import activity, workflow
from temporalio.api.common.v1 import RetryPolicy as RetryPolicyProto
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError, is_cancelled_exception
from temporalio.exceptions import CancelledError as TemporalCancelledError
from temporalio.workflow import ActivityCancellationType

from sagakit._errors import ConfigurationError, SagakitError

__all__ = [
    "DEFAULT_COMPENSATION_RETRY_POLICY",
    "DEFAULT_COMPENSATION_TIMEOUT",
    "CompensationError",
    "CompensationProgress",
    "CompensationStatus",
    "Saga",
    "SagaProgress",
    "SagaResolution",
    "SagaState",
    "SagaUsageError",
]

DEFAULT_COMPENSATION_TIMEOUT = timedelta(seconds=30)
"""Start-to-close timeout of a compensation activity unless :meth:`Saga.add` says otherwise."""

DEFAULT_COMPENSATION_RETRY_POLICY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=10,
)
"""Retry policy of a compensation activity unless :meth:`Saga.add` says otherwise.

Undos must be retried generously (and so must be idempotent), but not blindly
forever: after about a minute of failures the saga asks an operator (see the
module docstring), or raises :class:`CompensationError` if it must not wait.
"""

_MEMO_KEY = "saga"


class SagaUsageError(ConfigurationError):
    """A saga was built or used the wrong way (raised at once, not when compensating).

    Also the reason an operator's ``saga_resolve`` Update is rejected.
    """


class CompensationError(ExceptionGroup[Exception], ApplicationError, SagakitError):
    """One or more compensations failed, so the saga is only partly undone.

    Its ``exceptions`` are the failures of the compensations, in the order they
    ran; its ``__cause__`` is the error that started the compensation (a
    cancellation is given as a Temporal ``CancelledError`` that says so). Because
    it is a Temporal ``ApplicationError`` (type ``"CompensationError"``, not
    retryable), raising it fails the workflow; the Temporal failure carries the
    original error as its cause and one line per failed compensation as details.
    Catch parts of it with ``except*``.
    """

    def __new__(cls, message: str, exceptions: Sequence[Exception]) -> Self:
        """Create the group (``ExceptionGroup`` checks its arguments here)."""
        return super().__new__(cls, message, exceptions)

    def __init__(self, message: str, exceptions: Sequence[Exception]) -> None:
        ApplicationError.__init__(
            self,
            message,
            *[_describe(err) for err in exceptions],
            type="CompensationError",
            non_retryable=True,
        )
        # ApplicationError set ``args`` to (message,); ExceptionGroup needs both.
        self.args = (message, tuple(exceptions))

    def derive(self, excs: Sequence[Exception]) -> CompensationError:  # type: ignore[override]
        """Build a group of a subset of the failures (used by ``except*`` and ``split``)."""
        return CompensationError(self.message, excs)


class SagaState(StrEnum):
    """Where a saga is in its life."""

    RUNNING = "running"
    """Steps are being done; compensations are only registered."""
    COMPENSATING = "compensating"
    """Something failed and the compensations are running."""
    NEEDS_ATTENTION = "needs_attention"
    """A compensation failed after its retries; the saga waits for the ``saga_resolve`` Update."""
    COMPENSATED = "compensated"
    """Every compensation succeeded, or failed and was skipped by an operator."""
    FAILED = "failed"
    """At least one compensation failed and nobody could be asked: the saga is partly undone."""
    COMPLETED = "completed"
    """The ``async with`` block ended without an error; nothing was undone."""


class CompensationStatus(StrEnum):
    """Outcome of one compensation."""

    PENDING = "pending"
    """Waiting for its turn."""
    RUNNING = "running"
    """Started and not finished yet."""
    SUCCEEDED = "succeeded"
    """Finished without an error."""
    FAILED = "failed"
    """Finished with an error (after the activity's retries, if any)."""
    SKIPPED = "skipped"
    """Given up: an operator skipped it after it failed (see ``skip_reason``), or it never
    started because an earlier one failed and the saga has ``stop_on_error`` and cannot wait."""


@dataclass(frozen=True)
class CompensationProgress:
    """One compensation as the saga sees it right now."""

    step: int
    """Position (0-based) of the step it undoes, in the order the steps were registered."""
    name: str
    """Activity type name, or the qualified name of the ``async`` callable."""
    status: CompensationStatus
    """Pending, running, succeeded, failed or skipped."""
    error: str | None = None
    """For a failed (or failed, then skipped) compensation, its last error and their causes."""
    skip_reason: str | None = None
    """For a compensation an operator skipped, the reason they gave."""


@dataclass(frozen=True)
class SagaProgress:
    """A snapshot of a saga that a workflow query can return.

    It contains only dataclasses, tuples, strings and string enums, so Temporal's
    default data converter sends it as JSON and reads it back as a ``SagaProgress``.
    """

    state: SagaState
    """Running, compensating, needs attention, compensated, failed or completed."""
    steps: tuple[str, ...]
    """Names of the registered compensations, in registration (step) order."""
    compensations: tuple[CompensationProgress, ...] = ()
    """The compensations in the order they run (empty until compensation starts)."""
    sagas: tuple[SagaProgress, ...] = ()
    """Every saga of the workflow that answers this query, in the order they were created
    (an outer saga before the inner one), when there are two or more; empty otherwise.
    The fields above then describe the one acting now: the latest that waits for an
    operator, else the latest compensating, else the latest running, else the latest."""


@dataclass(frozen=True)
class SagaResolution:
    """An operator's decision for a saga that waits (argument of the ``saga_resolve`` Update).

    Build it with :meth:`retry` or :meth:`skip`::

        await handle.execute_update(
            "saga_resolve", SagaResolution.skip(1, "refunded by phone, ticket 4711"),
            result_type=SagaProgress,
        )
    """

    action: Literal["retry", "skip"]
    """``"retry"``: run the failed compensations again; ``"skip"``: give one up."""
    step: int | None = None
    """The step (as in :attr:`CompensationProgress.step`) to skip, or to retry alone;
    ``None`` retries every failed compensation."""
    reason: str = ""
    """Why; required for a skip. Recorded in the History with the Update, and logged."""

    @classmethod
    def retry(cls, reason: str = "", *, step: int | None = None) -> SagaResolution:
        """Run the failed compensations (or only ``step``) again, after fixing the cause."""
        return cls("retry", step, reason)

    @classmethod
    def skip(cls, step: int, reason: str) -> SagaResolution:
        """Give up the failed compensation of ``step``, saying why (e.g. repaired by hand)."""
        return cls("skip", step, reason)


@dataclass(eq=False)
class _Compensation:
    """A registered compensation and, once compensation starts, how it is going."""

    step: int
    name: str
    call: Callable[[], Awaitable[object]]
    status: CompensationStatus = CompensationStatus.PENDING
    error: str | None = None
    exception: Exception | None = None
    skip_reason: str | None = None

    def progress(self) -> CompensationProgress:
        return CompensationProgress(self.step, self.name, self.status, self.error, self.skip_reason)

    def label(self) -> str:
        return f"step {self.step} ({self.name})"


_plain_logger = logging.getLogger(__name__)

_ACTIVITY_OPTIONS = frozenset(
    name
    for name, parameter in inspect.signature(workflow.execute_activity).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "args"
)
_TIMEOUT_OPTIONS = frozenset(name for name in _ACTIVITY_OPTIONS if name.endswith("_timeout"))
_STRING_OPTIONS = frozenset({"task_queue", "activity_id", "summary"})


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    # workflow.logger adds the run's details and stays quiet while replaying.
    return workflow.logger if workflow.in_workflow() else _plain_logger


class Saga:
    """Compensations registered step by step, run in reverse if the saga fails.

    Use it as ``async with Saga() as saga:`` inside a workflow, or call
    :meth:`compensate` yourself. See the module docstring for an example, for
    which errors compensate and for how the workflow ends.
    """

    def __init__(
        self,
        *,
        parallel: bool = False,
        stop_on_error: bool = False,
        wait_for_operator: bool = True,
        compensate_on: Sequence[type[Exception]] | None = None,
        query: str | None = "saga_progress",
        update: str | None = "saga_resolve",
    ) -> None:
        """Create an empty saga.

        Args:
            parallel: Start every compensation at once (``asyncio.gather`` of
                tasks) instead of one after the other in reverse order. Only for
                undos that do not depend on each other.
            stop_on_error: Stop at the first compensation that fails (like Java's
                ``Saga`` without ``continueWithError``): the saga waits for an
                operator there, and goes on with the rest once that step is
                retried or skipped; a saga that cannot wait skips the rest. By
                default every compensation runs and the failures are collected.
                Cannot be combined with ``parallel``, where all undos start at once.
            wait_for_operator: When a compensation still fails after its retries,
                wait in :attr:`SagaState.NEEDS_ATTENTION` for the ``update``
                (see the module docstring for why this is the default). ``False``
                raises :class:`CompensationError` at once. Outside a workflow
                nobody could send the Update, so the saga never waits there.
            compensate_on: The exception types that compensate when they leave the
                ``async with`` block (a cancellation always does). By default, in a
                workflow, exactly those that fail the workflow (Temporal failures
                and the worker's ``workflow_failure_exception_types``); outside a
                workflow every ``Exception``. :meth:`compensate` always compensates.
            query: Name of the workflow query that returns the progress,
                registered when the saga is created inside a workflow; ``None``
                registers nothing. Sagas of one workflow that use the same name
                answer it together (see :attr:`SagaProgress.sagas`).
            update: Name of the workflow Update that takes a :class:`SagaResolution`,
                registered like ``query``; ``None`` registers nothing (then pass
                ``wait_for_operator=False``).

        Raises:
            SagaUsageError: ``parallel`` and ``stop_on_error`` were both set,
                ``query`` or ``update`` is an empty string, the saga should wait
                for an operator without an ``update``, or ``compensate_on`` is not
                a sequence of exception classes.
        """
        if parallel and stop_on_error:
            raise SagaUsageError(
                "Saga(parallel=True, stop_on_error=True) cannot stop early: parallel "
                "compensations all start at once. Choose one of the two options."
            )
        if query is not None and not query:
            raise SagaUsageError(
                "Saga(query='') is not a usable query name: pass a name such as "
                "'saga_progress', or query=None to register no query."
            )
        if update is not None and not update:
            raise SagaUsageError(
                "Saga(update='') is not a usable Update name: pass a name such as "
                "'saga_resolve', or update=None (with wait_for_operator=False)."
            )
        if wait_for_operator and update is None:
            raise SagaUsageError(
                "Saga(update=None) leaves an operator no way to resolve a failed "
                "compensation, so the saga could wait forever. Keep the Update "
                "(update='saga_resolve') or pass wait_for_operator=False."
            )
        self._parallel = parallel
        self._stop_on_error = stop_on_error
        self._wait_for_operator = wait_for_operator
        self._compensate_on = _exception_types(compensate_on)
        self._update = update
        self._state = SagaState.RUNNING
        self._registered: list[_Compensation] = []
        self._plan: list[_Compensation] = []
        # Operator decisions: queued by the Update handler, carried out by the undo task.
        self._inbox: list[tuple[int, SagaResolution]] = []
        self._outcomes: dict[int, str | None] = {}
        self._received = 0
        self._answered = 0
        if workflow.in_workflow() and (query is not None or update is not None):
            _SagaBoard.join(self, query, update)

    @property
    def state(self) -> SagaState:
        """Where the saga is now (the same as ``progress().state``)."""
        return self._state

    def add(self, compensation: Callable[..., Any], *args: Any, **activity_options: Any) -> None:
        """Register the undo of the step that comes next.

        Call it *before* the step, so that a step that fails half-way is undone too.

        Args:
            compensation: A Temporal activity (a function or method decorated with
                ``@activity.defn``, or a ``functools.partial`` of one: it is
                scheduled as the activity, with the partial's arguments first), or
                any ``async`` callable.
            *args: Arguments for the compensation.
            **activity_options: Keyword arguments of ``workflow.execute_activity``
                (``start_to_close_timeout``, ``retry_policy``, ...), only for
                activities. They replace :data:`DEFAULT_COMPENSATION_TIMEOUT` and
                :data:`DEFAULT_COMPENSATION_RETRY_POLICY`.

        Raises:
            SagaUsageError: The compensation is not callable, is a plain (sync)
                function that is not an activity, does not accept ``args``, the
                options are unknown or invalid, options were given for a plain
                ``async`` callable, or the saga has already finished.
        """
        if self._state is not SagaState.RUNNING:
            raise SagaUsageError(
                f"Cannot add a compensation to a saga that is {self._state.value}. "
                "Register every compensation before the saga compensates or its block "
                "ends; start a new Saga for new work."
            )
        if inspect.iscoroutine(compensation):
            compensation.close()  # it will never run: do not leave it un-awaited
            raise SagaUsageError(
                "saga.add() got a coroutine, not a function: write "
                "saga.add(undo, arg) instead of saga.add(undo(arg))."
            )
        if not callable(compensation):
            raise SagaUsageError(
                f"saga.add() needs a callable compensation, got {compensation!r}. Pass an "
                "@activity.defn function or an async function, then its arguments."
            )
        if isinstance(compensation, functools.partial):
            inner, bound_args, bound_kwargs = _flatten_partial(compensation)
            if _activity_name(inner) is not None:
                # Calling the partial would run the activity's body inside the workflow:
                # schedule the activity itself, with the partial's arguments.
                args = _positional(inner, (*bound_args, *args), bound_kwargs)
                compensation = inner
        name = _activity_name(compensation)
        if name is not None:
            options = _activity_options(name, activity_options)
            if _is_unbound_method(compensation):
                # TripActivities.cancel_hotel: the worker supplies the instance.
                _check_arguments(name, compensation, (None, *args), {})
                call = functools.partial(
                    workflow.execute_activity_method, compensation, args=list(args), **options
                )
            else:
                _check_arguments(name, compensation, args, {})
                call = functools.partial(
                    workflow.execute_activity, compensation, args=list(args), **options
                )
        else:
            name = _callable_name(compensation)
            if not _is_async_callable(compensation):
                raise SagaUsageError(
                    f"Compensation {name} is a plain function, which the saga cannot run "
                    "safely in a workflow. Decorate it with @activity.defn (and register it "
                    "with the worker) or make it an `async def`."
                )
            if activity_options:
                raise SagaUsageError(
                    f"Options {sorted(activity_options)} were given for {name}, which is not "
                    "an activity: activity options only apply to @activity.defn functions. "
                    "Pass keyword arguments of an async function with functools.partial."
                )
            _check_arguments(name, compensation, args, {})
            call = functools.partial(compensation, *args)
        self._registered.append(_Compensation(len(self._registered), name, call))

    def progress(self) -> SagaProgress:
        """A snapshot of this saga (the workflow query adds the workflow's other sagas)."""
        return SagaProgress(
            state=self._state,
            steps=tuple(entry.name for entry in self._registered),
            compensations=tuple(entry.progress() for entry in self._plan),
        )

    async def compensate(self) -> None:
        """Run the registered compensations now (LIFO, or all at once if ``parallel``).

        Idempotent: once compensation has started, another call does nothing. It
        still works after the ``async with`` block ended normally, for undoing a
        finished saga later. Called inside an ``except`` block, the error being
        handled becomes the ``__cause__`` of a :class:`CompensationError`.

        If the workflow is cancelled while the compensations run, they still run
        to the end, and then ``asyncio.CancelledError`` is raised. If one fails
        after its retries, the saga waits for an operator (unless
        ``wait_for_operator=False`` or outside a workflow).

        Raises:
            CompensationError: At least one compensation failed and the saga could not wait.
            asyncio.CancelledError: The workflow was cancelled while compensating.
        """
        await self._compensate(cause=sys.exception())

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        if exc is None:
            if self._state is SagaState.RUNNING:
                self._state = SagaState.COMPLETED
            return False
        if self._compensates_on(exc):
            await self._compensate(cause=exc)
        return False  # let the original error propagate

    def _compensates_on(self, exc: BaseException) -> bool:
        if isinstance(exc, asyncio.CancelledError):
            return True
        if not isinstance(exc, Exception):
            # ContinueAsNewError, GeneratorExit, temporalio's eviction: nothing failed.
            return False
        if self._compensate_on is not None:
            return isinstance(exc, self._compensate_on)
        if not workflow.in_workflow() or workflow.is_failure_exception(exc):
            return True
        _logger().warning(
            "The saga does not compensate for %s: %s, which is not a Temporal failure. It "
            "fails the workflow task, which Temporal retries until a fixed worker is "
            "deployed; that worker goes on from the History. To compensate on it, raise "
            "an ApplicationError, or list the type in the worker's "
            "workflow_failure_exception_types or in Saga(compensate_on=...).",
            type(exc).__name__,
            exc,
        )
        return False

    async def _compensate(self, cause: BaseException | None) -> None:
        if self._state not in (SagaState.RUNNING, SagaState.COMPLETED):
            return
        if workflow.in_workflow():
            # While temporalio evicts the run from its cache (cancelling its tasks) it
            # refuses workflow operations with a private BaseException: this no-op one
            # lets that out before any undo can start.
            workflow.set_current_details(workflow.get_current_details())
        run = self._run_plan()
        try:
            task = asyncio.create_task(run, name="saga compensation")
        except BaseException:
            run.close()  # the loop refused the task (eviction): the undos must never run
            raise
        self._state = SagaState.COMPENSATING
        self._plan = list(self._registered) if self._parallel else list(reversed(self._registered))
        cancelled: asyncio.CancelledError | None = None
        while True:
            try:
                await asyncio.shield(task)
                break
            except asyncio.CancelledError as err:
                if task.cancelled():
                    raise  # the compensation itself was cancelled: the workflow is torn down
                cancelled = err  # only we were cancelled: keep waiting, raise it afterwards
        failed = [entry for entry in self._plan if entry.status is CompensationStatus.FAILED]
        if failed:
            # A cancel that reaches the block inside an activity (or child workflow) call
            # arrives as an ActivityError caused by a CancelledError: Temporal's own test.
            was_cancelled = cancelled is not None or (
                cause is not None and is_cancelled_exception(cause)
            )
            error = _compensation_error(self._plan, cancelled=was_cancelled)
            raise error from _readable_cause(cause)
        if cancelled is not None:
            raise cancelled

    async def _run_plan(self) -> None:
        """The compensation task: run the plan, then wait for operators while anything failed."""
        await self._run_pending()
        can_wait = self._wait_for_operator and workflow.in_workflow()
        if can_wait and self._failed():
            await self._wait_for_operators()
        for entry in self._plan:
            if entry.status is CompensationStatus.PENDING:  # stop_on_error, nobody to ask
                entry.status = CompensationStatus.SKIPPED
        self._state = SagaState.FAILED if self._failed() else SagaState.COMPENSATED
        if self._received:
            # Let every Update handler return its answer before the workflow ends.
            await workflow.wait_condition(lambda: self._answered >= self._received)

    async def _run_pending(self) -> None:
        pending = [entry for entry in self._plan if entry.status is CompensationStatus.PENDING]
        if self._parallel:
            tasks = [asyncio.create_task(self._run_one(entry)) for entry in pending]
            await asyncio.gather(*tasks)
            return
        for entry in pending:
            if not await self._run_one(entry) and self._stop_on_error:
                return

    async def _run_one(self, entry: _Compensation) -> bool:
        entry.status = CompensationStatus.RUNNING
        try:
            await entry.call()
        except Exception as err:  # BaseExceptions (eviction, cancel) must propagate
            entry.status = CompensationStatus.FAILED
            entry.error = _describe(err)
            entry.exception = err
            _logger().warning(
                "Compensation %s for step %d failed: %s", entry.name, entry.step, entry.error
            )
            return False
        entry.status = CompensationStatus.SUCCEEDED
        entry.error = None
        entry.exception = None
        return True

    def _failed(self) -> list[_Compensation]:
        return [entry for entry in self._plan if entry.status is CompensationStatus.FAILED]

    async def _wait_for_operators(self) -> None:
        details_before = workflow.get_current_details()
        self._announce()
        while self._failed():
            self._state = SagaState.NEEDS_ATTENTION
            await workflow.wait_condition(lambda: bool(self._inbox))
            ticket, resolution = self._inbox.pop(0)
            problem = self._rejection(resolution)
            if problem is None:
                self._state = SagaState.COMPENSATING
                await self._carry_out(resolution)
                if self._failed():
                    self._announce()
            self._outcomes[ticket] = problem
        # Decisions that arrived after the last one settled everything.
        for ticket, _ in self._inbox:
            self._outcomes[ticket] = "The saga no longer waits: an earlier decision resolved it."
        self._inbox.clear()
        workflow.upsert_memo({_MEMO_KEY: None})
        workflow.set_current_details(details_before)

    def _announce(self) -> None:
        """Make the waiting visible: current details (Web UI), memo, and an error log."""
        failed = self._failed()
        lines = "\n".join(f"- {entry.label()}: {entry.error}" for entry in failed)
        how = (
            f"Fix the cause, then send the Update `{self._update}` with "
            "`SagaResolution.retry()`, or `SagaResolution.skip(step, reason)` for a step "
            "you repaired by hand."
        )
        workflow.set_current_details(
            f"**Saga needs attention**: {len(failed)} compensation(s) failed after their "
            f"retries.\n{lines}\n\n{how}"
        )
        summary = "; ".join(entry.label() for entry in failed)
        workflow.upsert_memo({_MEMO_KEY: f"needs attention: {summary} failed. {how}"})
        _logger().error(
            "Saga needs attention: %d compensation(s) failed after their retries: %s. %s",
            len(failed),
            "; ".join(f"{entry.label()}: {entry.error}" for entry in failed),
            how,
        )

    async def _carry_out(self, resolution: SagaResolution) -> None:
        targets = [
            entry
            for entry in self._failed()
            if resolution.step is None or entry.step == resolution.step
        ]
        if resolution.action == "skip":
            for entry in targets:
                entry.status = CompensationStatus.SKIPPED
                entry.skip_reason = resolution.reason.strip()
            _logger().warning(
                "Operator skipped the compensation of %s: %s",
                targets[0].label(),
                resolution.reason.strip(),
            )
        else:
            for entry in targets:
                entry.status = CompensationStatus.PENDING
            _logger().warning(
                "Operator retries the compensation(s) of %s%s",
                ", ".join(entry.label() for entry in targets),
                f": {resolution.reason.strip()}" if resolution.reason.strip() else "",
            )
        await self._run_pending()  # the retried ones, and with stop_on_error the rest

    def _rejection(self, resolution: object) -> str | None:
        """Why an operator's decision cannot be carried out now, or ``None`` if it can."""
        if not isinstance(resolution, SagaResolution):
            return f"Expected a SagaResolution, got {type(resolution).__name__}."
        if self._state is not SagaState.NEEDS_ATTENTION:
            return (
                f"Nothing is waiting: the saga is {self._state.value}. Send it only while "
                "saga_progress reports needs_attention."
            )
        failed = self._failed()
        listing = ", ".join(entry.label() for entry in failed)
        if resolution.action not in ("retry", "skip"):
            return (
                f"Unknown action {resolution.action!r}: use SagaResolution.retry() or "
                "SagaResolution.skip(step, reason)."
            )
        if resolution.step is None:
            if resolution.action == "skip":
                return f"A skip needs the step to skip: one of the failed {listing}."
            return None
        known = {entry.step: entry for entry in self._plan}
        if resolution.step not in known:
            return (
                f"Unknown step {resolution.step}: the saga has steps 0 to "
                f"{len(self._registered) - 1}; the failed ones are {listing}."
            )
        entry = known[resolution.step]
        if entry.status is not CompensationStatus.FAILED:
            return (
                f"The compensation of {entry.label()} is {entry.status.value}, not failed; "
                f"the failed ones are {listing}."
            )
        if resolution.action == "skip" and not resolution.reason.strip():
            return (
                f"A skip needs a reason, which is recorded in the History: e.g. "
                f"SagaResolution.skip({entry.step}, 'refunded by hand, ticket 4711')."
            )
        return None

    async def _submit(self, resolution: SagaResolution) -> SagaProgress:
        """Queue a decision for the undo task and return the progress once it is carried out."""
        self._received += 1
        ticket = self._received
        self._inbox.append((ticket, resolution))
        try:
            await workflow.wait_condition(lambda: ticket in self._outcomes)
        finally:
            self._answered += 1
        problem = self._outcomes.pop(ticket)
        if problem is not None:
            raise ApplicationError(problem, type="SagaUsageError", non_retryable=True)
        return self.progress()


class _SagaBoard:
    """The sagas of one workflow run that share a query and an Update name.

    It lives only in the workflow's handlers (found again with ``get_query_handler``),
    so it is per run: the module keeps no state.
    """

    def __init__(self) -> None:
        self.sagas: list[Saga] = []

    @staticmethod
    def join(saga: Saga, query: str | None, update: str | None) -> None:
        board: _SagaBoard | None = None
        for handler in (
            workflow.get_query_handler(query) if query is not None else None,
            workflow.get_update_handler(update) if update is not None else None,
        ):
            owner = getattr(handler, "__self__", None)
            if isinstance(owner, _SagaBoard):
                board = owner
                break
        if board is None:
            board = _SagaBoard()
        board.sagas.append(saga)
        if query is not None:
            workflow.set_query_handler(query, board.progress)
        if update is not None:
            workflow.set_update_handler(update, board.resolve, validator=board.validate)

    def progress(self) -> SagaProgress:
        """The answer to the progress query."""
        rank = {
            SagaState.NEEDS_ATTENTION: 3,
            SagaState.COMPENSATING: 2,
            SagaState.RUNNING: 1,
        }
        acting = max(enumerate(self.sagas), key=lambda pair: (rank.get(pair[1].state, 0), pair[0]))[
            1
        ]
        snapshot = acting.progress()
        if len(self.sagas) > 1:
            snapshot = replace(snapshot, sagas=tuple(saga.progress() for saga in self.sagas))
        return snapshot

    def _waiting(self) -> Saga | None:
        waiting = [saga for saga in self.sagas if saga.state is SagaState.NEEDS_ATTENTION]
        return waiting[-1] if waiting else None

    def validate(self, resolution: SagaResolution) -> None:
        """Reject a decision before it enters the History."""
        saga = self._waiting()
        if saga is None:
            states = ", ".join(saga.state.value for saga in self.sagas)
            raise SagaUsageError(
                f"Nothing is waiting: no saga of this workflow needs attention (they are "
                f"{states}). Send it only while saga_progress reports needs_attention."
            )
        problem = saga._rejection(resolution)
        if problem is not None:
            raise SagaUsageError(problem)

    async def resolve(self, resolution: SagaResolution) -> SagaProgress:
        """Carry out an accepted decision; return the saga's progress afterwards."""
        saga = self._waiting()
        if saga is None:  # validators do not run on replay; the History decides
            raise ApplicationError(
                "Nothing is waiting any more.", type="SagaUsageError", non_retryable=True
            )
        return await saga._submit(resolution)


def _compensation_error(plan: list[_Compensation], *, cancelled: bool) -> CompensationError:
    failed = [entry for entry in plan if entry.status is CompensationStatus.FAILED]
    listing = "; ".join(f"{entry.name} (step {entry.step}): {entry.error}" for entry in failed)
    skipped = sum(entry.status is CompensationStatus.SKIPPED for entry in plan)
    extra = f" {skipped} later compensation(s) were skipped (stop_on_error)." if skipped else ""
    why = " after the workflow was cancelled" if cancelled else ""
    return CompensationError(
        f"{len(failed)} of {len(plan)} compensations failed{why}, so the saga is only partly "
        f"undone: {listing}.{extra} Fix the cause, then repair the affected steps by hand "
        "or run their compensations again (they must be idempotent).",
        [entry.exception for entry in failed if entry.exception is not None],
    )


def _readable_cause(cause: BaseException | None) -> BaseException | None:
    """The cause to chain a CompensationError to, as Temporal will show it."""
    if isinstance(cause, asyncio.CancelledError):
        # Chained as is, it would reach the client as ApplicationError(type="CancelledError")
        # with an empty message.
        return TemporalCancelledError(
            "The workflow was cancelled, so the saga compensated (asyncio.CancelledError)."
        )
    return cause


def _describe(err: BaseException) -> str:
    """``Type: message`` of an error and of each of its causes."""
    parts: list[str] = []
    current: BaseException | None = err
    while current is not None and len(parts) < 5:
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__
    return " <- ".join(parts)


def _exception_types(given: Sequence[type[Exception]] | None) -> tuple[type[Exception], ...] | None:
    if given is None:
        return None
    types = tuple(given) if isinstance(given, Sequence) and not isinstance(given, str) else ()
    if not types or not all(isinstance(t, type) and issubclass(t, Exception) for t in types):
        raise SagaUsageError(
            f"Saga(compensate_on={given!r}) must be a non-empty tuple of Exception classes, "
            "e.g. compensate_on=(FailureError, MyBusinessError); a cancellation always "
            "compensates, and other BaseExceptions never do."
        )
    return types


def _activity_name(fn: Callable[..., Any]) -> str | None:
    """The activity type name of an ``@activity.defn`` callable, or ``None`` for anything else.

    temporalio has no public API for this; ``activity._Definition.from_callable`` is
    what ``workflow.execute_activity`` itself uses (tests/test_saga_sdk.py guards it).
    """
    definition = activity._Definition.from_callable(fn)
    if definition is None:
        return None
    return definition.name or _callable_name(fn)


def _flatten_partial(
    fn: functools.partial[Any],
) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = {}
    current: Callable[..., Any] = fn
    while isinstance(current, functools.partial):
        args = (*current.args, *args)
        kwargs = {**current.keywords, **kwargs}
        current = current.func
    return current, args, kwargs


def _positional(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """``args`` and ``kwargs`` of a partial as the positional arguments an activity takes."""
    if not kwargs:
        return args
    name = _callable_name(fn)
    unbound = _is_unbound_method(fn)
    try:
        bound = inspect.signature(fn).bind(*((None,) if unbound else ()), *args, **kwargs)
    except TypeError as err:
        raise SagaUsageError(
            f"functools.partial of compensation {name} cannot be called with those "
            f"arguments: {err}. Bind exactly the arguments the activity takes."
        ) from None
    bound.apply_defaults()
    if bound.kwargs:  # **kwargs or keyword-only: activities take positional arguments only
        raise SagaUsageError(
            f"functools.partial of activity {name} binds {sorted(bound.kwargs)}, which "
            "cannot be passed positionally; Temporal activities take positional arguments."
        )
    return bound.args[1:] if unbound else bound.args


def _callable_name(fn: Callable[..., Any]) -> str:
    target = fn.func if isinstance(fn, functools.partial) else fn
    name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None)
    return str(name) if name else type(target).__name__


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(type(fn), "__call__", None)  # noqa: B004 - an instance with async __call__
    return call is not None and inspect.iscoroutinefunction(call)


def _is_unbound_method(fn: Callable[..., Any]) -> bool:
    """True for an activity defined as a method and referred to through its class."""
    if not inspect.isfunction(fn):
        return False
    owner = fn.__qualname__.split(".")[:-1]
    if not owner or owner[-1] == "<locals>":
        return False
    parameters = list(inspect.signature(fn).parameters)
    return bool(parameters) and parameters[0] == "self"


def _check_arguments(
    name: str, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have no signature: nothing to check
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as err:
        raise SagaUsageError(
            f"Compensation {name}{signature} cannot be called with {len(args)} "
            f"argument(s): {err}. Pass exactly the arguments it takes after the "
            "compensation in saga.add()."
        ) from None


def _activity_options(name: str, given: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - _ACTIVITY_OPTIONS)
    if unknown:
        hint = " (pass activity arguments positionally)" if "arg" in unknown else ""
        raise SagaUsageError(
            f"Unknown activity option(s) {unknown} for compensation {name}{hint}. "
            f"Valid options are the keywords of workflow.execute_activity: "
            f"{', '.join(sorted(_ACTIVITY_OPTIONS))}."
        )
    options: dict[str, Any] = {
        "start_to_close_timeout": DEFAULT_COMPENSATION_TIMEOUT,
        "retry_policy": DEFAULT_COMPENSATION_RETRY_POLICY,
        **given,
    }
    for key in _TIMEOUT_OPTIONS & set(options):
        value = options[key]
        if value is None:
            continue
        if not isinstance(value, timedelta):
            raise SagaUsageError(
                f"{key}={value!r} for compensation {name} must be a datetime.timedelta, "
                "e.g. timedelta(seconds=30)."
            )
        if value <= timedelta(0):
            raise SagaUsageError(
                f"{key}={value} for compensation {name} must be positive; "
                "leave the option out to use the default."
            )
    if (
        options["start_to_close_timeout"] is None
        and options.get("schedule_to_close_timeout") is None
    ):
        raise SagaUsageError(
            f"Compensation {name} has neither start_to_close_timeout nor "
            "schedule_to_close_timeout; Temporal needs one. Leave start_to_close_timeout "
            "out to use the 30 s default."
        )
    policy = options["retry_policy"]
    if policy is not None:
        if not isinstance(policy, RetryPolicy):
            raise SagaUsageError(
                f"retry_policy={policy!r} for compensation {name} must be a "
                "temporalio.common.RetryPolicy."
            )
        try:
            policy.apply_to_proto(RetryPolicyProto())  # validates (public API)
        except ValueError as err:
            raise SagaUsageError(
                f"retry_policy for compensation {name} is invalid: {err}. Fix the "
                "RetryPolicy fields (intervals positive, backoff_coefficient >= 1)."
            ) from None
    cancellation = options.get("cancellation_type")
    if cancellation is not None and not isinstance(cancellation, ActivityCancellationType):
        raise SagaUsageError(
            f"cancellation_type={cancellation!r} for compensation {name} must be a "
            "temporalio.workflow.ActivityCancellationType."
        )
    for key in _STRING_OPTIONS & set(options):
        if options[key] is not None and not isinstance(options[key], str):
            raise SagaUsageError(
                f"{key}={options[key]!r} for compensation {name} must be a string or None."
            )
    return options
