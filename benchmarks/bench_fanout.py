"""How long does undoing take when a saga has many independent compensations?

Eight compensations of equal length (an activity that sleeps ``--seconds``)
run through :class:`~sagakit._saga.Saga`, one after the other (the default,
last-to-first) or all at once (``Saga(parallel=True)``), and a saga with a
single compensation gives the unit. The time is measured inside the workflow
(``workflow.now()`` from the task that starts compensating to the task that
sees the last one finish); end-to-end latency at the client is shown beside it.

Targets: parallel <= 1.5x one compensation; sequential about 8x.

Usage: python benchmarks/bench_fanout.py [--runs N] [--count 8] [--seconds 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.client import Client

from benchmarks import _common as common
from benchmarks.workflows import FanoutInput, UndoFanout, pause
from sagakit import running_worker
from sagakit.course.client import connect

if TYPE_CHECKING:
    from matplotlib.axes import Axes

TARGET_PARALLEL = 1.5


@dataclass(frozen=True)
class Row:
    """One way of running the compensations."""

    variant: str
    """``single``, ``sequential`` or ``parallel``."""
    compensations: int
    """How many compensations it runs."""
    runs: int
    """Measured runs."""
    median_s: float
    """Median compensation time inside the workflow, in seconds."""
    p95_s: float
    """95th percentile of the same."""
    end_to_end_s: float
    """Median latency at the client (start request to result), in seconds."""


@dataclass(frozen=True)
class FanoutResult:
    """The rows and the ratios to a single compensation."""

    rows: tuple[Row, ...]
    """``single``, ``sequential``, ``parallel``."""
    ratios: dict[str, float]
    """``sequential/single`` and ``parallel/single`` (medians of in-workflow time)."""


async def measure(
    client: Client, runs: int = 5, *, count: int = 8, seconds: float = 0.3, warmup: int = 1
) -> FanoutResult:
    """Run the three variants ``runs`` times each, interleaved."""
    common.quiet_worker_logs()
    queue = f"bench-fanout-{uuid.uuid4().hex[:8]}"
    jobs = {
        "single": FanoutInput(1, seconds, parallel=False),
        "sequential": FanoutInput(count, seconds, parallel=False),
        "parallel": FanoutInput(count, seconds, parallel=True),
    }
    end_to_end: dict[str, list[float]] = {name: [] for name in jobs}

    def runner(name: str) -> Callable[[], Awaitable[float]]:
        async def once() -> float:
            elapsed = common.timer()
            inside = await client.execute_workflow(
                UndoFanout.run, jobs[name], id=f"{queue}-{uuid.uuid4().hex[:8]}", task_queue=queue
            )
            end_to_end[name].append(elapsed())
            return inside

        return once

    async with running_worker(
        client,
        task_queue=queue,
        workflows=[UndoFanout],
        activities=[pause],
        max_concurrent_activities=max(count, 8),
    ):
        samples = await common.interleaved(
            {name: runner(name) for name in jobs}, runs, warmup=warmup
        )
    rows = tuple(
        Row(
            name,
            jobs[name].compensations,
            len(values),
            common.median(values),
            common.percentile(values, 95),
            common.median(end_to_end[name][-len(values) :]),
        )
        for name, values in samples.items()
    )
    unit = rows[0].median_s
    ratios = {f"{row.variant}/single": common.ratio(row.median_s, unit) for row in rows[1:]}
    return FanoutResult(rows, ratios)


def report(result: FanoutResult) -> str:
    """The table and the summary line."""
    unit = result.rows[0].median_s
    table = common.format_table(
        ["variant", "undos", "runs", "median s", "p95 s", "end-to-end s", "median / single"],
        [
            (
                r.variant,
                r.compensations,
                r.runs,
                r.median_s,
                r.p95_s,
                r.end_to_end_s,
                r.median_s / unit,
            )
            for r in result.rows
        ],
    )
    par = result.ratios["parallel/single"]
    seq = result.ratios["sequential/single"]
    count = result.rows[1].compensations
    return "\n".join(
        [
            table,
            "",
            common.summary(
                "fanout",
                f"parallel/single = {par:.2f} (target <= {TARGET_PARALLEL}: "
                f"{common.verdict(par, TARGET_PARALLEL)}), sequential/single = {seq:.2f} "
                f"(expected about {count})",
            ),
        ]
    )


def chart(result: FanoutResult) -> Path:
    """Median compensation time per variant."""

    def draw(ax: Axes) -> None:
        names = [
            f"{r.variant}\n({r.compensations} undo{'s' if r.compensations > 1 else ''})"
            for r in result.rows
        ]
        ax.bar(names, [r.median_s for r in result.rows], color=["grey", "tab:red", "tab:green"])
        ax.set_ylabel("time to compensate (s, median)")

    return common.save_chart("fanout", draw, title="Undoing 8 equal steps: sequential vs parallel")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sequential vs parallel compensation.")
    parser.add_argument("--runs", type=int, default=5, help="measured runs per variant")
    parser.add_argument("--count", type=int, default=8, help="compensations per saga")
    parser.add_argument("--seconds", type=float, default=0.3, help="length of each one")
    args = parser.parse_args(argv)
    print(common.machine().describe())
    client = await connect()
    result = await measure(client, args.runs, count=args.count, seconds=args.seconds)
    print(report(result))
    print(f"chart: {chart(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
