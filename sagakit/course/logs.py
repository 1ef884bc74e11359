"""Keep the worker's failure warnings out of a lesson that fails on purpose.

A Temporal worker logs a warning, with a traceback, every time an activity
attempt raises or a workflow task fails. That is what you want in production.
In a lesson that *makes* things fail to show what Temporal does about it, the
same facts are already in the workflow's History, and the tracebacks would
only bury the output (in a notebook they can even land in a later cell, since
activities run on other threads)::

    with quiet_expected_failures():
        result = await client.execute_workflow(...)   # retries happen quietly
    print(history_table(await handle.fetch_history()))  # ...and are all in the History
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

__all__ = ["WORKER_LOGGERS", "quiet_expected_failures"]

WORKER_LOGGERS: tuple[str, ...] = (
    "temporalio.worker",
    "temporalio.activity",
    "temporalio.workflow",
)
"""The loggers through which a worker reports failed attempts and tasks, and workflows log."""


@contextlib.contextmanager
def quiet_expected_failures(level: int = logging.ERROR) -> Iterator[None]:
    """Inside the block, the worker's loggers report only records of ``level`` and above.

    Failed attempts and failed workflow tasks are logged as warnings, so the
    default ``ERROR`` hides them while real errors still show. The previous
    levels are restored when the block ends.
    """
    loggers = [logging.getLogger(name) for name in WORKER_LOGGERS]
    previous = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, previous, strict=True):
            logger.setLevel(old)
