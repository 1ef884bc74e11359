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
from pathlib import Path

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
