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


def main() -> None:
    mode, db, key = sys.argv[1:4]
    store = IdempotencyStore(db, IdempotencyOptions(wait_timeout=timedelta(seconds=60)))
    {"race": race, "hang": hang}[mode](store, db, key)


if __name__ == "__main__":
    main()
