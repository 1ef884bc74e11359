"""A worker's Build ID names the code it runs, and costs next to nothing to compute.

``running_worker`` gives each worker ``code_build_id`` of its workflows and activities,
where Temporal's default would hash every module loaded in the process (a quarter of a
second in a notebook kernel). The ID must still do a Build ID's job: the same code gives
the same ID, in any process, and an edit gives a new one.
"""

from __future__ import annotations

import linecache
import sys
import types
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.worker import WorkerDeploymentConfig, WorkerDeploymentVersion

from sagakit import running_worker
from sagakit._worker import code_build_id
from sagakit.course.lessons.durable import ORDER_STEPS, OrderInput, OrderWorkflow, create_step_log
from sagakit.course.lessons.welcome import Greeting, WelcomeWorkflow, compose_greeting
from sagakit.course.processes import start_worker_process
from tests.helpers import fresh_python

WELCOME = [WelcomeWorkflow, compose_greeting]


async def _greet(
    client: Client, task_queue: str, **worker_options: Any
) -> WorkflowHandle[Any, Any]:
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[WelcomeWorkflow],
        activities=[compose_greeting],
        **worker_options,
    ):
        handle = await client.start_workflow(
            WelcomeWorkflow.run,
            Greeting(name="build"),
            id=f"build-id-{uuid.uuid4()}",
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
        )
        await handle.result()
    return handle


async def _recorded_build_ids(handle: WorkflowHandle[Any, Any]) -> set[str]:
    history = await handle.fetch_history()
    return {
        event.workflow_task_completed_event_attributes.worker_version.build_id
        for event in history.events
        if event.HasField("workflow_task_completed_event_attributes")
    }


async def test_the_history_records_the_code_build_id(client: Client, task_queue: str) -> None:
    handle = await _greet(client, task_queue)
    assert await _recorded_build_ids(handle) == {code_build_id(WELCOME)}


async def test_a_build_id_of_your_own_wins(client: Client, task_queue: str) -> None:
    handle = await _greet(client, task_queue, build_id="release-42")
    assert await _recorded_build_ids(handle) == {"release-42"}


async def test_a_versioned_deployment_gets_no_build_id_of_ours(
    client: Client, task_queue: str
) -> None:
    # Temporal refuses a build_id beside a deployment configuration: adding ours would fail here.
    version = WorkerDeploymentVersion(deployment_name="course", build_id="course-1")
    handle = await _greet(
        client,
        task_queue,
        deployment_config=WorkerDeploymentConfig(version=version, use_worker_versioning=False),
    )
    assert await _recorded_build_ids(handle) == {"course-1"}


async def test_a_worker_process_run_with_python_m_has_the_same_id(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    # The child runs `python -m sagakit.course.lessons.durable`: there, the code is __main__.
    worker = await start_worker_process(
        client, "sagakit.course.lessons.durable", "worker", task_queue, task_queue=task_queue
    )
    try:
        handle = await client.start_workflow(
            OrderWorkflow.run,
            OrderInput("o-1", str(create_step_log(tmp_path / "steps.db")), step_seconds=0),
            id=f"build-id-{task_queue}",
            task_queue=task_queue,
        )
        await handle.result()
    finally:
        worker.terminate()
    assert await _recorded_build_ids(handle) == {code_build_id([OrderWorkflow, *ORDER_STEPS])}


def test_the_same_code_gives_the_same_id_in_any_process() -> None:
    here = code_build_id(WELCOME)
    assert here == code_build_id(list(reversed(WELCOME)))
    elsewhere = fresh_python(
        "from sagakit._worker import code_build_id\n"
        "from sagakit.course.lessons.welcome import WelcomeWorkflow, compose_greeting\n"
        "print(code_build_id([WelcomeWorkflow, compose_greeting]))"
    )
    assert elsewhere.strip() == here


@pytest.fixture
def module_on_disk(tmp_path: Path) -> Iterator[Callable[[str], Any]]:
    """Write (and rewrite) a module of one activity and import it; forget it afterwards."""
    name = f"build_id_probe_{uuid.uuid4().hex}"
    sys.path.insert(0, str(tmp_path))

    def write(body: str) -> Any:
        (tmp_path / f"{name}.py").write_text(f"def step():\n    {body}\n", encoding="utf-8")
        sys.modules.pop(name, None)
        module = __import__(name)
        return module.step

    yield write
    sys.path.remove(str(tmp_path))
    sys.modules.pop(name, None)


def test_an_edit_to_the_module_gives_a_new_id(module_on_disk: Callable[[str], Any]) -> None:
    before = code_build_id([module_on_disk("return 1")])
    assert code_build_id([module_on_disk("return 1")]) == before
    assert code_build_id([module_on_disk("return 2")]) != before


def _cell(source: str, cell: str) -> Any:
    """Define ``step`` as a notebook cell does: compiled code whose source only linecache knows."""
    filename = f"<cell-{cell}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace: dict[str, Any] = {"__name__": "__main__"}
    exec(compile(source, filename, "exec"), namespace)
    return namespace["step"]


def test_code_from_a_notebook_cell_is_hashed_by_its_source(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In a kernel, __main__ is IPython's user module: no spec, no file of its own.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    first = _cell("def step():\n    return 1\n", "a")
    again = _cell("def step():\n    return 1\n", "b")
    edited = _cell("def step():\n    return 2\n", "c")
    assert code_build_id([first]) == code_build_id([again])
    assert code_build_id([edited]) != code_build_id([first])
