"""How long does the course take to check, and how fast does the dev server start?

Runs the notebooks under nbval exactly as ``make test`` does (``python -m
pytest notebooks/...``, with the options in ``pyproject.toml``), once, with a
JUnit XML report; reads each cell's time from it and names the slowest cells.
Then starts a fresh dev server (a free port, a temporary data folder) a few
times and times how long it takes to accept clients. The shared server on
7233 is never touched.

Targets: the whole nbval run <= 5 minutes on a 2-core machine; no lesson cell
over 10 s; a fresh dev server ready in <= 1 s.

Usage: python benchmarks/bench_course.py [NOTEBOOK ...] [--server-starts N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import socket
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import nbformat

from benchmarks import _common as common
from sagakit.course.devserver import DevServer, DevServerConfig

if TYPE_CHECKING:
    from matplotlib.axes import Axes

NOTEBOOKS = common.ROOT / "notebooks"
TARGET_TOTAL_S = 300.0
TARGET_CELL_S = 10.0
TARGET_SERVER_S = 1.0


@dataclass(frozen=True)
class Cell:
    """One notebook cell as nbval timed it."""

    notebook: str
    """File name of the notebook."""
    index: int
    """nbval's number: the position among the notebook's code cells, from 0."""
    seconds: float
    """Time nbval spent on it (cell 0 includes starting the kernel)."""
    first_line: str
    """The first non-empty line of its source, to find it in the notebook."""


@dataclass(frozen=True)
class NotebookRow:
    """The time of one notebook."""

    notebook: str
    """File name."""
    cells: int
    """Code cells run."""
    seconds: float
    """Sum of its cells' times."""


@dataclass(frozen=True)
class CourseResult:
    """What one nbval run and the dev-server starts measured."""

    total_s: float
    """Wall time of the whole pytest run, start-up and kernels included."""
    passed: bool
    """Whether pytest reported success (a failing notebook makes the timing suspect)."""
    notebooks: tuple[NotebookRow, ...]
    """One row per notebook, in run order."""
    slowest: tuple[Cell, ...]
    """The slowest cells, slowest first."""
    server_start_s: tuple[float, ...]
    """Seconds from start() to a server that accepts clients, one per fresh start
    (new data folder: the state file is created)."""
    server_restart_s: tuple[float, ...]
    """The same for a restart on the existing state file."""
    failures: str = ""
    """What pytest reported for each failing cell (empty when every cell passed)."""


def lesson_notebooks() -> list[Path]:
    """Every notebook of the course, in order."""
    return sorted(p for p in NOTEBOOKS.glob("*.ipynb"))


def _first_lines(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    lines = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            text = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
            lines.append(text[:60])
    return lines


def run_nbval(
    notebooks: list[Path], *, workers: str = "auto"
) -> tuple[float, bool, list[Cell], str]:
    """Run the notebooks under nbval once; return wall seconds, success, every cell and the
    failures (what pytest reported for each failing cell, or ``""``).

    ``workers`` is pytest-xdist's ``-n`` (``"auto"``, as ``make test`` runs; ``"0"``: one
    process and one dev server, the least overhead for a notebook or two).
    """
    with tempfile.TemporaryDirectory(prefix="bench-course-") as tmp:
        report = Path(tmp) / "junit.xml"
        elapsed = common.timer()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                *(str(p) for p in notebooks),
                "-p",
                "no:cacheprovider",
                "-q",
                f"--junitxml={report}",
                f"--numprocesses={workers}",
            ],
            cwd=common.ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = elapsed()
        if not report.exists():
            raise RuntimeError(
                f"pytest wrote no report (exit {done.returncode}):\n{done.stdout[-2000:]}"
                f"\n{done.stderr[-2000:]}"
            )
        tree = ET.parse(report)
    sources = {p.name: _first_lines(p) for p in notebooks}
    cells = []
    failures = []
    for case in tree.iter("testcase"):
        for problem in [*case.iter("failure"), *case.iter("error")]:
            said = problem.text or problem.get("message") or ""
            # nbval colours its report; the XML keeps the escapes as "#x1B[..m".
            said = re.sub(r"(#x1B|\x1b)\[[0-9;]*m", "", said)
            failures.append(f"{case.get('classname')} {case.get('name')}:\n{said[-3000:]}")
        notebook = case.get("classname", "").removeprefix("notebooks.")
        index = int(case.get("name", "Cell -1").rpartition(" ")[2])
        lines = sources.get(notebook, [])
        cells.append(
            Cell(
                notebook,
                index,
                float(case.get("time", "0")),
                lines[index] if 0 <= index < len(lines) else "",
            )
        )
    if done.returncode != 0 and not failures:
        failures.append(f"pytest exited {done.returncode}:\n{done.stdout[-3000:]}")
    return seconds, done.returncode == 0, cells, "\n".join(failures)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _start_and_stop(server: DevServer) -> float:
    elapsed = common.timer()
    status = await server.start()
    seconds = elapsed()
    try:
        if not status.started_here:
            raise RuntimeError(f"{server.config.address} already had a Temporal server")
    finally:
        server.stop()
    return seconds


async def time_server_start() -> tuple[float, float]:
    """Start a dev server on free ports with a new data folder, stop it, start it again.

    Returns the seconds to ready of the first start (which creates the state
    file, as a learner's very first ``make lab`` does) and of the restart.
    """
    with tempfile.TemporaryDirectory(prefix="bench-devserver-") as tmp:
        port = _free_port()
        ui_port = _free_port()
        while ui_port == port:
            ui_port = _free_port()
        server = DevServer(DevServerConfig(port=port, ui_port=ui_port, data_dir=Path(tmp)))
        first = await _start_and_stop(server)
        again = await _start_and_stop(server)
    return first, again


async def measure(
    notebooks: list[Path] | None = None,
    *,
    server_starts: int = 3,
    slowest: int = 5,
    workers: str = "auto",
) -> CourseResult:
    """Run nbval once over ``notebooks`` (default: all), then time ``server_starts`` starts.

    ``workers``: pytest-xdist's ``-n`` for the nbval run (see :func:`run_nbval`).
    """
    paths = notebooks or lesson_notebooks()
    total, passed, cells, failures = await asyncio.to_thread(run_nbval, paths, workers=workers)
    rows = []
    for path in paths:
        mine = [c for c in cells if c.notebook == path.name]
        rows.append(NotebookRow(path.name, len(mine), sum(c.seconds for c in mine)))
    starts = [await time_server_start() for _ in range(server_starts)]
    ranked = tuple(sorted(cells, key=lambda c: c.seconds, reverse=True)[:slowest])
    return CourseResult(
        total,
        passed,
        tuple(rows),
        ranked,
        tuple(first for first, _ in starts),
        tuple(again for _, again in starts),
        failures,
    )


def report(result: CourseResult) -> str:
    """The tables and the summary line."""
    notebooks = common.format_table(
        ["notebook", "cells", "seconds", "share of total"],
        [(r.notebook, r.cells, r.seconds, r.seconds / result.total_s) for r in result.notebooks],
    )
    cells = common.format_table(
        ["notebook", "cell", "seconds", "first line"],
        [(c.notebook, c.index, c.seconds, c.first_line) for c in result.slowest],
    )
    worst = result.slowest[0].seconds if result.slowest else 0.0
    server = common.median(result.server_start_s) if result.server_start_s else float("nan")
    again = common.median(result.server_restart_s) if result.server_restart_s else float("nan")
    lines = [
        notebooks,
        "",
        f"whole nbval run (pytest start-up, kernels and all): {result.total_s:.1f} s"
        + ("" if result.passed else f"  (NOTE: the run had failures)\n{result.failures}"),
        "",
        "slowest cells (cell 0 of each notebook includes starting its kernel):",
        cells,
        "",
        "fresh dev server ready in: "
        + ", ".join(f"{s:.2f} s" for s in result.server_start_s)
        + f" (median {server:.2f} s); restarted on its state file: "
        + ", ".join(f"{s:.2f} s" for s in result.server_restart_s)
        + f" (median {again:.2f} s)",
        common.summary(
            "course",
            f"nbval total {result.total_s:.0f} s (target <= {TARGET_TOTAL_S:.0f}: "
            f"{common.verdict(result.total_s, TARGET_TOTAL_S)}), slowest cell {worst:.1f} s "
            f"(target <= {TARGET_CELL_S:.0f}: {common.verdict(worst, TARGET_CELL_S)}), "
            f"dev server ready {server:.2f} s (target <= {TARGET_SERVER_S:.0f}: "
            f"{common.verdict(server, TARGET_SERVER_S)})",
        ),
    ]
    return "\n".join(lines)


def chart(result: CourseResult) -> Path:
    """Seconds per notebook, with the per-cell limit drawn for scale."""

    def draw(ax: Axes) -> None:
        names = [r.notebook.split("-")[0] for r in result.notebooks]
        ax.barh(names, [r.seconds for r in result.notebooks], color="tab:purple")
        ax.invert_yaxis()
        ax.set_xlabel("seconds under nbval (sum of cell times)")

    return common.save_chart(
        "course", draw, title=f"Notebook run times (total {result.total_s:.0f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Course run time under nbval.")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook")
    parser.add_argument("--server-starts", type=int, default=3, help="fresh dev server starts")
    args = parser.parse_args(argv)
    print(common.machine().describe())
    notebooks = [p.resolve() for p in args.notebooks] or None
    result = asyncio.run(measure(notebooks, server_starts=args.server_starts))
    print(report(result))
    print(f"chart: {chart(result)}")
    return 0 if result.passed else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
