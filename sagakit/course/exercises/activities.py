"""Inputs and activities that the exercise workflows call (the learner writes only the workflows).

* :func:`send_coupon` (exercise 04, determinism): e-mails a discount coupon.
* :func:`charge_card` (exercise 07, retry policy): a card gateway that times out
  on its first ``timeouts`` attempts and can decline a card. It decides from
  ``activity.info().attempt`` alone, so it keeps no state and every run is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity
from temporalio.exceptions import ApplicationError

__all__ = [
    "CARD_DECLINED",
    "GATEWAY_TIMEOUT",
    "CardPayment",
    "Coupon",
    "CouponRequest",
    "charge_card",
    "send_coupon",
]

CARD_DECLINED = "CardDeclined"
"""The ``type`` of the error :func:`charge_card` raises for a declined card."""

GATEWAY_TIMEOUT = "GatewayTimeout"
"""The ``type`` of the error :func:`charge_card` raises when the gateway times out."""


@dataclass(frozen=True)
class CouponRequest:
    """Input of the coupon workflow (exercise 04)."""

    customer: str
    """Who gets the coupon."""
    valid_days: int = 7
    """How many days the coupon stays valid."""


@dataclass(frozen=True)
class Coupon:
    """A discount coupon, as the workflow builds it and :func:`send_coupon` sends it."""

    customer: str
    """Who gets it."""
    code: str
    """A unique code, e.g. ``"C-3f2a..."``."""
    percent: int
    """The discount: 5, 10 or 15 (per cent)."""
    expires: str
    """When it stops being valid (ISO 8601)."""


@activity.defn
def send_coupon(coupon: Coupon) -> str:
    """Pretend to e-mail the coupon; return a one-line receipt."""
    return f"sent {coupon.percent}% coupon {coupon.code} to {coupon.customer}"


@dataclass(frozen=True)
class CardPayment:
    """Input of :func:`charge_card` and of the payment workflow (exercise 07)."""

    customer: str
    """Whose card."""
    amount: int
    """How much."""
    timeouts: int = 0
    """How many attempts time out before the gateway answers."""
    declined: bool = False
    """If True, the gateway (once it answers) declines the card."""


@activity.defn
def charge_card(payment: CardPayment) -> str:
    """Charge the card through a flaky gateway.

    Raises:
        ApplicationError: ``GatewayTimeout`` on the first ``payment.timeouts``
            attempts (retryable: the next attempt may get through), then
            ``CardDeclined`` if the card is declined. The gateway marks neither
            as non-retryable; the *caller's* retry policy decides.
    """
    attempt = activity.info().attempt
    if attempt <= payment.timeouts:
        raise ApplicationError(
            f"the card gateway timed out (attempt {attempt})", type=GATEWAY_TIMEOUT
        )
    if payment.declined:
        raise ApplicationError(f"{payment.customer}'s card was declined", type=CARD_DECLINED)
    return f"charged {payment.amount} to {payment.customer} on attempt {attempt}"
