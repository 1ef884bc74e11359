"""Build the course site: Sphinx, MyST-NB and sphinx-book-theme, offline, into ``site/``.

Usage:
    python tools/build_site.py [--out site]

The pages show every notebook with its committed outputs (nothing is executed), the course
index ``notebooks/README.md`` and the Markdown files in ``docs/``; the configuration is
``docs/conf.py``. The sidebar comes from the file names: ``index.md`` is generated here with
one table of contents per section, in file-name order:

- Lessons: ``notebooks/NN-*.ipynb`` and the lettered ones (``00a-``, ``07a-`` …), glossary last;
- Exercises: ``notebooks/exercises/*-practice.ipynb``;
- Reference: the instructor guide and every other page of ``docs/``;
- Solutions: the solved editions, ``notebooks/solutions/**.ipynb``.

A saved widget is shown as its text form under a "Run this in JupyterLab" note (its view
needs JavaScript that only a CDN serves), and each page says that running the cells needs
JupyterLab and the Temporal server (``make lab``).

Sphinx reads a folder laid out for it under ``build/site/`` (``index.md`` and copies of
``notebooks/`` and ``docs/``), so the links between notebooks and docs keep working. A link to
a file or heading that does not exist stops the build (the list is printed).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import re
import shutil
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
DOCS = ROOT / "docs"
CONF = ROOT / "docs"  # conf.py
DEFAULT_OUT = ROOT / "site"
WORK = ROOT / "build" / "site"

_TITLE = re.compile(r"^#\s+(.+?)\s*$", re.M)
# Sphinx's and MyST's words for a link to nowhere.
_BROKEN = re.compile(
    r"(local id not found|document not found|reference target not found|"
    r"unknown document|Unknown source document|cross-reference target not found|xref_missing)"
)


class BrokenLinkError(Exception):
    """A page links to a file or heading that does not exist."""


def _names(paths: list[Path], under: Path) -> list[str]:
    return [p.relative_to(under).with_suffix("").as_posix() for p in sorted(paths)]


def sections(notebooks: Path = NOTEBOOKS, docs: Path = DOCS) -> dict[str, list[str]]:
    """The sidebar: section caption -> the documents it lists, in order (paths without suffix)."""
    lessons = sorted(
        p for p in notebooks.glob("[0-9][0-9]*-*.ipynb") if re.fullmatch(r"\d\d[a-z]?-.+", p.stem)
    )
    glossary = [p for p in lessons if p.stem.startswith("99-")]
    lessons = [p for p in lessons if p not in glossary]
    root = notebooks.parent
    found = {
        "Lessons": _names(lessons + glossary, root),
        "Exercises": _names(list(notebooks.glob("exercises/*-practice.ipynb")), root),
        "Reference": _names(list(docs.glob("**/*.md")), root),
        "Solutions": _names(
            [p for p in notebooks.glob("solutions/**/*.ipynb") if _published(p)], root
        ),
    }
    return {caption: names for caption, names in found.items() if names}


def _published(path: Path) -> bool:
    return not {".ipynb_checkpoints", "scratch"} & set(path.parts)


def index_page(notebooks: Path = NOTEBOOKS, docs: Path = DOCS) -> str:
    """The site's home page (MyST Markdown): a welcome, and the sidebar's tables of contents."""
    lines = [
        "# Sagas in Practice",
        "",
        "A hands-on course in distributed-systems vocabulary and the saga pattern, with real",
        "Temporal workflows. Each page shows a notebook with its saved outputs; to run the cells,",
        "open the course in JupyterLab with `make lab`.",
        "",
    ]
    if (notebooks / "README.md").exists():
        lines += [
            "Start with the [course overview](notebooks/README.md): every lesson, its terms and",
            "its minutes.",
            "",
            "```{toctree}",
            ":hidden:",
            ":caption: Course",
            "",
            "notebooks/README",
            "```",
            "",
        ]
    for caption, names in sections(notebooks, docs).items():
        if caption == "Solutions":  # same titles as the lessons: say which edition it is
            names = [
                f"Solved · {_title(notebooks.parent / f'{name}.ipynb')} <{name}>" for name in names
            ]
        lines += ["```{toctree}", ":maxdepth: 1", f":caption: {caption}", "", *names, "```", ""]
    return "\n".join(lines)


def _title(notebook: Path) -> str:
    """The first ``#`` heading of a notebook (its stem when it has none)."""
    for cell in json.loads(notebook.read_text(encoding="utf-8")).get("cells", []):
        source = "".join(cell["source"]) if cell["cell_type"] == "markdown" else ""
        for line in source.splitlines():
            if line.startswith("# "):
                return line[2:].strip()
    return notebook.stem


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = (
    '<div class="admonition note widget-note"><p class="admonition-title">Run this in '
    "JupyterLab</p><p>An interactive widget runs here when the notebook runs in JupyterLab "
    "(<code>make lab</code>). This page shows the text it saved instead.</p></div>"
)


def without_widgets(path: Path) -> bool:
    """Replace each saved widget in the notebook at ``path`` by its text form under a note.

    The widget itself would need the ipywidgets JavaScript, which only a CDN serves. Returns
    whether the notebook had a widget (and was rewritten).
    """
    if WIDGET_VIEW not in path.read_text(encoding="utf-8"):
        return False
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        outputs = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                note = nbformat.v4.new_output("display_data", data={"text/html": WIDGET_NOTE})
                outputs.append(note)
            outputs.append(output)
        if cell.cell_type == "code":
            cell.outputs = outputs
    nbformat.write(notebook, path)
    return True


def _lay_out(work: Path) -> Path:
    """The folder Sphinx reads: the generated index.md beside links to notebooks/ and docs/."""
    source = work / "source"
    if source.exists():
        shutil.rmtree(source)
    source.mkdir(parents=True)
    (source / "index.md").write_text(index_page(), encoding="utf-8")
    # Copies, not symbolic links: MyST resolves a link through a symbolic link to the file's
    # real place, outside the source folder, where it is not a page.
    skip = shutil.ignore_patterns(".ipynb_checkpoints", "scratch", "*.py", "*.cfg", "__pycache__")
    shutil.copytree(NOTEBOOKS, source / "notebooks", ignore=skip)
    if DOCS.exists():
        shutil.copytree(DOCS, source / "docs", ignore=skip)
    for notebook in (source / "notebooks").rglob("*.ipynb"):
        without_widgets(notebook)
    return source


@contextlib.contextmanager
def _cycles_collected_after() -> Iterator[None]:
    """Turn Python's cyclic garbage collector off for the block, and collect once after it.

    A build grows docutils trees that live until it ends, and the collector walked them
    again and again: about a sixth of the build's CPU (17.4 to 18.4 s against 14.5 to
    16.2 s, with 140 MB more memory at the peak), and more in a test process, whose own
    objects it walked each time too.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
            gc.collect()


def build(
    out: Path = DEFAULT_OUT, *, strict: bool = True, work: Path = WORK
) -> tuple[list[Path], list[str]]:
    """Build the site into ``out`` (emptied first), laying Sphinx's sources out in ``work``.

    Returns the HTML pages written and the broken links (Sphinx's warnings about them), which
    are empty unless ``strict`` is off.

    Raises:
        BrokenLinkError: some page links to a file or heading that does not exist (``strict``).
        RuntimeError: Sphinx stopped with an error.
    """
    from sphinx.application import Sphinx
    from sphinx.util.console import nocolor
    from sphinx.util.docutils import docutils_namespace, patch_docutils

    if out.exists():
        shutil.rmtree(out)
    source = _lay_out(work)
    # Sphinx writes into work/, then the pages are copied to out: MyST-NB puts its output
    # folder (jupyter_execute/) beside Sphinx's, which must not be the repository root.
    html = work / "html"
    if html.exists():
        shutil.rmtree(html)
    log = io.StringIO()
    nocolor()
    # The theme and extensions use Sphinx APIs that a later Sphinx removes: their business,
    # not a reason to stop (pytest turns warnings into errors).
    with (
        _cycles_collected_after(),
        patch_docutils(CONF),
        docutils_namespace(),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        app = Sphinx(
            srcdir=source,
            confdir=CONF,
            outdir=html,
            doctreedir=work / "doctrees",
            buildername="html",
            status=None,
            warning=log,
            freshenv=True,
            keep_going=True,
        )
        app.build(force_all=True)
        if app.statuscode:
            raise RuntimeError(f"Sphinx failed:\n{log.getvalue()}")
    problems = [line for line in log.getvalue().splitlines() if line.strip()]
    broken = [line for line in problems if _BROKEN.search(line)]
    if strict and broken:
        raise BrokenLinkError(
            "These links point at pages or headings that do not exist; fix them in the "
            "notebooks or docs:\n  " + "\n  ".join(broken)
        )
    for line in problems:
        if line not in broken:
            print(line, file=sys.stderr)
    shutil.copytree(html, out, ignore=shutil.ignore_patterns(".buildinfo"))
    return sorted(out.rglob("*.html")), broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (emptied)")
    args = parser.parse_args(argv)
    try:
        written, _broken = build(args.out.resolve())
    except BrokenLinkError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(written)} pages; open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
