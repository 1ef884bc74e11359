"""A whole class on one Temporal server: four learners run the same lesson at the same time.

Each learner is a separate ``pytest --nbval`` process (a real kernel per notebook, the
committed outputs compared under notebooks/sanitize.cfg, exactly as ``make test`` checks a
notebook) with its own ``SAGAKIT_LEARNER``, all against the test session's own dev server.
The lesson uses fixed workflow IDs and task queues with ``TERMINATE_EXISTING``: in one
namespace the learners would terminate each other's runs and poll each other's queues.
Each in a namespace of their own, every run passes, and the server's workflow list shows
every learner's workflows, once each, with the statuses the lesson leaves, in that
learner's namespace only.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections import Counter

import pytest
from temporalio.client import Client

from sagakit.course.learner import LEARNER_ENV, learner_namespace
from tests.helpers import ROOT

LEARNERS = 4
NOTEBOOK = "notebooks/06-temporal-cluster-workers-workflows-activities.ipynb"

LESSON_06_WORKFLOWS = {
    "lesson-06-pack": "COMPLETED",
    "lesson-06-share": "COMPLETED",
    "lesson-06-stamp": "COMPLETED",
    "lesson-06-QuoteThenChargeWorkflow": "COMPLETED",
    "lesson-06-ChargeCurrentPriceWorkflow": "COMPLETED",
    "lesson-06-resilient": "COMPLETED",
    "lesson-06-exercise": "RUNNING",
}
"""What lesson 06 leaves on the server: one run of each workflow, all completed but the
exercise's, which waits for the worker the learner has not written yet (the learner edition)."""

pytestmark = pytest.mark.skipif(
    os.environ.get("SAGAKIT_TEST_SERVER") != "own",
    reason="needs the test session's own dev server (it registers a namespace per learner)",
)


def nbval(learner: str) -> subprocess.Popen[str]:
    """Start ``pytest --nbval`` on the lesson as ``learner`` (it inherits the session's server)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-o",
            "addopts=",
            "-p",
            "no:cacheprovider",
            "-q",
            "--nbval",
            "--nbval-current-env",
            "--nbval-sanitize-with=notebooks/sanitize.cfg",
            "--nbval-cell-timeout=120",
            NOTEBOOK,
        ],
        cwd=ROOT,
        # Options given to the outer run (PYTEST_ADDOPTS) are not this run's: "-n 3" there
        # would spread one learner's notebook over three processes.
        env={
            **{k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},
            LEARNER_ENV: learner,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _first_report(output: str) -> str:
    """The first failure or error pytest reported in ``output``, and the summary at its end.

    (The end alone may be a warning printed at exit, with the cause thousands of lines above.)
    """
    start = output.find("\n___")
    first = output[start : start + 3000] if start >= 0 else ""
    return f"{first}\n[...]\n{output[-1500:]}"


async def workflows_in(client: Client, namespace: str) -> Counter[tuple[str, str]]:
    """Every execution in ``namespace`` as (workflow ID, status), counted."""
    found: Counter[tuple[str, str]] = Counter()
    async for execution in Client(client.service_client, namespace=namespace).list_workflows():
        status = execution.status.name if execution.status is not None else "UNKNOWN"
        found[(execution.id, status)] += 1
    return found


@pytest.mark.timeout(600)  # about a minute on a quiet 2-core machine; far more under load
async def test_four_learners_run_the_same_lesson_at_once_without_cross_talk(
    client: Client,
) -> None:
    token = uuid.uuid4().hex[:6]
    learners = [f"class-{token}-{n}" for n in range(1, LEARNERS + 1)]
    started = time.monotonic()
    runs = {learner: nbval(learner) for learner in learners}
    try:
        outputs = {learner: run.communicate(timeout=540)[0] for learner, run in runs.items()}
    finally:
        for run in runs.values():
            if run.poll() is None:
                run.kill()
            run.communicate()
    elapsed = time.monotonic() - started

    failed = {learner: out for learner, out in outputs.items() if runs[learner].returncode != 0}
    assert not failed, "\n\n".join(
        f"--- {learner} (exit {runs[learner].returncode}):\n{_first_report(out)}"
        for learner, out in failed.items()
    )

    expected = Counter({(wf, status): 1 for wf, status in LESSON_06_WORKFLOWS.items()})
    for learner in learners:
        namespace = learner_namespace(learner)
        # Listing is eventually consistent: give the visibility store a moment.
        for _ in range(40):
            found = await workflows_in(client, namespace)
            if found == expected:
                break
            await asyncio.sleep(0.25)
        assert found == expected, f"{namespace}: {sorted(found.items())}"
    print(f"{LEARNERS} learners ran {NOTEBOOK} at once in {elapsed:.0f} s")
