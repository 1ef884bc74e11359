"""Render the whole course as static HTML pages, with working links between them.

Usage:
    python tools/build_site.py [--out site]

Every notebook under ``notebooks/`` becomes a page (``notebooks/03-x.ipynb`` ->
``site/03-x.html``, ``notebooks/exercises/y.ipynb`` -> ``site/exercises/y.html``) with its
committed outputs (nothing is executed); the course index ``notebooks/README.md`` becomes
``site/index.html`` and the Markdown files in ``docs/`` become ``site/docs/*.html``.

Links are rewritten so the site works from any folder, even opened as files: a link to a
notebook or a rendered Markdown file points at its page, a link to another file of the
repository (a sagakit module, an image) points at a copy under ``site/files/``, and heading
anchors are spelled the way nbconvert spells heading ids. A link to a file that does not exist
stops the build with a list of the broken links.

Widgets are shown as their text form (the saved widget state is dropped), so no page needs
the widget JavaScript from a CDN to show its outputs.
"""

from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import quote, unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DOCS = ROOT / "docs"
DEFAULT_OUT = ROOT / "site"

# nbconvert's spelling of a heading id (nbconvert.filters.strings._convert_header_id).
_ID_SAFE = "?/:@!$&'()*+,;="
_LINK = re.compile(r"""(?P<attr>\b(?:href|src))=(?P<q>["'])(?P<url>.*?)(?P=q)""", re.S)
_TITLE = re.compile(r"^#\s+(.+?)\s*$", re.M)

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; line-height: 1.5; max-width: 60rem;
       margin: 2rem auto; padding: 0 1rem; color: #222; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; vertical-align: top; }}
code, pre {{ background: #f5f5f5; }}
pre {{ padding: 0.6rem; overflow-x: auto; }}
a.anchor-link {{ display: none; }}
</style>
</head>
<body>
{body}
</body>
</html>
"""


class BrokenLinkError(Exception):
    """A page links to a file that does not exist."""


@dataclass(frozen=True)
class Page:
    """One source file and the page it becomes."""

    source: Path
    """The notebook or Markdown file in the repository."""

    target: PurePosixPath
    """Where its page goes, relative to the site folder."""


def pages() -> list[Page]:
    """Every page of the site: notebooks, the course index, the docs."""
    found = [
        Page(path, PurePosixPath(path.relative_to(NOTEBOOKS).with_suffix(".html").as_posix()))
        for path in sorted(NOTEBOOKS.rglob("*.ipynb"))
        if ".ipynb_checkpoints" not in path.parts
    ]
    index = NOTEBOOKS / "README.md"
    if index.exists():
        found.append(Page(index, PurePosixPath("index.html")))
    found += [
        Page(path, PurePosixPath("docs") / path.relative_to(DOCS).with_suffix(".html").as_posix())
        for path in sorted(DOCS.rglob("*.md"))
    ]
    return found


def heading_id(fragment: str) -> str:
    """A link fragment spelled the way nbconvert spells heading ids (percent-encoded)."""
    return quote(unquote(fragment), safe=_ID_SAFE)


class _Linker:
    """Rewrites the links of one page; copies linked repository files into the site."""

    def __init__(self, out: Path, by_source: dict[Path, PurePosixPath]) -> None:
        self.out = out
        self.by_source = by_source
        self.broken: list[str] = []

    def rewrite(self, page: Page, text: str) -> str:
        def replace(match: re.Match[str]) -> str:
            url = html.unescape(match.group("url"))
            new = self._target(page, url)
            return f"{match.group('attr')}={match.group('q')}{html.escape(new)}{match.group('q')}"

        return _LINK.sub(replace, text)

    def _target(self, page: Page, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme or parts.netloc or url.startswith(("/", "data:", "mailto:")) or not url:
            return url
        fragment = f"#{heading_id(parts.fragment)}" if parts.fragment else ""
        if not parts.path:
            return fragment
        source = (page.source.parent / unquote(parts.path)).resolve()
        if source in self.by_source:
            target = self.by_source[source]
        elif source.is_file() and source.is_relative_to(ROOT):
            target = PurePosixPath("files") / source.relative_to(ROOT).as_posix()
            copy = self.out / target
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
        else:
            self.broken.append(f"{page.source.relative_to(ROOT)}: {url}")
            return url
        return quote(_relative(target, page.target), safe="/") + fragment


def _relative(target: PurePosixPath, page: PurePosixPath) -> str:
    up = [".."] * (len(page.parent.parts))
    return "/".join([*up, *target.parts])


def _title(markdown: str, fallback: str) -> str:
    match = _TITLE.search(markdown)
    return match.group(1) if match else fallback


def _render_notebook(path: Path) -> str:
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.read(path, as_version=4)
    notebook.metadata.pop("widgets", None)
    first = next(
        (c.source for c in notebook.cells if c.cell_type == "markdown" and _TITLE.search(c.source)),
        "",
    )
    title = _title(first, path.stem)
    body, _resources = HTMLExporter().from_notebook_node(
        notebook, resources={"metadata": {"name": title}}
    )
    return str(body)


def _render_markdown(path: Path) -> str:
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    text = path.read_text(encoding="utf-8")
    body = markdown2html_mistune(text)
    return _PAGE.format(title=html.escape(_title(text, path.stem)), body=body)


def _rendered(all_pages: list[Page]) -> Iterator[tuple[Page, str]]:
    for page in all_pages:
        if page.source.suffix == ".ipynb":
            yield page, _render_notebook(page.source)
        else:
            yield page, _render_markdown(page.source)


def build(out: Path = DEFAULT_OUT, *, strict: bool = True) -> tuple[list[Path], list[str]]:
    """Render every page into ``out`` (emptied first).

    Returns the files written and the broken links (``"source: link"``), which are
    empty unless ``strict`` is off.

    Raises:
        BrokenLinkError: some page links to a file that does not exist (``strict`` only).
    """
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    all_pages = pages()
    linker = _Linker(out, {p.source.resolve(): p.target for p in all_pages})
    written = []
    for page, text in _rendered(all_pages):
        destination = out / page.target
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(linker.rewrite(page, text), encoding="utf-8")
        written.append(destination)
    if linker.broken and strict:
        raise BrokenLinkError(
            "These links point at files that do not exist; fix them in the notebooks or docs:\n  "
            + "\n  ".join(linker.broken)
        )
    return written, linker.broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (emptied)")
    args = parser.parse_args(argv)
    try:
        written, _broken = build(args.out.resolve())
    except BrokenLinkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    index = args.out / "index.html"
    print(f"wrote {len(written)} pages; open {index}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
