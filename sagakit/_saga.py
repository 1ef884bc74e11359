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
pass other options to :meth:`Saga.add`) or any ``async`` callable, awaited with the
arguments you registered.

How the workflow ends, by what happened in the ``async with`` block:

- Nothing went wrong: nothing is undone and the workflow goes on.
- An error (or a cancellation) left the block and every compensation succeeded:
  the original error is re-raised, so the workflow ends FAILED (CANCELED if the
  error was a cancellation), never "completed".
- The workflow was cancelled while the compensations ran and all of them
  succeeded: ``asyncio.CancelledError`` once the last one has finished (CANCELED).
- At least one compensation failed: :class:`CompensationError`, chained with
  ``raise ... from`` to the original error (FAILED, even after a cancellation: a
  saga that could not undo itself needs a person's attention).

:class:`CompensationError` is a Temporal ``ApplicationError`` (type
``"CompensationError"``, not retryable), so it fails the workflow instead of
failing the workflow task forever. It is also an ``ExceptionGroup`` of the
compensation failures and a :class:`~sagakit._errors.SagakitError`.

Cancellation while compensating cannot cut the undo short: the undos run in
their own task, and the saga waits on ``asyncio.shield(task)`` in a loop until
that task is done, swallowing each ``CancelledError`` and raising it again
afterwards. (A single ``await asyncio.shield(...)`` is not enough: the cancel
ends the workflow and the rest of the undo never runs.)

Note:
    A plain Python error that is not a Temporal failure (a bug such as a
    ``KeyError``) does not fail a Temporal workflow: it fails the workflow task,
    which Temporal retries until a fixed worker is deployed. The saga still
    compensates first, because it cannot know which errors you meant.

Progress can be watched from outside: each saga answers the workflow query
``"saga_progress"`` (see :class:`SagaProgress`)::

    progress = await handle.query("saga_progress", result_type=SagaProgress)

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
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from types import TracebackType
from typing import Any, Self

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
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

Undos must be retried generously (and so must be idempotent), but not forever:
after about a minute of failures the saga reports a :class:`CompensationError`
instead of hanging.
"""


class SagaUsageError(ConfigurationError):
    """A saga was built or used the wrong way (raised at once, not when compensating)."""


class CompensationError(ExceptionGroup[Exception], ApplicationError, SagakitError):
    """One or more compensations failed, so the saga is only partly undone.

    Its ``exceptions`` are the failures of the compensations, in the order they
    ran; its ``__cause__`` is the error that started the compensation. Because it
    is a Temporal ``ApplicationError`` (type ``"CompensationError"``, not
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
    COMPENSATED = "compensated"
    """Every compensation succeeded."""
    FAILED = "failed"
    """At least one compensation failed: the saga is only partly undone."""
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
    """Never started, because an earlier one failed and the saga has ``stop_on_error``."""


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
    """For a failed compensation, what went wrong (the error and its causes)."""


@dataclass(frozen=True)
class SagaProgress:
    """A snapshot of a saga that a workflow query can return.

    It contains only dataclasses, tuples, strings and string enums, so Temporal's
    default data converter sends it as JSON and reads it back as a ``SagaProgress``.
    """

    state: SagaState
    """Running, compensating, compensated, failed or completed."""
    steps: tuple[str, ...]
    """Names of the registered compensations, in registration (step) order."""
    compensations: tuple[CompensationProgress, ...] = ()
    """The compensations in the order they run (empty until compensation starts)."""


@dataclass(eq=False)
class _Compensation:
    """A registered compensation and, once compensation starts, how it is going."""

    step: int
    name: str
    call: Callable[[], Awaitable[object]]
    status: CompensationStatus = CompensationStatus.PENDING
    error: str | None = None

    def progress(self) -> CompensationProgress:
        return CompensationProgress(self.step, self.name, self.status, self.error)


_plain_logger = logging.getLogger(__name__)

_ACTIVITY_OPTIONS = frozenset(
    name
    for name, parameter in inspect.signature(workflow.execute_activity).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "args"
)
_TIMEOUT_OPTIONS = frozenset(name for name in _ACTIVITY_OPTIONS if name.endswith("_timeout"))
_STRING_OPTIONS = frozenset({"task_queue", "activity_id", "summary"})


class Saga:
    """Compensations registered step by step, run in reverse if the saga fails.

    Use it as ``async with Saga() as saga:`` inside a workflow, or call
    :meth:`compensate` yourself. See the module docstring for an example and for
    which error ends the workflow.
    """

    def __init__(
        self,
        *,
        parallel: bool = False,
        stop_on_error: bool = False,
        query: str | None = "saga_progress",
    ) -> None:
        """Create an empty saga.

        Args:
            parallel: Start every compensation at once (``asyncio.gather`` of
                tasks) instead of one after the other in reverse order. Only for
                undos that do not depend on each other.
            stop_on_error: Stop at the first compensation that fails and skip the
                rest (like Java's ``Saga`` without ``continueWithError``). By
                default every compensation runs and the failures are collected.
                Cannot be combined with ``parallel``, where all undos start at once.
            query: Name of the workflow query that returns :meth:`progress`,
                registered when the saga is created inside a workflow; ``None``
                registers nothing. A later saga with the same name replaces the
                handler of an earlier one.

        Raises:
            SagaUsageError: ``parallel`` and ``stop_on_error`` were both set, or
                ``query`` is an empty string.
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
        self._parallel = parallel
        self._stop_on_error = stop_on_error
        self._state = SagaState.RUNNING
        self._registered: list[_Compensation] = []
        self._plan: list[_Compensation] = []
        if query is not None and workflow.in_workflow():
            workflow.set_query_handler(query, self.progress)

    @property
    def state(self) -> SagaState:
        """Where the saga is now (the same as ``progress().state``)."""
        return self._state

    def add(self, compensation: Callable[..., Any], *args: Any, **activity_options: Any) -> None:
        """Register the undo of the step that comes next.

        Call it *before* the step, so that a step that fails half-way is undone too.

        Args:
            compensation: A Temporal activity (a function or method decorated with
                ``@activity.defn``), or any ``async`` callable.
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
        definition = activity._Definition.from_callable(compensation)
        if definition is not None:
            name = definition.name or _callable_name(compensation)
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
        """A snapshot of the saga; also the answer to the workflow query."""
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
        to the end, and then ``asyncio.CancelledError`` is raised.

        Raises:
            CompensationError: At least one compensation failed.
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
        if isinstance(exc, GeneratorExit):
            # The worker evicted the workflow from its cache (after a terminate, a
            # run timeout, or at shutdown) and closed its coroutine. Nothing failed:
            # if the run goes on, it is replayed from its History elsewhere.
            return False
        await self._compensate(cause=exc)
        return False  # let the original error propagate

    async def _compensate(self, cause: BaseException | None) -> None:
        if self._state not in (SagaState.RUNNING, SagaState.COMPLETED):
            return
        self._state = SagaState.COMPENSATING
        self._plan = list(self._registered) if self._parallel else list(reversed(self._registered))
        task = asyncio.create_task(self._run_plan(), name="saga compensation")
        cancelled: asyncio.CancelledError | None = None
        while True:
            try:
                failures = await asyncio.shield(task)
                break
            except asyncio.CancelledError as err:
                if task.cancelled():
                    raise  # the compensation itself was cancelled: the workflow is torn down
                cancelled = err  # only we were cancelled: keep waiting, raise it afterwards
        self._state = SagaState.FAILED if failures else SagaState.COMPENSATED
        if failures:
            raise _compensation_error(self._plan, failures) from cause
        if cancelled is not None:
            raise cancelled

    async def _run_plan(self) -> list[Exception]:
        if self._parallel:
            tasks = [asyncio.create_task(self._run_one(entry)) for entry in self._plan]
            results = await asyncio.gather(*tasks)
            return [err for err in results if err is not None]
        failures: list[Exception] = []
        for entry in self._plan:
            err = await self._run_one(entry)
            if err is None:
                continue
            failures.append(err)
            if self._stop_on_error:
                for later in self._plan:
                    if later.status is CompensationStatus.PENDING:
                        later.status = CompensationStatus.SKIPPED
                break
        return failures

    async def _run_one(self, entry: _Compensation) -> Exception | None:
        entry.status = CompensationStatus.RUNNING
        try:
            await entry.call()
        except Exception as err:  # BaseExceptions (eviction, cancel) must propagate
            entry.status = CompensationStatus.FAILED
            entry.error = _describe(err)
            logger = workflow.logger if workflow.in_workflow() else _plain_logger
            logger.warning(
                "Compensation %s for step %d failed: %s", entry.name, entry.step, entry.error
            )
            return err
        entry.status = CompensationStatus.SUCCEEDED
        return None


def _compensation_error(plan: list[_Compensation], failures: list[Exception]) -> CompensationError:
    failed = [entry for entry in plan if entry.status is CompensationStatus.FAILED]
    listing = "; ".join(f"{entry.name} (step {entry.step}): {entry.error}" for entry in failed)
    skipped = sum(entry.status is CompensationStatus.SKIPPED for entry in plan)
    extra = f" {skipped} later compensation(s) were skipped (stop_on_error)." if skipped else ""
    return CompensationError(
        f"{len(failed)} of {len(plan)} compensations failed, so the saga is only partly "
        f"undone: {listing}.{extra} Fix the cause, then repair the affected steps by hand "
        "or run their compensations again (they must be idempotent).",
        failures,
    )


def _describe(err: BaseException) -> str:
    """``Type: message`` of an error and of each of its causes."""
    parts: list[str] = []
    current: BaseException | None = err
    while current is not None and len(parts) < 5:
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__
    return " <- ".join(parts)


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
            policy._validate()
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
