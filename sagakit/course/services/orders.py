"""The shop: inventory, payments and shipping for the order-fulfilment saga (the capstone).

An order goes through three services, each with an effect and a tolerant undo:

==================  =========================  ==================================
step                effect                     undo ("if present": a no-op if
                                               there is nothing to undo)
==================  =========================  ==================================
reserve_inventory   takes items off the shelf  ``release_inventory``
charge_payment      moves money customer→shop  ``refund_payment``
ship_order          books a parcel             ``cancel_shipment``
==================  =========================  ==================================

Everything lives in the world's SQLite file next to the bank and the ledger
(a :class:`Shop` wraps a :class:`~sagakit.course.services.world.World`), so every
effect is in ``shop.world.ledger``. Like the other services, the effects are
*not* naturally idempotent: without an idempotency key every call reserves,
charges or ships again. With a key, a repeat returns the first result.

:class:`OrderActivities` exposes the six operations as Temporal activities with
the same fault injection as :mod:`sagakit.course.services.activities`, and
:func:`sagakit.course.services.order_invariants.check_orders` says whether the shop is
consistent once the sagas have finished.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from sqlite3 import Connection
from typing import ClassVar

from temporalio import activity

from sagakit import ConfigurationError, FaultPlan
from sagakit._faults import DEFAULT_HANG
from sagakit.course.services import _store
from sagakit.course.services.activities import _ServiceActivities
from sagakit.course.services.bank import TransferReceipt
from sagakit.course.services.errors import OutOfStock
from sagakit.course.services.world import World, WorldSeed

__all__ = [
    "ORDERS_SCHEMA",
    "ORDER_STEPS",
    "SHOP_ACCOUNT",
    "InventoryService",
    "OrderActivities",
    "OrderPayments",
    "OrderRequest",
    "PaymentResult",
    "Reservation",
    "Shipment",
    "ShippingService",
    "Shop",
    "ShopSeed",
    "order_reference",
]

SHOP_ACCOUNT = "shop"
"""The bank account that receives the customers' payments."""

ORDER_STEPS: tuple[str, ...] = (
    "reserve_inventory",
    "release_inventory",
    "charge_payment",
    "refund_payment",
    "ship_order",
    "cancel_shipment",
)
"""The activity names of :class:`OrderActivities`; fault plans are checked against them."""

_SHOP_TABLES = ("inventory_stock", "inventory_reservations", "shipments", "shop_requests")

ORDERS_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS inventory_stock (
    item     TEXT PRIMARY KEY,
    on_hand  INTEGER NOT NULL CHECK (on_hand >= 0),
    initial  INTEGER NOT NULL CHECK (initial >= 0)
);
CREATE TABLE IF NOT EXISTS inventory_reservations (
    reservation_id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id       TEXT NOT NULL,
    item           TEXT NOT NULL,
    quantity       INTEGER NOT NULL CHECK (quantity > 0),
    status         TEXT NOT NULL CHECK (status IN ('active', 'released'))
);
CREATE TABLE IF NOT EXISTS shipments (
    shipment_id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id    TEXT NOT NULL,
    customer    TEXT NOT NULL,
    tracking    TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'cancelled'))
);
CREATE TABLE IF NOT EXISTS shop_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
{_store.requests_table("shop_requests")}
"""
"""DDL of the shop's tables (the bank and the ledger are the world's)."""


def order_reference(order_id: str) -> str:
    """Return the payment reference of an order, e.g. ``"order o-1"``."""
    return f"order {order_id}"


def _default_stock() -> dict[str, int]:
    return {"kettle": 5, "teapot": 1}


def _default_customers() -> dict[str, int]:
    return {"ada": 500, "bob": 20}


@dataclass(frozen=True)
class ShopSeed:
    """What a fresh (or reset) shop starts with."""

    stock: Mapping[str, int] = field(default_factory=_default_stock)
    """Units on the shelf, by item."""
    customers: Mapping[str, int] = field(default_factory=_default_customers)
    """Customer bank accounts and their opening balances (the shop's account starts at 0)."""


@dataclass(frozen=True)
class OrderRequest:
    """Input of every order activity (and of the capstone workflow)."""

    order_id: str
    """Which order."""
    customer: str = "ada"
    """Who pays and receives the parcel (a bank account)."""
    item: str = "kettle"
    """What is ordered."""
    quantity: int = 1
    """How many."""
    amount: int = 40
    """What the order costs in total."""
    idempotency_key: str | None = None
    """Sent to the services so that a repeat has no second effect; ``None`` sends none."""


@dataclass(frozen=True)
class Reservation:
    """What ``reserve`` or ``release`` did."""

    order_id: str
    """The order."""
    item: str
    """The item."""
    quantity: int
    """Units reserved (positive) or released (negative); 0 means nothing was done."""
    on_hand: int
    """Units left on the shelf right after."""


@dataclass(frozen=True)
class Shipment:
    """What ``ship`` or ``cancel`` did."""

    order_id: str
    """The order."""
    tracking: str
    """The parcel's tracking number (empty when nothing was shipped or cancelled)."""
    status: str
    """``"active"``, ``"cancelled"`` or ``"none"`` (there was nothing to cancel)."""


@dataclass(frozen=True)
class PaymentResult:
    """What ``charge`` or ``refund`` did."""

    order_id: str
    """The order."""
    customer: str
    """The customer's account."""
    amount: int
    """Money taken (positive) or given back (negative); 0 means nothing moved."""
    balance: int
    """The customer's balance right after."""


class InventoryService:
    """Reserve and release items on the shelf; state lives in the world file."""

    SERVICE: ClassVar[str] = "inventory"

    def __init__(self, path: Path) -> None:
        self.path = path

    def reserve(
        self, order_id: str, item: str, quantity: int, *, idempotency_key: str | None = None
    ) -> Reservation:
        """Take ``quantity`` of ``item`` off the shelf for the order; without a key, every call does.

        Raises:
            OutOfStock: Fewer than ``quantity`` units are left (nothing is reserved).
            ConfigurationError: The shop does not sell ``item``.
        """
        _store.check_positive("quantity", quantity)
        with _store.writing(self.path) as conn:

            def effect() -> Reservation:
                on_hand = _on_hand(conn, item)
                if on_hand < quantity:
                    raise OutOfStock(
                        f"Only {on_hand} {item}(s) left, so {quantity} cannot be reserved for "
                        f"order {order_id}. Nothing was reserved; the order cannot be fulfilled."
                    )
                conn.execute(
                    "UPDATE inventory_stock SET on_hand = on_hand - ? WHERE item = ?",
                    (quantity, item),
                )
                conn.execute(
                    "INSERT INTO inventory_reservations (order_id, item, quantity, status)"
                    " VALUES (?, ?, ?, 'active')",
                    (order_id, item, quantity),
                )
                _store.record(
                    conn,
                    service=self.SERVICE,
                    operation="reserve",
                    entity=order_id,
                    amount=quantity,
                    idempotency_key=idempotency_key,
                    detail=f"reserved {quantity} {item}, {on_hand - quantity} left",
                )
                return Reservation(order_id, item, quantity, on_hand - quantity)

            return _store.run_once(
                conn,
                table="shop_requests",
                idempotency_key=idempotency_key,
                operation="reserve",
                request={"order_id": order_id, "item": item, "quantity": quantity},
                result_type=Reservation,
                effect=effect,
            )

    def release(self, order_id: str, *, idempotency_key: str | None = None) -> Reservation:
        """Put back every active reservation of the order; a no-op if it has none."""
        with _store.writing(self.path) as conn:

            def effect() -> Reservation:
                rows = conn.execute(
                    "SELECT reservation_id, item, quantity FROM inventory_reservations"
                    " WHERE order_id = ? AND status = 'active' ORDER BY reservation_id",
                    (order_id,),
                ).fetchall()
                item = str(rows[0]["item"]) if rows else ""
                total = 0
                for row in rows:
                    conn.execute(
                        "UPDATE inventory_reservations SET status = 'released'"
                        " WHERE reservation_id = ?",
                        (row["reservation_id"],),
                    )
                    conn.execute(
                        "UPDATE inventory_stock SET on_hand = on_hand + ? WHERE item = ?",
                        (row["quantity"], row["item"]),
                    )
                    total += int(row["quantity"])
                if rows:
                    _store.record(
                        conn,
                        service=self.SERVICE,
                        operation="release",
                        entity=order_id,
                        amount=-total,
                        idempotency_key=idempotency_key,
                        detail=f"released {total} {item}",
                    )
                on_hand = _on_hand(conn, item) if item else 0
                return Reservation(order_id, item, -total, on_hand)

            return _store.run_once(
                conn,
                table="shop_requests",
                idempotency_key=idempotency_key,
                operation="release",
                request={"order_id": order_id},
                result_type=Reservation,
                effect=effect,
            )

    def stock(self) -> dict[str, tuple[int, int]]:
        """Return ``{item: (on_hand, initial)}``."""
        with _store.reading(self.path) as conn:
            rows = conn.execute("SELECT item, on_hand, initial FROM inventory_stock ORDER BY item")
            return {str(r["item"]): (int(r["on_hand"]), int(r["initial"])) for r in rows}

    def reserved(self, order_id: str | None = None) -> list[tuple[str, str, int]]:
        """Return the active reservations as ``(order_id, item, quantity)``, oldest first."""
        sql = "SELECT order_id, item, quantity FROM inventory_reservations WHERE status = 'active'"
        params: tuple[str, ...] = ()
        if order_id is not None:
            sql += " AND order_id = ?"
            params = (order_id,)
        with _store.reading(self.path) as conn:
            rows = conn.execute(sql + " ORDER BY reservation_id", params).fetchall()
        return [(str(r["order_id"]), str(r["item"]), int(r["quantity"])) for r in rows]

    def order_ids(self) -> list[str]:
        """Return every order that ever reserved something, sorted."""
        with _store.reading(self.path) as conn:
            rows = conn.execute("SELECT DISTINCT order_id FROM inventory_reservations")
            return sorted(str(r["order_id"]) for r in rows)


class ShippingService:
    """Ship parcels and cancel shipments; state lives in the world file."""

    SERVICE: ClassVar[str] = "shipping"

    def __init__(self, path: Path) -> None:
        self.path = path

    def ship(self, order_id: str, customer: str, *, idempotency_key: str | None = None) -> Shipment:
        """Book a parcel for the order; without a key, every call books another."""
        with _store.writing(self.path) as conn:

            def effect() -> Shipment:
                cursor = conn.execute(
                    "INSERT INTO shipments (order_id, customer, tracking, status)"
                    " VALUES (?, ?, '', 'active')",
                    (order_id, customer),
                )
                shipment_id = int(cursor.lastrowid or 0)
                tracking = f"TRK-{shipment_id:05d}"
                conn.execute(
                    "UPDATE shipments SET tracking = ? WHERE shipment_id = ?",
                    (tracking, shipment_id),
                )
                _store.record(
                    conn,
                    service=self.SERVICE,
                    operation="ship",
                    entity=order_id,
                    amount=1,
                    idempotency_key=idempotency_key,
                    detail=f"parcel {tracking} to {customer}",
                )
                return Shipment(order_id, tracking, "active")

            return _store.run_once(
                conn,
                table="shop_requests",
                idempotency_key=idempotency_key,
                operation="ship",
                request={"order_id": order_id, "customer": customer},
                result_type=Shipment,
                effect=effect,
            )

    def cancel(self, order_id: str, *, idempotency_key: str | None = None) -> Shipment:
        """Cancel every active shipment of the order; a no-op if it has none."""
        with _store.writing(self.path) as conn:

            def effect() -> Shipment:
                rows = conn.execute(
                    "SELECT shipment_id, tracking FROM shipments"
                    " WHERE order_id = ? AND status = 'active' ORDER BY shipment_id",
                    (order_id,),
                ).fetchall()
                if not rows:
                    return Shipment(order_id, "", "none")
                conn.executemany(
                    "UPDATE shipments SET status = 'cancelled' WHERE shipment_id = ?",
                    [(row["shipment_id"],) for row in rows],
                )
                tracking = ", ".join(str(row["tracking"]) for row in rows)
                _store.record(
                    conn,
                    service=self.SERVICE,
                    operation="cancel",
                    entity=order_id,
                    amount=-len(rows),
                    idempotency_key=idempotency_key,
                    detail=f"cancelled parcel {tracking}",
                )
                return Shipment(order_id, tracking, "cancelled")

            return _store.run_once(
                conn,
                table="shop_requests",
                idempotency_key=idempotency_key,
                operation="cancel_shipment",
                request={"order_id": order_id},
                result_type=Shipment,
                effect=effect,
            )

    def active(self, order_id: str | None = None) -> list[Shipment]:
        """Return the active shipments (of one order, if given), oldest first."""
        sql = "SELECT order_id, tracking, status FROM shipments WHERE status = 'active'"
        params: tuple[str, ...] = ()
        if order_id is not None:
            sql += " AND order_id = ?"
            params = (order_id,)
        with _store.reading(self.path) as conn:
            rows = conn.execute(sql + " ORDER BY shipment_id", params).fetchall()
        return [Shipment(str(r["order_id"]), str(r["tracking"]), str(r["status"])) for r in rows]

    def order_ids(self) -> list[str]:
        """Return every order that ever had a shipment, sorted."""
        with _store.reading(self.path) as conn:
            rows = conn.execute("SELECT DISTINCT order_id FROM shipments")
            return sorted(str(r["order_id"]) for r in rows)


class OrderPayments:
    """Charge and refund orders through the world's bank (customer account → ``shop``)."""

    def __init__(self, world: World) -> None:
        self.world = world

    def charge(
        self, order_id: str, customer: str, amount: int, *, idempotency_key: str | None = None
    ) -> PaymentResult:
        """Move ``amount`` from the customer to the shop; without a key, every call charges.

        Raises:
            InsufficientFunds: The customer has less than ``amount`` (nothing moves).
            UnknownAccount: There is no such customer account.
        """
        receipt: TransferReceipt = self.world.bank.transfer(
            customer,
            SHOP_ACCOUNT,
            amount,
            reference=order_reference(order_id),
            idempotency_key=idempotency_key,
        )
        return PaymentResult(order_id, customer, amount, receipt.source_balance)

    def charged(self, order_id: str, customer: str) -> int:
        """Return the money the order has taken from the customer so far, net of refunds."""
        reference = order_reference(order_id)
        net = 0
        for entry in self.world.ledger.entries(service="bank", entity=customer):
            if entry.reference == reference and entry.operation in ("transfer_out", "transfer_in"):
                net -= entry.amount
        return net

    def refund(
        self, order_id: str, customer: str, *, idempotency_key: str | None = None
    ) -> PaymentResult:
        """Give back whatever the order has taken from the customer; a no-op if nothing.

        The refund is a transfer from the shop back to the customer, sent with
        its own key (``"<key>/refund"``), so a repeated refund moves no money twice.
        """
        owed = self.charged(order_id, customer)
        if owed <= 0:
            return PaymentResult(order_id, customer, 0, self.world.bank.balance(customer))
        receipt = self.world.bank.transfer(
            SHOP_ACCOUNT,
            customer,
            owed,
            reference=order_reference(order_id),
            idempotency_key=None if idempotency_key is None else f"{idempotency_key}/refund",
        )
        return PaymentResult(order_id, customer, -owed, receipt.target_balance)


class Shop:
    """Inventory, payments and shipping on one world file.

    Attributes:
        world: The underlying world (bank and ledger).
        inventory: The shelf.
        payments: Charges and refunds.
        shipping: Parcels.
        path: The SQLite file.
    """

    def __init__(self, path: str | os.PathLike[str], *, seed: ShopSeed | None = None) -> None:
        """Open (and if needed create and stock) the shop in ``path``.

        Args:
            path: The SQLite file (shared with the world's bank and ledger).
            seed: What a NEW shop starts with; ignored when the shop was stocked before.
        """
        self.world = World(path)
        self.path = self.world.path
        self.inventory = InventoryService(self.path)
        self.shipping = ShippingService(self.path)
        self.payments = OrderPayments(self.world)
        with _store.reading(self.path) as conn:
            # A script carries its own transaction (see World.__init__).
            conn.executescript("BEGIN IMMEDIATE;" + ORDERS_SCHEMA + "COMMIT;")
            stocked = conn.execute("SELECT 1 FROM shop_meta WHERE name = 'stocked'").fetchone()
            has_account = conn.execute(
                "SELECT 1 FROM bank_accounts WHERE account = ?", (SHOP_ACCOUNT,)
            ).fetchone()
        if stocked is None or has_account is None:
            self.reset(seed)

    def reset(self, seed: ShopSeed | None = None) -> None:
        """Empty the world and the shop, then stock both afresh from ``seed``."""
        seed = seed or ShopSeed()
        for item, units in seed.stock.items():
            if units < 0:
                raise ConfigurationError(f"Stock of {item!r} must be 0 or more, got {units}.")
        accounts = {**seed.customers, SHOP_ACCOUNT: 0}
        self.world.reset(WorldSeed(accounts=accounts))
        with _store.writing(self.path) as conn:
            for table in (*_SHOP_TABLES, "shop_meta"):
                conn.execute(f"DELETE FROM {table}")
            conn.executemany(
                "INSERT INTO inventory_stock (item, on_hand, initial) VALUES (?, ?, ?)",
                [(item, units, units) for item, units in seed.stock.items()],
            )
            conn.execute(
                "INSERT INTO shop_meta (name, value) VALUES ('stocked', ?)", (_store.now(),)
            )

    def describe(self) -> str:
        """Return a plain-text picture of the shop: shelf, orders and balances."""
        lines = ["Shop"]
        stock = self.inventory.stock()
        lines.append(
            "  shelf: "
            + ", ".join(f"{item} {on}/{initial}" for item, (on, initial) in stock.items())
        )
        orders = sorted(set(self.inventory.order_ids()) | set(self.shipping.order_ids()))
        for order_id in orders:
            held = [f"{q} {item} reserved" for _, item, q in self.inventory.reserved(order_id)]
            held += [f"parcel {s.tracking}" for s in self.shipping.active(order_id)]
            lines.append(f"  order {order_id}: {', '.join(held) or 'nothing held'}")
        balances = self.world.bank.balances()
        lines.append("  bank: " + ", ".join(f"{a} {b}" for a, b in balances.items()))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def _on_hand(conn: Connection, item: str) -> int:
    row = conn.execute("SELECT on_hand FROM inventory_stock WHERE item = ?", (item,)).fetchone()
    if row is None:
        items = [str(r["item"]) for r in conn.execute("SELECT item FROM inventory_stock")]
        raise ConfigurationError(
            f"The shop does not sell {item!r}; it sells {', '.join(sorted(items)) or 'nothing'}."
        )
    return int(row["on_hand"])


class OrderActivities(_ServiceActivities):
    """The shop's six activities, with injected faults (see :mod:`sagakit.course.services.activities`).

    Register them with ``OrderActivities("shop.db", plan).all()``.
    """

    STEPS: ClassVar[tuple[str, ...]] = ORDER_STEPS

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        faults: FaultPlan | None = None,
        *,
        hang_for: timedelta = DEFAULT_HANG,
        seed: ShopSeed | None = None,
    ) -> None:
        """Prepare the activities on the shop in ``db_path``.

        Args:
            db_path: The shop's SQLite file (created and stocked if new).
            faults: What to act out on which attempt; by default nothing.
            hang_for: How long a ``HANG`` attempt waits before giving up without effect.
            seed: What a new shop starts with.

        Raises:
            UnknownStepError: ``faults`` names a step that is not in :data:`ORDER_STEPS`.
        """
        self.shop = Shop(db_path, seed=seed)
        self.world = self.shop.world
        self.faults = (faults or FaultPlan()).validate(ORDER_STEPS)
        self.hang_for = hang_for

    @activity.defn
    def reserve_inventory(self, request: OrderRequest) -> Reservation:
        """Reserve the order's items (``OutOfStock`` if the shelf has too few)."""
        inventory = self.shop.inventory
        return self._act(
            request.order_id,
            "the items were reserved",
            lambda: inventory.reserve(
                request.order_id,
                request.item,
                request.quantity,
                idempotency_key=request.idempotency_key,
            ),
        )

    @activity.defn
    def release_inventory(self, request: OrderRequest) -> Reservation:
        """Put the order's reserved items back on the shelf, if it has any."""
        inventory = self.shop.inventory
        return self._act(
            request.order_id,
            "the items went back on the shelf",
            lambda: inventory.release(request.order_id, idempotency_key=request.idempotency_key),
        )

    @activity.defn
    def charge_payment(self, request: OrderRequest) -> PaymentResult:
        """Charge the customer (``InsufficientFunds`` if the balance is too low)."""
        payments = self.shop.payments
        return self._act(
            request.order_id,
            f"{request.amount} was charged to {request.customer}",
            lambda: payments.charge(
                request.order_id,
                request.customer,
                request.amount,
                idempotency_key=request.idempotency_key,
            ),
        )

    @activity.defn
    def refund_payment(self, request: OrderRequest) -> PaymentResult:
        """Give back whatever the order was charged, if anything."""
        payments = self.shop.payments
        return self._act(
            request.order_id,
            "the payment was refunded",
            lambda: payments.refund(
                request.order_id, request.customer, idempotency_key=request.idempotency_key
            ),
        )

    @activity.defn
    def ship_order(self, request: OrderRequest) -> Shipment:
        """Book the parcel."""
        shipping = self.shop.shipping
        return self._act(
            request.order_id,
            "the parcel was booked",
            lambda: shipping.ship(
                request.order_id, request.customer, idempotency_key=request.idempotency_key
            ),
        )

    @activity.defn
    def cancel_shipment(self, request: OrderRequest) -> Shipment:
        """Cancel the order's parcel, if it has one."""
        shipping = self.shop.shipping
        return self._act(
            request.order_id,
            "the parcel was cancelled",
            lambda: shipping.cancel(request.order_id, idempotency_key=request.idempotency_key),
        )
