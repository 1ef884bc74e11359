"""Lesson 07's cart on the real server: signals, queries, retries, the History and replay."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import (
    Client,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
)
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.worker import Replayer
from temporalio.workflow import NondeterminismError

from sagakit import ConfigurationError, running_worker
from sagakit._runtime import quiet_runtime
from sagakit.course.lessons.cart import (
    EVENT_MEANINGS,
    AttemptLog,
    CartInput,
    CartItem,
    CartView,
    MisbehavingCartWorkflow,
    PaymentGateway,
    ReorderedCartWorkflow,
    RetrySchedule,
    ShoppingCartWorkflow,
    charge_payment,
    reserve_items,
)
from sagakit.history import event_counts

WORKFLOWS = [ShoppingCartWorkflow, MisbehavingCartWorkflow]
ACTIVITIES: list[Callable[..., Any]] = [charge_payment, reserve_items]


# Failed attempts are expected throughout this file.
pytestmark = pytest.mark.usefixtures("quiet_worker_logs")


@pytest.fixture
def attempt_log(tmp_path: Path) -> AttemptLog:
    return AttemptLog(str(tmp_path / "attempts.db"))


async def _signal_and_read(handle: WorkflowHandle[Any, Any], signal: Any, *args: Any) -> CartView:
    await handle.signal(signal, *args)
    view: CartView = await handle.query(ShoppingCartWorkflow.view)
    return view


# --- RetrySchedule: pure predictions ---------------------------------------------------------


def test_waits_grow_by_the_coefficient_up_to_the_maximum() -> None:
    schedule = RetrySchedule(
        initial_interval=0.2, backoff_coefficient=2.0, maximum_interval=1.6, maximum_attempts=6
    )
    assert schedule.waits() == pytest.approx([0.2, 0.4, 0.8, 1.6, 1.6])
    assert schedule.predicted_starts() == pytest.approx([0.0, 0.2, 0.6, 1.4, 3.0, 4.6])
    assert schedule.predicted_starts(run_seconds=0.5) == pytest.approx(
        [0.0, 0.7, 1.6, 2.9, 5.0, 7.1]
    )


def test_a_single_attempt_has_no_waits() -> None:
    assert RetrySchedule(maximum_attempts=1).waits() == []


def test_to_policy_carries_every_number() -> None:
    policy = RetrySchedule(
        initial_interval=0.5,
        backoff_coefficient=3.0,
        maximum_interval=4.0,
        maximum_attempts=3,
        non_retryable_error_types=("CardDeclined", "Fraud"),
    ).to_policy()
    assert policy.initial_interval.total_seconds() == 0.5
    assert policy.backoff_coefficient == 3.0
    assert policy.maximum_interval is not None
    assert policy.maximum_interval.total_seconds() == 4.0
    assert policy.maximum_attempts == 3
    assert policy.non_retryable_error_types == ["CardDeclined", "Fraud"]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"initial_interval": 0}, "initial_interval"),
        ({"backoff_coefficient": 0.5}, "backoff_coefficient"),
        ({"initial_interval": 2.0, "maximum_interval": 1.0}, "maximum_interval"),
        ({"maximum_attempts": 0}, "maximum_attempts"),
    ],
)
def test_an_invalid_schedule_says_which_field_to_fix(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem):
        RetrySchedule(**fields)


def test_cart_view_summary() -> None:
    view = CartView((CartItem("apple", 2, 50), CartItem("pear", 1, 80)), 180, "open")
    assert view.summary() == "2 × apple, 1 × pear = 1.80 (open)"
    assert CartView((), 0, "open").summary() == "empty = 0.00 (open)"


# --- Signals and queries ---------------------------------------------------------------------


async def test_signals_change_the_cart_and_queries_read_it(
    client: Client, task_queue: str, attempt_log: AttemptLog
) -> None:
    # The first charge times out and the retry waits a second: time to signal a checked-out cart.
    gateway = PaymentGateway(attempt_log, timeouts=1)
    schedule = RetrySchedule(initial_interval=1.0, maximum_interval=1.0, maximum_attempts=2)
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        cart = await client.start_workflow(
            ShoppingCartWorkflow.run,
            CartInput("ada", gateway, schedule),
            id=f"cart-{task_queue}",
            task_queue=task_queue,
        )
        assert await cart.query(ShoppingCartWorkflow.view) == CartView((), 0, "open")
        await _signal_and_read(cart, ShoppingCartWorkflow.add_item, CartItem("apple", 2, 50))
        await _signal_and_read(cart, ShoppingCartWorkflow.add_item, CartItem("pear", 1, 80))
        view = await _signal_and_read(cart, ShoppingCartWorkflow.add_item, CartItem("apple", 1, 50))
        assert view == CartView((CartItem("apple", 3, 50), CartItem("pear", 1, 80)), 230, "open")
        view = await _signal_and_read(cart, ShoppingCartWorkflow.remove_item, "pear")
        assert view.items == (CartItem("apple", 3, 50),)
        view = await _signal_and_read(cart, ShoppingCartWorkflow.checkout)
        assert view.status == "checking out"
        # Signals after checkout change nothing.
        view = await _signal_and_read(cart, ShoppingCartWorkflow.add_item, CartItem("fig", 1, 30))
        assert view == CartView((CartItem("apple", 3, 50),), 150, "checking out")
        receipt = await cart.result()
        after = await cart.query(ShoppingCartWorkflow.view)
    assert receipt.total_cents == 150
    assert receipt.items == (CartItem("apple", 3, 50),)
    assert receipt.paid_on_attempt == 2
    assert after.status == "paid"
    counts = event_counts(await cart.fetch_history())
    assert counts["WorkflowExecutionSignaled"] == 6
    assert set(counts) <= set(EVENT_MEANINGS)


async def test_checking_out_an_empty_cart_fails_the_workflow(
    client: Client, task_queue: str, attempt_log: AttemptLog
) -> None:
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        cart = await client.start_workflow(
            ShoppingCartWorkflow.run,
            CartInput("ada", PaymentGateway(attempt_log)),
            id=f"empty-{task_queue}",
            task_queue=task_queue,
        )
        await cart.signal(ShoppingCartWorkflow.checkout)
        with pytest.raises(WorkflowFailureError) as failure:
            await cart.result()
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "EmptyCart"


async def test_queries_may_not_start_activities_and_mutations_are_lost_on_replay(
    client: Client, task_queue: str, attempt_log: AttemptLog
) -> None:
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        cart = await client.start_workflow(
            MisbehavingCartWorkflow.run,
            CartInput("bob", PaymentGateway(attempt_log)),
            id=f"bad-{task_queue}",
            task_queue=task_queue,
        )
        await _signal_and_read(cart, ShoppingCartWorkflow.add_item, CartItem("apple", 1, 50))
        await _signal_and_read(cart, ShoppingCartWorkflow.add_item, CartItem("pear", 1, 80))
        with pytest.raises(WorkflowQueryFailedError, match="read-only"):
            await cart.query(MisbehavingCartWorkflow.reserve_now)
        assert await cart.query(MisbehavingCartWorkflow.take_first_item) == "apple"
        view = await cart.query(ShoppingCartWorkflow.view)
        assert [item.sku for item in view.items] == ["pear"]
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        view = await cart.query(ShoppingCartWorkflow.view)
        await cart.terminate()
    assert [item.sku for item in view.items] == ["apple", "pear"]


# --- Retries, the attempt log and the History ------------------------------------------------


async def test_the_attempt_log_records_every_attempt_no_sooner_than_the_policy(
    client: Client, task_queue: str, attempt_log: AttemptLog
) -> None:
    schedule = RetrySchedule(initial_interval=0.1, maximum_interval=0.2, maximum_attempts=4)
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        cart = await client.start_workflow(
            ShoppingCartWorkflow.run,
            CartInput("ada", PaymentGateway(attempt_log, timeouts=2), schedule),
            id=f"retry-{task_queue}",
            task_queue=task_queue,
        )
        await _signal_and_read(cart, ShoppingCartWorkflow.add_item, CartItem("tea", 1, 450))
        await cart.signal(ShoppingCartWorkflow.checkout)
        receipt = await cart.result()
    assert receipt.paid_on_attempt == 3
    records = attempt_log.read(cart.result_run_id or "")
    assert [record.attempt for record in records] == [1, 2, 3]
    gaps = [b.started_at - a.started_at for a, b in pairwise(records)]
    # The cluster never retries sooner than the policy says (it may be later).
    assert all(gap >= wait for gap, wait in zip(gaps, schedule.waits(), strict=False))
    assert attempt_log.read("another-run") == []

    history = await cart.fetch_history()
    started = [e for e in history.events if e.HasField("activity_task_started_event_attributes")]
    assert [e.activity_task_started_event_attributes.attempt for e in started] == [3]

    replayed = await Replayer(
        workflows=[ShoppingCartWorkflow], runtime=quiet_runtime()
    ).replay_workflow(history)
    assert replayed.replay_failure is None
    with pytest.raises(NondeterminismError, match="reserve_items"):
        await Replayer(workflows=[ReorderedCartWorkflow], runtime=quiet_runtime()).replay_workflow(
            history
        )


async def test_a_non_retryable_error_stops_the_retries(
    client: Client, task_queue: str, attempt_log: AttemptLog
) -> None:
    schedule = RetrySchedule(initial_interval=0.1, maximum_interval=0.1, maximum_attempts=5)
    async with running_worker(
        client, task_queue=task_queue, workflows=WORKFLOWS, activities=ACTIVITIES
    ):
        cart = await client.start_workflow(
            ShoppingCartWorkflow.run,
            CartInput("bob", PaymentGateway(attempt_log, timeouts=1, declines=True), schedule),
            id=f"declined-{task_queue}",
            task_queue=task_queue,
        )
        await _signal_and_read(cart, ShoppingCartWorkflow.add_item, CartItem("pear", 2, 80))
        await cart.signal(ShoppingCartWorkflow.checkout)
        with pytest.raises(WorkflowFailureError) as failure:
            await cart.result()
    activity_error = failure.value.cause
    assert isinstance(activity_error, ActivityError)
    reason = activity_error.cause
    assert isinstance(reason, ApplicationError)
    assert reason.type == "CardDeclined"
    assert [record.attempt for record in attempt_log.read(cart.result_run_id or "")] == [1, 2]
