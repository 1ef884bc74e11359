"""Lesson 11: the trip saga as a choreography, to compare with the orchestrated one.

In the choreography nobody is in charge. Three services and a trip desk talk
only through an :class:`~sagakit.course.eventbus.EventBus`; each one knows which
event it reacts to and which events it publishes:

===========  =============================  =====================================
participant  reacts to                      publishes
===========  =============================  =====================================
desk         ExcursionBooked, HotelFailed,  TripRequested, TripConfirmed,
             HotelCancelled                 TripCancelled
hotel        TripRequested;                 HotelBooked / HotelFailed;
             FlightFailed, FlightCancelled  HotelCancelled
flight       HotelBooked;                   FlightBooked / FlightFailed;
             ExcursionFailed,               FlightCancelled
             ExcursionCancelled
excursion    FlightBooked                   ExcursionBooked / ExcursionFailed
===========  =============================  =====================================

So the order of the steps (hotel, then flight, then excursion) and the order of
the undos (the reverse) are not written down in any one place: they emerge
from these subscriptions. The services book through the same simulated
:class:`~sagakit.course.services.TripService` and the same
:class:`~sagakit.FaultPlan` as the orchestrated
:class:`~sagakit.course.lessons.trip.TripSagaWorkflow`, so both can be run through
the same failures and checked with :func:`~sagakit.course.services.check_world`.

The module also turns both kinds of run into :class:`Arrow` lists and draws
them as sequence diagrams (:func:`plot_sequence`), and its main block runs a
worker for the orchestrated saga in a child process (for the crash demo)::

    python -m sagakit.course.lessons.choreography TASK_QUEUE WORLD_DB
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sagakit import Fault, FaultPlan, SagakitError
from sagakit.course.eventbus import Delivery, EventBus, Message
from sagakit.course.services.trip import TripKind
from sagakit.course.services.world import World

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from temporalio.client import WorkflowHistory

__all__ = [
    "SERVICES",
    "Arrow",
    "ChoreographyOptions",
    "ChoreographyRun",
    "ParticipantCrashed",
    "ServiceParticipant",
    "TripChoreography",
    "TripDesk",
    "choreography_arrows",
    "orchestration_arrows",
    "plot_sequence",
]

SERVICES: tuple[TripKind, ...] = ("hotel", "flight", "excursion")
"""The three services, in booking order."""

DESK = "desk"
"""The participant that takes the customer's request and reports the outcome."""


class ParticipantCrashed(SagakitError):
    """Raised by a participant to act out a crash (the bus then detaches it)."""


@dataclass(frozen=True)
class ChoreographyOptions:
    """How the participants of the choreography behave."""

    max_attempts: int = 4
    """Attempts a service makes at its own step before it reports the step as failed."""
    cleans_up_own_failure: bool = True
    """Before publishing ``<Kind>Failed``, a service cancels whatever its failed attempts
    may have booked. Without it, a step that failed *after* its effect leaks a booking:
    the others only undo their own steps."""


def _event(kind: str, what: str) -> str:
    return f"{kind.capitalize()}{what}"


class ServiceParticipant:
    """One trip service on the bus: books on its trigger, cancels when a later step fails."""

    def __init__(
        self,
        bus: EventBus,
        world: World,
        kind: TripKind,
        *,
        faults: FaultPlan | None = None,
        options: ChoreographyOptions | None = None,
    ) -> None:
        """Prepare the service (call :meth:`start` to subscribe it).

        Args:
            bus: The bus it listens and publishes on.
            world: Where the bookings live.
            kind: ``"hotel"``, ``"flight"`` or ``"excursion"``.
            faults: What to act out on which attempt of ``book_<kind>`` / ``cancel_<kind>``.
            options: Retries and clean-up behaviour.
        """
        self.bus = bus
        self.world = world
        self.kind: TripKind = kind
        self.faults = faults or FaultPlan()
        self.options = options or ChoreographyOptions()
        position = SERVICES.index(kind)
        self.trigger = (
            "TripRequested" if position == 0 else _event(SERVICES[position - 1], "Booked")
        )
        """The event that makes this service book."""
        later = SERVICES[position + 1] if position + 1 < len(SERVICES) else None
        self.undo_on: tuple[str, ...] = (
            () if later is None else (_event(later, "Failed"), _event(later, "Cancelled"))
        )
        """The events that make this service cancel its booking."""
        self._crash_next = False

    @property
    def name(self) -> str:
        """The subscriber name: the kind of service."""
        return self.kind

    def start(self) -> None:
        """Subscribe (again) to the bus; a restarted service resumes at its stored cursor."""
        self.bus.subscribe(self.name, (self.trigger, *self.undo_on), self.handle)

    def crash_after_next_effect(self) -> None:
        """Make the next handled message crash the service right after its effect.

        The booking (or cancellation) is made, but the service dies before it
        publishes anything, so the bus keeps the message and delivers it again
        once the service is started again.
        """
        self._crash_next = True

    def handle(self, message: Message) -> None:
        """React to one message (the bus calls this)."""
        trip_id = message.saga_id
        customer = str(message.data.get("customer", ""))
        if message.kind == self.trigger:
            if self._attempt("book", trip_id, customer):
                self._publish("Booked", message)
                return
            if self.options.cleans_up_own_failure:
                self._attempt("cancel", trip_id, customer)
            self._publish("Failed", message)
        elif message.kind in self.undo_on:
            self._attempt("cancel", trip_id, customer)
            self._publish("Cancelled", message)

    def _publish(self, what: str, cause: Message) -> None:
        self.bus.publish(
            _event(self.kind, what), saga_id=cause.saga_id, sender=self.name, data=cause.data
        )

    def _attempt(self, action: str, trip_id: str, customer: str) -> bool:
        """Try ``<action>_<kind>`` up to ``max_attempts`` times; True once it succeeded."""
        step = f"{action}_{self.kind}"
        trips = self.world.trips
        for attempt in range(1, self.options.max_attempts + 1):
            fault = self.faults.decide(step, attempt, trip_id)
            if fault is Fault.FAIL_PERMANENT:
                return False
            if fault in (Fault.FAIL_BEFORE, Fault.HANG):
                continue
            if action == "book":
                trips.book(self.kind, trip_id, customer, idempotency_key=trip_id)
            else:
                trips.cancel(self.kind, trip_id, idempotency_key=trip_id)
            if self._crash_next:
                self._crash_next = False
                raise ParticipantCrashed(
                    f"the {self.kind} service crashed after {step} for {trip_id}, before "
                    "publishing; restart it with start() and the bus delivers the message again"
                )
            if fault is Fault.FAIL_AFTER:
                continue  # done, but the service did not hear back: try again (same key)
            return True
        return False


class TripDesk:
    """Takes trip requests and turns the services' final events into an outcome."""

    CONFIRMED = "TripConfirmed"
    """Published when the last step (the excursion) is booked."""
    CANCELLED = "TripCancelled"
    """Published when the trip failed and the first step (the hotel) is undone or never made."""

    def __init__(self, bus: EventBus) -> None:
        """Prepare the desk on ``bus`` (call :meth:`start` to subscribe it)."""
        self.bus = bus
        self.name = DESK

    def start(self) -> None:
        """Subscribe to the events that end a trip."""
        self.bus.subscribe(
            self.name, ("ExcursionBooked", "HotelFailed", "HotelCancelled"), self.handle
        )

    def request(self, trip_id: str, customer: str = "ada") -> Message:
        """Publish ``TripRequested``: the only thing needed to start the choreography."""
        return self.bus.publish(
            "TripRequested", saga_id=trip_id, sender=self.name, data={"customer": customer}
        )

    def handle(self, message: Message) -> None:
        """Publish the trip's outcome."""
        kind = self.CONFIRMED if message.kind == "ExcursionBooked" else self.CANCELLED
        self.bus.publish(kind, saga_id=message.saga_id, sender=self.name, data=message.data)

    def outcome(self, trip_id: str) -> str:
        """``"confirmed"``, ``"cancelled"``, or ``"no outcome yet"`` (read from the log)."""
        for message in reversed(self.bus.messages(saga_id=trip_id)):
            if message.kind == self.CONFIRMED:
                return "confirmed"
            if message.kind == self.CANCELLED:
                return "cancelled"
        return "no outcome yet"


@dataclass(frozen=True)
class ChoreographyRun:
    """What one trip did on the bus."""

    trip_id: str
    """The trip."""
    outcome: str
    """``"confirmed"``, ``"cancelled"`` or ``"no outcome yet"``."""
    messages: tuple[Message, ...]
    """Every message published about the trip, in log order."""
    deliveries: tuple[Delivery, ...] = field(default=())
    """Every delivery of those messages to a subscriber, in the order made."""


class TripChoreography:
    """The desk and the three services, wired to one bus and one world."""

    def __init__(
        self,
        bus: EventBus,
        world: World,
        *,
        faults: FaultPlan | None = None,
        options: ChoreographyOptions | None = None,
    ) -> None:
        """Create the participants and subscribe them all.

        Args:
            bus: The event bus (its file may be shared with earlier runs).
            world: The simulated services' world.
            faults: One fault plan for all services (step names tell them apart).
            options: How the services retry and clean up.
        """
        self.bus = bus
        self.world = world
        self.desk = TripDesk(bus)
        self.services = {
            kind: ServiceParticipant(bus, world, kind, faults=faults, options=options)
            for kind in SERVICES
        }
        self.desk.start()
        for service in self.services.values():
            service.start()

    def request(self, trip_id: str, customer: str = "ada") -> None:
        """Publish the trip request without delivering anything yet."""
        self.desk.request(trip_id, customer)

    def run(self, trip_id: str, customer: str = "ada") -> ChoreographyRun:
        """Request a trip and deliver messages until nobody has anything left to do."""
        self.request(trip_id, customer)
        self.bus.drain()
        return self.report(trip_id)

    def report(self, trip_id: str) -> ChoreographyRun:
        """Read what the log says about ``trip_id``."""
        return ChoreographyRun(
            trip_id,
            self.desk.outcome(trip_id),
            tuple(self.bus.messages(saga_id=trip_id)),
            tuple(self.bus.deliveries(saga_id=trip_id)),
        )


# -- sequence diagrams ------------------------------------------------------------------------


@dataclass(frozen=True)
class Arrow:
    """One message in a sequence diagram."""

    sender: str
    """The lane it leaves."""
    receiver: str
    """The lane it reaches (the same as ``sender`` for a message nobody receives)."""
    label: str
    """What it says."""
    style: str = "step"
    """``"step"``, ``"failure"`` or ``"undo"``: black, red or orange dashed."""


def _style(label: str) -> str:
    if "Failed" in label or "failed" in label:
        return "failure"
    if "Cancel" in label or label.startswith("cancel_"):
        return "undo"
    return "step"


def choreography_arrows(run: ChoreographyRun) -> list[Arrow]:
    """One arrow per delivery, plus a self-arrow for a message that nobody receives."""
    delivered = {d.message.position for d in run.deliveries}
    arrows: list[Arrow] = []
    by_position: dict[int, list[Delivery]] = {}
    for delivery in run.deliveries:
        by_position.setdefault(delivery.message.position, []).append(delivery)
    for message in run.messages:
        if message.position not in delivered:
            arrows.append(Arrow(message.sender, message.sender, message.kind, _style(message.kind)))
        for delivery in by_position.get(message.position, []):
            label = message.kind if delivery.outcome.value == "handled" else f"{message.kind} ✗"
            arrows.append(Arrow(message.sender, delivery.subscriber, label, _style(message.kind)))
    return arrows


def orchestration_arrows(
    history: WorkflowHistory, *, orchestrator: str = "workflow"
) -> list[Arrow]:
    """One arrow per activity request (workflow to service) and per reply (service to workflow).

    The service's lane is the activity name without its verb (``book_hotel`` → ``hotel``).
    """
    from sagakit.history import history_rows

    arrows: list[Arrow] = []
    for row in history_rows(history):
        if row.activity is None:
            continue
        lane = row.activity.split("_", 1)[-1]
        if row.type == "ActivityTaskScheduled":
            arrows.append(Arrow(orchestrator, lane, row.activity, _style(row.activity)))
        elif row.type in ("ActivityTaskCompleted", "ActivityTaskFailed", "ActivityTaskTimedOut"):
            tries = f" ({row.attempt} attempts)" if (row.attempt or 1) > 1 else ""
            ok = row.type == "ActivityTaskCompleted"
            style = _style(row.activity) if ok else "failure"
            arrows.append(Arrow(lane, orchestrator, ("done" if ok else "failed") + tries, style))
    return arrows


def plot_sequence(lanes: Sequence[str], arrows: Sequence[Arrow], *, title: str) -> Figure:
    """Draw a sequence diagram: lanes as vertical lines, messages as arrows, time downwards.

    Args:
        lanes: The participants, left to right.
        arrows: The messages, in the order they were sent.
        title: The figure's title.

    Returns:
        A matplotlib figure of one axes, 9 x 5 inches.
    """
    import matplotlib.pyplot as plt

    colours = {"step": "black", "failure": "tab:red", "undo": "tab:orange"}
    fig, ax = plt.subplots(figsize=(9, 5))
    x = {lane: i for i, lane in enumerate(lanes)}
    bottom = len(arrows) + 1
    for lane, i in x.items():
        ax.plot([i, i], [0.3, bottom], color="grey", linewidth=1, zorder=1)
        ax.text(i, 0.1, lane, ha="center", va="bottom", fontsize=10, fontweight="bold")
    for n, arrow in enumerate(arrows, start=1):
        colour = colours.get(arrow.style, "black")
        start, end = x[arrow.sender], x[arrow.receiver]
        if start == end:
            ax.annotate(
                "",
                xy=(start + 0.05, n + 0.25),
                xytext=(start + 0.05, n - 0.15),
                arrowprops={
                    "arrowstyle": "->",
                    "color": colour,
                    "connectionstyle": "arc3,rad=-1.2",
                },
            )
            ax.text(start + 0.25, n, arrow.label, va="center", fontsize=8, color=colour)
            continue
        ax.annotate(
            "",
            xy=(end, n),
            xytext=(start, n),
            arrowprops={
                "arrowstyle": "->",
                "color": colour,
                "linestyle": "--" if arrow.style == "undo" else "-",
            },
        )
        ax.text(
            (start + end) / 2,
            n - 0.12,
            arrow.label,
            ha="center",
            va="bottom",
            fontsize=8,
            color=colour,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5},
        )
    ax.set_xlim(-0.6, len(lanes) - 0.4)
    ax.set_ylim(bottom, -0.2)
    ax.set_xticks([])
    ax.set_ylabel("message number (time flows down)")
    ax.set_title(title)
    for spine in ("top", "right", "bottom"):
        ax.spines[spine].set_visible(False)
    fig.tight_layout()
    plt.close(fig)
    return fig


# -- the worker process of the crash demo -----------------------------------------------------


def _serve(task_queue: str, db_path: str) -> None:
    """Run a worker for the trip saga whose ``book_flight`` hangs (so it can be killed mid-saga)."""
    from sagakit.course.lessons.trip import TripSagaWorkflow
    from sagakit.course.processes import run_worker
    from sagakit.course.services.activities import TripActivities

    plan = FaultPlan.always("book_flight", Fault.HANG)
    activities = TripActivities(Path(db_path), plan, hang_for=timedelta(seconds=60))
    run_worker(task_queue=task_queue, workflows=[TripSagaWorkflow], activities=activities.all())


if __name__ == "__main__":  # pragma: no cover - runs in a child process
    if len(sys.argv) != 3:
        print(
            "usage: python -m sagakit.course.lessons.choreography TASK_QUEUE WORLD_DB",
            file=sys.stderr,
        )
        os._exit(2)
    _serve(sys.argv[1], sys.argv[2])
