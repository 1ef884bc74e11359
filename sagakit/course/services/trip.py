"""The trip-booking service: hotel, flight and excursion, booked and cancelled per trip.

Booking is *not* naturally idempotent: each call without an idempotency key
makes one more booking, exactly like an ``INSERT`` into a table that allows
duplicates. Cancelling is tolerant ("cancel if present"): it cancels whatever
active bookings of that kind the trip has, and does nothing when there are
none, so a saga may register it *before* the booking step runs.

**Cancel wins.** A cancel sent with an idempotency key is remembered under that
key, even when it found nothing to cancel (a *tombstone*). A booking that later
arrives with the same key, and was not made before, is refused with
:class:`~sagakit.course.services.errors.CancelledBeforeBooking`: nothing is
booked, and the refusal is in the ledger (operation ``book_<kind>_refused``,
amount 0). That stops a late attempt (a *zombie*: a booking attempt that timed
out, whose undo already ran, and that reaches the service only now) from
leaving an orphan booking. A booking that *was* made under the key is answered
as before: its first result, nothing booked again. The key must therefore name
one saga *run*: a new run that books again needs a new key.
``TripService(path, cancel_wins=False)`` is the service without this rule, as a
lesson's "before".
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from sagakit import ConfigurationError
from sagakit.course.services import _store
from sagakit.course.services.errors import CancelledBeforeBooking, SoldOut

__all__ = [
    "REFUSED",
    "TRIP_KINDS",
    "TRIP_SCHEMA",
    "Booking",
    "Cancellation",
    "TripKind",
    "TripService",
]

TripKind = Literal["hotel", "flight", "excursion"]
"""The three things a trip is made of."""

TRIP_KINDS: tuple[TripKind, ...] = get_args(TripKind)
"""``("hotel", "flight", "excursion")``, in booking order."""

SERVICE = "trips"

REFUSED = "_refused"
"""Suffix of the ledger operation of a refused booking: ``book_hotel_refused``."""

TRIP_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS trip_bookings (
    booking_id   INTEGER PRIMARY KEY AUTOINCREMENT,
    trip_id      TEXT NOT NULL,
    kind         TEXT NOT NULL CHECK (kind IN ('hotel', 'flight', 'excursion')),
    customer     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('active', 'cancelled')),
    booked_at    TEXT NOT NULL,
    cancelled_at TEXT
);
CREATE INDEX IF NOT EXISTS trip_bookings_by_trip ON trip_bookings (trip_id, kind, status);
CREATE TABLE IF NOT EXISTS trip_capacity (
    kind      TEXT PRIMARY KEY CHECK (kind IN ('hotel', 'flight', 'excursion')),
    remaining INTEGER CHECK (remaining IS NULL OR remaining >= 0)
);
{_store.requests_table("trip_requests")}
"""
"""DDL of the trip service's tables."""


@dataclass(frozen=True)
class Booking:
    """One booking of a hotel room, a flight seat or an excursion place."""

    booking_id: int
    """The service's number for this booking."""
    trip_id: str
    """The trip it belongs to."""
    kind: str
    """``"hotel"``, ``"flight"`` or ``"excursion"``."""
    customer: str
    """Who travels."""
    status: str
    """``"active"`` or ``"cancelled"`` (as it was when this object was read)."""


@dataclass(frozen=True)
class Cancellation:
    """What a cancel call did."""

    trip_id: str
    """The trip."""
    kind: str
    """``"hotel"``, ``"flight"`` or ``"excursion"``."""
    cancelled: int
    """How many active bookings were cancelled; 0 means there was nothing to cancel."""


class TripService:
    """Book and cancel hotels, flights and excursions; state lives in the world file."""

    def __init__(self, path: Path, *, cancel_wins: bool = True) -> None:
        """Use the trip tables of the world file in ``path``.

        Args:
            path: The world's SQLite file.
            cancel_wins: Refuse a booking whose cancel already ran under the same
                idempotency key (see the module docstring). ``False`` books it anyway.
        """
        self.path = path
        self.cancel_wins = cancel_wins

    # -- effects ----------------------------------------------------------------------------

    def book(
        self,
        kind: TripKind,
        trip_id: str,
        customer: str = "",
        *,
        idempotency_key: str | None = None,
    ) -> Booking:
        """Book one ``kind`` for ``trip_id``; without a key, every call books again.

        Raises:
            SoldOut: No capacity is left for ``kind`` (nothing is booked).
            CancelledBeforeBooking: ``cancel_<kind>`` already ran under ``idempotency_key``
                and this booking was not made before (nothing is booked; the refusal is
                recorded in the ledger).
        """
        _check_kind(kind)
        operation = f"book_{kind}"

        with _store.writing(self.path) as conn:
            if self._cancelled_first(conn, kind, idempotency_key):
                _store.record(
                    conn,
                    service=SERVICE,
                    operation=operation + REFUSED,
                    entity=trip_id,
                    amount=0,
                    idempotency_key=idempotency_key,
                    detail=f"{kind} booking refused: cancel_{kind} already ran under this key",
                )
                refused = CancelledBeforeBooking(
                    f"The {kind} of trip {trip_id} was cancelled under key {idempotency_key!r} "
                    "before this booking arrived (cancel wins): nothing was booked. A late "
                    "attempt of a step that was already undone lands here; to book again, "
                    "start a new request with a new key."
                )
            else:
                refused = None

            def effect() -> Booking:
                row = conn.execute(
                    "SELECT remaining FROM trip_capacity WHERE kind = ?", (kind,)
                ).fetchone()
                if row is not None and row["remaining"] is not None:
                    if row["remaining"] <= 0:
                        raise SoldOut(
                            f"No {kind} is available for trip {trip_id}: sold out. "
                            "The booking was not made; cancel what the trip already holds."
                        )
                    conn.execute(
                        "UPDATE trip_capacity SET remaining = remaining - 1 WHERE kind = ?",
                        (kind,),
                    )
                cursor = conn.execute(
                    "INSERT INTO trip_bookings (trip_id, kind, customer, status, booked_at)"
                    " VALUES (?, ?, ?, 'active', ?)",
                    (trip_id, kind, customer, _store.now()),
                )
                booking_id = int(cursor.lastrowid or 0)
                _store.record(
                    conn,
                    service=SERVICE,
                    operation=operation,
                    entity=trip_id,
                    amount=1,
                    idempotency_key=idempotency_key,
                    detail=f"{kind} booking #{booking_id}"
                    + (f" for {customer}" if customer else ""),
                )
                return Booking(booking_id, trip_id, kind, customer, "active")

            if refused is None:
                return _store.run_once(
                    conn,
                    table="trip_requests",
                    idempotency_key=idempotency_key,
                    operation=operation,
                    request={"trip_id": trip_id, "customer": customer},
                    result_type=Booking,
                    effect=effect,
                )
        raise refused  # after the commit: the refusal stays in the ledger

    def _cancelled_first(self, conn: sqlite3.Connection, kind: TripKind, key: str | None) -> bool:
        """Whether a booking under ``key`` must be refused: its cancel ran, it did not."""
        if not self.cancel_wins or key is None:
            return False
        table = "trip_requests"
        if _store.seen(conn, table=table, operation=f"book_{kind}", idempotency_key=key):
            return False  # booked before the cancel: the retry gets its first answer
        return _store.seen(conn, table=table, operation=f"cancel_{kind}", idempotency_key=key)

    def cancel(
        self, kind: TripKind, trip_id: str, *, idempotency_key: str | None = None
    ) -> Cancellation:
        """Cancel every active ``kind`` booking of ``trip_id``; a no-op if there is none.

        With a key, the cancel is remembered under it even when it found nothing (a
        tombstone): a booking that arrives later with the same key is refused.
        """
        _check_kind(kind)
        operation = f"cancel_{kind}"

        with _store.writing(self.path) as conn:

            def effect() -> Cancellation:
                ids = [
                    int(r["booking_id"])
                    for r in conn.execute(
                        "SELECT booking_id FROM trip_bookings"
                        " WHERE trip_id = ? AND kind = ? AND status = 'active'",
                        (trip_id, kind),
                    )
                ]
                if ids:
                    conn.executemany(
                        "UPDATE trip_bookings SET status = 'cancelled', cancelled_at = ?"
                        " WHERE booking_id = ?",
                        [(_store.now(), booking_id) for booking_id in ids],
                    )
                    conn.execute(
                        "UPDATE trip_capacity SET remaining = remaining + ?"
                        " WHERE kind = ? AND remaining IS NOT NULL",
                        (len(ids), kind),
                    )
                    _store.record(
                        conn,
                        service=SERVICE,
                        operation=operation,
                        entity=trip_id,
                        amount=-len(ids),
                        idempotency_key=idempotency_key,
                        detail=f"cancelled {kind} booking "
                        + ", ".join(f"#{booking_id}" for booking_id in ids),
                    )
                return Cancellation(trip_id, kind, len(ids))

            return _store.run_once(
                conn,
                table="trip_requests",
                idempotency_key=idempotency_key,
                operation=operation,
                request={"trip_id": trip_id},
                result_type=Cancellation,
                effect=effect,
            )

    def book_hotel(
        self, trip_id: str, customer: str = "", *, idempotency_key: str | None = None
    ) -> Booking:
        """Book a hotel room for ``trip_id`` (see :meth:`book`)."""
        return self.book("hotel", trip_id, customer, idempotency_key=idempotency_key)

    def book_flight(
        self, trip_id: str, customer: str = "", *, idempotency_key: str | None = None
    ) -> Booking:
        """Book a flight seat for ``trip_id`` (see :meth:`book`)."""
        return self.book("flight", trip_id, customer, idempotency_key=idempotency_key)

    def book_excursion(
        self, trip_id: str, customer: str = "", *, idempotency_key: str | None = None
    ) -> Booking:
        """Book an excursion place for ``trip_id`` (see :meth:`book`)."""
        return self.book("excursion", trip_id, customer, idempotency_key=idempotency_key)

    def cancel_hotel(self, trip_id: str, *, idempotency_key: str | None = None) -> Cancellation:
        """Cancel the hotel of ``trip_id`` if it has one (see :meth:`cancel`)."""
        return self.cancel("hotel", trip_id, idempotency_key=idempotency_key)

    def cancel_flight(self, trip_id: str, *, idempotency_key: str | None = None) -> Cancellation:
        """Cancel the flight of ``trip_id`` if it has one (see :meth:`cancel`)."""
        return self.cancel("flight", trip_id, idempotency_key=idempotency_key)

    def cancel_excursion(self, trip_id: str, *, idempotency_key: str | None = None) -> Cancellation:
        """Cancel the excursion of ``trip_id`` if it has one (see :meth:`cancel`)."""
        return self.cancel("excursion", trip_id, idempotency_key=idempotency_key)

    def set_capacity(self, kind: TripKind, remaining: int | None) -> None:
        """Limit how many more ``kind`` bookings can be made; ``None`` means unlimited."""
        _check_kind(kind)
        if remaining is not None and remaining < 0:
            raise ConfigurationError(f"Capacity must be 0 or more (or None), got {remaining}.")
        with _store.writing(self.path) as conn:
            conn.execute(
                "INSERT INTO trip_capacity (kind, remaining) VALUES (?, ?)"
                " ON CONFLICT (kind) DO UPDATE SET remaining = excluded.remaining",
                (kind, remaining),
            )

    # -- reads ------------------------------------------------------------------------------

    def cancelled_under(self, kind: TripKind, idempotency_key: str) -> bool:
        """Whether ``cancel_<kind>`` ran under ``idempotency_key`` (with or without effect)."""
        _check_kind(kind)
        with _store.reading(self.path) as conn:
            return _store.seen(
                conn,
                table="trip_requests",
                operation=f"cancel_{kind}",
                idempotency_key=idempotency_key,
            )

    def capacity(self, kind: TripKind) -> int | None:
        """Return how many more ``kind`` bookings can be made (``None``: unlimited)."""
        _check_kind(kind)
        with _store.reading(self.path) as conn:
            row = conn.execute(
                "SELECT remaining FROM trip_capacity WHERE kind = ?", (kind,)
            ).fetchone()
        return None if row is None or row["remaining"] is None else int(row["remaining"])

    def bookings(self, trip_id: str | None = None, *, active_only: bool = False) -> list[Booking]:
        """Return bookings (of one trip, if given) in the order they were made."""
        sql = "SELECT booking_id, trip_id, kind, customer, status FROM trip_bookings"
        clauses, params = [], []
        if trip_id is not None:
            clauses.append("trip_id = ?")
            params.append(trip_id)
        if active_only:
            clauses.append("status = 'active'")
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        with _store.reading(self.path) as conn:
            rows = conn.execute(sql + " ORDER BY booking_id", params).fetchall()
        return [Booking(**dict(row)) for row in rows]

    def active(self, trip_id: str) -> dict[str, int]:
        """Return the number of active bookings of each kind for ``trip_id``."""
        counts: dict[str, int] = dict.fromkeys(TRIP_KINDS, 0)
        for booking in self.bookings(trip_id, active_only=True):
            counts[booking.kind] += 1
        return counts

    def trip_ids(self) -> list[str]:
        """Return every trip id that has ever had a booking, sorted."""
        with _store.reading(self.path) as conn:
            rows = conn.execute("SELECT DISTINCT trip_id FROM trip_bookings ORDER BY trip_id")
            return [str(r["trip_id"]) for r in rows]


def _check_kind(kind: str) -> None:
    if kind not in TRIP_KINDS:
        raise ConfigurationError(
            f"{kind!r} is not part of a trip; use one of {', '.join(TRIP_KINDS)}."
        )
