"""Variant (b) of ``bench_sandbox.py``: the same saga with a plain ``from sagakit import Saga``.

What an adopter writes. The sandbox re-executes ``sagakit/__init__.py`` for
every run, and nothing else of sagakit: the lazy ``__getattr__`` there fetches
``Saga`` from the host's ``sagakit._saga`` inside ``imports_passed_through``.
"""

from __future__ import annotations

from temporalio import workflow

from benchmarks.sandbox_activities import STEP_TIMEOUT, STEPS, book, cancel
from sagakit import Saga

__all__ = ["SagakitSandboxSaga"]


@workflow.defn
class SagakitSandboxSaga:
    """Book every step inside a ``Saga``; if one is refused, it cancels what was registered."""

    @workflow.run
    async def run(self, refuse_last: bool) -> str:
        async with Saga() as saga:
            for step in STEPS:
                saga.add(cancel, step)
                await workflow.execute_activity(
                    book,
                    args=[step, refuse_last and step == STEPS[-1]],
                    start_to_close_timeout=STEP_TIMEOUT,
                )
        return f"booked {', '.join(STEPS)}"
