"""A workflow whose module reads the clock when it loads: the sandbox refuses it."""

from __future__ import annotations

import datetime

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from tests.sandbox_loads import loads

loads[__name__] += 1
LOADED_AT = datetime.datetime.now()  # not deterministic: the sandbox raises here


@workflow.defn
class ReadsTheClockOnLoad:
    """Never runs: no worker accepts it."""

    @workflow.run
    async def run(self) -> str:
        return str(LOADED_AT)
