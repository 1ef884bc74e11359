"""The exercise checks, run on the code the exercise notebooks really contain.

Each notebook's ``%%exercise_module`` cell is the code a learner starts from
(practice, in ``notebooks/exercises/``) or the worked answer (solution, in
``notebooks/solutions/exercises/``, one deliberate step away). The solution must
pass its check against the real server; the untouched practice code must fail it,
with a ✗ line that says what to change. A few broken modules show that the check
explains a mistake instead of raising, and points at the line of the cell.
"""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path
from typing import Any

import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from temporalio.client import Client
from traitlets.config import Config

from sagakit.course.exercises import (
    EXERCISES,
    NOT_DONE,
    CheckLine,
    CheckResult,
    UnknownExercise,
    check,
    scratch_path,
    write_exercise_module,
)
from tests.helpers import ROOT

PRACTICE_DIR = ROOT / "notebooks" / "exercises"
SOLUTION_DIR = ROOT / "notebooks" / "solutions" / "exercises"

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

MAGIC = "%%exercise_module "


def notebook_path(name: str, kind: str) -> Path:
    """Return the practice or solution notebook of an exercise."""
    folder = PRACTICE_DIR if kind == "practice" else SOLUTION_DIR
    return folder / f"{NOTEBOOKS[name]}-{kind}.ipynb"


def notebook_cells(name: str, kind: str) -> list[Any]:
    """Return the cells of an exercise notebook (each with ``.source`` as one string)."""
    notebook = nbformat.reads(notebook_path(name, kind).read_text(), as_version=4)  # type: ignore[no-untyped-call]
    return list(notebook.cells)


def notebook_cell(name: str, kind: str) -> str:
    """Return the whole ``%%exercise_module`` cell of an exercise notebook, magic line included."""
    for cell in notebook_cells(name, kind):
        if cell.cell_type == "code" and cell.source.startswith(MAGIC):
            assert cell.source.splitlines()[0] == MAGIC + name
            return str(cell.source)
    raise AssertionError(f"{notebook_path(name, kind).name} has no %%exercise_module cell")


def notebook_code(name: str, kind: str) -> str:
    """Return the code of the ``%%exercise_module`` cell, below the magic line."""
    return notebook_cell(name, kind).partition("\n")[2]


async def check_code(name: str, code: str, tmp_path: Path, client: Client) -> CheckResult:
    """Save ``code`` the way ``%%exercise_module`` does, and check it."""
    path = write_exercise_module(name, code, tmp_path)
    return await check(name, path, client=client)


def cell_line(cell: str, text: str) -> int:
    """Return the (1-based) line of ``cell`` that contains ``text``: the number a learner sees."""
    return next(n for n, line in enumerate(cell.splitlines(), start=1) if text in line)


# -- where the notebooks are -------------------------------------------------------------------


def test_practice_and_solution_notebooks_live_apart() -> None:
    assert set(NOTEBOOKS) == set(EXERCISES)
    for name in NOTEBOOKS:
        assert notebook_path(name, "practice").is_file()
        assert notebook_path(name, "solution").is_file()
    # The folder the learner works in holds no answer: it is one deliberate step away.
    assert not list(PRACTICE_DIR.glob("*solution*"))


@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_practice_links_to_its_solution_and_back(name: str) -> None:
    stem = NOTEBOOKS[name]
    for kind, other in (
        ("practice", f"../solutions/exercises/{stem}-solution.ipynb"),
        ("solution", f"../../exercises/{stem}-practice.ipynb"),
    ):
        text = " ".join(c.source for c in notebook_cells(name, kind))
        assert f"]({other})" in text
        folder = notebook_path(name, kind).parent
        for link in re.findall(r"\]\(([^)#:]+\.ipynb)\)", text):
            assert (folder / link).is_file(), f"{kind} of {name}: {link} does not exist"


# -- the checks on the notebooks' own code -------------------------------------------------------


@pytest.mark.parametrize("name", list(NOTEBOOKS))
async def test_solution_passes(name: str, tmp_path: Path, client: Client) -> None:
    result = await check_code(name, notebook_code(name, "solution"), tmp_path, client)
    assert result.passed, str(result)
    assert "✗" not in str(result)
    assert NOT_DONE not in str(result)


@pytest.mark.parametrize("name", list(NOTEBOOKS))
async def test_practice_fails_with_a_hint(name: str, tmp_path: Path, client: Client) -> None:
    result = await check_code(name, notebook_code(name, "practice"), tmp_path, client)
    assert not result.passed
    assert any(PRACTICE_HINTS[name] in failure for failure in result.failures), str(result)
    assert "Traceback" not in str(result)


async def test_untouched_practice_code_is_not_done_yet_at_the_cells_todo_lines(
    tmp_path: Path, client: Client
) -> None:
    cell = notebook_cell("saga", "practice")
    result = await check_code("saga", notebook_code("saga", "practice"), tmp_path, client)
    todos = [n for n, line in enumerate(cell.splitlines(), start=1) if "TODO" in line]
    first = str(result).splitlines()[0]
    assert first.startswith(NOT_DONE), str(result)
    assert f"lines {', '.join(map(str, todos[:-1]))} and {todos[-1]} of your cell" in first


# -- line numbers match the cell -----------------------------------------------------------------


def test_the_saved_module_has_the_cells_line_numbers(tmp_path: Path) -> None:
    cell = notebook_cell("saga", "practice")
    path = write_exercise_module("saga", cell.partition("\n")[2], tmp_path)
    saved = path.read_text().splitlines()
    assert saved[0] == ""  # stands for the %%exercise_module line
    assert saved[1:] == cell.splitlines()[1:]


async def test_a_syntax_error_names_the_cells_line(tmp_path: Path, client: Client) -> None:
    cell = (
        f"{MAGIC}first-workflow\nfrom temporalio import workflow\n\nclass HelloWorkflow\n    pass\n"
    )
    result = await check_code("first-workflow", cell.partition("\n")[2], tmp_path, client)
    assert len(result.failures) == 1
    assert (
        f"syntax error on line {cell_line(cell, 'class Hello')} of your cell"
        in (result.failures[0])
    )


async def test_an_import_error_names_the_cells_line(tmp_path: Path, client: Client) -> None:
    cell = notebook_cell("first-workflow", "solution").replace(
        "@workflow.defn", "print(undefined_name)\n\n\n@workflow.defn"
    )
    result = await check_code("first-workflow", cell.partition("\n")[2], tmp_path, client)
    line = cell_line(cell, "undefined_name")
    assert f"raised NameError on line {line} of your cell" in result.failures[0], str(result)


async def test_a_bug_in_workflow_code_names_the_cells_line_and_is_not_retried_forever(
    tmp_path: Path, client: Client
) -> None:
    cell = notebook_cell("first-workflow", "solution").replace(
        "return await", "greeting.nmae\n        return await"
    )
    result = await check_code("first-workflow", cell.partition("\n")[2], tmp_path, client)
    assert not result.passed
    failure = result.failures[-1]
    assert f"raised an error on line {cell_line(cell, 'greeting.nmae')} of your cell" in failure
    assert "'Greeting' object has no attribute 'nmae'" in failure


async def test_a_machine_call_is_reported_at_the_cells_line(tmp_path: Path, client: Client) -> None:
    cell = notebook_cell("determinism", "practice")
    result = await check_code("determinism", cell.partition("\n")[2], tmp_path, client)
    line = cell_line(cell, "datetime.now(")
    assert any(f"line {line} calls datetime.now()" in f for f in result.failures), str(result)


# -- the scratch folder ------------------------------------------------------------------------


def test_the_magic_saves_the_cell_in_the_scratch_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))  # leave ~/.ipython alone
    config = Config()
    config.HistoryManager.enabled = False
    shell = InteractiveShell.instance(config=config)
    shell.run_line_magic("load_ext", "sagakit.course.exercises")
    cell = notebook_cell("first-workflow", "practice")
    outcome = shell.run_cell(cell)  # type: ignore[no-untyped-call]
    assert outcome.success, outcome.error_in_exec
    saved = tmp_path / "scratch" / "exercise_first_workflow.py"
    assert saved == scratch_path("exercise_first_workflow.py")
    assert saved.read_text().splitlines() == ["", *cell.splitlines()[1:]]
    assert "HelloWorkflow" not in shell.user_ns  # saved, not run in the notebook
    assert "Saved your code as scratch/exercise_first_workflow.py" in capsys.readouterr().out


async def test_the_check_reads_the_scratch_folder_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: Client
) -> None:
    monkeypatch.chdir(tmp_path)
    write_exercise_module("first-workflow", notebook_code("first-workflow", "solution"))
    result = await check("first-workflow", client=client)
    assert result.passed, str(result)


@pytest.mark.parametrize("folder", [PRACTICE_DIR, SOLUTION_DIR])
def test_the_scratch_folder_is_ignored_by_git(folder: Path) -> None:
    path = scratch_path("exercise_saga.py", folder)
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(path.relative_to(ROOT))], cwd=ROOT, check=False
    )
    assert ignored.returncode == 0, f"{path.relative_to(ROOT)} is not in .gitignore"


def test_an_unknown_exercise_in_the_magic_is_explained(tmp_path: Path) -> None:
    with pytest.raises(UnknownExercise, match="%%exercise_module followed by one of"):
        write_exercise_module("sagas", "pass\n", tmp_path)
    assert not (tmp_path / "scratch").exists()


# -- what the learner sees -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["practice", "solution"])
@pytest.mark.parametrize("name", list(NOTEBOOKS))
def test_the_check_cell_prints_to_stdout(name: str, kind: str) -> None:
    cells = notebook_cells(name, kind)
    checks = [c for c in cells if c.cell_type == "code" and "await check(" in c.source]
    assert len(checks) == 1
    outputs = checks[0].outputs
    assert [(o.output_type, o.get("name")) for o in outputs] == [("stream", "stdout")]
    text = outputs[0].text
    if kind == "solution":
        assert "✓" in text
        assert "✗" not in text
        assert NOT_DONE not in text
    else:
        assert text.startswith(NOT_DONE)
        assert "✗" in text
        assert "well done" not in text


def test_the_html_form_colours_each_mark_not_the_whole_result() -> None:
    result = CheckResult("x", (CheckLine(True, "this part is right"), CheckLine(False, "not this")))
    page = result._repr_html_()
    red = re.findall(r'<span style="color:#cf222e">(.*?)</span>', page)
    green = re.findall(r'<span style="color:#1a7f37">(.*?)</span>', page)
    assert (red, green) == (["✗"], ["✓"])
    assert page.startswith("<pre>")
    assert html.escape("this part is right") in page


# -- the checks accept every correct answer the lessons teach ---------------------------------


PARALLEL_UNDOS = """\
            await asyncio.gather(
                *(
                    workflow.execute_activity_method(
                        undo, trip, start_to_close_timeout=STEP_TIMEOUT, retry_policy=UNDO_RETRY
                    )
                    for undo in undos  # all at once: the order they are started in is no order
                )
            )
"""


def parallel_compensation() -> str:
    code = notebook_code("compensation", "solution")
    loop = re.search(r"( +)for undo in reversed\(undos\):.*?\n(?:\1 .*\n)+", code)
    assert loop is not None
    return "import asyncio\n" + code.replace(loop.group(0), PARALLEL_UNDOS)


async def test_a_parallel_compensation_passes(tmp_path: Path, client: Client) -> None:
    code = parallel_compensation()
    assert "reversed" not in code
    result = await check_code("compensation", code, tmp_path, client)
    assert result.passed, str(result)


async def test_undos_one_after_another_oldest_first_still_fail(
    tmp_path: Path, client: Client
) -> None:
    code = notebook_code("compensation", "solution").replace("reversed(undos)", "undos")
    result = await check_code("compensation", code, tmp_path, client)
    assert any("undo the newest step first" in f for f in result.failures), str(result)


async def test_a_saga_with_parallel_compensation_passes(tmp_path: Path, client: Client) -> None:
    code = notebook_code("saga", "solution").replace("Saga()", "Saga(parallel=True)")
    assert "parallel=True" in code
    result = await check_code("saga", code, tmp_path, client)
    assert result.passed, str(result)


# -- and reject the wrong ones ----------------------------------------------------------------


async def test_a_saga_that_drops_the_requests_amounts_fails(tmp_path: Path, client: Client) -> None:
    code = notebook_code("saga", "solution").replace(
        "replace(breakfast, idempotency_key=breakfast.breakfast_id)",
        "BreakfastRequest(breakfast.breakfast_id, idempotency_key=breakfast.breakfast_id)",
    )
    assert "BreakfastRequest(breakfast.breakfast_id" in code
    result = await check_code("saga", code, tmp_path, client)
    assert not result.passed
    wrong = [f for f in result.failures if "a new BreakfastRequest loses the fields" in f]
    assert len(wrong) == 1, str(result)
    assert "45 g and 150 ml" in wrong[0]


async def test_a_saga_that_swallows_the_error_is_told_to_re_raise(
    tmp_path: Path, client: Client
) -> None:
    code = notebook_code("compensation", "solution")
    code = code.replace("            raise  #", "            return 'failed'  #")
    result = await check_code("compensation", code, tmp_path, client)
    assert any("re-raise the error" in failure for failure in result.failures), str(result)


async def test_missing_file_is_explained(tmp_path: Path, client: Client) -> None:
    result = await check("first-workflow", tmp_path / "exercise_first_workflow.py", client=client)
    assert not result.passed
    assert "Run the cell that starts with %%exercise_module" in result.failures[0]


async def test_wrong_class_name_is_explained(tmp_path: Path, client: Client) -> None:
    code = notebook_code("first-workflow", "solution").replace("HelloWorkflow", "GreetWorkflow")
    result = await check_code("first-workflow", code, tmp_path, client)
    assert "has no class HelloWorkflow. It defines GreetWorkflow." in result.failures[0]


async def test_the_changed_module_is_loaded_fresh(tmp_path: Path, client: Client) -> None:
    first = await check_code(
        "first-workflow", notebook_code("first-workflow", "practice"), tmp_path, client
    )
    second = await check_code(
        "first-workflow", notebook_code("first-workflow", "solution"), tmp_path, client
    )
    assert (first.passed, second.passed) == (False, True)


async def test_unknown_exercise_name() -> None:
    with pytest.raises(UnknownExercise, match="use one of first-workflow"):
        await check("first-workfow")
