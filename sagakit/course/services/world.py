"""The world: one SQLite file holding every simulated service and the ledger.

``World("course.db")`` creates the file and its tables if needed and, the first
time only, stocks it (see :class:`WorldSeed`). Opening the same file again, from
this process or another, sees everything that happened before: the services
survive a worker or kernel restart, just as real ones would. ``reset()`` wipes
the file back to the seed for the next exercise.
"""

from __future__ import annotations

import html
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field

from sagakit import ConfigurationError
from sagakit._sqlite import enable_wal
from sagakit.course.services import _store
from sagakit.course.services.bank import BANK_SCHEMA, BankService
from sagakit.course.services.breakfast import BREAKFAST_SCHEMA, BreakfastService
from sagakit.course.services.invariants import InvariantReport, check_world
from sagakit.course.services.ledger import LEDGER_SCHEMA, Ledger
from sagakit.course.services.trip import TRIP_SCHEMA, TripService

__all__ = ["World", "WorldSeed"]

# A row here ('seeded') marks a stocked world; the checker refuses a file without one.
_META_SCHEMA = """
CREATE TABLE IF NOT EXISTS world_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_TABLES = (
    "ledger",
    "trip_bookings",
    "trip_capacity",
    "trip_requests",
    "kitchen_stock",
    "breakfasts",
    "breakfast_requests",
    "bank_accounts",
    "bank_requests",
    "world_meta",
)


def _default_accounts() -> dict[str, int]:
    return {"alice": 500, "bob": 500}


@dataclass(frozen=True)
class WorldSeed:
    """What a fresh (or reset) world starts with."""

    bowls: int = 4
    """Clean bowls in the cupboard."""
    cereal_g: int = 1000
    """Grams of cereal in the box."""
    milk_ml: int = 1000
    """Millilitres of milk in the fridge (five 200 ml breakfasts)."""
    accounts: Mapping[str, int] = field(default_factory=_default_accounts)
    """Bank accounts and their opening balances."""


class World:
    """All simulated services, sharing one SQLite file.

    Attributes:
        path: The SQLite file.
        trips: Hotel, flight and excursion bookings.
        breakfast: The kitchen.
        bank: Accounts and money.
        ledger: Every effect any service had, in order.
    """

    def __init__(self, path: str | os.PathLike[str], *, seed: WorldSeed | None = None) -> None:
        """Open (and if needed create and stock) the world in ``path``.

        Args:
            path: The SQLite file; its folder is created if missing.
            seed: What a NEW file starts with; ignored when the file was stocked before.

        Raises:
            ConfigurationError: The path is in memory, is not a SQLite file, or cannot be
                created; the file is left as it was.
        """
        self.path = _store.as_path(path).resolve()
        self.trips = TripService(self.path)
        self.breakfast = BreakfastService(self.path)
        self.bank = BankService(self.path)
        self.ledger = Ledger(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with _store.reading(self.path) as conn:
                enable_wal(conn)
                # A script commits any open transaction first, so it carries its own
                # BEGIN IMMEDIATE: two processes creating the file at once take turns.
                conn.executescript(
                    "BEGIN IMMEDIATE;"
                    + _META_SCHEMA
                    + LEDGER_SCHEMA
                    + TRIP_SCHEMA
                    + BREAKFAST_SCHEMA
                    + BANK_SCHEMA
                    + "COMMIT;"
                )
                seeded = conn.execute("SELECT 1 FROM world_meta WHERE name = 'seeded'").fetchone()
        except (OSError, sqlite3.DatabaseError) as err:
            raise ConfigurationError(
                f"The world file {self.path} cannot be opened ({err}). If it is not a world "
                "file (or is damaged), move it aside, nothing is deleted; then pass a path in "
                "a folder you can write to, e.g. tmp_path / 'world.db'."
            ) from err
        if seeded is None:
            self.reset(seed)

    def reset(self, seed: WorldSeed | None = None) -> None:
        """Delete everything (bookings, breakfasts, accounts, ledger) and stock afresh."""
        seed = seed or WorldSeed()
        with _store.writing(self.path) as conn:
            for table in _TABLES:
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM sqlite_sequence")
            conn.executemany(
                "INSERT INTO kitchen_stock (item, qty) VALUES (?, ?)",
                [("bowls", seed.bowls), ("cereal_g", seed.cereal_g), ("milk_ml", seed.milk_ml)],
            )
            conn.execute(
                "INSERT INTO world_meta (name, value) VALUES ('seeded', ?)", (_store.now(),)
            )
        for account, balance in seed.accounts.items():
            self.bank.open_account(account, balance)

    def check(self) -> InvariantReport:
        """Check the world's invariants; see :func:`sagakit.course.services.invariants.check_world`."""
        return check_world(self)

    def describe(self) -> str:
        """Return a plain-text picture of every service's state."""
        lines = [f"World in {self.path.name}"]
        trips = self.trips.trip_ids()
        lines.append("  trips:" + ("" if trips else " none"))
        for trip_id in trips:
            active = self.trips.active(trip_id)
            held = [f"{kind}×{n}" if n > 1 else kind for kind, n in active.items() if n]
            lines.append(f"    {trip_id}: {', '.join(held) or 'nothing booked'}")
        stock = self.breakfast.stock()
        lines.append(
            f"  kitchen: {stock.bowls} bowls, {stock.cereal_g} g cereal, {stock.milk_ml} ml milk"
        )
        lines.extend(f"    {state}" for state in self.breakfast.breakfasts())
        balances = self.bank.balances()
        lines.append(
            "  bank: "
            + (", ".join(f"{a} {b}" for a, b in balances.items()) or "no accounts")
            + f" (total {sum(balances.values())})"
        )
        lines.append(f"  ledger: {len(self.ledger)} entries")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        return f"World({str(self.path)!r})"

    def _repr_html_(self) -> str:
        return f"<pre>{html.escape(self.describe())}</pre>"
