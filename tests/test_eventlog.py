"""The SQLite event store: append-only streams, versions, point-in-time reads, folds."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagakit import ConfigurationError
from sagakit.course.eventlog import EventStore, StoredEvent, VersionConflict, fold, running_fold


def _balance(balance: int, event: StoredEvent) -> int:
    sign = {"Deposited": 1, "Withdrew": -1}[event.kind]
    return balance + sign * int(event.data["amount"])


def test_events_get_versions_per_stream_and_fold_to_the_state(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    store.append("alice", "Deposited", {"amount": 50}, recorded_at="2024-03-01")
    store.append("bob", "Deposited", {"amount": 7}, recorded_at="2024-03-01")
    last = store.append("alice", "Withdrew", {"amount": 20}, recorded_at="2024-03-02")
    assert (last.stream, last.version, last.position) == ("alice", 2, 3)
    events = store.read("alice")
    assert [e.version for e in events] == [1, 2]
    assert fold(events, 0, _balance) == 30
    assert store.version("alice") == 2
    assert store.version("nobody") == 0
    assert store.streams() == ["alice", "bob"]


def test_the_past_is_rebuilt_from_a_prefix_of_the_log(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    for day, (kind, amount) in enumerate([("Deposited", 100), ("Withdrew", 30), ("Deposited", 5)]):
        store.append("alice", kind, {"amount": amount}, recorded_at=f"2024-03-0{day + 1}")
    assert fold(store.read("alice", up_to_version=1), 0, _balance) == 100
    assert fold(store.read("alice", until="2024-03-02"), 0, _balance) == 70
    assert fold(store.read("alice", until="2024-02-28"), 0, _balance) == 0
    states = [state for _, state in running_fold(store.read("alice"), 0, _balance)]
    assert states == [100, 70, 75]


def test_a_stale_writer_gets_a_version_conflict(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    store.append("alice", "Deposited", {"amount": 50}, expected_version=0)
    store.append("alice", "Withdrew", {"amount": 20}, expected_version=1)
    with pytest.raises(VersionConflict, match="at version 2, not 1"):
        store.append("alice", "Withdrew", {"amount": 20}, expected_version=1)
    assert store.version("alice") == 2


def test_concurrent_writers_with_the_same_expected_version_cannot_both_win(
    tmp_path: Path,
) -> None:
    store = EventStore(tmp_path / "events.db")
    store.append("alice", "Deposited", {"amount": 50})
    outcomes: list[str] = []
    barrier = threading.Barrier(4)

    def writer() -> None:
        barrier.wait()
        try:
            store.append("alice", "Withdrew", {"amount": 50}, expected_version=1)
            outcomes.append("appended")
        except VersionConflict:
            outcomes.append("conflict")

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["appended", "conflict", "conflict", "conflict"]
    assert fold(store.read("alice"), 0, _balance) == 0


def test_events_cannot_be_changed_or_deleted(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "events.db")
    store.append("alice", "Deposited", {"amount": 50})
    conn = sqlite3.connect(store.path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("UPDATE events SET data = '{\"amount\": 5000}'")
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM events")
    finally:
        conn.close()
    assert store.read("alice")[0].data == {"amount": 50}


def test_bad_arguments_are_explained(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="database file"):
        EventStore(":memory:")
    store = EventStore(tmp_path / "events.db")
    with pytest.raises(ConfigurationError, match="JSON-compatible"):
        store.append("alice", "Deposited", {"amount": object()})


def test_recorded_at_defaults_to_now_in_utc(tmp_path: Path) -> None:
    event = EventStore(tmp_path / "events.db").append("alice", "Opened")
    assert event.recorded_at.endswith("+00:00")
    assert event.data == {}


@given(st.lists(st.tuples(st.sampled_from(["Deposited", "Withdrew"]), st.integers(0, 1000))))
def test_fold_is_the_last_state_of_running_fold(moves: list[tuple[str, int]]) -> None:
    events = [StoredEvent("a", i + 1, kind, {"amount": n}, "") for i, (kind, n) in enumerate(moves)]
    expected = sum(n if kind == "Deposited" else -n for kind, n in moves)
    assert fold(events, 0, _balance) == expected
    states = running_fold(events, 0, _balance)
    assert len(states) == len(events)
    assert (states[-1][1] if states else 0) == expected
