"""Sphinx configuration of the course site; `make site` (tools/build_site.py) builds it into site/.

The site shows the notebooks with their committed outputs (MyST-NB never executes them) in
sphinx-book-theme, and every script, stylesheet and font it uses is served from the site itself:
nothing is loaded from another host, so it works offline and opened as files.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from sphinx.application import Sphinx

project = "Sagas in Practice"
author = "Sagas in Practice contributors"
copyright = "Sagas in Practice contributors"
language = "en"

extensions = ["myst_nb"]
# tools/build_site.py lays the source folder out as index.md, notebooks/ and docs/.
root_doc = "index"
exclude_patterns = [
    "**/.ipynb_checkpoints",
    "**/scratch",
    "_build",
    "conf.py",
]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}

# The committed outputs are the page: nothing is ever run to build the site.
nb_execution_mode = "off"
# The saved widgets would need the ipywidgets JavaScript from a CDN: no widget scripts at all.
# tools/build_site.py shows each widget's text form under a note to run it in JupyterLab.
nb_ipywidgets_js: dict[str, dict[str, str]] = {}
nb_merge_streams = True

# Heading ids spelled the way JupyterLab spells them ("The-CAP-theorem-🧢"), so the links
# between notebooks (`09-sagas.ipynb#Sagas-📜`, the glossary's) land on the same heading here.
myst_heading_anchors = 6
myst_heading_slug_func = "sagakit.course.glossary.heading_anchor"
myst_enable_extensions = ["colon_fence", "deflist"]
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = "Sagas in Practice"
html_static_path: list[str] = []
html_copy_source = False
html_show_sourcelink = False
html_last_updated_fmt = None
html_theme_options: dict[str, Any] = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "navigation_with_keys": False,
    "use_download_button": False,
    "use_fullscreen_button": False,
    "use_repository_button": False,
    "show_navbar_depth": 1,
    "announcement": (
        "This site shows each notebook with its saved outputs. To run the cells, the widgets "
        "and the Temporal server they use, open the course in JupyterLab: <code>make lab</code>."
    ),
}


def _output_image_alt(_app: Sphinx, doctree: nodes.document, _docname: str) -> None:
    """Give a saved plot a text alternative (MyST-NB uses the image's file name)."""
    for image in doctree.findall(nodes.image):
        if image.get("alt", "") == image.get("uri"):
            image["alt"] = "A plot saved with the notebook, drawn by the cell above"


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the plots' text alternatives."""
    app.connect("doctree-resolved", _output_image_alt)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
