"""Workflows and data types for tests/test_idempotency.py.

They live apart from the test module because Temporal's sandbox re-imports a
workflow's module, and the test module imports pytest and hypothesis, which
touch the file system on import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from sagakit._idempotency import NON_RETRYABLE_ERROR_TYPES


@dataclass(frozen=True)
class Charge:
    """Input of the charge activity."""

    payment_id: str
    amount_cents: int
    idempotency_key: str = ""


@dataclass(frozen=True)
class Receipt:
    """Result of the charge activity."""

    payment_id: str
    amount_cents: int
    charge_number: int
    lines: list[str] = field(default_factory=list)


RETRY_FAST = RetryPolicy(
    initial_interval=timedelta(milliseconds=100),
    maximum_attempts=5,
    non_retryable_error_types=list(NON_RETRYABLE_ERROR_TYPES),
)


@workflow.defn
class ChargeWorkflow:
    """Charge once; the activity's key is its own identity (key_from_activity)."""

    @workflow.run
    async def run(self, charge: Charge) -> Receipt:
        receipt: Receipt = await workflow.execute_activity(
            "charge_card",
            charge,
            result_type=Receipt,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY_FAST,
        )
        return receipt


@workflow.defn
class ChargeWithWorkflowKey:
    """Charge once; the key is a workflow.uuid4() passed in the activity input."""

    @workflow.run
    async def run(self, charge: Charge) -> Receipt:
        key = str(workflow.uuid4())  # the same value on replay
        receipt: Receipt = await workflow.execute_activity(
            "charge_card",
            Charge(charge.payment_id, charge.amount_cents, idempotency_key=key),
            result_type=Receipt,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RETRY_FAST,
        )
        return receipt


@workflow.defn
class ChargeRetriedThreeTimes:
    """Charge with up to 3 attempts and no non-retryable error types listed."""

    @workflow.run
    async def run(self, charge: Charge) -> Receipt:
        receipt: Receipt = await workflow.execute_activity(
            "charge_card",
            charge,
            result_type=Receipt,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100), maximum_attempts=3
            ),
        )
        return receipt
