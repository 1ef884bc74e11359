"""Deterministic fault plans: which step fails, on which attempt, and how.

A :class:`FaultPlan` is plain data. It says, for a step (an activity name such
as ``"book_hotel"``) and an attempt number (``activity.info().attempt``, which
starts at 1), which :class:`Fault` to act out. Nothing is counted in a global
variable: the same plan asked the same question always gives the same answer,
so a lesson can be re-run and a test can assert what happened.

Two kinds of faults compose in one plan:

* **Explicit rules.** ``FaultPlan.of({"book_hotel": [Fault.FAIL_AFTER]})`` fails
  the first attempt of ``book_hotel`` after its effect; later attempts succeed.
* **Seeded random faults.** ``FaultPlan.random(seed=7, rate=0.3)`` fails about
  30 % of attempts. Each decision hashes ``(seed, step, attempt, key)``, so it
  does not depend on the order in which activities run.

Explicit rules win over random faults. Plans combine with ``|`` (the left plan's
rules are tried first), and :meth:`FaultPlan.validate` catches a misspelt step
name before any workflow runs. Because a plan is a frozen dataclass of strings,
numbers and tuples, it can travel inside a workflow or activity input.
"""

from __future__ import annotations

import difflib
import enum
import hashlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError, CancelledError

from sagakit._errors import ConfigurationError
from sagakit._text import text_table

__all__ = ["Fault", "FaultPlan", "FaultRule", "UnknownStepError", "act_out_fault"]

T = TypeVar("T")

DEFAULT_HANG = timedelta(seconds=10)
"""How long a ``HANG`` or ``LATE`` attempt waits by default (make it longer than the timeout)."""

HEARTBEAT_EVERY = timedelta(seconds=0.2)
"""How often a ``HANG`` attempt heartbeats while it waits (the SDK throttles what it sends)."""


class Fault(enum.StrEnum):
    """What an attempt of a step should act out."""

    OK = "ok"
    """No fault: do the work and reply normally."""
    FAIL_BEFORE = "fail_before"
    """Fail with a retryable error before doing anything (no effect)."""
    FAIL_AFTER = "fail_after"
    """Do the work, then fail with a retryable error: the effect happened but the caller
    sees an error, like a timeout after the bowl is already out on the counter."""
    HANG = "hang"
    """Do nothing for longer than the activity's timeout, so Temporal times the attempt out.
    The effect never happens, not even after the wait. The attempt heartbeats while it waits,
    so with a ``heartbeat_timeout`` it learns that it was given up on and stops early."""
    FAIL_PERMANENT = "fail_permanent"
    """Fail with a non-retryable error before doing anything (no effect, no retry)."""
    LATE = "late"
    """A zombie: wait for longer than the activity's timeout without heartbeating, then do the
    work anyway. Temporal has already timed the attempt out (and may have retried the step, or
    run its undo), so the effect lands *after* the caller gave up on it."""

    @property
    def has_effect(self) -> bool:
        """Whether the step's effect happens while the attempt still counts (``OK``, ``FAIL_AFTER``).

        A ``LATE`` attempt's effect comes after its attempt timed out, if the service still
        accepts it: see :attr:`lands_late`.
        """
        return self in (Fault.OK, Fault.FAIL_AFTER)

    @property
    def lands_late(self) -> bool:
        """Whether the attempt tries its effect after Temporal gave up on it (``LATE``)."""
        return self is Fault.LATE

    @property
    def caller_sees_success(self) -> bool:
        """Whether the caller gets a normal reply."""
        return self is Fault.OK


RANDOM_DEFAULT: tuple[Fault, ...] = (Fault.FAIL_BEFORE, Fault.FAIL_AFTER)
"""Faults that a random plan picks from unless told otherwise: both are retryable and quick."""


class UnknownStepError(ConfigurationError):
    """A fault plan names a step that the activities it is used with do not have."""


@dataclass(frozen=True)
class FaultRule:
    """One explicit rule: on this step (and attempt, and key), act out this fault."""

    step: str
    """The step's name: the activity name, e.g. ``"book_hotel"``."""
    fault: Fault
    """What to act out when the rule matches."""
    attempt: int | None = 1
    """The attempt it applies to (1 is the first try); ``None`` means every attempt."""
    key: str | None = None
    """Only for this key (e.g. a trip id); ``None`` means any key."""

    def __post_init__(self) -> None:
        if not self.step:
            raise ConfigurationError("A FaultRule needs a step name, e.g. 'book_hotel'.")
        if self.attempt is not None and self.attempt < 1:
            raise ConfigurationError(
                f"FaultRule for {self.step!r} has attempt={self.attempt}; attempts start at 1 "
                "(use None for every attempt)."
            )
        # Accept "fail_after" as well as Fault.FAIL_AFTER (handy in notebooks and JSON).
        object.__setattr__(self, "fault", _as_fault(self.fault))

    def matches(self, step: str, attempt: int, key: str) -> bool:
        """Whether this rule applies to ``step``, ``attempt`` and ``key``."""
        return (
            self.step == step
            and (self.attempt is None or self.attempt == attempt)
            and (self.key is None or self.key == key)
        )

    def __str__(self) -> str:
        when = "every attempt" if self.attempt is None else f"attempt {self.attempt}"
        scope = "" if self.key is None else f" (key {self.key!r})"
        return f"{self.step}, {when}{scope}: {self.fault.name}"


@dataclass(frozen=True)
class FaultPlan:
    """Which fault each attempt of each step acts out; see the module docstring.

    An empty ``FaultPlan()`` injects nothing. Build plans with :meth:`of`,
    :meth:`random` and ``|`` rather than by hand.
    """

    rules: tuple[FaultRule, ...] = ()
    """Explicit rules, tried in order; the first that matches decides."""
    seed: int | None = None
    """Seed of the random faults; ``None`` turns random faults off."""
    rate: float = 0.0
    """Chance (0 to 1) that an attempt no rule matches gets a random fault."""
    random_faults: tuple[Fault, ...] = RANDOM_DEFAULT
    """The faults a random decision picks from, with equal chance."""
    random_steps: tuple[str, ...] | None = None
    """Steps that may get random faults; ``None`` means all steps."""
    known_steps: tuple[str, ...] | None = None
    """If set, the step names this plan may mention; others raise :class:`UnknownStepError`."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ConfigurationError(
                f"FaultPlan rate={self.rate} is not a probability; use a number from 0 to 1."
            )
        if self.rate > 0 and self.seed is None:
            raise ConfigurationError(
                "FaultPlan has rate > 0 but no seed; pass seed=<int> so the faults repeat."
            )
        faults = tuple(_as_fault(f) for f in self.random_faults)
        if self.rate > 0 and not faults:
            raise ConfigurationError(
                "FaultPlan has rate > 0 but no random_faults to pick from; list at least one."
            )
        object.__setattr__(self, "random_faults", faults)
        object.__setattr__(self, "rules", tuple(self.rules))
        if self.random_steps is not None:
            object.__setattr__(self, "random_steps", tuple(self.random_steps))
        if self.known_steps is not None:
            object.__setattr__(self, "known_steps", tuple(self.known_steps))
            self.validate(self.known_steps)

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def of(
        cls,
        faults: Mapping[str, Sequence[Fault | str]],
        *,
        key: str | None = None,
        known_steps: Iterable[str] | None = None,
    ) -> FaultPlan:
        """Build a plan from ``{step: [fault of attempt 1, fault of attempt 2, ...]}``.

        Attempts after the listed ones succeed (or get random faults, if the plan
        is combined with a random one). ``Fault.OK`` fills a gap and wins over
        random faults: ``{"add_milk": [Fault.OK, Fault.FAIL_BEFORE]}`` fails only attempt 2.

        Args:
            faults: For each step, the faults of its first attempts, in order.
            key: Apply the rules only to this key (e.g. one trip id).
            known_steps: If given, reject step names not in it.

        Returns:
            The plan.
        """
        known = None if known_steps is None else tuple(known_steps)
        if known is not None:
            for step in faults:
                if step not in known:
                    raise _unknown_step(step, known)
        rules = tuple(
            FaultRule(step=step, fault=_as_fault(fault), attempt=number, key=key)
            for step, sequence in faults.items()
            for number, fault in enumerate(sequence, start=1)
        )
        return cls(rules=rules, known_steps=known)

    @classmethod
    def always(cls, step: str, fault: Fault | str, *, key: str | None = None) -> FaultPlan:
        """Build a plan where every attempt of ``step`` acts out ``fault``.

        With a retryable fault, the step only ends when the retry policy gives up.
        """
        return cls(rules=(FaultRule(step=step, fault=_as_fault(fault), attempt=None, key=key),))

    @classmethod
    def random(
        cls,
        *,
        seed: int,
        rate: float,
        faults: Iterable[Fault | str] = RANDOM_DEFAULT,
        steps: Iterable[str] | None = None,
    ) -> FaultPlan:
        """Build a plan of seeded random faults.

        Args:
            seed: Any integer; the same seed gives the same faults.
            rate: Chance (0 to 1) that an attempt fails.
            faults: The faults to pick from (by default the quick, retryable ones).
            steps: Only these steps get faults; by default every step.

        Returns:
            The plan.
        """
        return cls(
            seed=seed,
            rate=rate,
            random_faults=tuple(_as_fault(f) for f in faults),
            random_steps=None if steps is None else tuple(steps),
        )

    def __or__(self, other: FaultPlan) -> FaultPlan:
        """Combine two plans: rules of ``self`` first, random settings of ``self`` if it has any."""
        if not isinstance(other, FaultPlan):
            return NotImplemented
        random_from = self if self.seed is not None else other
        if self.known_steps is None or other.known_steps is None:
            known = self.known_steps or other.known_steps
        else:
            known = tuple(s for s in self.known_steps if s in other.known_steps)
        return FaultPlan(
            rules=self.rules + other.rules,
            seed=random_from.seed,
            rate=random_from.rate,
            random_faults=random_from.random_faults,
            random_steps=random_from.random_steps,
            known_steps=known,
        )

    # -- checking ---------------------------------------------------------------------------

    @property
    def steps(self) -> tuple[str, ...]:
        """Every step name the plan mentions, sorted."""
        named = {rule.step for rule in self.rules} | set(self.random_steps or ())
        return tuple(sorted(named))

    def validate(self, steps: Iterable[str]) -> FaultPlan:
        """Check that every step this plan names is one of ``steps``.

        Args:
            steps: The valid step names (e.g. the activity names of a worker).

        Returns:
            ``self``, so that ``plan = FaultPlan.of(...).validate(names)`` reads well.

        Raises:
            UnknownStepError: A step name is not in ``steps``; the message lists the valid names.
        """
        valid = tuple(steps)
        for step in self.steps:
            if step not in valid:
                raise _unknown_step(step, valid)
        return self

    def with_known_steps(self, steps: Iterable[str]) -> FaultPlan:
        """Return a copy that knows (and has been checked against) these step names."""
        return replace(self, known_steps=tuple(steps))

    # -- deciding ---------------------------------------------------------------------------

    def decide(self, step: str, attempt: int, key: str = "") -> Fault:
        """Return the fault for ``attempt`` (1, 2, ...) of ``step`` on ``key``.

        Args:
            step: The step (activity) name.
            attempt: The attempt number, as in ``activity.info().attempt``.
            key: What the step works on (a trip id, an account); lets one plan
                treat two trips differently.

        Returns:
            The fault; :attr:`Fault.OK` when nothing is planned.

        Raises:
            UnknownStepError: The plan has ``known_steps`` and ``step`` is not one of them.
        """
        if self.known_steps is not None and step not in self.known_steps:
            raise _unknown_step(step, self.known_steps)
        for rule in self.rules:
            if rule.matches(step, attempt, key):
                return rule.fault
        if self.seed is None or self.rate <= 0.0:
            return Fault.OK
        if self.random_steps is not None and step not in self.random_steps:
            return Fault.OK
        digest = hashlib.blake2b(
            f"{self.seed}\x1f{step}\x1f{attempt}\x1f{key}".encode(), digest_size=16
        ).digest()
        chance = int.from_bytes(digest[:8], "big") / 2**64
        if chance >= self.rate:
            return Fault.OK
        return self.random_faults[int.from_bytes(digest[8:], "big") % len(self.random_faults)]

    def preview(self, steps: Iterable[str], attempts: int = 3, key: str = "") -> str:
        """Return a small table of the decisions for ``steps`` on attempts 1 to ``attempts``."""
        numbers = range(1, attempts + 1)
        rows = [[name, *(self.decide(name, a, key).name for a in numbers)] for name in steps]
        return text_table(["step", *(f"#{a}" for a in numbers)], rows)

    def describe(self) -> str:
        """Return the plan in plain words, one line per rule."""
        if not self.rules and (self.seed is None or self.rate == 0):
            return "FaultPlan: no faults (every attempt succeeds)"
        lines = ["FaultPlan:"]
        lines.extend(f"  - {rule}" for rule in self.rules)
        if self.seed is not None and self.rate > 0:
            where = "every step" if self.random_steps is None else ", ".join(self.random_steps)
            picks = ", ".join(f.name for f in self.random_faults)
            lines.append(
                f"  - otherwise, on {where}: {self.rate:.0%} of attempts get one of "
                f"{picks} (seed {self.seed})"
            )
        else:
            lines.append("  - any other attempt: OK")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()


def _as_fault(value: Fault | str) -> Fault:
    if isinstance(value, Fault):
        return value
    try:
        return Fault(str(value).lower())
    except ValueError:
        names = ", ".join(f.name for f in Fault)
        raise ConfigurationError(
            f"{value!r} is not a fault; use one of {names} (e.g. Fault.FAIL_AFTER)."
        ) from None


def _unknown_step(step: str, valid: Iterable[str]) -> UnknownStepError:
    names = sorted(valid)
    close = difflib.get_close_matches(step, names, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return UnknownStepError(
        f"The fault plan names the step {step!r}, which is not one of the steps here.{hint} "
        f"Valid step names: {', '.join(names)}. Fix the name in the plan."
    )


def act_out_fault(
    plan: FaultPlan,
    effect: Callable[[], T],
    *,
    key: str = "",
    done: str = "the work was done",
    hang_for: timedelta = DEFAULT_HANG,
) -> T:
    """Inside a (synchronous) activity, act out what ``plan`` says for this attempt.

    The step is the activity's type and the attempt is ``activity.info().attempt``:

    - ``OK``: run ``effect`` and return its result;
    - ``FAIL_BEFORE``: raise a retryable ``ApplicationError`` (type ``"InjectedFault"``)
      without running ``effect``;
    - ``FAIL_AFTER``: run ``effect``, then raise a retryable ``ApplicationError``: the effect
      happened but the reply is lost;
    - ``HANG``: wait ``hang_for`` (make it longer than the ``start_to_close_timeout``), then
      raise ``"InjectedHang"`` without running ``effect``. It heartbeats while it waits
      (every :data:`HEARTBEAT_EVERY`): when the attempt is cancelled or timed out (give the
      activity a ``heartbeat_timeout`` so the SDK sends heartbeats often), the heartbeat's
      answer makes the SDK raise ``temporalio.exceptions.CancelledError`` in this thread and
      the attempt stops at once. It also stops early if the worker shuts down;
    - ``FAIL_PERMANENT``: raise a non-retryable ``ApplicationError``
      (type ``"InjectedPermanentFault"``) without running ``effect``;
    - ``LATE``: a zombie. Wait ``hang_for`` *without* heartbeating (it returns early only if
      the worker shuts down), then run ``effect`` anyway and return its result, which nobody
      reads any more: the attempt timed out long ago. Cancellation is held back until the
      effect is done (``activity.shield_thread_cancel_exception``), as for a request already
      on the wire.

    Args:
        plan: which fault to act out on which step and attempt.
        effect: the activity's real work, called at most once.
        key: what the plan may use to tell requests apart (for example a trip ID).
        done: the effect in a few words, for the ``FAIL_AFTER`` message.
        hang_for: how long a ``HANG`` or ``LATE`` attempt waits.

    Example::

        @activity.defn
        def book_hotel(req: TripRequest) -> Booking:
            return act_out_fault(req.faults, lambda: hotel.book(req), key=req.trip_id)
    """
    info = activity.info()
    where = f"{info.activity_type} (attempt {info.attempt})"
    fault = plan.decide(info.activity_type, info.attempt, key)
    if fault is Fault.FAIL_PERMANENT:
        raise ApplicationError(
            f"injected permanent fault in {where}: refused, nothing was done",
            type="InjectedPermanentFault",
            non_retryable=True,
        )
    if fault is Fault.FAIL_BEFORE:
        raise ApplicationError(
            f"injected fault in {where}: failed before doing anything", type="InjectedFault"
        )
    if fault is Fault.HANG:
        _wait_heartbeating(hang_for)
        raise ApplicationError(
            f"injected hang in {where}: gave up after {hang_for.total_seconds():g} s "
            "without doing anything",
            type="InjectedHang",
        )
    if fault is Fault.LATE:
        with activity.shield_thread_cancel_exception():
            activity.wait_for_worker_shutdown_sync(hang_for)
            return effect()
    result = effect()
    if fault is Fault.FAIL_AFTER:
        raise ApplicationError(
            f"injected fault in {where}: {done}, but the reply was lost", type="InjectedFault"
        )
    return result


def _wait_heartbeating(how_long: timedelta) -> None:
    """Wait ``how_long``, heartbeating, until the worker shuts down or the attempt is cancelled.

    A cancellation (the attempt timed out, or its workflow cancelled it) arrives as the answer
    to a heartbeat: the SDK then raises ``CancelledError`` in this thread.
    """
    deadline = time.monotonic() + how_long.total_seconds()
    while (left := deadline - time.monotonic()) > 0 and not activity.is_worker_shutdown():
        activity.heartbeat()
        activity.wait_for_cancelled_sync(min(left, HEARTBEAT_EVERY.total_seconds()))
        if activity.is_cancelled() and not activity.is_worker_shutdown():
            # The SDK raises in this thread too; this makes sure the wait ends either way.
            raise CancelledError("the attempt was cancelled (or timed out) while it waited")
