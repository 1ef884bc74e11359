"""Record the Histories of the key saga scenarios into tests/data/saga_<name>.json.

test_saga_replay.py replays each file against today's workflow classes, so a change
to sagakit (or to tests/saga_workflows.py) that would break sagas already running
fails CI with a nondeterminism error. Run this by hand only when such a change is
intended and every running saga has finished (or when adding a scenario to
saga_scenarios.SCENARIOS), from the repository root::

    .venv/bin/python tests/make_saga_histories.py            # every scenario
    .venv/bin/python tests/make_saga_histories.py lifo       # only some

It uses the server that ``sagakit.course.connect`` finds (``TEMPORAL_ADDRESS``, or
the local dev server, started if needed) and runs its own worker.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(
    0, str(Path(__file__).resolve().parent.parent)
)  # the repository root, as under pytest

from sagakit import running_worker
from sagakit.course import connect
from tests.saga_activities import ACTIVITIES, create_ledger
from tests.saga_scenarios import SCENARIOS
from tests.saga_workflows import WORKFLOWS

DATA = Path(__file__).resolve().parent / "data"


async def record_all(selected: list[str]) -> None:
    """Act out each selected scenario on a fresh task queue and write its History."""
    unknown = sorted(set(selected) - set(SCENARIOS))
    if unknown:
        raise SystemExit(f"unknown scenario(s) {unknown}; choose from {sorted(SCENARIOS)}")
    client = await connect()
    with tempfile.TemporaryDirectory() as scratch:
        for name in selected or list(SCENARIOS):
            task_queue = f"saga-history-{name}-{uuid.uuid4()}"
            ledger = create_ledger(Path(scratch) / f"{name}.sqlite")
            async with running_worker(
                client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
            ):
                handle = await SCENARIOS[name](client, task_queue, ledger)
                history = await handle.fetch_history()
            path = DATA / f"saga_{name}.json"
            path.write_text(history.to_json() + "\n")
            print(f"{path.relative_to(DATA.parent.parent)}: {len(history.events)} events")


if __name__ == "__main__":
    asyncio.run(record_all(sys.argv[1:]))
