"""Variant (a) of ``bench_sandbox.py``: a saga written by hand, with no sagakit import.

A list of undo activities, each registered before its step (a step may fail
after its effect), run last-to-first in ``except`` when a step fails; then the
error is raised again so the workflow ends failed. This is the baseline: the issue
measured 34 ms of worker CPU per run for a hand-written saga like it.
"""

from __future__ import annotations

from temporalio import workflow

from benchmarks.sandbox_activities import (
    STEP_TIMEOUT,
    STEPS,
    UNDO_RETRY,
    UNDO_TIMEOUT,
    book,
    cancel,
)

__all__ = ["HandwrittenSandboxSaga"]


@workflow.defn
class HandwrittenSandboxSaga:
    """Book every step; if one is refused, cancel what was registered, newest first."""

    @workflow.run
    async def run(self, refuse_last: bool) -> str:
        undos: list[str] = []
        try:
            for step in STEPS:
                undos.append(step)
                await workflow.execute_activity(
                    book,
                    args=[step, refuse_last and step == STEPS[-1]],
                    start_to_close_timeout=STEP_TIMEOUT,
                )
        except Exception:
            for step in reversed(undos):
                try:
                    await workflow.execute_activity(
                        cancel,
                        step,
                        start_to_close_timeout=UNDO_TIMEOUT,
                        retry_policy=UNDO_RETRY,
                    )
                except Exception:
                    workflow.logger.exception("undoing %s failed; going on with the rest", step)
            raise
        return f"booked {', '.join(STEPS)}"
