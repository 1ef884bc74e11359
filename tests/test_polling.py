"""The one "ask again until it is true, or the time is up" loop, and the waits built on it."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import Client

from sagakit import SagakitError, running_worker
from sagakit.course._polling import PollTimeout, poll_until
from sagakit.course.exercises.checks import _unfinished
from sagakit.course.exercises.harness import run_workflow
from sagakit.course.lessons import breakfast, fineprint
from sagakit.course.lessons.breakfast import BreakfastInput, BreakfastWorkflow
from sagakit.course.lessons.durable import Dispatch, SandboxedClockWorkflow
from sagakit.course.lessons.temporal_basics import (
    ResilientOrder,
    ResilientOrderWorkflow,
    reserve_stock,
    ship_order,
)
from sagakit.course.lessons.welcome import Greeting, WelcomeWorkflow, compose_greeting
from sagakit.course.services.activities import BreakfastActivities
from sagakit.course.services.world import World

# -- poll_until --------------------------------------------------------------------------------


async def test_it_returns_the_first_answer_that_is_not_none() -> None:
    answers = iter([None, None, "here"])

    async def look() -> str | None:
        return next(answers)

    assert await poll_until(look, timeout=5, what="the third look", interval=0) == "here"


async def test_a_timeout_names_what_was_awaited_and_looks_once_more_at_the_deadline() -> None:
    looks = 0

    async def never() -> None:
        nonlocal looks
        looks += 1

    started = time.monotonic()
    with pytest.raises(PollTimeout, match=r"Gave up waiting for the pigeon after 0\.2 s\.") as err:
        await poll_until(never, timeout=0.2, what="the pigeon", interval=0.05)
    assert 0.2 <= time.monotonic() - started < 2
    assert looks >= 3
    assert (err.value.what, err.value.timeout) == ("the pigeon", 0.2)
    assert isinstance(err.value, SagakitError)
    assert isinstance(err.value, TimeoutError)


async def test_zero_timeout_still_looks_once() -> None:
    async def ready() -> int:
        return 7

    assert await poll_until(ready, timeout=0, what="a ready answer") == 7


async def test_the_caller_may_raise_its_own_error_built_at_the_deadline() -> None:
    seen: list[int] = []

    async def counting() -> None:
        seen.append(len(seen))

    class Late(Exception):
        pass

    with pytest.raises(Late, match=r"after \d+ looks"):
        await poll_until(
            counting,
            timeout=0.1,
            what="x",
            interval=0.01,
            timed_out=lambda: Late(f"after {len(seen)} looks"),
        )


async def test_a_look_that_raises_ends_the_wait_at_once() -> None:
    async def gone() -> None:
        raise LookupError("the workflow ended")

    started = time.monotonic()
    with pytest.raises(LookupError, match="ended"):
        await poll_until(gone, timeout=30, what="a step")
    assert time.monotonic() - started < 5


# -- one wait_for_stage for lessons 08 and 12 --------------------------------------------------


def test_lessons_08_and_12_share_one_stage_wait() -> None:
    assert breakfast.wait_for_stage is fineprint.wait_for_stage
    assert issubclass(breakfast.StageNotReached, TimeoutError)


async def test_a_stage_never_reached_is_reported_with_the_stage_the_workflow_is_in(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    activities = BreakfastActivities(World(tmp_path / "world.db").path).all()
    async with running_worker(
        client, task_queue=task_queue, workflows=[BreakfastWorkflow], activities=activities
    ):
        handle = await client.start_workflow(
            BreakfastWorkflow.run,
            BreakfastInput("b1", pause_before_milk=True),
            id=f"{task_queue}-b1",
            task_queue=task_queue,
        )
        await fineprint.wait_for_stage(handle, "paused before the milk")
        with pytest.raises(
            breakfast.StageNotReached, match=r"still 'paused before the milk' after 0\.5 s"
        ):
            await fineprint.wait_for_stage(handle, "served", timeout=0.5)
        await handle.terminate("test over")


# -- the exercise harness waits for the result while it watches for a stuck task ---------------


async def test_the_harness_tells_completed_stuck_and_too_slow_runs_apart(client: Client) -> None:
    done, stuck, slow = await asyncio.gather(
        run_workflow(
            client,
            WelcomeWorkflow,
            Greeting("Ada"),
            name="poll-done",
            activities=[compose_greeting],
            file_name="welcome.py",
        ),
        run_workflow(
            client,
            SandboxedClockWorkflow,
            Dispatch("o-1"),
            name="poll-stuck",
            activities=[],
            file_name="durable.py",
        ),
        run_workflow(  # waits on a 60 s timer: no activity keeps the worker busy
            client,
            ResilientOrderWorkflow,
            ResilientOrder("o-2", stock_failures=0, warehouse_wait=60),
            name="poll-slow",
            activities=[reserve_stock, ship_order],
            file_name="temporal_basics.py",
            deadline=timedelta(seconds=1),
        ),
    )
    assert (done.status, done.result) == ("completed", "Welcome to Sagas in Practice, Ada!")
    assert stuck.status == "stuck"
    assert "RestrictedWorkflowAccessError" in stuck.message or "datetime" in stuck.message
    assert stuck.line is not None
    assert slow.status == "too_slow"
    assert slow.history is not None
    # The check's line says what the run was last doing: here, waiting on its 60 s timer.
    assert re.search(
        r"\(the last event in its History: TimerStarted, \d+ s after the start\)",
        str(_unfinished(slow, "temporal_basics.py")),
    )
