"""The ledger: one row for every effect any simulated service had.

A service writes its ledger row in the same transaction as the effect itself,
so the ledger is a complete, trustworthy history: if a hotel was booked twice,
the ledger shows two ``book_hotel`` rows. ``amount`` is the signed change the
row made: +1 or -1 booking, a bowl taken out or put back, grams of cereal,
millilitres of milk, or money (positive in, negative out).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sagakit.course.display import Alignment, Table
from sagakit.course.services import _store

__all__ = ["LEDGER_SCHEMA", "Ledger", "LedgerEntry"]

LEDGER_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    at              TEXT NOT NULL,
    service         TEXT NOT NULL,
    operation       TEXT NOT NULL,
    entity          TEXT NOT NULL,
    amount          INTEGER NOT NULL,
    idempotency_key TEXT,
    reference       TEXT NOT NULL DEFAULT '',
    detail          TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS ledger_by_entity ON ledger (service, entity);
"""
"""DDL of the ledger table."""


@dataclass(frozen=True)
class LedgerEntry:
    """One effect, as the ledger recorded it."""

    id: int
    """Position in the ledger (1, 2, ...)."""
    at: str
    """When it happened (UTC, ISO 8601)."""
    service: str
    """Which service: ``"trips"``, ``"breakfast"`` or ``"bank"``."""
    operation: str
    """What was done, e.g. ``"book_hotel"`` or ``"withdraw"``."""
    entity: str
    """What it was done to: a trip id, a breakfast id or an account."""
    amount: int
    """The signed change (see the module docstring)."""
    idempotency_key: str | None
    """The key the request carried, if any."""
    reference: str
    """What a payment was for (bank only), e.g. ``"trip t1"``."""
    detail: str
    """A short description for people."""

    def __str__(self) -> str:
        key = f" key={self.idempotency_key}" if self.idempotency_key else ""
        ref = f" ref={self.reference}" if self.reference else ""
        return (
            f"#{self.id} {self.service}.{self.operation}({self.entity}) {self.amount:+d}"
            f"{ref}{key}  {self.detail}"
        )


class Ledger:
    """Read access to the ledger of one world file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(
        self,
        *,
        service: str | None = None,
        entity: str | None = None,
        operation: str | None = None,
    ) -> list[LedgerEntry]:
        """Return the ledger rows in order, optionally only those matching the filters."""
        clauses: list[str] = []
        params: list[str] = []
        for column, value in (("service", service), ("entity", entity), ("operation", operation)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with _store.reading(self.path) as conn:
            rows = conn.execute(f"SELECT * FROM ledger{where} ORDER BY id", params).fetchall()
        return [LedgerEntry(**dict(row)) for row in rows]

    def count(self, operation: str, entity: str | None = None) -> int:
        """Return how many times ``operation`` happened (to ``entity``, if given)."""
        return len(self.entries(operation=operation, entity=entity))

    def __len__(self) -> int:
        with _store.reading(self.path) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0])

    def __str__(self) -> str:
        entries = self.entries()
        if not entries:
            return "Ledger: empty (nothing has happened yet)"
        return "\n".join(["Ledger:", *(f"  {entry}" for entry in entries)])

    def _repr_html_(self) -> str:
        entries = self.entries()
        rows = [
            [
                e.id,
                e.service,
                e.operation,
                e.entity,
                f"{e.amount:+d}",
                e.idempotency_key or "",
                e.reference,
                e.detail,
            ]
            for e in entries
        ]
        columns = ["#", "service", "operation", "entity", "amount", "key", "ref", "detail"]
        align: list[Alignment] = ["right", "left", "left", "left", "right", "left", "left", "left"]
        return Table(columns, rows, align=align)._repr_html_()
