"""Chaos runs of the trip saga: fault schedules, what they should do, and what they did.

A :class:`TripSchedule` says, for one trip, which fault each attempt of each
booking step acts out (``OK``, ``FAIL_BEFORE``, ``FAIL_AFTER``, ``HANG``,
``FAIL_PERMANENT``, ``LATE``) and how many times each undo (``cancel_*``) fails before it
works. :func:`run_schedules` runs many trips at once, each with its own trip id
and schedule, through the canonical :class:`~sagakit.course.lessons.trip.TripSagaWorkflow`
on one worker, then checks the world with :func:`~sagakit.course.services.check_world`::

    report = await run_schedules(client, schedules, tmp_path / "world.db")
    assert report.inconsistent == 0, report

Each trip is judged twice:

* **consistent**: the invariants hold for it (all-or-nothing, nothing booked
  twice, no effect repeated under one idempotency key);
* **as expected**: the workflow ended as the schedule predicts (booked, or
  failed and compensated) and the ledger holds exactly the effects the schedule
  allows (one ``book_*`` per step that had its effect, one ``cancel_*`` per
  booking undone).

A ``LATE`` attempt (a zombie) times out and lands afterwards. If its step ends
without any other effect and the saga undoes it, the ledger depends on which
came first: the late booking (then ``book_*`` and ``cancel_*``) or the undo
(then the service refuses the booking, cancel wins: ``book_*_refused``). Both
are right, so both ledgers are allowed.

A trip that is not as expected is *excused* when an attempt timed out that its
schedule did not make hang: on a busy machine an attempt meant to succeed can
outlast its timeout, the saga retries it, and the trip meets one fault more than
planned. That is read from the attempts the services were really asked to make,
noted by the activities as they run, not from the workflow's History: the
History keeps only a step's last attempt, so a timed-out first attempt followed
by a planned failure leaves no trace there.

The schedules come from :func:`schedule_strategy` (Hypothesis, used by
``tests/test_chaos.py`` and ``tools/chaos.py``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from sagakit import ConfigurationError, Fault, FaultPlan, FaultRule, running_worker
from sagakit._saga import DEFAULT_COMPENSATION_RETRY_POLICY
from sagakit.course.lessons.trip import TripSagaInput, TripSagaWorkflow
from sagakit.course.services.activities import TripActivities
from sagakit.course.services.invariants import Violation, check_world
from sagakit.course.services.trip import REFUSED, TRIP_KINDS
from sagakit.course.services.world import World

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

__all__ = [
    "BOOKING_STEPS",
    "UNDO_FAULTS",
    "UNDO_STEPS",
    "ChaosReport",
    "ChaosSettings",
    "SagaOutcome",
    "TripSchedule",
    "TripVerdict",
    "run_schedules",
    "schedule_strategy",
]

BOOKING_STEPS: tuple[str, ...] = tuple(f"book_{kind}" for kind in TRIP_KINDS)
"""``("book_hotel", "book_flight", "book_excursion")``, in the order the saga runs them."""

UNDO_STEPS: tuple[str, ...] = tuple(f"cancel_{kind}" for kind in TRIP_KINDS)
"""The compensations, in the same order as :data:`BOOKING_STEPS`."""

UNDO_FAULTS: tuple[Fault, ...] = (Fault.FAIL_BEFORE, Fault.FAIL_AFTER)
"""The faults an undo may act out: retryable ones, so a generous retry policy gets it through."""

_MAX_UNDO_FAILURES = (DEFAULT_COMPENSATION_RETRY_POLICY.maximum_attempts or 10) - 1

T = TypeVar("T")


class SagaOutcome(StrEnum):
    """How a trip's workflow ended."""

    BOOKED = "booked"
    """The workflow completed: hotel, flight and excursion are booked."""
    COMPENSATED = "compensated"
    """A step could not succeed; the workflow failed after undoing what was done."""
    COMPENSATION_FAILED = "compensation_failed"
    """An undo failed too: the workflow failed with a ``CompensationError``."""
    ERROR = "error"
    """Something else went wrong (the run itself, not the saga)."""


@dataclass(frozen=True)
class TripSchedule:
    """The faults one trip meets: per attempt of each booking step, and per undo."""

    bookings: tuple[tuple[Fault, ...], ...] = ((), (), ())
    """For ``book_hotel``, ``book_flight``, ``book_excursion``: the faults of attempts 1, 2, ...;
    later attempts are OK."""
    undo_failures: tuple[tuple[Fault, ...], ...] = ((), (), ())
    """For ``cancel_hotel``, ``cancel_flight``, ``cancel_excursion``: the faults of their first
    attempts (``FAIL_BEFORE`` or ``FAIL_AFTER``); later attempts are OK."""
    parallel_compensation: bool = False
    """Undo all steps at once instead of last to first."""

    def __post_init__(self) -> None:
        for name, value in (("bookings", self.bookings), ("undo_failures", self.undo_failures)):
            if len(value) != len(TRIP_KINDS):
                raise ConfigurationError(
                    f"TripSchedule.{name} needs one tuple of faults per step "
                    f"({len(TRIP_KINDS)}), got {len(value)}."
                )
        object.__setattr__(
            self, "bookings", tuple(tuple(Fault(f) for f in faults) for faults in self.bookings)
        )
        undos = tuple(tuple(Fault(f) for f in faults) for faults in self.undo_failures)
        for step, faults in zip(UNDO_STEPS, undos, strict=True):
            if any(f not in UNDO_FAULTS for f in faults):
                raise ConfigurationError(
                    f"{step} may only fail with {', '.join(f.name for f in UNDO_FAULTS)} "
                    "in a schedule: an undo must get through in the end."
                )
            if len(faults) > _MAX_UNDO_FAILURES:
                raise ConfigurationError(
                    f"{step} fails {len(faults)} times, but a compensation is tried at most "
                    f"{_MAX_UNDO_FAILURES + 1} times; use at most {_MAX_UNDO_FAILURES} failures."
                )
        object.__setattr__(self, "undo_failures", undos)

    def rules(self, trip_id: str) -> tuple[FaultRule, ...]:
        """The fault-plan rules of this schedule, for this trip only."""
        return tuple(
            FaultRule(step=step, fault=fault, attempt=attempt, key=trip_id)
            for step, faults in zip(
                BOOKING_STEPS + UNDO_STEPS, self.bookings + self.undo_failures, strict=True
            )
            for attempt, fault in enumerate(faults, start=1)
        )

    def step_results(self, max_attempts: int) -> list[tuple[str, bool, bool]]:
        """What each booking step that runs does: ``(step, succeeded, had_effect)``.

        Steps after the first one that fails do not run, so they are not listed.
        """
        results: list[tuple[str, bool, bool]] = []
        for step, faults in zip(BOOKING_STEPS, self.bookings, strict=True):
            effect = False
            succeeded = False
            for attempt in range(max_attempts):
                fault = faults[attempt] if attempt < len(faults) else Fault.OK
                effect = effect or fault.has_effect
                if fault is Fault.OK:
                    succeeded = True
                    break
                if fault is Fault.FAIL_PERMANENT:
                    break
            results.append((step, succeeded, effect))
            if not succeeded:
                break
        return results

    def expected_outcome(self, max_attempts: int) -> SagaOutcome:
        """Booked if every step gets through within ``max_attempts``; else compensated."""
        results = self.step_results(max_attempts)
        booked = len(results) == len(BOOKING_STEPS) and all(ok for _, ok, _ in results)
        return SagaOutcome.BOOKED if booked else SagaOutcome.COMPENSATED

    def late_attempts(self, step: str, max_attempts: int) -> int:
        """How many attempts of ``step`` that run are ``LATE`` (they land after timing out)."""
        faults = self.bookings[BOOKING_STEPS.index(step)]
        late = 0
        for attempt in range(max_attempts):
            fault = faults[attempt] if attempt < len(faults) else Fault.OK
            late += fault.lands_late
            if fault in (Fault.OK, Fault.FAIL_PERMANENT):
                break
        return late

    def expected_ledger(self, max_attempts: int) -> Counter[str]:
        """How many ledger entries of each operation this trip should leave.

        A step whose only effect is a ``LATE`` attempt's is counted as if the late booking
        landed before the undo; :meth:`expected_ledgers` also has the other order.
        """
        return self.expected_ledgers(max_attempts)[0]

    def expected_ledgers(self, max_attempts: int) -> list[Counter[str]]:
        """Every ledger this trip may rightly leave: one, or two when a zombie races its undo.

        The second, if there is one, is the ledger where the undo ran first and the service
        refused each late booking (``book_*_refused``).
        """
        results = self.step_results(max_attempts)
        booked = self.expected_outcome(max_attempts) is SagaOutcome.BOOKED
        counts: Counter[str] = Counter()
        refused: Counter[str] = Counter()
        for step, _, effect in results:
            late = self.late_attempts(step, max_attempts)
            if effect or late:
                counts[step] += 1
                if not booked:
                    counts[step.replace("book_", "cancel_")] += 1
            if late and not effect and not booked:
                refused = Counter(counts)
                del refused[step], refused[step.replace("book_", "cancel_")]
                refused[f"{step}{REFUSED}"] = late
        return [counts, refused] if refused else [counts]

    def describe(self) -> str:
        """One line for people, e.g. ``book_flight FAIL_AFTER,OK | cancel_hotel fails 2x``."""
        parts = [
            f"{step} {','.join(f.name for f in faults)}"
            for step, faults in zip(BOOKING_STEPS, self.bookings, strict=True)
            if faults
        ]
        parts += [
            f"{step} {','.join(f.name for f in faults)}"
            for step, faults in zip(UNDO_STEPS, self.undo_failures, strict=True)
            if faults
        ]
        if self.parallel_compensation:
            parts.append("parallel undo")
        return " | ".join(parts) or "no faults"


@dataclass(frozen=True)
class ChaosSettings:
    """Timing and saga options of a chaos run; small values keep a run fast."""

    step_timeout_s: float = 2.0
    """Start-to-close timeout of each booking step; a ``HANG`` attempt is abandoned after it.
    Keep it well above how long a busy worker takes to run an attempt: an attempt that times
    out for slowness is retried, so its trip no longer ends as its schedule predicts."""
    hang_s: float = 2.5
    """How long a ``HANG`` attempt waits (longer than ``step_timeout_s``); it never has an effect.
    A ``LATE`` attempt waits as long, then books."""
    max_attempts: int = 3
    """Attempts per booking step before the saga gives up and compensates."""
    retry_interval_s: float = 0.2
    """First wait between attempts of a booking step."""
    idempotency_keys: bool = True
    """Send the trip id as idempotency key. ``False`` shows what the keys protect against."""
    stagger_s: float = 0.02
    """Delay between the starts of two trips, so that they do not all hit the services at once."""
    cancel_wins: bool = True
    """The trip service refuses a late booking whose undo already ran. ``False`` shows what
    that protects against (a ``LATE`` attempt leaves an orphan booking)."""

    def __post_init__(self) -> None:
        if self.hang_s <= self.step_timeout_s:
            raise ConfigurationError(
                f"hang_s ({self.hang_s}) must be longer than step_timeout_s "
                f"({self.step_timeout_s}), or a HANG would not time out."
            )
        if self.max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be 1 or more, got {self.max_attempts}.")


@dataclass(frozen=True)
class TripVerdict:
    """What one trip did, and whether that is right."""

    trip_id: str
    """The trip (and its workflow id's suffix)."""
    schedule: TripSchedule
    """The faults it met."""
    expected: SagaOutcome
    """How the schedule says the workflow should end."""
    outcome: SagaOutcome
    """How it did end."""
    detail: str
    """The workflow's result or error, shortened."""
    violations: tuple[Violation, ...]
    """Broken invariants about this trip (or its idempotency key)."""
    ledger: dict[str, int]
    """The trip's ledger entries, counted by operation."""
    expected_ledger: dict[str, int]
    """The ledger counts the schedule predicts."""
    other_ledgers: tuple[dict[str, int], ...] = ()
    """Other ledger counts the schedule allows (a late booking refused after its undo)."""
    unplanned_timeouts: tuple[str, ...] = ()
    """Attempts that timed out although the schedule did not make them hang (a busy machine),
    as ``"book_hotel#1"``, from the attempts the activities ran; only looked up for trips that
    did not end as predicted."""

    @property
    def consistent(self) -> bool:
        """No invariant is broken for this trip."""
        return not self.violations

    @property
    def as_expected(self) -> bool:
        """The outcome and the ledger are what the schedule predicts."""
        ledgers = (self.expected_ledger, *self.other_ledgers)
        return self.outcome is self.expected and self.ledger in ledgers

    @property
    def excused(self) -> bool:
        """Not as predicted, but an attempt timed out that the schedule did not plan to.

        A slow attempt (a busy machine, a writer waiting for the SQLite lock) counts
        as failed when its step's timeout passes, so the trip meets one fault more
        than its schedule says. It must still be consistent.
        """
        return not self.as_expected and bool(self.unplanned_timeouts)

    def __str__(self) -> str:
        problems = [str(v) for v in self.violations]
        if self.outcome is not self.expected:
            problems.append(f"ended {self.outcome.value}, expected {self.expected.value}")
        if self.ledger not in (self.expected_ledger, *self.other_ledgers):
            problems.append(f"ledger {self.ledger}, expected {self.expected_ledger}")
        if self.unplanned_timeouts:
            problems.append(f"unplanned timeouts {', '.join(self.unplanned_timeouts)}")
        verdict = "; ".join(problems) or "ok"
        return f"{self.trip_id} [{self.schedule.describe()}]: {verdict} ({self.detail})"


@dataclass(frozen=True)
class ChaosReport:
    """The verdicts of one run of :func:`run_schedules`."""

    verdicts: tuple[TripVerdict, ...]
    """One per schedule, in the order given."""
    world_violations: tuple[Violation, ...] = field(default=())
    """Every broken invariant in the world, including any not tied to one trip."""

    @property
    def ran(self) -> int:
        """How many schedules ran."""
        return len(self.verdicts)

    @property
    def inconsistent(self) -> int:
        """How many trips broke an invariant (the world's stray violations count as one)."""
        stray = any(not _is_about_a_trip(v, self.verdicts) for v in self.world_violations)
        return sum(not v.consistent for v in self.verdicts) + int(stray)

    @property
    def unexpected(self) -> int:
        """How many trips ended otherwise than their schedule predicts, with no timeout to blame."""
        return sum(not v.as_expected and not v.excused for v in self.verdicts)

    @property
    def excused(self) -> int:
        """How many trips met an unplanned timeout and so ended otherwise than predicted."""
        return sum(v.excused for v in self.verdicts)

    @property
    def outcomes(self) -> Counter[SagaOutcome]:
        """How many trips ended in each way."""
        return Counter(v.outcome for v in self.verdicts)

    def failures(self) -> list[TripVerdict]:
        """The trips that are inconsistent or unexpected."""
        return [v for v in self.verdicts if not (v.consistent and v.as_expected)]

    def __str__(self) -> str:
        outcomes = ", ".join(f"{n} {o.value}" for o, n in sorted(self.outcomes.items()))
        lines = [
            f"{self.ran} schedules ran ({outcomes}): {self.inconsistent} inconsistent, "
            f"{self.unexpected} not as the schedule predicts"
            + (f" ({self.excused} more after an unplanned timeout)" if self.excused else "")
        ]
        lines += [f"  - {v}" for v in self.failures()]
        lines += [
            f"  - {v}" for v in self.world_violations if not _is_about_a_trip(v, self.verdicts)
        ]
        return "\n".join(lines)


def _is_about_a_trip(violation: Violation, verdicts: Sequence[TripVerdict]) -> bool:
    return any(violation in v.violations for v in verdicts)


async def run_schedules(
    client: Client,
    schedules: Sequence[TripSchedule],
    db_path: str | Path,
    *,
    settings: ChaosSettings | None = None,
    task_queue: str | None = None,
) -> ChaosReport:
    """Run one trip saga per schedule, all at once on one worker, and judge each.

    Args:
        client: A client of the Temporal server.
        schedules: The schedules; trip ``i`` gets the id ``<run>-<i>``.
        db_path: The world file the services use (created if missing; may hold other trips).
        settings: Timeouts and saga options (by default short ones).
        task_queue: The task queue of the worker; by default a new unique one.

    Returns:
        A verdict for every schedule.
    """
    opts = settings or ChaosSettings()
    run = uuid.uuid4().hex[:8]
    queue = task_queue or f"chaos-{run}"
    trips = [(f"chaos-{run}-{i}", schedule) for i, schedule in enumerate(schedules)]
    plan = FaultPlan(rules=tuple(r for trip_id, s in trips for r in s.rules(trip_id)))
    activities = _AttemptLog(
        db_path, plan, hang_for=timedelta(seconds=opts.hang_s), cancel_wins=opts.cancel_wins
    )
    async with running_worker(
        client,
        task_queue=queue,
        workflows=[TripSagaWorkflow],
        activities=activities.all(),
        max_concurrent_activities=max(16, 3 * len(trips)),
    ):
        results = await asyncio.gather(
            *(
                _run_trip(client, queue, trip_id, s, opts, delay=i * opts.stagger_s)
                for i, (trip_id, s) in enumerate(trips)
            )
        )
    world = World(db_path)
    report = check_world(world)
    verdicts = []
    for (trip_id, schedule), (outcome, detail) in zip(trips, results, strict=True):
        mine = tuple(
            v for v in report.violations if v.subject in (f"trip {trip_id}", f"key {trip_id}")
        )
        ledger = Counter(e.operation for e in world.ledger.entries(entity=trip_id))
        expected, *others = schedule.expected_ledgers(opts.max_attempts)
        verdict = TripVerdict(
            trip_id=trip_id,
            schedule=schedule,
            expected=schedule.expected_outcome(opts.max_attempts),
            outcome=outcome,
            detail=detail,
            violations=mine,
            ledger=dict(ledger),
            expected_ledger=dict(expected),
            other_ledgers=tuple(dict(other) for other in others),
        )
        if not verdict.as_expected:
            timeouts = _unplanned_timeouts(activities.attempts(trip_id), schedule)
            verdict = replace(verdict, unplanned_timeouts=timeouts)
        verdicts.append(verdict)
    return ChaosReport(tuple(verdicts), report.violations)


@dataclass(frozen=True)
class _Attempt:
    """One attempt of one step of one trip, as the activity that ran it saw it."""

    trip_id: str
    """The trip (the key the activity acted for)."""
    step: str
    """The activity, e.g. ``"book_hotel"``."""
    number: int
    """Temporal's attempt number, 1 for the first."""
    started: datetime
    """When the server started the attempt (its start-to-close timeout runs from here)."""
    timeout: timedelta | None
    """The attempt's start-to-close timeout."""
    ended: datetime | None = None
    """When the activity returned or raised; ``None`` while it runs."""

    def overran(self, now: datetime) -> bool:
        """Whether it ran (or has been running) for longer than its timeout."""
        if self.timeout is None:
            return False
        return (self.ended or now) - self.started > self.timeout


class _AttemptLog(TripActivities):
    """The trip activities, noting every attempt they run (the History keeps only the last)."""

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        faults: FaultPlan,
        *,
        hang_for: timedelta,
        cancel_wins: bool = True,
    ) -> None:
        super().__init__(db_path, faults, hang_for=hang_for, cancel_wins=cancel_wins)
        self._lock = threading.Lock()
        self._attempts: dict[tuple[str, str, int], _Attempt] = {}

    def attempts(self, trip_id: str) -> list[_Attempt]:
        """The attempts run for ``trip_id`` so far, by step and number."""
        with self._lock:
            mine = [a for a in self._attempts.values() if a.trip_id == trip_id]
        return sorted(mine, key=lambda a: (a.step, a.number))

    def _act(self, key: str, done: str, effect: Callable[[], T]) -> T:
        info = activity.info()
        where = (key, info.activity_type, info.attempt)
        attempt = _Attempt(
            key, info.activity_type, info.attempt, info.started_time, info.start_to_close_timeout
        )
        with self._lock:
            self._attempts[where] = attempt
        try:
            return super()._act(key, done, effect)
        finally:
            with self._lock:
                self._attempts[where] = replace(attempt, ended=datetime.now(UTC))


def _unplanned_timeouts(attempts: Sequence[_Attempt], schedule: TripSchedule) -> tuple[str, ...]:
    """The attempts that timed out although the schedule did not make them hang.

    An attempt timed out if it outlasted its timeout, or if the same step was
    tried again after an attempt whose planned fault ends the step (``OK``,
    ``FAIL_PERMANENT``): only a timeout makes the server retry those.
    """
    planned = dict(
        zip(BOOKING_STEPS + UNDO_STEPS, schedule.bookings + schedule.undo_failures, strict=True)
    )
    tried = {(a.step, a.number) for a in attempts}
    now = datetime.now(UTC)
    found: list[str] = []
    for attempt in attempts:
        faults = planned.get(attempt.step, ())
        fault = faults[attempt.number - 1] if attempt.number <= len(faults) else Fault.OK
        if fault in (Fault.HANG, Fault.LATE):  # planned to time out
            continue
        final = fault in (Fault.OK, Fault.FAIL_PERMANENT)
        retried = (attempt.step, attempt.number + 1) in tried
        if attempt.overran(now) or (final and retried):
            found.append(f"{attempt.step}#{attempt.number}")
    return tuple(found)


async def _run_trip(
    client: Client,
    queue: str,
    trip_id: str,
    schedule: TripSchedule,
    opts: ChaosSettings,
    *,
    delay: float,
) -> tuple[SagaOutcome, str]:
    await asyncio.sleep(delay)
    trip = replace(
        TripSagaInput(trip_id),
        parallel_compensation=schedule.parallel_compensation,
        idempotency_keys=opts.idempotency_keys,
        step_timeout_s=opts.step_timeout_s,
        max_attempts=opts.max_attempts,
        retry_interval_s=opts.retry_interval_s,
    )
    try:
        result = await client.execute_workflow(
            TripSagaWorkflow.run,
            trip,
            id=trip_id,
            task_queue=queue,
            execution_timeout=timedelta(minutes=5),
        )
    except WorkflowFailureError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError) and cause.type == "CompensationError":
            return SagaOutcome.COMPENSATION_FAILED, _short(cause)
        return SagaOutcome.COMPENSATED, _short(cause)
    except Exception as err:  # the run itself broke: report it as a verdict
        return SagaOutcome.ERROR, _short(err)
    return SagaOutcome.BOOKED, result


def _short(err: BaseException | None) -> str:
    parts: list[str] = []
    current: BaseException | None = err
    while current is not None and len(parts) < 3:
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__
    return " <- ".join(parts)[:300]


def schedule_strategy(
    *,
    max_step_faults: int = 3,
    max_undo_failures: int = 2,
    late: bool = True,
) -> SearchStrategy[TripSchedule]:
    """A Hypothesis strategy of trip schedules (needs the ``hypothesis`` package).

    Args:
        max_step_faults: Longest list of faults for one booking step.
        max_undo_failures: Most failures of one undo before it works.
        late: Whether booking attempts may be ``LATE`` (zombies that land after their
            timeout, maybe after their undo).

    Returns:
        The strategy.

    Raises:
        ConfigurationError: Hypothesis is not installed, or a bound is out of range.
    """
    try:
        from hypothesis import strategies as st
    except ImportError as err:  # pragma: no cover - the test extra installs it
        raise ConfigurationError(
            "Chaos schedules are generated with Hypothesis: run `python -m pip install "
            "hypothesis` (or `make setup`, which installs the test tools)."
        ) from err
    if not 0 <= max_undo_failures <= _MAX_UNDO_FAILURES:
        raise ConfigurationError(
            f"max_undo_failures must be 0 to {_MAX_UNDO_FAILURES}, got {max_undo_failures}."
        )
    faults = [f for f in Fault if late or not f.lands_late]
    step = st.lists(st.sampled_from(faults), max_size=max_step_faults).map(tuple)
    undo = st.lists(st.sampled_from(list(UNDO_FAULTS)), max_size=max_undo_failures).map(tuple)
    three_steps: Any = st.tuples(step, step, step)
    three_undos: Any = st.tuples(undo, undo, undo)
    return st.builds(
        TripSchedule,
        bookings=three_steps,
        undo_failures=three_undos,
        parallel_compensation=st.booleans(),
    )
