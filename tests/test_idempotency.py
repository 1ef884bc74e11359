"""IdempotencyStore: one effect per key, across retries, threads, processes and a real worker."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from temporalio import activity
from temporalio.client import Client

from sagakit import (
    ConfigurationError,
    IdempotencyConflict,
    IdempotencyError,
    IdempotencyInProgress,
    IdempotencyKeyError,
    IdempotencyLeaseLost,
    IdempotencyOptions,
    IdempotencyStore,
    SagakitError,
    key_from_activity,
    key_from_parts,
    running_worker,
)
from sagakit._idempotency import MAX_KEY_LENGTH, fingerprint
from tests.helpers import release_together
from tests.idempotency_helpers import WORKER_SCRIPT, Effects, FakeClock
from tests.idempotency_workflows import Charge, ChargeWithWorkflowKey, ChargeWorkflow, Receipt


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "keys.db"


@pytest.fixture
def store(db: Path, clock: FakeClock) -> IdempotencyStore:
    return IdempotencyStore(db, clock=clock)


# --- the basic contract -------------------------------------------------------------------------


def test_repeat_returns_the_stored_result_without_running_the_effect(
    store: IdempotencyStore,
) -> None:
    effects = Effects()

    @store.idempotent(key=lambda charge: charge.payment_id)
    def charge(charge: Charge) -> Receipt:
        number = effects.record(charge.payment_id)
        return Receipt(charge.payment_id, charge.amount_cents, number, ["card ****4242"])

    first = charge(Charge("pay-1", 500))
    again = charge(Charge("pay-1", 500))

    assert first == again == Receipt("pay-1", 500, 1, ["card ****4242"])
    assert isinstance(again, Receipt)
    assert effects.calls == ["pay-1"]
    record = store.get("pay-1")
    assert record is not None
    assert (record.status, record.attempts) == ("completed", 1)
    assert record.result == {
        "payment_id": "pay-1",
        "amount_cents": 500,
        "charge_number": 1,
        "lines": ["card ****4242"],
    }


def test_run_without_a_decorator_stores_plain_json(store: IdempotencyStore) -> None:
    effects = Effects()

    def effect() -> dict[str, Any]:
        return {"booked": effects.record("room"), "nights": (1, 2)}

    first = store.run("booking-7", {"room": 12}, effect)
    again = store.run("booking-7", {"room": 12}, effect)

    # The first call returns the decoded stored value too, so both look the same.
    assert first == again == {"booked": 1, "nights": [1, 2]}
    assert effects.calls == ["room"]


def test_positional_and_keyword_calls_have_the_same_fingerprint(store: IdempotencyStore) -> None:
    effects = Effects()

    @store.idempotent(key=lambda order_id, quantity=1: f"order-{order_id}")
    def reserve(order_id: int, quantity: int = 1) -> int:
        return effects.record((order_id, quantity))

    assert reserve(7) == reserve(7, 1) == reserve(order_id=7, quantity=1) == 1
    assert effects.calls == [(7, 1)]


def test_same_key_different_request_is_a_conflict(store: IdempotencyStore) -> None:
    effects = Effects()

    @store.idempotent(key=lambda charge: charge.payment_id)
    def charge(charge: Charge) -> Receipt:
        return Receipt(charge.payment_id, charge.amount_cents, effects.record(charge))

    charge(Charge("pay-2", 500))
    with pytest.raises(IdempotencyConflict, match=r"'pay-2' was already used for a different"):
        charge(Charge("pay-2", 900))

    assert charge(Charge("pay-2", 500)).amount_cents == 500  # the original still answers
    assert len(effects.calls) == 1


def test_two_functions_cannot_share_a_key(store: IdempotencyStore) -> None:
    @store.idempotent(key=lambda order_id: f"order-{order_id}")
    def book(order_id: int) -> str:
        return "booked"

    @store.idempotent(key=lambda order_id: f"order-{order_id}")
    def cancel(order_id: int) -> str:
        return "cancelled"

    assert book(1) == "booked"
    with pytest.raises(IdempotencyConflict):
        cancel(1)


def test_request_selector_limits_what_is_fingerprinted(store: IdempotencyStore) -> None:
    effects = Effects()

    @store.idempotent(
        key=lambda charge, trace_id: charge.payment_id, request=lambda charge, trace_id: charge
    )
    def charge(charge: Charge, trace_id: str) -> int:
        return effects.record(trace_id)

    assert charge(Charge("pay-3", 100), "trace-a") == charge(Charge("pay-3", 100), "trace-b") == 1
    assert effects.calls == ["trace-a"]


def test_fingerprint_is_canonical() -> None:
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"tags": {"x", "y", "z"}}) == fingerprint({"tags": {"z", "y", "x"}})
    assert fingerprint(Charge("p", 1)) == fingerprint(
        {"payment_id": "p", "amount_cents": 1, "idempotency_key": ""}
    )
    assert fingerprint({"a": 1}) != fingerprint({"a": 2})
    with pytest.raises(IdempotencyError, match="cannot be fingerprinted"):
        fingerprint({"when": object()})


# --- failures, in-flight duplicates and leases --------------------------------------------------


def test_a_failed_effect_releases_the_key_for_a_retry(store: IdempotencyStore) -> None:
    effects = Effects()

    def declined() -> str:
        effects.record("declined")
        raise ValueError("card declined")

    with pytest.raises(ValueError, match="card declined"):
        store.run("pay-4", {"amount": 5}, declined)
    record = store.get("pay-4")
    assert record is not None
    assert (record.status, record.error) == ("failed", "ValueError: card declined")

    assert store.run("pay-4", {"amount": 5}, lambda: f"charged #{effects.record('ok')}") == (
        "charged #2"
    )
    record = store.get("pay-4")
    assert record is not None
    assert (record.status, record.attempts) == ("completed", 2)
    assert record.error == "ValueError: card declined"  # the last error stays for the record
    assert effects.calls == ["declined", "ok"]


def test_a_failed_key_stays_bound_to_its_request(store: IdempotencyStore) -> None:
    def boom() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        store.run("pay-5", {"amount": 5}, boom)
    with pytest.raises(IdempotencyConflict):
        store.run("pay-5", {"amount": 6}, lambda: "other")


def test_an_unstorable_result_is_reported_and_the_key_kept(store: IdempotencyStore) -> None:
    # The effect ran: the key must not let it run again (tests/test_idempotency_reliability.py).
    with pytest.raises(IdempotencyError, match="cannot be stored as JSON"):
        store.run("pay-6", {}, lambda: {"when": object()})
    record = store.get("pay-6")
    assert record is not None
    assert record.status == "poisoned"


def test_a_duplicate_waits_for_the_running_call_and_gets_its_result(db: Path) -> None:
    effects = Effects()
    in_effect, finish, polling = threading.Event(), threading.Event(), threading.Event()

    def sleep(seconds: float) -> None:
        polling.set()
        time.sleep(seconds)

    store = IdempotencyStore(
        db, IdempotencyOptions(wait_timeout=timedelta(seconds=60)), sleep=sleep
    )

    def slow_charge() -> dict[str, int]:
        number = effects.record("charge")
        in_effect.set()
        assert finish.wait(30)
        return {"charge": number}

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(store.run, "pay-7", {"amount": 1}, slow_charge)
        assert in_effect.wait(30)
        duplicate = pool.submit(store.run, "pay-7", {"amount": 1}, slow_charge)
        assert polling.wait(30)  # the duplicate found the claim and is polling
        record = store.get("pay-7")
        assert record is not None
        assert record.status == "in_progress"
        finish.set()
        assert first.result(30) == duplicate.result(30) == {"charge": 1}
    assert effects.calls == ["charge"]


def test_a_duplicate_gives_up_after_wait_timeout(db: Path) -> None:
    effects = Effects()
    in_effect, finish = threading.Event(), threading.Event()
    store = IdempotencyStore(db, IdempotencyOptions(wait_timeout=timedelta(0)))

    def slow_charge() -> str:
        effects.record("charge")
        in_effect.set()
        assert finish.wait(30)
        return "charged"

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(store.run, "pay-8", {"amount": 1}, slow_charge)
        assert in_effect.wait(30)
        with pytest.raises(IdempotencyInProgress, match="'pay-8' is held by a call that is still"):
            store.run("pay-8", {"amount": 1}, slow_charge)
        finish.set()
        assert first.result(30) == "charged"
    assert store.run("pay-8", {"amount": 1}, slow_charge) == "charged"
    assert effects.calls == ["charge"]


def test_an_expired_lease_is_taken_over_and_the_slow_owner_learns_it(
    db: Path, clock: FakeClock
) -> None:
    # Only with on_abandoned="rerun" (at least once); the default refuses instead.
    store = IdempotencyStore(db, IdempotencyOptions(on_abandoned="rerun"), clock=clock)
    effects = Effects()
    in_effect, finish = threading.Event(), threading.Event()

    def slow_charge() -> int:
        number = effects.record("slow")
        in_effect.set()
        assert finish.wait(30)
        return number

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(store.run, "pay-9", {"amount": 1}, slow_charge)
        assert in_effect.wait(30)
        clock.advance(store.options.lock_timeout + timedelta(seconds=1))
        assert store.run("pay-9", {"amount": 1}, lambda: effects.record("takeover")) == 2
        finish.set()
        with pytest.raises(IdempotencyLeaseLost, match="may have run twice"):
            slow.result(30)
    assert store.run("pay-9", {"amount": 1}, lambda: effects.record("again")) == 2
    assert effects.calls == ["slow", "takeover"]


def _create_effects_table(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT NOT NULL, pid INTEGER)")
    conn.close()


def _count_effects(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        (count,) = conn.execute("SELECT COUNT(*) FROM effects").fetchone()
    conn.close()
    return int(count)


def _spawn(mode: str, db: Path, key: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT), mode, str(db), key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_claim_left_by_a_crashed_process_is_reclaimed_after_the_lease_with_rerun(
    db: Path, clock: FakeClock
) -> None:
    # The default policy refuses the abandoned claim instead (test_idempotency_reliability.py).
    _create_effects_table(db)
    IdempotencyStore(db).records()  # create the schema before the child starts
    child = _spawn("hang", db, "pay-10")
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "in effect"
    finally:
        child.kill()  # the owner dies inside the effect: its claim stays behind
        child.communicate(timeout=30)

    clock.now = datetime.now(UTC)
    store = IdempotencyStore(
        db, IdempotencyOptions(wait_timeout=timedelta(0), on_abandoned="rerun"), clock=clock
    )
    with pytest.raises(IdempotencyInProgress):
        store.run("pay-10", {"amount": 100}, lambda: "second")

    clock.advance(store.options.lock_timeout + timedelta(seconds=1))
    assert store.run("pay-10", {"amount": 100}, lambda: "second") == "second"
    record = store.get("pay-10")
    assert record is not None
    assert (record.status, record.attempts) == ("completed", 2)
    assert _count_effects(db) == 1  # the child's effect row; "second" did not write one


# --- retention ----------------------------------------------------------------------------------


def test_expired_keys_behave_as_new_and_can_be_purged(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    effects = Effects()

    def effect() -> int:
        return effects.record("charge")

    assert store.run("pay-11", {"amount": 1}, effect) == 1
    clock.advance(timedelta(hours=23))
    assert store.run("pay-11", {"amount": 1}, effect) == 1
    assert store.purge_expired() == 0

    clock.advance(timedelta(hours=1, seconds=1))  # 24 h after the result was stored
    assert store.run("pay-11", {"amount": 2}, effect) == 2  # a new binding: no conflict
    record = store.get("pay-11")
    assert record is not None
    assert (record.attempts, record.created_at) == (1, clock.now)

    clock.advance(timedelta(days=2))
    assert store.purge_expired() == 1
    assert store.records() == []


# --- many callers -------------------------------------------------------------------------------


def test_64_threads_with_one_key_run_the_effect_once(db: Path) -> None:
    effects = Effects()
    store = IdempotencyStore(db, IdempotencyOptions(wait_timeout=timedelta(seconds=60)))
    barrier = threading.Barrier(64)

    def effect() -> dict[str, int]:
        number = effects.record("charge")
        time.sleep(0.05)  # stay in flight while the others arrive
        return {"charge": number}

    def call(_: int) -> dict[str, int]:
        barrier.wait()
        return store.run("pay-12", {"amount": 1}, effect)

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(call, range(64)))

    assert results == [{"charge": 1}] * 64
    assert effects.calls == ["charge"]


@pytest.mark.slow
def test_8_processes_with_one_key_run_the_effect_once(db: Path) -> None:
    _create_effects_table(db)
    IdempotencyStore(db).records()
    children = [_spawn("race", db, "pay-13") for _ in range(8)]
    outputs = release_together(children)

    assert [child.returncode for child in children] == [0] * 8
    results = [result for output in outputs for result in json.loads(output)]
    assert len(results) == 64
    assert len({json.dumps(result) for result in results}) == 1
    assert _count_effects(db) == 1


async def test_async_functions_are_supported(store: IdempotencyStore) -> None:
    effects = Effects()

    @store.idempotent(key=lambda charge: charge.payment_id)
    async def charge(charge: Charge) -> Receipt:
        number = effects.record(charge.payment_id)
        await asyncio.sleep(0.05)
        return Receipt(charge.payment_id, charge.amount_cents, number)

    results = await asyncio.gather(*(charge(Charge("pay-14", 300)) for _ in range(16)))

    assert results == [Receipt("pay-14", 300, 1)] * 16
    assert effects.calls == ["pay-14"]


# --- keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "is empty"),
        ("   ", "is empty"),
        ("k" * (MAX_KEY_LENGTH + 1), "256 characters long"),
        (42, "must be a str, got int"),
        (None, "must be a str, got NoneType"),
    ],
)
def test_bad_keys_are_refused_with_advice(store: IdempotencyStore, key: Any, message: str) -> None:
    effects = Effects()
    with pytest.raises(IdempotencyKeyError, match=message) as caught:
        store.run(key, {}, lambda: effects.record("never"))
    assert "A good key names one business operation" in str(caught.value)
    assert isinstance(caught.value, ConfigurationError)
    assert effects.calls == []


def test_the_longest_key_is_accepted(store: IdempotencyStore) -> None:
    assert store.run("k" * MAX_KEY_LENGTH, {}, lambda: "ok") == "ok"


def test_key_from_parts() -> None:
    assert key_from_parts("order", 42, "charge") == "order/42/charge"
    assert key_from_parts("a/b", "c") != key_from_parts("a", "b/c")
    long_key = key_from_parts("x" * 300)
    assert long_key.startswith("sha256:")
    assert len(long_key) <= MAX_KEY_LENGTH
    with pytest.raises(IdempotencyKeyError, match="at least one part"):
        key_from_parts()
    with pytest.raises(IdempotencyKeyError, match="part 2 is empty"):
        key_from_parts("order", "")
    with pytest.raises(IdempotencyKeyError, match="must be str or int"):
        key_from_parts("order", 1.5)  # type: ignore[arg-type]


def test_key_from_activity_outside_an_activity_says_what_to_do() -> None:
    with pytest.raises(IdempotencyKeyError, match="only works inside a running Temporal activity"):
        key_from_activity()


def test_errors_belong_to_the_sagakit_tree() -> None:
    for error in (IdempotencyConflict, IdempotencyInProgress, IdempotencyLeaseLost):
        assert issubclass(error, IdempotencyError)
    assert issubclass(IdempotencyKeyError, IdempotencyError)
    assert issubclass(IdempotencyKeyError, ConfigurationError)
    assert issubclass(IdempotencyError, SagakitError)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retention": timedelta(0)}, "retention must be positive"),
        ({"wait_timeout": timedelta(seconds=-1)}, "wait_timeout must be zero or positive"),
        ({"lock_timeout": timedelta(days=2)}, "must be shorter than retention"),
    ],
)
def test_bad_options_are_refused(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        IdempotencyOptions(**options)


def test_an_in_memory_database_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="needs a file path"):
        IdempotencyStore(":memory:")


def test_table_shows_keys_status_fingerprint_and_result(store: IdempotencyStore) -> None:
    def declined() -> None:
        raise ValueError("declined")

    store.run("pay-15", {"amount": 1}, lambda: {"ok": True})
    with pytest.raises(ValueError, match="declined"):
        store.run("pay-16", {"amount": 2}, declined)

    lines = store.table().splitlines()
    assert lines[0].split() == [
        "key",
        "status",
        "attempts",
        "fingerprint",
        "result",
        "/",
        "last",
        "error",
    ]
    assert lines[2].split() == [
        "pay-15",
        "completed",
        "1",
        fingerprint({"amount": 1})[:12],
        '{"ok":true}',
    ]
    assert lines[3].split()[:4] == ["pay-16", "failed", "1", fingerprint({"amount": 2})[:12]]
    assert lines[3].endswith("ValueError: declined")


# --- a property: any sequence of calls ----------------------------------------------------------

calls = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),  # key
        st.sampled_from([1, 2]),  # request
        st.booleans(),  # the effect raises
        st.sampled_from([timedelta(0), timedelta(0), timedelta(hours=1), timedelta(hours=25)]),
    ),
    max_size=12,
)


@settings(max_examples=40, deadline=None)
@given(calls)
def test_any_sequence_of_calls_matches_the_model(
    sequence: list[tuple[str, int, bool, timedelta]],
) -> None:
    retention = IdempotencyOptions().retention
    clock = FakeClock()
    # key -> (request, completed?, result, expires_at): what the store should remember
    model: dict[str, tuple[int, bool, str | None, datetime]] = {}
    with tempfile.TemporaryDirectory() as folder:
        store = IdempotencyStore(Path(folder) / "keys.db", clock=clock)
        for step, (key, request, fails, wait) in enumerate(sequence):
            clock.advance(wait)
            ran: list[int] = []

            def effect(step: int = step, fails: bool = fails, ran: list[int] = ran) -> str:
                ran.append(step)
                if fails:
                    raise ValueError("declined")
                return f"result-{step}"

            known = model.get(key)
            if known is None or known[3] <= clock.now:
                expected = "run"
            elif known[0] != request:
                expected = "conflict"
            elif known[1]:
                expected = "stored"
            else:
                expected = "run"  # the last attempt failed: the key was released

            if expected == "conflict":
                with pytest.raises(IdempotencyConflict):
                    store.run(key, request, effect)
            elif expected == "stored":
                assert known is not None
                assert store.run(key, request, effect) == known[2]
            elif fails:
                with pytest.raises(ValueError, match="declined"):
                    store.run(key, request, effect)
                model[key] = (request, False, None, clock.now + retention)
            else:
                assert store.run(key, request, effect) == f"result-{step}"
                model[key] = (request, True, f"result-{step}", clock.now + retention)
            assert ran == ([step] if expected == "run" else [])


# --- a real Temporal activity -------------------------------------------------------------------


def lose_the_first_attempts_result(
    attempts: list[int],
) -> Callable[[Callable[[Charge], Receipt]], Callable[[Charge], Receipt]]:
    """Raise after the effect on attempt 1, as if the worker died before reporting."""

    def decorate(fn: Callable[[Charge], Receipt]) -> Callable[[Charge], Receipt]:
        @functools.wraps(fn)
        def wrapper(charge: Charge) -> Receipt:
            attempt = activity.info().attempt
            attempts.append(attempt)
            receipt = fn(charge)
            if attempt == 1:
                raise RuntimeError("worker lost the result after charging")
            return receipt

        return wrapper

    return decorate


@pytest.mark.parametrize("workflow_class", [ChargeWorkflow, ChargeWithWorkflowKey])
async def test_a_retried_activity_charges_once(
    client: Client,
    task_queue: str,
    store: IdempotencyStore,
    workflow_class: type[ChargeWorkflow | ChargeWithWorkflowKey],
) -> None:
    charge_effects = Effects()
    attempts: list[int] = []
    by_workflow_key = workflow_class is ChargeWithWorkflowKey

    @activity.defn(name="charge_card")
    @lose_the_first_attempts_result(attempts)
    @store.idempotent(key=(lambda charge: charge.idempotency_key) if by_workflow_key else None)
    def charge_card(charge: Charge) -> Receipt:
        number = charge_effects.record(charge.payment_id)
        return Receipt(charge.payment_id, charge.amount_cents, number, [f"attempt {number}"])

    workflow_id = f"charge-{uuid.uuid4()}"
    async with running_worker(
        client, task_queue=task_queue, workflows=[workflow_class], activities=[charge_card]
    ):
        receipt = await client.execute_workflow(
            workflow_class.__name__,
            Charge("pay-17", 1200),
            id=workflow_id,
            task_queue=task_queue,
            result_type=Receipt,
        )

    assert receipt == Receipt("pay-17", 1200, 1, ["attempt 1"])
    assert attempts == [1, 2]
    assert charge_effects.calls == ["pay-17"]
    (record,) = store.records()
    assert (record.status, record.attempts) == ("completed", 1)
    if by_workflow_key:
        assert uuid.UUID(record.key)  # a workflow.uuid4(), made once and replayed
    else:
        assert record.key == key_from_parts(client.namespace, workflow_id, "1")
