"""A small publish/subscribe event bus whose log lives in SQLite.

Choreography needs a way for services to hear about each other's events
without calling each other. This bus is the smallest real one: every
:meth:`EventBus.publish` appends a :class:`Message` to a table, and each
subscriber keeps a *cursor* (the position of the last message it finished
handling) in another table. Both survive a restart of the process::

    bus = EventBus("bus.db")
    bus.subscribe("hotel", ["TripRequested"], on_trip_requested)
    bus.publish("TripRequested", saga_id="t1", sender="desk")
    bus.drain()        # hands each pending message to its subscribers, in log order

Delivery is *at least once*. A handler that raises has "crashed": its cursor
does not move, its handler is detached (as if its process had died), and the
message waits in the log. When the subscriber subscribes again, it gets the
message again. Handlers must therefore be idempotent.

:meth:`EventBus.drain` delivers one message at a time, oldest first, and
subscribers in the order they first subscribed, so a run is repeatable: the
same messages in the same order every time. (A production broker would run
the subscribers concurrently; the delivery guarantee is the same.)
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from sagakit import ConfigurationError, SagakitError
from sagakit._sqlite import connect, immediate_transaction

__all__ = [
    "BUS_SCHEMA",
    "Delivery",
    "DeliveryOutcome",
    "EventBus",
    "EventBusError",
    "Handler",
    "Message",
]

BUS_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    position     INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    saga_id      TEXT NOT NULL,
    sender       TEXT NOT NULL,
    data         TEXT NOT NULL,
    published_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS subscriptions (
    subscriber TEXT PRIMARY KEY,
    kinds      TEXT NOT NULL,
    cursor     INTEGER NOT NULL,
    joined     INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS deliveries (
    number     INTEGER PRIMARY KEY AUTOINCREMENT,
    position   INTEGER NOT NULL,
    subscriber TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    error      TEXT
);
"""
"""DDL of the bus: the message log, the subscribers' cursors, and every delivery attempt."""


class EventBusError(SagakitError):
    """The event bus was used the wrong way."""


@dataclass(frozen=True)
class Message:
    """One published event, as the log holds it."""

    position: int
    """Its place in the log: 1 for the first message ever published."""
    kind: str
    """What happened, e.g. ``"HotelBooked"``; subscribers choose messages by kind."""
    saga_id: str
    """The saga (trip, order, ...) it is about: the correlation id."""
    sender: str
    """Who published it."""
    data: Mapping[str, Any] = field(default_factory=dict)
    """Details, JSON-compatible."""
    published_at: str = ""
    """When it was published, ISO 8601 (UTC)."""


class DeliveryOutcome(StrEnum):
    """How one delivery of a message to one subscriber ended."""

    HANDLED = "handled"
    """The handler returned; the subscriber's cursor moved past the message."""
    CRASHED = "crashed"
    """The handler raised; the cursor stayed and the subscriber was detached."""


@dataclass(frozen=True)
class Delivery:
    """One message handed to one subscriber."""

    message: Message
    """What was delivered."""
    subscriber: str
    """To whom."""
    outcome: DeliveryOutcome
    """Whether the handler finished."""
    error: str | None = None
    """For a crash, ``Type: message`` of what the handler raised."""


Handler = Callable[[Message], None]
"""What a subscriber runs for each message; it may publish more messages on the bus."""


class EventBus:
    """A persisted message log with per-subscriber cursors; see the module docstring.

    Subscriptions (name, kinds, cursor) are stored in the file; the handlers
    are not (they are code), so after a restart each subscriber must call
    :meth:`subscribe` again and then continues where its cursor stands.
    """

    def __init__(self, path: str | Path) -> None:
        """Open (creating if needed) the bus in the SQLite file ``path``.

        Raises:
            ConfigurationError: ``path`` names an in-memory database.
        """
        if str(path) in ("", ":memory:"):
            raise ConfigurationError(
                "EventBus needs a database file so that the log survives restarts; pass a path "
                "like 'bus.db'."
            )
        self.path = Path(path)
        """The SQLite file."""
        self._handlers: dict[str, Handler] = {}
        with self._reading() as conn:
            conn.executescript(BUS_SCHEMA)  # a script commits as it goes: no transaction around it

    def _connection(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """A connection inside one write transaction, for changes."""
        return _transaction(self.path)

    def _reading(self) -> contextlib.closing[sqlite3.Connection]:
        """A connection without a transaction, for reads (they take no write lock)."""
        return contextlib.closing(connect(self.path))

    # -- publishing ---------------------------------------------------------------------------

    def publish(
        self, kind: str, *, saga_id: str, sender: str, data: Mapping[str, Any] | None = None
    ) -> Message:
        """Append a message to the log and return it with its position.

        Raises:
            ConfigurationError: ``kind`` is empty or ``data`` is not JSON-compatible.
        """
        if not kind:
            raise ConfigurationError("A message needs a kind, e.g. 'HotelBooked'.")
        details = dict(data or {})
        try:
            encoded = json.dumps(details, sort_keys=True)
        except TypeError as err:
            raise ConfigurationError(
                f"The data of a {kind!r} message must be JSON-compatible: {err}. Send plain "
                "numbers, strings, lists and dicts."
            ) from err
        when = datetime.now(UTC).isoformat(timespec="milliseconds")
        with self._connection() as conn:
            cursor = conn.execute(
                "INSERT INTO messages (kind, saga_id, sender, data, published_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (kind, saga_id, sender, encoded, when),
            )
            position = int(cursor.lastrowid or 0)
        return Message(position, kind, saga_id, sender, details, when)

    # -- subscribing --------------------------------------------------------------------------

    def subscribe(self, subscriber: str, kinds: Iterable[str], handler: Handler) -> None:
        """Attach ``handler`` for messages of ``kinds`` under the name ``subscriber``.

        A new subscriber starts at the end of the log (it sees only messages
        published from now on). A subscriber that was here before keeps its
        cursor and receives every matching message it has not finished yet,
        including those published while it was away.

        Raises:
            EventBusError: ``kinds`` is empty, or the subscriber was stored with other kinds.
        """
        wanted = sorted(set(kinds))
        if not wanted:
            raise EventBusError(
                f"Subscriber {subscriber!r} listens to no kind of message; pass the kinds "
                "it reacts to, e.g. ['TripRequested']."
            )
        with self._connection() as conn:
            row = conn.execute(
                "SELECT kinds FROM subscriptions WHERE subscriber = ?", (subscriber,)
            ).fetchone()
            if row is None:
                (end,) = conn.execute("SELECT COALESCE(MAX(position), 0) FROM messages").fetchone()
                (joined,) = conn.execute("SELECT COUNT(*) FROM subscriptions").fetchone()
                conn.execute(
                    "INSERT INTO subscriptions (subscriber, kinds, cursor, joined)"
                    " VALUES (?, ?, ?, ?)",
                    (subscriber, json.dumps(wanted), end, joined),
                )
            elif json.loads(row[0]) != wanted:
                raise EventBusError(
                    f"Subscriber {subscriber!r} was stored listening to {json.loads(row[0])}, "
                    f"not {wanted}. Use another subscriber name for the new kinds, or "
                    "start from a new bus file."
                )
        self._handlers[subscriber] = handler

    def detach(self, subscriber: str) -> None:
        """Remove the subscriber's handler (its process stopped); its cursor stays stored."""
        self._handlers.pop(subscriber, None)

    def attached(self) -> list[str]:
        """Return the subscribers whose handlers are attached now, in subscription order."""
        return [name for name in self._subscribers() if name in self._handlers]

    def _subscribers(self) -> list[str]:
        with self._reading() as conn:
            rows = conn.execute("SELECT subscriber FROM subscriptions ORDER BY joined").fetchall()
        return [str(name) for (name,) in rows]

    # -- delivering ---------------------------------------------------------------------------

    def pending(self, subscriber: str) -> list[Message]:
        """Return the messages ``subscriber`` has not finished handling, oldest first.

        Raises:
            EventBusError: No subscriber of that name was ever stored.
        """
        with self._reading() as conn:
            row = conn.execute(
                "SELECT kinds, cursor FROM subscriptions WHERE subscriber = ?", (subscriber,)
            ).fetchone()
            if row is None:
                raise EventBusError(
                    f"No subscriber named {subscriber!r} on this bus; known subscribers: "
                    f"{', '.join(self._subscribers()) or 'none'}."
                )
            kinds = json.loads(row[0])
            marks = ",".join("?" * len(kinds))
            rows = conn.execute(
                "SELECT position, kind, saga_id, sender, data, published_at FROM messages"
                f" WHERE position > ? AND kind IN ({marks}) ORDER BY position",
                (row[1], *kinds),
            ).fetchall()
        return [_message(r) for r in rows]

    def deliver_next(self) -> Delivery | None:
        """Deliver the oldest pending message to one attached subscriber.

        Returns:
            What happened, or ``None`` when no attached subscriber has anything pending.
        """
        best: tuple[int, int, str, Message] | None = None
        for rank, name in enumerate(self._subscribers()):
            if name not in self._handlers:
                continue
            waiting = self.pending(name)
            if waiting and (best is None or (waiting[0].position, rank) < best[:2]):
                best = (waiting[0].position, rank, name, waiting[0])
        if best is None:
            return None
        _, _, name, message = best
        try:
            self._handlers[name](message)
        except Exception as err:  # the subscriber "crashed": leave the message in its queue
            self.detach(name)
            delivery = Delivery(
                message, name, DeliveryOutcome.CRASHED, f"{type(err).__name__}: {err}"
            )
        else:
            delivery = Delivery(message, name, DeliveryOutcome.HANDLED)
        with self._connection() as conn:
            if delivery.outcome is DeliveryOutcome.HANDLED:
                conn.execute(
                    "UPDATE subscriptions SET cursor = ? WHERE subscriber = ?",
                    (message.position, name),
                )
            conn.execute(
                "INSERT INTO deliveries (position, subscriber, outcome, error) VALUES (?, ?, ?, ?)",
                (message.position, name, delivery.outcome.value, delivery.error),
            )
        return delivery

    def drain(self, *, limit: int = 10_000) -> list[Delivery]:
        """Deliver until no attached subscriber has anything pending; return the deliveries.

        Raises:
            EventBusError: More than ``limit`` deliveries: the handlers probably
                publish messages that trigger each other forever.
        """
        done: list[Delivery] = []
        while (delivery := self.deliver_next()) is not None:
            done.append(delivery)
            if len(done) > limit:
                raise EventBusError(
                    f"drain() made more than {limit} deliveries; some handlers keep triggering "
                    "each other. Check which message kinds each subscriber publishes."
                )
        return done

    # -- reading the log ----------------------------------------------------------------------

    def messages(self, *, saga_id: str | None = None, kind: str | None = None) -> list[Message]:
        """Return the logged messages, oldest first, optionally of one saga and/or kind."""
        sql = "SELECT position, kind, saga_id, sender, data, published_at FROM messages"
        clauses, params = [], []
        if saga_id is not None:
            clauses.append("saga_id = ?")
            params.append(saga_id)
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        with self._reading() as conn:
            rows = conn.execute(sql + " ORDER BY position", params).fetchall()
        return [_message(r) for r in rows]

    def deliveries(self, *, saga_id: str | None = None) -> list[Delivery]:
        """Return every delivery attempt so far (of one saga, if given), in the order made."""
        sql = (
            "SELECT m.position, m.kind, m.saga_id, m.sender, m.data, m.published_at,"
            " d.subscriber, d.outcome, d.error"
            " FROM deliveries d JOIN messages m ON m.position = d.position"
        )
        params: list[str] = []
        if saga_id is not None:
            sql += " WHERE m.saga_id = ?"
            params.append(saga_id)
        with self._reading() as conn:
            rows = conn.execute(sql + " ORDER BY d.number", params).fetchall()
        return [Delivery(_message(r[:6]), str(r[6]), DeliveryOutcome(r[7]), r[8]) for r in rows]


def _message(row: Any) -> Message:
    position, kind, saga_id, sender, data, at = row
    return Message(int(position), str(kind), str(saga_id), str(sender), json.loads(data), str(at))


@contextlib.contextmanager
def _transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """A short-lived SQLite connection, one write transaction that commits (or rolls back)."""
    with contextlib.closing(connect(path)) as conn, immediate_transaction(conn):
        yield conn
