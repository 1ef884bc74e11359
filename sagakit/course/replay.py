"""Replay a workflow's History against workflow code, and say in one line how it went.

Temporal rebuilds a workflow's state by running its code again and feeding it
the events of its History 🗃️: every activity result, timer and signal comes
from the record instead of being done again. That only works if the code,
given the same History, makes the same decisions (it is *deterministic* 🧮).
:func:`replay` runs that check offline with Temporal's own
:class:`temporalio.worker.Replayer` and returns a :class:`ReplayReport`::

    report = await replay(await handle.fetch_history(), [MyWorkflow])
    print(report)   # ✓ replayed cleanly   or   ✗ NondeterminismError: ...

Two helpers deal with failed *workflow tasks* (the code raised while a worker
ran it, for example when the sandbox refused a call): :func:`workflow_task_failures`
reads their messages from a History, and :func:`wait_for_workflow_task_failure`
waits for the first one.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from temporalio.client import WorkflowHandle, WorkflowHistory
from temporalio.worker import Replayer

from sagakit import SagakitError
from sagakit._runtime import quiet_runtime
from sagakit.course._polling import poll_until

__all__ = [
    "ReplayReport",
    "WorkflowTaskDidNotFail",
    "core_message",
    "quiet_runtime",
    "replay",
    "wait_for_workflow_task_failure",
    "workflow_task_failures",
]

_CORE_MESSAGE = re.compile(r'message: "((?:[^"\\]|\\.)*)"')


class WorkflowTaskDidNotFail(SagakitError):
    """A workflow task was expected to fail but the History shows no failed task."""


@dataclass(frozen=True)
class ReplayReport:
    """How replaying one History went."""

    workflow_id: str
    """The workflow whose History was replayed."""

    ok: bool
    """True if the code made the same decisions as the History records."""

    error_type: str | None = None
    """The exception class when it did not, usually ``"NondeterminismError"``."""

    message: str | None = None
    """What Temporal said went wrong, in one line."""

    def __str__(self) -> str:
        if self.ok:
            return f"✓ {self.workflow_id}: replayed cleanly"
        return f"✗ {self.workflow_id}: {self.error_type}: {self.message}"


def core_message(error: BaseException) -> str:
    """The one-line message inside a replay or activation error.

    Errors from Temporal's core engine print a whole nested structure
    (``Failure { failure: Some(Failure { message: "…", … }) }``); this returns
    just the first ``message``, or ``str(error)`` when there is none.
    """
    text = str(error)
    match = _CORE_MESSAGE.search(text)
    if match is None:
        return text.splitlines()[0] if text else type(error).__name__
    return match.group(1).replace('\\"', '"').replace("\\\\", "\\")


async def replay(history: WorkflowHistory, workflows: Sequence[type]) -> ReplayReport:
    """Replay ``history`` against the given workflow classes and report the outcome.

    The replay runs in this process, in the workflow sandbox, without a server.

    Args:
        history: the History to replay (from ``handle.fetch_history()`` or a file).
        workflows: the workflow classes to run; the History's workflow type
            must be among them.
    """
    replayer = Replayer(workflows=list(workflows), runtime=quiet_runtime())
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    failure = result.replay_failure
    if failure is None:
        return ReplayReport(workflow_id=history.workflow_id, ok=True)
    return ReplayReport(
        workflow_id=history.workflow_id,
        ok=False,
        error_type=type(failure).__name__,
        message=core_message(failure),
    )


def workflow_task_failures(history: WorkflowHistory) -> list[str]:
    """The messages of the ``WorkflowTaskFailed`` events in a History, in order."""
    return [
        event.workflow_task_failed_event_attributes.failure.message
        for event in history.events
        if event.HasField("workflow_task_failed_event_attributes")
    ]


async def wait_for_workflow_task_failure(
    handle: WorkflowHandle[Any, Any], *, timeout: float = 10.0
) -> str:
    """Wait until the workflow's History records a failed workflow task; return its message.

    A workflow task that raises does not fail the workflow: the server
    records one ``WorkflowTaskFailed`` event and keeps retrying the task, so
    the workflow stays open until someone fixes the code or terminates it.

    Raises:
        WorkflowTaskDidNotFail: no failed task within ``timeout`` seconds.
    """

    async def first_failure() -> str | None:
        failures = workflow_task_failures(await handle.fetch_history())
        return failures[0] if failures else None

    return await poll_until(
        first_failure,
        timeout=timeout,
        what=f"a failed workflow task of {handle.id!r}",
        timed_out=lambda: WorkflowTaskDidNotFail(
            f"No workflow task of {handle.id!r} failed within {timeout:g} s. Is a worker "
            "for its task queue running, and does the code really raise?"
        ),
    )
