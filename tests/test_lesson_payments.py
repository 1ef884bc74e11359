"""Lesson 10's payment workflow and key strategies on the real server, and the store race."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from temporalio.client import Client

from sagakit import Fault, FaultPlan, IdempotencyStore, running_worker
from sagakit.course.lessons.payments import (
    PAYMENT_SEED,
    CheckThenActStore,
    KeyStrategy,
    PaymentInput,
    PaymentWorkflow,
    check_cart_key,
    pay,
    race_same_key,
    try_key_strategy,
)
from sagakit.course.logs import quiet_expected_failures
from sagakit.course.replay import replay
from sagakit.course.services import BankActivities, ViolationKind, World, check_world


async def _pay_once_with_lost_reply(
    client: Client, task_queue: str, world: World, strategy: KeyStrategy
) -> str:
    bank = BankActivities(world.path, FaultPlan.of({"withdraw": [Fault.FAIL_AFTER]}))
    with quiet_expected_failures():
        async with running_worker(
            client, task_queue=task_queue, workflows=[PaymentWorkflow], activities=bank.all()
        ):
            outcome = await pay(
                client,
                PaymentInput("alice", "7", 80, strategy),
                task_queue=task_queue,
                workflow_id=f"{task_queue}-order-7",
            )
    return str(outcome)


async def test_retry_without_a_key_charges_twice(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    world = World(tmp_path / "world.db", seed=PAYMENT_SEED)
    assert await _pay_once_with_lost_reply(client, task_queue, world, KeyStrategy.NONE) == "paid"
    assert world.ledger.count("withdraw", "alice") == 2
    assert world.bank.balances() == {"alice": 340, "shop": 80}
    report = check_world(world)
    assert ViolationKind.DOUBLE_CHARGE in report.kinds
    assert ViolationKind.MONEY_NOT_CONSERVED in report.kinds


async def test_retry_with_a_workflow_uuid_key_charges_once(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    world = World(tmp_path / "world.db", seed=PAYMENT_SEED)
    strategy = KeyStrategy.WORKFLOW_UUID
    assert await _pay_once_with_lost_reply(client, task_queue, world, strategy) == "paid"
    assert world.ledger.count("withdraw", "alice") == 1
    assert world.bank.balances() == {"alice": 420, "shop": 80}
    assert check_world(world).ok
    history = await client.get_workflow_handle(f"{task_queue}-order-7").fetch_history()
    report = await replay(history, [PaymentWorkflow])
    assert report.ok, str(report)
    sent = [
        json.loads(e.activity_task_scheduled_event_attributes.input.payloads[0].data)
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    keys = {request["idempotency_key"] for request in sent}
    assert len(keys) == 1
    assert None not in keys


@pytest.mark.parametrize(
    ("strategy", "expected"),
    [
        (KeyStrategy.NONE, ("charged 2 times ✗", "both charged ✓", "charged 2 times ✗")),
        (
            KeyStrategy.CLIENT,
            ("charged once ✓", "order 2 refused (IdempotencyKeyReused) ✗", "charged once ✓"),
        ),
        (
            KeyStrategy.CLIENT_AND_WORKFLOW,
            ("charged once ✓", "both charged ✓", "charged once ✓"),
        ),
        (KeyStrategy.WORKFLOW_UUID, ("charged once ✓", "both charged ✓", "charged 2 times ✗")),
    ],
)
async def test_each_key_strategy_allows_and_forbids(
    client: Client,
    task_queue: str,
    tmp_path: Path,
    strategy: KeyStrategy,
    expected: tuple[str, str, str],
) -> None:
    world = World(tmp_path / "world.db", seed=PAYMENT_SEED)
    with quiet_expected_failures():
        trial = await try_key_strategy(client, world, strategy, task_queue=task_queue)
    assert (trial.retry_after_charge, trial.second_order, trial.same_order_twice) == expected
    assert trial.row()[0] == strategy.value


def test_check_then_act_store_races_into_two_effects(tmp_path: Path) -> None:
    naive = CheckThenActStore(tmp_path / "naive.db", window=threading.Barrier(4, timeout=10).wait)
    assert race_same_key(lambda effect: naive.run("pay-1", effect), callers=4) == 4
    # Without a race it does remember keys.
    # (Which racer's result was stored last is a real race: any of the four.)
    assert CheckThenActStore(tmp_path / "naive.db").run("pay-1", lambda: "again") in {
        "1",
        "2",
        "3",
        "4",
    }


def test_idempotency_store_wins_the_same_race_once(tmp_path: Path) -> None:
    store = IdempotencyStore(tmp_path / "keys.db")
    assert race_same_key(lambda e: store.run("pay-1", {"amount": 80}, e), callers=4) == 1


def test_race_needs_two_callers() -> None:
    with pytest.raises(Exception, match="at least 2 callers"):
        race_same_key(lambda effect: effect(), callers=1)


def test_cart_key_check() -> None:
    assert check_cart_key(lambda customer, cart: f"{customer}/{cart}").ok
    only_cart = check_cart_key(lambda customer, cart: cart)
    assert only_cart.charges["two customers"] == 1
    assert "put the customer in the key" in str(only_cart)
    only_customer = check_cart_key(lambda customer, cart: customer)
    assert "second cart was not charged" in str(only_customer)
    counter = iter(range(100))
    changing = check_cart_key(lambda customer, cart: f"{customer}/{cart}/{next(counter)}")
    assert "charged 2 times" in str(changing)
    assert "return a non-empty str" in str(check_cart_key(lambda customer, cart: ""))


def test_cart_key_check_says_not_done_for_the_starter() -> None:
    def starter(customer: str, cart_id: str) -> str:
        return None  # type: ignore[return-value]  # the learner edition's starter

    check = check_cart_key(starter)
    assert check.not_done
    assert not check.ok
    assert str(check).startswith("○ Not done yet:")
    assert "✗" not in str(check)
    assert "✓" not in str(check)
