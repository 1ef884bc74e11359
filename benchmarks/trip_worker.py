"""A worker process for ``bench_throughput.py``: ``python -m benchmarks.trip_worker QUEUE DB MODE``.

It runs the trip saga (:class:`sagakit.course.lessons.trip.TripSagaWorkflow`) and the
trip activities on the world in ``DB`` until its parent stops it. ``MODE`` is

- ``sandboxed``: :func:`sagakit.course.processes.run_worker` as it is: the sagakit
  core is passed through the workflow sandbox, and the course's modules (the trip
  workflow, the services) are imported afresh for every new workflow run;
- ``passthrough``: the same worker with all of ``sagakit`` passed through the
  sandbox (imported once, shared by all runs). The sandbox's checks on calls
  (``datetime.now()``, ``open()``, ...) still apply to workflow code.
"""

from __future__ import annotations

import sys

from sagakit.course.lessons.trip import TripSagaWorkflow
from sagakit.course.processes import WorkerOptions, run_worker
from sagakit.course.services.activities import TripActivities

MODES = ("sandboxed", "passthrough")
CACHED_WORKFLOWS = 1000
"""Sticky cache size, as in the Temporal SDK's default (sagakit's crash demos use 0)."""
THREADS = 16


def main(argv: list[str]) -> None:
    task_queue, db, mode = argv
    if mode not in MODES:
        raise SystemExit(f"MODE must be one of {MODES}, got {mode!r}")
    run_worker(
        task_queue=task_queue,
        workflows=[TripSagaWorkflow],
        activities=TripActivities(db).all(),
        options=WorkerOptions(
            max_cached_workflows=CACHED_WORKFLOWS,
            activity_threads=THREADS,
            passthrough=("sagakit",) if mode == "passthrough" else (),
        ),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
