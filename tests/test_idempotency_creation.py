"""IdempotencyStore: several processes creating the same NEW key file at once all succeed.

Eight child processes with four openers (threads, each with its own store
object) each open the same new file at the same moment (they sleep until one
start time), for several trials with a new file each. SQLite can refuse
``PRAGMA journal_mode=WAL`` with 'database is locked' at once, without waiting
for the busy timeout, while another connection switches the same new file; the
store must retry it, and create the schema exactly once.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import queue
import sqlite3
from pathlib import Path

import pytest

from sagakit import IdempotencyStore
from tests.idempotency_worker_proc import OPENERS, create_in_trials

PROCESSES = 8
TRIALS = 16


@pytest.mark.slow
def test_8_processes_creating_one_new_store_file_all_succeed(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES * OPENERS, timeout=120)
    start_at = context.Value("d", 0.0)
    outcomes = context.Queue()
    children = [
        context.Process(
            target=create_in_trials,
            args=(index, str(tmp_path), TRIALS, barrier, start_at, outcomes),
        )
        for index in range(PROCESSES)
    ]
    for child in children:
        child.start()
    try:
        results: list[tuple[int, str]] = []
        for _ in range(PROCESSES * OPENERS * TRIALS):
            try:
                results.append(outcomes.get(timeout=120))
            except queue.Empty:
                break
    finally:
        for child in children:
            child.join(timeout=60)
            if child.is_alive():
                child.kill()
                child.join()

    failures = sorted(f"trial {trial}: {outcome}" for trial, outcome in results if outcome != "ok")
    assert not failures, "\n".join(failures)
    assert len(results) == PROCESSES * OPENERS * TRIALS
    assert [child.exitcode for child in children] == [0] * PROCESSES
    for trial in range(TRIALS):
        path = tmp_path / f"trial-{trial}.db"
        with contextlib.closing(sqlite3.connect(path)) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        store = IdempotencyStore(path)
        assert store.records() == []
        assert store.run("after", {"trial": trial}, lambda: "usable") == "usable"
