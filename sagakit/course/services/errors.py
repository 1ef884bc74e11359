"""Errors of the simulated services.

::

    SagakitError
    └── ServiceError                 a simulated service refused a request
        ├── BusinessError            the service said no; nothing changed; a retry won't help
        │   ├── InsufficientFunds    a withdrawal larger than the balance
        │   ├── UnknownAccount       no account of that name
        │   ├── OutOfStock           out of milk, cereal or bowls
        │   ├── NoBowlOut            pouring with no bowl on the counter
        │   ├── SoldOut              no hotel rooms, seats or excursion places left
        │   └── CancelledBeforeBooking   a booking whose cancel already ran under its key
        └── IdempotencyKeyReused     one key sent with two different requests

The Temporal activities in :mod:`sagakit.course.services.activities` turn each of these
into a non-retryable ``ApplicationError`` whose ``type`` is the class name.
"""

from __future__ import annotations

from sagakit import SagakitError

__all__ = [
    "BusinessError",
    "CancelledBeforeBooking",
    "IdempotencyKeyReused",
    "InsufficientFunds",
    "NoBowlOut",
    "OutOfStock",
    "ServiceError",
    "SoldOut",
    "UnknownAccount",
]


class ServiceError(SagakitError):
    """A simulated service refused a request; it changed nothing."""


class BusinessError(ServiceError):
    """The service said no for a business reason; retrying the same request will not help."""


class InsufficientFunds(BusinessError):
    """A withdrawal or transfer is larger than the account's balance."""


class UnknownAccount(BusinessError):
    """No bank account has that name."""


class OutOfStock(BusinessError):
    """The kitchen has run out of something: milk, cereal or clean bowls."""


class NoBowlOut(BusinessError):
    """Cereal or milk was to be poured, but no bowl is out for that breakfast."""


class SoldOut(BusinessError):
    """No hotel rooms, flight seats or excursion places are left."""


class CancelledBeforeBooking(BusinessError):
    """A booking arrived with an idempotency key whose cancel had already run ("cancel wins").

    Typically a late attempt (a zombie): its step timed out, the saga ran the undo, and only
    then did the booking reach the service. Nothing is booked; the refusal is in the ledger.
    """


class IdempotencyKeyReused(ServiceError):
    """An idempotency key came back with a different request than the first time."""
