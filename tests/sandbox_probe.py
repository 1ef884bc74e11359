"""A workflow whose module counts its own loads (see tests/sandbox_loads.py)."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tests.sandbox_loads import loads

loads[__name__] += 1


@workflow.defn
class CountedLoads:
    """Does nothing: what counts is how often its module is loaded."""

    @workflow.run
    async def run(self) -> str:
        return "done"
