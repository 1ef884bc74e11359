"""Run the real trip saga with one chosen fault, and see what it did: lesson 09's playground.

Three layers, each usable without the next:

- :class:`TripChoice` says what goes wrong (which step fails, how, on which
  attempts) and how the saga is set up (idempotency keys, compensation order).
- :func:`run_trip` runs :class:`~sagakit.course.lessons.trip.TripSagaWorkflow` with
  that choice on a fresh simulated world, with a worker in this process, and
  returns a :class:`TripRun`: the outcome, the bookings, the invariant
  checker's verdict and the workflow's History. :func:`show_run` displays a
  run in a notebook cell (a summary, the timeline plot and the bookings).
- :class:`TripPlayground` puts dropdowns, checkboxes and a Run button
  (ipywidgets) in front of :func:`run_trip` and shows each run in an
  ``Output`` widget::

      playground = TripPlayground(client, workdir=scratch)
      playground                       # the widget
      run = await playground.run(TripChoice(step="book_flight", fault=Fault.HANG))

A button callback cannot ``await``. It runs inside the kernel while the event
loop is already running, so :meth:`TripPlayground.click` schedules
:meth:`TripPlayground.run` on that loop (``loop.create_task``) and
returns at once; tests await the task it returns.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from temporalio.client import Client, WorkflowFailureError, WorkflowHistory
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

from sagakit import ConfigurationError, Fault, FaultPlan, running_worker
from sagakit.course.client import explain_unreachable
from sagakit.course.display import Table
from sagakit.course.errors import ServerUnreachable
from sagakit.course.history_views import plot_timeline
from sagakit.course.learner import scoped
from sagakit.course.lessons.trip import TRIP_STEPS, TripSagaInput, TripSagaWorkflow
from sagakit.course.logs import quiet_expected_failures
from sagakit.course.processes import run_explained
from sagakit.course.services.activities import TripActivities
from sagakit.course.services.invariants import InvariantReport, check_world
from sagakit.course.services.trip import TRIP_KINDS, Booking
from sagakit.course.services.world import World
from sagakit.history import activity_spans

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "TripChoice",
    "TripOutcome",
    "TripPlayground",
    "TripRun",
    "WidgetsNotInstalled",
    "run_trip",
    "show_run",
]

TripOutcome = Literal["booked", "compensated", "compensation failed"]
"""How a trip saga ended: all booked, failed and fully undone, or failed and only partly undone."""


class WidgetsNotInstalled(ConfigurationError):
    """The playground needs ipywidgets, which is not installed."""


@dataclass(frozen=True)
class TripChoice:
    """What goes wrong in one trip saga, and how the saga is set up."""

    step: str | None = "book_excursion"
    """The step that fails: one of ``book_hotel``, ``book_flight``, ``book_excursion``;
    ``None`` for a run where nothing fails."""
    fault: Fault = Fault.FAIL_PERMANENT
    """How it fails (see :class:`~sagakit.Fault`)."""
    every_attempt: bool = False
    """Fail every attempt, so the retry policy gives up; by default only the first attempt fails."""
    idempotency_keys: bool = True
    """Send the trip id as an idempotency key, so a retried booking never books twice."""
    parallel_compensation: bool = False
    """Undo all booked steps at once instead of last-to-first."""
    max_attempts: int = 4
    """Attempts per step before the saga gives up and compensates (the saga's default is 4)."""

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ConfigurationError(
                f"TripChoice(max_attempts={self.max_attempts}) allows no attempt at all; "
                "use 1 (no retries) or more."
            )
        if self.step is not None and self.step not in TRIP_STEPS:
            raise ConfigurationError(
                f"TripChoice(step={self.step!r}) is not a step of the trip saga; use one of "
                f"{', '.join(TRIP_STEPS)}, or None for a run where nothing fails."
            )
        try:
            object.__setattr__(self, "fault", Fault(self.fault))
        except ValueError:
            names = ", ".join(f.name for f in Fault)
            raise ConfigurationError(
                f"TripChoice(fault={self.fault!r}) is not a fault; use one of {names}."
            ) from None

    @property
    def fails(self) -> bool:
        """Whether anything is planned to go wrong."""
        return self.step is not None and self.fault is not Fault.OK

    def plan(self) -> FaultPlan:
        """The fault plan that acts this choice out."""
        if not self.fails:
            return FaultPlan()
        assert self.step is not None  # checked by fails
        if self.every_attempt:
            return FaultPlan.always(self.step, self.fault)
        return FaultPlan.of({self.step: [self.fault]})

    def describe(self) -> str:
        """The choice in a few words, e.g. ``"book_flight: HANG on attempt 1; keys; undo in reverse"``."""
        if self.fails:
            when = f"all {self.max_attempts} attempts" if self.every_attempt else "attempt 1"
            what = f"{self.step}: {self.fault.name} on {when}"
        else:
            what = "nothing fails"
        keys = "keys" if self.idempotency_keys else "no keys"
        undo = "undo in parallel" if self.parallel_compensation else "undo in reverse"
        return f"{what}; {keys}; {undo}"


@dataclass(frozen=True)
class TripRun:
    """What one trip saga did, as :func:`run_trip` observed it."""

    choice: TripChoice
    """What was planned to go wrong."""
    trip_id: str
    """The trip (and idempotency key)."""
    workflow_id: str
    """The workflow's id."""
    run_id: str | None
    """The workflow run's id (for :func:`sagakit.web_ui_url`)."""
    outcome: TripOutcome
    """Booked, compensated, or compensation failed."""
    error: str | None
    """Why the saga failed (the step and the error), or ``None`` when the trip was booked."""
    bookings: tuple[Booking, ...]
    """Every booking the trip ever had, active or cancelled, in the order they were made."""
    report: InvariantReport
    """The invariant checker's verdict on the world after the run."""
    history: WorkflowHistory
    """The workflow's event History."""

    @property
    def consistent(self) -> bool:
        """Whether the world is consistent after the run (the checker found nothing)."""
        return self.report.ok

    def bookings_left(self) -> str:
        """The active bookings in words, e.g. ``"hotel, flight ×2, excursion"`` or ``"none"``."""
        active = [b.kind for b in self.bookings if b.status == "active"]
        words = [
            kind if active.count(kind) == 1 else f"{kind} ×{active.count(kind)}"
            for kind in TRIP_KINDS
            if kind in active
        ]
        return ", ".join(words) or "none"

    def attempts(self, step: str) -> int:
        """How many attempts ``step`` took (0 if the saga never got to it)."""
        return sum(s.attempts for s in activity_spans(self.history) if s.activity == step)

    def summary(self) -> str:
        """A few lines: what was planned, how it ended, what is booked, the checker's verdict."""
        lines = [
            f"{self.workflow_id} ({self.choice.describe()})",
            f"outcome:       {self.outcome}",
        ]
        if self.error is not None:
            lines.append(f"why:           {self.error}")
        lines.append(f"bookings left: {self.bookings_left()}")
        lines.append(f"checker:       {self.report}")
        return "\n".join(lines)

    def bookings_table(self) -> Table:
        """Every booking of the trip, active or cancelled."""
        return Table(
            ["booking", "kind", "status"],
            [[f"#{b.booking_id}", b.kind, b.status] for b in self.bookings],
            title=f"Bookings of trip {self.trip_id}",
        )

    def timeline(self) -> Figure:
        """The activity timeline (see :func:`sagakit.history.plot_timeline`)."""
        return plot_timeline(self.history, title=f"{self.workflow_id}: {self.choice.describe()}")

    def outputs(self) -> tuple[dict[str, Any], ...]:
        """The run as Jupyter outputs (summary, timeline, bookings), for an ``Output`` widget."""
        figure = self.timeline()
        png = io.BytesIO()
        figure.savefig(png, format="png")
        table = self.bookings_table()
        return (
            {"output_type": "stream", "name": "stdout", "text": self.summary() + "\n"},
            {
                "output_type": "display_data",
                "data": {
                    "image/png": base64.b64encode(png.getvalue()).decode("ascii"),
                    "text/plain": repr(figure),
                },
                "metadata": {},
            },
            {
                "output_type": "display_data",
                "data": {"text/plain": table.text(), "text/html": table._repr_html_()},
                "metadata": {},
            },
        )


async def run_trip(
    client: Client,
    choice: TripChoice,
    *,
    workdir: str | os.PathLike[str],
    workflow_id: str,
    task_queue: str = "lesson-09",
    trip_id: str | None = None,
) -> TripRun:
    """Run the trip saga once with ``choice``, on a fresh world, and report what happened.

    A worker for the saga runs in this process for the length of the call (the
    worker's warnings about the planned failures are kept quiet, also when
    several runs overlap: they are all in the History). An earlier workflow
    with the same id is replaced. Runs at the same time need different task
    queues, workflow ids and trip ids.

    Args:
        client: a client of the Temporal server.
        choice: what goes wrong, and how the saga is set up.
        workdir: a folder for the world's SQLite file (``<trip_id>.db``, reset
            to a fresh world first).
        workflow_id: the workflow's id (in a namespace shared by several learners,
            prefixed with the learner's name by :func:`~sagakit.course.learner.scoped`).
        task_queue: the task queue of the worker; no other worker of this
            client may poll it during the call (scoped like ``workflow_id``).
        trip_id: the trip's id; by default the workflow id.

    Returns:
        The run: outcome, bookings, checker verdict and History.

    Raises:
        ServerUnreachable: the server stopped answering; raised within a few
            seconds, naming its address and how to start it again.
    """
    return await run_explained(
        client,
        _run_trip(
            client,
            choice,
            Path(workdir),
            scoped(workflow_id, namespace=client.namespace),
            scoped(task_queue, namespace=client.namespace),
            trip_id or workflow_id,
        ),
    )


async def _run_trip(
    client: Client,
    choice: TripChoice,
    workdir: Path,
    workflow_id: str,
    task_queue: str,
    trip_id: str,
) -> TripRun:
    db = workdir / f"{trip_id}.db"
    World(db).reset()
    activities = TripActivities(db, choice.plan())
    trip = TripSagaInput(
        trip_id,
        idempotency_keys=choice.idempotency_keys,
        parallel_compensation=choice.parallel_compensation,
        max_attempts=choice.max_attempts,
    )
    outcome: TripOutcome = "booked"
    error: str | None = None
    with _quiet_while_running():
        async with running_worker(
            client, task_queue=task_queue, workflows=[TripSagaWorkflow], activities=activities.all()
        ):
            handle = await client.start_workflow(
                TripSagaWorkflow.run,
                trip,
                id=workflow_id,
                task_queue=task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.TERMINATE_EXISTING,
            )
            try:
                await handle.result()
            except WorkflowFailureError as failure:
                outcome, error = _why(failure)
    return TripRun(
        choice=choice,
        trip_id=trip_id,
        workflow_id=workflow_id,
        run_id=handle.result_run_id,
        outcome=outcome,
        error=error,
        bookings=tuple(activities.world.trips.bookings(trip_id)),
        report=check_world(activities.world),
        history=await handle.fetch_history(),
    )


class _QuietRuns:
    """Keep the worker loggers quiet while at least one run is going on.

    :func:`~sagakit.course.logs.quiet_expected_failures` restores the old log levels
    when its block ends; with several runs at once (``asyncio.gather``), the
    first to finish would make the others loud again. Counting the runs keeps
    the loggers quiet until the last one has finished.
    """

    def __init__(self) -> None:
        self._running = 0
        self._stack = contextlib.ExitStack()

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        if self._running == 0:
            self._stack.enter_context(quiet_expected_failures())
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            if self._running == 0:
                self._stack.close()


_quiet_while_running = _QuietRuns()


def show_run(run: TripRun) -> None:
    """Display a run in the current notebook cell: summary, timeline and bookings."""
    from IPython.display import display

    print(run.summary())
    display(run.timeline())  # type: ignore[no-untyped-call]
    display(run.bookings_table())  # type: ignore[no-untyped-call]


def _why(failure: WorkflowFailureError) -> tuple[TripOutcome, str]:
    """Classify a failed saga and say why it failed, in one line."""
    cause = failure.cause
    outcome: TripOutcome = "compensated"
    if isinstance(cause, ApplicationError) and cause.type == "CompensationError":
        outcome = "compensation failed"
        cause = cause.cause if isinstance(cause.cause, FailureError) else cause
    if isinstance(cause, ActivityError):
        inner = cause.cause
        message = inner.message if isinstance(inner, FailureError) else cause.message
        return outcome, f"{cause.activity_type}: {message}"
    return outcome, cause.message if isinstance(cause, FailureError) else str(failure)


class TripPlayground:
    """Widgets to choose a fault and run the trip saga; each run is shown in an Output widget.

    Attributes:
        step: Dropdown of the failing step ("nothing fails" or a step name).
        fault: Dropdown of the fault.
        every_attempt: Dropdown: the first attempt fails, or every attempt.
        keys: Checkbox: send idempotency keys.
        parallel: Checkbox: compensate in parallel.
        button: The Run button; a click schedules :meth:`run` (see :meth:`click`).
        status: A one-line label: ready, running, or how the last run ended.
        output: The Output widget that shows the last run.
        widget: All of them in one box (what the notebook displays).
        task: The task of the latest click, or ``None`` before the first.
        last_run: The latest finished run, or ``None``.
    """

    def __init__(
        self,
        client: Client,
        *,
        workdir: str | os.PathLike[str],
        task_queue: str = "lesson-09-playground",
        id_prefix: str = "lesson-09-playground",
        initial: TripChoice | None = None,
    ) -> None:
        """Build the widgets (nothing runs until the button is clicked or :meth:`run` is awaited).

        Args:
            client: a client of the Temporal server.
            workdir: a folder for the worlds' SQLite files.
            task_queue: the task queue of the runs' workers.
            id_prefix: workflow ids are ``<id_prefix>-1``, ``-2``, … in the order of the runs.
            initial: the choice the widgets start with.

        Raises:
            WidgetsNotInstalled: ipywidgets is missing.
        """
        try:
            import ipywidgets as widgets  # type: ignore[import-untyped]
        except ImportError as err:
            raise WidgetsNotInstalled(
                "The trip playground needs ipywidgets. Install the course extras with "
                "`pip install -e '.[course]'` (or `pip install ipywidgets`) and restart the kernel."
            ) from err
        start = initial or TripChoice()
        self._client = client
        self._workdir = Path(workdir)
        self._task_queue = task_queue
        self._id_prefix = id_prefix
        self._runs = 0
        self.task: asyncio.Task[TripRun | None] | None = None
        self.last_run: TripRun | None = None

        wide = {"description_width": "initial"}
        self.step: Any = widgets.Dropdown(
            options=[("nothing fails", ""), *((s, s) for s in TRIP_STEPS)],
            value=start.step or "",
            description="failing step",
            style=wide,
        )
        self.fault: Any = widgets.Dropdown(
            options=[(f.name, f.value) for f in Fault if f is not Fault.OK],
            value=start.fault.value if start.fault is not Fault.OK else Fault.FAIL_BEFORE.value,
            description="fault",
            style=wide,
        )
        self.every_attempt: Any = widgets.Dropdown(
            options=[("first attempt only", False), ("every attempt", True)],
            value=start.every_attempt,
            description="fails on",
            style=wide,
        )
        self.keys: Any = widgets.Checkbox(
            value=start.idempotency_keys, description="idempotency keys", indent=False
        )
        self.parallel: Any = widgets.Checkbox(
            value=start.parallel_compensation, description="parallel compensation", indent=False
        )
        self.button: Any = widgets.Button(
            description="Run the saga", button_style="primary", icon="play"
        )
        self.status: Any = widgets.Label(value="ready")
        self.output: Any = widgets.Output()
        self.widget: Any = widgets.VBox(
            [
                widgets.HBox([self.step, self.fault, self.every_attempt]),
                widgets.HBox([self.keys, self.parallel]),
                widgets.HBox([self.button, self.status]),
                self.output,
            ]
        )
        self.button.on_click(lambda _button: self.click())

    def choice(self) -> TripChoice:
        """The choice the widgets show now."""
        return TripChoice(
            step=self.step.value or None,
            fault=Fault(self.fault.value),
            every_attempt=bool(self.every_attempt.value),
            idempotency_keys=bool(self.keys.value),
            parallel_compensation=bool(self.parallel.value),
        )

    def click(self) -> asyncio.Task[TripRun | None]:
        """What the Run button does: schedule :meth:`run` with the widgets' choice, return its task.

        The kernel calls button callbacks while its event loop is running, so
        the run cannot be awaited here; it is scheduled on that loop instead.

        Raises:
            ConfigurationError: no event loop is running (outside a kernel or ``async`` code).
        """
        choice = self.choice()
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.status.value = "no running event loop: await playground.run() in a cell instead"
            raise ConfigurationError(
                "TripPlayground.click() needs a running asyncio event loop, as in a Jupyter "
                "kernel. Outside one, call `await playground.run(choice)` instead."
            ) from None
        self.button.disabled = True  # at once, so a second click cannot start a second run
        self.task = loop.create_task(self.run(choice))
        return self.task

    async def run(self, choice: TripChoice | None = None) -> TripRun | None:
        """Run the saga with ``choice`` (default: the widgets' choice) and show it in the output.

        The button is disabled while the saga runs and enabled again however
        the run ends. An error (the server is down or stops answering, say) is
        shown in the output instead of being raised, so a click never ends in an
        unseen error; a server that stops is reported within a few seconds. When
        the run's task is cancelled (an interrupted kernel), the output says so
        and the cancellation goes on.

        Returns:
            The run, or ``None`` if it could not be run.
        """
        choice = choice or self.choice()
        self._runs += 1
        workflow_id = f"{self._id_prefix}-{self._runs}"
        self.button.disabled = True
        self.status.value = f"running {workflow_id}: {choice.describe()} …"
        self.output.outputs = ()
        try:
            run = await run_trip(
                self._client,
                choice,
                workdir=self._workdir,
                workflow_id=workflow_id,
                task_queue=self._task_queue,
            )
        except ServerUnreachable as err:
            self._show_error(
                f"{workflow_id} could not run: the Temporal server does not answer", err
            )
            return None
        except Exception as err:
            self._show_error(f"{workflow_id} could not run", err)
            return None
        except asyncio.CancelledError as err:
            task = asyncio.current_task()
            if task is not None and task.cancelling():  # cancelled from outside: say so, go on
                self._show_error(
                    f"{workflow_id} was cancelled",
                    "The run was cancelled (the kernel was interrupted or its task was "
                    "cancelled). Click the button to run again.",
                )
                raise
            # A stray CancelledError from the SDK: most likely the server went away.
            clear = await explain_unreachable(self._client, err)
            if clear is not None:
                self._show_error(
                    f"{workflow_id} could not run: the Temporal server does not answer", clear
                )
            else:
                self._show_error(f"{workflow_id} could not run", err)
            return None
        finally:
            self.button.disabled = False
        verdict = "consistent" if run.consistent else "NOT consistent"
        self.status.value = f"{workflow_id}: {run.outcome}, world {verdict}"
        self.output.outputs = run.outputs()
        self.last_run = run
        return run

    def _show_error(self, status: str, error: BaseException | str) -> None:
        """Say in the status line and the output area why the run did not finish."""
        self.status.value = status
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        self.output.outputs = ({"output_type": "stream", "name": "stderr", "text": text + "\n"},)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """Display the widget box when the playground is a cell's result.

        The plain-text form (what a notebook without widgets shows) is one
        stable line instead of the widgets' long ``repr``.
        """
        bundle = self.widget._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/plain"] = repr(self)
        return bundle

    def __repr__(self) -> str:
        return f"<TripPlayground: {self.choice().describe()}; {self._runs} run(s) so far>"
