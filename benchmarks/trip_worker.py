"""A worker process for ``bench_throughput.py``: ``python -m benchmarks.trip_worker QUEUE DB MODE``.

It runs the trip saga (:class:`sagakit.course.lessons.trip.TripSagaWorkflow`) and the
trip activities on the world in ``DB`` until its parent stops it. ``MODE`` is

- ``sandboxed``: :func:`sagakit.course.processes.run_worker` as it is, so the
  workflow sandbox imports ``sagakit`` afresh for every new workflow run;
- ``passthrough``: the same worker, but with ``sagakit`` passed through the
  sandbox (imported once, shared by all runs). The sandbox's checks on calls
  (``datetime.now()``, ``open()``, ...) still apply to workflow code.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor

from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from sagakit.course.lessons.trip import TripSagaWorkflow
from sagakit.course.processes import IDENTITY_ENV, READY_PREFIX, WorkerOptions, run_worker
from sagakit.course.services.activities import TripActivities

MODES = ("sandboxed", "passthrough")
CACHED_WORKFLOWS = 1000
"""Sticky cache size, as in the Temporal SDK's default (sagakit's crash demos use 0)."""
THREADS = 16


def passthrough_runner() -> SandboxedWorkflowRunner:
    """A sandbox that imports ``sagakit`` once instead of once per workflow run."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules("sagakit")
    )


async def _serve_passthrough(task_queue: str, db: str) -> None:
    # What sagakit.course.processes.serve_worker does, plus a workflow_runner (it has no such option).
    from sagakit.course.client import connect

    client = await connect()
    identity = os.environ.get(IDENTITY_ENV) or f"{task_queue}-{os.getpid()}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()

    async def watch_parent() -> None:
        while True:
            await asyncio.sleep(0.5)
            if os.getppid() != parent:
                stop.set()
                return

    watcher = asyncio.create_task(watch_parent())
    with ThreadPoolExecutor(max_workers=THREADS) as executor:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=[TripSagaWorkflow],
            activities=TripActivities(db).all(),
            activity_executor=executor,
            identity=identity,
            max_cached_workflows=CACHED_WORKFLOWS,
            workflow_runner=passthrough_runner(),
        )
        async with worker:
            print(f"{READY_PREFIX} task_queue={task_queue} identity={identity}", flush=True)
            await stop.wait()
    watcher.cancel()


def main(argv: list[str]) -> None:
    task_queue, db, mode = argv
    if mode not in MODES:
        raise SystemExit(f"MODE must be one of {MODES}, got {mode!r}")
    if mode == "sandboxed":
        run_worker(
            task_queue=task_queue,
            workflows=[TripSagaWorkflow],
            activities=TripActivities(db).all(),
            options=WorkerOptions(max_cached_workflows=CACHED_WORKFLOWS, activity_threads=THREADS),
        )
    asyncio.run(_serve_passthrough(task_queue, db))
    sys.stdout.flush()
    os._exit(0)  # as run_worker does: the runtime's threads can crash a normal shutdown


if __name__ == "__main__":
    main(sys.argv[1:])
