"""The course index and the previous/next links are generated, so they never drift."""

from __future__ import annotations

import importlib.util
import itertools
import json
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from sagakit.course.glossary import TERMS
from tests.helpers import ROOT

SCRIPT = ROOT / "tools" / "navigation.py"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("course_navigation", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


nav = _load()


def _notebook(
    path: Path, first: str, *more: str, metadata: dict[str, object] | None = None
) -> None:
    cells = [
        {"cell_type": "markdown", "id": f"c{i}", "metadata": {}, "source": s}
        for i, s in enumerate([first, *more])
    ]
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
            number = session[:2]
            if number.isdigit() and minutes.get(number) is not None:
                assert length == minutes[number], (
                    f"{session}: the notebook says about {minutes[number]} minutes"
                )
