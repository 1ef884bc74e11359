"""The order in which the test processes get the long files (tests/run_order.py)."""

from __future__ import annotations

import itertools

from tests import run_order
from tests.helpers import ROOT


def test_every_long_and_waiting_file_exists() -> None:
    """A renamed file would silently fall back to the end of the run."""
    missing = [name for name in run_order.LONG_FILES if not (ROOT / name).is_file()]
    assert missing == []
    assert set(run_order.LONG_FILES) >= run_order.WAITING_FILES


def test_the_waiting_files_are_spread_among_the_busy_ones() -> None:
    order = run_order.hand_out_order(run_order.LONG_FILES, run_order.WAITING_FILES)
    assert sorted(order) == sorted(run_order.LONG_FILES)
    places = [place for place, name in enumerate(order) if name in run_order.WAITING_FILES]
    busy = len(order) - len(places)
    gap = busy // (len(places) + 1)
    assert places[0] >= gap
    assert all(later - earlier > gap for earlier, later in itertools.pairwise(places))
    busy_order = [name for name in order if name not in run_order.WAITING_FILES]
    lengths = [run_order.LONG_FILES[name] for name in busy_order]
    assert lengths == sorted(lengths, reverse=True)


def test_waiting_files_are_spread_whatever_their_number() -> None:
    durations = {f"busy{index}": 100 - index for index in range(10)}
    durations |= {"wait-a": 200, "wait-b": 1}
    order = run_order.hand_out_order(durations, frozenset({"wait-a", "wait-b"}))
    assert order.index("wait-a") == 4  # after a third of the ten busy files, not first
    assert order.index("wait-b") == 8
    assert run_order.hand_out_order({"a": 2, "b": 1}, frozenset()) == ["a", "b"]
    assert run_order.hand_out_order({"a": 2, "b": 1}, frozenset({"a", "b"})) == ["a", "b"]
