"""Simulated services for the lessons: trips, breakfast and a bank, with a shared ledger.

The services keep their state in one SQLite file (a :class:`World`), so it
survives worker and kernel restarts. Every effect is written to the ledger;
every mutating call takes an optional idempotency key. The activities in
:mod:`sagakit.course.services.activities` expose them to Temporal with injected faults,
and :func:`check_world` says in plain words what a failed saga left broken.
"""

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
from sagakit.course.services.trip import TRIP_KINDS, Booking, Cancellation, TripKind, TripService
from sagakit.course.services.world import World, WorldSeed

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
