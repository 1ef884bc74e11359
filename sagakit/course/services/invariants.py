"""Check that a world is consistent once every saga in it has finished.

:func:`check_world` reads the services' tables and the ledger and lists every
broken rule in plain words:

* a trip is all-or-nothing: hotel, flight and excursion are all booked, or none is;
* nothing is booked twice: at most one active booking per trip and kind;
* a breakfast is all-or-nothing: served (one bowl, cereal, milk) or nothing left out;
* nothing is poured or taken out twice for one breakfast;
* no payment is charged twice: per account and reference, withdrawals minus
  deposits is at most 1;
* no request with an idempotency key had its effect twice (a refused booking,
  ``book_<kind>_refused``, is a record, not an effect);
* money is conserved: the balances add up to what the accounts were opened with;
* every balance equals the sum of its ledger entries.

The checker cannot know whether a saga is still running, so run it after the
workflows you care about have finished: halfway through a saga, a trip with
only a hotel is normal.

It reads the services themselves (a :class:`~sagakit.course.services.world.World`
holds them, and :meth:`World.check <sagakit.course.services.world.World.check>`
calls this checker), so it never opens, creates or stocks a world of its own.
"""

from __future__ import annotations

import enum
import html
import os
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sagakit import SagakitError
from sagakit.course.services import _store
from sagakit.course.services.bank import BankService
from sagakit.course.services.breakfast import BreakfastService
from sagakit.course.services.ledger import Ledger, LedgerEntry
from sagakit.course.services.trip import REFUSED, TRIP_KINDS, TripService

__all__ = ["InvariantReport", "InvariantViolated", "Violation", "ViolationKind", "check_world"]


class ViolationKind(enum.StrEnum):
    """Which rule a :class:`Violation` breaks."""

    PARTIAL_TRIP = "partial_trip"
    """Some but not all of a trip's bookings are active."""
    DOUBLE_BOOKING = "double_booking"
    """A trip holds more than one active booking of one kind."""
    PARTIAL_BREAKFAST = "partial_breakfast"
    """Something is out for a breakfast that was neither served nor undone."""
    DOUBLE_SERVING = "double_serving"
    """Two bowls out, or cereal or milk poured twice, for one breakfast."""
    DOUBLE_CHARGE = "double_charge"
    """One payment reference was charged (or paid out) more than once."""
    REPEATED_KEY = "repeated_key"
    """A request with an idempotency key had its effect more than once."""
    MONEY_NOT_CONSERVED = "money_not_conserved"
    """The balances do not add up to what the accounts were opened with."""
    LEDGER_MISMATCH = "ledger_mismatch"
    """A balance differs from the sum of its ledger entries."""


class InvariantViolated(SagakitError):
    """A world broke one of its invariants (raised by :meth:`InvariantReport.raise_if_broken`)."""


@dataclass(frozen=True)
class Violation:
    """One broken rule."""

    kind: ViolationKind
    """Which rule."""
    subject: str
    """What it is about, e.g. ``"trip t1"`` or ``"account alice"``."""
    message: str
    """The problem in plain words."""

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class InvariantReport:
    """The result of :func:`check_world`."""

    ok: bool
    """True when no rule is broken."""
    violations: tuple[Violation, ...]
    """Every broken rule, trips first, then breakfasts, then money."""
    checked: str
    """What was looked at, e.g. ``"2 trips, 1 breakfast, 2 accounts, 9 ledger entries"``; kinds
    this world never used (no trips, no breakfasts, no bank entries) are left out."""

    @classmethod
    def of(cls, violations: list[Violation], checked: str) -> InvariantReport:
        """Build a report; ``ok`` follows from ``violations``."""
        return cls(ok=not violations, violations=tuple(violations), checked=checked)

    @property
    def kinds(self) -> set[ViolationKind]:
        """The kinds of rule that are broken."""
        return {v.kind for v in self.violations}

    def about(self, subject: str) -> list[Violation]:
        """Return the violations about ``subject`` (e.g. ``"trip t1"``)."""
        return [v for v in self.violations if v.subject == subject]

    def raise_if_broken(self) -> None:
        """Raise :class:`InvariantViolated` listing the violations, if there are any."""
        if not self.ok:
            raise InvariantViolated(
                f"{self}\nFind the step that had its effect without its compensation (or twice) "
                "in world.ledger."
            )

    def __str__(self) -> str:
        if self.ok:
            return f"✓ all invariants hold ({self.checked})"
        count = len(self.violations)
        lines = [f"✗ {count} invariant violation{'s' if count > 1 else ''} ({self.checked}):"]
        lines.extend(f"  - {v.message}" for v in self.violations)
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        if self.ok:
            return (
                '<p style="color:#1a7f37"><b>✓ all invariants hold</b> '
                f"({html.escape(self.checked)})</p>"
            )
        items = "".join(
            f"<li><code>{v.kind.value}</code> {html.escape(v.message)}</li>"
            for v in self.violations
        )
        return (
            f'<div style="color:#cf222e"><b>✗ {len(self.violations)} invariant violation(s)</b> '
            f"({html.escape(self.checked)})<ul>{items}</ul></div>"
        )


class WorldServices(Protocol):
    """What the checker reads: the services of one world file, as a ``World`` holds them."""

    @property
    def trips(self) -> TripService:
        """Hotel, flight and excursion bookings."""

    @property
    def breakfast(self) -> BreakfastService:
        """The kitchen."""

    @property
    def bank(self) -> BankService:
        """Accounts and money."""

    @property
    def ledger(self) -> Ledger:
        """Every effect any service had."""


@dataclass(frozen=True)
class _WorldFile:
    """The services of a world file named by its path, opened without creating anything."""

    trips: TripService
    breakfast: BreakfastService
    bank: BankService
    ledger: Ledger

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> _WorldFile:
        found = _store.stocked_file(
            path,
            meta="world_meta",
            what="world",
            hint="Pass the path the activities use (or the World object itself).",
        ).resolve()
        return cls(TripService(found), BreakfastService(found), BankService(found), Ledger(found))


def check_world(world: WorldServices | str | os.PathLike[str]) -> InvariantReport:
    """Check every invariant of a world (see the module docstring).

    Args:
        world: A :class:`~sagakit.course.services.world.World`, or the path of its SQLite file.

    Returns:
        The report; ``report.ok`` is True when nothing is broken.

    Raises:
        ConfigurationError: ``world`` is a path where no world file exists; nothing is created.
    """
    if isinstance(world, str | os.PathLike):
        world = _WorldFile.open(world)
    ledger = world.ledger.entries()
    violations: list[Violation] = []
    trips = world.trips.trip_ids()
    breakfasts = world.breakfast.breakfasts()
    balances = world.bank.balances()

    for trip_id in trips:
        violations.extend(_check_trip(trip_id, world.trips.active(trip_id)))
    for state in breakfasts:
        mine = [e for e in ledger if e.service == "breakfast" and e.entity == state.breakfast_id]
        violations.extend(
            _check_breakfast(state.breakfast_id, state.bowls, state.cereal_g, state.milk_ml, mine)
        )
    violations.extend(_check_double_charges(ledger))
    violations.extend(_check_repeated_keys(ledger))
    violations.extend(_check_money(world, balances, ledger))

    # Name only what this world used, so a trip lesson is not told about breakfasts.
    used = [
        _plural(len(trips), "trip") if trips else "",
        _plural(len(breakfasts), "breakfast") if breakfasts else "",
        _plural(len(balances), "account")
        if any(e.service == "bank" and e.operation != "open" for e in ledger)
        else "",
        _plural(len(ledger), "ledger entry", "ledger entries"),
    ]
    checked = ", ".join(part for part in used if part)
    return InvariantReport.of(violations, checked)


def _check_trip(trip_id: str, active: dict[str, int]) -> list[Violation]:
    subject = f"trip {trip_id}"
    found: list[Violation] = []
    for kind in TRIP_KINDS:
        if active[kind] > 1:
            found.append(
                Violation(
                    ViolationKind.DOUBLE_BOOKING,
                    subject,
                    f"{subject}: {kind} booked {active[kind]} times (double booking)",
                )
            )
    booked = [kind for kind in TRIP_KINDS if active[kind]]
    missing = [kind for kind in TRIP_KINDS if not active[kind]]
    if booked and missing:
        found.append(
            Violation(
                ViolationKind.PARTIAL_TRIP,
                subject,
                f"{subject}: {_join(booked)} booked but {_join(missing)} not (not all-or-nothing)",
            )
        )
    return found


def _check_breakfast(
    breakfast_id: str, bowls: int, cereal_g: int, milk_ml: int, entries: list[LedgerEntry]
) -> list[Violation]:
    subject = f"breakfast {breakfast_id}"
    found: list[Violation] = []
    if bowls > 1:
        found.append(
            Violation(
                ViolationKind.DOUBLE_SERVING,
                subject,
                f"{subject}: {bowls} bowls out for one breakfast (a step ran twice)",
            )
        )
    # Count pours since the bowl was last emptied, replaying the ledger.
    pours: Counter[str] = Counter()
    for entry in entries:
        if entry.operation in ("add_cereal", "add_milk"):
            pours[entry.operation] += 1
        elif entry.operation == "put_cereal_back_if_present":
            pours["add_cereal"] = 0
        elif entry.operation == "put_bowl_away_if_present":
            pours.clear()
    for operation, what in (("add_cereal", "cereal"), ("add_milk", "milk")):
        if pours[operation] > 1:
            found.append(
                Violation(
                    ViolationKind.DOUBLE_SERVING,
                    subject,
                    f"{subject}: {what} poured {pours[operation]} times into one bowl",
                )
            )
    parts = {"bowl": bowls > 0, "cereal": cereal_g > 0, "milk": milk_ml > 0}
    out = [name for name, present in parts.items() if present]
    missing = [name for name, present in parts.items() if not present]
    if out and missing:
        if out == ["bowl"]:
            message = f"{subject}: bowl left on the counter (not all-or-nothing)"
        else:
            message = (
                f"{subject}: {_join(out)} left out, but no {_join(missing, 'or')} "
                "(not all-or-nothing)"
            )
        found.append(Violation(ViolationKind.PARTIAL_BREAKFAST, subject, message))
    return found


_CHARGES = {"withdraw": 1, "transfer_out": 1, "deposit": -1, "transfer_in": -1}


def _check_double_charges(ledger: list[LedgerEntry]) -> list[Violation]:
    net: dict[tuple[str, str], int] = defaultdict(int)
    for entry in ledger:
        if entry.service == "bank" and entry.reference and entry.operation in _CHARGES:
            net[(entry.entity, entry.reference)] += _CHARGES[entry.operation]
    found: list[Violation] = []
    for (account, reference), charges in sorted(net.items()):
        subject = f"account {account}"
        if charges > 1:
            message = f"{subject}: charged {charges} times for {reference!r} (double charge)"
        elif charges < -1:
            message = f"{subject}: paid {-charges} times for {reference!r} (double payment)"
        else:
            continue
        found.append(Violation(ViolationKind.DOUBLE_CHARGE, subject, message))
    return found


def _check_repeated_keys(ledger: list[LedgerEntry]) -> list[Violation]:
    seen: Counter[tuple[str, str, str, str]] = Counter()
    for entry in ledger:
        if entry.idempotency_key is not None and not entry.operation.endswith(REFUSED):
            seen[(entry.service, entry.idempotency_key, entry.operation, entry.entity)] += 1
    found: list[Violation] = []
    for (service, key, operation, entity), times in seen.items():
        if times < 2:
            continue
        if service == "bank":
            message = (
                f"double charge on key {key!r}: {operation} on {entity} happened {times} times"
            )
        else:
            message = (
                f"repeated effect on key {key!r}: {operation} for {entity} happened {times} times"
            )
        found.append(Violation(ViolationKind.REPEATED_KEY, f"key {key}", message))
    return found


def _check_money(
    world: WorldServices, balances: dict[str, int], ledger: list[LedgerEntry]
) -> list[Violation]:
    found: list[Violation] = []
    opened = world.bank.opened_total()
    now = sum(balances.values())
    if now != opened:
        gap = f"{opened - now} missing" if now < opened else f"{now - opened} too many"
        found.append(
            Violation(
                ViolationKind.MONEY_NOT_CONSERVED,
                "bank",
                f"money not conserved: {opened} in, {now} now ({gap})",
            )
        )
    by_account: dict[str, int] = defaultdict(int)
    for entry in ledger:
        if entry.service == "bank":
            by_account[entry.entity] += entry.amount
    for account, balance in balances.items():
        if by_account[account] != balance:
            found.append(
                Violation(
                    ViolationKind.LEDGER_MISMATCH,
                    f"account {account}",
                    f"account {account}: balance {balance}, but its ledger entries add up to "
                    f"{by_account[account]} (a change was made without a ledger record)",
                )
            )
    return found


def _join(items: Sequence[str], last: str = "and") -> str:
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"
