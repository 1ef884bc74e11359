"""Simulated services for the lessons: trips, breakfast and a bank, with a shared ledger.

The services keep their state in one SQLite file (a :class:`World`), so it
survives worker and kernel restarts. Every effect is written to the ledger;
every mutating call takes an optional idempotency key. The activities in
:mod:`sagakit.services.activities` expose them to Temporal with injected faults,
and :func:`check_world` says in plain words what a failed saga left broken.
"""

from sagakit.services.activities import (
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
from sagakit.services.bank import BankService, Receipt, TransferReceipt
from sagakit.services.breakfast import BreakfastService, BreakfastState, KitchenStock
from sagakit.services.errors import (
    BusinessError,
    IdempotencyKeyReused,
    InsufficientFunds,
    NoBowlOut,
    OutOfStock,
    ServiceError,
    SoldOut,
    UnknownAccount,
)
from sagakit.services.invariants import (
    InvariantReport,
    InvariantViolated,
    Violation,
    ViolationKind,
    check_world,
)
from sagakit.services.ledger import Ledger, LedgerEntry
from sagakit.services.order_invariants import OrderReport, check_orders
from sagakit.services.orders import (
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
from sagakit.services.trip import TRIP_KINDS, Booking, Cancellation, TripKind, TripService
from sagakit.services.world import World, WorldSeed

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
