"""IdempotencyStore when things go wrong: unstorable results, dead owners, cancellation, bad files.

Each test here describes a failure the store used to handle badly (an effect run
twice, a key held for a whole lease, a raw exception); tests/test_idempotency.py
has the everyday contract.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from temporalio import activity
from temporalio.client import Client, WorkflowFailureError
from temporalio.exceptions import ActivityError, ApplicationError

from sagakit import (
    IdempotencyConflict,
    IdempotencyError,
    IdempotencyInProgress,
    IdempotencyKeyError,
    IdempotencyOptions,
    IdempotencyStore,
    key_from_parts,
    running_worker,
)
from sagakit._idempotency import IdempotencyAbandoned, IdempotencyPoisoned, fingerprint
from tests.idempotency_helpers import WORKER_SCRIPT, Effects, FakeClock
from tests.idempotency_workflows import Charge, ChargeRetriedThreeTimes, Receipt

LEASE = IdempotencyOptions().lock_timeout


class WorkerStopped(BaseException):
    """Stands for KeyboardInterrupt or SystemExit: not an Exception, stops the effect half-way."""


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "keys.db"


@pytest.fixture
def store(db: Path, clock: FakeClock) -> IdempotencyStore:
    return IdempotencyStore(db, clock=clock)


def _status(store: IdempotencyStore, key: str) -> str:
    record = store.get(key)
    assert record is not None
    return record.status


def _abandon_by_interrupting(store: IdempotencyStore, key: str, effects: Effects) -> None:
    """Leave ``key`` abandoned: its effect ran, then the worker stopped before storing."""

    def charge_then_stop() -> str:
        effects.record("charged, then the worker stopped")
        raise WorkerStopped

    with pytest.raises(WorkerStopped):
        store.run(key, {"amount": 1}, charge_then_stop)


# --- a result that cannot be stored ------------------------------------------------------------


def test_an_unstorable_result_runs_the_effect_once_and_poisons_the_key(
    store: IdempotencyStore,
) -> None:
    effects = Effects()

    def charge() -> dict[str, Any]:
        effects.record("charged")
        return {"charged_at": object()}  # not JSON

    for _ in range(3):  # three attempts of a retried activity
        with pytest.raises(IdempotencyPoisoned, match="'pay-1' ran") as caught:
            store.run("pay-1", {"amount": 5}, charge)
        assert caught.value.non_retryable
        assert isinstance(caught.value, ApplicationError | IdempotencyError)
        assert caught.value.type == "IdempotencyPoisoned"
        assert str(caught.value).startswith("The effect for idempotency key 'pay-1' ran")

    assert effects.calls == ["charged"]
    record = store.get("pay-1")
    assert record is not None
    assert (record.status, record.attempts) == ("poisoned", 1)
    assert record.error is not None
    assert "not JSON serializable" in record.error


def test_a_result_that_does_not_match_its_annotation_poisons_the_key(
    store: IdempotencyStore,
) -> None:
    effects = Effects()

    @store.idempotent(key=lambda charge: charge.payment_id)
    def charge(charge: Charge) -> Receipt:
        effects.record(charge.payment_id)
        return cast(Receipt, {"payment_id": charge.payment_id})  # fields missing

    for _ in range(3):
        with pytest.raises(IdempotencyPoisoned, match="read back as Receipt"):
            charge(Charge("pay-2", 700))
    assert effects.calls == ["pay-2"]
    assert _status(store, "pay-2") == "poisoned"


async def test_temporal_does_not_retry_a_poisoned_key(
    client: Client, task_queue: str, store: IdempotencyStore
) -> None:
    # The workflow's retry policy allows 3 attempts and lists no non-retryable types.
    charges = Effects()
    attempts: list[int] = []

    @activity.defn(name="charge_card")
    @store.idempotent(key=lambda charge: charge.payment_id)
    def charge_card(charge: Charge) -> Receipt:
        attempts.append(activity.info().attempt)
        charges.record(charge.payment_id)
        return cast(Receipt, {"payment_id": charge.payment_id})  # not a Receipt

    async with running_worker(
        client,
        task_queue=task_queue,
        workflows=[ChargeRetriedThreeTimes],
        activities=[charge_card],
    ):
        with pytest.raises(WorkflowFailureError) as caught:
            await client.execute_workflow(
                ChargeRetriedThreeTimes.run,
                Charge("pay-3", 1200),
                id=f"poisoned-{uuid.uuid4()}",
                task_queue=task_queue,
            )

    assert charges.calls == ["pay-3"]
    assert attempts == [1]
    activity_error = caught.value.cause
    assert isinstance(activity_error, ActivityError)
    failure = activity_error.cause
    assert isinstance(failure, ApplicationError)
    assert (failure.type, failure.non_retryable) == ("IdempotencyPoisoned", True)


def test_a_poisoned_key_is_settled_by_hand(store: IdempotencyStore) -> None:
    effects = Effects()
    with pytest.raises(IdempotencyPoisoned):
        store.run("pay-4", {"amount": 1}, lambda: {"at": object(), "n": effects.record("a")})

    resolved = store.resolve("pay-4", {"charge_id": "ch_1"})  # looked up in the card network
    assert (resolved.status, resolved.result) == ("completed", {"charge_id": "ch_1"})
    stored: object = store.run("pay-4", {"amount": 1}, lambda: effects.record("b"))
    assert stored == {"charge_id": "ch_1"}

    with pytest.raises(IdempotencyPoisoned):
        store.run("pay-5", {"amount": 1}, lambda: {"at": object(), "n": effects.record("c")})
    released = store.release("pay-5")  # the card network has no such charge
    assert released.status == "failed"
    assert released.error is not None
    assert released.error.startswith("released by hand (was poisoned)")
    assert store.run("pay-5", {"amount": 1}, lambda: effects.record("d")) == 3
    assert effects.calls == ["a", "c", "d"]


# --- a claim whose owner never finished --------------------------------------------------------


def _create_effects_table(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS effects (key TEXT NOT NULL, pid INTEGER)")
        conn.commit()


def _effects_of(db: Path, key: str) -> list[int]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [pid for (pid,) in conn.execute("SELECT pid FROM effects WHERE key = ?", (key,))]


def _kill_a_worker_inside_the_effect(db: Path, key: str) -> None:
    """A child process claims ``key``, performs the effect and is killed before storing it."""
    _create_effects_table(db)
    IdempotencyStore(db).records()  # create the schema before the child starts
    child = subprocess.Popen(
        [sys.executable, str(WORKER_SCRIPT), "hang", str(db), key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "in effect"
    finally:
        child.kill()
        child.communicate(timeout=30)


def test_a_claim_left_by_a_killed_worker_is_refused_until_someone_settles_it(
    db: Path, clock: FakeClock
) -> None:
    _kill_a_worker_inside_the_effect(db, "pay-6")
    clock.now = datetime.now(UTC) + LEASE + timedelta(seconds=1)  # the lease has ended
    store = IdempotencyStore(db, clock=clock)
    effects = Effects()

    for _ in range(2):
        with pytest.raises(IdempotencyAbandoned, match="may or may not have happened") as caught:
            store.run("pay-6", {"amount": 100}, lambda: effects.record("second charge"))
        assert "store.resolve('pay-6', result)" in str(caught.value)
    assert effects.calls == []
    assert _status(store, "pay-6") == "abandoned"

    (pid,) = _effects_of(db, "pay-6")  # the card network says: charged once, by the dead worker
    store.resolve("pay-6", f"charged by {pid}")
    stored: object = store.run("pay-6", {"amount": 100}, lambda: effects.record("x"))
    assert stored == f"charged by {pid}"
    assert effects.calls == []
    assert _effects_of(db, "pay-6") == [pid]


def test_recover_asks_the_other_system_instead_of_running_the_effect_again(
    db: Path, clock: FakeClock
) -> None:
    _kill_a_worker_inside_the_effect(db, "pay-7")
    clock.now = datetime.now(UTC) + LEASE + timedelta(seconds=1)
    store = IdempotencyStore(db, clock=clock)
    effects = Effects()

    def look_up() -> str:
        found = _effects_of(db, "pay-7")
        return f"charged by {found[0]}" if found else f"charged now #{effects.record('charge')}"

    (pid,) = _effects_of(db, "pay-7")
    result = store.run("pay-7", {"amount": 100}, lambda: effects.record("blind"), recover=look_up)
    assert result == f"charged by {pid}"
    assert effects.calls == []
    record = store.get("pay-7")
    assert record is not None
    assert (record.status, record.attempts) == ("completed", 2)
    # From now on the key answers like any completed one, recover or not.
    assert store.run("pay-7", {"amount": 100}, lambda: "no") == f"charged by {pid}"


def test_a_slow_owner_past_its_lease_is_not_doubled_and_still_stores_its_result(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    effects = Effects()
    in_effect, finish = threading.Event(), threading.Event()

    def slow_charge() -> int:
        number = effects.record("slow")
        in_effect.set()
        assert finish.wait(30)
        return number

    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(store.run, "pay-8", {"amount": 1}, slow_charge)
        assert in_effect.wait(30)
        clock.advance(LEASE + timedelta(seconds=1))
        assert _status(store, "pay-8") == "abandoned"
        with pytest.raises(IdempotencyAbandoned):
            store.run("pay-8", {"amount": 1}, lambda: effects.record("second"))
        finish.set()
        assert slow.result(30) == 1  # no IdempotencyLeaseLost: nobody took the key over
    assert store.run("pay-8", {"amount": 1}, lambda: effects.record("third")) == 1
    assert effects.calls == ["slow"]


def test_an_effect_interrupted_half_way_abandons_the_key(store: IdempotencyStore) -> None:
    effects = Effects()
    _abandon_by_interrupting(store, "pay-9", effects)

    assert _status(store, "pay-9") == "abandoned"
    with pytest.raises(IdempotencyAbandoned, match="WorkerStopped"):
        store.run("pay-9", {"amount": 1}, lambda: effects.record("again"))
    assert effects.calls == ["charged, then the worker stopped"]


def test_a_recover_function_that_raises_leaves_the_key_abandoned(store: IdempotencyStore) -> None:
    effects = Effects()
    _abandon_by_interrupting(store, "pay-10", effects)

    def network_down() -> int:
        raise ConnectionError("card network unreachable")

    with pytest.raises(ConnectionError):
        store.run("pay-10", {"amount": 1}, lambda: effects.record("blind"), recover=network_down)
    assert _status(store, "pay-10") == "abandoned"
    with pytest.raises(IdempotencyAbandoned, match="card network unreachable"):
        store.run("pay-10", {"amount": 1}, lambda: effects.record("blind"))
    assert store.run("pay-10", {"amount": 1}, lambda: 0, recover=lambda: 42) == 42
    assert effects.calls == ["charged, then the worker stopped"]


def test_an_abandoned_key_runs_again_after_a_deliberate_release(store: IdempotencyStore) -> None:
    effects = Effects()
    _abandon_by_interrupting(store, "pay-11", effects)

    record = store.release("pay-11")
    assert (record.status, record.error) == (
        "failed",
        "released by hand (was abandoned): WorkerStopped",
    )
    assert store.run("pay-11", {"amount": 1}, lambda: effects.record("again")) == 2


def test_settling_by_hand_refuses_keys_that_need_no_settling(
    store: IdempotencyStore, clock: FakeClock
) -> None:
    store.run("done", {"amount": 1}, lambda: "ok")
    with pytest.raises(IdempotencyError, match="'done': it is completed"):
        store.release("done")
    with pytest.raises(IdempotencyError, match="'done': it is completed"):
        store.resolve("done", "other")
    with pytest.raises(IdempotencyError, match="no live record"):
        store.resolve("never-used", "ok")
    with pytest.raises(IdempotencyError, match="cannot be stored as JSON"):
        store.resolve("done", object())
    assert store.run("done", {"amount": 1}, lambda: "not again") == "ok"


async def test_a_cancelled_async_effect_abandons_the_key(store: IdempotencyStore) -> None:
    effects = Effects()
    started = asyncio.Event()

    async def charge() -> int:
        effects.record("request sent")
        started.set()
        await asyncio.Event().wait()  # the card network's answer never comes
        return 1

    task = asyncio.create_task(store.run_async("pay-12", {"amount": 1}, charge))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert _status(store, "pay-12") == "abandoned"
    with pytest.raises(IdempotencyAbandoned):
        await store.run_async("pay-12", {"amount": 1}, charge)
    assert effects.calls == ["request sent"]


# --- cancellation before the effect, and the event loop ----------------------------------------


def test_a_run_async_cancelled_while_claiming_gives_the_key_back(db: Path) -> None:
    effects = Effects()
    loop_thread = threading.get_ident()
    claiming = threading.Event()

    def clock() -> datetime:
        if threading.get_ident() != loop_thread:
            claiming.set()  # a claim is being made in a worker thread
        return datetime.now(UTC)

    store = IdempotencyStore(
        db,
        IdempotencyOptions(wait_timeout=timedelta(0), busy_timeout=timedelta(seconds=60)),
        clock=clock,
    )
    store.records()  # the schema exists before the file is locked

    async def charge() -> str:
        effects.record("charged")
        return "charged"

    async def cancel_while_claiming() -> None:
        with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as writer:
            writer.execute("BEGIN IMMEDIATE")  # another writer: the claim has to wait
            task = asyncio.create_task(store.run_async("pay-13", {"amount": 1}, charge))
            assert await asyncio.to_thread(claiming.wait, 30)
            task.cancel()
            writer.execute("COMMIT")  # the claim can go through now
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(cancel_while_claiming())  # returns once every worker thread has finished

    record = store.get("pay-13")
    assert record is None or record.status == "failed"
    assert store.run("pay-13", {"amount": 1}, lambda: "charged by the retry") == (
        "charged by the retry"
    )
    assert effects.calls == []


async def test_a_failed_async_effect_is_released_without_blocking_the_event_loop(
    db: Path,
) -> None:
    store = IdempotencyStore(db, IdempotencyOptions(busy_timeout=timedelta(seconds=30)))
    store.records()
    raised = asyncio.Event()

    with contextlib.closing(sqlite3.connect(db, isolation_level=None)) as writer:

        async def declined() -> str:
            writer.execute("BEGIN IMMEDIATE")  # another writer holds the file when it raises
            raised.set()
            raise ValueError("card declined")

        async def other_writer_finishes() -> None:
            await raised.wait()  # runs only if the event loop is free while the key is released
            writer.execute("COMMIT")

        helper = asyncio.create_task(other_writer_finishes())
        with pytest.raises(ValueError, match="card declined") as caught:
            await store.run_async("pay-14", {"amount": 1}, declined)
        await helper

    assert not getattr(caught.value, "__notes__", None)  # no "could not be released" note
    assert _status(store, "pay-14") == "failed"


def test_wait_timeout_is_measured_with_the_injected_clock_and_sleep(
    db: Path, clock: FakeClock
) -> None:
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    options = IdempotencyOptions(
        wait_timeout=timedelta(seconds=1), poll_interval=timedelta(milliseconds=250)
    )
    store = IdempotencyStore(db, options, clock=clock, sleep=sleep)
    in_effect, finish = threading.Event(), threading.Event()

    def slow_charge() -> str:
        in_effect.set()
        assert finish.wait(30)
        return "charged"

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(store.run, "pay-15", {"amount": 1}, slow_charge)
        assert in_effect.wait(30)
        try:
            with pytest.raises(IdempotencyInProgress):
                store.run("pay-15", {"amount": 1}, lambda: "duplicate")
        finally:
            finish.set()
        assert first.result(30) == "charged"
    assert slept == [0.25] * 4  # polls at 0, 0.25, 0.5, 0.75 and 1.0 s of the fake clock


def test_run_async_waits_with_the_injected_clock_and_async_sleep(
    db: Path, clock: FakeClock
) -> None:
    slept: list[float] = []

    async def async_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.advance(timedelta(seconds=seconds))

    options = IdempotencyOptions(
        wait_timeout=timedelta(seconds=1), poll_interval=timedelta(milliseconds=250)
    )
    store = IdempotencyStore(db, options, clock=clock, async_sleep=async_sleep)
    in_effect, finish = threading.Event(), threading.Event()

    def slow_charge() -> str:
        in_effect.set()
        assert finish.wait(30)
        return "charged"

    async def duplicate() -> str:
        return "duplicate"

    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(store.run, "pay-16", {"amount": 1}, slow_charge)
        assert in_effect.wait(30)
        try:
            with pytest.raises(IdempotencyInProgress):
                asyncio.run(store.run_async("pay-16", {"amount": 1}, duplicate))
        finally:
            finish.set()
        assert first.result(30) == "charged"
    assert slept == [0.25] * 4


# --- raw exceptions that must be IdempotencyErrors ---------------------------------------------

LONE_SURROGATE = "pay-\ud800"


@pytest.mark.parametrize(
    "use",
    [
        lambda store: store.run(LONE_SURROGATE, {}, lambda: "charged"),
        lambda store: store.get(LONE_SURROGATE),
        lambda store: key_from_parts("order", LONE_SURROGATE),
    ],
    ids=["run", "get", "key_from_parts"],
)
def test_a_key_that_is_not_valid_text_is_refused(
    store: IdempotencyStore, use: Callable[[IdempotencyStore], object]
) -> None:
    with pytest.raises(IdempotencyKeyError, match="cannot be encoded as UTF-8") as caught:
        use(store)
    assert "lone surrogate" in str(caught.value)


def test_an_error_message_that_is_not_valid_text_still_releases_the_key(
    store: IdempotencyStore,
) -> None:
    def declined() -> str:
        raise ValueError("card \udcff declined")  # e.g. bytes decoded with surrogateescape

    with pytest.raises(ValueError, match="declined") as caught:
        store.run("pay-17", {"amount": 1}, declined)
    assert type(caught.value) is ValueError
    record = store.get("pay-17")
    assert record is not None
    assert (record.status, record.error) == ("failed", "ValueError: card \\udcff declined")


def test_a_store_under_a_regular_file_says_what_is_in_the_way(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a folder")
    store = IdempotencyStore(tmp_path / "notes.txt" / "keys.db")
    with pytest.raises(IdempotencyError, match=r"notes\.txt is a file, not a folder"):
        store.run("pay-18", {}, lambda: "charged")


def test_a_store_file_deleted_while_in_use_is_reported_and_not_recreated(
    store: IdempotencyStore, db: Path
) -> None:
    effects = Effects()
    assert store.run("pay-19", {}, lambda: effects.record("charged")) == 1
    for path in db.parent.glob(f"{db.name}*"):
        path.unlink()

    with pytest.raises(IdempotencyError, match="was deleted while this store was using it") as e:
        store.run("pay-19", {}, lambda: effects.record("charged again"))
    assert "Restore the file" in str(e.value)
    assert not db.exists()  # no empty file left behind for the next store to start from
    assert effects.calls == ["charged"]


def test_a_store_file_replaced_while_in_use_is_reported(store: IdempotencyStore, db: Path) -> None:
    store.run("pay-20", {}, lambda: "charged")
    for path in db.parent.glob(f"{db.name}*"):
        path.unlink()
    db.write_bytes(b"")  # an empty file where the key file was

    with pytest.raises(IdempotencyError, match="deleted or replaced") as caught:
        store.get("pay-20")
    assert "every key recorded in it is gone" in str(caught.value)
    assert IdempotencyStore(db).records() == []  # a new store starts again, on purpose


# --- methods ---------------------------------------------------------------------------------


def test_a_method_is_fingerprinted_without_self(store: IdempotencyStore) -> None:
    effects = Effects()

    @dataclass
    class Bank:
        worker: str  # how this worker is set up, not part of the request

        @store.idempotent(key=lambda self, charge: charge.payment_id)
        def charge(self, charge: Charge) -> Receipt:
            return Receipt(charge.payment_id, charge.amount_cents, effects.record(self.worker))

    class CardNetwork:  # not JSON at all
        def __init__(self) -> None:
            self.connection = threading.Lock()

        @store.idempotent(key=lambda self, amount: f"card-{amount}")
        def charge(self, amount: int) -> int:
            return effects.record(f"card {amount}")

    first = Bank("worker-a").charge(Charge("pay-21", 100))
    assert Bank("worker-b").charge(Charge("pay-21", 100)) == first == Receipt("pay-21", 100, 1)
    with pytest.raises(IdempotencyConflict):  # the request itself is still fingerprinted
        Bank("worker-a").charge(Charge("pay-21", 200))
    assert CardNetwork().charge(5) == CardNetwork().charge(5) == 2
    assert effects.calls == ["worker-a", "card 5"]


# --- files written before the abandoned and poisoned states -------------------------------------

FIRST_LAYOUT = """
CREATE TABLE idempotency_keys (
    key          TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('in_progress', 'completed', 'failed')),
    owner        TEXT,
    attempts     INTEGER NOT NULL,
    result       TEXT,
    error        TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    locked_until REAL,
    expires_at   REAL NOT NULL
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
"""


def test_a_key_file_of_the_first_layout_is_upgraded_in_place(db: Path, clock: FakeClock) -> None:
    now = clock.now.timestamp()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        conn.executescript(FIRST_LAYOUT)
        conn.execute(
            "INSERT INTO idempotency_keys VALUES (?, ?, 'completed', NULL, 1, '\"ok\"', NULL, "
            "?, ?, NULL, ?)",
            ("old-key", fingerprint({"amount": 1}), now, now, now + 3600),
        )
        conn.commit()

    store = IdempotencyStore(db, clock=clock)
    assert store.run("old-key", {"amount": 1}, lambda: "not again") == "ok"
    with pytest.raises(IdempotencyPoisoned):
        store.run("new-key", {"amount": 1}, lambda: {"at": object()})
    assert _status(store, "new-key") == "poisoned"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (2,)
