"""The course index and the previous/next links are generated, so they never drift."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sagakit.course.glossary import TERMS
from tests.helpers import ROOT, load_tool

SCRIPT = ROOT / "tools" / "navigation.py"


nav = load_tool("navigation")


def _notebook(
    path: Path, first: str, *more: str, metadata: dict[str, object] | None = None
) -> None:
    cells = [
        {"cell_type": "markdown", "id": f"c{i}", "metadata": {}, "source": s}
        for i, s in enumerate([first, *more])
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"cells": cells, "metadata": metadata or {}, "nbformat": 4, "nbformat_minor": 5})
    )


def test_check_finds_nothing_to_change() -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, (
        f"The course frame drifted; run `python tools/navigation.py`.\n{result.stdout}{result.stderr}"
    )


def test_every_notebook_has_one_navigation_cell_at_each_end() -> None:
    for lesson in nav.lessons():
        cells = json.loads(lesson.path.read_text())["cells"]
        marks = [c["metadata"].get("course_navigation") for c in cells]
        assert marks[0] == "top", lesson.name
        assert marks[-1] == "bottom", lesson.name
        assert marks.count("top") == marks.count("bottom") == 1, lesson.name


def test_index_lists_each_lesson_with_terms_and_minutes() -> None:
    index = (ROOT / "notebooks" / "README.md").read_text()
    readme = (ROOT / "README.md").read_text()
    for lesson in nav.lessons():
        assert f"[{lesson.heading}]({lesson.name})" in index
        assert f"[{lesson.heading}](notebooks/{lesson.name})" in readme
        for label in lesson.terms:
            assert label in index
    shown = {t.label for t in TERMS if (ROOT / "notebooks" / t.notebook).exists()}
    assert all(label in index for label in shown)


def test_title_minutes_and_terms_are_read_from_the_notebook(tmp_path: Path) -> None:
    _notebook(
        tmp_path / "03-acid-transactions.ipynb",
        "# 03 · ACID 🧪: atomicity\n\n**What you'll learn** (about 30 minutes)",
    )
    _notebook(tmp_path / "04-x.ipynb", "# 04 · X", metadata={"course": {"minutes": 12}})
    course = nav.lessons(tmp_path)
    assert [(c.number, c.title, c.minutes) for c in course] == [
        ("03", "ACID 🧪: atomicity", 30),
        ("04", "X", 12),
    ]
    assert course[0].terms == ("ACID 🧪", "atomicity ⚛️", "isolation 📦", "durability 🗿")


def test_a_lesson_without_minutes_is_an_error_that_says_what_to_add(tmp_path: Path) -> None:
    _notebook(tmp_path / "05-x.ipynb", "# 05 · X")
    with pytest.raises(nav.NavigationError, match="about N minutes"):
        nav.lessons(tmp_path)


def test_links_chain_the_notebooks(tmp_path: Path) -> None:
    for number in ("00", "01", "99"):
        _notebook(tmp_path / f"{number}-n.ipynb", f"# {number} · N{number}\n(about 5 minutes)")
    (tmp_path / "99-glossary.ipynb").write_text((tmp_path / "99-n.ipynb").read_text())
    (tmp_path / "99-n.ipynb").unlink()
    course = nav.lessons(tmp_path)
    first = nav.navigation_source(course, 0, "top")
    middle = nav.navigation_source(course, 1, "bottom")
    last = nav.navigation_source(course, 2, "bottom")
    assert "◀" not in first
    assert "[01 · N01](01-n.ipynb) ▶" in first
    assert "◀ [00 · N00](00-n.ipynb)" in middle
    assert "Next: [99 · N99](99-glossary.ipynb) ▶" in middle
    assert "▶" not in last
    assert "[Glossary]" not in last


def test_rerunning_replaces_the_navigation_cells(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for number in ("00", "01"):
        _notebook(tmp_path / f"{number}-n.ipynb", f"# {number} · N\n(about 5 minutes)", "body")
    monkeypatch.setattr(nav, "NOTEBOOKS", tmp_path)
    course = nav.lessons(tmp_path)
    once = nav.framed_cells(course, 1)
    nav._write_cells(course[1].path, once)
    twice = nav.framed_cells(nav.lessons(tmp_path), 1)
    assert [nav._source(c) for c in twice] == [nav._source(c) for c in once]
    assert [c.get("metadata", {}).get("course_navigation") for c in twice] == [
        "top",
        None,
        None,
        "bottom",
    ]


def test_readme_markers_are_required() -> None:
    with pytest.raises(nav.NavigationError, match="course-index:start"):
        nav.readme_with_index("# A README without markers\n", [])
    text = f"before\n{nav.INDEX_START}\nold table\n{nav.INDEX_END}\nafter\n"
    updated = nav.readme_with_index(text, [])
    assert "old table" not in updated
    assert updated.startswith("before\n")
    assert updated.endswith(f"{nav.INDEX_END}\nafter\n")


def _course(folder: Path, *names: str) -> None:
    """Lesson notebooks named ``NN-words.ipynb`` (or ``99-glossary.ipynb``) titled from their number."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        number = name.split("-")[0]
        _notebook(folder / name, f"# {number} · Lesson {number}\n(about 5 minutes)", "body")


def test_lettered_lessons_come_right_after_their_number(tmp_path: Path) -> None:
    names = [
        "13-long-lived-workflows.ipynb",
        "09a-sagas-under-faults.ipynb",
        "99-glossary.ipynb",
        "07a-activity-timeouts-and-heartbeats.ipynb",
        "00a-asyncio-primer.ipynb",
        "10-y.ipynb",
        "09-sagas.ipynb",
        "08-x.ipynb",
        "07-queries.ipynb",
        "01-concurrency.ipynb",
        "00-welcome.ipynb",
    ]
    _course(tmp_path, *names)
    course = nav.lessons(tmp_path)
    assert [c.number for c in course] == [
        "00", "00a", "01", "07", "07a", "08", "09", "09a", "10", "13", "99",
    ]  # fmt: skip
    primer = course[1]
    assert primer.title == "Lesson 00a", "the number (with its letter) is cut off the title"
    assert primer.heading == "00a · Lesson 00a"
    assert "| [00a · Lesson 00a](00a-asyncio-primer.ipynb) | — | 5 |" in nav.index_table(course, "")
    after_welcome = nav.navigation_source(course, 0, "bottom")
    assert "Next: [00a · Lesson 00a](00a-asyncio-primer.ipynb) ▶" in after_welcome
    top = nav.navigation_source(course, 1, "top")
    assert "◀ [00 · Lesson 00](00-welcome.ipynb)" in top
    assert "[01 · Lesson 01](01-concurrency.ipynb) ▶" in top
    between = nav.navigation_source(course, course.index(course[7]), "top")
    assert "◀ [09 · Lesson 09](09-sagas.ipynb)" in between
    assert "[10 · Lesson 10](10-y.ipynb) ▶" in between


def test_only_one_lowercase_letter_makes_a_lesson(tmp_path: Path) -> None:
    _course(tmp_path, "07-a.ipynb", "07ab-b.ipynb", "07A-c.ipynb", "7a-d.ipynb", "07a_e.ipynb")
    assert [c.name for c in nav.lessons(tmp_path)] == ["07-a.ipynb"]
    with pytest.raises(nav.NavigationError, match="NNa-words"):
        nav.read_lesson(tmp_path / "07ab-b.ipynb")


def test_exercise_solutions_are_linked_where_they_are(tmp_path: Path) -> None:
    practice, moved = tmp_path / "exercises", tmp_path / "solutions" / "exercises"
    for topic in ("01-moved", "02-old-place", "03-both", "04-none"):
        _notebook(practice / f"{topic}-practice.ipynb", f"# {topic} (practice)\nabout 9 minutes")
    for name in ("01-moved-solution.ipynb", "03-both-solution.ipynb"):
        _notebook(moved / name, "# solution")
    for name in ("02-old-place-solution.ipynb", "03-both-solution.ipynb"):
        _notebook(practice / name, "# solution")
    found = {item.title: item.solution for item in nav.exercises(tmp_path)}
    assert found == {
        "01-moved": "solutions/exercises/01-moved-solution.ipynb",
        "02-old-place": "exercises/02-old-place-solution.ipynb",
        "03-both": "solutions/exercises/03-both-solution.ipynb",
        "04-none": None,
    }
    table = nav.exercise_table(nav.exercises(tmp_path))
    assert (
        "| 01-moved | [practice](exercises/01-moved-practice.ipynb) · "
        "[solution](solutions/exercises/01-moved-solution.ipynb) | 9 |"
    ) in table
    assert "| 04-none | [practice](exercises/04-none-practice.ipynb) | 9 |" in table


def test_the_index_says_once_where_the_solved_lessons_are(tmp_path: Path) -> None:
    _course(tmp_path, "00-welcome.ipynb")
    course = nav.lessons(tmp_path)
    with_line = nav.notebooks_readme(course, solved_editions=True)
    assert with_line.count("folder `solutions/`") == 1
    line = next(line for line in with_line.splitlines() if "folder `solutions/`" in line)
    assert "solved edition of every lesson" in line
    assert "folder `solutions/`" not in nav.notebooks_readme(course)


def _temporary_course(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small course in ``tmp_path`` with the navigation tool pointed at it (never the real one)."""
    notebooks = tmp_path / "notebooks"
    _course(notebooks, "00-welcome.ipynb", "00a-asyncio-primer.ipynb", "01-concurrency.ipynb")
    _notebook(notebooks / "99-glossary.ipynb", "# 99 · Glossary")
    solutions = notebooks / "solutions"
    _course(solutions, "00-welcome.ipynb", "00a-asyncio-primer.ipynb")
    _notebook(
        notebooks / "exercises" / "00-first-practice.ipynb", "# First (practice)\nabout 10 minutes"
    )
    _notebook(solutions / "exercises" / "00-first-solution.ipynb", "# First (solution)")
    readme = tmp_path / "README.md"
    readme.write_text(f"# Course\n\n{nav.INDEX_START}\n{nav.INDEX_END}\n")
    monkeypatch.setattr(nav, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(nav, "INDEX", notebooks / "README.md")
    monkeypatch.setattr(nav, "README", readme)
    monkeypatch.setattr(nav, "ROOT", tmp_path)
    assert {lesson.path.parent for lesson in nav.lessons()} == {notebooks}, "never the real course"
    return notebooks


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}  # fmt: skip


def test_the_tool_frames_lettered_lessons_and_leaves_solutions_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    notebooks = _temporary_course(tmp_path, monkeypatch)
    solved_before = _snapshot(notebooks / "solutions")
    assert nav.main([]) == 0
    written = capsys.readouterr().out
    assert "updated notebooks/00a-asyncio-primer.ipynb (navigation cells)" in written
    assert "solutions/" not in written
    assert _snapshot(notebooks / "solutions") == solved_before, "solved editions are not lessons"

    index = (notebooks / "README.md").read_text()
    assert index.index("(00-welcome.ipynb)") < index.index("(00a-asyncio-primer.ipynb)")
    assert index.index("(00a-asyncio-primer.ipynb)") < index.index("(01-concurrency.ipynb)")
    assert "(solutions/00-welcome.ipynb)" not in index
    assert "[solution](solutions/exercises/00-first-solution.ipynb)" in index
    assert index.count("folder `solutions/`") == 1
    assert (
        "[00a · Lesson 00a](notebooks/00a-asyncio-primer.ipynb)"
        in (tmp_path / "README.md").read_text()
    )
    primer = json.loads((notebooks / "00a-asyncio-primer.ipynb").read_text())["cells"]
    assert primer[0]["metadata"] == {"course_navigation": "top"}
    assert "◀ [00 · Lesson 00](00-welcome.ipynb)" in nav._source(primer[0])
    assert "Next: [01 · Lesson 01](01-concurrency.ipynb) ▶" in nav._source(primer[-1])

    assert nav.main(["--check"]) == 0, "a second run finds nothing to change"


def test_only_accepts_a_lettered_number(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    notebooks = _temporary_course(tmp_path, monkeypatch)
    assert set(nav.plan(["00a"])) == {
        notebooks / "README.md",
        tmp_path / "README.md",
        notebooks / "00a-asyncio-primer.ipynb",
    }


def test_the_real_course_frames_on_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real notebooks, copied: every lesson is framed in order, solutions/ is never touched."""
    real = ROOT / "notebooks"
    copy = tmp_path / "notebooks"
    shutil.copytree(real, copy, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "scratch"))
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    monkeypatch.setattr(nav, "NOTEBOOKS", copy)
    monkeypatch.setattr(nav, "INDEX", copy / "README.md")
    monkeypatch.setattr(nav, "README", tmp_path / "README.md")
    monkeypatch.setattr(nav, "ROOT", tmp_path)
    assert {lesson.path.parent for lesson in nav.lessons()} == {copy}, "never the real course"
    solved_before = _snapshot(copy / "solutions") if (copy / "solutions").is_dir() else {}
    changes = nav.plan()
    assert not [p for p in changes if (copy / "solutions") in p.parents]
    for path, new in changes.items():
        if isinstance(new, list):
            nav._write_cells(path, new)
        else:
            path.write_text(new, encoding="utf-8")
    course = nav.lessons(copy)
    numbers = [lesson.number for lesson in course]
    assert numbers == sorted(numbers, key=lambda n: (int(n[:2]), n[2:]))
    assert numbers[-1] == "99"
    for lesson in course:
        cells = json.loads(lesson.path.read_text())["cells"]
        assert cells[0]["metadata"].get("course_navigation") == "top", lesson.name
        assert cells[-1]["metadata"].get("course_navigation") == "bottom", lesson.name
    if solved_before:
        assert _snapshot(copy / "solutions") == solved_before
        assert "folder `solutions/`" in (copy / "README.md").read_text()
    assert nav.plan() == {}


AGENDA_ROW = re.compile(r"^\| (\d\d):(\d\d) \| (.+?) \| (\d*) \|$")


def _agendas() -> list[list[tuple[int, str, int | None]]]:
    """The agenda tables of the instructor guide: (start minute, session, minutes) rows."""
    tables: list[list[tuple[int, str, int | None]]] = [[]]
    for line in (ROOT / "docs" / "instructor-guide.md").read_text().splitlines():
        match = AGENDA_ROW.match(line)
        if match:
            hours, minutes, session, length = match.groups()
            start = int(hours) * 60 + int(minutes)
            tables[-1].append((start, session, int(length) if length else None))
        elif tables[-1]:
            tables.append([])
    return [t for t in tables if t]


def test_instructor_agendas_add_up_and_match_the_lessons() -> None:
    agendas = _agendas()
    assert len(agendas) == 2, "a one-day and a half-day agenda"
    minutes = {lesson.number: lesson.minutes for lesson in nav.lessons()}
    for table in agendas:
        for (start, session, length), (next_start, _, _) in itertools.pairwise(table):
            assert length is not None, session
            assert start + length == next_start, (
                f"{session}: the next session starts at the wrong time"
            )
        for _, session, length in table:
            lesson = re.match(r"(\d\d[a-z]?) ·", session)
            number = lesson.group(1) if lesson else ""
            if minutes.get(number) is not None:
                assert length == minutes[number], (
                    f"{session}: the notebook says about {minutes[number]} minutes"
                )
