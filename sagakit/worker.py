"""Run a Temporal worker for the length of a ``with`` block."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

__all__ = ["running_worker"]


@contextlib.asynccontextmanager
async def running_worker(
    client: Client,
    *,
    task_queue: str,
    workflows: Sequence[type] = (),
    activities: Sequence[Callable[..., Any]] = (),
    max_concurrent_activities: int | None = None,
) -> AsyncIterator[Worker]:
    """Poll ``task_queue`` with a worker while the block runs, then shut it down.

    Plain ``def`` activities (the simulated services use blocking SQLite) run
    on a thread pool that the worker owns; ``async def`` activities run on the
    event loop. On exit the worker stops polling and waits for running tasks.
    """
    threads = max_concurrent_activities or 16
    with ThreadPoolExecutor(max_workers=threads) as executor:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=list(workflows),
            activities=list(activities),
            activity_executor=executor,
            max_concurrent_activities=max_concurrent_activities,
        )
        async with worker:
            yield worker
