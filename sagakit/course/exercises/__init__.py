"""Self-checking exercises: load a learner's workflow module, run it for real, say what is wrong.

An exercise notebook runs ``%load_ext sagakit.course.exercises`` once; then the
learner writes a workflow in a cell that starts with ``%%exercise_module saga``,
which saves it as a real module, ``scratch/exercise_saga.py`` (untracked, and with
the same line numbers as the cell), so the workflow sandbox stays on. Then::

    from sagakit.course.exercises import check
    print(await check("saga"))

The check imports the file afresh, runs it on the Temporal server with real
workers (under injected faults where the exercise is about failure), and
returns a :class:`CheckResult` of ✓ and ✗ lines in plain words (and a
``○ Not done yet:`` line while the cell still says TODO).
"""

from typing import Any as _Any

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
    NOT_DONE,
    SCRATCH_FOLDER,
    CheckLine,
    CheckResult,
    ExerciseLoadError,
    load_exercise,
    scratch_path,
)
from sagakit.course.exercises.magic import write_exercise_module

__all__ = [
    "EXERCISES",
    "NOT_DONE",
    "SCRATCH_FOLDER",
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
    "load_ipython_extension",
    "order_scenarios",
    "scratch_path",
    "write_exercise_module",
]


def load_ipython_extension(ipython: _Any) -> None:
    """Register the ``%%exercise_module`` cell magic (``%load_ext sagakit.course.exercises``)."""
    from sagakit.course.exercises.magic import load_ipython_extension as load

    load(ipython)
