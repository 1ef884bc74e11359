"""The trip saga: book a hotel, a flight and an excursion, or none of them.

This is the workflow that lesson 09 runs, the chaos tests attack and the
benchmarks time. Each step registers its undo *before* it runs (a step can fail
after its effect), retries transient failures (forward recovery) and, when a
step cannot succeed, undoes what was done (backward recovery).

The idempotency key names one saga *run* (see :func:`run_key`): the trip service
lets a cancel win over a late booking with the same key, so a run that books
again (after a reset) needs keys of its own. The booking steps have a heartbeat
timeout, so an attempt that heartbeats while it waits learns that it timed out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from sagakit import Fault, Saga

# Helpers, not workflow code: the sandbox takes them from the worker's own imports instead of
# importing them afresh for every workflow run.
with workflow.unsafe.imports_passed_through():
    from sagakit.course.services.activities import TripActivities, TripRequest

__all__ = [
    "FAULT_TOUR",
    "TRIP_STEPS",
    "TripSagaInput",
    "TripSagaWorkflow",
    "check_safe_without_keys",
    "check_undo_order",
    "run_key",
]

TRIP_STEPS: tuple[str, ...] = ("book_hotel", "book_flight", "book_excursion")
"""The saga's forward steps (activity names), in the order it runs them."""


def run_key(trip_id: str) -> str:
    """Return the idempotency key of this saga run of ``trip_id`` (call it in a workflow).

    The first run of a workflow id sends the plain trip id. Any later run of it (a
    reset, a retry) is a new saga run and sends ``"<trip id>@<run id>"``: its bookings
    are new requests, and the undos of the earlier run do not refuse them.
    """
    info = workflow.info()
    if info.run_id == info.first_execution_run_id:
        return trip_id
    return f"{trip_id}@{info.run_id}"


@dataclass(frozen=True)
class TripSagaInput:
    """What to book, and how the saga behaves."""

    trip_id: str
    """Which trip; also the idempotency key sent to the services (see :func:`run_key`)."""
    customer: str = "ada"
    """Who travels."""
    parallel_compensation: bool = False
    """Undo all steps at once instead of last-to-first."""
    idempotency_keys: bool = True
    """Send an idempotency key (:func:`run_key`), so a retried step never books twice and a
    late booking whose undo already ran is refused."""
    step_timeout_s: float = 2.0
    """Start-to-close (and heartbeat) timeout of each step, in seconds; a hung call is
    abandoned after it."""
    max_attempts: int = 4
    """Attempts per step (forward recovery) before the saga gives up and compensates."""
    retry_interval_s: float = 0.2
    """First wait between attempts, in seconds (doubling, at most 1 s)."""
    undo_attempts: int = 0
    """Attempts per undo before the saga waits for an operator; 0 keeps sagakit's default policy."""


@workflow.defn
class TripSagaWorkflow:
    """Book hotel, flight and excursion; on failure cancel whatever was booked."""

    @workflow.run
    async def run(self, trip: TripSagaInput) -> str:
        """Run the three steps inside a :class:`~sagakit.Saga` and report the result."""
        request = TripRequest(
            trip_id=trip.trip_id,
            customer=trip.customer,
            idempotency_key=run_key(trip.trip_id) if trip.idempotency_keys else None,
        )
        retry = RetryPolicy(
            initial_interval=timedelta(seconds=trip.retry_interval_s),
            backoff_coefficient=2.0,
            maximum_interval=timedelta(seconds=1),
            maximum_attempts=trip.max_attempts,
        )
        steps = (
            (TripActivities.cancel_hotel, TripActivities.book_hotel),
            (TripActivities.cancel_flight, TripActivities.book_flight),
            (TripActivities.cancel_excursion, TripActivities.book_excursion),
        )
        undo_options = {}
        if trip.undo_attempts:
            undo_options["retry_policy"] = RetryPolicy(
                initial_interval=timedelta(seconds=trip.retry_interval_s),
                maximum_interval=timedelta(seconds=1),
                maximum_attempts=trip.undo_attempts,
            )
        async with Saga(parallel=trip.parallel_compensation) as saga:
            for undo, step in steps:
                saga.add(undo, request, **undo_options)  # before the step: it may fail after it
                await workflow.execute_activity_method(
                    step,
                    request,
                    start_to_close_timeout=timedelta(seconds=trip.step_timeout_s),
                    # An attempt that heartbeats hears of its timeout at its next heartbeat.
                    heartbeat_timeout=timedelta(seconds=trip.step_timeout_s),
                    retry_policy=retry,
                )
        return f"trip {trip.trip_id} booked for {trip.customer}"


# Lesson 09's and 09a's exercise checks. They take the real run as a callable, so that an
# unanswered exercise ("○ Not done yet") costs no run, and the tests can pass a fake one.

FAULT_TOUR: dict[Fault, str] = {
    Fault.FAIL_BEFORE: "the failed attempt did nothing, so the retry books the only seat",
    Fault.FAIL_AFTER: "the failed attempt booked a seat, and the retry, with no key, books another",
    Fault.HANG: "the hung attempt did nothing here, so the retry books the only seat (a real "
    "timeout is not so kind: the call may still land, like FAIL_AFTER)",
    Fault.FAIL_PERMANENT: "nothing was booked, and nothing was retried; the hotel was cancelled",
}
"""The four faults of lesson 09a's tour, and what each does to ``book_flight`` without keys."""


async def check_undo_order(
    answer: Sequence[str] | None, observed_undos: Callable[[], Awaitable[Sequence[str]]]
) -> list[str]:
    """Lesson 09's exercise: which undos run, in which order, when ``book_flight`` is refused?

    Args:
        answer: the learner's list of activity names (``None`` while not answered).
        observed_undos: runs the saga with ``book_flight`` refused and returns the
            compensations it ran, in order; not called while ``answer`` is ``None``
            or not a list of names.

    Returns:
        Lines to print: one ``○ Not done yet:`` line, ``✗`` lines saying what is
        wrong, or one ``✓`` line.
    """
    if answer is None:
        return [
            "○ Not done yet: set undo_order to the undos that run, in order, as a list of "
            "activity names such as ['cancel_hotel'], and run this cell again."
        ]
    if isinstance(answer, str) or not all(isinstance(name, str) for name in answer):
        return [
            f"✗ undo_order should be a list of activity names, like ['cancel_hotel']; got {answer!r}."
        ]
    said = list(answer)
    undos = [f"cancel_{step.removeprefix('book_')}" for step in TRIP_STEPS]
    unknown = [name for name in said if name not in undos]
    if unknown:
        return [
            f"✗ {', '.join(unknown)}: not an undo of the trip saga; its undos are {', '.join(undos)}."
        ]
    ran = list(await observed_undos())
    if said == ran:
        return [
            f"✓ {' → '.join(ran)}: the flight's undo was registered before its step, so it runs "
            "(with nothing to cancel), then the hotel's; the excursion was never reached."
        ]
    lines = [f"✗ you said {' → '.join(said) or 'nothing'}; the saga ran {' → '.join(ran)}."]
    if "cancel_excursion" in said:
        lines.append(
            "✗ the saga never reached book_excursion, so it never registered cancel_excursion."
        )
    if "cancel_flight" not in said:
        lines.append(
            "✗ cancel_flight is registered *before* book_flight runs, so it runs even though the "
            "flight was refused (it finds nothing to cancel)."
        )
    if sorted(said) == sorted(ran):
        lines.append("✗ right undos, wrong order: compensations run newest first.")
    return lines


async def check_safe_without_keys(
    answer: set[Fault] | frozenset[Fault] | None,
    consistent_without_keys: Callable[[Fault], Awaitable[bool]],
) -> list[str]:
    """Lesson 09a's exercise: which faults on ``book_flight``'s first attempt are safe without keys?

    Args:
        answer: the learner's set of :class:`~sagakit.Fault` members (``None`` while
            not answered).
        consistent_without_keys: runs the saga without keys with that fault on
            ``book_flight``'s first attempt and says whether the world is consistent
            afterwards; called for the four faults of :data:`FAULT_TOUR` at once, and not
            at all while ``answer`` is ``None`` or not a set of faults.

    Returns:
        Lines to print: one ``○ Not done yet:`` line; or a ``✓``/``✗`` line per fault
        and a last line that is ``✓`` when every answer was right and ``✗`` otherwise.
    """
    if answer is None:
        return [
            "○ Not done yet: put the faults that leave the world consistent without keys in "
            "safe_without_keys, a set such as {Fault.FAIL_BEFORE}, and run this cell again."
        ]
    if not isinstance(answer, set | frozenset) or not all(isinstance(f, Fault) for f in answer):
        return [
            f"✗ safe_without_keys should be a set of Fault members, like {{Fault.HANG}}; got {answer!r}."
        ]
    strays = sorted(f.name for f in answer if f not in FAULT_TOUR)
    if strays:
        tour = ", ".join(f.name for f in FAULT_TOUR)
        return [f"✗ {', '.join(strays)}: not one of the four faults of the tour ({tour})."]
    faults = list(FAULT_TOUR)
    results = await asyncio.gather(*(consistent_without_keys(fault) for fault in faults))
    lines: list[str] = []
    mistakes = 0
    for fault, consistent in zip(faults, results, strict=True):
        right = (fault in answer) == consistent
        mistakes += not right
        verdict = "consistent" if consistent else "NOT consistent"
        said = "" if right else f"(you said {'safe' if fault in answer else 'not safe'}) "
        lines.append(
            f"{'✓' if right else '✗'} {fault.name:<15} {verdict:<15} {said}{FAULT_TOUR[fault]}"
        )
    if mistakes:
        lines.append(
            f"✗ {mistakes} answer(s) to rethink: a fault is safe without keys exactly when its "
            "failed attempt has no effect."
        )
    else:
        lines.append(
            "✓ All right: without keys, only the fault whose failed attempt had an effect breaks the world."
        )
    return lines
