"""What the workflow sandbox imports afresh for every workflow run stays small.

The sandbox re-imports a workflow's module, and every module it imports that is not passed
through, for each run. The course's helpers (the simulated services, the polling and
stage-waiting helpers, the logs) hold no workflow code, so lesson modules import them
passed through; re-importing ``sagakit.course.services`` cost a quarter of the CPU of the
tests that run lesson workflows. Test modules define no workflows: pytest rewrites them and
adds an import of its assertion machinery, which the sandbox would import again for every run.
Read from the source, so a new lesson or test that slips back fails here.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.worker import Worker

import sagakit._saga
import sagakit.course.services as services
from tests.helpers import modules_imported_by
from tests.workflows import CoreClassIdentity

ROOT = Path(__file__).parents[1]
LESSONS = ROOT / "sagakit" / "course" / "lessons"


def _defines_a_workflow(tree: ast.Module) -> bool:
    return any(
        isinstance(node, ast.ClassDef)
        and any("workflow.defn" in ast.unparse(decorator) for decorator in node.decorator_list)
        for node in ast.walk(tree)
    )


def _is_helper(module: str) -> bool:
    """A course module that holds no workflow code (lesson modules do, except private ones)."""
    return module.startswith("sagakit.course.") and (
        not module.startswith("sagakit.course.lessons.")
        or module.startswith("sagakit.course.lessons._")
    )


def _imports_outside_passthrough(tree: ast.Module) -> list[str]:
    """Top-level imports of course helpers, outside a passthrough block."""
    return [
        f"line {node.lineno}: {node.module}"
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module and _is_helper(node.module)
    ]


def test_lesson_workflow_modules_pass_the_course_helpers_through() -> None:
    outside = {
        path.name: found
        for path in sorted(LESSONS.glob("*.py"))
        if _defines_a_workflow(tree := ast.parse(path.read_text(encoding="utf-8")))
        and (found := _imports_outside_passthrough(tree))
    }
    assert outside == {}, "import these inside `with workflow.unsafe.imports_passed_through():`"


def test_the_check_finds_a_helper_imported_outside_the_passthrough_block() -> None:
    tree = ast.parse(
        "from temporalio import workflow\n"
        "from sagakit.course.services.activities import TripActivities\n"
        "from sagakit.course.lessons._stage import wait_for_stage\n"
        "from sagakit.course.lessons.trip import run_key\n"
        "with workflow.unsafe.imports_passed_through():\n"
        "    from sagakit.course.services.world import World\n"
    )
    assert _imports_outside_passthrough(tree) == [
        "line 2: sagakit.course.services.activities",
        "line 3: sagakit.course.lessons._stage",
    ]


def test_no_test_module_defines_a_workflow() -> None:
    defining = [
        path.name
        for path in sorted((ROOT / "tests").glob("test_*.py"))
        if _defines_a_workflow(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert defining == [], "move the workflows into a module of their own (tests/workflows.py)"


async def test_core_names_reach_the_sandbox_from_the_host_module(
    client: Client, task_queue: str
) -> None:
    """``from sagakit import Saga`` in a workflow module: the sandbox gets the host's class.

    On Temporal's own runner, which knows nothing of sagakit (``running_worker`` passes the
    core through by name as well).
    """
    async with Worker(client, task_queue=task_queue, workflows=[CoreClassIdentity]):
        seen = await client.execute_workflow(
            CoreClassIdentity.run, id=f"{task_queue}-identity", task_queue=task_queue
        )
    assert seen == id(sagakit._saga.Saga)


def test_the_world_and_a_core_error_load_without_temporal() -> None:
    """A program that only needs the services' state (the tests' child processes) or an error
    class does not import Temporal's SDK: that import was most of such a process's start-up."""
    loaded = modules_imported_by(
        "from sagakit import ConfigurationError\n"
        "from sagakit.course.services import World, check_world\n"
        "from sagakit.course.services.world import World as Same"
    )
    assert "sagakit.course.services.world" in loaded
    assert [name for name in loaded if name.startswith("temporalio")] == []


def test_the_services_namespace_is_its_all() -> None:
    """Every name in the services' ``__all__`` resolves, and ``dir()`` shows exactly those."""
    assert dir(services) == sorted(services.__all__)
    for name in services.__all__:
        home = importlib.import_module(services._EXPORTS[name])
        assert getattr(services, name) is getattr(home, name)
    with pytest.raises(AttributeError, match="no attribute 'Wrold'"):
        _ = services.Wrold
