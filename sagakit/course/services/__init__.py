"""Simulated services for the lessons: trips, breakfast and a bank, with a shared ledger.

The services keep their state in one SQLite file (a :class:`World`), so it
survives worker and kernel restarts. Every effect is written to the ledger;
every mutating call takes an optional idempotency key. The activities in
:mod:`sagakit.course.services.activities` expose them to Temporal with injected faults,
and :func:`check_world` says in plain words what a failed saga left broken.

The names load lazily, on first use: a program that needs only the :class:`World` (the
tests' child processes, a learner's script) does not import Temporal's SDK with the
activities. Lesson modules import these names inside ``imports_passed_through``, so the
workflow sandbox hands over the host's modules either way.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from sagakit.course.services.activities import (
        ALL_STEPS,
        BankActivities,
        BreakfastActivities,
        BreakfastRequest,
        PaymentRequest,
        TransferRequest,
        TripActivities,
        TripRequest,
        all_service_activities,
    )
    from sagakit.course.services.bank import BankService, Receipt, TransferReceipt
    from sagakit.course.services.breakfast import BreakfastService, BreakfastState, KitchenStock
    from sagakit.course.services.errors import (
        BusinessError,
        IdempotencyKeyReused,
        InsufficientFunds,
        NoBowlOut,
        OutOfStock,
        ServiceError,
        SoldOut,
        UnknownAccount,
    )
    from sagakit.course.services.invariants import (
        InvariantReport,
        InvariantViolated,
        Violation,
        ViolationKind,
        check_world,
    )
    from sagakit.course.services.ledger import Ledger, LedgerEntry
    from sagakit.course.services.order_invariants import OrderReport, check_orders
    from sagakit.course.services.orders import (
        ORDER_STEPS,
        SHOP_ACCOUNT,
        InventoryService,
        OrderActivities,
        OrderPayments,
        OrderRequest,
        PaymentResult,
        Reservation,
        Shipment,
        ShippingService,
        Shop,
        ShopSeed,
    )
    from sagakit.course.services.trip import (
        TRIP_KINDS,
        Booking,
        Cancellation,
        TripKind,
        TripService,
    )
    from sagakit.course.services.world import World, WorldSeed

_EXPORTS: dict[str, str] = {
    "ALL_STEPS": "sagakit.course.services.activities",
    "ORDER_STEPS": "sagakit.course.services.orders",
    "SHOP_ACCOUNT": "sagakit.course.services.orders",
    "TRIP_KINDS": "sagakit.course.services.trip",
    "BankActivities": "sagakit.course.services.activities",
    "BankService": "sagakit.course.services.bank",
    "Booking": "sagakit.course.services.trip",
    "BreakfastActivities": "sagakit.course.services.activities",
    "BreakfastRequest": "sagakit.course.services.activities",
    "BreakfastService": "sagakit.course.services.breakfast",
    "BreakfastState": "sagakit.course.services.breakfast",
    "BusinessError": "sagakit.course.services.errors",
    "Cancellation": "sagakit.course.services.trip",
    "IdempotencyKeyReused": "sagakit.course.services.errors",
    "InsufficientFunds": "sagakit.course.services.errors",
    "InvariantReport": "sagakit.course.services.invariants",
    "InvariantViolated": "sagakit.course.services.invariants",
    "InventoryService": "sagakit.course.services.orders",
    "KitchenStock": "sagakit.course.services.breakfast",
    "Ledger": "sagakit.course.services.ledger",
    "LedgerEntry": "sagakit.course.services.ledger",
    "NoBowlOut": "sagakit.course.services.errors",
    "OrderActivities": "sagakit.course.services.orders",
    "OrderPayments": "sagakit.course.services.orders",
    "OrderReport": "sagakit.course.services.order_invariants",
    "OrderRequest": "sagakit.course.services.orders",
    "OutOfStock": "sagakit.course.services.errors",
    "PaymentRequest": "sagakit.course.services.activities",
    "PaymentResult": "sagakit.course.services.orders",
    "Receipt": "sagakit.course.services.bank",
    "Reservation": "sagakit.course.services.orders",
    "ServiceError": "sagakit.course.services.errors",
    "Shipment": "sagakit.course.services.orders",
    "ShippingService": "sagakit.course.services.orders",
    "Shop": "sagakit.course.services.orders",
    "ShopSeed": "sagakit.course.services.orders",
    "SoldOut": "sagakit.course.services.errors",
    "TransferReceipt": "sagakit.course.services.bank",
    "TransferRequest": "sagakit.course.services.activities",
    "TripActivities": "sagakit.course.services.activities",
    "TripKind": "sagakit.course.services.trip",
    "TripRequest": "sagakit.course.services.activities",
    "TripService": "sagakit.course.services.trip",
    "UnknownAccount": "sagakit.course.services.errors",
    "Violation": "sagakit.course.services.invariants",
    "ViolationKind": "sagakit.course.services.invariants",
    "World": "sagakit.course.services.world",
    "WorldSeed": "sagakit.course.services.world",
    "all_service_activities": "sagakit.course.services.activities",
    "check_orders": "sagakit.course.services.order_invariants",
    "check_world": "sagakit.course.services.invariants",
}
"""Which module defines each public name."""

__all__ = [
    "ALL_STEPS",
    "ORDER_STEPS",
    "SHOP_ACCOUNT",
    "TRIP_KINDS",
    "BankActivities",
    "BankService",
    "Booking",
    "BreakfastActivities",
    "BreakfastRequest",
    "BreakfastService",
    "BreakfastState",
    "BusinessError",
    "Cancellation",
    "IdempotencyKeyReused",
    "InsufficientFunds",
    "InvariantReport",
    "InvariantViolated",
    "InventoryService",
    "KitchenStock",
    "Ledger",
    "LedgerEntry",
    "NoBowlOut",
    "OrderActivities",
    "OrderPayments",
    "OrderReport",
    "OrderRequest",
    "OutOfStock",
    "PaymentRequest",
    "PaymentResult",
    "Receipt",
    "Reservation",
    "ServiceError",
    "Shipment",
    "ShippingService",
    "Shop",
    "ShopSeed",
    "SoldOut",
    "TransferReceipt",
    "TransferRequest",
    "TripActivities",
    "TripKind",
    "TripRequest",
    "TripService",
    "UnknownAccount",
    "Violation",
    "ViolationKind",
    "World",
    "WorldSeed",
    "all_service_activities",
    "check_orders",
    "check_world",
]


def __getattr__(name: str) -> _typing.Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(_importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
