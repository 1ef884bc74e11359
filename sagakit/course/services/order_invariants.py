"""Check that a shop is consistent once every order saga in it has finished.

:func:`check_orders` lists every broken rule in plain words:

* an order is all-or-nothing: reserved, charged and shipped, or none of them;
* nothing happens twice for one order: one reservation, one charge, one parcel;
* stock is conserved: for each item, what is on the shelf plus what is reserved
  equals what the shop started with;
* and every rule of :func:`sagakit.course.services.invariants.check_world` about money
  (conserved, never charged twice, no idempotency key with two effects).

Like the world checker, it cannot know whether a saga is still running: run it
after the workflows have finished.
"""

from __future__ import annotations

import html
import os
from collections import defaultdict
from dataclasses import dataclass

from sagakit.course.services import _store
from sagakit.course.services.invariants import check_world
from sagakit.course.services.orders import SHOP_ACCOUNT, Shop, order_reference

__all__ = ["OrderReport", "check_orders"]


@dataclass(frozen=True)
class OrderReport:
    """The result of :func:`check_orders`."""

    ok: bool
    """True when no rule is broken."""
    problems: tuple[str, ...]
    """Every broken rule, in plain words: orders first, then stock, then money."""
    checked: str
    """What was looked at, e.g. ``"1 order, 2 items, 3 accounts"``."""

    def __str__(self) -> str:
        if self.ok:
            return f"✓ the shop is consistent ({self.checked})"
        count = len(self.problems)
        lines = [f"✗ {count} problem{'s' if count > 1 else ''} ({self.checked}):"]
        lines.extend(f"  - {p}" for p in self.problems)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        text = html.escape(str(self))
        color = "#1a7f37" if self.ok else "#cf222e"
        return f'<pre style="color:{color}">{text}</pre>'


def check_orders(shop: Shop | str | os.PathLike[str]) -> OrderReport:
    """Check every order rule of a shop (see the module docstring).

    Args:
        shop: A :class:`~sagakit.course.services.orders.Shop`, or the path of its SQLite file.

    Returns:
        The report; ``report.ok`` is True when nothing is broken.

    Raises:
        ConfigurationError: ``shop`` is a path where no shop file exists (a typo, say);
            nothing is created, and a world file that holds no shop is left as it was.
    """
    if not isinstance(shop, Shop):
        shop = Shop(
            _store.stocked_file(
                shop,
                meta="shop_meta",
                what="shop",
                hint="Pass the path the order activities use (or the Shop object itself).",
            )
        )
    problems: list[str] = []
    ledger = shop.world.ledger.entries()

    customers: dict[str, str] = {}
    first_charge: dict[str, int] = {}
    net_paid: dict[str, int] = defaultdict(int)
    for entry in ledger:
        if entry.service != "bank" or not entry.reference.startswith("order "):
            continue
        order_id = entry.reference.removeprefix("order ")
        if entry.entity == SHOP_ACCOUNT or entry.operation not in ("transfer_out", "transfer_in"):
            continue
        customers.setdefault(order_id, entry.entity)
        if entry.operation == "transfer_out":
            first_charge.setdefault(order_id, -entry.amount)
        net_paid[order_id] -= entry.amount
    # How many charges are still standing: the net money over the price of one charge.
    charges = {
        order_id: max(1, net // first_charge[order_id]) if net > 0 else 0
        for order_id, net in net_paid.items()
        if order_id in first_charge
    }

    reservations: dict[str, int] = defaultdict(int)
    for order_id, _item, _quantity in shop.inventory.reserved():
        reservations[order_id] += 1
    parcels: dict[str, int] = defaultdict(int)
    for shipment in shop.shipping.active():
        parcels[shipment.order_id] += 1

    orders = sorted(
        set(shop.inventory.order_ids()) | set(shop.shipping.order_ids()) | set(customers)
    )
    for order_id in orders:
        counts = {
            "reserved": reservations[order_id],
            "charged": charges.get(order_id, 0),
            "shipped": parcels[order_id],
        }
        for what, times in counts.items():
            if times > 1:
                problems.append(f"order {order_id}: {what} {times} times (should be once)")
        done = [what for what, times in counts.items() if times > 0]
        missing = [what for what, times in counts.items() if times <= 0]
        if done and missing:
            problems.append(
                f"order {order_id}: {_join(done)} but not {_join(missing, 'or')} "
                "(not all-or-nothing)"
            )

    stock = shop.inventory.stock()
    held: dict[str, int] = defaultdict(int)
    for _order, item, quantity in shop.inventory.reserved():
        held[item] += quantity
    for item, (on_hand, initial) in stock.items():
        if on_hand + held[item] != initial:
            problems.append(
                f"{item}: started with {initial}, now {on_hand} on the shelf + {held[item]} "
                f"reserved = {on_hand + held[item]} (stock not conserved)"
            )

    world = check_world(shop.world)
    ours = {order_reference(o) for o in orders}
    for violation in world.violations:
        # Double charges per order are already reported above, in the order's words.
        if violation.kind.value == "double_charge" and any(r in violation.message for r in ours):
            continue
        problems.append(violation.message)

    accounts = len(shop.world.bank.balances())
    checked = (
        f"{_plural(len(orders), 'order')}, {_plural(len(stock), 'item')}, "
        f"{_plural(accounts, 'account')}"
    )
    return OrderReport(ok=not problems, problems=tuple(problems), checked=checked)


def _join(items: list[str], last: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def _plural(n: int, one: str) -> str:
    return f"{n} {one if n == 1 else one + 's'}"
