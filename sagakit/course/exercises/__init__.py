"""Self-checking exercises: load a learner's workflow module, run it for real, say what is wrong.

In an exercise notebook the learner writes a workflow into a real module with
``%%writefile exercise_<name>.py`` (so the workflow sandbox stays on), then runs::

    from sagakit.course.exercises import check
    await check("saga", "exercise_saga.py")

The check imports the file afresh, runs it on the Temporal server with real
workers (under injected faults where the exercise is about failure), and
returns a :class:`CheckResult` of ✓ and ✗ lines in plain words.
"""

from sagakit.course.exercises.checks import (
    EXERCISES,
    Exercise,
    UnknownExercise,
    check,
    check_breakfast_saga,
    check_compensation,
    check_determinism,
    check_first_workflow,
    check_order_fulfilment,
    check_retry_policy,
    order_scenarios,
)
from sagakit.course.exercises.harness import (
    CheckLine,
    CheckResult,
    ExerciseLoadError,
    load_exercise,
)

__all__ = [
    "EXERCISES",
    "CheckLine",
    "CheckResult",
    "Exercise",
    "ExerciseLoadError",
    "UnknownExercise",
    "check",
    "check_breakfast_saga",
    "check_compensation",
    "check_determinism",
    "check_first_workflow",
    "check_order_fulfilment",
    "check_retry_policy",
    "load_exercise",
    "order_scenarios",
]
