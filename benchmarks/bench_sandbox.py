"""Does ``from sagakit import Saga`` make a workflow run cost the worker more CPU?

Temporal's workflow sandbox re-executes, for every workflow run, each module
the workflow module imports, unless that module is passed through. The issue
this answers measured 162 ms of worker CPU per run for a workflow module that
said ``from sagakit import Saga``, against 34 ms for the same saga written by
hand. Since then ``sagakit/__init__.py`` hands out its names lazily, inside
``workflow.unsafe.imports_passed_through()``.

One worker process, and the DEFAULT sandbox: a plain ``temporalio.worker.Worker``
with the default ``SandboxedWorkflowRunner``, no pass-through configuration,
no sagakit helper. The same 3-step saga (trivial async activities) is written
as four variants, each in its own workflow module:

(a) ``benchmarks/sandbox_handwritten.py``: a list of undo activities and
    try/except, no sagakit import (the baseline);
(b) ``benchmarks/sandbox_sagakit.py``: ``from sagakit import Saga`` (the target:
    b/a <= 1.10);
(c) ``benchmarks/sandbox_private.py``: ``from sagakit._saga import Saga``, a
    private import that nothing passes through (for information);
(d) the module of (c) on a second worker built with ``sagakit.sandbox_runner()``,
    which passes the sagakit core through (for information).

Each variant runs in two shapes: *success* (three bookings, nothing undone)
and *compensating* (the third booking is refused, three undos run). The eight
(variant, shape) pairs run one at a time, interleaved and rotated round by
round, after warm-up rounds. Each run is measured with ``time.process_time()``
of this process (the workers and the client; the server is another process)
from the start request to a short pause after the result, so the eviction of
the finished run is counted with it. CPU per run of a variant is the mean of
its two shapes' medians; ratios are taken against (a).

Before the timed runs, each variant's workflow is loaded once more in a
sandbox outside the worker, to list the modules the sandbox executes afresh
for it, and loaded a few more times to time that load alone.

It runs against the shared dev server (``sagakit.course.client.connect()``), or,
with ``--own-server``, against a fresh dev server of its own on free ports, which
nobody else restarts or loads meanwhile. The server is another process, so the
choice changes the latency column, not the CPU figures.

Usage: python benchmarks/bench_sandbox.py [--runs N] [--own-server]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import socket
import sys
import tempfile
import time
import types
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from temporalio import workflow
from temporalio.client import Client, WorkflowFailureError
from temporalio.worker import Worker, WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from benchmarks import _common as common
from benchmarks.sandbox_activities import book, cancel
from benchmarks.sandbox_handwritten import HandwrittenSandboxSaga
from benchmarks.sandbox_private import PrivateImportSandboxSaga
from benchmarks.sandbox_sagakit import SagakitSandboxSaga
from sagakit import sandbox_runner
from sagakit.course.client import connect
from sagakit.course.devserver import DevServer, DevServerConfig

if TYPE_CHECKING:
    from matplotlib.axes import Axes


@dataclass(frozen=True)
class Variant:
    """One way to write and run the saga."""

    workflow: type
    """The workflow class (its module is what the sandbox loads)."""
    helper_runner: bool
    """Run on the worker built with ``sagakit.sandbox_runner()`` instead of the plain one."""
    label: str
    """How the report names it in the ratio lines."""


VARIANTS: dict[str, Variant] = {
    "a: hand-written": Variant(HandwrittenSandboxSaga, False, "handwritten"),
    "b: from sagakit import Saga": Variant(SagakitSandboxSaga, False, "sagakit"),
    "c: from sagakit._saga import Saga": Variant(PrivateImportSandboxSaga, False, "private import"),
    "d: c + sagakit.sandbox_runner()": Variant(
        PrivateImportSandboxSaga, True, "private import + sandbox_runner()"
    ),
}
SHAPES = ("success", "compensating")
TARGET_B_OVER_A = 1.10
SETTLE_S = 0.02
"""Pause after each result, inside the measured window, so the worker's eviction of the
finished run is counted with that run rather than the next."""
LOADS = 15
"""How many times each variant's workflow is loaded in a sandbox, outside the worker, to time it."""


@dataclass(frozen=True)
class Row:
    """CPU per run of one variant in one shape."""

    variant: str
    """Which variant (a key of :data:`VARIANTS`)."""
    shape: str
    """``success`` or ``compensating``."""
    runs: int
    """Measured runs (after warm-up)."""
    cpu_ms: float
    """Median CPU time of this process per run, in milliseconds."""
    p95_cpu_ms: float
    """95th percentile of the same."""
    latency_ms: float
    """Median time from start request to result, in milliseconds (for information)."""


@dataclass(frozen=True)
class SandboxLoad:
    """What the sandbox does to load one variant's workflow for a new run."""

    variant: str
    """Which variant."""
    fresh_modules: tuple[str, ...]
    """Modules executed afresh in the sandbox (not passed through), in load order; empty if
    this temporalio version does not let the benchmark look."""
    load_ms: float
    """Median CPU time of loading the workflow in a new sandbox, in milliseconds."""
    compiled: tuple[str, ...]
    """Those of ``fresh_modules`` with no up-to-date ``.pyc``: compiled from source for every
    run (with ``PYTHONDONTWRITEBYTECODE=1``, a module edited since its ``.pyc`` was written)."""


@dataclass(frozen=True)
class SandboxResult:
    """Rows for every variant and shape, the sandbox loads, and the ratios to (a)."""

    rows: tuple[Row, ...]
    """One row per (variant, shape)."""
    loads: tuple[SandboxLoad, ...]
    """One per variant."""
    ratios: dict[str, float]
    """``b/a``, ``c/a`` and ``d/a``: CPU per run (mean of the two shapes' medians) over (a)'s."""


def cpu_per_run(rows: tuple[Row, ...], variant: str) -> float:
    """A variant's CPU per run in ms: the mean of its success and compensating medians."""
    values = [r.cpu_ms for r in rows if r.variant == variant]
    return sum(values) / len(values)


def _runner_for(variant: Variant) -> SandboxedWorkflowRunner:
    return sandbox_runner() if variant.helper_runner else SandboxedWorkflowRunner()


def _bytecode_is_cached(module_name: str) -> bool:
    """Whether the module's ``.pyc`` matches its source, so the sandbox need not compile it."""
    spec = importlib.util.find_spec(module_name)
    source = spec.origin if spec else None
    if not source or not source.endswith(".py"):
        return True
    try:
        header = Path(importlib.util.cache_from_source(source)).read_bytes()[:16]
        stat = Path(source).stat()
    except OSError:
        return False
    if header[:4] != importlib.util.MAGIC_NUMBER or len(header) < 16:
        return False
    if int.from_bytes(header[4:8], "little") != 0:
        return True  # a hash-based .pyc: checked against the source, not recompiled here
    return int.from_bytes(header[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF and (
        int.from_bytes(header[12:16], "little") == stat.st_size & 0xFFFFFFFF
    )


def _fresh(instance: WorkflowInstance) -> tuple[str, ...]:
    # Private to temporalio: the sandbox's own sys.modules. A module object that is not the
    # host's, and is a plain module with a file, was executed afresh (RestrictedModule
    # wrappers of passed-through modules are a different type).
    modules = getattr(getattr(instance, "importer", None), "new_modules", None)
    if not isinstance(modules, dict):
        return ()
    return tuple(
        name
        for name, module in modules.items()
        if sys.modules.get(name) is not module
        and type(module) is types.ModuleType
        and getattr(module, "__file__", None)
    )


async def sandbox_load(name: str, variant: Variant, loads: int = LOADS) -> SandboxLoad:
    """Load the variant's workflow in new sandboxes, as the worker does for every new run.

    ``prepare_workflow`` is what a ``Worker`` calls once per workflow class when it
    starts: it creates a sandboxed instance with placeholder workflow info, which
    executes the same imports as a real run's first activation.
    """
    seen: list[tuple[str, ...]] = []

    class Recording(SandboxedWorkflowRunner):
        def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
            instance = super().create_instance(det)
            seen.append(_fresh(instance))
            return instance

    base = _runner_for(variant)
    definition = workflow._Definition.must_from_class(variant.workflow)
    Recording(restrictions=base.restrictions).prepare_workflow(definition)
    times: list[float] = []
    for _ in range(loads):
        started = time.process_time()
        base.prepare_workflow(definition)
        times.append((time.process_time() - started) * 1000)
    fresh = seen[0] if seen else ()
    compiled = tuple(m for m in fresh if not _bytecode_is_cached(m))
    return SandboxLoad(name, fresh, common.median(times), compiled)


async def measure(client: Client, runs: int = 60, *, warmup: int = 2) -> SandboxResult:
    """Run every (variant, shape) ``runs`` times, interleaved, and summarise."""
    common.quiet_worker_logs()
    loads = tuple([await sandbox_load(name, v) for name, v in VARIANTS.items()])
    tag = uuid.uuid4().hex[:8]
    plain_queue, helper_queue = f"bench-sandbox-plain-{tag}", f"bench-sandbox-helper-{tag}"
    counter = 0
    latency: dict[str, list[float]] = {}

    def runner(name: str, shape: str) -> Callable[[], Awaitable[float]]:
        variant = VARIANTS[name]
        queue = helper_queue if variant.helper_runner else plain_queue
        refuse = shape == "compensating"
        key = f"{name} {shape}"

        async def once() -> float:
            nonlocal counter
            counter += 1
            workflow_id = f"sandbox-{tag}-{counter}"
            cpu_before = time.process_time()
            elapsed = common.timer()
            try:
                await client.execute_workflow(
                    variant.workflow.run,  # type: ignore[attr-defined]
                    refuse,
                    id=workflow_id,
                    task_queue=queue,
                )
            except WorkflowFailureError:
                if not refuse:
                    raise
            else:
                if refuse:
                    raise AssertionError(f"{variant.workflow.__name__} should have failed")
            latency.setdefault(key, []).append(elapsed() * 1000)
            await asyncio.sleep(SETTLE_S)
            return (time.process_time() - cpu_before) * 1000

        return once

    activities: list[Callable[..., Any]] = [book, cancel]
    plain = Worker(
        client,
        task_queue=plain_queue,
        workflows=[v.workflow for v in VARIANTS.values() if not v.helper_runner],
        activities=activities,
    )
    helper = Worker(
        client,
        task_queue=helper_queue,
        workflows=[v.workflow for v in VARIANTS.values() if v.helper_runner],
        activities=activities,
        workflow_runner=sandbox_runner(),
    )
    async with plain, helper:
        samples = await common.interleaved(
            {f"{name} {shape}": runner(name, shape) for name in VARIANTS for shape in SHAPES},
            runs,
            warmup=warmup,
        )
    rows = tuple(
        Row(
            name,
            shape,
            len(values),
            common.median(values),
            common.percentile(values, 95),
            common.median(latency[f"{name} {shape}"][warmup:]),
        )
        for name in VARIANTS
        for shape in SHAPES
        for values in [samples[f"{name} {shape}"]]
    )
    base = cpu_per_run(rows, "a: hand-written")
    ratios = {
        f"{name[0]}/a": common.ratio(cpu_per_run(rows, name), base)
        for name in VARIANTS
        if not name.startswith("a")
    }
    return SandboxResult(rows, loads, ratios)


def report(result: SandboxResult) -> str:
    """The tables, the ratio lines and the summary line."""
    base = {r.shape: r.cpu_ms for r in result.rows if r.variant.startswith("a")}
    runs_table = common.format_table(
        ["variant", "shape", "runs", "CPU ms", "p95 CPU ms", "CPU / a", "latency ms"],
        [
            (
                r.variant,
                r.shape,
                r.runs,
                r.cpu_ms,
                r.p95_cpu_ms,
                common.ratio(r.cpu_ms, base[r.shape]),
                r.latency_ms,
            )
            for r in result.rows
        ],
    )
    loads_table = common.format_table(
        ["variant", "sandbox load ms", "modules executed afresh per run"],
        [
            (
                load.variant,
                load.load_ms,
                ", ".join(m + ("*" if m in load.compiled else "") for m in load.fresh_modules)
                or "(not visible)",
            )
            for load in result.loads
        ],
    )
    b_over_a = result.ratios["b/a"]
    verdict = common.verdict(b_over_a, TARGET_B_OVER_A)
    footnote = (
        [
            "* no up-to-date .pyc (sys.dont_write_bytecode is "
            f"{sys.dont_write_bytecode}): compiled from source for every run"
        ]
        if any(load.compiled for load in result.loads)
        else []
    )
    info = [
        f"{VARIANTS[name].label}/handwritten CPU per run: {result.ratios[name[0] + '/a']:.2f}x "
        "(for information)"
        for name in VARIANTS
        if name[0] in "cd"
    ]
    return "\n".join(
        [
            runs_table,
            "",
            loads_table,
            *footnote,
            "",
            f"sagakit/handwritten CPU per run: {b_over_a:.2f}x "
            f"(target <= {TARGET_B_OVER_A:.2f}): {verdict}",
            *info,
            common.summary(
                "sandbox",
                f"b/a = {b_over_a:.3f} (target <= {TARGET_B_OVER_A:.2f}: {verdict}), "
                f"c/a = {result.ratios['c/a']:.3f}, d/a = {result.ratios['d/a']:.3f} "
                "(worker CPU per run, default sandbox)",
            ),
        ]
    )


def chart(result: SandboxResult) -> Path:
    """Median CPU per run of each variant, one bar per shape."""

    def draw(ax: Axes) -> None:
        width = 0.4
        names = list(VARIANTS)
        for offset, shape in ((-width / 2, SHAPES[0]), (width / 2, SHAPES[1])):
            values = [
                next(r.cpu_ms for r in result.rows if r.variant == n and r.shape == shape)
                for n in names
            ]
            ax.bar([i + offset for i in range(len(names))], values, width, label=shape)
        ax.set_xticks(range(len(names)), [n.replace(": ", ":\n", 1) for n in names], fontsize=7)
        ax.set_ylabel("worker CPU per run (ms)")
        ax.legend()

    return common.save_chart("sandbox", draw, title="Worker CPU per run in the default sandbox")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.asynccontextmanager
async def own_server() -> AsyncIterator[Client]:
    """A client of a fresh dev server on free ports, in a temporary folder, stopped at the end."""
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        port, ui_port = _free_port(), _free_port()
        while ui_port == port:
            ui_port = _free_port()
        server = DevServer(DevServerConfig(port=port, ui_port=ui_port, data_dir=Path(tmp)))
        status = await server.start()
        try:
            if not status.started_here:
                raise RuntimeError(f"{server.config.address} already had a Temporal server")
            yield await connect(server=server.config)
        finally:
            server.stop()


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=60, help="measured runs per variant and shape")
    parser.add_argument(
        "--own-server",
        action="store_true",
        help="run against a fresh dev server on free ports instead of the shared one",
    )
    args = parser.parse_args(argv)
    print(common.machine().describe())
    if args.own_server:
        async with own_server() as client:
            print(
                f"server: a fresh dev server of this run's own ({client.service_client.config.target_host})"
            )
            result = await measure(client, args.runs)
    else:
        result = await measure(await connect(), args.runs)
    print(report(result))
    print(f"chart: {chart(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
