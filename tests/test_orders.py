"""The shop's services (inventory, payments, shipping) and the order invariant checker.

The services are plain SQLite code, tested directly; the activities, with
their injected faults, run on the real server in a small saga at the end
(the capstone check in tests/test_exercises.py runs them under every fault).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError

from sagakit import ConfigurationError, Fault, FaultPlan, UnknownStepError, running_worker
from sagakit.course.services.errors import IdempotencyKeyReused, InsufficientFunds, OutOfStock
from sagakit.course.services.order_invariants import check_orders
from sagakit.course.services.orders import (
    SHOP_ACCOUNT,
    OrderActivities,
    OrderRequest,
    Shop,
    ShopSeed,
)
from sagakit.course.services.world import World
from tests.workflows import TwoStepOrder


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    return Shop(tmp_path / "shop.db")


def test_a_new_shop_is_stocked_and_consistent(shop: Shop) -> None:
    assert shop.inventory.stock() == {"kettle": (5, 5), "teapot": (1, 1)}
    assert shop.world.bank.balances() == {"ada": 500, "bob": 20, SHOP_ACCOUNT: 0}
    assert check_orders(shop).ok


def test_checking_a_mistyped_path_is_refused_and_creates_nothing(tmp_path: Path) -> None:
    typo = tmp_path / "shpo.db"
    with pytest.raises(ConfigurationError, match=r"No shop file at '.*shpo\.db'"):
        check_orders(typo)
    assert not typo.exists()


def test_checking_a_world_that_holds_no_shop_is_refused_and_leaves_it_alone(
    tmp_path: Path,
) -> None:
    world = World(tmp_path / "world.db")
    world.trips.book_hotel("t1", "ada")
    with pytest.raises(ConfigurationError, match=r"'.*world\.db' is not a shop file"):
        check_orders(world.path)
    assert world.trips.active("t1")["hotel"] == 1  # not reset into an empty shop
    assert world.bank.balances() == {"alice": 500, "bob": 500}


def test_a_shop_is_checked_by_its_path_too(shop: Shop) -> None:
    shop.inventory.reserve("o-1", "kettle", 1)
    assert check_orders(shop.path).problems == check_orders(shop).problems != ()


def test_reopening_keeps_the_state(tmp_path: Path) -> None:
    Shop(tmp_path / "shop.db").inventory.reserve("o-1", "kettle", 2)
    assert Shop(tmp_path / "shop.db").inventory.stock()["kettle"] == (3, 5)


def test_reset_uses_the_seed(shop: Shop) -> None:
    shop.inventory.reserve("o-1", "kettle", 1)
    shop.reset(ShopSeed(stock={"mug": 3}, customers={"cy": 9}))
    assert shop.inventory.stock() == {"mug": (3, 3)}
    assert shop.world.bank.balances() == {"cy": 9, SHOP_ACCOUNT: 0}
    assert shop.inventory.reserved() == []


def test_reserve_without_key_repeats_and_with_key_does_not(shop: Shop) -> None:
    shop.inventory.reserve("o-1", "kettle", 1)
    shop.inventory.reserve("o-1", "kettle", 1)
    shop.inventory.reserve("o-2", "kettle", 1, idempotency_key="o-2")
    again = shop.inventory.reserve("o-2", "kettle", 1, idempotency_key="o-2")
    assert again.on_hand == 2  # the first result, replayed
    assert shop.inventory.stock()["kettle"] == (2, 5)
    report = check_orders(shop)
    assert "order o-1: reserved 2 times (should be once)" in report.problems


def test_out_of_stock_changes_nothing(shop: Shop) -> None:
    with pytest.raises(OutOfStock, match="Only 1 teapot"):
        shop.inventory.reserve("o-1", "teapot", 2)
    assert shop.inventory.stock()["teapot"] == (1, 1)
    assert len(shop.world.ledger.entries(service="inventory")) == 0


def test_unknown_item_is_a_configuration_error(shop: Shop) -> None:
    with pytest.raises(ConfigurationError, match="does not sell 'spoon'"):
        shop.inventory.reserve("o-1", "spoon", 1)


def test_release_is_tolerant(shop: Shop) -> None:
    assert shop.inventory.release("o-never").quantity == 0
    shop.inventory.reserve("o-1", "kettle", 2)
    assert shop.inventory.release("o-1").quantity == -2
    assert shop.inventory.release("o-1").quantity == 0
    assert shop.inventory.stock()["kettle"] == (5, 5)


def test_key_reused_for_another_request_is_refused(shop: Shop) -> None:
    shop.inventory.reserve("o-1", "kettle", 1, idempotency_key="k")
    with pytest.raises(IdempotencyKeyReused):
        shop.inventory.reserve("o-1", "kettle", 2, idempotency_key="k")


def test_charge_moves_money_to_the_shop_and_refund_gives_back_all(shop: Shop) -> None:
    shop.payments.charge("o-1", "ada", 40)
    shop.payments.charge("o-1", "ada", 40)  # no key: a second charge
    assert shop.payments.charged("o-1", "ada") == 80
    refund = shop.payments.refund("o-1", "ada", idempotency_key="o-1")
    assert refund.amount == -80
    assert shop.payments.refund("o-1", "ada", idempotency_key="o-1").amount == 0
    assert shop.world.bank.balances() == {"ada": 500, "bob": 20, SHOP_ACCOUNT: 0}


def test_refund_of_an_order_never_charged_moves_nothing(shop: Shop) -> None:
    assert shop.payments.refund("o-never", "ada").amount == 0
    assert shop.world.bank.balances()["ada"] == 500


def test_declined_payment_changes_nothing(shop: Shop) -> None:
    with pytest.raises(InsufficientFunds):
        shop.payments.charge("o-1", "bob", 40)
    assert shop.payments.charged("o-1", "bob") == 0


def test_shipping_and_cancelling(shop: Shop) -> None:
    first = shop.shipping.ship("o-1", "ada", idempotency_key="o-1")
    assert first.tracking == "TRK-00001"
    assert shop.shipping.ship("o-1", "ada", idempotency_key="o-1") == first
    assert shop.shipping.cancel("o-1").status == "cancelled"
    assert shop.shipping.cancel("o-1").status == "none"
    assert shop.shipping.active() == []


def test_a_complete_order_is_consistent(shop: Shop) -> None:
    shop.inventory.reserve("o-1", "kettle", 1)
    shop.payments.charge("o-1", "ada", 40)
    shop.shipping.ship("o-1", "ada")
    report = check_orders(shop)
    assert report.ok, str(report)
    assert str(report) == "✓ the shop is consistent (1 order, 2 items, 3 accounts)"


def test_a_partial_order_is_reported(shop: Shop) -> None:
    shop.inventory.reserve("o-1", "kettle", 1)
    shop.payments.charge("o-1", "ada", 40)
    report = check_orders(shop)
    assert report.problems == (
        "order o-1: reserved and charged but not shipped (not all-or-nothing)",
    )


def test_double_shipping_is_reported(shop: Shop) -> None:
    shop.inventory.reserve("o-1", "kettle", 1)
    shop.payments.charge("o-1", "ada", 40)
    shop.shipping.ship("o-1", "ada")
    shop.shipping.ship("o-1", "ada")
    assert check_orders(shop).problems == ("order o-1: shipped 2 times (should be once)",)


def test_fully_undone_order_is_consistent(shop: Shop) -> None:
    shop.inventory.reserve("o-1", "kettle", 1)
    shop.payments.charge("o-1", "ada", 40)
    shop.shipping.ship("o-1", "ada")
    shop.shipping.cancel("o-1")
    shop.payments.refund("o-1", "ada")
    shop.inventory.release("o-1")
    assert check_orders(shop).ok


def test_fault_plan_with_a_misspelt_step_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnknownStepError, match="Did you mean 'ship_order'"):
        OrderActivities(tmp_path / "shop.db", FaultPlan.of({"ship_orders": [Fault.FAIL_AFTER]}))


# -- the activities on the real server ----------------------------------------------------------


async def test_activities_undo_an_effect_whose_reply_was_lost(
    tmp_path: Path, client: Client, task_queue: str
) -> None:
    activities = OrderActivities(
        tmp_path / "shop.db", FaultPlan.always("charge_payment", Fault.FAIL_AFTER)
    )
    async with running_worker(
        client, task_queue=task_queue, workflows=[TwoStepOrder], activities=activities.all()
    ):
        with pytest.raises(WorkflowFailureError):
            await client.execute_workflow(
                TwoStepOrder.run,
                OrderRequest("o-1"),
                id=f"test-orders-{uuid.uuid4()}",
                task_queue=task_queue,
            )
    shop = activities.shop
    # Two attempts charged the card under one key: one charge, then refunded.
    assert shop.world.ledger.count("transfer_out", "ada") == 1
    assert shop.payments.charged("o-1", "ada") == 0
    assert shop.inventory.stock()["kettle"] == (5, 5)
    assert check_orders(shop).ok
