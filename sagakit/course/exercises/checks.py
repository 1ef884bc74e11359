"""One check per exercise: run the learner's workflow for real and say, in plain words, what is wrong.

Every check takes the path of the learner's module (by default
``scratch/<file>``, where an ``%%exercise_module`` cell saves it) and returns a
:class:`~sagakit.course.exercises.harness.CheckResult`; it never raises for a
mistake in the exercise. In a notebook::

    from sagakit.course.exercises import check
    print(await check("first-workflow"))

==================  ===========================  ======================================
exercise            file                         the workflow class it looks for
==================  ===========================  ======================================
first-workflow      exercise_first_workflow.py   ``HelloWorkflow``
determinism         exercise_determinism.py      ``CouponWorkflow``
retry-policy        exercise_retry_policy.py     ``PaymentWorkflow``
compensation        exercise_compensation.py     ``TripWorkflow``
saga                exercise_saga.py             ``BreakfastSagaWorkflow``
order-fulfilment    exercise_order_fulfilment.py ``OrderFulfilmentWorkflow``
==================  ===========================  ======================================

The checks that involve the simulated services run each fault scenario on a
fresh world of its own, on a worker of its own, all at the same time.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from temporalio.client import Client, WorkflowHistory

from sagakit import ConfigurationError, Fault, FaultPlan
from sagakit.course.client import connect
from sagakit.course.exercises.activities import (
    CARD_DECLINED,
    CardPayment,
    CouponRequest,
    charge_card,
    send_coupon,
)
from sagakit.course.exercises.harness import (
    CheckLine,
    CheckResult,
    ExerciseLoadError,
    Run,
    activity_order,
    find_workflow,
    load_exercise,
    run_workflow,
    scratch_path,
)
from sagakit.course.lessons.welcome import Greeting, compose_greeting
from sagakit.course.logs import quiet_expected_failures
from sagakit.course.processes import run_explained
from sagakit.course.replay import replay
from sagakit.course.services.activities import (
    BreakfastActivities,
    BreakfastRequest,
    TripActivities,
    TripRequest,
)
from sagakit.course.services.invariants import check_world
from sagakit.course.services.order_invariants import check_orders
from sagakit.course.services.orders import OrderActivities, OrderRequest, Shop, ShopSeed
from sagakit.course.services.world import World, WorldSeed
from sagakit.history import event_type_name

__all__ = [
    "EXERCISES",
    "Exercise",
    "UnknownExercise",
    "check",
    "check_breakfast_saga",
    "check_compensation",
    "check_determinism",
    "check_first_workflow",
    "check_order_fulfilment",
    "check_retry_policy",
    "order_scenarios",
]

Checker = Callable[..., Awaitable[CheckResult]]


class UnknownExercise(ConfigurationError):
    """:func:`check` was given a name that is not an exercise."""


# -- shared pieces ----------------------------------------------------------------------------


async def _load(
    exercise: str, path: str | os.PathLike[str], class_name: str
) -> tuple[type | None, list[CheckLine]]:
    name = Path(path).name
    try:
        module = load_exercise(path)
        cls = find_workflow(module, class_name, name)
    except ExerciseLoadError as err:
        return None, [CheckLine(False, str(err))]
    return cls, [CheckLine(True, f"{name} imports and defines the workflow {class_name}")]


_SANDBOX_HINTS = (
    ("datetime", "ask Temporal for the time with workflow.now()"),
    ("time.time", "ask Temporal for the time with workflow.time()"),
    ("random", "draw random numbers from workflow.random()"),
    ("uuid", "make ids with workflow.uuid4()"),
)


def _did_not_complete(run: Run, file_name: str, context: str) -> str | None:
    """Why a run that should complete did not (it never ended, or it failed), or ``None``."""
    problem = _unfinished(run, file_name)
    if problem is not None:
        return f"{context}: {problem}"
    if run.status == "failed":
        return f"The workflow failed: {run.error_type}: {run.message}"
    return None


def _unfinished(run: Run, file_name: str, deadline_s: int = 20) -> str | None:
    """Say in plain words why a run did not end, or ``None`` if it ended."""
    if run.status == "no_worker":
        return (
            f"the worker refused the workflow ({run.message}). Check the @workflow.defn and "
            "@workflow.run decorators, and that the module does nothing but define things."
        )
    if run.status == "stuck":
        message = run.message.split(" If this is code")[0].strip()
        where = f" on line {run.line} of your cell" if run.line else ""
        hint = next((h for word, h in _SANDBOX_HINTS if word in message), "")
        if "from inside a workflow" in message:
            return f"the workflow sandbox stopped your workflow{where}: {message}" + (
                f" Instead, {hint}." if hint else ""
            )
        return (
            f"your workflow raised an error{where} and Temporal keeps retrying that workflow "
            f"task (a bug in workflow code never fails the workflow): {message}"
        )
    if run.status == "too_slow":
        return (
            f"the workflow did not finish within {deadline_s} s{_last_event(run.history)}. Does "
            "it wait for something that never happens, or retry forever (set maximum_attempts "
            "in the RetryPolicy)?"
        )
    return None


def _last_event(history: WorkflowHistory | None) -> str:
    """Say what a run that did not end did last, from its History: ``" (the last event …)"``."""
    if history is None or not history.events:
        return ""
    first, last = history.events[0], history.events[-1]
    kind = event_type_name(last)
    if last.HasField("activity_task_scheduled_event_attributes"):
        kind += f" {last.activity_task_scheduled_event_attributes.activity_type.name}"
    after = last.event_time.ToDatetime() - first.event_time.ToDatetime()
    return (
        f" (the last event in its History: {kind}, {after.total_seconds():.0f} s after the start)"
    )


def _attempts(history: WorkflowHistory | None) -> int:
    if history is None:
        return 0
    return max(
        (
            e.activity_task_started_event_attributes.attempt
            for e in history.events
            if e.HasField("activity_task_started_event_attributes")
        ),
        default=0,
    )


async def _client(client: Client | None) -> Client:
    return client if client is not None else await connect()


_Path = str | os.PathLike[str]
_Inner = Callable[[_Path, Client], Awaitable[CheckResult]]


class _Check(Protocol):
    """The public form of a check: the path is optional, the client too."""

    def __call__(
        self, path: _Path | None = None, *, client: Client | None = None
    ) -> Awaitable[CheckResult]: ...


def _todo_lines(path: _Path) -> tuple[int, ...]:
    """The lines of the learner's file that still say TODO (file line N is cell line N)."""
    try:
        source = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return ()
    return tuple(n for n, line in enumerate(source.splitlines(), start=1) if "TODO" in line)


def _exercise_check(file: str) -> Callable[[_Inner], _Check]:
    """Make ``checker`` a check of the module ``file`` (by default ``scratch/<file>``).

    The check runs with a connected client, and a server that goes away becomes a
    clear error: without this, a server that stops in the middle of a check leaves
    it waiting for its workers and workflows (20 s or more) and ends in a bare
    ``CancelledError``; with it, the check raises
    :class:`~sagakit.course.errors.ServerUnreachable` within a few seconds. While a
    check fails, the result also lists the lines that still say ``TODO``.
    """

    def decorate(checker: _Inner) -> _Check:
        @functools.wraps(checker)
        async def checked(
            path: _Path | None = None, *, client: Client | None = None
        ) -> CheckResult:
            where = path if path is not None else scratch_path(file)
            connected = await _client(client)
            result = await run_explained(connected, checker(where, connected))
            if result.passed:
                return result
            return replace(result, todo_lines=await asyncio.to_thread(_todo_lines, where))

        return checked

    return decorate


# -- 00 · first workflow ------------------------------------------------------------------------


@_exercise_check("exercise_first_workflow.py")
async def check_first_workflow(path: _Path, client: Client) -> CheckResult:
    """Check exercise 00: ``HelloWorkflow`` returns what the activity ``compose_greeting`` made."""
    cls, lines = await _load("first-workflow", path, "HelloWorkflow")
    result = CheckResult("first-workflow", tuple(lines))
    if cls is None:
        return result
    name = Path(path).name
    run = await run_workflow(
        client,
        cls,
        Greeting(name="Grace"),
        name="first-workflow",
        activities=[compose_greeting],
        file_name=name,
    )
    problem = _did_not_complete(run, name, "Running it with Greeting(name='Grace')")
    if problem is not None:
        lines.append(CheckLine(False, problem))
        return CheckResult("first-workflow", tuple(lines))
    expected = "Welcome to Sagas in Practice, Grace!"
    if "compose_greeting" in activity_order(run.history):
        lines.append(CheckLine(True, "it calls the activity compose_greeting"))
    else:
        lines.append(
            CheckLine(
                False,
                "it never calls the activity compose_greeting. Work with the outside world "
                "belongs in activities: await workflow.execute_activity(compose_greeting, "
                "greeting, start_to_close_timeout=timedelta(seconds=10)).",
            )
        )
    if run.result == expected:
        lines.append(CheckLine(True, f"it returns the activity's greeting: {expected!r}"))
    else:
        lines.append(
            CheckLine(
                False,
                f"it returned {run.result!r}; it should return what the activity returned, "
                f"{expected!r}.",
            )
        )
    return CheckResult("first-workflow", tuple(lines))


# -- 04 · determinism ---------------------------------------------------------------------------

_MACHINE_CALLS = (
    (re.compile(r"(?<![\w.])datetime\.(now|utcnow|today)\("), "workflow.now()"),
    (re.compile(r"(?<![\w.])date\.today\("), "workflow.now().date()"),
    (re.compile(r"(?<![\w.])time\.(time|time_ns)\("), "workflow.time()"),
    (re.compile(r"(?<![\w.])random\.(\w+)\("), "workflow.random().{0}(...)"),
    (re.compile(r"(?<![\w.])uuid\.uuid[147]\("), "workflow.uuid4()"),
)


def _machine_calls(source: str) -> list[CheckLine]:
    found: list[CheckLine] = []
    for number, line in enumerate(source.splitlines(), start=1):
        code = line.split("#")[0]
        for pattern, twin in _MACHINE_CALLS:
            match = pattern.search(code)
            if match:
                call = match.group(0).rstrip("(")
                suggestion = twin.format(*match.groups())
                found.append(
                    CheckLine(
                        False,
                        f"line {number} calls {call}(), which asks the machine, so a replay "
                        f"would get another answer: use {suggestion}.",
                    )
                )
    return found


@_exercise_check("exercise_determinism.py")
async def check_determinism(path: _Path, client: Client) -> CheckResult:
    """Check exercise 04: ``CouponWorkflow`` takes time, randomness and ids from Temporal."""
    cls, lines = await _load("determinism", path, "CouponWorkflow")
    if cls is None:
        return CheckResult("determinism", tuple(lines))
    name = Path(path).name
    source = await asyncio.to_thread(Path(path).read_text)
    if "sandbox_unrestricted" in source or "sandboxed=False" in source:
        lines.append(
            CheckLine(
                False,
                "the code switches the workflow sandbox off. Keep it on: it is what catches "
                "non-deterministic calls before they corrupt a replay.",
            )
        )
    lines.extend(_machine_calls(source))
    run = await run_workflow(
        client,
        cls,
        CouponRequest(customer="grace"),
        name="determinism",
        activities=[send_coupon],
        file_name=name,
    )
    problem = _did_not_complete(run, name, "Running it")
    if problem is not None:
        lines.append(CheckLine(False, problem))
        return CheckResult("determinism", tuple(lines))
    lines.append(CheckLine(True, "it runs in the sandbox and completes"))
    lines.extend(_coupon_lines(run))
    assert run.history is not None
    report = await replay(run.history, [cls])
    if report.ok:
        lines.append(CheckLine(True, "replaying its History makes the same decisions"))
    else:
        lines.append(
            CheckLine(False, f"replaying its History fails: {report.error_type}: {report.message}")
        )
    return CheckResult("determinism", tuple(lines))


def _coupon_lines(run: Run) -> list[CheckLine]:
    coupon = run.result if isinstance(run.result, dict) else {}
    lines: list[CheckLine] = []
    if activity_order(run.history).count("send_coupon") == 1:
        lines.append(CheckLine(True, "it sends the coupon once, with the activity send_coupon"))
    else:
        lines.append(
            CheckLine(
                False, "it should call the activity send_coupon exactly once, with the coupon"
            )
        )
    if coupon.get("percent") in (5, 10, 15) and str(coupon.get("code", "")).startswith("C-"):
        lines.append(CheckLine(True, "the coupon has a code starting with 'C-' and 5, 10 or 15 %"))
    else:
        lines.append(
            CheckLine(
                False,
                f"the workflow returned {run.result!r}; it should return the Coupon it sent, with "
                "a code starting with 'C-' and a percent of 5, 10 or 15.",
            )
        )
    assert run.history is not None
    started = run.history.events[0].event_time.ToDatetime(tzinfo=UTC)
    try:
        expires = datetime.fromisoformat(str(coupon.get("expires")))
    except ValueError:
        expires = None
    if expires is not None and expires.tzinfo is None:
        expires = expires.replace(tzinfo=UTC)
    if expires is not None and abs(expires - (started + timedelta(days=7))) < timedelta(minutes=1):
        lines.append(CheckLine(True, "it expires 7 days after the workflow started"))
    else:
        lines.append(
            CheckLine(
                False,
                "the coupon should expire valid_days (7) days after workflow.now(), written "
                "with .isoformat().",
            )
        )
    return lines


# -- 07 · retry policy ----------------------------------------------------------------------------


@_exercise_check("exercise_retry_policy.py")
async def check_retry_policy(path: _Path, client: Client) -> CheckResult:
    """Check exercise 07: ``PaymentWorkflow``'s retry policy fits a flaky card gateway."""
    cls, lines = await _load("retry-policy", path, "PaymentWorkflow")
    if cls is None:
        return CheckResult("retry-policy", tuple(lines))
    name = Path(path).name
    temporal = client
    with quiet_expected_failures():
        flaky, declined = await asyncio.gather(
            *(
                run_workflow(
                    temporal,
                    cls,
                    payment,
                    name=f"retry-{label}",
                    activities=[charge_card],
                    file_name=name,
                )
                for label, payment in (
                    ("flaky", CardPayment("grace", 30, timeouts=3)),
                    ("declined", CardPayment("alan", 30, declined=True)),
                )
            )
        )
    for run in (flaky, declined):
        problem = _unfinished(run, name)
        if problem is not None:
            lines.append(CheckLine(False, f"Running it: {problem}"))
            return CheckResult("retry-policy", tuple(lines))

    tries = _attempts(flaky.history)
    if flaky.status == "completed":
        lines.append(
            CheckLine(
                True,
                f"with 3 gateway timeouts in a row, the payment goes through ({tries} attempts)",
            )
        )
    else:
        lines.append(
            CheckLine(
                False,
                f"with 3 gateway timeouts in a row, the payment failed after {tries} attempt(s): "
                "allow at least 4 attempts (maximum_attempts=4 or 5).",
            )
        )
    policy = _scheduled_policy(flaky.history)
    if policy is None:
        lines.append(CheckLine(False, "the workflow never called the activity charge_card"))
        return CheckResult("retry-policy", tuple(lines))
    most, first_wait = policy
    if most == 0:
        lines.append(
            CheckLine(
                False,
                "maximum_attempts is not set, so a payment would be retried forever: "
                "set it to 4 or 5.",
            )
        )
    elif most > 5:
        lines.append(CheckLine(False, f"maximum_attempts is {most}: allow at most 5 attempts."))
    else:
        lines.append(
            CheckLine(True, f"it gives up after at most {most} attempt{'s' if most > 1 else ''}")
        )
    if first_wait <= 1.0:
        lines.append(CheckLine(True, "the first retry comes within a second"))
    else:
        lines.append(
            CheckLine(
                False,
                f"the first retry waits {first_wait:g} s while the customer waits at the till: "
                "keep initial_interval at 1 second or less.",
            )
        )
    tried = _attempts(declined.history)
    if declined.status == "completed":
        lines.append(
            CheckLine(
                False,
                "with a declined card the workflow completed; let the error fail the workflow "
                "(do not catch it).",
            )
        )
    elif tried == 1:
        lines.append(CheckLine(True, "a declined card is tried once and the workflow fails"))
    else:
        lines.append(
            CheckLine(
                False,
                f"a declined card was tried {tried} times, but retrying cannot change the "
                f"answer: add {CARD_DECLINED!r} to non_retryable_error_types.",
            )
        )
    return CheckResult("retry-policy", tuple(lines))


def _scheduled_policy(history: WorkflowHistory | None) -> tuple[int, float] | None:
    if history is None:
        return None
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            policy = event.activity_task_scheduled_event_attributes.retry_policy
            return policy.maximum_attempts, policy.initial_interval.ToTimedelta().total_seconds()
    return None


# -- scenarios on simulated services ------------------------------------------------------------


@dataclass(frozen=True)
class _Scenario:
    """One fault scenario: what to run, what to inject, and how it should end."""

    name: str
    title: str
    arg: Any
    faults: FaultPlan = field(default_factory=FaultPlan)
    should_complete: bool = True
    world_seed: WorldSeed | None = None
    shop_seed: ShopSeed | None = None


@dataclass(frozen=True)
class _Outcome:
    scenario: _Scenario
    run: Run
    problems: tuple[str, ...]


async def _run_scenarios(
    cls: type,
    scenarios: Sequence[_Scenario],
    *,
    file_name: str,
    client: Client,
    activities_for: Callable[[Path, _Scenario], list[Callable[..., Any]]],
    consistency: Callable[[Path, _Scenario, Run], list[str]],
) -> list[_Outcome]:
    with (
        quiet_expected_failures(),
        tempfile.TemporaryDirectory(prefix="sagakit-exercise-") as folder,
    ):

        async def one(scenario: _Scenario) -> _Outcome:
            db = Path(folder) / f"{scenario.name}.db"
            activities = activities_for(db, scenario)
            run = await run_workflow(
                client,
                cls,
                scenario.arg,
                name=scenario.name,
                activities=activities,
                file_name=file_name,
            )
            if run.status in ("completed", "failed"):
                problems = consistency(db, scenario, run)
            else:
                problems = []
            return _Outcome(scenario, run, tuple(problems))

        return list(await asyncio.gather(*(one(s) for s in scenarios)))


def _verdict(outcome: _Outcome, file_name: str, *, undone: str) -> CheckLine:
    scenario, run = outcome.scenario, outcome.run
    problem = _unfinished(run, file_name)
    if problem is not None:
        return CheckLine(False, f"{scenario.title}: {problem}")
    problems: list[str] = []
    if scenario.should_complete and run.status == "failed":
        problems.append(
            f"the workflow failed ({run.error_type}: {run.message}), but this fault is "
            "transient: retry the step (a RetryPolicy with a few attempts)"
        )
    if not scenario.should_complete and run.status == "completed":
        problems.append(
            "the workflow completed, but it could not do its job: after compensating, "
            "re-raise the error so that Temporal records a failure"
        )
    problems.extend(outcome.problems)
    if problems:
        return CheckLine(False, f"{scenario.title}: " + "; ".join(problems) + ".")
    ending = "completed" if scenario.should_complete else f"failed, {undone}"
    return CheckLine(True, f"{scenario.title}: {ending}, the world is consistent")


def _world_problems(db: Path) -> list[str]:
    return [v.message for v in check_world(World(db)).violations]


# -- 08 · compensation by hand --------------------------------------------------------------------

_TRIP_UNDO_RANK = {"cancel_excursion": 0, "cancel_flight": 1, "cancel_hotel": 2}


@_exercise_check("exercise_compensation.py")
async def check_compensation(path: _Path, client: Client) -> CheckResult:
    """Check exercise 08: ``TripWorkflow`` undoes what it booked, newest first, and fails."""
    cls, lines = await _load("compensation", path, "TripWorkflow")
    if cls is None:
        return CheckResult("compensation", tuple(lines))
    name = Path(path).name

    def trip(trip_id: str) -> TripRequest:
        return TripRequest(trip_id=trip_id, customer="grace", idempotency_key=trip_id)

    scenarios = [
        _Scenario("trip-ok", "no faults", trip("t-ok")),
        _Scenario(
            "trip-refused",
            "the excursion is refused",
            trip("t-refused"),
            FaultPlan.always("book_excursion", Fault.FAIL_PERMANENT),
            should_complete=False,
        ),
        _Scenario(
            "trip-lost",
            "the flight is booked but every reply is lost",
            trip("t-lost"),
            FaultPlan.always("book_flight", Fault.FAIL_AFTER),
            should_complete=False,
        ),
    ]

    def consistency(db: Path, scenario: _Scenario, run: Run) -> list[str]:
        problems: list[str] = []
        undos = [a for a in activity_order(run.history) if a in _TRIP_UNDO_RANK]
        if scenario.name == "trip-refused":
            wanted = sorted(undos, key=_TRIP_UNDO_RANK.__getitem__)
            if "cancel_flight" not in undos or "cancel_hotel" not in undos:
                problems.append(
                    "the hotel and the flight were booked, so both must be cancelled "
                    f"(the workflow ran {', '.join(undos) or 'no undo'})"
                )
            elif _undone_oldest_first(run.history):
                problems.append(
                    f"the undos ran in the order {', '.join(undos)}; undo the newest step "
                    f"first ({', '.join(wanted)}): walk the list with reversed(...), or "
                    "start every undo at once with asyncio.gather(...) if they do not "
                    "depend on each other"
                )
        world = _world_problems(db)
        if scenario.name == "trip-lost" and any("flight" in p for p in world):
            problems.append(
                "the flight step failed after booking, and the flight is still booked: "
                "add each undo to the list BEFORE calling its step (the cancel is harmless "
                "when nothing was booked)"
            )
        problems.extend(world)
        return problems

    outcomes = await _run_scenarios(
        cls,
        scenarios,
        file_name=name,
        client=client,
        activities_for=lambda db, s: TripActivities(db, s.faults).all(),
        consistency=consistency,
    )
    lines.extend(_verdict(o, name, undone="nothing left booked") for o in outcomes)
    return CheckResult("compensation", tuple(lines))


def _undone_oldest_first(history: WorkflowHistory | None) -> bool:
    """True if an older step's undo started in an EARLIER workflow task than a newer one's.

    Undos started together (``asyncio.gather``, in one workflow task) have no order,
    which is right when they do not depend on each other; lesson 09 runs a saga's
    undos that way. Undos started one after another must go newest first.
    """
    if history is None:
        return False
    started: dict[str, int] = {}
    for event in history.events:
        if event.HasField("activity_task_scheduled_event_attributes"):
            attrs = event.activity_task_scheduled_event_attributes
            name = attrs.activity_type.name
            if name in _TRIP_UNDO_RANK:
                started.setdefault(name, attrs.workflow_task_completed_event_id)
    return any(
        started[older] < started[newer]
        for older in started
        for newer in started
        if _TRIP_UNDO_RANK[older] > _TRIP_UNDO_RANK[newer]
    )


# -- 09 · a saga with sagakit.Saga ----------------------------------------------------------------

_CEREAL_G = 45
"""Grams of cereal every breakfast of the check asks for (not the default, 60)."""
_MILK_ML = 150
"""Millilitres of milk every breakfast of the check asks for (not the default, 200)."""


@_exercise_check("exercise_saga.py")
async def check_breakfast_saga(path: _Path, client: Client) -> CheckResult:
    """Check exercise 09: ``BreakfastSagaWorkflow`` is all-or-nothing under faults."""
    cls, lines = await _load("saga", path, "BreakfastSagaWorkflow")
    if cls is None:
        return CheckResult("saga", tuple(lines))
    name = Path(path).name

    def breakfast(breakfast_id: str) -> BreakfastRequest:
        # Not the defaults: a workflow that builds a new request and drops them is caught.
        return BreakfastRequest(breakfast_id, cereal_g=_CEREAL_G, milk_ml=_MILK_ML)

    scenarios = [
        _Scenario(
            "saga-ok", f"no faults ({_CEREAL_G} g cereal, {_MILK_ML} ml milk)", breakfast("b-ok")
        ),
        _Scenario(
            "saga-lost",
            "the cereal is poured but the first reply is lost",
            breakfast("b-lost"),
            FaultPlan.of({"add_cereal": [Fault.FAIL_AFTER]}),
        ),
        _Scenario(
            "saga-milk",
            "the fridge has too little milk",
            breakfast("b-milk"),
            should_complete=False,
            world_seed=WorldSeed(milk_ml=100),
        ),
        _Scenario(
            "saga-bowl",
            "the bowl comes out but every reply is lost",
            breakfast("b-bowl"),
            FaultPlan.always("get_bowl", Fault.FAIL_AFTER),
            should_complete=False,
        ),
    ]

    def activities_for(db: Path, scenario: _Scenario) -> list[Callable[..., Any]]:
        World(db, seed=scenario.world_seed)
        return BreakfastActivities(db, scenario.faults).all()

    def consistency(db: Path, scenario: _Scenario, run: Run) -> list[str]:
        world = _world_problems(db)
        problems: list[str] = []
        if any("poured 2 times" in p or "happened 2 times" in p for p in world):
            problems.append(
                "a retried step had its effect twice: send the breakfast id as the "
                "idempotency key to every step"
            )
        if scenario.name == "saga-bowl" and any("bowl" in p for p in world):
            problems.append(
                "get_bowl failed after taking the bowl out, and the bowl is still out: "
                "saga.add(...) the undo BEFORE running its step"
            )
        if scenario.name == "saga-ok" and run.status == "completed":
            problems.extend(_amount_problems(db, scenario.arg))
        problems.extend(world)
        return problems

    outcomes = await _run_scenarios(
        cls,
        scenarios,
        file_name=name,
        client=client,
        activities_for=activities_for,
        consistency=consistency,
    )
    lines.extend(_verdict(o, name, undone="nothing left out") for o in outcomes)
    return CheckResult("saga", tuple(lines))


def _amount_problems(db: Path, request: BreakfastRequest) -> list[str]:
    """Say so if the bowl does not hold what the request asked for (a field was dropped)."""
    served = [b for b in World(db).breakfast.breakfasts() if b.breakfast_id == request.breakfast_id]
    if not served:
        return []
    bowl = served[0]
    if (bowl.cereal_g, bowl.milk_ml) == (request.cereal_g, request.milk_ml):
        return []
    return [
        f"the bowl holds {bowl.cereal_g} g cereal and {bowl.milk_ml} ml milk, but the request "
        f"asked for {request.cereal_g} g and {request.milk_ml} ml: a new BreakfastRequest "
        "loses the fields you do not copy, so keep them all with "
        "dataclasses.replace(breakfast, idempotency_key=...)"
    ]


# -- 13 · capstone: order fulfilment -------------------------------------------------------------

_ORDER_STEPS_DONE = ("reserve_inventory", "charge_payment", "ship_order")


def order_scenarios() -> list[_Scenario]:
    """Return the capstone's fault scenarios (also listed in the capstone notebook)."""
    return [
        _Scenario("order-ok", "no faults", OrderRequest("o-ok")),
        _Scenario(
            "order-lost-charge",
            "the payment reply is lost once",
            OrderRequest("o-lost-charge"),
            FaultPlan.of({"charge_payment": [Fault.FAIL_AFTER]}),
        ),
        _Scenario(
            "order-lost-reserve",
            "the warehouse reply is lost once",
            OrderRequest("o-lost-reserve"),
            FaultPlan.of({"reserve_inventory": [Fault.FAIL_AFTER]}),
        ),
        _Scenario(
            "order-flaky-ship",
            "the courier fails twice before it answers",
            OrderRequest("o-flaky-ship"),
            FaultPlan.of({"ship_order": [Fault.FAIL_BEFORE, Fault.FAIL_BEFORE]}),
        ),
        _Scenario(
            "order-out-of-stock",
            "two teapots ordered, one on the shelf",
            OrderRequest("o-out-of-stock", item="teapot", quantity=2),
            should_complete=False,
        ),
        _Scenario(
            "order-declined",
            "bob cannot pay",
            OrderRequest("o-declined", customer="bob", amount=40),
            should_complete=False,
        ),
        _Scenario(
            "order-courier-refuses",
            "the courier refuses the parcel",
            OrderRequest("o-courier-refuses"),
            FaultPlan.always("ship_order", Fault.FAIL_PERMANENT),
            should_complete=False,
        ),
        _Scenario(
            "order-charge-always-lost",
            "the card is charged but every reply is lost",
            OrderRequest("o-charge-always-lost"),
            FaultPlan.always("charge_payment", Fault.FAIL_AFTER),
            should_complete=False,
        ),
        _Scenario(
            "order-ship-always-lost",
            "the parcel is booked but every reply is lost",
            OrderRequest("o-ship-always-lost"),
            FaultPlan.always("ship_order", Fault.FAIL_AFTER),
            should_complete=False,
        ),
    ]


@_exercise_check("exercise_order_fulfilment.py")
async def check_order_fulfilment(path: _Path, client: Client) -> CheckResult:
    """Check the capstone: ``OrderFulfilmentWorkflow`` keeps the shop consistent under faults."""
    cls, lines = await _load("order-fulfilment", path, "OrderFulfilmentWorkflow")
    if cls is None:
        return CheckResult("order-fulfilment", tuple(lines))
    name = Path(path).name

    def activities_for(db: Path, scenario: _Scenario) -> list[Callable[..., Any]]:
        return OrderActivities(db, scenario.faults, seed=scenario.shop_seed).all()

    def consistency(db: Path, scenario: _Scenario, run: Run) -> list[str]:
        report = check_orders(Shop(db))
        problems: list[str] = []
        texts = " ".join(report.problems)
        if re.search(r"(reserved|charged|shipped) \d+ times", texts):
            problems.append(
                "a retried step had its effect twice: send an idempotency key (the order id) "
                "to every step"
            )
        if "not all-or-nothing" in texts:
            problems.append(
                "when a step fails, undo what the order did so far: saga.add(...) each undo "
                "before its step (release_inventory, refund_payment, cancel_shipment)"
            )
        if scenario.should_complete and run.status == "completed":
            order = scenario.arg.order_id
            tracking = Shop(db).shipping.active(order)
            if not tracking or run.result != tracking[0].tracking:
                problems.append(
                    f"the workflow returned {run.result!r}; return the parcel's tracking number "
                    "(the .tracking of what ship_order returned)"
                )
        problems.extend(report.problems)
        return problems

    outcomes = await _run_scenarios(
        cls,
        order_scenarios(),
        file_name=name,
        client=client,
        activities_for=activities_for,
        consistency=consistency,
    )
    lines.extend(_verdict(o, name, undone="everything undone") for o in outcomes)
    return CheckResult("order-fulfilment", tuple(lines))


# -- by name -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """One exercise: its check and the file the learner writes."""

    name: str
    """The exercise's name, as :func:`check` takes it."""
    file: str
    """The module's file name; ``%%exercise_module`` saves it in ``scratch/``."""
    workflow: str
    """The workflow class the check looks for."""
    checker: Checker
    """The check itself."""


EXERCISES: dict[str, Exercise] = {
    e.name: e
    for e in (
        Exercise(
            "first-workflow", "exercise_first_workflow.py", "HelloWorkflow", check_first_workflow
        ),
        Exercise("determinism", "exercise_determinism.py", "CouponWorkflow", check_determinism),
        Exercise("retry-policy", "exercise_retry_policy.py", "PaymentWorkflow", check_retry_policy),
        Exercise("compensation", "exercise_compensation.py", "TripWorkflow", check_compensation),
        Exercise("saga", "exercise_saga.py", "BreakfastSagaWorkflow", check_breakfast_saga),
        Exercise(
            "order-fulfilment",
            "exercise_order_fulfilment.py",
            "OrderFulfilmentWorkflow",
            check_order_fulfilment,
        ),
    )
}
"""Every exercise, by name."""


async def check(
    exercise: str, path: str | os.PathLike[str] | None = None, *, client: Client | None = None
) -> CheckResult:
    """Run the check of ``exercise`` on the learner's module.

    Args:
        exercise: The exercise's name (a key of :data:`EXERCISES`), e.g. ``"saga"``.
        path: The learner's module; by default ``scratch/<the exercise's file>`` in the
            working directory, where ``%%exercise_module <exercise>`` saves it.
        client: A connected client; by default :func:`sagakit.connect` is used.

    Returns:
        The result; print it (✓, ✗ and ○ lines go to stdout).

    Raises:
        UnknownExercise: ``exercise`` is not an exercise name.
        ServerUnreachable: the Temporal server does not answer, or stops answering
            during the check; raised within a few seconds, naming its address and
            how to start it again.
    """
    found = EXERCISES.get(exercise)
    if found is None:
        raise UnknownExercise(
            f"There is no exercise {exercise!r}; use one of {', '.join(EXERCISES)}."
        )
    return await found.checker(path, client=client)
