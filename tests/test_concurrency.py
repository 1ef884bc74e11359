"""64 duplicate requests at once, from threads, asyncio tasks and processes: one effect.

Already covered elsewhere (and not repeated here): 64 threads and 8x8 processes
through IdempotencyStore with one request (tests/test_idempotency.py), and 64
threads through the services' keys (tests/test_services.py). This file adds the
services' keys across processes, asyncio callers, and *conflicting* requests
racing for one key: exactly one request wins and runs once, the others are
refused (never run, never given the winner's result for another request).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from sagakit import IdempotencyConflict, IdempotencyOptions, IdempotencyStore
from sagakit.course.services.errors import IdempotencyKeyReused
from sagakit.course.services.invariants import ViolationKind, check_world
from sagakit.course.services.world import World
from tests.helpers import ROOT, release_together

DOUBLES = {ViolationKind.DOUBLE_BOOKING, ViolationKind.DOUBLE_CHARGE, ViolationKind.REPEATED_KEY}
"""What a duplicate that got through would break (a lone booking is a partial trip, as expected)."""

PROCESSES = 8
THREADS = 8  # per process: 64 callers in all

# One child process: THREADS callers wait on a barrier, then all call at once.
# argv: db, what ("book" | "withdraw" | "store"), key, variant (part of the request).
CHILD = r"""
import json, sys, threading, time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
db, what, key, variant, threads = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])

def call(_):
    barrier.wait()
    try:
        if what == "book":
            from sagakit.course.services.world import World
            booking = World(db).trips.book_hotel("t1", variant, idempotency_key=key)
            return {"ok": [booking.booking_id, booking.customer]}
        if what == "withdraw":
            from sagakit.course.services.world import World
            receipt = World(db).bank.withdraw("alice", int(variant), reference="trip t1",
                                              idempotency_key=key)
            return {"ok": [receipt.balance]}
        from sagakit import IdempotencyOptions, IdempotencyStore
        import sqlite3
        store = IdempotencyStore(db + ".keys", IdempotencyOptions(wait_timeout=timedelta(seconds=60)))
        def effect():
            with sqlite3.connect(db + ".effects", timeout=30) as conn:
                conn.execute("INSERT INTO effects (variant) VALUES (?)", (variant,))
            conn.close()
            time.sleep(0.05)
            return {"charged": variant}
        return {"ok": store.run(key, {"amount": variant}, effect)}
    except Exception as err:
        return {"error": type(err).__name__, "message": str(err)}

barrier = threading.Barrier(threads)
print("ready", flush=True)
sys.stdin.readline()
with ThreadPoolExecutor(threads) as pool:
    print(json.dumps(list(pool.map(call, range(threads)))), flush=True)
"""


def _race_in_processes(db: Path, what: str, key: str, variants: list[str]) -> list[dict[str, Any]]:
    """Start one child per variant, let them all go at once, return every caller's result."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(db), what, key, variant, str(THREADS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for variant in variants
    ]
    outputs = release_together(children)
    assert [child.returncode for child in children] == [0] * len(children)
    return [result for output in outputs for result in json.loads(output)]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path / "world.db")


# -- the services' idempotency keys, across processes -------------------------------------------


@pytest.mark.slow
def test_64_callers_in_8_processes_book_one_hotel(world: World) -> None:
    results = _race_in_processes(world.path, "book", "t1-hotel", ["ada"] * PROCESSES)
    assert len(results) == PROCESSES * THREADS
    assert {json.dumps(r) for r in results} == {json.dumps({"ok": [1, "ada"]})}
    assert world.trips.active("t1")["hotel"] == 1
    assert world.ledger.count("book_hotel") == 1
    assert not check_world(world).kinds & DOUBLES


@pytest.mark.slow
def test_64_callers_in_8_processes_charge_once(world: World) -> None:
    results = _race_in_processes(world.path, "withdraw", "pay-t1", ["30"] * PROCESSES)
    assert {json.dumps(r) for r in results} == {json.dumps({"ok": [470]})}
    assert world.bank.balance("alice") == 470
    assert world.ledger.count("withdraw") == 1
    assert not check_world(world).kinds & DOUBLES


@pytest.mark.slow
def test_conflicting_bookings_in_8_processes_one_wins_the_rest_are_refused(world: World) -> None:
    customers = [f"customer-{i}" for i in range(PROCESSES)]
    results = _race_in_processes(world.path, "book", "t1-hotel", customers)
    booked = [r for r in results if "ok" in r]
    refused = [r for r in results if "error" in r]
    assert len(booked) + len(refused) == 64
    winners = {r["ok"][1] for r in booked}
    assert len(winners) == 1, "only one request may own the key"
    assert len(booked) == THREADS, "only the winner's own duplicates get its result"
    assert {r["error"] for r in refused} == {"IdempotencyKeyReused"}
    assert all("A key names ONE request" in r["message"] for r in refused)
    assert world.ledger.count("book_hotel") == 1
    assert [b.customer for b in world.trips.bookings("t1")] == list(winners)


# -- IdempotencyStore: conflicts and asyncio ---------------------------------------------------


@pytest.mark.slow
def test_conflicting_requests_in_8_processes_through_the_store(tmp_path: Path) -> None:
    db = tmp_path / "race.db"
    effects = Path(f"{db}.effects")
    with _connect(effects) as conn:
        conn.execute("CREATE TABLE effects (variant TEXT NOT NULL)")
    conn.close()
    IdempotencyStore(f"{db}.keys").records()  # create the table before the race
    variants = [str(10 + i % 2) for i in range(PROCESSES)]  # two different requests, 4 each
    results = _race_in_processes(db, "store", "pay-7", variants)
    ok = [r["ok"]["charged"] for r in results if "ok" in r]
    refused = [r for r in results if "error" in r]
    assert len(set(ok)) == 1
    assert len(ok) == 4 * THREADS, "every duplicate of the winning request gets its result"
    assert len(refused) == 4 * THREADS
    assert {r["error"] for r in refused} == {"IdempotencyConflict"}
    assert all("different request" in r["message"] for r in refused)
    with _connect(effects) as conn:
        assert conn.execute("SELECT variant FROM effects").fetchall() == [(ok[0],)]
    conn.close()


def test_conflicting_requests_from_64_threads_through_the_store(tmp_path: Path) -> None:
    store = IdempotencyStore(
        tmp_path / "keys.db", IdempotencyOptions(wait_timeout=timedelta(seconds=60))
    )
    runs: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(64)

    def call(i: int) -> tuple[str, Any]:
        amount = i % 2  # two different requests under one key

        def effect() -> dict[str, int]:
            with lock:
                runs.append(amount)
            return {"amount": amount}

        barrier.wait()
        try:
            return "ok", store.run("pay-8", {"amount": amount}, effect)
        except IdempotencyConflict:
            return "conflict", amount

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(call, range(64)))
    assert len(runs) == 1
    winner = runs[0]
    assert Counter(kind for kind, _ in results) == {"ok": 32, "conflict": 32}
    assert {json.dumps(value) for kind, value in results if kind == "ok"} == {
        json.dumps({"amount": winner})
    }
    assert {value for kind, value in results if kind == "conflict"} == {1 - winner}


def test_conflicting_bookings_from_64_threads(world: World) -> None:
    barrier = threading.Barrier(64)

    def call(i: int) -> str:
        barrier.wait()
        try:
            return (
                World(world.path).trips.book_hotel("t2", f"c{i % 2}", idempotency_key="k").customer
            )
        except IdempotencyKeyReused:
            return "refused"

    with ThreadPoolExecutor(64) as pool:
        results = Counter(pool.map(call, range(64)))
    assert results["refused"] == 32
    assert len(results) == 2
    assert world.ledger.count("book_hotel") == 1


async def test_64_asyncio_tasks_with_one_key_run_the_effect_once(tmp_path: Path) -> None:
    store = IdempotencyStore(
        tmp_path / "keys.db", IdempotencyOptions(wait_timeout=timedelta(seconds=60))
    )
    runs = 0
    gate = asyncio.Event()

    async def effect() -> dict[str, int]:
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)  # stay in flight while the others arrive
        return {"run": runs}

    async def call() -> Any:
        await gate.wait()
        return await store.run_async("pay-9", {"amount": 5}, effect)

    tasks = [asyncio.create_task(call()) for _ in range(64)]
    gate.set()
    results = await asyncio.gather(*tasks)
    assert runs == 1
    assert results == [{"run": 1}] * 64


def _connect(path: Path) -> Any:
    import sqlite3

    return sqlite3.connect(path, timeout=30)
