"""``python -m sagakit``: the course's command line (see :mod:`sagakit.course.cli`)."""

from sagakit.course.cli import run

run()
