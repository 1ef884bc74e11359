"""Each lesson ships twice: solved (notebooks/solutions/) and for learners (notebooks/), in step.

The learner edition is generated from the solved one by ``tools/editions.py``. These tests fail
when someone edits one edition and not the other, when a learner edition shows a solution, or
when a committed check output is not what the edition should say ("○ Not done yet" for the
learner, "✓" for the solution).
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import nbformat
import psutil  # type: ignore[import-untyped]
import pytest
from nbformat import NotebookNode

from tests.helpers import ROOT, load_tool

editions = load_tool("editions")

SOLVED = editions.solved_editions()
LESSONS = sorted(p for p in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))


def _read(path: Path) -> NotebookNode:
    notebook: NotebookNode = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    return notebook


def _write(notebook: NotebookNode, path: Path) -> None:
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]


def _new_notebook() -> NotebookNode:
    notebook: NotebookNode = nbformat.v4.new_notebook()  # type: ignore[no-untyped-call]
    return notebook


def _tagged(notebook: NotebookNode, tag: str) -> list[NotebookNode]:
    return [c for c in notebook.cells if tag in c.get("metadata", {}).get("tags", [])]


def _stdout(cell: NotebookNode) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout")


def test_there_are_solved_editions() -> None:
    assert len(SOLVED) >= 10


@pytest.mark.parametrize("solved", SOLVED, ids=lambda p: p.name)
def test_learner_edition_is_generated_from_the_solved_one(solved: Path) -> None:
    problems = editions.drift(solved, ROOT / "notebooks" / solved.name)
    assert not problems, (
        "The learner edition drifted from its solved edition; edit the solved edition and run "
        "`make editions`:\n" + "\n".join(problems)
    )


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.name)
def test_every_lesson_with_an_exercise_has_both_editions(lesson: Path) -> None:
    notebook = _read(lesson)
    if not _tagged(notebook, editions.EXERCISE_TAG) and not _tagged(notebook, editions.CHECK_TAG):
        return
    assert (editions.SOLUTIONS / lesson.name).exists(), (
        f"{lesson.name} has an exercise but no solved edition: run "
        f"`python tools/editions.py --adopt {lesson.name[:2]}`"
    )


@pytest.mark.parametrize("solved", SOLVED, ids=lambda p: p.name)
def test_learner_edition_shows_no_solution(solved: Path) -> None:
    learner_path = ROOT / "notebooks" / solved.name
    learner = _read(learner_path)
    solved_nb = _read(solved)
    exercises = _tagged(solved_nb, editions.EXERCISE_TAG)
    assert exercises, f"{solved.name} has no cell tagged 'exercise'"
    learner_sources = [c.source for c in learner.cells]
    for cell in exercises:
        assert cell.source != editions.starter(cell), "an exercise's solution equals its starter"
        assert cell.source not in learner_sources, (
            "a solved exercise cell is in the learner edition"
        )
    text = learner_path.read_text(encoding="utf-8")
    assert "working answer" not in text.lower()
    assert "working answer" not in solved.read_text(encoding="utf-8").lower()


@pytest.mark.parametrize("solved", SOLVED, ids=lambda p: p.name)
def test_committed_checks_say_not_done_for_learners_and_done_for_solutions(solved: Path) -> None:
    learner_checks = _tagged(_read(ROOT / "notebooks" / solved.name), editions.CHECK_TAG)
    solved_checks = _tagged(_read(solved), editions.CHECK_TAG)
    assert learner_checks, f"{solved.name} has no cell tagged 'exercise-check'"
    assert len(learner_checks) == len(solved_checks)
    for cell in learner_checks:
        said = _stdout(cell)
        assert said.startswith("○ Not done yet:"), f"learner check says {said!r}"
        assert "✓" not in said
        assert "✗" not in said
    for cell in solved_checks:
        said = _stdout(cell)
        assert said.startswith("✓"), f"solved check says {said!r}"
        assert "✗" not in said
        assert "Not done yet" not in said


@pytest.mark.parametrize("solved", SOLVED, ids=lambda p: p.name)
def test_learner_edition_points_at_its_solution(solved: Path) -> None:
    learner = _read(ROOT / "notebooks" / solved.name)
    cells = learner.cells
    for number, cell in enumerate(cells):
        if editions.CHECK_TAG in cell.get("metadata", {}).get("tags", []):
            link = cells[number + 1]
            assert f"](solutions/{solved.name})" in link.source


def test_solved_editions_have_no_navigation_cells() -> None:
    for path in SOLVED:
        assert not [c for c in _read(path).cells if editions.is_navigation(c)], path.name


# --- the tool itself, on small notebooks ------------------------------------------------------


def _cell(kind: str, source: str, **metadata: Any) -> NotebookNode:
    make = nbformat.v4.new_code_cell if kind == "code" else nbformat.v4.new_markdown_cell
    cell: NotebookNode = make(source)  # type: ignore[no-untyped-call]
    cell.metadata.update(metadata)
    return cell


def _solved() -> NotebookNode:
    notebook: NotebookNode = _new_notebook()
    notebook.cells = [
        _cell(
            "markdown", "# 42 · Tiny\n\nSee [lesson 05](../05-x.ipynb#y) and [web](https://a.b)."
        ),
        _cell(
            "code",
            "ANSWER = 42  # Solution",
            tags=["exercise"],
            sagakit={"starter": "ANSWER = None  # TODO"},
        ),
        _cell("code", "print('✓' if ANSWER else '○ Not done yet: ...')", tags=["exercise-check"]),
        _cell("markdown", "## Summary"),
    ]
    return notebook


def test_learner_edition_swaps_starters_links_and_keeps_navigation() -> None:
    previous: NotebookNode = _new_notebook()
    previous.cells = [
        _cell("markdown", "<!-- course-navigation:top -->\nprev", course_navigation="top"),
        _cell("markdown", "old text"),
        _cell("markdown", "<!-- course-navigation:bottom -->\nnext", course_navigation="bottom"),
    ]
    learner = editions.learner_edition(_solved(), "42-tiny.ipynb", previous)
    sources = [c.source for c in learner.cells]
    assert sources[0].endswith("prev")
    assert sources[-1].endswith("next")
    assert "[lesson 05](05-x.ipynb#y)" in sources[1]
    assert "(https://a.b)" in sources[1]
    assert sources[2] == "ANSWER = None  # TODO"
    assert "](solutions/42-tiny.ipynb)" in sources[4]
    assert "ANSWER = 42  # Solution" not in sources
    assert sources[5] == "## Summary"


def test_an_exercise_without_a_starter_is_refused() -> None:
    solved = _solved()
    del solved.cells[1].metadata["sagakit"]
    with pytest.raises(editions.EditionError, match="starter"):
        editions.learner_edition(solved, "42-tiny.ipynb", None)


def test_adopt_then_check_catches_an_edit_to_either_edition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    monkeypatch.setattr(editions, "ROOT", tmp_path)
    monkeypatch.setattr(editions, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(editions, "SOLUTIONS", notebooks / "solutions")
    lesson = _solved()
    lesson.cells[0].source = "# 42 · Tiny\n\nSee [lesson 05](05-x.ipynb)."
    lesson.cells.insert(
        0, _cell("markdown", "<!-- course-navigation:top -->", course_navigation="top")
    )
    _write(lesson, notebooks / "42-tiny.ipynb")

    assert editions.main(["--adopt", "--no-execute", "42"]) == 0
    solved = _read(notebooks / "solutions" / "42-tiny.ipynb")
    learner = _read(notebooks / "42-tiny.ipynb")
    assert "[lesson 05](../05-x.ipynb)" in solved.cells[0].source
    assert not [c for c in solved.cells if editions.is_navigation(c)]
    assert editions.is_navigation(learner.cells[0])
    assert learner.cells[2].source == "ANSWER = None  # TODO"
    assert editions.main(["--check"]) == 0

    learner.cells[2].source = "ANSWER = 42  # someone pasted the answer"
    _write(learner, notebooks / "42-tiny.ipynb")
    capsys.readouterr()
    assert editions.main(["--check"]) == 1
    assert "cell 1 differs" in capsys.readouterr().out

    assert editions.main(["--no-execute"]) == 0
    solved.cells[-1].source = "## Summary, edited only in the solved edition"
    _write(solved, notebooks / "solutions" / "42-tiny.ipynb")
    assert editions.main(["--check"]) == 1
    with pytest.raises(editions.EditionError, match="exists already"):
        editions.adopt("42")


def test_executing_a_path_that_is_no_notebook_is_refused_before_any_kernel_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    execute_notebooks = load_tool("execute_notebooks")
    text = tmp_path / "notes.txt"
    text.write_text("not a notebook")
    for wrong in (tmp_path / "missing.ipynb", text):
        with pytest.raises(SystemExit) as exited:
            execute_notebooks.main([str(wrong)])
        assert exited.value.code == 2
        assert f"not a notebook file: {wrong}" in capsys.readouterr().err


def test_executing_a_notebook_writes_its_outputs_and_ends_its_kernel_quietly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    execute_notebooks = load_tool("execute_notebooks")
    notebook = _new_notebook()
    notebook.cells = [_cell("code", "import os\nprint(os.getpid())")]
    path = tmp_path / "tiny.ipynb"
    _write(notebook, path)
    execute_notebooks.execute(path)
    [cell] = _read(path).cells
    [output] = cell.outputs
    assert cell.execution_count == 1
    # The kernel ended with its notebook (`make notebooks` runs them one after another), and
    # its client's sockets were closed: one left open would warn when collected, which it
    # does here rather than in whichever test this process runs next.
    assert not psutil.pid_exists(int(output.text)), "the notebook's kernel is still running"
    gc.collect()
    # The kernel inherited this process's standard error: whatever it warned landed here.
    printed = capfd.readouterr()
    assert "WARNING" not in printed.err + printed.out, printed
