"""Which test files the test processes get first (conftest.py sorts the items by it)."""

from __future__ import annotations

# The files that take longest (seconds, from `pytest --durations=0` of a clean-clone run on
# two cores). With --dist=loadfile a file runs whole on one worker, in the order they were
# collected, and the notebooks are collected last; handing out the long ones first (the
# lessons of 17 s and more among them) keeps one of them from running alone at the end of
# the run while the other workers sit idle. tests/test_site.py is not among them although
# it took 53 s: it shares the site build with tests/test_browser.py, and its own checks take
# seconds; started later it finds the site that test_browser's worker built first, where
# started at once its worker waited half a minute for the build, doing nothing.
LONG_FILES: dict[str, int] = {
    "tests/test_browser.py": 82,
    "tests/test_cli.py": 70,
    "tests/test_exercises.py": 53,
    "tests/test_process_faults.py": 42,
    "tests/test_benchmarks.py": 36,
    "tests/test_lesson_timeouts.py": 32,
    "tests/test_server_gone.py": 31,
    "notebooks/09a-sagas-under-faults.ipynb": 30,
    "tests/test_chaos.py": 30,
    "tests/test_class.py": 30,
    "notebooks/solutions/07a-activity-timeouts-and-heartbeats.ipynb": 28,
    "notebooks/solutions/09a-sagas-under-faults.ipynb": 28,
    "notebooks/01-concurrency-scalability-reliability.ipynb": 27,
    "notebooks/solutions/01-concurrency-scalability-reliability.ipynb": 26,
    "notebooks/solutions/12-the-fine-print.ipynb": 23,
    "notebooks/12-the-fine-print.ipynb": 23,
    "tests/test_concurrency.py": 23,
    "tests/test_devserver.py": 22,
    "notebooks/07a-activity-timeouts-and-heartbeats.ipynb": 22,
    "notebooks/solutions/10-idempotency-keys.ipynb": 21,
    "notebooks/solutions/04-durable-execution-idempotence-determinism.ipynb": 21,
    "tests/test_lesson_longlived.py": 19,
    "notebooks/solutions/13-long-lived-workflows.ipynb": 19,
    "notebooks/13-long-lived-workflows.ipynb": 19,
    "notebooks/04-durable-execution-idempotence-determinism.ipynb": 18,
    "notebooks/solutions/11-choreography-vs-orchestration.ipynb": 18,
    "notebooks/10-idempotency-keys.ipynb": 18,
    "notebooks/solutions/07-queries-signals-retries-history.ipynb": 17,
}


# Long files that mostly wait (for timeouts, heartbeats and killed workers to play out):
# about a tenth of a core each, where the others keep a third to a half busy. Handed out in
# order of length, two of them ran side by side with the long lessons, and the CPU sat idle
# for seconds at a time in the middle of the run. They are spread out among the long files
# instead, each beside busier ones (one run could not show a gain: benchmarks/README.md).
WAITING_FILES = frozenset(
    {
        "tests/test_process_faults.py",
        "tests/test_lesson_timeouts.py",
        "notebooks/solutions/07a-activity-timeouts-and-heartbeats.ipynb",
        "notebooks/07a-activity-timeouts-and-heartbeats.ipynb",
    }
)


def hand_out_order(durations: dict[str, int], waiting: frozenset[str]) -> list[str]:
    """The long files, longest first, with the ``waiting`` ones spread evenly among them."""
    by_length = sorted(durations, key=lambda name: -durations[name])
    busy = [name for name in by_length if name not in waiting]
    idle = [name for name in by_length if name in waiting]
    order: list[str] = []
    placed = 0
    for index, name in enumerate(busy, start=1):
        order.append(name)
        # The k-th waiting file follows the first k/(len(idle)+1) of the busy ones.
        while placed < len(idle) and index * (len(idle) + 1) >= (placed + 1) * len(busy):
            order.append(idle[placed])
            placed += 1
    return order + idle[placed:]
