"""`tools/build_site.py` (Sphinx + MyST-NB): every page, the sidebar in order, links, offline."""

from __future__ import annotations

import fcntl
import functools
import gc
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from sagakit.course.glossary import TERMS
from tests.helpers import ROOT, load_tool

pytestmark = pytest.mark.slow


site_tool = load_tool("build_site")

# What a page may load: a file of the site (relative), or an inline data: URL.
LOADING_TAGS = {"script": "src", "img": "src", "iframe": "src", "source": "src", "embed": "src"}
LOADING_RELS = {"stylesheet", "preload", "icon", "modulepreload", "prefetch", "manifest"}


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.loads: list[str] = []
        self.sidebar: list[str] = []
        self.sidebar_text = ""
        self.title = ""
        self._in_title = False
        self._sidebar_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if values.get("id"):
            self.ids.add(values["id"])
        for name in ("href", "src"):
            if values.get(name):
                self.links.append(values[name])
        if tag in LOADING_TAGS and values.get(LOADING_TAGS[tag]):
            self.loads.append(values[LOADING_TAGS[tag]])
        if tag == "link" and LOADING_RELS & set(values.get("rel", "").split()):
            self.loads.append(values.get("href", ""))
        if tag == "nav":
            if self._sidebar_depth:
                self._sidebar_depth += 1
            elif "bd-docs-nav" in values.get("class", "").split():
                self._sidebar_depth = 1
        if self._sidebar_depth and tag == "a" and values.get("href"):
            self.sidebar.append(values["href"])
        self._in_title = tag == "title"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._sidebar_depth:
            self.sidebar_text += data

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False
        if tag == "nav" and self._sidebar_depth:
            self._sidebar_depth -= 1


@functools.cache
def _parse(path: Path) -> _Page:
    """The page, parsed once per test process: the built site does not change."""
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def built_site(factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """The course site and its broken links, built once per test run.

    tests/test_browser.py reads the same build, possibly from another xdist worker:
    it lives in the run's shared temporary folder (the parent of each worker's own),
    and a file lock lets the first worker build it while the other waits for it.
    """
    own = factory.getbasetemp()
    shared = own.parent if own.name.startswith("popen-gw") else own
    base = shared / "course-site"
    base.mkdir(exist_ok=True)
    out, broken = base / "site", base / "broken-links.txt"
    with (base / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not broken.exists():
            _written, links = site_tool.build(out, strict=False, work=base / "sources")
            broken.write_text("".join(f"{link}\n" for link in links), encoding="utf-8")
    return out, broken.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    return built_site(tmp_path_factory)


def _notebooks() -> list[Path]:
    return [
        p
        for p in sorted((ROOT / "notebooks").rglob("*.ipynb"))
        if not {".ipynb_checkpoints", "scratch"} & set(p.parts)
    ]


def _unwritten_lessons() -> set[str]:
    return {t.notebook for t in TERMS if not (ROOT / "notebooks" / t.notebook).exists()}


def test_every_notebook_and_doc_has_a_page(site: tuple[Path, list[str]]) -> None:
    out, _ = site
    for notebook in _notebooks():
        page = out / notebook.relative_to(ROOT).with_suffix(".html")
        assert page.is_file(), f"no page for {notebook.name}"
        assert _parse(page).title.strip(), f"{page.name} has no <title>"
    assert (out / "index.html").is_file()
    assert (out / "searchindex.js").is_file(), "no search index"
    for doc in (ROOT / "docs").rglob("*.md"):
        assert (out / "docs" / doc.relative_to(ROOT / "docs").with_suffix(".html")).is_file()
    # Nothing is left beside the site (make site writes site/ in the repository root).
    assert not (out.parent / "jupyter_execute").exists()


def test_the_sidebar_lists_every_lesson_in_file_name_order(site: tuple[Path, list[str]]) -> None:
    out, _ = site
    lessons = sorted(
        p.name for p in (ROOT / "notebooks").glob("*.ipynb") if re.match(r"\d\d[a-z]?-", p.name)
    )
    lessons = [n for n in lessons if not n.startswith("99-")] + ["99-glossary.ipynb"]
    exercises = sorted(p.name for p in (ROOT / "notebooks" / "exercises").glob("*-practice.ipynb"))
    assert any(re.match(r"\d\d[a-z]-", n) for n in lessons), "the lettered lessons are there"
    # The same sidebar on the home page and inside a lesson.
    for page, prefix in (
        (out / "index.html", "notebooks/"),
        (out / "notebooks" / "09-sagas.html", ""),
    ):
        parsed = _parse(page)
        # The page itself is listed as "#" (the current page).
        listed = [urlsplit(link).path or page.name for link in parsed.sidebar]
        wanted = [prefix + n.replace(".ipynb", ".html") for n in lessons]
        assert [link for link in listed if link in wanted] == wanted, page.name
        for exercise in exercises:
            assert f"{prefix}exercises/{exercise.replace('.ipynb', '.html')}" in listed
        for caption in ("Lessons", "Exercises", "Solutions"):
            assert caption in parsed.sidebar_text


def test_sections_come_from_file_names(tmp_path: Path) -> None:
    notebooks, docs = tmp_path / "notebooks", tmp_path / "docs"
    for name in (
        "10-keys",
        "09a-faults",
        "99-glossary",
        "00-welcome",
        "09-sagas",
        "00a-primer",
        "13-long",
        "exercises/04-x-practice",
        "exercises/00-y-practice",
        "exercises/scratch/00-y-practice",
        "solutions/09-sagas",
        "solutions/exercises/00-y-solution",
        ".ipynb_checkpoints/09-sagas-checkpoint",
    ):
        (notebooks / f"{name}.ipynb").parent.mkdir(parents=True, exist_ok=True)
        (notebooks / f"{name}.ipynb").write_text("{}")
    docs.mkdir()
    (docs / "guide.md").write_text("# Guide\n")
    assert site_tool.sections(notebooks, docs) == {
        "Lessons": [
            "notebooks/00-welcome",
            "notebooks/00a-primer",
            "notebooks/09-sagas",
            "notebooks/09a-faults",
            "notebooks/10-keys",
            "notebooks/13-long",
            "notebooks/99-glossary",
        ],
        "Exercises": ["notebooks/exercises/00-y-practice", "notebooks/exercises/04-x-practice"],
        "Reference": ["docs/guide"],
        "Solutions": [
            "notebooks/solutions/09-sagas",
            "notebooks/solutions/exercises/00-y-solution",
        ],
    }
    index = site_tool.index_page(notebooks, docs)
    assert ":caption: Lessons\n\nnotebooks/00-welcome\nnotebooks/00a-primer\n" in index
    # A solved edition is titled as such (its own title is the lesson's).
    assert "Solved · 09-sagas <notebooks/solutions/09-sagas>" in index


def test_internal_links_resolve(site: tuple[Path, list[str]]) -> None:
    out, broken = site
    unwritten = _unwritten_lessons()
    assert [b for b in broken if not any(name in b for name in unwritten)] == []
    # _static/ holds the theme's own files (a Jinja template among them), not pages.
    pages = {p: _parse(p) for p in out.rglob("*.html") if "_static" not in p.relative_to(out).parts}
    problems = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("data:", "mailto:")):
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not target.is_file():
                problems.append(f"{path.name}: {link} (no such file)")
                continue
            if not target.is_relative_to(out.resolve()):
                problems.append(f"{path.name}: {link} (leaves the site)")
            if parts.path.endswith((".ipynb", ".md")):
                problems.append(f"{path.name}: {link} (not a page)")
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if parts.fragment not in ids and unquote(parts.fragment) not in ids:
                    problems.append(f"{path.name}: {link} (no such heading)")
    assert problems == []


def test_no_page_loads_anything_from_another_host(site: tuple[Path, list[str]]) -> None:
    out, _ = site
    foreign = []
    for path in out.rglob("*.html"):
        for url in _parse(path).loads:
            parts = urlsplit(url)
            if parts.scheme not in ("", "data") or parts.netloc:
                foreign.append(f"{path.name}: {url}")
    css_url = re.compile(r"""(?:url\(\s*["']?|@import\s+["'])(?P<url>[^"')\s]+)""")
    for path in out.rglob("*.css"):
        for match in css_url.finditer(path.read_text(encoding="utf-8", errors="replace")):
            parts = urlsplit(match.group("url"))
            if parts.scheme not in ("", "data") or parts.netloc:
                foreign.append(f"{path.name}: {match.group('url')}")
    assert foreign == []
    page = (out / "notebooks" / "09-sagas.html").read_text(encoding="utf-8")
    for remote in ("require.js", "require.min.js", "mathjax", "mermaid", "cdn"):
        assert remote not in page.lower(), remote


def test_pages_show_the_committed_outputs_and_say_where_to_run_them(
    site: tuple[Path, list[str]],
) -> None:
    out, _ = site
    sagas = out / "notebooks" / "09-sagas.html"
    images = [src for src in _parse(sagas).loads if src.startswith("../_images/")]
    assert images, "the saga's timeline plots are on its page"
    for src in images:
        assert (sagas.parent / src).resolve().stat().st_size > 1000
    text = sagas.read_text(encoding="utf-8")
    assert "<table" in text, "the saved tables are there"
    assert "make lab" in text, "each page says how to run the cells"


def test_widgets_show_their_text_under_a_jupyterlab_note(site: tuple[Path, list[str]]) -> None:
    out, _ = site
    text = (out / "notebooks" / "99-glossary.html").read_text(encoding="utf-8")
    assert "Glossary quiz. Question 1 of 5" in text
    assert "Run this in JupyterLab" in text
    assert "application/vnd.jupyter.widget" not in text


def test_glossary_links_land_on_the_lessons_headings(site: tuple[Path, list[str]]) -> None:
    out, broken = site
    assert [b for b in broken if "99-glossary" in b] == []
    links = _parse(out / "notebooks" / "99-glossary.html").links
    for entry in TERMS:
        if entry.notebook in _unwritten_lessons():
            continue
        page = entry.notebook.replace(".ipynb", ".html")
        # The glossary links to JupyterLab's heading anchor; the site turns it into its own id.
        fragments = [link.split("#", 1)[1] for link in links if link.startswith(f"{page}#")]
        ids = _parse(out / "notebooks" / page).ids
        assert [f for f in fragments if f in ids], f"{entry.label}: no link to a heading of {page}"


def test_a_link_to_a_missing_page_stops_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "README.md").write_text("# Index\n\n[gone](01-gone.ipynb)\n")
    monkeypatch.setattr(site_tool, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(site_tool, "DOCS", tmp_path / "docs")
    with pytest.raises(site_tool.BrokenLinkError, match=r"01-gone\.ipynb"):
        site_tool.build(tmp_path / "site", work=tmp_path / "work")


def test_the_build_gives_the_garbage_collector_back_even_when_it_fails() -> None:
    """Sphinx runs with the cyclic collector off, in the caller's process (a test process)."""
    seen: list[bool] = []

    def failing_build() -> None:
        with site_tool._cycles_collected_after():
            seen.append(gc.isenabled())
            raise RuntimeError("Sphinx failed")

    with pytest.raises(RuntimeError, match="Sphinx failed"):
        failing_build()
    assert seen == [False]
    assert gc.isenabled()
    gc.disable()  # a caller that had turned it off finds it off
    try:
        with site_tool._cycles_collected_after():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
