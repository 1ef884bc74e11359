"""Lesson 06's programs on the real server: idle and shared workers, determinism, activity cuts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import PendingWorkflowTaskState
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.worker import Worker

from sagakit import course, running_worker
from sagakit.course.lessons.temporal_basics import (
    ChargeCurrentPriceWorkflow,
    CheckoutInput,
    EventNotSeen,
    PackingOrder,
    PackOrderWorkflow,
    PriceBoard,
    QuoteThenChargeWorkflow,
    ResilientOrder,
    ResilientOrderWorkflow,
    StampReceiptWorkflow,
    UnsafeStampReceiptWorkflow,
    activity_runs,
    activity_workers,
    charge_at_current_price,
    charge_card,
    pack_item,
    read_price,
    reserve_stock,
    ship_order,
    stamp,
    wait_for_event,
)
from sagakit.history import event_counts

# Failed attempts are expected throughout this file.
pytestmark = pytest.mark.usefixtures("quiet_worker_logs")


async def test_a_workflow_waits_for_a_worker_then_runs(client: Client, task_queue: str) -> None:
    order = PackingOrder("o-1", ("mug", "tea"), seconds_per_item=0.01)
    handle = await client.start_workflow(
        PackOrderWorkflow.run, order, id=f"idle-{task_queue}", task_queue=task_queue
    )
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    pending = description.raw_description.pending_workflow_task
    assert pending.state == PendingWorkflowTaskState.PENDING_WORKFLOW_TASK_STATE_SCHEDULED
    assert list(event_counts(await handle.fetch_history())) == [
        "WorkflowExecutionStarted",
        "WorkflowTaskScheduled",
    ]
    async with running_worker(
        client, task_queue=task_queue, workflows=[PackOrderWorkflow], activities=[pack_item]
    ):
        assert await handle.result() == ["mug packed", "tea packed"]


async def test_two_workers_on_one_task_queue_share_the_activities(
    client: Client, task_queue: str
) -> None:
    # One client per worker, as on two machines: the SDK allows one worker per
    # task queue on each client connection.
    other_client = await course.connect()

    def packer(name: str, connection: Client) -> Worker:
        return Worker(
            connection,
            task_queue=task_queue,
            workflows=[PackOrderWorkflow],
            activities=[pack_item],
            identity=name,
            max_concurrent_activities=2,
        )

    order = PackingOrder("o-2", tuple(f"item-{n}" for n in range(8)), seconds_per_item=0.3)
    async with packer("packer-A", client), packer("packer-B", other_client):
        handle = await client.start_workflow(
            PackOrderWorkflow.run, order, id=f"share-{task_queue}", task_queue=task_queue
        )
        assert len(await handle.result()) == 8
    workers = activity_workers(await handle.fetch_history())
    assert set(workers) == {"packer-A", "packer-B"}
    assert sum(workers.values()) == 8


async def test_reading_the_clock_fails_the_task_until_the_fix_is_deployed(
    client: Client, task_queue: str
) -> None:
    handle = await client.start_workflow(
        "StampReceipt",
        id=f"stamp-{task_queue}",
        task_queue=task_queue,
        task_timeout=timedelta(seconds=1),
        result_type=str,
    )
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[UnsafeStampReceiptWorkflow],
        activities=[stamp],
    ):
        failed = await wait_for_event(handle, "WorkflowTaskFailed")
    failure = failed.workflow_task_failed_event_attributes.failure
    assert failure.application_failure_info.type == "RestrictedWorkflowAccessError"
    assert "datetime.datetime.now" in failure.message
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    async with running_worker(
        client, task_queue=task_queue, workflows=[StampReceiptWorkflow], activities=[stamp]
    ):
        assert (await handle.result()).startswith("receipt stamped ")


async def test_wait_for_event_says_what_it_saw(client: Client, task_queue: str) -> None:
    handle = await client.start_workflow(
        PackOrderWorkflow.run,
        PackingOrder("o-3", ()),
        id=f"never-{task_queue}",
        task_queue=task_queue,
    )
    with pytest.raises(EventNotSeen, match="WorkflowExecutionStarted"):
        await wait_for_event(handle, "TimerFired", timeout=0.2)
    await handle.terminate()


@pytest.mark.parametrize(
    ("workflow", "expected_cents"),
    [(QuoteThenChargeWorkflow, 1000), (ChargeCurrentPriceWorkflow, 1250)],
)
async def test_the_activity_boundary_decides_which_price_a_retry_charges(
    client: Client, task_queue: str, tmp_path: Path, workflow: type, expected_cents: int
) -> None:
    board = PriceBoard(str(tmp_path / "shop.db"))
    board.reset("teapot", 1000)
    checkout = CheckoutInput(board, order_id="o-4", sku="teapot", new_price_cents=1250)
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[workflow],
        activities=[read_price, charge_card, charge_at_current_price],
    ):
        charged = await client.execute_workflow(
            workflow.run,  # type: ignore[attr-defined]
            checkout,
            id=f"price-{task_queue}",
            task_queue=task_queue,
        )
    assert charged == expected_cents
    assert board.payments("o-4") == [expected_cents]
    assert board.price("teapot") == 1250


async def test_an_order_survives_a_failing_step_and_a_stopped_worker(
    client: Client, task_queue: str
) -> None:
    def order_worker(name: str) -> Worker:
        return Worker(
            client,
            task_queue=task_queue,
            workflows=[ResilientOrderWorkflow],
            activities=[reserve_stock, ship_order],
            identity=name,
        )

    order = ResilientOrder("o-5", stock_failures=1, warehouse_wait=1.0)
    handle = await client.start_workflow(
        ResilientOrderWorkflow.run, order, id=f"resilient-{task_queue}", task_queue=task_queue
    )
    async with order_worker("worker-1"):
        await wait_for_event(handle, "TimerStarted")
    await wait_for_event(handle, "TimerFired")
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    async with order_worker("worker-2"):
        summary = await handle.result()
    assert summary.reserved == "stock reserved on attempt 2"
    assert summary.shipped == "o-5 shipped"
    runs = activity_runs(await handle.fetch_history())
    assert [(run.activity, run.attempts, run.worker) for run in runs] == [
        ("reserve_stock", 2, "worker-1"),
        ("ship_order", 1, "worker-2"),
    ]
