"""The small trip workflows and activities whose histories tests/test_history.py reads.

They live outside the test module: pytest rewrites a test module's asserts and adds an import
of its own assertion machinery to it, and the workflow sandbox, which imports a workflow's
module afresh for every run, would import that machinery again each time.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

TIMEOUT = timedelta(seconds=10)


# --- activities --------------------------------------------------------------------------------

WORK = 0.2  # seconds each step "works", so the bars in a stored timeline are wide enough to see


@activity.defn
async def reserve_car(trip: str) -> str:
    await asyncio.sleep(WORK)
    return f"car for {trip}"


@activity.defn
async def book_hotel(trip: str) -> str:
    await asyncio.sleep(WORK)
    return f"hotel for {trip}"


@activity.defn
async def charge_card(trip: str) -> str:
    await asyncio.sleep(WORK)
    return f"charged {trip}"


@activity.defn(name="charge_card")
async def declined_card(trip: str) -> str:
    await asyncio.sleep(WORK)
    raise ApplicationError(f"card declined on attempt {activity.info().attempt}")


@activity.defn
async def flaky_lookup(trip: str) -> str:
    """Fails on attempts 1 and 2, succeeds on attempt 3 (keyed to the attempt, not a counter)."""
    attempt = activity.info().attempt
    if attempt < 3:
        raise ApplicationError(f"lookup service unavailable (attempt {attempt})")
    return f"found {trip}"


class Gate:
    """An activity that reports it has started and then waits until the test opens the gate."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.opened = asyncio.Event()

    @activity.defn(name="book_flight")
    async def book_flight(self, trip: str) -> str:
        self.started.set()
        async with asyncio.timeout(20):
            await self.opened.wait()
        return f"flight for {trip}"


class Gathering:
    """Activities that wait for each other, so they provably run at the same time."""

    def __init__(self, parties: int) -> None:
        self.barrier = asyncio.Barrier(parties)

    async def _meet(self) -> None:
        async with asyncio.timeout(20):
            await self.barrier.wait()
        await asyncio.sleep(WORK)

    @activity.defn(name="cancel_car")
    async def cancel_car(self, trip: str) -> str:
        await self._meet()
        return f"car for {trip} cancelled"

    @activity.defn(name="cancel_hotel")
    async def cancel_hotel(self, trip: str) -> str:
        await self._meet()
        return f"hotel for {trip} cancelled"

    @activity.defn(name="refund_card")
    async def refund_card(self, trip: str) -> str:
        await self._meet()
        return f"{trip} refunded"


# --- workflows ---------------------------------------------------------------------------------


@workflow.defn
class SequentialTrip:
    @workflow.run
    async def run(self, trip: str) -> list[str]:
        return [
            await workflow.execute_activity(step, trip, start_to_close_timeout=TIMEOUT)
            for step in (reserve_car, book_hotel, charge_card)
        ]


@workflow.defn
class FlakyLookup:
    @workflow.run
    async def run(self, trip: str) -> str:
        return await workflow.execute_activity(
            flaky_lookup,
            trip,
            start_to_close_timeout=TIMEOUT,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(milliseconds=100),
                backoff_coefficient=1.0,
                maximum_attempts=5,
            ),
        )


@workflow.defn
class ParallelUndo:
    @workflow.run
    async def run(self, trip: str) -> list[str]:
        return list(
            await asyncio.gather(
                *(
                    workflow.execute_activity(name, trip, start_to_close_timeout=TIMEOUT)
                    for name in ("cancel_car", "cancel_hotel", "refund_card")
                )
            )
        )


@workflow.defn
class WaitingTrip:
    @workflow.run
    async def run(self, trip: str) -> str:
        booked: str = await workflow.execute_activity(
            "book_flight", trip, result_type=str, start_to_close_timeout=TIMEOUT
        )
        return booked


@workflow.defn
class FailingTrip:
    """A hand-written mini saga: two steps, a payment that fails twice, two undos in parallel."""

    @workflow.run
    async def run(self, trip: str) -> str:
        await workflow.execute_activity(reserve_car, trip, start_to_close_timeout=TIMEOUT)
        await workflow.execute_activity(book_hotel, trip, start_to_close_timeout=TIMEOUT)
        try:
            charged: str = await workflow.execute_activity(
                "charge_card",
                trip,
                result_type=str,
                start_to_close_timeout=TIMEOUT,
                retry_policy=RetryPolicy(
                    initial_interval=timedelta(milliseconds=100), maximum_attempts=2
                ),
            )
        except Exception as err:
            await asyncio.gather(
                workflow.execute_activity("cancel_hotel", trip, start_to_close_timeout=TIMEOUT),
                workflow.execute_activity("cancel_car", trip, start_to_close_timeout=TIMEOUT),
            )
            raise ApplicationError(f"trip {trip} not booked", non_retryable=True) from err
        return charged
