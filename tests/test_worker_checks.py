"""A worker checks each workflow class when it starts; sagakit's runner checks a class once.

Temporal loads the module of each workflow class in a new sandbox whenever a worker starts,
to refuse a class that cannot run there. A notebook starts workers for the same workflows
over and over, so ``sandbox_runner()`` (and ``running_worker``) remembers the classes that
passed, per pass-through list. Each workflow *run* still gets a fresh sandbox, and a class
that fails the check fails it at every start.
"""

from __future__ import annotations

import uuid

import pytest
from temporalio.client import Client

from sagakit import running_worker
from tests.sandbox_loads import loads
from tests.sandbox_probe import CountedLoads
from tests.sandbox_refused import ReadsTheClockOnLoad

PROBE = "tests.sandbox_probe"


def _fresh_passthrough() -> tuple[str]:
    """A pass-through list no other test uses, so the class counts as not checked yet."""
    return (f"tests_unused_{uuid.uuid4().hex}",)


async def test_three_worker_starts_check_the_class_once(client: Client, task_queue: str) -> None:
    passthrough = _fresh_passthrough()
    before = loads[PROBE]
    for _ in range(3):
        async with running_worker(
            client, task_queue=task_queue, workflows=[CountedLoads], passthrough=passthrough
        ):
            pass
    assert loads[PROBE] - before == 1


async def test_another_passthrough_list_is_checked_again(client: Client, task_queue: str) -> None:
    before = loads[PROBE]
    for passthrough in (_fresh_passthrough(), _fresh_passthrough()):
        async with running_worker(
            client, task_queue=task_queue, workflows=[CountedLoads], passthrough=passthrough
        ):
            pass
    assert loads[PROBE] - before == 2


async def test_every_run_still_loads_the_module_afresh(client: Client, task_queue: str) -> None:
    passthrough = _fresh_passthrough()
    async with running_worker(
        client, task_queue=task_queue, workflows=[CountedLoads], passthrough=passthrough
    ):
        before = loads[PROBE]
        for n in range(2):
            result = await client.execute_workflow(
                CountedLoads.run, id=f"{task_queue}-{n}", task_queue=task_queue
            )
            assert result == "done"
    assert loads[PROBE] - before == 2


async def test_a_refused_class_is_refused_at_every_start(client: Client, task_queue: str) -> None:
    passthrough = _fresh_passthrough()
    before = loads["tests.sandbox_refused"]
    for _ in range(2):
        with pytest.raises(RuntimeError, match="Failed validating workflow ReadsTheClockOnLoad"):
            async with running_worker(
                client,
                task_queue=task_queue,
                workflows=[ReadsTheClockOnLoad],
                passthrough=passthrough,
            ):
                pass
    assert loads["tests.sandbox_refused"] - before == 2
