"""Wait until a workflow says it has reached a stage (lessons 08 and 12).

The breakfast workflow and the fine-print trips keep a ``stage`` string and
answer a ``stage`` query with it; a lesson waits for the moment to signal,
cancel or terminate. :mod:`sagakit.course.lessons.breakfast` and
:mod:`sagakit.course.lessons.fineprint` hand on :func:`wait_for_stage` under
their own names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sagakit import SagakitError, SagaProgress, SagaState
from sagakit.course._polling import poll_until

if TYPE_CHECKING:
    from temporalio.client import WorkflowHandle

__all__ = ["StageNotReached", "wait_for_saga_state", "wait_for_stage"]


class StageNotReached(SagakitError, TimeoutError):
    """A workflow did not reach the expected stage in time."""


async def wait_for_stage(
    handle: WorkflowHandle[Any, Any], stage: str, timeout: float = 10.0
) -> None:
    """Ask the workflow its ``stage`` (a query) until it answers ``stage``.

    Args:
        handle: The workflow; its class answers a ``stage`` query with a string.
        stage: The stage to wait for, e.g. ``"waiting for confirmation"``.
        timeout: Seconds to wait.

    Raises:
        StageNotReached: It did not get there within ``timeout`` seconds (a ``TimeoutError``).
    """
    last = ""

    async def reached() -> bool | None:
        nonlocal last
        last = await handle.query("stage", result_type=str)
        return True if last == stage else None

    await poll_until(
        reached,
        timeout=timeout,
        what=f"workflow {handle.id} to reach stage {stage!r}",
        timed_out=lambda: StageNotReached(
            f"Workflow {handle.id} is still {last!r} after {timeout:g} s, not {stage!r}. "
            "Check that a worker polls its task queue and that the workflow stops there "
            "(a breakfast pauses before the milk only when started with pause_before_milk=True)."
        ),
    )


async def wait_for_saga_state(
    handle: WorkflowHandle[Any, Any], state: SagaState, timeout: float = 10.0
) -> SagaProgress:
    """Ask a saga its progress (the ``saga_progress`` query) until it is in ``state``.

    Args:
        handle: A workflow that runs a :class:`sagakit.Saga`.
        state: The state to wait for, e.g. ``SagaState.NEEDS_ATTENTION``.
        timeout: Seconds to wait.

    Returns:
        The progress that first showed ``state``.

    Raises:
        StageNotReached: The saga was not in ``state`` within ``timeout`` seconds.
    """
    last: SagaProgress | None = None

    async def reached() -> SagaProgress | None:
        nonlocal last
        last = await handle.query("saga_progress", result_type=SagaProgress)
        return last if last.state is state else None

    return await poll_until(
        reached,
        timeout=timeout,
        what=f"the saga of {handle.id} to be {state.value}",
        timed_out=lambda: StageNotReached(
            f"The saga of workflow {handle.id} is "
            f"{last.state.value if last else 'not answering'} after {timeout:g} s, not "
            f"{state.value}. Check that a worker polls its task queue."
        ),
    )
