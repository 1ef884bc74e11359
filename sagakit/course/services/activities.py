"""Temporal activities that call the simulated services, with faults injected on purpose.

Each class wraps one service. Its methods are ``@activity.defn`` activities,
named after the step (``book_hotel``, ``add_milk``, ``withdraw``, ...). Before
the work, an activity asks its :class:`~sagakit.FaultPlan` what to act
out on this attempt (``activity.info().attempt``):

==================  ===================================================================
fault               what the activity does
==================  ===================================================================
``OK``              the work, then a normal reply
``FAIL_BEFORE``     a retryable ``ApplicationError``; nothing happened
``FAIL_AFTER``      the work, then a retryable ``ApplicationError`` (the reply was lost)
``HANG``            waits ``hang_for`` (longer than the timeout), heartbeating, then fails;
                    nothing happens (a heartbeat tells it early that it timed out)
``FAIL_PERMANENT``  a non-retryable ``ApplicationError``; nothing happened
``LATE``            a zombie: waits ``hang_for`` without heartbeating, then does the work
                    anyway, after Temporal timed the attempt out
==================  ===================================================================

A service that refuses (out of milk, insufficient funds, ...) becomes a
non-retryable ``ApplicationError`` whose ``type`` is the error's class name,
e.g. ``"OutOfStock"``. The trip service refuses a late booking whose cancel
already ran under the same key (``"CancelledBeforeBooking"``, see
:mod:`sagakit.course.services.trip`); ``TripActivities(..., cancel_wins=False)``
uses a service that books it anyway. The activities are plain ``def`` functions (SQLite is
blocking), so the worker runs them on a thread pool, as
:func:`sagakit.running_worker` does. Register them with ``.all()``::

    trips = TripActivities("world.db", FaultPlan.of({"book_hotel": [Fault.FAIL_AFTER]}))
    async with running_worker(client, task_queue=q, workflows=[...], activities=trips.all()):
        ...
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from sagakit import FaultPlan, SagakitError, act_out_fault
from sagakit._faults import DEFAULT_HANG
from sagakit.course.services.bank import Receipt, TransferReceipt
from sagakit.course.services.breakfast import BreakfastState
from sagakit.course.services.trip import Booking, Cancellation, TripService
from sagakit.course.services.world import World

__all__ = [
    "ALL_STEPS",
    "BankActivities",
    "BreakfastActivities",
    "BreakfastRequest",
    "PaymentRequest",
    "TransferRequest",
    "TripActivities",
    "TripRequest",
    "all_service_activities",
]

T = TypeVar("T")


@dataclass(frozen=True)
class TripRequest:
    """Input of every trip activity."""

    trip_id: str
    """Which trip."""
    customer: str = ""
    """Who travels (shown in the booking)."""
    idempotency_key: str | None = None
    """Sent to the service so that a repeat has no second effect; ``None`` sends none."""


@dataclass(frozen=True)
class BreakfastRequest:
    """Input of every breakfast activity."""

    breakfast_id: str
    """Which breakfast."""
    idempotency_key: str | None = None
    """Sent to the service so that a repeat has no second effect; ``None`` sends none."""
    cereal_g: int = 60
    """Grams of cereal that ``add_cereal`` pours."""
    milk_ml: int = 200
    """Millilitres of milk that ``add_milk`` pours."""


@dataclass(frozen=True)
class PaymentRequest:
    """Input of ``withdraw`` and ``deposit``."""

    account: str
    """The account."""
    amount: int
    """How much (a whole number above 0)."""
    reference: str = ""
    """What the payment is for; lets the invariant checker spot a double charge."""
    idempotency_key: str | None = None
    """Sent to the bank so that a repeat has no second effect; ``None`` sends none."""


@dataclass(frozen=True)
class TransferRequest:
    """Input of ``transfer``."""

    source: str
    """The account the money leaves."""
    target: str
    """The account the money reaches."""
    amount: int
    """How much (a whole number above 0)."""
    reference: str = ""
    """What the payment is for."""
    idempotency_key: str | None = None
    """Sent to the bank so that a repeat has no second effect; ``None`` sends none."""


class _ServiceActivities:
    """What the activity classes share: the world, the fault plan and the fault handling."""

    STEPS: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        faults: FaultPlan | None = None,
        *,
        hang_for: timedelta = DEFAULT_HANG,
    ) -> None:
        """Prepare activities on the world in ``db_path``.

        Args:
            db_path: The world's SQLite file (created and stocked if new).
            faults: What to act out on which attempt; by default nothing.
            hang_for: How long a ``HANG`` attempt waits before it gives up
                without any effect (and a ``LATE`` one before it does the work
                anyway); make it longer than the activity's ``start_to_close_timeout``.

        Raises:
            UnknownStepError: ``faults`` names a step that no service activity has.
        """
        self.world = World(db_path)
        self.faults = (faults or FaultPlan()).validate(ALL_STEPS)
        self.hang_for = hang_for

    def all(self) -> list[Callable[..., Any]]:
        """Return every activity of this object, ready for ``Worker(activities=...)``."""
        return [getattr(self, step) for step in self.STEPS]

    def _act(self, key: str, done: str, effect: Callable[[], T]) -> T:
        def refusals_are_final() -> T:
            # A service's refusal (sold out, no funds) will not change on retry.
            try:
                return effect()
            except SagakitError as err:
                raise ApplicationError(
                    str(err), type=type(err).__name__, non_retryable=True
                ) from err

        return act_out_fault(
            self.faults, refusals_are_final, key=key, done=done, hang_for=self.hang_for
        )


class TripActivities(_ServiceActivities):
    """Trip-booking activities; see the module docstring for the faults."""

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        faults: FaultPlan | None = None,
        *,
        hang_for: timedelta = DEFAULT_HANG,
        cancel_wins: bool = True,
    ) -> None:
        """Prepare trip activities on the world in ``db_path``.

        Args:
            db_path: The world's SQLite file (created and stocked if new).
            faults: What to act out on which attempt; by default nothing.
            hang_for: How long a ``HANG`` or ``LATE`` attempt waits; make it longer
                than the activity's ``start_to_close_timeout``.
            cancel_wins: Whether the trip service refuses a booking whose cancel already
                ran under the same idempotency key; ``False`` lets a zombie book.

        Raises:
            UnknownStepError: ``faults`` names a step that no service activity has.
        """
        super().__init__(db_path, faults, hang_for=hang_for)
        self.trips = TripService(self.world.path, cancel_wins=cancel_wins)

    STEPS: ClassVar[tuple[str, ...]] = (
        "book_hotel",
        "book_flight",
        "book_excursion",
        "cancel_hotel",
        "cancel_flight",
        "cancel_excursion",
    )

    @activity.defn
    def book_hotel(self, request: TripRequest) -> Booking:
        """Book a hotel room for the trip (no key: every attempt that gets through books)."""
        trips = self.trips
        return self._act(
            request.trip_id,
            "the hotel was booked",
            lambda: trips.book_hotel(
                request.trip_id, request.customer, idempotency_key=request.idempotency_key
            ),
        )

    @activity.defn
    def book_flight(self, request: TripRequest) -> Booking:
        """Book a flight seat for the trip."""
        trips = self.trips
        return self._act(
            request.trip_id,
            "the flight was booked",
            lambda: trips.book_flight(
                request.trip_id, request.customer, idempotency_key=request.idempotency_key
            ),
        )

    @activity.defn
    def book_excursion(self, request: TripRequest) -> Booking:
        """Book an excursion place for the trip."""
        trips = self.trips
        return self._act(
            request.trip_id,
            "the excursion was booked",
            lambda: trips.book_excursion(
                request.trip_id, request.customer, idempotency_key=request.idempotency_key
            ),
        )

    @activity.defn
    def cancel_hotel(self, request: TripRequest) -> Cancellation:
        """Cancel the trip's hotel bookings, if it has any."""
        trips = self.trips
        return self._act(
            request.trip_id,
            "the hotel was cancelled",
            lambda: trips.cancel_hotel(request.trip_id, idempotency_key=request.idempotency_key),
        )

    @activity.defn
    def cancel_flight(self, request: TripRequest) -> Cancellation:
        """Cancel the trip's flight bookings, if it has any."""
        trips = self.trips
        return self._act(
            request.trip_id,
            "the flight was cancelled",
            lambda: trips.cancel_flight(request.trip_id, idempotency_key=request.idempotency_key),
        )

    @activity.defn
    def cancel_excursion(self, request: TripRequest) -> Cancellation:
        """Cancel the trip's excursion bookings, if it has any."""
        trips = self.trips
        return self._act(
            request.trip_id,
            "the excursion was cancelled",
            lambda: trips.cancel_excursion(
                request.trip_id, idempotency_key=request.idempotency_key
            ),
        )


class BreakfastActivities(_ServiceActivities):
    """Breakfast activities; see the module docstring for the faults."""

    STEPS: ClassVar[tuple[str, ...]] = (
        "get_bowl",
        "put_bowl_away_if_present",
        "add_cereal",
        "put_cereal_back_if_present",
        "add_milk",
    )

    @activity.defn
    def get_bowl(self, request: BreakfastRequest) -> BreakfastState:
        """Take a bowl out of the cupboard."""
        kitchen = self.world.breakfast
        return self._act(
            request.breakfast_id,
            "the bowl is out on the counter",
            lambda: kitchen.get_bowl(request.breakfast_id, idempotency_key=request.idempotency_key),
        )

    @activity.defn
    def put_bowl_away_if_present(self, request: BreakfastRequest) -> BreakfastState:
        """Put the breakfast's bowl back, if one is out."""
        kitchen = self.world.breakfast
        return self._act(
            request.breakfast_id,
            "the bowl was put away",
            lambda: kitchen.put_bowl_away_if_present(
                request.breakfast_id, idempotency_key=request.idempotency_key
            ),
        )

    @activity.defn
    def add_cereal(self, request: BreakfastRequest) -> BreakfastState:
        """Pour cereal into the bowl."""
        kitchen = self.world.breakfast
        return self._act(
            request.breakfast_id,
            "the cereal was poured",
            lambda: kitchen.add_cereal(
                request.breakfast_id, request.cereal_g, idempotency_key=request.idempotency_key
            ),
        )

    @activity.defn
    def put_cereal_back_if_present(self, request: BreakfastRequest) -> BreakfastState:
        """Put the cereal back in the box, if any is in the bowl."""
        kitchen = self.world.breakfast
        return self._act(
            request.breakfast_id,
            "the cereal went back in the box",
            lambda: kitchen.put_cereal_back_if_present(
                request.breakfast_id, idempotency_key=request.idempotency_key
            ),
        )

    @activity.defn
    def add_milk(self, request: BreakfastRequest) -> BreakfastState:
        """Pour milk into the bowl (fails with ``OutOfStock`` when the fridge runs dry)."""
        kitchen = self.world.breakfast
        return self._act(
            request.breakfast_id,
            "the milk was poured",
            lambda: kitchen.add_milk(
                request.breakfast_id, request.milk_ml, idempotency_key=request.idempotency_key
            ),
        )


class BankActivities(_ServiceActivities):
    """Bank activities; see the module docstring for the faults."""

    STEPS: ClassVar[tuple[str, ...]] = ("withdraw", "deposit", "transfer")

    @activity.defn
    def withdraw(self, request: PaymentRequest) -> Receipt:
        """Take money from an account (fails with ``InsufficientFunds`` if it has too little)."""
        bank = self.world.bank
        return self._act(
            request.account,
            f"{request.amount} was taken from {request.account}",
            lambda: bank.withdraw(
                request.account,
                request.amount,
                reference=request.reference,
                idempotency_key=request.idempotency_key,
            ),
        )

    @activity.defn
    def deposit(self, request: PaymentRequest) -> Receipt:
        """Add money to an account."""
        bank = self.world.bank
        return self._act(
            request.account,
            f"{request.amount} was added to {request.account}",
            lambda: bank.deposit(
                request.account,
                request.amount,
                reference=request.reference,
                idempotency_key=request.idempotency_key,
            ),
        )

    @activity.defn
    def transfer(self, request: TransferRequest) -> TransferReceipt:
        """Move money between two accounts in one local transaction."""
        bank = self.world.bank
        return self._act(
            request.source,
            f"{request.amount} moved from {request.source} to {request.target}",
            lambda: bank.transfer(
                request.source,
                request.target,
                request.amount,
                reference=request.reference,
                idempotency_key=request.idempotency_key,
            ),
        )


ALL_STEPS: tuple[str, ...] = TripActivities.STEPS + BreakfastActivities.STEPS + BankActivities.STEPS
"""Every step (activity) name of the simulated services; fault plans are checked against it."""


def all_service_activities(
    db_path: str | os.PathLike[str],
    faults: FaultPlan | None = None,
    *,
    hang_for: timedelta = DEFAULT_HANG,
) -> list[Callable[..., Any]]:
    """Return the activities of every service (trips, breakfast, bank) on one world.

    Args:
        db_path: The world's SQLite file.
        faults: One plan shared by all of them (step names tell them apart).
        hang_for: How long a ``HANG`` attempt waits.

    Returns:
        Callables for ``Worker(activities=...)`` or :func:`sagakit.running_worker`.
    """
    return [
        *TripActivities(db_path, faults, hang_for=hang_for).all(),
        *BreakfastActivities(db_path, faults, hang_for=hang_for).all(),
        *BankActivities(db_path, faults, hang_for=hang_for).all(),
    ]
