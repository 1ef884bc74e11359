"""Shared fixtures: every test talks to a real Temporal server, never a mock.

The session's own dev server, and how the files are spread over processes, are set up by
the conftest.py at the top of the repository (it applies to the notebooks too).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from temporalio.client import Client

import sagakit.course.client
from sagakit import course
from sagakit.course.learner import LEARNER_ENV


@pytest.fixture
def no_learner(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start as a learner alone on a laptop: no learner, no instructor namespace."""
    monkeypatch.delenv(LEARNER_ENV, raising=False)
    monkeypatch.delenv("TEMPORAL_NAMESPACE", raising=False)
    monkeypatch.setattr(sagakit.course.client, "_last", None)


@pytest.fixture
def quiet_worker_logs() -> Iterator[None]:
    """Failed attempts are expected in this test: keep their tracebacks out of the test log."""
    logger = logging.getLogger("temporalio")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.fixture(scope="session")
async def client() -> Client:
    """A client of the session's real Temporal server."""
    return await course.connect()


@pytest.fixture
def task_queue() -> str:
    """A task queue no other test polls."""
    return f"test-{uuid.uuid4()}"
