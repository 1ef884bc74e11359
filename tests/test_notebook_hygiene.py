"""Committed notebooks are executed top to bottom and carry no paths or secrets.

nbval compares each cell's fresh output with the committed one, so a notebook
committed half-run, or with outputs from another machine, fails or hides bugs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.helpers import ROOT

NOTEBOOKS = sorted(
    p for p in (ROOT / "notebooks").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
)
ABSOLUTE_PATH = re.compile(r"(?<![\w.])(/home/|/root/|/Users/|/work/|/tmp/|[A-Z]:\\\\Users)")
SECRET = re.compile(
    r"(token=[0-9a-f]{16,}|api[_-]?key\s*[:=]\s*\S{8,}|BEGIN [A-Z ]*PRIVATE KEY)", re.I
)


def _code_cells(path: Path) -> list[dict[str, object]]:
    nb = json.loads(path.read_text())
    return [c for c in nb["cells"] if c["cell_type"] == "code"]


def test_there_are_notebooks() -> None:
    assert any(p.name.startswith("00-") for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_executed_in_order(path: Path) -> None:
    cells = [c for c in _code_cells(path) if "".join(c["source"]).strip()]  # type: ignore[arg-type]
    counts = [c["execution_count"] for c in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name}: re-execute it top to bottom (`make notebooks`) before committing"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_unexpected_errors(path: Path) -> None:
    for cell in _code_cells(path):
        tags = cell.get("metadata", {}).get("tags", [])  # type: ignore[attr-defined]
        for output in cell["outputs"]:  # type: ignore[attr-defined]
            if output["output_type"] == "error":
                assert "raises-exception" in tags, f"{path.name}: a cell failed: {output['ename']}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_cells_that_print_have_output(path: Path) -> None:
    for cell in _code_cells(path):
        source = "".join(cell["source"])  # type: ignore[arg-type]
        if re.search(r"^\s*print\(", source, re.M) and "if " not in source:
            assert cell["outputs"], f"{path.name}: a cell that prints has no output:\n{source}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_absolute_paths_or_secrets(path: Path) -> None:
    text = path.read_text()
    assert not ABSOLUTE_PATH.search(text), f"{path.name}: {ABSOLUTE_PATH.search(text)}"
    assert not SECRET.search(text), f"{path.name} contains what looks like a secret"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_kernelspec_is_portable(path: Path) -> None:
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
