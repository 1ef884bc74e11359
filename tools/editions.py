"""Write each lesson's learner edition from its solved edition, so no learner sees an answer first.

Usage:
    python tools/editions.py                 # write every learner edition, then execute both editions
    python tools/editions.py 03 08           # only these lessons
    python tools/editions.py --no-execute    # write sources only (outputs are then stale)
    python tools/editions.py --check         # change nothing; exit 1 and list the drift
    python tools/editions.py --adopt 03      # move a solved notebooks/03-*.ipynb to
                                             # notebooks/solutions/ and write its learner edition

Two editions of a lesson:

- the **solved edition**, ``notebooks/solutions/NN-name.ipynb``, is the one to edit: all the
  prose, and every exercise solved. An exercise's code cell carries the tag ``exercise`` and
  its unsolved source in ``metadata.sagakit.starter``; the self-check after it carries the tag
  ``exercise-check``;
- the **learner edition**, ``notebooks/NN-name.ipynb``, is what ``make lab`` opens. It is
  generated: the same cells, each ``exercise`` cell holding its starter, and after each
  self-check a short Markdown cell that points at the solved edition. Relative links are
  rewritten for the other folder. Its navigation cells (``metadata.course_navigation``, written
  by ``tools/navigation.py``) are kept as they are; the solved edition's are ignored.

Both editions are executed and committed with their outputs, so nbval checks both: the
solutions still pass, and the starters run without raising and their checks say "○ Not done
yet". ``tests/test_editions.py`` fails when the two drift apart.
"""

from __future__ import annotations

import argparse
import copy
import posixpath
import re
import sys
from collections.abc import Sequence
from pathlib import Path

import nbformat
from nbformat import NotebookNode

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "tools") not in sys.path:
    sys.path.insert(0, str(ROOT / "tools"))

from navigation import LESSON_NAME, NAV_KEY, is_navigation  # noqa: E402
from navigation import SOLUTIONS as SOLUTIONS_FOLDER  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
SOLUTIONS = NOTEBOOKS / SOLUTIONS_FOLDER

EXERCISE_TAG = "exercise"
CHECK_TAG = "exercise-check"
LINK_KEY = "solution_link"
"""``metadata.sagakit.solution_link``: marks the generated cell that points at the solution."""

_MD_LINK = re.compile(r"(\]\()([^)\s]+)(\))")
_EXTERNAL = re.compile(r"^([a-z][a-z0-9+.-]*:|#|/)", re.I)


def _read(path: Path, as_version: int = 4) -> NotebookNode:
    notebook: NotebookNode = nbformat.read(path, as_version=as_version)  # type: ignore[no-untyped-call]
    return notebook


def _write(notebook: NotebookNode, path: Path) -> None:
    nbformat.write(notebook, path)  # type: ignore[no-untyped-call]


class EditionError(Exception):
    """A solved edition breaks the exercise convention (an exercise without a starter...)."""


def tags(cell: NotebookNode) -> list[str]:
    """The cell's tags (``[]`` when it has none)."""
    return list(cell.get("metadata", {}).get("tags", []))


def starter(cell: NotebookNode) -> str:
    """The unsolved source of an ``exercise`` cell.

    Raises:
        EditionError: the cell has no ``metadata.sagakit.starter``.
    """
    text = cell.get("metadata", {}).get("sagakit", {}).get("starter")
    if not isinstance(text, str) or not text.strip():
        raise EditionError(f"an exercise cell has no metadata.sagakit.starter:\n{cell.source}")
    return text


def has_exercise(notebook: NotebookNode) -> bool:
    """True when a notebook has at least one ``exercise`` cell."""
    return any(EXERCISE_TAG in tags(c) for c in notebook.cells)


def _rewrite_links(source: str, move: str) -> str:
    """Rewrite relative Markdown links for a notebook moved by ``move`` (``"solutions"`` or ``".."``)."""

    def fix(match: re.Match[str]) -> str:
        target = match.group(2)
        if _EXTERNAL.match(target):
            return match.group(0)
        path, hash_, anchor = target.partition("#")
        if not path:
            return match.group(0)
        if move == "..":
            new = posixpath.relpath(posixpath.normpath(posixpath.join(SOLUTIONS_FOLDER, path)))
        else:
            new = posixpath.relpath(path, SOLUTIONS_FOLDER)
        return f"{match.group(1)}{new}{hash_}{anchor}{match.group(3)}"

    return _MD_LINK.sub(fix, source)


def solution_link_cell(solved_name: str, number: int) -> NotebookNode:
    """The generated cell after a self-check: where the solution is, one deliberate step away."""
    cell: NotebookNode = nbformat.v4.new_markdown_cell(  # type: ignore[no-untyped-call]
        f"Stuck, or done and curious? A solution is in the solved edition, "
        f"[`{SOLUTIONS_FOLDER}/{solved_name}`]({SOLUTIONS_FOLDER}/{solved_name}): open it once "
        "you have tried."
    )
    cell.id = f"solution-link-{number}"
    cell.metadata = {"sagakit": {LINK_KEY: True}}
    return cell


def learner_edition(solved: NotebookNode, name: str, previous: NotebookNode | None) -> NotebookNode:
    """The learner edition of ``solved`` (called ``name``), keeping ``previous``'s navigation.

    Code cells keep the solved edition's outputs except the exercise cells, whose outputs are
    cleared: execute the result before committing it.
    """
    learner = copy.deepcopy(solved)
    cells: list[NotebookNode] = []
    links = 0
    for cell in solved.cells:
        if is_navigation(cell):
            continue
        cell = copy.deepcopy(cell)
        if EXERCISE_TAG in tags(cell):
            cell.source = starter(cell)
            cell.outputs = []
            cell.execution_count = None
        elif cell.cell_type == "markdown":
            cell.source = _rewrite_links(cell.source, "..")
        cells.append(cell)
        if CHECK_TAG in tags(cell):
            links += 1
            cells.append(solution_link_cell(name, links))
    if previous is not None:
        top = [c for c in previous.cells if is_navigation(c) and c.metadata.get(NAV_KEY) == "top"]
        bottom = [c for c in previous.cells if is_navigation(c) and c not in top]
        cells = top + cells + bottom
    learner.cells = cells
    return learner


def _comparable(notebook: NotebookNode) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in notebook.cells if not is_navigation(c)]


def drift(solved_path: Path, learner_path: Path) -> list[str]:
    """What differs between a learner edition and the one its solved edition generates."""
    if not learner_path.exists():
        return [f"{learner_path.relative_to(ROOT)} is missing"]
    solved = _read(solved_path, as_version=4)
    learner = _read(learner_path, as_version=4)
    wanted = _comparable(learner_edition(solved, solved_path.name, None))
    found = _comparable(learner)
    problems = []
    if len(wanted) != len(found):
        problems.append(f"{len(found)} cells, {len(wanted)} expected")
    for number, (want, got) in enumerate(zip(wanted, found, strict=False)):
        if want != got:
            problems.append(
                f"cell {number} differs: {got[1][:60]!r}... expected {want[1][:60]!r}..."
            )
            break
    return [f"{learner_path.relative_to(ROOT)}: {p}" for p in problems]


def solved_editions(numbers: Sequence[str] = ()) -> list[Path]:
    """The solved editions under ``notebooks/solutions/`` (only ``numbers`` when given)."""
    found = sorted(p for p in SOLUTIONS.glob("*.ipynb") if LESSON_NAME.match(p.name))
    return [p for p in found if not numbers or p.name[:2] in numbers]


def write_learner(solved_path: Path) -> Path:
    """Write the learner edition of one solved edition; returns its path."""
    learner_path = NOTEBOOKS / solved_path.name
    solved = _read(solved_path, as_version=4)
    previous = _read(learner_path, as_version=4) if learner_path.exists() else None
    _write(learner_edition(solved, solved_path.name, previous), learner_path)
    return learner_path


def adopt(number: str) -> Path:
    """Move the solved ``notebooks/NN-*.ipynb`` to ``notebooks/solutions/``; returns its new path.

    Its navigation cells stay behind in the learner edition, and its relative links are
    rewritten for the new folder.

    Raises:
        EditionError: there is no such lesson, it has no exercise cell, or it was adopted already.
    """
    matches = [p for p in NOTEBOOKS.glob(f"{number}-*.ipynb") if LESSON_NAME.match(p.name)]
    if len(matches) != 1:
        raise EditionError(f"no single notebooks/{number}-*.ipynb: {matches}")
    source = matches[0]
    target = SOLUTIONS / source.name
    if target.exists():
        raise EditionError(f"{target.relative_to(ROOT)} exists already")
    notebook = _read(source, as_version=4)
    if not has_exercise(notebook):
        raise EditionError(f"{source.name} has no cell tagged {EXERCISE_TAG!r}")
    solved = copy.deepcopy(notebook)
    solved.cells = [c for c in notebook.cells if not is_navigation(c)]
    for cell in solved.cells:
        if cell.cell_type == "markdown":
            cell.source = _rewrite_links(cell.source, SOLUTIONS_FOLDER)
    SOLUTIONS.mkdir(exist_ok=True)
    _write(solved, target)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="lesson numbers, e.g. 03 08 (default: all)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on drift")
    parser.add_argument("--adopt", action="store_true", help="move solved lessons to solutions/")
    parser.add_argument("--no-execute", action="store_true", help="do not execute the editions")
    args = parser.parse_args(argv)

    if args.check:
        problems = [
            problem
            for path in solved_editions(args.lessons)
            for problem in drift(path, NOTEBOOKS / path.name)
        ]
        for problem in problems:
            print(problem)
        return 1 if problems else 0

    if args.adopt:
        if not args.lessons:
            parser.error("--adopt needs lesson numbers")
        solved = [adopt(number) for number in args.lessons]
    else:
        solved = solved_editions(args.lessons)
    written: list[Path] = []
    for path in solved:
        written += [path, write_learner(path)]
        print(f"wrote {(NOTEBOOKS / path.name).relative_to(ROOT)} from {path.relative_to(ROOT)}")
    if not args.no_execute:
        from execute_notebooks import execute  # type: ignore[import-not-found]

        for path in written:
            print(f"executing {path.relative_to(ROOT)} ...", flush=True)
            print(f"  done in {execute(path):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
