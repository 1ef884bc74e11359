"""Learners sharing one namespace: the names written in a notebook cell carry the learner.

Two learners ("ada", "bo") connect to the same namespace with ``SAGAKIT_LEARNER``
set and run the very same cell (same workflow ID, same task queue): the client
that :func:`sagakit.course.connect` returns scopes the names, and the workers
poll the scoped queue, so neither touches the other's workflow.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
)
from temporalio.common import WorkflowIDConflictPolicy

from sagakit import course, running_worker
from sagakit.course.learner import LEARNER_ENV, LearnerScope
from sagakit.course.lessons.durable import ORDER_STEPS, OrderInput, OrderWorkflow, create_step_log
from sagakit.course.lessons.longlived import ConcertInput, ConcertWorkflow
from sagakit.course.lessons.welcome import Greeting, WelcomeWorkflow, compose_greeting
from sagakit.course.processes import start_worker_process
from tests.helpers import pollers

pytestmark = pytest.mark.usefixtures("no_learner")


async def connect_as(
    monkeypatch: pytest.MonkeyPatch, who: str | None, namespace: str | None = "default"
) -> Client:
    """Connect the way a learner's notebook does, with their environment."""
    if who is None:
        monkeypatch.delenv(LEARNER_ENV, raising=False)
    else:
        monkeypatch.setenv(LEARNER_ENV, who)
    if namespace is None:
        monkeypatch.delenv("TEMPORAL_NAMESPACE", raising=False)
    else:
        monkeypatch.setenv("TEMPORAL_NAMESPACE", namespace)
    return await course.connect()


async def test_two_learners_run_the_same_cell_side_by_side(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = uuid.uuid4().hex[:10]
    workflow_id, task_queue = f"lesson-00-{token}", f"same-queue-{token}"
    clients = {who: await connect_as(monkeypatch, who) for who in ("ada", "bo")}

    async def the_cell(who: str) -> str:
        # What the notebook cell says, word for word, for every learner.
        client = clients[who]
        async with running_worker(
            client,
            task_queue=task_queue,
            workflows=[WelcomeWorkflow],
            activities=[compose_greeting],
            identity=f"worker-of-{who}",
        ):
            return await client.execute_workflow(
                WelcomeWorkflow.run, Greeting(who), id=workflow_id, task_queue=task_queue
            )

    async with asyncio.timeout(15):  # a worker polling another queue would leave them waiting
        results = await asyncio.gather(the_cell("ada"), the_cell("bo"))
    assert list(results) == [
        "Welcome to Sagas in Practice, ada!",
        "Welcome to Sagas in Practice, bo!",
    ]

    ids = [f"ada.{workflow_id}", f"bo.{workflow_id}"]
    query = "WorkflowId IN ({})".format(", ".join(f"'{i}'" for i in [*ids, workflow_id]))
    listed: list[str] = []
    for _ in range(40):  # visibility follows the executions by a moment
        listed = sorted([execution.id async for execution in clients["ada"].list_workflows(query)])
        if len(listed) >= 2:
            break
        await asyncio.sleep(0.1)
    assert listed == ids
    for who, client in clients.items():
        description = await client.get_workflow_handle(workflow_id).describe()
        assert description.id == f"{who}.{workflow_id}"
        assert description.status == WorkflowExecutionStatus.COMPLETED  # not terminated
        assert description.task_queue == f"{who}.{task_queue}"
        identities = {
            event.workflow_task_completed_event_attributes.identity
            async for event in client.get_workflow_handle(workflow_id).fetch_history_events()
            if event.HasField("workflow_task_completed_event_attributes")
        }
        assert identities == {f"worker-of-{who}"}  # only the learner's own worker ran it


async def test_updates_signals_and_queries_reach_the_learners_own_workflow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = uuid.uuid4().hex[:10]
    workflow_id, task_queue = f"concert-{token}", f"concert-queue-{token}"
    clients = {who: await connect_as(monkeypatch, who) for who in ("ada", "bo")}
    async with contextlib.AsyncExitStack() as workers:
        for client in clients.values():
            await workers.enter_async_context(
                running_worker(client, task_queue=task_queue, workflows=[ConcertWorkflow])
            )
        async with asyncio.timeout(15):
            for seats, client in zip((3, 1), clients.values(), strict=True):
                start = WithStartWorkflowOperation(
                    ConcertWorkflow.run,
                    ConcertInput(workflow_id, 10),
                    id=workflow_id,
                    task_queue=task_queue,
                    id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
                )
                left = await client.execute_update_with_start_workflow(
                    ConcertWorkflow.reserve, seats, start_workflow_operation=start
                )
                assert left == 10 - seats  # a fresh concert of the learner's own
                assert (await start.workflow_handle()).id.endswith(f".{workflow_id}")
            for seats, client in zip((3, 1), clients.values(), strict=True):
                handle: WorkflowHandle[Any, Any] = client.get_workflow_handle(workflow_id)
                assert await handle.execute_update(ConcertWorkflow.reserve, 1) == 9 - seats
                await handle.signal(ConcertWorkflow.reserve_later, 2)
                assert await handle.query(ConcertWorkflow.seats_left) == 7 - seats
                await handle.signal(ConcertWorkflow.close)
            outcomes: list[str] = [
                await client.get_workflow_handle(workflow_id).result()
                for client in clients.values()
            ]
    assert outcomes == ["6 of 10 seats sold", "4 of 10 seats sold"]


async def test_the_scope_is_installed_only_in_a_shared_namespace(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = uuid.uuid4().hex[:10]
    workflow_id, task_queue = f"plain-{token}", f"plain-queue-{token}"
    alone = await connect_as(monkeypatch, None, namespace=None)
    own = await connect_as(monkeypatch, "ada", namespace=None)  # learner-ada, registered
    shared = await connect_as(monkeypatch, "ada", namespace="default")
    assert (alone.namespace, own.namespace, shared.namespace) == (
        "default",
        "learner-ada",
        "default",
    )
    assert alone.config()["interceptors"] == []
    assert own.config()["interceptors"] == []
    assert shared.config()["interceptors"] == [LearnerScope.of(shared)]
    assert repr(LearnerScope.of(shared)) == "LearnerScope('ada')"
    assert LearnerScope.of(alone) is None
    assert LearnerScope.of(own) is None

    for client in (alone, own):
        handle = await client.start_workflow(
            "NoWorkerNeeded", id=workflow_id, task_queue=task_queue
        )
        try:
            assert handle.id == workflow_id
            assert (await handle.describe()).task_queue == task_queue
            assert course.web_ui_url(workflow_id, client=client).endswith(f"/{workflow_id}")
        finally:
            await handle.terminate()
    handle = await shared.start_workflow("NoWorkerNeeded", id=workflow_id, task_queue=task_queue)
    try:
        assert handle.id == f"ada.{workflow_id}"
        assert (await handle.describe()).task_queue == f"ada.{task_queue}"
    finally:
        await handle.terminate()


async def test_handles_and_links_are_scoped_once(monkeypatch: pytest.MonkeyPatch) -> None:
    token = uuid.uuid4().hex[:10]
    workflow_id, task_queue = f"handles-{token}", f"handles-queue-{token}"
    client = await connect_as(monkeypatch, "ada")
    handle = await client.start_workflow("NoWorkerNeeded", id=workflow_id, task_queue=task_queue)
    try:
        assert handle.id == f"ada.{workflow_id}"  # the handle from start_workflow ...
        assert (await handle.describe()).id == f"ada.{workflow_id}"  # ... is not scoped twice
        by_name = client.get_workflow_handle(workflow_id)  # the name written in the cell
        described = await by_name.describe()
        assert (described.id, described.run_id) == (handle.id, handle.result_run_id)
        assert described.task_queue == f"ada.{task_queue}"
        await by_name.signal("nobody-listens")
        await by_name.cancel()
        link = course.web_ui_url(workflow_id, handle.result_run_id)
        assert f"/namespaces/default/workflows/ada.{workflow_id}/" in link
        assert course.web_ui_url(handle.id, client=client).endswith(f"/ada.{workflow_id}")
    finally:
        await client.get_workflow_handle(workflow_id).terminate()
    assert (await handle.describe()).status == WorkflowExecutionStatus.TERMINATED


async def test_a_worker_process_polls_the_learners_queue(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    token = uuid.uuid4().hex[:10]
    task_queue = f"process-queue-{token}"
    client = await connect_as(monkeypatch, "ada")
    log = create_step_log(tmp_path / "steps.db")
    # The notebook's words: the child inherits SAGAKIT_LEARNER and the namespace.
    child = await start_worker_process(
        client,
        "sagakit.course.lessons.durable",
        "worker",
        task_queue,
        task_queue=task_queue,
        timeout=15,
    )
    try:
        assert await pollers(client, f"ada.{task_queue}")
        assert await pollers(client, task_queue) == []
        assert f"task_queue=ada.{task_queue}" in child.output
        result = await client.execute_workflow(
            OrderWorkflow.run,
            OrderInput("o-1", str(log), step_seconds=0),
            id=f"process-{token}",
            task_queue=task_queue,
        )
    finally:
        child.terminate()
    assert len(result) == len(ORDER_STEPS)
