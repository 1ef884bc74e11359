"""FaultPlan: explicit rules, seeded random faults, validation, serialisation."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.converter import DataConverter

from sagakit import ConfigurationError, Fault, FaultPlan, FaultRule, SagakitError, UnknownStepError

STEPS = ("book_hotel", "book_flight", "book_excursion", "cancel_hotel")


def test_empty_plan_injects_nothing() -> None:
    plan = FaultPlan()
    assert all(plan.decide(step, attempt) is Fault.OK for step in STEPS for attempt in (1, 2, 9))
    assert str(plan) == "FaultPlan: no faults (every attempt succeeds)"


def test_of_lists_faults_per_attempt_and_later_attempts_succeed() -> None:
    plan = FaultPlan.of(
        {"book_hotel": [Fault.FAIL_AFTER, Fault.HANG], "add_milk": ["ok", "fail_before"]}
    )
    assert plan.decide("book_hotel", 1) is Fault.FAIL_AFTER
    assert plan.decide("book_hotel", 2) is Fault.HANG
    assert plan.decide("book_hotel", 3) is Fault.OK
    assert plan.decide("add_milk", 1) is Fault.OK
    assert plan.decide("add_milk", 2) is Fault.FAIL_BEFORE
    assert plan.decide("book_flight", 1) is Fault.OK
    assert plan.steps == ("add_milk", "book_hotel")


def test_an_explicit_ok_wins_over_random_faults() -> None:
    plan = FaultPlan.of({"book_hotel": [Fault.OK]}) | FaultPlan.random(seed=1, rate=1.0)
    assert plan.decide("book_hotel", 1) is Fault.OK
    assert plan.decide("book_hotel", 2) is not Fault.OK


def test_rules_can_be_limited_to_one_key() -> None:
    plan = FaultPlan.of({"book_hotel": [Fault.FAIL_PERMANENT]}, key="t2")
    assert plan.decide("book_hotel", 1, key="t1") is Fault.OK
    assert plan.decide("book_hotel", 1, key="t2") is Fault.FAIL_PERMANENT


def test_always_applies_to_every_attempt() -> None:
    plan = FaultPlan.always("add_milk", Fault.FAIL_BEFORE)
    assert {plan.decide("add_milk", a) for a in range(1, 50)} == {Fault.FAIL_BEFORE}


def test_or_tries_left_rules_first_and_keeps_random_settings() -> None:
    left = FaultPlan.of({"book_hotel": [Fault.FAIL_BEFORE]})
    right = FaultPlan.of({"book_hotel": [Fault.FAIL_PERMANENT], "book_flight": [Fault.HANG]})
    both = left | right | FaultPlan.random(seed=1, rate=1.0, faults=[Fault.FAIL_AFTER])
    assert both.decide("book_hotel", 1) is Fault.FAIL_BEFORE
    assert both.decide("book_flight", 1) is Fault.HANG
    assert both.decide("book_excursion", 1) is Fault.FAIL_AFTER
    assert both.seed == 1


def test_random_decisions_do_not_depend_on_call_order() -> None:
    plan = FaultPlan.random(seed=42, rate=0.4, faults=list(Fault)[1:])
    questions = [(s, a, k) for s in STEPS for a in range(1, 6) for k in ("t1", "t2", "")]
    in_order = {q: plan.decide(*q) for q in questions}
    shuffled = questions[:]
    random.Random(7).shuffle(shuffled)
    again = FaultPlan.random(seed=42, rate=0.4, faults=list(Fault)[1:])
    assert {q: again.decide(*q) for q in shuffled} == in_order
    assert set(in_order.values()) - {Fault.OK}, "a 40% rate should fail some of 60 attempts"


def test_different_seeds_give_different_faults() -> None:
    questions = [(s, a, f"t{i}") for s in STEPS for a in (1, 2) for i in range(20)]
    one = [FaultPlan.random(seed=1, rate=0.5).decide(*q) for q in questions]
    two = [FaultPlan.random(seed=2, rate=0.5).decide(*q) for q in questions]
    assert one != two


def test_random_rate_is_roughly_honoured() -> None:
    plan = FaultPlan.random(seed=2024, rate=0.3)
    faults = [plan.decide("book_hotel", 1, key=f"trip-{i}") for i in range(2000)]
    failed = sum(f is not Fault.OK for f in faults) / len(faults)
    assert 0.25 < failed < 0.35
    assert {f for f in faults if f is not Fault.OK} == {Fault.FAIL_BEFORE, Fault.FAIL_AFTER}


def test_random_faults_can_be_limited_to_some_steps() -> None:
    plan = FaultPlan.random(seed=3, rate=1.0, steps=["book_flight"])
    assert plan.decide("book_flight", 1) is not Fault.OK
    assert plan.decide("book_hotel", 1) is Fault.OK


@given(
    seed=st.integers(),
    rate=st.floats(min_value=0, max_value=1),
    step=st.sampled_from(STEPS),
    attempt=st.integers(min_value=1, max_value=100),
    key=st.text(max_size=8),
)
def test_decide_is_a_pure_function_of_its_inputs(
    seed: int, rate: float, step: str, attempt: int, key: str
) -> None:
    first = FaultPlan.random(seed=seed, rate=rate).decide(step, attempt, key)
    assert FaultPlan.random(seed=seed, rate=rate).decide(step, attempt, key) is first
    if rate == 0:
        assert first is Fault.OK


def test_unknown_step_lists_valid_names_and_suggests_a_fix() -> None:
    plan = FaultPlan.of({"book_hotle": [Fault.FAIL_AFTER]})
    with pytest.raises(UnknownStepError) as caught:
        plan.validate(STEPS)
    message = str(caught.value)
    assert "'book_hotle'" in message
    assert "Did you mean 'book_hotel'?" in message
    assert "book_excursion, book_flight, book_hotel, cancel_hotel" in message
    assert isinstance(caught.value, ConfigurationError)
    assert isinstance(caught.value, SagakitError)


def test_known_steps_are_checked_when_the_plan_is_built_and_used() -> None:
    with pytest.raises(UnknownStepError, match="Valid step names"):
        FaultPlan.of({"fly": [Fault.FAIL_AFTER]}, known_steps=STEPS)
    with pytest.raises(UnknownStepError):
        FaultPlan(rules=(FaultRule("fly", Fault.HANG),), known_steps=STEPS)
    plan = FaultPlan.of({"book_hotel": [Fault.FAIL_AFTER]}).with_known_steps(STEPS)
    with pytest.raises(UnknownStepError):
        plan.decide("fly", 1)
    assert FaultPlan.random(seed=1, rate=0.5, steps=["nope"]).steps == ("nope",)
    with pytest.raises(UnknownStepError):
        FaultPlan.random(seed=1, rate=0.5, steps=["nope"]).validate(STEPS)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: FaultPlan(rate=1.5, seed=1), "not a probability"),
        (lambda: FaultPlan(rate=0.5), "no seed"),
        (lambda: FaultPlan.random(seed=1, rate=0.5, faults=[]), "no random_faults"),
        (lambda: FaultRule("book_hotel", Fault.HANG, attempt=0), "attempts start at 1"),
        (lambda: FaultPlan.of({"book_hotel": ["explode"]}), "is not a fault"),
    ],
)
def test_bad_plans_are_refused_with_advice(build: object, fragment: str) -> None:
    assert callable(build)
    with pytest.raises(ConfigurationError, match=fragment):
        build()


def test_describe_reads_like_the_plan() -> None:
    plan = FaultPlan.of({"book_hotel": [Fault.FAIL_AFTER]}, key="t1") | FaultPlan.random(
        seed=9, rate=0.25, steps=["add_milk"]
    )
    assert str(plan) == (
        "FaultPlan:\n"
        "  - book_hotel, attempt 1 (key 't1'): FAIL_AFTER\n"
        "  - otherwise, on add_milk: 25% of attempts get one of FAIL_BEFORE, FAIL_AFTER (seed 9)"
    )
    preview = FaultPlan.of({"book_hotel": [Fault.FAIL_AFTER]}).preview(["book_hotel"], attempts=2)
    header, rule, row = preview.splitlines()
    assert header.split() == ["step", "#1", "#2"]
    assert set(rule.replace(" ", "")) == {"-"}
    assert row.split() == ["book_hotel", "FAIL_AFTER", "OK"]


def test_plan_travels_through_temporal_serialisation() -> None:
    plan = FaultPlan.of(
        {"book_hotel": [Fault.FAIL_AFTER, Fault.HANG]}, key="t1"
    ) | FaultPlan.random(seed=5, rate=0.2, faults=[Fault.FAIL_BEFORE], steps=["add_milk"])
    plan = plan.with_known_steps([*STEPS, "add_milk"])
    converter = DataConverter.default.payload_converter
    [payload] = converter.to_payloads([plan])
    [back] = converter.from_payloads([payload], [FaultPlan])
    assert back == plan
    assert isinstance(back.rules[0].fault, Fault)
    assert back.decide("book_hotel", 2, key="t1") is Fault.HANG


def test_a_late_attempt_is_a_zombie_whose_effect_may_land_after_its_timeout() -> None:
    plan = FaultPlan.of({"book_hotel": ["late"]})
    assert plan.decide("book_hotel", 1) is Fault.LATE
    assert Fault.LATE.lands_late
    assert not Fault.LATE.caller_sees_success
    assert not Fault.LATE.has_effect  # not while the attempt still counts
    assert [f for f in Fault if f.lands_late] == [Fault.LATE]
    assert "book_hotel, attempt 1: LATE" in plan.describe()
