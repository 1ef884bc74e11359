"""`tools/build_site.py` renders every notebook and doc to HTML, and every internal link works."""

from __future__ import annotations

import importlib.util
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from urllib.parse import unquote, urlsplit

import pytest

from sagakit.course.glossary import TERMS
from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("course_site", ROOT / "tools" / "build_site.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


site_tool = _load()


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if values.get("id"):
            self.ids.add(values["id"] or "")
        for name in ("href", "src"):
            if values.get(name):
                self.links.append(values[name] or "")
        self._in_title = tag == "title"

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._in_title = False


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("site")
    _written, broken = site_tool.build(out, strict=False)
    return out, broken


def _unwritten_lessons() -> set[str]:
    return {t.notebook for t in TERMS if not (ROOT / "notebooks" / t.notebook).exists()}


def test_every_notebook_and_doc_has_a_page(site: tuple[Path, list[str]]) -> None:
    out, _ = site
    for notebook in (ROOT / "notebooks").rglob("*.ipynb"):
        if ".ipynb_checkpoints" in notebook.parts:
            continue
        page = out / notebook.relative_to(ROOT / "notebooks").with_suffix(".html")
        assert page.is_file(), f"no page for {notebook.name}"
        assert _parse(page).title.strip(), f"{page.name} has no <title>"
    assert (out / "index.html").is_file()
    for doc in (ROOT / "docs").rglob("*.md"):
        assert (out / "docs" / doc.relative_to(ROOT / "docs").with_suffix(".html")).is_file()


def test_internal_links_resolve(site: tuple[Path, list[str]]) -> None:
    out, broken = site
    unwritten = _unwritten_lessons()
    for link in broken:
        name = link.split(": ", 1)[1].split("#", 1)[0]
        assert name in unwritten, f"broken link {link}"
    pages = {p: _parse(p) for p in out.rglob("*.html")}
    problems = []
    for path, page in pages.items():
        for link in page.links:
            parts = urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(("data:", "mailto:")):
                continue
            if parts.path.split("/")[-1] in unwritten:
                continue
            target = (path.parent / unquote(parts.path)).resolve() if parts.path else path
            if not target.is_file():
                problems.append(f"{path.name}: {link} (no such page)")
                continue
            if not target.is_relative_to(out.resolve()):
                problems.append(f"{path.name}: {link} (leaves the site)")
            if parts.path.endswith((".ipynb", ".md")):
                problems.append(f"{path.name}: {link} (not rewritten to .html)")
            if parts.fragment and target.suffix == ".html":
                ids = pages[target].ids if target in pages else _parse(target).ids
                if parts.fragment not in ids and unquote(parts.fragment) not in ids:
                    problems.append(f"{path.name}: {link} (no such heading)")
    assert problems == []


def test_index_links_every_lesson(site: tuple[Path, list[str]]) -> None:
    out, _ = site
    links = set(_parse(out / "index.html").links)
    for notebook in (ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"):
        assert notebook.with_suffix(".html").name in links


def test_glossary_page_shows_terms_links_and_the_quiz_as_text(
    site: tuple[Path, list[str]],
) -> None:
    out, _ = site
    page = out / "99-glossary.html"
    text = page.read_text(encoding="utf-8")
    assert "Glossary quiz. Question 1 of 5" in text
    assert "✓ Right" in text
    links = _parse(page).links
    for entry in TERMS:
        if entry.notebook not in _unwritten_lessons():
            wanted = (
                entry.notebook.replace(".ipynb", ".html") + "#" + site_tool.heading_id(entry.anchor)
            )
            assert wanted in links, entry.label


def test_a_link_to_a_missing_file_stops_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "README.md").write_text("# Index\n\n[gone](01-gone.ipynb) [code](../x.py)\n")
    (tmp_path / "x.py").write_text("print('hi')\n")
    monkeypatch.setattr(site_tool, "ROOT", tmp_path)
    monkeypatch.setattr(site_tool, "NOTEBOOKS", notebooks)
    monkeypatch.setattr(site_tool, "DOCS", tmp_path / "docs")
    with pytest.raises(site_tool.BrokenLinkError, match=r"01-gone\.ipynb"):
        site_tool.build(tmp_path / "site")
    # The link to an existing repository file was turned into a copy inside the site.
    assert (tmp_path / "site" / "files" / "x.py").read_text() == "print('hi')\n"
    assert 'href="files/x.py"' in (tmp_path / "site" / "index.html").read_text()
