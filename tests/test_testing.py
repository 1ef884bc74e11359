"""The time-skipping environment really skips time, from the installed binary."""

from __future__ import annotations

import time

from sagakit import running_worker
from sagakit.testing import time_skipping_environment
from tests.workflows import SleepForADay


async def test_a_day_long_timer_completes_without_waiting_a_day() -> None:
    async with (
        time_skipping_environment() as env,
        running_worker(env.client, task_queue="skip", workflows=[SleepForADay]),
    ):
        started = time.monotonic()
        elapsed_in_workflow = await env.client.execute_workflow(
            SleepForADay.run, id="sleep-a-day", task_queue="skip"
        )
    assert elapsed_in_workflow.startswith("1 day")
    assert time.monotonic() - started < 600, "time skipping must not wait for the real day"
