"""The trip saga's worker in a process of its own, so that lesson 09 can kill it mid-saga.

The child side is the main block: it runs a worker for
:class:`~sagakit.course.lessons.trip.TripSagaWorkflow` and the trip activities on one
world file, with an optional fault plan given as JSON::

    python -m sagakit.course.lessons.trip_worker lesson-09-crash world.db '{"book_flight": ["hang"]}'

The JSON maps a step to the faults of its first attempts, as in
:meth:`~sagakit.FaultPlan.of`. Every worker started with the same plan
acts out the same faults, because a fault depends only on the step and the
attempt number: attempt 1 hangs in the first worker, attempt 2 runs cleanly in
whichever worker gets it.

The parent side is :func:`wait_until_step_running`: it asks the server until a
given step of a workflow has been picked up by a worker and has not finished,
the moment to pull the plug.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.client import WorkflowHandle

from sagakit import ConfigurationError, FaultPlan, SagakitError
from sagakit.course._polling import poll_until

__all__ = ["StepNotRunning", "fault_plan_from_json", "main", "wait_until_step_running"]

USAGE = "usage: python -m sagakit.course.lessons.trip_worker TASK_QUEUE WORLD_DB [FAULTS_JSON]"


class StepNotRunning(SagakitError):
    """A step did not start running on a worker in time (or the workflow ended first)."""


def fault_plan_from_json(text: str) -> FaultPlan:
    """Build a plan from JSON like ``{"book_flight": ["hang"]}`` (step: faults of attempts 1, 2 …).

    Raises:
        ConfigurationError: the text is not a JSON object of lists of fault names.
    """
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigurationError(
            f"The fault plan {text!r} is not JSON ({err}). Write it like "
            '\'{"book_flight": ["hang"]}\'.'
        ) from err
    if not isinstance(raw, dict) or not all(
        isinstance(faults, list) and all(isinstance(f, str) for f in faults)
        for faults in raw.values()
    ):
        raise ConfigurationError(
            f"The fault plan {text!r} must map each step to a list of fault names, like "
            '\'{"book_flight": ["hang"]}\'.'
        )
    return FaultPlan.of(raw)


async def wait_until_step_running(
    handle: WorkflowHandle[Any, Any],
    step: str,
    *,
    started: bool = True,
    timeout: float = 20.0,
) -> int:
    """Wait until an attempt of ``step`` has been started by a worker and is still running.

    Args:
        handle: the workflow's handle.
        step: the activity name, e.g. ``"book_flight"``.
        started: only an attempt that a worker has picked up counts; with
            ``False``, a step that is scheduled or waiting between attempts
            counts too (the workflow has reached it and it is not finished).
        timeout: seconds to wait.

    Returns:
        The number of the attempt that is running.

    Raises:
        StepNotRunning: the workflow closed, or ``timeout`` seconds passed, first.
    """

    async def running_attempt() -> int | None:
        description = await handle.describe()
        for pending in description.raw_description.pending_activities:
            if pending.activity_type.name == step and (
                not started or pending.state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            ):
                return int(pending.attempt)
        if description.close_time is not None:
            status = description.status.name if description.status is not None else "closed"
            raise StepNotRunning(
                f"Workflow {handle.id} ended ({status}) before {step} was seen running. Give "
                "the step a HANG fault (or a slower service) so there is time to catch it."
            )
        return None

    return await poll_until(
        running_attempt,
        timeout=timeout,
        what=f"{step} of workflow {handle.id} to run",
        timed_out=lambda: StepNotRunning(
            f"{step} of workflow {handle.id} was not running on any worker within "
            f"{timeout:g} s. Check that a worker polls the workflow's task queue."
        ),
    )


def main(argv: Sequence[str]) -> None:
    """Run a trip worker: ``TASK_QUEUE WORLD_DB [FAULTS_JSON]`` (see the module docstring)."""
    if len(argv) not in (2, 3):
        print(USAGE, file=sys.stderr)
        raise SystemExit(2)
    from sagakit.course.lessons.trip import TripSagaWorkflow
    from sagakit.course.processes import run_worker
    from sagakit.course.services.activities import TripActivities

    plan = fault_plan_from_json(argv[2]) if len(argv) == 3 else FaultPlan()
    activities = TripActivities(argv[1], plan)
    run_worker(task_queue=argv[0], workflows=[TripSagaWorkflow], activities=activities.all())


if __name__ == "__main__":
    main(sys.argv[1:])
