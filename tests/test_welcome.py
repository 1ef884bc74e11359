"""The lesson-00 workflow runs end to end on the real server."""

from __future__ import annotations

from temporalio.client import Client

from sagakit import running_worker
from sagakit.course.lessons.welcome import Greeting, WelcomeWorkflow, compose_greeting


async def test_welcome_workflow_returns_the_activity_result(
    client: Client, task_queue: str
) -> None:
    async with running_worker(
        client, task_queue=task_queue, workflows=[WelcomeWorkflow], activities=[compose_greeting]
    ):
        handle = await client.start_workflow(
            WelcomeWorkflow.run, Greeting("Ada"), id=f"welcome-{task_queue}", task_queue=task_queue
        )
        assert await handle.result() == "Welcome to Sagas in Practice, Ada!"
    history = await handle.fetch_history()
    scheduled = [
        e for e in history.events if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert [e.activity_task_scheduled_event_attributes.activity_type.name for e in scheduled] == [
        "compose_greeting"
    ]
