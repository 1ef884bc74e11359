"""A separate process for tests/test_idempotency.py: races for a key, or dies holding one.

Usage: ``python idempotency_worker_proc.py MODE DB KEY``

* ``race``: print ``ready``, wait for a line on stdin, then make ``CALLS``
  simultaneous calls with KEY from threads and print their results as JSON.
* ``hang``: claim KEY, print ``in effect`` from inside the effect and block
  until killed, leaving a claim whose owner is gone.

Each run of the effect adds a row to the ``effects`` table of DB, so the parent
counts effects across processes.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sagakit import IdempotencyOptions, IdempotencyStore

CALLS = 8
OPENERS = 4


def record_effect(db: str, key: str) -> None:
    with sqlite3.connect(db, timeout=30) as conn:
        conn.execute("INSERT INTO effects (key, pid) VALUES (?, ?)", (key, os.getpid()))
    conn.close()


def race(store: IdempotencyStore, db: str, key: str) -> None:
    barrier = threading.Barrier(CALLS)

    def effect() -> dict[str, Any]:
        record_effect(db, key)
        time.sleep(0.1)  # stay in flight while the others arrive
        return {"charged_by": os.getpid()}

    def call(_: int) -> dict[str, Any]:
        barrier.wait()
        return store.run(key, {"amount": 100}, effect)

    print("ready", flush=True)
    sys.stdin.readline()
    with ThreadPoolExecutor(CALLS) as pool:
        results = list(pool.map(call, range(CALLS)))
    print(json.dumps(results), flush=True)


def hang(store: IdempotencyStore, db: str, key: str) -> None:
    def effect() -> None:
        record_effect(db, key)
        print("in effect", flush=True)
        threading.Event().wait()  # until the parent kills this process

    store.run(key, {"amount": 100}, effect)


def create_in_trials(
    index: int, folder: str, trials: int, barrier: Any, start_at: Any, outcomes: Any
) -> None:
    """For each trial, open a NEW store file at the same moment as every other opener.

    Started by tests/test_idempotency_creation.py through ``multiprocessing``. Each
    child runs ``OPENERS`` threads, each with its own store object (so each creates
    the file's schema itself, as a separate process would). All openers of all
    children meet at ``barrier`` (its parties count them all); the first child's
    first thread sets ``start_at`` a little ahead, and all sleep until then (waking
    together is tighter than leaving a barrier one by one). Puts
    ``(trial, outcome)`` on ``outcomes``: ``"ok"``, or the error and its cause.
    """

    def opener(thread: int) -> None:
        for trial in range(trials):
            barrier.wait()
            if index == 0 and thread == 0:
                start_at.value = time.time() + 0.03
            barrier.wait()
            time.sleep(max(0.0, start_at.value - time.time()))
            try:
                store = IdempotencyStore(os.path.join(folder, f"trial-{trial}.db"))
                outcome = "ok" if store.get("unknown") is None else "found a key never stored"
            except Exception as err:
                outcome = f"{type(err).__name__}: {err} (cause: {err.__cause__!r})"
            outcomes.put((trial, outcome))

    threads = [threading.Thread(target=opener, args=(thread,)) for thread in range(OPENERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    mode, db, key = sys.argv[1:4]
    store = IdempotencyStore(db, IdempotencyOptions(wait_timeout=timedelta(seconds=60)))
    {"race": race, "hang": hang}[mode](store, db, key)


if __name__ == "__main__":
    main()
