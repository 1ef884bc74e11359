"""Generate the course frame: the course index, previous/next links, the glossary's term list.

Usage:
    python tools/navigation.py            # write everything that changed
    python tools/navigation.py --check    # change nothing; exit 1 and list what would change
    python tools/navigation.py --only 00 01 07 99   # touch only these notebooks (the index is
                                                    # still written in full)

What it writes, all from the notebooks themselves and from ``sagakit.course.glossary``:

- ``notebooks/README.md``: the course index (title, terms and minutes of each lesson);
- the lesson table in the top-level ``README.md``, between the lines
  ``<!-- course-index:start -->`` and ``<!-- course-index:end -->``;
- a Markdown cell at the top and at the bottom of every notebook with links to the previous
  and the next notebook, the index and the glossary. The cells carry
  ``"course_navigation": "top"`` (or ``"bottom"``) in their metadata and start with an HTML
  comment that says the same, so a re-run replaces them instead of adding more;
- the term list of the glossary notebook (the Markdown cell marked ``glossary:terms``).

Only Markdown cells change: code cells and outputs are never touched, so nbval results stay
the same and no notebook needs re-executing.

A lesson is ``notebooks/NN-words.ipynb``, or ``notebooks/NNx-words.ipynb`` with one lowercase
letter after the number for a lesson added between two others (``00a`` comes after ``00`` and
before ``01``). Its title is the first ``#`` heading of its first cell (after ``NN ·``), its
minutes come from ``metadata.course.minutes`` or else from "about N minutes" in that cell, and
its terms are the glossary terms whose notebook it is.

Notebooks in sub-folders are never lessons. ``notebooks/solutions/`` holds the solved edition of
each lesson (the index says so in one line, once the folder exists) and, in
``notebooks/solutions/exercises/``, the exercise solutions that the index links to (a solution
still beside its practice notebook in ``notebooks/exercises/`` is linked there).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sagakit.course.glossary import PARTS, TERMS, terms_in  # noqa: E402

NOTEBOOKS = ROOT / "notebooks"
README = ROOT / "README.md"
INDEX = NOTEBOOKS / "README.md"
GLOSSARY = "99-glossary.ipynb"
INSTRUCTOR_GUIDE = "../docs/instructor-guide.md"
SOLUTIONS = "solutions"
"""The folder (under ``notebooks/``) of the solved lessons, and of the exercise solutions."""

INDEX_START = "<!-- course-index:start -->"
INDEX_END = "<!-- course-index:end -->"
NAV_KEY = "course_navigation"
NAV_MARKER = "<!-- course-navigation:{where} -->"
TERMS_KEY = "course_glossary"
TERMS_MARKER = "<!-- glossary:terms -->"

LESSON_NAME = re.compile(r"^(\d\d)([a-z]?)-[\w-]+\.ipynb$")
"""A lesson's file name: its number, an optional letter, words (``07a-activity-timeouts.ipynb``)."""
_TITLE = re.compile(r"^#\s+(.+?)\s*$", re.M)
_MINUTES = re.compile(r"about\s+(\d+)\s+minutes", re.I)
_PART_TITLES = {
    "distributed systems": "Part I · The vocabulary of distributed systems",
    "Temporal": "Part II · The vocabulary of Temporal",
    "sagas": "Part III · Sagas",
}


class NavigationError(Exception):
    """A notebook lacks what the index needs (a title, its minutes)."""


@dataclass(frozen=True)
class Lesson:
    """What the index says about one notebook."""

    path: Path
    """The notebook file."""

    number: str
    """Two digits from the file name and its letter if it has one, e.g. ``"03"`` or ``"07a"``."""

    title: str
    """The title without the number, e.g. ``"ACID 🧪: atomicity ⚛️, …"``."""

    minutes: int | None
    """Teaching minutes, or None for the glossary (no fixed time)."""

    terms: tuple[str, ...]
    """Labels of the glossary terms the lesson demonstrates."""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def heading(self) -> str:
        """``"03 · ACID 🧪: …"``: how links to the lesson are labelled."""
        return f"{self.number} · {self.title}"


def _source(cell: dict[str, Any]) -> str:
    source = cell["source"]
    return source if isinstance(source, str) else "".join(source)


def _is_generated(cell: dict[str, Any], key: str, marker: str) -> bool:
    return cell["cell_type"] == "markdown" and (
        key in cell.get("metadata", {}) or _source(cell).lstrip().startswith(marker)
    )


def is_navigation(cell: dict[str, Any]) -> bool:
    """True for a navigation cell this tool writes (its metadata key, or its marker)."""
    return _is_generated(cell, NAV_KEY, "<!-- course-navigation:")


def _read(path: Path) -> dict[str, Any]:
    notebook: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return notebook


def read_lesson(path: Path) -> Lesson:
    """Read a notebook's number, title, minutes and terms.

    Raises:
        NavigationError: the first cell has no ``#`` title, or a lesson gives no minutes.
    """
    match = LESSON_NAME.match(path.name)
    if not match:
        raise NavigationError(
            f"{path.name}: lesson files are named NN-words.ipynb (or NNa-words.ipynb)"
        )
    notebook = _read(path)
    first = next((c for c in notebook["cells"] if not is_navigation(c)), None)
    text = _source(first) if first is not None and first["cell_type"] == "markdown" else ""
    title_match = _TITLE.search(text)
    if not title_match:
        raise NavigationError(
            f"{path.name}: the first cell must be Markdown starting with a title "
            "like '# 03 · ACID 🧪'. Add one."
        )
    title = title_match.group(1)
    number = match.group(1) + match.group(2)
    title = re.sub(rf"^{number}\s*·\s*", "", title)
    minutes = notebook.get("metadata", {}).get("course", {}).get("minutes")
    if minutes is None and (minutes_match := _MINUTES.search(text)):
        minutes = int(minutes_match.group(1))
    if minutes is None and path.name != GLOSSARY:
        raise NavigationError(
            f"{path.name}: say how long the lesson takes, as 'about N minutes' in the first "
            "cell or as metadata.course.minutes."
        )
    terms = tuple(term.label for term in terms_in(path.name))
    return Lesson(path, number, title, minutes, terms)


def _lesson_order(path: Path) -> tuple[int, str, str]:
    match = LESSON_NAME.match(path.name)
    assert match is not None
    return int(match.group(1)), match.group(2), path.name


def lessons(folder: Path | None = None) -> list[Lesson]:
    """Every lesson directly in ``folder``, in order (``07``, ``07a``, ``08`` …, the glossary last).

    Only ``folder`` itself is searched: the solved editions in ``folder/solutions/`` (and any
    other sub-folder) are never lessons. ``folder`` defaults to ``NOTEBOOKS`` (read at call time).
    """
    folder = NOTEBOOKS if folder is None else folder
    paths = [p for p in folder.glob("*.ipynb") if p.is_file() and LESSON_NAME.match(p.name)]
    return [read_lesson(p) for p in sorted(paths, key=_lesson_order)]


@dataclass(frozen=True)
class Exercise:
    """A practice notebook in ``notebooks/exercises/`` and its solution.

    The solution is looked for in ``notebooks/solutions/exercises/`` first (where the solved
    notebooks live), then beside the practice notebook (where they used to be).
    """

    practice: str
    """Path of the practice notebook, relative to ``notebooks/``."""

    solution: str | None
    """Path of the solution notebook, or None when there is none."""

    title: str
    """The title, without "(practice)"."""

    minutes: int | None
    """Minutes given in the first cell, if any."""


def _solution_of(practice: Path, folder: Path) -> Path | None:
    """The solution notebook of ``practice``: in ``solutions/exercises/`` if there, else beside it."""
    name = practice.name.replace("-practice.", "-solution.")
    for candidate in (folder / SOLUTIONS / "exercises" / name, practice.with_name(name)):
        if candidate.is_file():
            return candidate
    return None


def exercises(folder: Path | None = None) -> list[Exercise]:
    """The practice notebooks under ``folder/exercises`` (``NOTEBOOKS``), with their solutions."""
    folder = NOTEBOOKS if folder is None else folder
    found = []
    for path in sorted((folder / "exercises").glob("*-practice.ipynb")):
        cells = [c for c in _read(path)["cells"] if not is_navigation(c)]
        text = _source(cells[0]) if cells else ""
        title_match = _TITLE.search(text)
        title = title_match.group(1) if title_match else path.stem
        title = re.sub(r"\s*\(practice\)\s*$", "", title)
        minutes_match = _MINUTES.search(text)
        solution = _solution_of(path, folder)
        found.append(
            Exercise(
                practice=path.relative_to(folder).as_posix(),
                solution=solution.relative_to(folder).as_posix() if solution else None,
                title=title,
                minutes=int(minutes_match.group(1)) if minutes_match else None,
            )
        )
    return found


def exercise_table(items: Sequence[Exercise]) -> str:
    """The exercises in Markdown: title, practice and solution links, minutes."""
    rows = ["| Exercise | Notebooks | Minutes |", "| --- | --- | ---: |"]
    for item in items:
        links = f"[practice]({item.practice})"
        if item.solution:
            links += f" · [solution]({item.solution})"
        minutes = "—" if item.minutes is None else str(item.minutes)
        rows.append(f"| {item.title} | {links} | {minutes} |")
    return "\n".join(rows)


def _minutes(lesson: Lesson) -> str:
    return "—" if lesson.minutes is None else str(lesson.minutes)


def _hours(total: int) -> str:
    hours, minutes = divmod(total, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min"


def index_table(course: Sequence[Lesson], prefix: str) -> str:
    """The lesson table in Markdown, with links relative to ``prefix`` (e.g. ``"notebooks/"``)."""
    rows = ["| Lesson | Terms | Minutes |", "| --- | --- | ---: |"]
    for lesson in course:
        terms = ", ".join(lesson.terms) or "—"
        rows.append(f"| [{lesson.heading}]({prefix}{lesson.name}) | {terms} | {_minutes(lesson)} |")
    total = sum(lesson.minutes or 0 for lesson in course)
    rows.append(
        f"| **Total** | {sum(len(lesson.terms) for lesson in course)} terms | "
        f"**{total}** ({_hours(total)}) |"
    )
    return "\n".join(rows)


SOLVED_EDITIONS = (
    "Stuck, or checking your work? The solved edition of every lesson, each exercise filled in, "
    f"is in the folder `{SOLUTIONS}/` (each lesson links its own): one deliberate step away, so "
    "try first.\n"
)
"""The index's one line about the solved editions in ``notebooks/solutions/``."""


def notebooks_readme(
    course: Sequence[Lesson], practice: Sequence[Exercise] = (), *, solved_editions: bool = False
) -> str:
    """The whole of ``notebooks/README.md``.

    With ``solved_editions`` (there is a ``notebooks/solutions/`` folder), one line after the
    table says where the solved lessons are.
    """
    solved = f"\n{SOLVED_EDITIONS}" if solved_editions else ""
    extra = ""
    if practice:
        extra = (
            "\n## Exercises\n\n"
            "Extra practice beside the lessons, each with a worked solution.\n\n"
            f"{exercise_table(practice)}\n"
        )
    return (
        "# Sagas in Practice: the lessons\n\n"
        "<!-- Generated by tools/navigation.py from the notebooks and sagakit/course/glossary.py. "
        "Do not edit by hand: run `python tools/navigation.py`. -->\n\n"
        "Run the notebooks in order; each one starts with what you will learn and ends with an "
        "exercise that checks itself. Minutes are teaching time, exercises included.\n\n"
        f"{index_table(course, '')}\n\n"
        f"Every term, its emoji and a one-line definition: the [glossary]({GLOSSARY}), with a "
        "short self-quiz. Planning a workshop? See the "
        f"[instructor guide]({INSTRUCTOR_GUIDE}).\n" + solved + extra
    )


def readme_with_index(readme: str, course: Sequence[Lesson]) -> str:
    """``README.md`` with the lesson table between the course-index markers.

    Raises:
        NavigationError: the markers are missing or out of order.
    """
    start, end = readme.find(INDEX_START), readme.find(INDEX_END)
    if start < 0 or end < start:
        raise NavigationError(
            f"README.md needs the lines {INDEX_START} and {INDEX_END} (in that order) "
            "where the lesson table goes. Add them."
        )
    body = f"{INDEX_START}\n{index_table(course, 'notebooks/')}\n"
    return readme[:start] + body + readme[end:]


def navigation_source(course: Sequence[Lesson], position: int, where: str) -> str:
    """The Markdown of the top or bottom navigation cell of ``course[position]``."""
    links = []
    if position > 0:
        previous = course[position - 1]
        links.append(f"◀ [{previous.heading}]({previous.name})")
    links.append("[Course index](README.md)")
    if course[position].name != GLOSSARY and any(c.name == GLOSSARY for c in course):
        links.append(f"[Glossary]({GLOSSARY})")
    if position + 1 < len(course):
        following = course[position + 1]
        label = "Next" if where == "bottom" else ""
        links.append(f"{label + ': ' if label else ''}[{following.heading}]({following.name}) ▶")
    return NAV_MARKER.format(where=where) + "\n" + " · ".join(links)


def _nav_cell(source: str, where: str) -> dict[str, Any]:
    return {
        "cell_type": "markdown",
        "id": f"course-navigation-{where}",
        "metadata": {NAV_KEY: where},
        "source": source,
    }


def glossary_terms_source() -> str:
    """The Markdown of the glossary notebook's term list, grouped by part of the course."""
    out = [TERMS_MARKER]
    for part in PARTS:
        out += [
            "",
            f"### {_PART_TITLES[part]}",
            "",
            "| Term | Meaning | Shown in |",
            "| --- | --- | --- |",
        ]
        for term in TERMS:
            if term.part == part:
                out.append(
                    f"| **{term.name}** {term.emoji} | {term.definition} | "
                    f"[lesson {term.lesson} › {term.heading}]({term.link}) |"
                )
    return "\n".join(out)


def framed_cells(course: Sequence[Lesson], position: int) -> list[dict[str, Any]]:
    """The cells of ``course[position]`` with fresh navigation (and glossary) cells."""
    lesson = course[position]
    cells = [c for c in _read(lesson.path)["cells"] if not is_navigation(c)]
    if lesson.name == GLOSSARY:
        for cell in cells:
            if _is_generated(cell, TERMS_KEY, TERMS_MARKER):
                cell["source"] = glossary_terms_source()
                cell["metadata"] = {**cell.get("metadata", {}), TERMS_KEY: True}
    top = _nav_cell(navigation_source(course, position, "top"), "top")
    bottom = _nav_cell(navigation_source(course, position, "bottom"), "bottom")
    return [top, *cells, bottom]


def _normalized(cells: list[dict[str, Any]]) -> str:
    return json.dumps(
        [{**c, "source": _source(c)} for c in cells], sort_keys=True, ensure_ascii=False
    )


def plan(only: Sequence[str] | None = None) -> dict[Path, str | list[dict[str, Any]]]:
    """What would change: new text per file, or new cells per notebook (only what differs)."""
    course = lessons()
    changes: dict[Path, str | list[dict[str, Any]]] = {}
    index = notebooks_readme(course, exercises(), solved_editions=(NOTEBOOKS / SOLUTIONS).is_dir())
    if not INDEX.exists() or INDEX.read_text(encoding="utf-8") != index:
        changes[INDEX] = index
    readme = README.read_text(encoding="utf-8")
    new_readme = readme_with_index(readme, course)
    if new_readme != readme:
        changes[README] = new_readme
    for position, lesson in enumerate(course):
        if only is not None and lesson.number not in only:
            continue
        cells = framed_cells(course, position)
        if _normalized(cells) != _normalized(_read(lesson.path)["cells"]):
            changes[lesson.path] = cells
    return changes


def _write_cells(path: Path, cells: list[dict[str, Any]]) -> None:
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    notebook.cells = [nbformat.from_dict(cell) for cell in cells]
    nbformat.validate(notebook)
    nbformat.write(notebook, path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 on drift")
    parser.add_argument(
        "--only", nargs="+", metavar="NN", help="notebook numbers to touch (00, 07a …)"
    )
    args = parser.parse_args(argv)
    try:
        changes = plan(args.only)
    except NavigationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path, new in changes.items():
        shown = path.relative_to(ROOT)
        if args.check:
            print(f"would update {shown}")
        elif isinstance(new, str):
            path.write_text(new, encoding="utf-8")
            print(f"updated {shown}")
        else:
            _write_cells(path, new)
            print(f"updated {shown} (navigation cells)")
    if args.check and changes:
        print("The course frame is out of date: run `python tools/navigation.py`.", file=sys.stderr)
        return 1
    if not changes:
        print("course frame up to date")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
