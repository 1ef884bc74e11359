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
        │   └── AlreadyCancelled     a booking arrived after its own cancel (too late)
        └── IdempotencyKeyReused     one key sent with two different requests

The Temporal activities in :mod:`sagakit.services.activities` turn each of these
into a non-retryable ``ApplicationError`` whose ``type`` is the class name.
"""

from __future__ import annotations

from sagakit.errors import SagakitError

__all__ = [
    "BusinessError",
    "IdempotencyKeyReused",
    "InsufficientFunds",
    "NoBowlOut",
    "OutOfStock",
    "ServiceError",
    "SoldOut",
    "AlreadyCancelled",
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


class AlreadyCancelled(BusinessError):
    """A booking arrived after the cancel sent under the same idempotency key.

    A slow attempt can land after the saga gave up on it and ran the undo; booking
    then would leave an effect that nobody will ever cancel.
    """


class IdempotencyKeyReused(ServiceError):
    """An idempotency key came back with a different request than the first time."""
