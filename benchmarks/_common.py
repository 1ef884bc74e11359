"""What the benchmark scripts share: statistics, interleaving, tables, charts, machine facts.

Benchmarks on a shared 2-core machine are noisy, so every script reports
medians and ratios, and runs its variants interleaved (a, b, c, a, b, c, ...)
rather than one after the other, so a burst of load hits all variants alike.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (the folder that holds ``sagakit`` and ``benchmarks``)."""

RESULTS = Path(__file__).resolve().parent / "results"
"""Where charts are saved (ignored by git)."""


def median(values: Sequence[float]) -> float:
    """The median of ``values`` (at least one)."""
    return float(statistics.median(values))


def percentile(values: Sequence[float], pct: float) -> float:
    """The ``pct`` percentile by the nearest-rank method (no interpolation)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return float(ordered[rank - 1])


def ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator``, or ``nan`` when the denominator is not positive."""
    return numerator / denominator if denominator > 0 else math.nan


def rotations(names: Sequence[str], rounds: int) -> list[list[str]]:
    """The order of the variants in each round: rotated by one per round.

    Rotating (a b c, b c a, c a b, ...) keeps any variant from always running
    right after the same neighbour, or always first after a pause.
    """
    k = len(names)
    return [[names[(r + i) % k] for i in range(k)] for r in range(rounds)]


async def interleaved(
    variants: Mapping[str, Callable[[], Awaitable[float]]],
    rounds: int,
    *,
    warmup: int = 1,
) -> dict[str, list[float]]:
    """Run each variant once per round, in rotated order, and collect what each returns.

    Each variant is an async function that does one measured run and returns a
    number (usually seconds). ``warmup`` rounds run first and are thrown away.
    """
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(warmup):
        for name in names:
            await variants[name]()
    for order in rotations(names, rounds):
        for name in order:
            samples[name].append(await variants[name]())
    return samples


def interleaved_sync(
    variants: Mapping[str, Callable[[], float]], rounds: int, *, warmup: int = 1
) -> dict[str, list[float]]:
    """:func:`interleaved` for plain functions."""
    names = list(variants)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(warmup):
        for name in names:
            variants[name]()
    for order in rotations(names, rounds):
        for name in order:
            samples[name].append(variants[name]())
    return samples


def timer() -> Callable[[], float]:
    """Start a stopwatch; calling the result returns the seconds since it started."""
    started = time.perf_counter()
    return lambda: time.perf_counter() - started


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned numbers, for the terminal and the README."""

    def cell(value: Any) -> str:
        if isinstance(value, float):
            if math.isnan(value):
                return "n/a"
            return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text)) for i, h in enumerate(headers)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    for raw, row in zip(rows, text, strict=True):
        lines.append(
            "  ".join(
                c.rjust(w) if isinstance(v, int | float) else c.ljust(w)
                for v, c, w in zip(raw, row, widths, strict=True)
            )
        )
    return "\n".join(line.rstrip() for line in lines)


def verdict(value: float, limit: float) -> str:
    """``"met"`` or ``"MISSED"`` for a value that should be at most ``limit``."""
    return "met" if value <= limit else "MISSED"


def save_chart(name: str, draw: Callable[[Axes], None], *, title: str) -> Path:
    """Draw a one-axes matplotlib chart with ``draw(ax)`` and save it as ``results/NAME.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4), layout="constrained")
    draw(ax)
    ax.set_title(title)
    path = RESULTS / f"{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class Machine:
    """Where a benchmark ran, for the README's Results section."""

    nproc: int
    """CPU cores this process may use."""
    python: str
    """Python version."""
    temporal: str
    """``temporal --version`` (the CLI that runs the dev server)."""
    load: tuple[float, float, float]
    """1, 5 and 15 minute load averages when the benchmark started."""
    date: str
    """UTC date and time."""

    def describe(self) -> str:
        """One line for the top of a benchmark's output."""
        load = " ".join(f"{x:.2f}" for x in self.load)
        return (
            f"machine: {self.nproc} cores, Python {self.python}, {self.temporal}, "
            f"load {load}, {self.date}"
        )


def machine() -> Machine:
    """Describe this machine and its load right now."""
    try:
        from sagakit.course.devserver import find_temporal_binary

        out = subprocess.run(
            [str(find_temporal_binary()), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except Exception as err:  # a missing CLI must not stop a benchmark
        out = f"temporal CLI unknown ({type(err).__name__})"
    return Machine(
        nproc=len(os.sched_getaffinity(0)),
        python=platform.python_version(),
        temporal=out or "temporal CLI unknown",
        load=os.getloadavg(),
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    )


def summary(name: str, text: str) -> str:
    """The final line of a benchmark's output; ``run_all.py`` collects these."""
    return f"SUMMARY {name}: {text}"


def quiet_worker_logs() -> None:
    """Keep expected workflow failures out of the benchmark output."""
    import logging

    for logger in ("temporalio", "temporalio.worker", "temporalio.activity", "temporalio.workflow"):
        logging.getLogger(logger).setLevel(logging.CRITICAL)


def ensure_importable() -> None:
    """Put the repository root on ``sys.path``, for ``python benchmarks/bench_x.py``."""
    root = str(ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from ``/proc``; 0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid(port: int = 7233) -> int | None:
    """The process id of the ``temporal server start-dev`` listening on ``port``, if any."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"start-dev" in args and str(port).encode() in args:
            return int(entry.name)
    return None
