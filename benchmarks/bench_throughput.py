"""How many trip sagas per second do one and two worker processes finish on this machine?

Worker processes are started with :func:`sagakit.course.processes.start_worker_process`
(``python -m benchmarks.trip_worker``): for each setting, one process polls a
task queue alone and two processes share another. Each round starts a batch of
trip sagas (:class:`~sagakit.course.lessons.trip.TripSagaWorkflow`, happy path) on one
task queue, all at once, and times the batch until every saga has finished.
Rounds rotate over the task queues so all see the same background load; an idle
worker only waits on its long poll. The dev server, this client and the workers
share the machine's cores, which is what a learner's laptop sees.

Two worker settings are compared:

- ``sandboxed``: :func:`sagakit.course.processes.run_worker` as shipped; the workflow
  sandbox imports the ``sagakit`` package afresh for every new workflow run;
- ``passthrough``: ``sagakit`` passed through the sandbox (imported once).

Usage: python benchmarks/bench_throughput.py [--rounds N] [--batch M]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio.client import Client

from benchmarks import _common as common
from sagakit.course.client import connect
from sagakit.course.lessons.trip import TripSagaInput, TripSagaWorkflow
from sagakit.course.processes import ChildProcess, start_worker_process
from sagakit.course.services.world import World

if TYPE_CHECKING:
    from matplotlib.axes import Axes

WORKER_MODULE = "benchmarks.trip_worker"
MODES = ("sandboxed", "passthrough")


@dataclass(frozen=True)
class Row:
    """Throughput with a given number of worker processes."""

    mode: str
    """``sandboxed`` or ``passthrough`` (see the module docstring)."""
    workers: int
    """Worker processes polling the task queue."""
    rounds: int
    """Measured batches."""
    batch: int
    """Sagas started at once in each batch."""
    median_per_s: float
    """Median sagas finished per second, over the batches."""
    min_per_s: float
    """Slowest batch, in sagas per second."""
    worker_cpu_ms: float
    """Median CPU time of the worker processes per saga, in milliseconds."""
    server_cpu_ms: float
    """Median CPU time of the dev server per saga (it also serves anyone else using it)."""
    client_cpu_ms: float
    """Median CPU time of this benchmark process (the client) per saga."""


@dataclass(frozen=True)
class ThroughputResult:
    """One row per worker count, and the speed-up of two processes over one."""

    rows: tuple[Row, ...]
    """Rows for each mode with 1 and 2 worker processes."""
    ratios: dict[str, float]
    """``2/1 sandboxed``, ``2/1 passthrough`` (more processes) and ``passthrough/sandboxed``
    (1 process each): ratios of median throughput."""


async def measure(
    client: Client, rounds: int = 5, *, batch: int = 40, warmup: int = 1
) -> ThroughputResult:
    """Start the worker processes, then rotate batches over the task queues."""
    tag = uuid.uuid4().hex[:8]
    setups = [(mode, workers) for mode in MODES for workers in (1, 2)]
    queues = {setup: f"bench-tp-{setup[0]}-{setup[1]}-{tag}" for setup in setups}
    counter = 0
    children: list[ChildProcess] = []
    pids: dict[tuple[str, int], list[int]] = {setup: [] for setup in setups}
    server = common.server_pid(_port(client))
    cpu: dict[tuple[str, int], list[tuple[float, float, float]]] = {s: [] for s in setups}

    def runner(setup: tuple[str, int]) -> Callable[[], Awaitable[float]]:
        async def once() -> float:
            nonlocal counter
            counter += 1
            prefix = f"tp-{tag}-{counter}"
            before = _cpu(pids[setup], server)
            elapsed = common.timer()
            handles = await asyncio.gather(
                *(
                    client.start_workflow(
                        TripSagaWorkflow.run,
                        TripSagaInput(f"{prefix}-{i}"),
                        id=f"{prefix}-{i}",
                        task_queue=queues[setup],
                    )
                    for i in range(batch)
                )
            )
            await asyncio.gather(*(handle.result() for handle in handles))
            seconds = elapsed()
            after = _cpu(pids[setup], server)
            cpu[setup].append(
                tuple((b - a) * 1000 / batch for a, b in zip(before, after, strict=True))  # type: ignore[arg-type]
            )
            return batch / seconds

        return once

    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        try:
            for (mode, workers), queue in queues.items():
                db = Path(tmp) / f"world-{mode}-{workers}.db"
                World(db)  # create and stock it before the children share it
                for _ in range(workers):
                    child = await start_worker_process(
                        client, WORKER_MODULE, queue, str(db), mode, task_queue=queue
                    )
                    children.append(child)
                    pids[mode, workers].append(child.pid)
            samples = await common.interleaved(
                {f"{mode} {workers}": runner((mode, workers)) for mode, workers in setups},
                rounds,
                warmup=warmup,
            )
        finally:
            for child in children:
                with contextlib.suppress(Exception):
                    child.terminate(timeout=5)
    medians = {name: common.median(v) for name, v in samples.items()}
    rows = tuple(
        Row(
            mode,
            workers,
            len(samples[f"{mode} {workers}"]),
            batch,
            medians[f"{mode} {workers}"],
            min(samples[f"{mode} {workers}"]),
            *(common.median([c[i] for c in cpu[mode, workers][warmup:]]) for i in range(3)),
        )
        for mode, workers in setups
    )
    ratios = {
        **{
            f"2/1 {mode}": common.ratio(medians[f"{mode} 2"], medians[f"{mode} 1"])
            for mode in MODES
        },
        "passthrough/sandboxed": common.ratio(medians["passthrough 1"], medians["sandboxed 1"]),
    }
    return ThroughputResult(rows, ratios)


def _port(client: Client) -> int:
    return int(client.service_client.config.target_host.rpartition(":")[2])


def _cpu(pids: list[int], server: int | None) -> tuple[float, float, float]:
    """CPU seconds so far of the workers (summed), the server and this process."""
    return (
        sum(common.cpu_seconds(pid) for pid in pids),
        common.cpu_seconds(server) if server is not None else 0.0,
        common.cpu_seconds(os.getpid()),
    )


def report(result: ThroughputResult) -> str:
    """The table and the summary line."""
    table = common.format_table(
        [
            "worker",
            "processes",
            "batches",
            "sagas/batch",
            "median sagas/s",
            "slowest /s",
            "CPU ms/saga: workers",
            "server",
            "client",
        ],
        [
            (
                r.mode,
                r.workers,
                r.rounds,
                r.batch,
                r.median_per_s,
                r.min_per_s,
                r.worker_cpu_ms,
                r.server_cpu_ms,
                r.client_cpu_ms,
            )
            for r in result.rows
        ],
    )
    per_s = {(r.mode, r.workers): r.median_per_s for r in result.rows}
    ratios = "  ".join(f"{k} = {v:.2f}" for k, v in result.ratios.items())
    return "\n".join(
        [
            table,
            "",
            f"ratios of medians: {ratios}",
            common.summary(
                "throughput",
                f"sandboxed: 1 process {per_s['sandboxed', 1]:.1f}/s, 2 processes "
                f"{per_s['sandboxed', 2]:.1f}/s (2/1 = {result.ratios['2/1 sandboxed']:.2f}); "
                f"passthrough: {per_s['passthrough', 1]:.1f}/s, {per_s['passthrough', 2]:.1f}/s "
                f"(2/1 = {result.ratios['2/1 passthrough']:.2f}); passthrough/sandboxed = "
                f"{result.ratios['passthrough/sandboxed']:.2f}",
            ),
        ]
    )


def chart(result: ThroughputResult) -> Path:
    """Median sagas per second by worker count."""

    def draw(ax: Axes) -> None:
        ax.bar(
            [f"{r.mode}\n{r.workers} process{'es' if r.workers > 1 else ''}" for r in result.rows],
            [r.median_per_s for r in result.rows],
            color=["tab:blue" if r.mode == "sandboxed" else "tab:green" for r in result.rows],
        )
        ax.set_ylabel("trip sagas finished per second (median)")

    return common.save_chart("throughput", draw, title="Trip saga throughput on this machine")


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Sagas per second with 1 and 2 workers.")
    parser.add_argument("--rounds", type=int, default=5, help="measured batches per variant")
    parser.add_argument("--batch", type=int, default=40, help="sagas started at once")
    args = parser.parse_args(argv)
    print(common.machine().describe())
    client = await connect()
    result = await measure(client, args.rounds, batch=args.batch)
    print(report(result))
    print(f"chart: {chart(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
