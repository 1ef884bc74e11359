"""The exercise checks, run on the code the exercise notebooks really contain.

Each notebook's ``%%writefile`` cell is the code a learner starts from (practice)
or the worked answer (solution). The solution must pass its check against the
real server; the untouched practice code must fail it, with a ✗ line that says
what to change. A few broken modules show that the check explains a mistake
instead of raising.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import Client

from sagakit.course.exercises import EXERCISES, CheckResult, UnknownExercise, check
from tests.helpers import ROOT

EXERCISE_DIR = ROOT / "notebooks" / "exercises"

NOTEBOOKS = {
    "first-workflow": "00-first-workflow",
    "determinism": "04-determinism",
    "retry-policy": "07-retry-policy",
    "compensation": "08-compensation",
    "saga": "09-saga",
    "order-fulfilment": "13-capstone-order-fulfilment",
}

# A phrase the practice code's check must say (the hint that leads to the fix).
PRACTICE_HINTS = {
    "first-workflow": "never calls the activity compose_greeting",
    "determinism": "use workflow.now()",
    "retry-policy": "allow at least 4 attempts",
    "compensation": "undo the newest step first",
    "saga": "idempotency key",
    "order-fulfilment": "not all-or-nothing",
}


def notebook_code(name: str, kind: str) -> tuple[str, str]:
    """Return ``(file name, code)`` of the ``%%writefile`` cell of an exercise notebook."""
    path = EXERCISE_DIR / f"{NOTEBOOKS[name]}-{kind}.ipynb"
    cells = json.loads(path.read_text())["cells"]
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "code" and source.startswith("%%writefile "):
            first, _, body = source.partition("\n")
            return first.removeprefix("%%writefile ").strip(), body
    raise AssertionError(f"{path.name} has no %%writefile cell")


async def run_check(name: str, kind: str, tmp_path: Path, client: Client) -> CheckResult:
    file_name, code = notebook_code(name, kind)
    path = tmp_path / file_name
    path.write_text(code)
    return await check(name, path, client=client)


def test_every_exercise_has_both_notebooks() -> None:
    assert set(NOTEBOOKS) == set(EXERCISES)
    for stem in NOTEBOOKS.values():
        for kind in ("practice", "solution"):
            assert (EXERCISE_DIR / f"{stem}-{kind}.ipynb").is_file()


@pytest.mark.parametrize("name", list(NOTEBOOKS))
async def test_solution_passes(name: str, tmp_path: Path, client: Client) -> None:
    result = await run_check(name, "solution", tmp_path, client)
    assert result.passed, str(result)
    assert "✗" not in str(result)


@pytest.mark.parametrize("name", list(NOTEBOOKS))
async def test_practice_fails_with_a_hint(name: str, tmp_path: Path, client: Client) -> None:
    result = await run_check(name, "practice", tmp_path, client)
    assert not result.passed
    assert any(PRACTICE_HINTS[name] in failure for failure in result.failures), str(result)
    assert "Traceback" not in str(result)


async def test_missing_file_is_explained(tmp_path: Path, client: Client) -> None:
    result = await check("first-workflow", tmp_path / "exercise_first_workflow.py", client=client)
    assert not result.passed
    assert "Run the cell that starts with %%writefile" in result.failures[0]


async def test_syntax_error_is_explained(tmp_path: Path, client: Client) -> None:
    path = tmp_path / "exercise_first_workflow.py"
    path.write_text("from temporalio import workflow\n\nclass HelloWorkflow\n    pass\n")
    result = await check("first-workflow", path, client=client)
    assert len(result.failures) == 1
    assert "syntax error on line 3" in result.failures[0]


async def test_wrong_class_name_is_explained(tmp_path: Path, client: Client) -> None:
    _, code = notebook_code("first-workflow", "solution")
    path = tmp_path / "exercise_first_workflow.py"
    path.write_text(code.replace("HelloWorkflow", "GreetWorkflow"))
    result = await check("first-workflow", path, client=client)
    assert "has no class HelloWorkflow. It defines GreetWorkflow." in result.failures[0]


async def test_bug_in_workflow_code_is_explained_not_retried_forever(
    tmp_path: Path, client: Client
) -> None:
    _, code = notebook_code("first-workflow", "solution")
    path = tmp_path / "exercise_first_workflow.py"
    path.write_text(code.replace("return await", "greeting.nmae\n        return await"))
    result = await check("first-workflow", path, client=client)
    assert not result.passed
    failure = result.failures[-1]
    assert "raised an error on line 14" in failure
    assert "'Greeting' object has no attribute 'nmae'" in failure


async def test_a_saga_that_swallows_the_error_is_told_to_re_raise(
    tmp_path: Path, client: Client
) -> None:
    _, code = notebook_code("compensation", "solution")
    path = tmp_path / "exercise_compensation.py"
    path.write_text(code.replace("            raise  #", "            return 'failed'  #"))
    result = await check("compensation", path, client=client)
    assert any("re-raise the error" in failure for failure in result.failures), str(result)


async def test_the_changed_module_is_loaded_fresh(tmp_path: Path, client: Client) -> None:
    path = tmp_path / "exercise_first_workflow.py"
    path.write_text(notebook_code("first-workflow", "practice")[1])
    first = await check("first-workflow", path, client=client)
    path.write_text(notebook_code("first-workflow", "solution")[1])
    second = await check("first-workflow", path, client=client)
    assert (first.passed, second.passed) == (False, True)


async def test_unknown_exercise_name() -> None:
    with pytest.raises(UnknownExercise, match="use one of first-workflow"):
        await check("first-workfow")
