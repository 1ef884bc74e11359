"""A small replicated key-value store for seeing consistency trade-offs happen.

:class:`ReplicatedStore` keeps ``N`` copies (replicas) of every key, each in its
own SQLite file, plus a replication log in one more file. It is a teaching
model, small enough to read, with three knobs that real stores have:

* **Replication lag.** A write is stored at once on ``w`` replicas (the write
  quorum) and appended to the log; every other replica applies it
  ``lag_ms[i]`` milliseconds later. Reads of a replica that has not caught up
  return an older value: the store is *eventually* consistent.
* **Quorums.** A read asks ``r`` replicas and returns the newest version any of
  them has. When ``r + w > N``, every read quorum overlaps every write quorum,
  so a read always meets the latest completed write.
* **Partitions.** :meth:`ReplicatedStore.partition` cuts the network into
  groups. A request that cannot reach ``r`` (or ``w``) replicas either fails
  with :class:`NotEnoughReplicas` (:attr:`PartitionChoice.CONSISTENCY`, "CP")
  or makes do with the replicas it can reach and may return stale data
  (:attr:`PartitionChoice.AVAILABILITY`, "AP").

Time is simulated: the store has its own clock in milliseconds that moves only
when you call :meth:`ReplicatedStore.advance`, so every run of a lesson shows
the same thing. Latency is simulated the same way: touching only the replica a
request lands on costs ``local_ms``; asking any other replica adds one network
round trip of ``link_ms``.

Versions come from one counter that stands in for a timestamp: a higher
version is a later write, and a replica keeps the highest version it has seen
for each key (last writer wins). Real stores use clocks, consensus (Raft,
Paxos) or version vectors; the trade-offs they face are the ones shown here.
"""

from __future__ import annotations

import contextlib
import enum
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from sagakit import ConfigurationError, SagakitError
from sagakit._sqlite import connect, immediate_transaction

__all__ = [
    "NotEnoughReplicas",
    "PartitionChoice",
    "ReadResult",
    "ReplicaState",
    "ReplicatedStore",
    "ReplicationError",
    "StoreOptions",
    "WriteResult",
]


class ReplicationError(SagakitError):
    """A replicated-store request could not be served."""


class NotEnoughReplicas(ReplicationError):
    """Too few replicas were reachable for the quorum a request needs (the CP refusal)."""


class PartitionChoice(enum.StrEnum):
    """What a request does when a partition hides replicas it needs."""

    CONSISTENCY = "consistency"
    """Refuse with :class:`NotEnoughReplicas` rather than risk a stale or lost answer (CP)."""
    AVAILABILITY = "availability"
    """Answer with the replicas it can reach, even if the answer may be stale (AP)."""


@dataclass(frozen=True)
class StoreOptions:
    """How many replicas a :class:`ReplicatedStore` has and how its simulated network behaves."""

    replicas: int = 3
    """How many copies of the data there are (``N``)."""
    lag_ms: tuple[int, ...] = (0, 100, 300)
    """For each replica, how long after a write the replication log delivers it there,
    in simulated milliseconds (one number per replica)."""
    local_ms: int = 1
    """Simulated cost of a request that only touches the replica it lands on."""
    link_ms: int = 40
    """Simulated round trip to another replica; paid once when a request needs others."""
    on_partition: PartitionChoice = PartitionChoice.CONSISTENCY
    """What requests do when a partition leaves too few replicas reachable."""

    def __post_init__(self) -> None:
        if self.replicas < 1:
            raise ConfigurationError(
                f"StoreOptions(replicas={self.replicas}): a store needs at least 1 replica."
            )
        object.__setattr__(self, "lag_ms", tuple(self.lag_ms))
        if len(self.lag_ms) != self.replicas:
            raise ConfigurationError(
                f"StoreOptions has replicas={self.replicas} but {len(self.lag_ms)} lag_ms "
                f"values {list(self.lag_ms)}; give one lag per replica, e.g. "
                f"lag_ms={tuple([0] * self.replicas)}."
            )
        if any(lag < 0 for lag in self.lag_ms) or self.local_ms < 0 or self.link_ms < 0:
            raise ConfigurationError(
                "StoreOptions lag_ms, local_ms and link_ms are durations; none may be negative."
            )
        object.__setattr__(self, "on_partition", PartitionChoice(self.on_partition))


@dataclass(frozen=True)
class WriteResult:
    """What :meth:`ReplicatedStore.put` did."""

    key: str
    """The key written."""
    value: str
    """The value written."""
    version: int
    """The version the write got (higher is later)."""
    acked_by: tuple[int, ...]
    """The replicas that stored it before the write returned."""
    latency_ms: int
    """Simulated time the write took."""


@dataclass(frozen=True)
class ReadResult:
    """What :meth:`ReplicatedStore.get` returned."""

    key: str
    """The key read."""
    value: str | None
    """The newest value among the replicas asked; ``None`` if none of them has the key."""
    version: int
    """The version of ``value`` (0 when there is none)."""
    asked: tuple[int, ...]
    """The replicas that answered."""
    latency_ms: int
    """Simulated time the read took."""
    latest_version: int
    """The newest version of the key anywhere (what an all-knowing observer would see)."""

    @property
    def stale(self) -> bool:
        """Whether a newer write of the key exists than the one returned."""
        return self.version < self.latest_version


@dataclass(frozen=True)
class ReplicaState:
    """One replica's copy of a key, as :meth:`ReplicatedStore.replica_states` sees it."""

    replica: int
    """The replica's number (0, 1, …)."""
    value: str | None
    """Its value of the key, or ``None`` if it has none."""
    version: int
    """Its version of the key (0 when it has none)."""
    behind: int
    """How many writes of the key it has not applied yet."""


class _LogEntry(NamedTuple):
    version: int
    key: str
    value: str
    origin: int
    """The replica the write landed on; the log ships it from there."""
    written_ms: int


class ReplicatedStore:
    """``N`` replicas of a key-value store in SQLite files, with lag, quorums and partitions.

    See the module docstring for the model. Every request lands on one replica
    (``via``, like a client's nearest server or a load balancer's pick); that
    replica asks the next ones, in ring order ``via+1, via+2, …``, until it has
    the quorum it needs.

    Example::

        store = ReplicatedStore(folder, StoreOptions(lag_ms=(0, 100, 300)))
        store.put("cart", "1 book", via=0)          # stored on replica 0 only
        store.get("cart", via=2).stale              # True: replica 2 is 300 ms behind
        store.get("cart", via=2, r=3).stale         # False: the quorum overlaps
        store.advance(300)                          # replication catches up
    """

    def __init__(self, folder: str | Path, options: StoreOptions | None = None) -> None:
        """Create an empty store in ``folder`` (files of an older store there are replaced).

        Args:
            folder: Where the replica files (``replica-0.db`` …) and ``log.db`` go;
                created if missing.
            options: Replicas, lags and partition behaviour; the defaults give 3 replicas.
        """
        self.options = options or StoreOptions()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._now = 0
        self._groups: tuple[frozenset[int], ...] = ()  # empty: the network is whole
        for path in [self._log_path, *map(self._replica_path, self.replica_ids)]:
            path.unlink(missing_ok=True)
        with self._db(self._log_path) as db:
            db.execute(
                "CREATE TABLE log (version INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,"
                " value TEXT NOT NULL, origin INTEGER NOT NULL, written_ms INTEGER NOT NULL)"
            )
        for replica in self.replica_ids:
            with self._db(self._replica_path(replica)) as db:
                db.execute(
                    "CREATE TABLE kv (key TEXT PRIMARY KEY, value TEXT NOT NULL,"
                    " version INTEGER NOT NULL)"
                )
                db.execute("CREATE TABLE applied (version INTEGER PRIMARY KEY)")

    # -- the simulated world ------------------------------------------------------------------

    @property
    def replica_ids(self) -> range:
        """The replicas' numbers: ``range(N)``."""
        return range(self.options.replicas)

    @property
    def now_ms(self) -> int:
        """The store's simulated clock, in milliseconds since it was created."""
        return self._now

    def advance(self, ms: int) -> int:
        """Move the clock forward ``ms`` milliseconds and deliver the writes that fell due.

        Returns:
            How many (write, replica) deliveries happened.
        """
        if ms < 0:
            raise ConfigurationError(f"advance({ms}): time only moves forward; pass ms >= 0.")
        self._now += ms
        return self._deliver()

    def settle(self) -> int:
        """Advance the clock until every delivery the network allows has happened.

        Returns:
            How many milliseconds the clock moved.
        """
        start = self._now
        due = [
            entry.written_ms + self.options.lag_ms[replica]
            for replica, entry in self._undelivered()
            if self._reachable(entry.origin, replica)
        ]
        if due:
            self._now = max(self._now, *due)
        self._deliver()
        return self._now - start

    def partition(self, *groups: Iterable[int]) -> None:
        """Cut the network into ``groups``; replicas in different groups cannot talk.

        ``store.partition({0}, {1, 2})`` isolates replica 0. Replicas not named
        form one more group together. Writes meant for the other side wait in
        the log until :meth:`heal`.
        """
        sets = [frozenset(group) for group in groups]
        named = frozenset().union(*sets)
        unknown = sorted(named - set(self.replica_ids))
        if unknown:
            raise ConfigurationError(
                f"partition() names replica(s) {unknown}, but this store has replicas "
                f"{list(self.replica_ids)}."
            )
        if sum(len(s) for s in sets) != len(named):
            raise ConfigurationError(
                "partition() groups overlap; each replica may be in one group only."
            )
        rest = frozenset(self.replica_ids) - named
        parts = tuple(s for s in [*sets, rest] if s)
        self._groups = parts if len(parts) > 1 else ()  # one group is no partition at all

    def heal(self) -> int:
        """End the partition and deliver every held write that is already due.

        Returns:
            How many (write, replica) deliveries happened.
        """
        self._groups = ()
        return self._deliver()

    @property
    def partitioned(self) -> bool:
        """Whether a partition is in force."""
        return bool(self._groups)

    def reachable_from(self, replica: int) -> tuple[int, ...]:
        """The replicas that a request landing on ``replica`` can reach (itself included)."""
        self._check_replica(replica)
        return tuple(other for other in self.replica_ids if self._reachable(replica, other))

    # -- requests -----------------------------------------------------------------------------

    def put(self, key: str, value: str, *, w: int = 1, via: int = 0) -> WriteResult:
        """Write ``value`` under ``key``: store it on ``w`` replicas now, the rest later.

        Args:
            key: The key.
            value: The new value.
            w: The write quorum: how many replicas must store it before the call returns.
            via: The replica the request lands on; it always stores the write.

        Returns:
            The version and the replicas that acknowledged it.

        Raises:
            NotEnoughReplicas: fewer than ``w`` replicas are reachable and the store
                chooses consistency; nothing was written.
            ConfigurationError: ``w`` or ``via`` is out of range.
        """
        members = self._quorum(via, w, "write", "w")
        with self._db(self._log_path) as db:
            cursor = db.execute(
                "INSERT INTO log (key, value, origin, written_ms) VALUES (?, ?, ?, ?)",
                (key, value, via, self._now),
            )
            version = int(cursor.lastrowid or 0)
        for replica in members:
            self._apply(replica, version, key, value)
        self._deliver()  # replicas with no lag get it right away
        return WriteResult(key, value, version, members, self._latency(members, via))

    def get(self, key: str, *, r: int = 1, via: int = 0) -> ReadResult:
        """Read ``key`` from ``r`` replicas and return the newest version among them.

        Args:
            key: The key.
            r: The read quorum: how many replicas to ask.
            via: The replica the request lands on; it is always asked first.

        Returns:
            The value, which replicas answered, and whether the answer is stale.

        Raises:
            NotEnoughReplicas: fewer than ``r`` replicas are reachable and the store
                chooses consistency.
            ConfigurationError: ``r`` or ``via`` is out of range.
        """
        members = self._quorum(via, r, "read", "r")
        best_value: str | None = None
        best_version = 0
        for replica in members:
            value, version = self._read(replica, key)
            if version > best_version:
                best_value, best_version = value, version
        return ReadResult(
            key=key,
            value=best_value,
            version=best_version,
            asked=members,
            latency_ms=self._latency(members, via),
            latest_version=self.latest_version(key),
        )

    # -- looking inside -----------------------------------------------------------------------

    def latest_version(self, key: str) -> int:
        """The newest version of ``key`` written anywhere (0 if it was never written)."""
        with self._db(self._log_path) as db:
            row = db.execute("SELECT MAX(version) FROM log WHERE key = ?", (key,)).fetchone()
        return int(row[0] or 0)

    def replica_states(self, key: str) -> list[ReplicaState]:
        """Each replica's copy of ``key`` and how many writes of it that replica is behind."""
        with self._db(self._log_path) as db:
            versions = [
                int(v) for (v,) in db.execute("SELECT version FROM log WHERE key = ?", (key,))
            ]
        states = []
        for replica in self.replica_ids:
            value, version = self._read(replica, key)
            behind = sum(1 for v in versions if v > version)
            states.append(ReplicaState(replica, value, version, behind))
        return states

    def pending(self) -> int:
        """How many (write, replica) deliveries the log has not made yet."""
        return len(self._undelivered())

    # -- inside ---------------------------------------------------------------------------------

    @property
    def _log_path(self) -> Path:
        return self.folder / "log.db"

    def _replica_path(self, replica: int) -> Path:
        return self.folder / f"replica-{replica}.db"

    @contextlib.contextmanager
    def _db(self, path: Path) -> Iterator[sqlite3.Connection]:
        """One file's connection, one transaction: it commits when the block ends normally."""
        with contextlib.closing(connect(path)) as db, immediate_transaction(db):
            yield db

    def _check_replica(self, replica: int) -> None:
        if replica not in self.replica_ids:
            raise ConfigurationError(
                f"Replica {replica} does not exist; this store has replicas "
                f"{list(self.replica_ids)}."
            )

    def _reachable(self, a: int, b: int) -> bool:
        if not self._groups:
            return True
        return any(a in group and b in group for group in self._groups)

    def _quorum(self, via: int, size: int, action: str, name: str) -> tuple[int, ...]:
        self._check_replica(via)
        n = self.options.replicas
        if not 1 <= size <= n:
            raise ConfigurationError(
                f"{name}={size} is not possible with {n} replicas; use a {action} quorum "
                f"from 1 to {n}."
            )
        ring = [(via + step) % n for step in range(n)]
        reachable = [replica for replica in ring if self._reachable(via, replica)]
        if len(reachable) >= size:
            return tuple(reachable[:size])
        if self.options.on_partition is PartitionChoice.AVAILABILITY:
            return tuple(reachable)
        risk = "a stale answer" if action == "read" else "a write that the other side cannot see"
        raise NotEnoughReplicas(
            f"This {action} needs {name}={size} replicas, but only {len(reachable)} of the {n} "
            f"replicas {reachable} can be reached from replica {via}: the network is "
            f"partitioned {self._describe_groups()}. The store chooses consistency, so it "
            f"refuses rather than risk {risk}. Retry after heal(), send the request to a "
            "replica on the majority side, or choose availability "
            "(on_partition=PartitionChoice.AVAILABILITY) and accept stale or conflicting data."
        )

    def _describe_groups(self) -> str:
        return " | ".join("{" + ", ".join(map(str, sorted(group))) + "}" for group in self._groups)

    def _latency(self, members: tuple[int, ...], via: int) -> int:
        remote = any(replica != via for replica in members)
        return self.options.local_ms + (self.options.link_ms if remote else 0)

    def _log(self) -> list[_LogEntry]:
        with self._db(self._log_path) as db:
            rows = db.execute(
                "SELECT version, key, value, origin, written_ms FROM log ORDER BY version"
            ).fetchall()
        return [_LogEntry(int(v), str(k), str(val), int(o), int(t)) for v, k, val, o, t in rows]

    def _undelivered(self) -> list[tuple[int, _LogEntry]]:
        """Every (replica, log entry) pair where the replica has not applied the entry yet."""
        log = self._log()
        missing: list[tuple[int, _LogEntry]] = []
        for replica in self.replica_ids:
            with self._db(self._replica_path(replica)) as db:
                applied = {int(v) for (v,) in db.execute("SELECT version FROM applied")}
            missing.extend((replica, entry) for entry in log if entry.version not in applied)
        return missing

    def _apply(self, replica: int, version: int, key: str, value: str) -> None:
        with self._db(self._replica_path(replica)) as db:
            db.execute("INSERT OR IGNORE INTO applied (version) VALUES (?)", (version,))
            # Last writer wins: an older version arriving late never overwrites a newer one.
            db.execute(
                "INSERT INTO kv (key, value, version) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                "version = excluded.version WHERE excluded.version > kv.version",
                (key, value, version),
            )

    def _read(self, replica: int, key: str) -> tuple[str | None, int]:
        with self._db(self._replica_path(replica)) as db:
            row = db.execute("SELECT value, version FROM kv WHERE key = ?", (key,)).fetchone()
        return (None, 0) if row is None else (str(row[0]), int(row[1]))

    def _deliver(self) -> int:
        delivered = 0
        for replica, entry in self._undelivered():
            due = entry.written_ms + self.options.lag_ms[replica] <= self._now
            if due and self._reachable(entry.origin, replica):
                self._apply(replica, entry.version, entry.key, entry.value)
                delivered += 1
        return delivered
