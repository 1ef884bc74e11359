"""How many learners can one Temporal dev server serve before lesson cells get slow?

A class shares one server; each learner works in a namespace of their own
(``SAGAKIT_LEARNER``, see docs/instructor-guide.md). This script simulates N
learners doing lesson 09's work at a learner's pace: each learner is a process of
its own (as each learner has a kernel of their own) that runs "lesson cells", one
:func:`sagakit.course.playground.run_trip` each (a trip saga with a fault: nothing
fails, a step fails for good and the saga compensates, a step fails once and is
retried, a step does its work but the reply is lost), with a pause of a few seconds
between cells, as a learner reads the next paragraph.

For N = 1, 2, 4, 8, 16 learners it reports the median and p95 time of a cell, the
p95 relative to one learner, and the CPU the server used (cores, and milliseconds
per cell). The learners start, connect and run a warm-up cell first; the window
measured starts when all are ready, so process start-up is not counted.

By default a fresh dev server is started on free ports with a temporary data
folder, so its CPU is this benchmark's alone (the shared server on 7233 is never
touched). On this machine the learners' workers run on the same cores as the
server, unlike in a class where each worker runs on a learner's laptop: the p95
figures are pessimistic, the server CPU per cell is the figure that carries over.

Usage: python benchmarks/bench_class.py [--learners 1 2 4 8 16] [--cells 5] [--pause 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common
from sagakit import Fault
from sagakit.course.devserver import DevServer, DevServerConfig
from sagakit.course.learner import LEARNER_ENV
from sagakit.course.playground import TripChoice

if TYPE_CHECKING:
    from matplotlib.axes import Axes

LEARNERS = (1, 2, 4, 8, 16)
"""Class sizes measured by default."""

CELLS = (
    TripChoice(step=None),
    TripChoice(step="book_excursion", fault=Fault.FAIL_PERMANENT),
    TripChoice(step="book_flight", fault=Fault.FAIL_BEFORE),
    TripChoice(step="book_hotel", fault=Fault.FAIL_AFTER),
)
"""Lesson 09's runs, in the order a learner meets them: happy, compensated, retried, lost reply."""

READY = "bench-class ready"
"""What a learner process prints once all its learners are connected and warmed up."""


@dataclass(frozen=True)
class Row:
    """What N learners at once saw."""

    learners: int
    """Learners working at the same time."""
    cells: int
    """Lesson cells measured, over all learners."""
    median_s: float
    """Median time of a cell, in seconds."""
    p95_s: float
    """95th percentile time of a cell, in seconds."""
    p95_ratio: float
    """``p95_s`` relative to the first row (one learner)."""
    window_s: float
    """Wall time of the measured window, in seconds."""
    server_cores: float
    """Server CPU seconds per wall second over the window (1.0 = one core busy)."""
    server_ms_per_cell: float
    """Server CPU milliseconds per cell."""
    load: float
    """The machine's 1-minute load average at the end of the window."""


@dataclass(frozen=True)
class ClassResult:
    """One row per class size, and the conclusion."""

    rows: list[Row]
    machine: common.Machine
    pause_s: float
    """Mean pause between two cells of a learner, in seconds."""

    @property
    def learners_before_p95_doubles(self) -> int:
        """The largest class measured whose p95 cell time stayed under twice one learner's."""
        fine = [r.learners for r in self.rows if r.p95_ratio < 2.0]
        return max(fine) if fine else 0

    @property
    def learners_per_server_core(self) -> float:
        """Learners that would keep one server core busy, from the server CPU per learner."""
        per_learner = [r.server_cores / r.learners for r in self.rows if r.server_cores > 0]
        return common.ratio(1.0, common.median(per_learner)) if per_learner else float("nan")


# -- one learner (a child process) -----------------------------------------------------------


async def learners_main(names: Sequence[str], cells: int, pause: float, seed: int) -> None:
    """Be a few learners: connect, warm up, wait for "go" on stdin, run cells, print JSON times.

    Each learner has a client of their own in namespace ``learner-<name>``, as
    :func:`sagakit.course.connect` gives a kernel with ``SAGAKIT_LEARNER`` set.
    """
    from temporalio.client import Client

    from sagakit._runtime import quiet_runtime
    from sagakit.course.learner import ensure_namespace, learner_namespace
    from sagakit.course.playground import run_trip

    common.quiet_worker_logs()
    address = os.environ["TEMPORAL_ADDRESS"]
    go = asyncio.Event()
    ready: list[str] = []

    async def learner(name: str, rng: random.Random, workdir: str) -> list[float]:
        client = await Client.connect(
            address, namespace=learner_namespace(name), runtime=quiet_runtime()
        )
        await ensure_namespace(client, timeout=60)
        await run_trip(client, CELLS[0], workdir=workdir, workflow_id="lesson-09-warmup")
        ready.append(name)
        if len(ready) == len(names):
            print(READY, flush=True)
        await go.wait()
        await asyncio.sleep(pause * rng.uniform(0, 1))  # learners do not all click at once
        times = []
        for n in range(cells):
            elapsed = common.timer()
            await run_trip(
                client, CELLS[n % len(CELLS)], workdir=workdir, workflow_id=f"lesson-09-cell-{n}"
            )
            times.append(elapsed())
            if n < cells - 1:
                await asyncio.sleep(pause * rng.uniform(0.5, 1.5))
        return times

    async def wait_for_go() -> None:
        await asyncio.to_thread(sys.stdin.readline)
        go.set()

    with tempfile.TemporaryDirectory(prefix="bench-class-") as root:
        waiting = asyncio.create_task(wait_for_go())
        runs = []
        for i, name in enumerate(names):
            folder = Path(root) / name
            folder.mkdir()
            runs.append(learner(name, random.Random(seed * 100 + i), str(folder)))
        results = await asyncio.gather(*runs)
        await waiting
    print(json.dumps([t for times in results for t in times]), flush=True)


# -- the class (this process) -----------------------------------------------------------------


def _start_learners(
    names: Sequence[str], address: str, cells: int, pause: float, seed: int
) -> subprocess.Popen[str]:
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "PYTHONUNBUFFERED": "1"}
    env.pop("TEMPORAL_NAMESPACE", None)
    env.pop(LEARNER_ENV, None)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.bench_class",
            "--as-learners",
            *names,
            "--cells",
            str(cells),
            "--pause",
            str(pause),
            "--seed",
            str(seed),
        ],
        cwd=common.ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_ready(learner: subprocess.Popen[str], timeout: float = 180.0) -> None:
    assert learner.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = learner.stdout.readline()
        if line.startswith(READY):
            return
        if not line and learner.poll() is not None:
            break
    learner.kill()
    _, err = learner.communicate()
    raise RuntimeError(f"a learner process did not get ready: {err[-2000:]}")


def one_class(
    learners: int, *, address: str, server: int | None, cells: int, pause: float, processes: int
) -> tuple[list[float], float, float, float]:
    """Run ``learners`` learners at once, shared out over at most ``processes`` processes.

    Returns the cell times, the window's wall time, the server's CPU seconds in
    the window and the load average at its end.
    """
    token = uuid.uuid4().hex[:6]
    names = [f"bench-{token}-{n}" for n in range(learners)]
    groups = [names[i::processes] for i in range(min(processes, learners))]
    procs = [
        _start_learners(group, address, cells, pause, seed=n) for n, group in enumerate(groups)
    ]
    try:
        for proc in procs:
            _wait_ready(proc)
        cpu_before = common.cpu_seconds(server) if server is not None else 0.0
        window = common.timer()
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        times: list[float] = []
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            if proc.returncode != 0:
                raise RuntimeError(f"a learner process failed: {err[-2000:]}")
            times.extend(json.loads(out.strip().splitlines()[-1]))
        elapsed = window()
        cpu = (common.cpu_seconds(server) if server is not None else 0.0) - cpu_before
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return times, elapsed, cpu, os.getloadavg()[0]


def measure(
    *,
    address: str,
    server: int | None,
    learners: Sequence[int] = LEARNERS,
    cells: int = 5,
    pause: float = 3.0,
    processes: int = 4,
) -> ClassResult:
    """Measure each class size in ``learners`` against the server at ``address``.

    Args:
        address: the server's host:port.
        server: the server's process id, to read its CPU time (``None``: not measured).
        learners: class sizes, smallest first (the first is the reference for ratios).
        cells: measured cells per learner.
        pause: mean pause between a learner's cells, in seconds.
        processes: at most this many learner processes; learners share them as tasks,
            so 16 learners do not need 16 interpreters started on a small machine.
    """
    machine = common.machine()
    rows: list[Row] = []
    for size in learners:
        times, window, cpu, load = one_class(
            size, address=address, server=server, cells=cells, pause=pause, processes=processes
        )
        p95 = common.percentile(times, 95)
        rows.append(
            Row(
                learners=size,
                cells=len(times),
                median_s=common.median(times),
                p95_s=p95,
                p95_ratio=common.ratio(p95, rows[0].p95_s) if rows else 1.0,
                window_s=window,
                server_cores=common.ratio(cpu, window),
                server_ms_per_cell=common.ratio(cpu * 1000, len(times)),
                load=load,
            )
        )
        print(f"  {size} learner(s): p95 {p95:.2f} s", file=sys.stderr, flush=True)
    return ClassResult(rows=rows, machine=machine, pause_s=pause)


def report(result: ClassResult) -> str:
    """The table and the SUMMARY line."""
    table = common.format_table(
        [
            "learners",
            "cells",
            "median s",
            "p95 s",
            "p95 / 1 learner",
            "server cores",
            "server ms/cell",
            "load",
        ],
        [
            (
                r.learners,
                r.cells,
                r.median_s,
                r.p95_s,
                r.p95_ratio,
                r.server_cores,
                r.server_ms_per_cell,
                r.load,
            )
            for r in result.rows
        ],
    )
    ratios = ", ".join(f"{r.learners}: {r.p95_ratio:.2f}" for r in result.rows)
    return "\n".join(
        [
            result.machine.describe(),
            f"each learner: a run_trip cell, then a pause of ~{result.pause_s:g} s",
            table,
            common.summary(
                "class",
                f"p95 cell time / 1 learner = {ratios}; p95 stays under 2x up to "
                f"{result.learners_before_p95_doubles} learners; one server core would serve "
                f"~{result.learners_per_server_core:.0f} learners at this pace",
            ),
        ]
    )


def chart(result: ClassResult) -> Path:
    """p95 cell time and server CPU against class size."""

    def draw(ax: Axes) -> None:
        sizes = [r.learners for r in result.rows]
        ax.plot(sizes, [r.p95_s for r in result.rows], "o-", label="p95 cell time (s)")
        ax.plot(sizes, [r.server_cores for r in result.rows], "s--", label="server CPU (cores)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(s) for s in sizes])
        ax.set_xlabel("learners at once")
        ax.grid(alpha=0.3)
        ax.legend()

    return common.save_chart("class", draw, title="A class on one dev server")


async def _fresh_server() -> DevServer:
    data = Path(tempfile.mkdtemp(prefix="bench-class-server-"))
    port = _free_port()
    server = DevServer(DevServerConfig(port=port, ui_port=port + 1000, data_dir=data))
    await server.start()
    return server


def _free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (and, for the Web UI, port + 1000)."""
    import socket

    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 1000 < 65536:
            return port


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--as-learner``, be one learner)."""
    parser = argparse.ArgumentParser(description="Learners one dev server serves.")
    parser.add_argument("--learners", type=int, nargs="+", default=list(LEARNERS))
    parser.add_argument("--cells", type=int, default=5, help="measured cells per learner")
    parser.add_argument("--pause", type=float, default=3.0, help="mean pause between cells, s")
    parser.add_argument("--address", help="use this server (host:port) instead of a fresh one")
    parser.add_argument("--processes", type=int, default=4, help="learner processes at most")
    parser.add_argument("--as-learners", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.as_learners:
        asyncio.run(learners_main(args.as_learners, args.cells, args.pause, args.seed))
        sys.stdout.flush()
        os._exit(0)  # the Temporal runtime's threads can crash a normal interpreter shutdown
    server: DevServer | None = None
    if args.address:
        address = args.address
    else:
        server = asyncio.run(_fresh_server())
        address = f"127.0.0.1:{server.config.port}"
    try:
        port = int(address.rpartition(":")[2])
        result = measure(
            address=address,
            server=common.server_pid(port),
            learners=sorted(args.learners),
            cells=args.cells,
            pause=args.pause,
            processes=args.processes,
        )
    finally:
        if server is not None:
            server.stop()
            shutil.rmtree(server.config.data_dir, ignore_errors=True)
    print(report(result))
    print(f"chart: {chart(result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
