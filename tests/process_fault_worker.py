"""Trip activities that stop in the middle on purpose, so a test can kill the worker there.

Child side (``python -m tests.process_fault_worker TASK_QUEUE DB SPEC``): run a
worker for the canonical trip saga whose activities follow ``SPEC``, a comma
separated list of ``trip:step:mode`` entries:

* ``pause-before``: print ``PAUSED trip step before`` and block before the effect;
* ``pause-after``: do the effect, print ``PAUSED trip step after`` and block
  (the reply is never sent: the effect happened, the server does not know);
* ``fail``: every attempt fails with a permanent fault (a planned business failure).

In-process, :class:`PausingTripActivities` takes a ``release`` event instead of
blocking for ever, so a test can let the paused activity go on.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from temporalio import activity

from sagakit import Fault, FaultPlan, FaultRule
from sagakit.course.lessons.trip import TripSagaWorkflow
from sagakit.course.processes import run_worker
from sagakit.course.services.activities import TripActivities, TripRequest


def parse_spec(spec: str) -> list[tuple[str, str, str]]:
    """``"t1:book_flight:pause-after,t2:book_hotel:fail"`` -> ``[(trip, step, mode), ...]``."""
    entries = []
    for item in filter(None, spec.split(",")):
        trip, step, mode = item.split(":")
        assert mode in ("pause-before", "pause-after", "fail"), mode
        entries.append((trip, step, mode))
    return entries


def failures_only(spec: str) -> str:
    """The ``fail`` entries of ``spec``: what a replacement worker must keep doing."""
    return ",".join(":".join(e) for e in parse_spec(spec) if e[2] == "fail")


class PausingTripActivities(TripActivities):
    """Trip activities that pause where the spec says (first attempt only)."""

    def __init__(
        self,
        db_path: str | Path,
        spec: str,
        *,
        release: threading.Event | None = None,
        reached: Callable[[str], None] | None = None,
    ) -> None:
        entries = parse_spec(spec)
        plan = FaultPlan(
            rules=tuple(
                FaultRule(step=step, fault=Fault.FAIL_PERMANENT, attempt=None, key=trip)
                for trip, step, mode in entries
                if mode == "fail"
            )
        )
        super().__init__(db_path, plan)
        self.pauses = {(t, s): m for t, s, m in entries if m != "fail"}
        self.release = release or threading.Event()  # never set in a child process
        self.reached = reached or (lambda line: print(line, flush=True))

    def all(self) -> list[Callable[..., Any]]:
        """The activities, each wrapped with its pause."""
        return [self._wrap(step) for step in self.STEPS]

    def _wrap(self, step: str) -> Callable[..., Any]:
        inner = getattr(self, step)

        def run(request: TripRequest) -> Any:
            mode = self.pauses.get((request.trip_id, step))
            first = activity.info().attempt == 1
            if first and mode == "pause-before":
                self.reached(f"PAUSED {request.trip_id} {step} before")
                self.release.wait()
            result = inner(request)
            if first and mode == "pause-after":
                self.reached(f"PAUSED {request.trip_id} {step} after")
                self.release.wait()
            return result

        run.__name__ = step
        return activity.defn(name=step)(run)


if __name__ == "__main__":
    queue, db, spec = sys.argv[1], sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else "")
    run_worker(
        task_queue=queue,
        workflows=[TripSagaWorkflow],
        activities=PausingTripActivities(db, spec).all(),
    )
