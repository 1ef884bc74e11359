"""Lesson 01's workflows on the real server: concurrency, throughput and retries."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import Client

from sagakit import ConfigurationError, running_worker
from sagakit.course.lessons.scaling import (
    Batch,
    BatchWorkflow,
    FlakyBatch,
    FlakyBatchWorkflow,
    Order,
    WorkSpan,
    call_flaky_service,
    create_stock_database,
    max_in_flight,
    most_at_once,
    predict_outcomes,
    probability_all_fail,
    run_orders,
    slow_call,
    stock_left,
)


@pytest.mark.parametrize(("concurrent", "in_flight"), [(False, 1), (True, 6)])
async def test_batch_runs_calls_one_by_one_or_all_at_once(
    client: Client, task_queue: str, concurrent: bool, in_flight: int
) -> None:
    async with running_worker(
        client, task_queue=task_queue, workflows=[BatchWorkflow], activities=[slow_call]
    ):
        handle = await client.start_workflow(
            BatchWorkflow.run,
            Batch(calls=6, seconds=0.05, concurrent=concurrent),
            id=f"batch-{task_queue}",
            task_queue=task_queue,
        )
        assert await handle.result() == list(range(6))
    history = await handle.fetch_history()
    assert max_in_flight(history) == in_flight
    kinds = [e.WhichOneof("attributes") for e in history.events]
    scheduled = [i for i, k in enumerate(kinds) if k == "activity_task_scheduled_event_attributes"]
    completed = [i for i, k in enumerate(kinds) if k == "activity_task_completed_event_attributes"]
    assert len(scheduled) == len(completed) == 6
    if concurrent:
        assert max(scheduled) < min(completed), "all calls must be scheduled before any ends"
    else:
        assert all(c < s for c, s in zip(completed, scheduled[1:], strict=False))


async def test_flaky_service_follows_its_seed_and_retries_recover(
    client: Client, task_queue: str
) -> None:
    once = FlakyBatch(calls=20, failure_rate=0.3, seed=1701, max_attempts=1)
    retried = FlakyBatch(calls=20, failure_rate=0.3, seed=1701, max_attempts=4)
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[FlakyBatchWorkflow],
        activities=[call_flaky_service],
    ):
        results = [
            await client.execute_workflow(
                FlakyBatchWorkflow.run, batch, id=f"flaky-{n}-{task_queue}", task_queue=task_queue
            )
            for n, batch in enumerate([once, retried, once])
        ]
    assert results[0] == predict_outcomes(once)
    assert results[1] == predict_outcomes(retried)
    assert results[2] == results[0], "the same seed must fail the same attempts"
    assert not all(o.succeeded for o in results[0]), "seed 1701 should fail some first attempts"
    assert sum(o.succeeded for o in results[1]) > sum(o.succeeded for o in results[0])
    assert any(o.attempts > 1 for o in results[1] if o.succeeded)


def test_predictions_depend_on_the_seed() -> None:
    a = predict_outcomes(FlakyBatch(calls=30, seed=1))
    b = predict_outcomes(FlakyBatch(calls=30, seed=2))
    assert a == predict_outcomes(FlakyBatch(calls=30, seed=1))
    assert a != b


async def test_run_orders_handles_every_order_through_the_shared_database(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    database = create_stock_database(str(tmp_path / "stock.db"), books=10)
    measured = await run_orders(
        client,
        workers=2,
        orders=4,
        order=Order(seconds=0.01, database=database),
        task_queue=task_queue,
        id_prefix=f"order-{task_queue}",
    )
    assert (measured.workers, measured.workflows) == (2, 4)
    assert measured.per_second > 0
    assert measured.most_at_once == 1, "the write lock lets one order work at a time"
    assert stock_left(database) == 6


async def test_run_orders_works_on_independent_orders_side_by_side(
    client: Client, task_queue: str
) -> None:
    measured = await run_orders(
        client,
        workers=2,
        orders=4,
        order=Order(seconds=0.6),
        task_queue=task_queue,
        id_prefix=f"order-{task_queue}",
    )
    # Each worker has one activity slot: two at once, never more.
    assert measured.most_at_once == 2


def test_most_at_once_counts_overlapping_spans() -> None:
    assert most_at_once([]) == 0
    assert most_at_once([WorkSpan(0, 1)]) == 1
    assert most_at_once([WorkSpan(0, 1), WorkSpan(1, 2), WorkSpan(2, 3)]) == 1, "a hand-over"
    assert most_at_once([WorkSpan(0, 4), WorkSpan(1, 2), WorkSpan(3, 5)]) == 2
    assert most_at_once(iter([WorkSpan(2, 3), WorkSpan(0, 3), WorkSpan(1, 2.5)])) == 3


async def test_run_orders_needs_a_worker(client: Client, task_queue: str) -> None:
    with pytest.raises(ConfigurationError, match="at least one worker"):
        await run_orders(client, workers=0, task_queue=task_queue, id_prefix="none")


def test_probability_all_fail() -> None:
    assert probability_all_fail(0.1, 1) == pytest.approx(0.1)
    assert probability_all_fail(0.1, 3) == pytest.approx(0.001)
    with pytest.raises(ConfigurationError, match="probability"):
        probability_all_fail(1.5, 2)
    with pytest.raises(ConfigurationError, match="1 or more"):
        probability_all_fail(0.5, 0)
