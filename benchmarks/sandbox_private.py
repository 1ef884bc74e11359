"""Variants (c) and (d) of ``bench_sandbox.py``: the saga with ``from sagakit._saga import Saga``.

A private import, which no adopter should write: under a plain worker nothing
passes ``sagakit._saga`` through, so the sandbox re-executes it (and what it
imports from sagakit) for every run. ``bench_sandbox.py`` runs this module
under a plain worker (c) and under ``sagakit.sandbox_runner()`` (d), to show
what the public import saves and what the runner saves.
"""

from __future__ import annotations

from temporalio import workflow

from benchmarks.sandbox_activities import STEP_TIMEOUT, STEPS, book, cancel
from sagakit._saga import Saga

__all__ = ["PrivateImportSandboxSaga"]


@workflow.defn
class PrivateImportSandboxSaga:
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
