"""The replicated store: lag, quorums, partitions, and the files it keeps."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sagakit import ConfigurationError, SagakitError
from sagakit.course.replication import (
    NotEnoughReplicas,
    PartitionChoice,
    ReplicatedStore,
    ReplicationError,
    StoreOptions,
)

AP = StoreOptions(on_partition=PartitionChoice.AVAILABILITY)


def test_a_lagging_replica_is_stale_until_its_lag_has_passed(tmp_path: Path) -> None:
    store = ReplicatedStore(tmp_path, StoreOptions(lag_ms=(0, 100, 300)))
    written = store.put("cart", "1 book", via=0)
    assert written.acked_by == (0,)
    assert store.get("cart", via=0).value == "1 book"
    assert store.get("cart", via=2).stale
    assert store.get("cart", via=2).value is None
    store.advance(299)
    assert store.get("cart", via=1).value == "1 book"
    assert store.get("cart", via=2).stale
    store.advance(1)
    assert not store.get("cart", via=2).stale
    assert [s.behind for s in store.replica_states("cart")] == [0, 0, 0]


def test_replica_states_count_the_writes_each_replica_misses(tmp_path: Path) -> None:
    store = ReplicatedStore(tmp_path, StoreOptions(lag_ms=(0, 10, 50)))
    for n in range(3):
        store.put("n", str(n))
    assert [s.behind for s in store.replica_states("n")] == [0, 3, 3]
    store.advance(10)
    assert [(s.value, s.behind) for s in store.replica_states("n")] == [
        ("2", 0),
        ("2", 0),
        (None, 3),
    ]


@pytest.mark.parametrize("replicas", [3, 5])
def test_overlapping_quorums_always_read_the_latest_write(tmp_path: Path, replicas: int) -> None:
    # One store, a key of its own for each case: the clock never moves, so no write reaches
    # a replica it was not written to, and each key's reads see only that key's write.
    store = ReplicatedStore(tmp_path, StoreOptions(replicas=replicas, lag_ms=(1000,) * replicas))
    for w in range(1, replicas + 1):
        for r in range(1, replicas + 1):
            for writer in range(replicas):
                key = f"k-{w}-{r}-{writer}"
                store.put(key, "new", w=w, via=writer)
                stale = [store.get(key, r=r, via=reader).stale for reader in range(replicas)]
                if r + w > replicas:
                    assert not any(stale), (w, r, writer)
                else:
                    assert any(stale), (w, r, writer)


def test_latency_adds_one_round_trip_when_other_replicas_are_asked(tmp_path: Path) -> None:
    store = ReplicatedStore(tmp_path, StoreOptions(local_ms=2, link_ms=30))
    assert store.put("k", "v", w=1).latency_ms == 2
    assert store.put("k", "v", w=2).latency_ms == 32
    assert store.get("k", r=1).latency_ms == 2
    assert store.get("k", r=3).latency_ms == 32


def test_the_consistent_choice_refuses_on_the_minority_side(tmp_path: Path) -> None:
    store = ReplicatedStore(tmp_path)
    store.put("k", "before", w=3)
    store.partition({0}, {1, 2})
    with pytest.raises(NotEnoughReplicas, match=r"needs r=2.*heal\(\)"):
        store.get("k", r=2, via=0)
    with pytest.raises(NotEnoughReplicas, match="other side cannot see"):
        store.put("k", "during", w=2, via=0)
    assert store.latest_version("k") == 1, "a refused write must leave no trace"
    # The majority side still has a quorum and keeps working.
    assert store.put("k", "majority", w=2, via=1).acked_by == (1, 2)
    assert store.get("k", r=2, via=2).value == "majority"
    assert issubclass(NotEnoughReplicas, ReplicationError)
    assert issubclass(ReplicationError, SagakitError)


def test_the_available_choice_serves_stale_data_then_converges(tmp_path: Path) -> None:
    store = ReplicatedStore(tmp_path, AP)
    store.put("k", "v1", w=3)
    store.partition({0}, {1, 2})
    store.put("k", "v2", w=2, via=1)
    answer = store.get("k", r=2, via=0)
    assert (answer.value, answer.asked, answer.stale) == ("v1", (0,), True)
    store.settle()
    assert store.replica_states("k")[0].value == "v1", "the partition must hold replication back"
    assert store.pending() == 1
    store.heal()
    assert {s.value for s in store.replica_states("k")} == {"v2"}
    assert store.pending() == 0


def test_writes_on_both_sides_of_a_partition_end_with_one_winner(tmp_path: Path) -> None:
    store = ReplicatedStore(tmp_path, AP)
    store.partition({0}, {1, 2})
    store.put("k", "majority", w=2, via=1)
    store.put("k", "minority", w=2, via=0)  # accepted by replica 0 alone
    store.heal()
    store.settle()
    states = store.replica_states("k")
    assert {s.value for s in states} == {"minority"}, "last writer wins everywhere"
    assert all(s.version == 2 for s in states)


def test_a_partition_with_one_group_is_no_partition(tmp_path: Path) -> None:
    store = ReplicatedStore(tmp_path)
    store.partition({0, 1, 2})
    assert not store.partitioned
    store.partition({2})
    assert store.partitioned
    assert store.reachable_from(0) == (0, 1)
    assert store.reachable_from(2) == (2,)


def test_a_late_older_write_never_overwrites_a_newer_one(tmp_path: Path) -> None:
    store = ReplicatedStore(tmp_path, StoreOptions(lag_ms=(0, 500, 500)))
    store.put("k", "old", w=1, via=0)
    store.put("k", "new", w=3, via=0)
    store.advance(500)  # "old" reaches replicas 1 and 2 after "new"
    assert {s.value for s in store.replica_states("k")} == {"new"}


def test_replicas_are_real_sqlite_files_and_a_new_store_starts_empty(tmp_path: Path) -> None:
    store = ReplicatedStore(tmp_path, StoreOptions(lag_ms=(0, 0, 0)))
    store.put("k", "v")
    for replica in range(3):
        with closing(sqlite3.connect(tmp_path / f"replica-{replica}.db")) as db:
            assert db.execute("SELECT value FROM kv WHERE key = 'k'").fetchone() == ("v",)
    fresh = ReplicatedStore(tmp_path)
    assert fresh.get("k").value is None
    assert fresh.latest_version("k") == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: ReplicatedStore(p, StoreOptions(replicas=2)), "one lag per replica"),
        (lambda p: ReplicatedStore(p, StoreOptions(replicas=0, lag_ms=())), "at least 1"),
        (lambda p: ReplicatedStore(p).get("k", r=4), "from 1 to 3"),
        (lambda p: ReplicatedStore(p).put("k", "v", via=3), "does not exist"),
        (lambda p: ReplicatedStore(p).partition({0, 1}, {1, 2}), "overlap"),
        (lambda p: ReplicatedStore(p).partition({7}), r"replica\(s\) \[7\]"),
        (lambda p: ReplicatedStore(p).advance(-1), "forward"),
    ],
)
def test_mistakes_are_configuration_errors(tmp_path: Path, make: object, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        make(tmp_path)  # type: ignore[operator]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.integers(0, 2)),
        st.tuples(st.just("get"), st.integers(0, 2)),
        st.tuples(st.just("advance"), st.integers(0, 200)),
        st.tuples(st.just("partition"), st.integers(0, 2)),
        st.tuples(st.just("heal"), st.just(0)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(ops=operations)
def test_majority_quorums_never_read_stale_data_and_replicas_converge(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[str, int]]
) -> None:
    store = ReplicatedStore(tmp_path_factory.mktemp("store"), StoreOptions(lag_ms=(0, 70, 150)))
    for n, (op, arg) in enumerate(ops):
        try:
            if op == "put":
                store.put("k", f"v{n}", w=2, via=arg)
            elif op == "get":
                assert not store.get("k", r=2, via=arg).stale
            elif op == "advance":
                store.advance(arg)
            elif op == "partition":
                store.partition({arg})
            else:
                store.heal()
        except NotEnoughReplicas:
            assert store.partitioned
    store.heal()
    store.settle()
    states = store.replica_states("k")
    assert len({(s.value, s.version) for s in states}) == 1
    assert all(s.behind == 0 for s in states)
