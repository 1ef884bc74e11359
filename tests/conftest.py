"""Shared fixtures: every test talks to a real Temporal server, never a mock.

Before the session starts, make sure a server is up: the one named by
TEMPORAL_ADDRESS / a Temporal profile, or else the local dev server, started
through sagakit exactly as a learner's notebook would. The notebooks that nbval
runs in the same session reuse it. A server this session started is stopped at
the end; one that was already running is left alone.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
from temporalio.client import Client

import sagakit
import sagakit.course.client
from sagakit import course
from sagakit.course.devserver import DevServer

_started_here = False


def pytest_sessionstart(session: pytest.Session) -> None:
    global _started_here
    if sagakit.course.client.configured_profile() is None:
        status = asyncio.run(DevServer().start())
        _started_here = status.started_here


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _started_here:
        DevServer().stop()


@pytest.fixture(scope="session")
async def client() -> Client:
    """A client of the session's real Temporal server."""
    return await course.connect()


@pytest.fixture
def task_queue() -> str:
    """A task queue no other test polls."""
    return f"test-{uuid.uuid4()}"
