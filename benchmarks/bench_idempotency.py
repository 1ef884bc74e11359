"""How many idempotency checks per second does IdempotencyStore answer, alone and under contention?

A check is one :meth:`~sagakit._idempotency.IdempotencyStore.run` call, as an
activity makes it on every attempt. Three workloads, each with 1 thread and
with ``--threads`` threads sharing one store (one SQLite file):

- ``repeat, distinct keys``: every thread repeats its own, already completed
  key (a retry that finds the stored result);
- ``repeat, same key``: every thread repeats one completed key (many retries
  of the same operation at once);
- ``first, distinct keys``: every call uses a new key, so it claims the key,
  runs a trivial effect and stores the result (the first attempt).

Every check is a ``BEGIN IMMEDIATE`` transaction, so SQLite serialises them
whatever the key: contention is for the database's write lock, not for a row.
Workloads and thread counts alternate round by round.

Usage: python benchmarks/bench_idempotency.py [--rounds N] [--calls C] [--threads T]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as common
from sagakit import IdempotencyStore

if TYPE_CHECKING:
    from matplotlib.axes import Axes

WORKLOADS = ("repeat, distinct keys", "repeat, same key", "first, distinct keys")
REQUEST = {"amount": 42, "currency": "EUR"}


@dataclass(frozen=True)
class Row:
    """Checks per second for one workload and thread count."""

    workload: str
    """One of :data:`WORKLOADS`."""
    threads: int
    """Threads calling the store at once."""
    rounds: int
    """Measured rounds."""
    median_per_s: float
    """Median checks per second (all threads together)."""
    min_per_s: float
    """Slowest round."""


@dataclass(frozen=True)
class IdempotencyResult:
    """The rows, and the ratios that answer the question."""

    rows: tuple[Row, ...]
    """One row per (workload, threads)."""
    ratios: dict[str, float]
    """``same/distinct`` (repeats with T threads), ``T/1 threads`` (repeats, distinct keys)
    and ``first/repeat`` (1 thread): ratios of median checks per second."""


def _round(store: IdempotencyStore, workload: str, threads: int, calls: int) -> float:
    """Run one round: ``threads`` threads make ``calls`` checks each; return checks/second."""
    fresh = itertools.count()
    lock = threading.Lock()

    def key_for(thread: int) -> Callable[[], str]:
        if workload == "repeat, same key":
            return lambda: "shared"
        if workload == "repeat, distinct keys":
            return lambda: f"thread-{thread}"

        def new_key() -> str:
            with lock:
                return f"first-{id(store)}-{next(fresh)}-{threading.get_ident()}"

        return new_key

    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(thread: int) -> None:
        key = key_for(thread)
        start.wait()
        try:
            for _ in range(calls):
                store.run(key(), REQUEST, lambda: {"ok": True})
        except BaseException as err:  # reported by the caller
            errors.append(err)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    start.wait()
    elapsed = common.timer()
    for thread in pool:
        thread.join()
    seconds = elapsed()
    if errors:
        raise errors[0]
    return threads * calls / seconds


def measure(rounds: int = 5, *, calls: int = 200, threads: int = 4) -> IdempotencyResult:
    """Measure every workload with 1 and ``threads`` threads, interleaved."""
    counts = sorted({1, threads})
    with tempfile.TemporaryDirectory(prefix="bench-idempotency-") as tmp:
        store = IdempotencyStore(Path(tmp) / "keys.db")
        for t in range(max(counts)):  # the keys that repeats find completed
            store.run(f"thread-{t}", REQUEST, lambda: {"ok": True})
        store.run("shared", REQUEST, lambda: {"ok": True})
        variants = {
            (w, n): (lambda w=w, n=n: _round(store, w, n, calls)) for w in WORKLOADS for n in counts
        }
        samples = common.interleaved_sync(
            {f"{w}|{n}": fn for (w, n), fn in variants.items()}, rounds
        )
    medians = {key: common.median(v) for key, v in samples.items()}
    rows = tuple(
        Row(w, n, len(samples[f"{w}|{n}"]), medians[f"{w}|{n}"], min(samples[f"{w}|{n}"]))
        for w in WORKLOADS
        for n in counts
    )
    top = max(counts)
    ratios = {
        f"same/distinct ({top} threads)": common.ratio(
            medians[f"repeat, same key|{top}"], medians[f"repeat, distinct keys|{top}"]
        ),
        f"{top}/1 threads": common.ratio(
            medians[f"repeat, distinct keys|{top}"], medians["repeat, distinct keys|1"]
        ),
        "first/repeat (1 thread)": common.ratio(
            medians["first, distinct keys|1"], medians["repeat, distinct keys|1"]
        ),
    }
    return IdempotencyResult(rows, ratios)


def report(result: IdempotencyResult) -> str:
    """The table and the summary line."""
    table = common.format_table(
        ["workload", "threads", "rounds", "median checks/s", "slowest round /s"],
        [(r.workload, r.threads, r.rounds, r.median_per_s, r.min_per_s) for r in result.rows],
    )
    ratios = "  ".join(f"{k} = {v:.2f}" for k, v in result.ratios.items())
    single = next(r.median_per_s for r in result.rows if r.threads == 1)
    return "\n".join(
        [
            table,
            "",
            common.summary("idempotency", f"{single:.0f} repeat checks/s on 1 thread; {ratios}"),
        ]
    )


def chart(result: IdempotencyResult) -> Path:
    """Checks per second per workload, one bar per thread count."""

    def draw(ax: Axes) -> None:
        counts = sorted({r.threads for r in result.rows})
        width = 0.8 / len(counts)
        for i, n in enumerate(counts):
            rows = [r for r in result.rows if r.threads == n]
            xs = [j + i * width for j in range(len(rows))]
            ax.bar(xs, [r.median_per_s for r in rows], width, label=f"{n} thread(s)")
        ax.set_xticks([j + width * (len(counts) - 1) / 2 for j in range(len(WORKLOADS))], WORKLOADS)
        ax.set_ylabel("checks per second (median)")
        ax.legend()

    return common.save_chart("idempotency", draw, title="IdempotencyStore.run on one SQLite file")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="IdempotencyStore checks per second.")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per variant")
    parser.add_argument("--calls", type=int, default=200, help="checks per thread per round")
    parser.add_argument("--threads", type=int, default=4, help="threads in the contended runs")
    args = parser.parse_args(argv)
    print(common.machine().describe())
    result = measure(args.rounds, calls=args.calls, threads=args.threads)
    print(report(result))
    print(f"chart: {chart(result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
