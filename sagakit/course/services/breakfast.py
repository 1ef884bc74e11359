"""The breakfast service: a kitchen with bowls, cereal and milk.

A breakfast takes three steps, each with its own undo:

========================  ================================
step                      compensation ("if present")
========================  ================================
``get_bowl``              ``put_bowl_away_if_present``
``add_cereal``            ``put_cereal_back_if_present``
``add_milk``              (none: milk cannot go back)
========================  ================================

Stock is limited, so a step can genuinely fail: when the fridge has too little
milk, ``add_milk`` raises :class:`OutOfStock` and changes nothing. Pouring needs
a bowl on the counter. Putting a bowl away empties it first (whatever is still
in it is thrown away, and the ledger says so), so compensations run in reverse
order waste nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from sqlite3 import Connection

from sagakit import ConfigurationError
from sagakit.course.services import _store
from sagakit.course.services.errors import NoBowlOut, OutOfStock

__all__ = ["BREAKFAST_SCHEMA", "BreakfastService", "BreakfastState", "KitchenStock"]

SERVICE = "breakfast"

BREAKFAST_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS kitchen_stock (
    item TEXT PRIMARY KEY CHECK (item IN ('bowls', 'cereal_g', 'milk_ml')),
    qty  INTEGER NOT NULL CHECK (qty >= 0)
);
CREATE TABLE IF NOT EXISTS breakfasts (
    breakfast_id TEXT PRIMARY KEY,
    bowls        INTEGER NOT NULL DEFAULT 0 CHECK (bowls >= 0),
    cereal_g     INTEGER NOT NULL DEFAULT 0 CHECK (cereal_g >= 0),
    milk_ml      INTEGER NOT NULL DEFAULT 0 CHECK (milk_ml >= 0),
    updated_at   TEXT NOT NULL
);
{_store.requests_table("breakfast_requests")}
"""
"""DDL of the breakfast service's tables."""

_Effect = Callable[[Connection], None]


@dataclass(frozen=True)
class BreakfastState:
    """What is out on the counter for one breakfast."""

    breakfast_id: str
    """Which breakfast."""
    bowls: int
    """Bowls out on the counter (more than 1 means a step ran twice)."""
    cereal_g: int
    """Grams of cereal in the bowl."""
    milk_ml: int
    """Millilitres of milk in the bowl."""

    @property
    def served(self) -> bool:
        """One bowl with cereal and milk in it: breakfast is ready."""
        return self.bowls == 1 and self.cereal_g > 0 and self.milk_ml > 0

    @property
    def untouched(self) -> bool:
        """Nothing is out: the breakfast never started, or was fully undone."""
        return self.bowls == 0 and self.cereal_g == 0 and self.milk_ml == 0

    def __str__(self) -> str:
        if self.untouched:
            return f"breakfast {self.breakfast_id}: nothing out"
        return (
            f"breakfast {self.breakfast_id}: {self.bowls} bowl(s), {self.cereal_g} g cereal, "
            f"{self.milk_ml} ml milk"
        )


@dataclass(frozen=True)
class KitchenStock:
    """What is left in the cupboard and the fridge."""

    bowls: int
    """Clean bowls in the cupboard."""
    cereal_g: int
    """Grams of cereal in the box."""
    milk_ml: int
    """Millilitres of milk in the fridge."""


class BreakfastService:
    """Make (and unmake) breakfasts; state lives in the world file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    # -- effects ----------------------------------------------------------------------------

    def get_bowl(self, breakfast_id: str, *, idempotency_key: str | None = None) -> BreakfastState:
        """Take a bowl out of the cupboard; without a key, every call takes another.

        Raises:
            OutOfStock: No clean bowl is left (nothing changes).
        """

        def effect(conn: Connection) -> None:
            _take(conn, "bowls", 1, f"No clean bowl is left for breakfast {breakfast_id}")
            _add_to(conn, breakfast_id, bowls=1)
            self._log(conn, "get_bowl", breakfast_id, 1, idempotency_key, "bowl out")

        return self._once("get_bowl", breakfast_id, {}, idempotency_key, effect)

    def put_bowl_away_if_present(
        self, breakfast_id: str, *, idempotency_key: str | None = None
    ) -> BreakfastState:
        """Put every bowl of ``breakfast_id`` back; a no-op if none is out.

        Anything still in the bowl is thrown away first (and written in the ledger).
        """

        def effect(conn: Connection) -> None:
            state = _state(conn, breakfast_id)
            if state.bowls == 0:
                return
            for item, qty, unit in (("cereal", state.cereal_g, "g"), ("milk", state.milk_ml, "ml")):
                if qty:
                    self._log(
                        conn,
                        f"throw_away_{item}",
                        breakfast_id,
                        -qty,
                        idempotency_key,
                        f"threw away {qty} {unit} {item} left in the bowl",
                    )
            _give_back(conn, "bowls", state.bowls)
            conn.execute(
                "UPDATE breakfasts SET bowls = 0, cereal_g = 0, milk_ml = 0, updated_at = ?"
                " WHERE breakfast_id = ?",
                (_store.now(), breakfast_id),
            )
            self._log(
                conn,
                "put_bowl_away_if_present",
                breakfast_id,
                -state.bowls,
                idempotency_key,
                f"{state.bowls} bowl(s) back in the cupboard",
            )

        return self._once("put_bowl_away_if_present", breakfast_id, {}, idempotency_key, effect)

    def add_cereal(
        self, breakfast_id: str, grams: int = 60, *, idempotency_key: str | None = None
    ) -> BreakfastState:
        """Pour ``grams`` of cereal into the bowl; without a key, every call pours again.

        Raises:
            NoBowlOut: No bowl is out for this breakfast.
            OutOfStock: The box has less than ``grams`` left.
        """
        _store.check_positive("grams", grams)

        def effect(conn: Connection) -> None:
            _need_bowl(conn, breakfast_id, "cereal")
            _take(conn, "cereal_g", grams, f"Not enough cereal for breakfast {breakfast_id}")
            _add_to(conn, breakfast_id, cereal_g=grams)
            self._log(conn, "add_cereal", breakfast_id, grams, idempotency_key, f"{grams} g cereal")

        return self._once("add_cereal", breakfast_id, {"grams": grams}, idempotency_key, effect)

    def put_cereal_back_if_present(
        self, breakfast_id: str, *, idempotency_key: str | None = None
    ) -> BreakfastState:
        """Put the cereal in the bowl back into the box; a no-op if there is none."""

        def effect(conn: Connection) -> None:
            grams = _state(conn, breakfast_id).cereal_g
            if grams == 0:
                return
            _give_back(conn, "cereal_g", grams)
            conn.execute(
                "UPDATE breakfasts SET cereal_g = 0, updated_at = ? WHERE breakfast_id = ?",
                (_store.now(), breakfast_id),
            )
            self._log(
                conn,
                "put_cereal_back_if_present",
                breakfast_id,
                -grams,
                idempotency_key,
                f"{grams} g cereal back in the box",
            )

        return self._once("put_cereal_back_if_present", breakfast_id, {}, idempotency_key, effect)

    def add_milk(
        self, breakfast_id: str, ml: int = 200, *, idempotency_key: str | None = None
    ) -> BreakfastState:
        """Pour ``ml`` of milk into the bowl; without a key, every call pours again.

        Raises:
            NoBowlOut: No bowl is out for this breakfast.
            OutOfStock: The fridge has less than ``ml`` of milk ("out of milk").
        """
        _store.check_positive("ml", ml)

        def effect(conn: Connection) -> None:
            _need_bowl(conn, breakfast_id, "milk")
            _take(conn, "milk_ml", ml, f"Out of milk for breakfast {breakfast_id}")
            _add_to(conn, breakfast_id, milk_ml=ml)
            self._log(conn, "add_milk", breakfast_id, ml, idempotency_key, f"{ml} ml milk")

        return self._once("add_milk", breakfast_id, {"ml": ml}, idempotency_key, effect)

    def set_stock(
        self, *, bowls: int | None = None, cereal_g: int | None = None, milk_ml: int | None = None
    ) -> KitchenStock:
        """Set what is in the cupboard and fridge (arguments left out stay as they are)."""
        with _store.writing(self.path) as conn:
            for item, qty in (("bowls", bowls), ("cereal_g", cereal_g), ("milk_ml", milk_ml)):
                if qty is None:
                    continue
                if qty < 0:
                    raise ConfigurationError(f"{item} must be 0 or more, got {qty}.")
                conn.execute(
                    "INSERT INTO kitchen_stock (item, qty) VALUES (?, ?)"
                    " ON CONFLICT (item) DO UPDATE SET qty = excluded.qty",
                    (item, qty),
                )
        return self.stock()

    # -- reads ------------------------------------------------------------------------------

    def state(self, breakfast_id: str) -> BreakfastState:
        """Return what is out on the counter for ``breakfast_id``."""
        with _store.reading(self.path) as conn:
            return _state(conn, breakfast_id)

    def breakfasts(self) -> list[BreakfastState]:
        """Return every breakfast that was ever started, by id."""
        with _store.reading(self.path) as conn:
            rows = conn.execute(
                "SELECT breakfast_id, bowls, cereal_g, milk_ml FROM breakfasts"
                " ORDER BY breakfast_id"
            ).fetchall()
        return [BreakfastState(**dict(row)) for row in rows]

    def stock(self) -> KitchenStock:
        """Return what is left in the cupboard and the fridge."""
        with _store.reading(self.path) as conn:
            qty = {
                str(r["item"]): int(r["qty"]) for r in conn.execute("SELECT * FROM kitchen_stock")
            }
        return KitchenStock(qty.get("bowls", 0), qty.get("cereal_g", 0), qty.get("milk_ml", 0))

    # -- plumbing ---------------------------------------------------------------------------

    def _once(
        self,
        operation: str,
        breakfast_id: str,
        request: dict[str, int],
        idempotency_key: str | None,
        effect: _Effect,
    ) -> BreakfastState:
        with _store.writing(self.path) as conn:

            def run() -> BreakfastState:
                effect(conn)
                return _state(conn, breakfast_id)

            return _store.run_once(
                conn,
                table="breakfast_requests",
                idempotency_key=idempotency_key,
                operation=operation,
                request={"breakfast_id": breakfast_id, **request},
                result_type=BreakfastState,
                effect=run,
            )

    @staticmethod
    def _log(
        conn: Connection,
        operation: str,
        breakfast_id: str,
        amount: int,
        idempotency_key: str | None,
        detail: str,
    ) -> None:
        _store.record(
            conn,
            service=SERVICE,
            operation=operation,
            entity=breakfast_id,
            amount=amount,
            idempotency_key=idempotency_key,
            detail=detail,
        )


def _state(conn: Connection, breakfast_id: str) -> BreakfastState:
    row = conn.execute(
        "SELECT bowls, cereal_g, milk_ml FROM breakfasts WHERE breakfast_id = ?", (breakfast_id,)
    ).fetchone()
    if row is None:
        return BreakfastState(breakfast_id, 0, 0, 0)
    return BreakfastState(
        breakfast_id, int(row["bowls"]), int(row["cereal_g"]), int(row["milk_ml"])
    )


def _take(conn: Connection, item: str, qty: int, refusal: str) -> None:
    row = conn.execute("SELECT qty FROM kitchen_stock WHERE item = ?", (item,)).fetchone()
    have = 0 if row is None else int(row["qty"])
    if have < qty:
        raise OutOfStock(
            f"{refusal}: {qty} needed, {have} left. Nothing was changed; "
            "restock with world.breakfast.set_stock(...) or undo the breakfast."
        )
    conn.execute("UPDATE kitchen_stock SET qty = qty - ? WHERE item = ?", (qty, item))


def _give_back(conn: Connection, item: str, qty: int) -> None:
    conn.execute(
        "INSERT INTO kitchen_stock (item, qty) VALUES (?, ?)"
        " ON CONFLICT (item) DO UPDATE SET qty = qty + excluded.qty",
        (item, qty),
    )


def _add_to(
    conn: Connection, breakfast_id: str, *, bowls: int = 0, cereal_g: int = 0, milk_ml: int = 0
) -> None:
    conn.execute(
        "INSERT INTO breakfasts (breakfast_id, bowls, cereal_g, milk_ml, updated_at)"
        " VALUES (?, ?, ?, ?, ?) ON CONFLICT (breakfast_id) DO UPDATE SET"
        " bowls = bowls + excluded.bowls, cereal_g = cereal_g + excluded.cereal_g,"
        " milk_ml = milk_ml + excluded.milk_ml, updated_at = excluded.updated_at",
        (breakfast_id, bowls, cereal_g, milk_ml, _store.now()),
    )


def _need_bowl(conn: Connection, breakfast_id: str, what: str) -> None:
    if _state(conn, breakfast_id).bowls == 0:
        raise NoBowlOut(
            f"No bowl is out for breakfast {breakfast_id}, so there is nowhere to pour the "
            f"{what}. Run get_bowl first."
        )
