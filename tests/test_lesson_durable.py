"""Lesson 04: a worker killed mid-run, retried charges, and replaying clock-reading workflows."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from sagakit import running_worker
from sagakit.course.lessons.durable import (
    Checkout,
    CheckoutWorkflow,
    Dispatch,
    DispatchWorkflow,
    OrderInput,
    OrderWorkflow,
    SandboxedClockWorkflow,
    StepLogTimeout,
    StepRecord,
    UnsafeClockWorkflow,
    charge_card,
    charge_card_once,
    create_ledger,
    create_step_log,
    ledger_rows,
    main,
    read_step_log,
    ship_today,
    ship_tomorrow,
    step_log_table,
    steps_completed_more_than_once,
    wait_for_step,
)
from sagakit.course.logs import quiet_expected_failures
from sagakit.course.processes import start_worker_process
from sagakit.course.replay import replay, wait_for_workflow_task_failure

DURABLE = "sagakit.course.lessons.durable"


async def test_a_new_worker_finishes_the_order_without_redoing_completed_steps(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    log = create_step_log(tmp_path / "steps.db")
    first = await start_worker_process(client, DURABLE, "worker", task_queue, task_queue=task_queue)
    try:
        handle = await client.start_workflow(
            OrderWorkflow.run,
            OrderInput("o-1", str(log), step_seconds=0.5, step_timeout_seconds=2),
            id=f"durable-{task_queue}",
            task_queue=task_queue,
        )
        await wait_for_step(log, handle.id, "pack_parcel")
    finally:
        first.kill()
    assert (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    second = await start_worker_process(
        client, DURABLE, "worker", task_queue, task_queue=task_queue
    )
    try:
        result = await handle.result()
    finally:
        second.terminate()

    assert result == [
        "reserve_stock",
        "take_payment",
        "pack_parcel",
        "hand_to_courier",
        "email_receipt",
    ]
    records = read_step_log(log, handle.id)
    assert steps_completed_more_than_once(records) == []
    by_pid = {first.pid: "first", second.pid: "second"}
    completed = {r.step: by_pid[r.pid] for r in records if r.event == "completed"}
    assert completed == {
        "reserve_stock": "first",
        "take_payment": "first",
        "pack_parcel": "second",
        "hand_to_courier": "second",
        "email_receipt": "second",
    }
    pack = [(r.attempt, by_pid[r.pid], r.event) for r in records if r.step == "pack_parcel"]
    assert pack == [(1, "first", "started"), (2, "second", "started"), (2, "second", "completed")]


def test_steps_completed_more_than_once_and_the_table() -> None:
    records = [
        StepRecord(1, "w", "a", 1, 700, "started"),
        StepRecord(2, "w", "a", 1, 700, "completed"),
        StepRecord(3, "w", "b", 1, 700, "started"),
        StepRecord(4, "w", "a", 2, 900, "completed"),
    ]
    assert steps_completed_more_than_once(records) == ["a"]
    text = step_log_table(records).text()
    assert "worker 1" in text
    assert "worker 2" in text
    assert "700" not in text


async def test_waiting_for_a_step_that_never_comes_times_out(tmp_path: Path) -> None:
    log = create_step_log(tmp_path / "steps.db")
    with pytest.raises(StepLogTimeout, match="no 'started' row"):
        await wait_for_step(log, "nobody", "reserve_stock", timeout=0.1)


def test_the_worker_command_explains_its_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["bogus"])
    assert caught.value.code == 2
    assert "usage" in capsys.readouterr().err


@pytest.mark.parametrize(("idempotent", "charges"), [(False, 2), (True, 1)])
async def test_a_retried_charge_charges_once_only_with_an_idempotency_key(
    client: Client, task_queue: str, tmp_path: Path, idempotent: bool, charges: int
) -> None:
    ledger = create_ledger(tmp_path / "ledger.db")
    with quiet_expected_failures():
        async with running_worker(
            client,
            task_queue=task_queue,
            workflows=[CheckoutWorkflow],
            activities=[charge_card, charge_card_once],
        ):
            handle = await client.start_workflow(
                CheckoutWorkflow.run,
                Checkout("o-9", 2500, str(ledger), idempotent=idempotent),
                id=f"checkout-{task_queue}",
                task_queue=task_queue,
            )
            charge_id = await handle.result()
    rows = ledger_rows(ledger)
    assert len(rows) == charges
    assert all(order == "o-9" and amount == 2500 for _, order, amount, _ in rows)
    assert charge_id == rows[-1][0]
    if idempotent:
        assert rows[0][3] == f"{handle.id}/charge"


async def test_the_sandbox_refuses_to_read_the_clock(client: Client, task_queue: str) -> None:
    with quiet_expected_failures():
        async with running_worker(
            client,
            task_queue=task_queue,
            workflows=[SandboxedClockWorkflow],
            activities=[ship_today, ship_tomorrow],
        ):
            handle = await client.start_workflow(
                SandboxedClockWorkflow.run,
                Dispatch("o-1"),
                id=f"sandboxed-{task_queue}",
                task_queue=task_queue,
            )
            message = await wait_for_workflow_task_failure(handle)
            await handle.terminate("test over")
    assert "Cannot access datetime.datetime.now" in message


async def _sleep_until_past_cutoff(started: datetime | None, window: float) -> None:
    assert started is not None
    pause = started + timedelta(seconds=window + 0.2) - datetime.now(UTC)
    await asyncio.sleep(max(pause.total_seconds(), 0))


async def test_reading_the_clock_without_the_sandbox_breaks_replay(
    client: Client, task_queue: str
) -> None:
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[UnsafeClockWorkflow],
        activities=[ship_today, ship_tomorrow],
    ):
        handle = await client.start_workflow(
            UnsafeClockWorkflow.run,
            Dispatch("o-7", same_day_window_seconds=1.0),
            id=f"unsafe-{task_queue}",
            task_queue=task_queue,
        )
        assert await handle.result() == "o-7: ships today"
    await _sleep_until_past_cutoff((await handle.describe()).start_time, 1.0)
    report = await replay(await handle.fetch_history(), [UnsafeClockWorkflow])
    assert not report.ok
    assert report.error_type == "NondeterminismError"
    assert report.message is not None
    assert "'ship_today' does not match activity type of activity command 'ship_tomorrow'" in (
        report.message
    )
    assert str(report).startswith("✗ ")


async def test_workflow_now_and_random_replay_cleanly(client: Client, task_queue: str) -> None:
    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[DispatchWorkflow],
        activities=[ship_today, ship_tomorrow],
    ):
        handle = await client.start_workflow(
            DispatchWorkflow.run,
            Dispatch("o-7", same_day_window_seconds=1.0),
            id=f"dispatch-{task_queue}",
            task_queue=task_queue,
        )
        result = await handle.result()
        await _sleep_until_past_cutoff((await handle.describe()).start_time, 1.0)
        # The workflow has completed: answering the query replays its History.
        tracking = await handle.query(DispatchWorkflow.tracking_number)
    assert result.startswith("o-7: ships today (tracking TRK-")
    assert result.endswith(f"(tracking {tracking})")
    report = await replay(await handle.fetch_history(), [DispatchWorkflow])
    assert report.ok, str(report)
    assert str(report) == f"✓ {handle.id}: replayed cleanly"


def test_creating_a_log_or_ledger_again_starts_it_empty(tmp_path: Path) -> None:
    log = create_step_log(tmp_path / "steps.db")
    ledger = create_ledger(tmp_path / "ledger.db")
    for path, table in ((log, "step_log"), (ledger, "charges")):
        conn = sqlite3.connect(path)
        if table == "step_log":
            conn.execute("INSERT INTO step_log VALUES (1, 'w', 's', 1, 2, 'started')")
        else:
            conn.execute("INSERT INTO charges VALUES (1, 'o', 5, NULL)")
        conn.commit()
        conn.close()
    assert len(read_step_log(log)) == 1
    assert len(ledger_rows(ledger)) == 1
    create_step_log(log)
    create_ledger(ledger)
    assert read_step_log(log) == []
    assert ledger_rows(ledger) == []
