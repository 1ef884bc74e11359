"""Lesson 05: platform 💻 and application 〉 failures, and event sourcing 🎤.

- :class:`Warehouse` is a small inventory service that speaks HTTP on
  ``127.0.0.1``. It can drop its first connections without answering (a real
  network failure, seen by the client as "Remote end closed connection"), and
  it answers ``409 insufficient inventory`` when an order wants more than it has.
- :func:`reserve_inventory` calls it. Network errors propagate, and Temporal
  retries them: a *platform* failure. "Insufficient inventory" becomes a
  non-retryable :class:`~temporalio.exceptions.ApplicationError`: an
  *application* failure, which :class:`PlaceOrderWorkflow` handles by
  reserving what there is and back-ordering the rest.
- :class:`AccountWorkflow` keeps a bank balance that changes only through
  ``record`` signals carrying :class:`AccountEvent` values. Its History is an
  event log: folding the signals with :func:`apply_event` gives the balance,
  and so does replaying the History.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ApplicationErrorCategory

with workflow.unsafe.imports_passed_through():
    import urllib.error
    import urllib.request
    from http.client import HTTPException

    from temporalio.api.history.v1 import HistoryEvent
    from temporalio.client import WorkflowHistory
    from temporalio.converter import DataConverter

__all__ = [
    "INSUFFICIENT_INVENTORY",
    "AccountEvent",
    "AccountWorkflow",
    "Order",
    "OrderOutcome",
    "PlaceOrderWorkflow",
    "ReserveRequest",
    "Warehouse",
    "apply_event",
    "recorded_signals",
    "reserve_inventory",
]

INSUFFICIENT_INVENTORY = "InsufficientInventory"
"""The ``type`` of the application error raised when the warehouse has too little stock."""


# --- the warehouse service -------------------------------------------------------------------


class Warehouse:
    """An inventory service on ``127.0.0.1`` (a free port), run in a background thread.

    ``POST /reservations`` with ``{"order_id", "item", "quantity"}`` takes the
    items out of stock and answers ``200`` with the reservation, or ``409``
    with ``{"error": "insufficient inventory", "available": n}``. Reserving
    again for the same order returns the first reservation (the endpoint is
    idempotent). Use it as a context manager, or call :meth:`close`.
    """

    def __init__(self, stock: Mapping[str, int], *, drop_first: int = 0) -> None:
        """Start the service with ``stock`` units per item.

        Args:
            stock: units in stock, by item name.
            drop_first: how many connections to cut without answering first.
        """
        self._stock = dict(stock)
        self._reservations: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self.to_drop = drop_first
        """Connections still to cut without an answer; set it to make the network flaky again."""
        self.dropped = 0
        """How many connections were cut so far."""
        self.answered = 0
        """How many requests got an answer so far."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="warehouse", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """Where the service listens, ``http://127.0.0.1:PORT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def stock(self) -> dict[str, int]:
        """Units left, by item."""
        with self._lock:
            return dict(self._stock)

    def close(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _should_drop(self) -> bool:
        with self._lock:
            if self.to_drop > 0:
                self.to_drop -= 1
                self.dropped += 1
                return True
            return False

    def _reserve(self, order_id: str, item: str, quantity: int) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.answered += 1
            if order_id in self._reservations:
                return 200, self._reservations[order_id]
            available = self._stock.get(item, 0)
            if quantity > available:
                return 409, {
                    "error": "insufficient inventory",
                    "item": item,
                    "requested": quantity,
                    "available": available,
                }
            self._stock[item] = available - quantity
            reservation = {"order_id": order_id, "item": item, "quantity": quantity}
            self._reservations[order_id] = reservation
            return 200, reservation


def _handler_for(warehouse: Warehouse) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if warehouse._should_drop():
                self.close_connection = True  # hang up without a word: a network failure
                return
            length = int(self.headers.get("Content-Length", "0"))
            request = json.loads(self.rfile.read(length) or b"{}")
            status, body = warehouse._reserve(
                str(request["order_id"]), str(request["item"]), int(request["quantity"])
            )
            payload = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            """Keep quiet: the lesson reads the History, not the access log."""

    return Handler


# --- platform and application failures -------------------------------------------------------


@dataclass(frozen=True)
class ReserveRequest:
    """Input of :func:`reserve_inventory`."""

    warehouse_url: str
    """Where the warehouse service listens."""

    order_id: str
    """The order the items are for (the warehouse's idempotency key)."""

    item: str
    """What to reserve."""

    quantity: int
    """How many units."""


@activity.defn
def reserve_inventory(request: ReserveRequest) -> int:
    """Reserve items at the warehouse and return how many were reserved.

    Network failures are raised as they are, so Temporal retries them. An
    answer of "insufficient inventory" is a business fact, not a glitch:
    retrying cannot change it, so it is raised as a non-retryable
    ``ApplicationError`` whose details say how many units are available. Its
    category is ``BENIGN``: an expected outcome, so the worker does not log
    it as a warning.
    """
    body = json.dumps(
        {"order_id": request.order_id, "item": request.item, "quantity": request.quantity}
    ).encode()
    http_request = urllib.request.Request(
        f"{request.warehouse_url}/reservations",
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(http_request, timeout=5) as response:
            return int(json.load(response)["quantity"])
    except urllib.error.HTTPError as err:
        if err.code != 409:
            raise
        detail = json.load(err)
        raise ApplicationError(
            f"insufficient inventory: {request.quantity} {request.item} wanted, "
            f"{detail['available']} available",
            detail,
            type=INSUFFICIENT_INVENTORY,
            non_retryable=True,  # asking again will not create stock
            category=ApplicationErrorCategory.BENIGN,  # expected in business: no warning logged
        ) from None
    except (urllib.error.URLError, HTTPException, ConnectionError) as err:
        # Let Temporal retry it; say plainly what failed.
        raise ConnectionError(f"warehouse unreachable: {_reason(err)}") from err


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None)
    return str(reason if reason is not None else err)


@dataclass(frozen=True)
class Order:
    """Input of :class:`PlaceOrderWorkflow`."""

    order_id: str
    """The order's id."""

    item: str
    """What the customer wants."""

    quantity: int
    """How many units."""

    warehouse_url: str
    """Where the warehouse service listens."""

    allow_partial: bool = True
    """Reserve what there is and back-order the rest when stock is short (else reject)."""


@dataclass(frozen=True)
class OrderOutcome:
    """What :class:`PlaceOrderWorkflow` decided."""

    order_id: str
    """The order's id."""

    status: str
    """``"reserved"``, ``"partly reserved"`` or ``"rejected"``."""

    reserved: int
    """Units reserved now."""

    backordered: int
    """Units to ship later, once stock arrives."""

    note: str
    """One sentence for the customer."""


@workflow.defn
class PlaceOrderWorkflow:
    """Workflow: reserve stock; retry network trouble, handle a stock shortage as business."""

    @workflow.run
    async def run(self, order: Order) -> OrderOutcome:
        """Reserve the order; on a shortage, reserve what is left or reject, as the order allows."""
        try:
            reserved = await self._reserve(order, order.quantity)
        except ActivityError as err:
            shortage = err.cause
            if not (
                isinstance(shortage, ApplicationError) and shortage.type == INSUFFICIENT_INVENTORY
            ):
                raise  # not a failure this workflow knows how to handle
            available = int(shortage.details[0]["available"])
            if available == 0 or not order.allow_partial:
                return OrderOutcome(
                    order.order_id,
                    "rejected",
                    0,
                    0,
                    f"Sorry, only {available} {order.item} in stock; nothing was reserved.",
                )
            reserved = await self._reserve(order, available)
            return OrderOutcome(
                order.order_id,
                "partly reserved",
                reserved,
                order.quantity - reserved,
                f"{reserved} {order.item} ship now, {order.quantity - reserved} when stock arrives.",
            )
        return OrderOutcome(
            order.order_id, "reserved", reserved, 0, f"All {reserved} {order.item} ship now."
        )

    async def _reserve(self, order: Order, quantity: int) -> int:
        return await workflow.execute_activity(
            reserve_inventory,
            ReserveRequest(order.warehouse_url, order.order_id, order.item, quantity),
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100),
                maximum_interval=timedelta(seconds=1),
            ),
        )


# --- event sourcing ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AccountEvent:
    """Something that happened to a bank account."""

    kind: str
    """``"Deposited"`` or ``"Withdrew"``."""

    amount: int
    """How much money, a positive number."""


def apply_event(balance: int, event: AccountEvent) -> int:
    """Return the balance after ``event``: the one rule from which every balance is rebuilt.

    Unknown kinds leave the balance as it is, so old code can fold newer logs.
    """
    if event.kind == "Deposited":
        return balance + event.amount
    if event.kind == "Withdrew":
        return balance - event.amount
    return balance


@workflow.defn
class AccountWorkflow:
    """Workflow: a bank account whose balance changes only through recorded events."""

    def __init__(self) -> None:
        self._balance = 0
        self._events = 0
        self._closed = False

    @workflow.run
    async def run(self, account: str) -> int:
        """Stay open until the account is closed; return the final balance."""
        await workflow.wait_condition(lambda: self._closed)
        return self._balance

    @workflow.signal
    def record(self, event: AccountEvent) -> None:
        """Apply one event to the balance."""
        self._balance = apply_event(self._balance, event)
        self._events += 1

    @workflow.signal
    def close(self) -> None:
        """Close the account: the workflow completes."""
        self._closed = True

    @workflow.query
    def balance(self) -> int:
        """The balance after every event recorded so far."""
        return self._balance

    @workflow.query
    def events_applied(self) -> int:
        """How many events the balance was built from."""
        return self._events


def recorded_signals(
    history: WorkflowHistory, name: str = "record"
) -> list[tuple[int, AccountEvent]]:
    """The ``name`` signals in a History, as ``(event id, AccountEvent)`` in order."""
    converter = DataConverter.default.payload_converter
    found = []
    for event in history.events:
        if _is_signal(event, name):
            payloads = event.workflow_execution_signaled_event_attributes.input.payloads
            (value,) = converter.from_payloads(list(payloads), [AccountEvent])
            found.append((event.event_id, value))
    return found


def _is_signal(event: HistoryEvent, name: str) -> bool:
    return (
        event.HasField("workflow_execution_signaled_event_attributes")
        and event.workflow_execution_signaled_event_attributes.signal_name == name
    )
