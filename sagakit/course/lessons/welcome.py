"""Lesson 00: the smallest complete Temporal program, one workflow calling one activity."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import activity, workflow


@dataclass(frozen=True)
class Greeting:
    """Input of the welcome workflow."""

    name: str
    """Who to greet."""
    course: str = "Sagas in Practice"
    """Which course they are starting."""


@activity.defn
def compose_greeting(greeting: Greeting) -> str:
    """Activity: build the greeting text (the place where side effects would go)."""
    return f"Welcome to {greeting.course}, {greeting.name}!"


@workflow.defn
class WelcomeWorkflow:
    """Workflow: ask the activity for a greeting and return it."""

    @workflow.run
    async def run(self, greeting: Greeting) -> str:
        """Run the single step and return what the activity produced."""
        return await workflow.execute_activity(
            compose_greeting,
            greeting,
            start_to_close_timeout=timedelta(seconds=10),
        )
