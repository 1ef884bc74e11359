"""What does sagakit's Saga cost, compared with no undo at all and with a hand-written undo list?

The same 3-step trip (hotel, flight, excursion, with the same activities,
timeouts and retries) runs as three workflows against the dev server:

(a) ``NoCompensationTrip``: no compensation at all (the floor);
(b) ``HandWrittenCompensationTrip``: a list of undo callables, try/except, run reversed;
(c) ``TripSagaWorkflow``: sagakit's :class:`~sagakit._saga.Saga` (the course's trip saga).

Scenario ``success`` books all three (nothing is undone: the bookkeeping is
pure overhead); scenario ``compensating`` refuses the excursion, so (b) and
(c) cancel the flight and the hotel. Each run is one workflow, timed from
start request to result at the client. Variants alternate run by run.

Usage: python benchmarks/bench_overhead.py [--runs N]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.client import Client, WorkflowFailureError

from benchmarks import _common as common
from benchmarks.workflows import HandWrittenCompensationTrip, NoCompensationTrip
from sagakit import Fault, FaultPlan, running_worker
from sagakit.course.client import connect
from sagakit.course.lessons.trip import TripSagaInput, TripSagaWorkflow
from sagakit.course.services.activities import TripActivities

if TYPE_CHECKING:
    from matplotlib.axes import Axes

VARIANTS: dict[str, type] = {
    "a: no compensation": NoCompensationTrip,
    "b: hand-written list": HandWrittenCompensationTrip,
    "c: sagakit Saga": TripSagaWorkflow,
}
SCENARIOS: dict[str, tuple[str, ...]] = {
    "success": tuple(VARIANTS),
    "compensating": ("b: hand-written list", "c: sagakit Saga"),
}
TARGET_C_OVER_B = 1.03


@dataclass(frozen=True)
class Row:
    """Latency of one variant in one scenario."""

    scenario: str
    """``success`` or ``compensating``."""
    variant: str
    """Which workflow."""
    runs: int
    """Measured runs (after warm-up)."""
    median_ms: float
    """Median latency, start request to result, in milliseconds."""
    p95_ms: float
    """95th percentile latency in milliseconds."""
    cpu_ms: float
    """Median CPU time of this process per run (worker and client; not the server), in ms.
    Less disturbed by other load on the machine than the latency."""


@dataclass(frozen=True)
class OverheadResult:
    """Rows for every scenario and variant, and the ratios of medians."""

    rows: tuple[Row, ...]
    """One row per (scenario, variant)."""
    ratios: dict[str, float]
    """``c/b`` and ``c/a`` for success, ``c/b compensating`` for the failure path (ratios of
    median latency), and the same three with `` CPU`` appended (ratios of median CPU time)."""


def _median_of(rows: tuple[Row, ...], scenario: str, prefix: str, *, cpu: bool = False) -> float:
    row = next(r for r in rows if r.scenario == scenario and r.variant.startswith(prefix))
    return row.cpu_ms if cpu else row.median_ms


async def measure(client: Client, runs: int = 30, *, warmup: int = 2) -> OverheadResult:
    """Run every variant ``runs`` times per scenario, interleaved, and summarise."""
    common.quiet_worker_logs()
    tag = uuid.uuid4().hex[:8]
    ok_queue, bad_queue = f"bench-overhead-ok-{tag}", f"bench-overhead-bad-{tag}"
    counter = 0
    cpu: dict[str, list[float]] = {}

    def runner(queue: str, workflow: type, fails: bool) -> Callable[[], Awaitable[float]]:
        async def once() -> float:
            nonlocal counter
            counter += 1
            trip_id = f"overhead-{tag}-{counter}"
            cpu_before = time.process_time()
            elapsed = common.timer()
            try:
                await client.execute_workflow(
                    workflow.run,  # type: ignore[attr-defined]
                    TripSagaInput(trip_id),
                    id=trip_id,
                    task_queue=queue,
                )
            except WorkflowFailureError:
                if not fails:
                    raise
            else:
                if fails:
                    raise AssertionError(f"{workflow.__name__} should have failed")
            latency = elapsed() * 1000
            cpu.setdefault(f"{queue} {workflow.__name__}", []).append(
                (time.process_time() - cpu_before) * 1000
            )
            return latency

        return once

    refuse = FaultPlan.of({"book_excursion": [Fault.FAIL_PERMANENT]})
    workflows = list(VARIANTS.values())
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as tmp:
        ok_acts = TripActivities(Path(tmp) / "ok.db")
        bad_acts = TripActivities(Path(tmp) / "bad.db", refuse)
        async with (
            running_worker(
                client, task_queue=ok_queue, workflows=workflows, activities=ok_acts.all()
            ),
            running_worker(
                client, task_queue=bad_queue, workflows=workflows, activities=bad_acts.all()
            ),
        ):
            rows: list[Row] = []
            for scenario, names in SCENARIOS.items():
                fails = scenario == "compensating"
                queue = bad_queue if fails else ok_queue
                samples = await common.interleaved(
                    {name: runner(queue, VARIANTS[name], fails) for name in names},
                    runs,
                    warmup=warmup,
                )
                rows.extend(
                    Row(
                        scenario,
                        name,
                        len(values),
                        common.median(values),
                        common.percentile(values, 95),
                        common.median(cpu[f"{queue} {VARIANTS[name].__name__}"][warmup:]),
                    )
                    for name, values in samples.items()
                )
    table = tuple(rows)
    ratios: dict[str, float] = {}
    for use_cpu, suffix in ((False, ""), (True, " CPU")):
        for name, scenario, other in (
            ("c/b", "success", "b"),
            ("c/a", "success", "a"),
            ("c/b compensating", "compensating", "b"),
        ):
            ratios[name + suffix] = common.ratio(
                _median_of(table, scenario, "c", cpu=use_cpu),
                _median_of(table, scenario, other, cpu=use_cpu),
            )
    return OverheadResult(table, ratios)


def report(result: OverheadResult) -> str:
    """The table, the ratios and the summary line."""
    base = {r.scenario: r for r in result.rows if r.variant.startswith("b")}
    table = common.format_table(
        ["scenario", "variant", "runs", "median ms", "p95 ms", "median / b", "CPU ms", "CPU / b"],
        [
            (
                r.scenario,
                r.variant,
                r.runs,
                r.median_ms,
                r.p95_ms,
                r.median_ms / base[r.scenario].median_ms,
                r.cpu_ms,
                common.ratio(r.cpu_ms, base[r.scenario].cpu_ms),
            )
            for r in result.rows
        ],
    )
    ratios = "  ".join(f"{k} = {v:.3f}" for k, v in result.ratios.items())
    cb = result.ratios["c/b"]
    return "\n".join(
        [
            table,
            "",
            f"ratios of medians: {ratios}",
            common.summary(
                "overhead",
                f"c/b = {cb:.3f} (target <= {TARGET_C_OVER_B}: "
                f"{common.verdict(cb, TARGET_C_OVER_B)}), c/a = {result.ratios['c/a']:.3f}, "
                f"c/b compensating = {result.ratios['c/b compensating']:.3f}; CPU c/b = "
                f"{result.ratios['c/b CPU']:.3f}",
            ),
        ]
    )


def chart(result: OverheadResult) -> Path:
    """Median and p95 latency per variant and scenario, as grouped bars."""

    def draw(ax: Axes) -> None:
        labels = [f"{r.scenario}\n{r.variant}" for r in result.rows]
        xs = range(len(result.rows))
        ax.bar(xs, [r.median_ms for r in result.rows], label="median")
        ax.scatter(
            xs, [r.p95_ms for r in result.rows], color="black", marker="_", s=400, label="p95"
        )
        ax.set_xticks(list(xs), labels, fontsize=7)
        ax.set_ylabel("latency per trip (ms)")
        ax.legend()

    return common.save_chart("overhead", draw, title="3-step trip: saga overhead")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30, help="measured runs per variant")
    args = parser.parse_args(argv)
    print(common.machine().describe())
    client = await connect()
    result = await measure(client, args.runs)
    print(report(result))
    print(f"chart: {chart(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
