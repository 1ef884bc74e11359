"""Sagas that are already running must survive a new sagakit: replay their recorded Histories.

tests/data/saga_<name>.json were recorded by make_saga_histories.py (one per scenario
in saga_scenarios.SCENARIOS). Each replays against today's workflow classes, in the
sandbox the workers use; a change that makes the saga issue other commands than
it did then fails here with a nondeterminism error. No server is needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from sagakit import sandbox_runner
from tests.saga_scenarios import SCENARIOS
from tests.saga_workflows import WORKFLOWS

DATA = Path(__file__).resolve().parent / "data"


def test_every_scenario_has_a_recorded_history() -> None:
    recorded = {path.stem.removeprefix("saga_") for path in DATA.glob("saga_*.json")}
    assert recorded == set(SCENARIOS), (
        "tests/data/saga_*.json and saga_scenarios.SCENARIOS differ; run "
        "`.venv/bin/python tests/make_saga_histories.py NAME` for a new scenario."
    )


@pytest.mark.parametrize("name", sorted(SCENARIOS))
async def test_a_recorded_saga_replays_without_a_nondeterminism_error(name: str) -> None:
    text = (DATA / f"saga_{name}.json").read_text()
    history = WorkflowHistory.from_json(f"saga-{name}", text)
    assert len(json.loads(text)["events"]) == len(history.events) > 0
    replayer = Replayer(workflows=WORKFLOWS, workflow_runner=sandbox_runner())
    result = await replayer.replay_workflow(history)  # raises on a nondeterminism error
    assert result.replay_failure is None
