"""The ``%%exercise_module`` cell magic: save a learner's cell as the exercise's module.

An exercise notebook loads it once with ``%load_ext sagakit.course.exercises``; then a
cell such as::

    %%exercise_module saga
    from temporalio import workflow
    ...

is saved as ``scratch/exercise_saga.py`` next to the notebook (a folder that git
ignores, so a learner's edits never change the course). The file starts with one
blank line standing in for the ``%%exercise_module`` line, so line N of the file
is line N of the cell: every line number a check, a syntax error or a traceback
mentions is the one the learner sees in the cell.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from sagakit.course.exercises.harness import SCRATCH_FOLDER, scratch_path

__all__ = ["exercise_module", "load_ipython_extension", "write_exercise_module"]


def write_exercise_module(
    exercise: str, cell: str, folder: str | os.PathLike[str] | None = None
) -> Path:
    """Save the body of an ``%%exercise_module`` cell as the module of ``exercise``.

    Args:
        exercise: The exercise's name, e.g. ``"saga"`` (a key of
            :data:`~sagakit.course.exercises.EXERCISES`).
        cell: The cell's text below the ``%%exercise_module`` line.
        folder: The notebook's folder; by default the working directory.

    Returns:
        The file written, ``<folder>/scratch/<the exercise's file>``.

    Raises:
        UnknownExercise: ``exercise`` is not an exercise name.
    """
    from sagakit.course.exercises.checks import EXERCISES, UnknownExercise

    found = EXERCISES.get(exercise.strip())
    if found is None:
        raise UnknownExercise(
            f"There is no exercise {exercise.strip()!r}; write %%exercise_module followed by "
            f"one of {', '.join(EXERCISES)}."
        )
    path = scratch_path(found.file, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The blank first line stands for the %%exercise_module line: file line N == cell line N.
    path.write_text("\n" + cell, encoding="utf-8")
    return path


def exercise_module(line: str, cell: str) -> None:
    """Cell magic: ``%%exercise_module <exercise>`` saves the cell for the exercise's check."""
    path = write_exercise_module(line, cell)
    print(
        f"Saved your code as {SCRATCH_FOLDER}/{path.name} (line numbers as in this cell). "
        "Now run the check below."
    )


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%%exercise_module`` (run by ``%load_ext sagakit.course.exercises``)."""
    ipython.register_magic_function(exercise_module, "cell", "exercise_module")
