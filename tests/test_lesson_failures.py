"""Lesson 05: network failures are retried, a stock shortage is handled, a History is an event log."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from sagakit import running_worker
from sagakit.course.eventlog import fold
from sagakit.course.lessons.failures import (
    AccountEvent,
    AccountWorkflow,
    Order,
    OrderOutcome,
    PlaceOrderWorkflow,
    ReserveRequest,
    Warehouse,
    apply_event,
    recorded_signals,
    reserve_inventory,
)
from sagakit.course.logs import quiet_expected_failures
from sagakit.course.replay import replay


async def _place(client: Client, task_queue: str, order: Order) -> tuple[OrderOutcome, list[str]]:
    with quiet_expected_failures():
        async with running_worker(
            client,
            task_queue=task_queue,
            workflows=[PlaceOrderWorkflow],
            activities=[reserve_inventory],
        ):
            handle = await client.start_workflow(
                PlaceOrderWorkflow.run,
                order,
                id=f"{order.order_id}-{task_queue}",
                task_queue=task_queue,
            )
            outcome = await handle.result()
    history = await handle.fetch_history()
    return outcome, [EventType.Name(e.event_type) for e in history.events]


async def test_network_failures_are_retried_until_the_reservation_succeeds(
    client: Client, task_queue: str
) -> None:
    with Warehouse({"lamp": 5}, drop_first=2) as warehouse:
        outcome, events = await _place(client, task_queue, Order("o-1", "lamp", 3, warehouse.url))
        assert (warehouse.dropped, warehouse.answered) == (2, 1)
        assert warehouse.stock == {"lamp": 2}
    assert outcome == OrderOutcome("o-1", "reserved", 3, 0, "All 3 lamp ship now.")
    assert events.count("EVENT_TYPE_ACTIVITY_TASK_SCHEDULED") == 1
    assert "EVENT_TYPE_ACTIVITY_TASK_FAILED" not in events


async def test_a_shortage_is_not_retried_and_the_workflow_backorders(
    client: Client, task_queue: str
) -> None:
    with Warehouse({"lamp": 2}) as warehouse:
        outcome, events = await _place(client, task_queue, Order("o-2", "lamp", 5, warehouse.url))
        assert warehouse.answered == 2  # one refusal, one smaller reservation: no retries
        assert warehouse.stock == {"lamp": 0}
    assert outcome == OrderOutcome(
        "o-2", "partly reserved", 2, 3, "2 lamp ship now, 3 when stock arrives."
    )
    assert events.count("EVENT_TYPE_ACTIVITY_TASK_FAILED") == 1
    assert events[-1] == "EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED"


async def test_an_order_that_forbids_partial_delivery_is_rejected(
    client: Client, task_queue: str
) -> None:
    with Warehouse({"lamp": 2}) as warehouse:
        order = Order("o-3", "lamp", 5, warehouse.url, allow_partial=False)
        outcome, _ = await _place(client, task_queue, order)
        assert warehouse.stock == {"lamp": 2}
    assert outcome.status == "rejected"
    assert outcome.reserved == 0
    assert "only 2 lamp" in outcome.note


def test_the_warehouse_reserves_once_per_order() -> None:
    with Warehouse({"lamp": 5}) as warehouse:
        request = ReserveRequest(warehouse.url, "o-4", "lamp", 2)
        assert reserve_inventory(request) == 2
        assert reserve_inventory(request) == 2
        assert warehouse.stock == {"lamp": 3}


def test_apply_event_ignores_kinds_it_does_not_know() -> None:
    events = [
        AccountEvent("Deposited", 10),
        AccountEvent("Renamed", 99),
        AccountEvent("Withdrew", 4),
    ]
    assert fold(events, 0, apply_event) == 6


async def test_the_history_is_an_event_log_that_replay_folds(
    client: Client, task_queue: str
) -> None:
    events = [AccountEvent("Deposited", 100), AccountEvent("Withdrew", 30)]
    events.append(AccountEvent("Deposited", 5))
    async with running_worker(client, task_queue=task_queue, workflows=[AccountWorkflow]):
        handle = await client.start_workflow(
            AccountWorkflow.run, "alice", id=f"account-{task_queue}", task_queue=task_queue
        )
        for event in events:
            await handle.signal(AccountWorkflow.record, event)
        await handle.signal(AccountWorkflow.close)
        assert await handle.result() == 75
    history = await handle.fetch_history()
    recorded = [event for _, event in recorded_signals(history)]
    assert recorded == events
    assert fold(recorded, 0, apply_event) == 75
    # A fresh worker has nothing cached: it answers by replaying the History.
    async with running_worker(client, task_queue=task_queue, workflows=[AccountWorkflow]):
        assert await handle.query(AccountWorkflow.balance) == 75
        assert await handle.query(AccountWorkflow.events_applied) == 3
    assert (await replay(history, [AccountWorkflow])).ok
