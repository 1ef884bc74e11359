"""The machinery behind the exercise checks: load a learner's module, run it, report.

A learner writes workflow code into a real file (the ``%%exercise_module`` cell
magic of :mod:`sagakit.course.exercises.magic` saves it in the untracked
``scratch/`` folder next to the notebook) so that the workflow sandbox stays on.
:func:`load_exercise` imports that file
*fresh* every time, under a unique module name, and makes the name findable
again (the sandbox re-imports a workflow's module by name). :func:`run_workflow`
runs one workflow on a worker of its own, waits for it with a deadline, and
turns every way it can end (completed, failed, stuck on a failing workflow
task, too slow) into a :class:`Run`. A :class:`CheckResult` collects ✓ and ✗
lines in plain words; nothing here lets a traceback reach the learner.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import itertools
import os
import re
import sys
import traceback
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle, WorkflowHistory
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError, FailureError

from sagakit import ConfigurationError, running_worker
from sagakit.course._polling import PollTimeout, poll_until
from sagakit.course.learner import scoped
from sagakit.course.logs import quiet_expected_failures

__all__ = [
    "NOT_DONE",
    "PASSED_THROUGH",
    "SCRATCH_FOLDER",
    "CheckLine",
    "CheckResult",
    "ExerciseLoadError",
    "Run",
    "RunStatus",
    "activity_order",
    "find_workflow",
    "load_exercise",
    "run_workflow",
    "scratch_path",
]

SCRATCH_FOLDER = "scratch"
"""The folder, next to the exercise notebook, where the learner's modules are saved.

It is in ``.gitignore``: a learner's code never shows up as a change to the course."""

PASSED_THROUGH: tuple[str, ...] = (
    "sagakit.course.display",
    "sagakit.course.exercises",
    "sagakit.course.services",
)
"""Course modules that a learner's exercise file imports and that hold no workflow code.

The worker of :func:`run_workflow` passes them through the workflow sandbox: it takes them
from its own imports instead of importing them afresh (services, checks and all) for every
run of the learner's workflow. The learner's module itself is still re-imported, so the
sandbox still catches, say, a ``datetime.now()`` in it."""

NOT_DONE = "○ Not done yet:"
"""How the first line of a check starts while the learner's code still has ``TODO`` in it."""


def scratch_path(file_name: str, folder: str | os.PathLike[str] | None = None) -> Path:
    """Return where the learner's module ``file_name`` is saved.

    Args:
        file_name: The module's file name, e.g. ``"exercise_saga.py"``.
        folder: The notebook's folder; by default the working directory (a notebook's
            kernel runs in the notebook's folder).

    Returns:
        ``<folder>/scratch/<file_name>`` (the folder is not created here).
    """
    base = Path(folder) if folder is not None else Path.cwd()
    return base / SCRATCH_FOLDER / file_name


# -- results ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckLine:
    """One verdict of a check."""

    ok: bool
    """Whether this part is right."""
    text: str
    """What was checked and, if it is wrong, what to change."""

    def __str__(self) -> str:
        return f"{'✓' if self.ok else '✗'} {self.text}"


@dataclass(frozen=True)
class CheckResult:
    """What a check found, line by line; print it in the notebook (it goes to stdout)."""

    exercise: str
    """The exercise's name, e.g. ``"first-workflow"``."""
    lines: tuple[CheckLine, ...] = ()
    """The verdicts, in the order they were checked."""
    todo_lines: tuple[int, ...] = ()
    """The lines of the learner's cell that still say ``TODO`` (shown only while a check fails)."""

    @property
    def passed(self) -> bool:
        """True if there is at least one line and every line is ✓."""
        return bool(self.lines) and all(line.ok for line in self.lines)

    @property
    def failures(self) -> list[str]:
        """The texts of the ✗ lines."""
        return [line.text for line in self.lines if not line.ok]

    @property
    def not_done(self) -> str | None:
        """The ``○ Not done yet:`` line, while a check fails and the cell still says TODO."""
        if self.passed or not self.todo_lines:
            return None
        numbers = [str(n) for n in self.todo_lines]
        which = numbers[0] if len(numbers) == 1 else f"{', '.join(numbers[:-1])} and {numbers[-1]}"
        return (
            f"{NOT_DONE} line{'s' if len(numbers) > 1 else ''} {which} of your cell still "
            f"say{'' if len(numbers) > 1 else 's'} TODO. The ✗ lines below say what to change."
        )

    def __str__(self) -> str:
        body = [self.not_done] if self.not_done else []
        body.extend(str(line) for line in self.lines)
        if self.passed:
            body.append(f"All {len(self.lines)} checks pass: well done!")
        else:
            wrong = len(self.failures)
            body.append(
                f"{wrong} of {len(self.lines)} checks fail: fix the first ✗, "
                "run the %%exercise_module cell again, then this one."
            )
        return "\n".join(body)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        import html

        def colored(text: str) -> str:
            mark = {"✓": "#1a7f37", "✗": "#cf222e"}.get(text[:1])
            escaped = html.escape(text)
            if mark is None:
                return escaped
            return f'<span style="color:{mark}">{escaped[:1]}</span>{escaped[1:]}'

        return "<pre>" + "\n".join(colored(t) for t in str(self).splitlines()) + "</pre>"


# -- loading ----------------------------------------------------------------------------------


class ExerciseLoadError(ConfigurationError):
    """The exercise file is missing or could not be imported; the message says why in plain words."""


class _ExerciseFinder(importlib.abc.MetaPathFinder):
    """Finds exercise modules by their unique names (the sandbox re-imports them by name)."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        file = self.files.get(fullname)
        if file is None:
            return None
        return importlib.util.spec_from_file_location(fullname, file)


_FINDER = _ExerciseFinder()
_COUNTER = itertools.count(1)


def _installed_finder() -> _ExerciseFinder:
    if _FINDER not in sys.meta_path:
        sys.meta_path.append(_FINDER)
    return _FINDER


def load_exercise(path: str | os.PathLike[str]) -> ModuleType:
    """Import the file at ``path`` afresh, under a new unique module name.

    Args:
        path: The learner's module, e.g. ``"exercise_first_workflow.py"``.

    Returns:
        The module.

    Raises:
        ExerciseLoadError: The file is missing, has a syntax error or raised on import.
    """
    file = Path(path)
    name = file.name
    if not file.is_file():
        raise ExerciseLoadError(
            f"Your code is not saved yet (there is no {SCRATCH_FOLDER}/{name}). Run the cell "
            "that starts with %%exercise_module first, then this check."
        )
    module_name = f"_sagakit_exercise_{_safe(file.stem)}_{os.getpid()}_{next(_COUNTER)}"
    finder = _installed_finder()
    finder.files[module_name] = os.fspath(file.absolute())
    spec = importlib.util.spec_from_file_location(module_name, file)
    if spec is None or spec.loader is None:  # pragma: no cover - only for odd file names
        raise ExerciseLoadError(f"{name} cannot be imported as a Python module; name it *.py.")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        del sys.modules[module_name]
        raise ExerciseLoadError(
            f"{name} has a syntax error on line {err.lineno} of your cell: {err.msg}. Fix it "
            "and run the %%exercise_module cell again."
        ) from None
    except Exception as err:
        del sys.modules[module_name]
        line = _line_in(err.__traceback__, name)
        where = f" on line {line} of your cell" if line else ""
        raise ExerciseLoadError(
            f"Importing {name} raised {type(err).__name__}{where}: {err}. Fix it and run the "
            "%%exercise_module cell again."
        ) from None
    return module


def find_workflow(module: ModuleType, class_name: str, file_name: str) -> type:
    """Return the workflow class ``class_name`` of an exercise module.

    Raises:
        ExerciseLoadError: There is no such class, or it is not a ``@workflow.defn`` class.
    """
    found = getattr(module, class_name, None)
    workflows = sorted(
        n
        for n, v in vars(module).items()
        if isinstance(v, type) and _is_workflow(v) and v.__module__ == module.__name__
    )
    if found is None:
        others = f" It defines {', '.join(workflows)}." if workflows else ""
        raise ExerciseLoadError(
            f"{file_name} has no class {class_name}.{others} Keep the class name from the "
            "exercise: the check looks for it."
        )
    if not isinstance(found, type) or not _is_workflow(found):
        raise ExerciseLoadError(
            f"{class_name} in {file_name} is not a workflow: put @workflow.defn above the class "
            "and @workflow.run above its run method."
        )
    return found


def _is_workflow(cls: type) -> bool:
    return workflow._Definition.from_class(cls) is not None


def _safe(text: str) -> str:
    return re.sub(r"\W", "_", text)


def _line_in(tb: Any, file_name: str) -> int | None:
    line = None
    for frame in traceback.extract_tb(tb):
        if Path(frame.filename).name == file_name:
            line = frame.lineno
    return line


# -- running ----------------------------------------------------------------------------------

RunStatus = str
"""How a run ended: ``"completed"``, ``"failed"``, ``"stuck"`` (a workflow task keeps
failing), ``"too_slow"`` (no end before the deadline) or ``"no_worker"`` (the worker
refused the workflow)."""


@dataclass(frozen=True)
class Run:
    """How one workflow run ended, and its History."""

    status: RunStatus
    """See :data:`RunStatus`."""
    result: Any = None
    """What the workflow returned (``"completed"`` only)."""
    error_type: str = ""
    """For ``"failed"``: the type of the innermost error, e.g. ``"OutOfStock"``."""
    message: str = ""
    """For ``"failed"``, ``"stuck"`` and ``"no_worker"``: what went wrong, in one line."""
    line: int | None = None
    """For ``"stuck"``: the line of the exercise file where the workflow task failed, if known."""
    history: WorkflowHistory | None = field(default=None, repr=False)
    """The run's History (``None`` for ``"no_worker"``)."""


async def run_workflow(
    client: Client,
    workflow_cls: type,
    arg: Any,
    *,
    name: str,
    activities: Sequence[Callable[..., Any]],
    file_name: str,
    deadline: timedelta = timedelta(seconds=20),
) -> Run:
    """Run ``workflow_cls`` once with ``arg`` on a worker of its own and report how it ended.

    The task queue and workflow id carry a random suffix, so checks running at
    the same time never meet. A workflow still running at the end is terminated.

    Args:
        client: A connected client.
        workflow_cls: The learner's workflow class.
        arg: Its single argument.
        name: A short name for ids, e.g. ``"saga-lost-reply"``.
        activities: The activities the worker offers.
        file_name: The learner's file name, to point at lines in it.
        deadline: How long the run may take.

    Returns:
        The :class:`Run`.
    """
    token = uuid.uuid4().hex[:8]
    task_queue = scoped(f"exercise-{name}-{token}", namespace=client.namespace)
    workflow_id = scoped(f"exercise-{name}-{token}", namespace=client.namespace)
    defn = workflow._Definition.must_from_class(workflow_cls)
    with quiet_expected_failures():
        try:
            worker = running_worker(
                client,
                task_queue=task_queue,
                workflows=[workflow_cls],
                activities=activities,
                passthrough=PASSED_THROUGH,
            )
            await worker.__aenter__()
        except Exception as err:
            return Run("no_worker", message=_first_line(err))
        try:
            return await _drive(client, defn, arg, workflow_id, task_queue, file_name, deadline)
        finally:
            await worker.__aexit__(None, None, None)


async def _drive(
    client: Client,
    defn: workflow._Definition,
    arg: Any,
    workflow_id: str,
    task_queue: str,
    file_name: str,
    deadline: timedelta,
) -> Run:
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(
        defn.name or "",
        arg,
        id=workflow_id,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        run_timeout=deadline + timedelta(seconds=10),
    )

    async def stuck() -> tuple[str, int | None] | None:
        return _task_failure(await handle.fetch_history(), file_name)

    # Wait for the result while a watcher looks for a failing workflow task, until the deadline.
    result_task = asyncio.ensure_future(handle.result())
    watch = asyncio.ensure_future(
        poll_until(
            stuck, timeout=deadline.total_seconds(), interval=0.25, what=f"{workflow_id} to end"
        )
    )
    try:
        await asyncio.wait({result_task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not result_task.done():
            history = await handle.fetch_history()
            with contextlib.suppress(Exception):
                await handle.terminate("stopped by the exercise check")
            try:
                message, line = watch.result()
            except PollTimeout:
                return Run("too_slow", history=history)
            return Run("stuck", message=message, line=line, history=history)
    finally:
        for task in (result_task, watch):
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task
    history = await handle.fetch_history()
    try:
        result = result_task.result()
    except WorkflowFailureError as err:
        inner = _innermost(err)
        error_type = inner.type or "" if isinstance(inner, ApplicationError) else ""
        return Run(
            "failed",
            error_type=error_type or type(inner).__name__,
            message=inner.message if isinstance(inner, FailureError) else str(inner),
            history=history,
        )
    return Run("completed", result=result, history=history)


def _innermost(err: BaseException) -> BaseException:
    current = err
    while current.__cause__ is not None:
        current = current.__cause__
    return current


def _task_failure(history: WorkflowHistory, file_name: str) -> tuple[str, int | None] | None:
    for event in history.events:
        if event.HasField("workflow_task_failed_event_attributes"):
            failure = event.workflow_task_failed_event_attributes.failure
            line = None
            for match in re.finditer(r'File "([^"]+)", line (\d+)', failure.stack_trace):
                if Path(match.group(1)).name == file_name:
                    line = int(match.group(2))
            return failure.message, line
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")


def activity_order(history: WorkflowHistory | None) -> list[str]:
    """Return the activity names a History scheduled, in order."""
    if history is None:
        return []
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
