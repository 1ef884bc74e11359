"""Run an effect at most once per idempotency key, with the result kept in SQLite.

Temporal retries activities, so an activity that charges a card or books a room
may start twice for one business operation. :class:`IdempotencyStore` makes the
second start harmless, with the semantics payment APIs such as Stripe's use:

* The **first** call with a key claims it, runs the effect and stores the
  result (as JSON). A **repeat** with the same key and the same request returns
  the stored result without running the effect again.
* The key is bound to a **fingerprint** of the first request (SHA-256 of its
  canonical JSON). The same key with a different request raises
  :class:`IdempotencyConflict`: it is a bug in the caller, and retrying does not
  fix it.
* A repeat while the first call is **still running** never runs the effect a
  second time. It polls every ``poll_interval`` for up to ``wait_timeout``: when
  the first call finishes it returns that result, otherwise it raises
  :class:`IdempotencyInProgress` (a retryable error: try again later).
* If the effect **raises**, the error is recorded and the key is released: the
  next call with that key (a retry) runs the effect again. The contract is that
  an effect which raises did not take place (or is itself safe to repeat).
* A claim whose owner **crashed** is held for at most ``lock_timeout`` (a
  lease); after that the next call takes the key over and runs the effect. Make
  ``lock_timeout`` longer than the slowest effect (and than the activity's
  ``start_to_close_timeout``): if the owner is merely slow and its lease is
  taken over, the effect has run twice, and the owner learns it from
  :class:`IdempotencyLeaseLost` when it tries to store its result.
* A key lives for ``retention`` (default 24 h) after its result was stored;
  then it behaves as new. :meth:`IdempotencyStore.purge_expired` deletes
  expired rows.

Every decision is one SQLite transaction (``BEGIN IMMEDIATE`` plus an
``INSERT ... ON CONFLICT DO UPDATE ... WHERE``) on a table whose primary key is
the idempotency key, so threads and processes sharing the file cannot both win
a claim. There is no check-then-act window.

Where the key comes from::

    # 1. A business id the request already carries (the best key when there is one).
    @activity.defn
    @store.idempotent(key=lambda req: req.payment_id)
    def charge(req: Charge) -> Receipt: ...


    # 2. The activity's identity: workflow id + activity id, the same on every retry.
    @activity.defn
    @store.idempotent()  # key=None means key_from_activity()
    def reserve(req: Reserve) -> Hold: ...


    # 3. A UUID minted by the workflow and passed in the activity's input.
    @workflow.run
    async def run(self, order: Order) -> None:
        key = str(workflow.uuid4())  # deterministic: the same value on replay
        await workflow.execute_activity(ship, Ship(order.id, idempotency_key=key), ...)

:func:`workflow.uuid4 <temporalio.workflow.uuid4>` draws from the workflow's
seeded random source, so a replay produces the same key, every retry of the
activity receives it in its input, and a new workflow run gets a new one.

Results are stored as JSON with Temporal's own encoder (dataclasses become
objects) and decoded with the function's return annotation through
:func:`temporalio.converter.value_to_type`, so a dataclass result comes back as
the dataclass. Without an annotation a result must be JSON-native (dict, list,
str, int, float, bool or None). The first call returns the decoded stored value
too, so it looks exactly like every repeat.

Inside an activity, :class:`IdempotencyConflict` and :class:`IdempotencyKeyError`
are permanent: list :data:`NON_RETRYABLE_ERROR_TYPES` in the activity's
``RetryPolicy(non_retryable_error_types=...)`` so Temporal does not retry them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import inspect
import json
import os
import sqlite3
import threading
import time
import typing
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from temporalio import activity
from temporalio.converter import AdvancedJSONEncoder, value_to_type

from sagakit._errors import ConfigurationError, SagakitError

__all__ = [
    "MAX_KEY_LENGTH",
    "NON_RETRYABLE_ERROR_TYPES",
    "IdempotencyConflict",
    "IdempotencyError",
    "IdempotencyInProgress",
    "IdempotencyKeyError",
    "IdempotencyLeaseLost",
    "IdempotencyOptions",
    "IdempotencyRecord",
    "IdempotencyStore",
    "KeyStatus",
    "fingerprint",
    "key_from_activity",
    "key_from_parts",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])

MAX_KEY_LENGTH = 255
"""The longest idempotency key accepted, in characters (Stripe's limit)."""

KeyStatus = Literal["in_progress", "completed", "failed"]
"""State of a key: claimed and running, result stored, or last attempt raised."""

NON_RETRYABLE_ERROR_TYPES = ("IdempotencyConflict", "IdempotencyKeyError")
"""Error type names to list in an activity's ``RetryPolicy.non_retryable_error_types``."""

_KEY_ADVICE = (
    "A good key names one business operation and stays the same on every retry of it: "
    "a business id such as 'payment-42', key_from_parts('order', order_id, 'charge'), "
    "key_from_activity() inside an activity, or a workflow.uuid4() made in the workflow "
    f"and passed in the activity's input. Keys are non-empty strings of at most "
    f"{MAX_KEY_LENGTH} characters."
)


# --- errors -------------------------------------------------------------------------------------


class IdempotencyError(SagakitError):
    """Root of the errors raised by :mod:`sagakit._idempotency`."""


class IdempotencyConflict(IdempotencyError):
    """The key was already used with a different request (another fingerprint)."""


class IdempotencyInProgress(IdempotencyError):
    """Another caller holds the key and did not finish within ``wait_timeout``."""


class IdempotencyLeaseLost(IdempotencyError):
    """The effect ran, but its claim had expired and another caller took the key over."""


class IdempotencyKeyError(IdempotencyError, ConfigurationError):
    """The idempotency key is missing, empty, too long or not a string."""


# --- keys and fingerprints ----------------------------------------------------------------------


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise IdempotencyKeyError(
            f"An idempotency key must be a str, got {type(key).__name__} {key!r}. "
            f"Convert it, e.g. key=lambda req: f'payment-{{req.id}}'. {_KEY_ADVICE}"
        )
    if not key.strip():
        raise IdempotencyKeyError(f"The idempotency key is empty. {_KEY_ADVICE}")
    if len(key) > MAX_KEY_LENGTH:
        raise IdempotencyKeyError(
            f"The idempotency key is {len(key)} characters long ({key[:40]!r}...); the limit "
            f"is {MAX_KEY_LENGTH}. key_from_parts() hashes long keys for you. {_KEY_ADVICE}"
        )
    return key


def key_from_parts(*parts: str | int) -> str:
    """Join identifiers into one key, e.g. ``key_from_parts("order", 42, "charge")``.

    Parts are joined with ``/`` (a ``/`` or ``%`` inside a part is escaped, so
    different parts never give the same key). A result longer than
    :data:`MAX_KEY_LENGTH` is replaced by ``"sha256:"`` and its hex digest.

    Raises:
        IdempotencyKeyError: no parts, or a part that is empty or not a str/int.
    """
    if not parts:
        raise IdempotencyKeyError(f"key_from_parts() needs at least one part. {_KEY_ADVICE}")
    texts: list[str] = []
    for part in parts:
        if isinstance(part, bool) or not isinstance(part, str | int):
            raise IdempotencyKeyError(
                f"Key parts must be str or int, got {type(part).__name__} {part!r}. {_KEY_ADVICE}"
            )
        text = str(part)
        if not text:
            raise IdempotencyKeyError(f"Key part {len(texts) + 1} is empty. {_KEY_ADVICE}")
        texts.append(text.replace("%", "%25").replace("/", "%2F"))
    key = "/".join(texts)
    if len(key) > MAX_KEY_LENGTH:
        key = "sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return key


def key_from_activity() -> str:
    """Key of the running activity: namespace, workflow id and activity id.

    Temporal keeps the activity id on every retry of the same activity, so the
    key is stable across attempts, while each activity call in a workflow gets
    its own. A workflow started again with the same workflow id (a new run)
    repeats activity ids: if that run must perform the effects again, pass a
    key made with ``workflow.uuid4()`` instead.

    Raises:
        IdempotencyKeyError: called outside a running activity.
    """
    try:
        info = activity.info()
    except RuntimeError as err:
        raise IdempotencyKeyError(
            "key_from_activity() only works inside a running Temporal activity. Outside one, "
            f"pass an explicit key. {_KEY_ADVICE}"
        ) from err
    if info.workflow_id is None:  # an activity started directly by a client
        return key_from_parts(info.namespace, "activity", info.activity_id)
    return key_from_parts(info.namespace, info.workflow_id, info.activity_id)


class _CanonicalEncoder(AdvancedJSONEncoder):
    """Temporal's JSON encoder, with sets in a stable order."""

    def default(self, o: Any) -> Any:
        if isinstance(o, set | frozenset):
            return sorted(o, key=_canonical_json)
        return super().default(o)


def _canonical_json(value: Any) -> str:
    return json.dumps(
        value,
        cls=_CanonicalEncoder,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
        allow_nan=False,
    )


def fingerprint(request: Any) -> str:
    """SHA-256 hex digest of the canonical JSON of ``request``.

    Keys are sorted and dataclasses become objects, so equal requests give the
    same fingerprint in every process.

    Raises:
        IdempotencyError: ``request`` cannot be encoded as JSON.
    """
    try:
        text = _canonical_json(request)
    except (TypeError, ValueError) as err:
        raise IdempotencyError(
            f"The request cannot be fingerprinted: {err}. Pass JSON-like values or dataclasses, "
            "or give idempotent(request=...) a function that picks the fields that matter."
        ) from err
    return hashlib.sha256(text.encode()).hexdigest()


# --- options and records ------------------------------------------------------------------------


@dataclass(frozen=True)
class IdempotencyOptions:
    """How long keys live, claims last and duplicates wait."""

    retention: timedelta = timedelta(hours=24)
    """How long a stored result is kept; after that the key behaves as new."""

    lock_timeout: timedelta = timedelta(minutes=5)
    """Lease of a claim: after this, a claim whose owner vanished can be taken over.
    Make it longer than the slowest effect."""

    wait_timeout: timedelta = timedelta(seconds=10)
    """How long a duplicate waits for a running first call before raising
    :class:`IdempotencyInProgress`; zero raises at once. In an activity with a
    ``heartbeat_timeout``, keep it shorter than that: waiting does not heartbeat."""

    poll_interval: timedelta = timedelta(milliseconds=50)
    """How often a waiting duplicate looks at the key again."""

    busy_timeout: timedelta = timedelta(seconds=10)
    """How long one SQLite statement waits for another writer to let go of the file."""

    def __post_init__(self) -> None:
        for name in ("retention", "lock_timeout", "poll_interval", "busy_timeout"):
            if getattr(self, name) <= timedelta(0):
                raise ConfigurationError(
                    f"IdempotencyOptions.{name} must be positive, got {getattr(self, name)}."
                )
        if self.wait_timeout < timedelta(0):
            raise ConfigurationError(
                f"IdempotencyOptions.wait_timeout must be zero or positive, got {self.wait_timeout}."
            )
        if self.lock_timeout >= self.retention:
            raise ConfigurationError(
                f"IdempotencyOptions.lock_timeout ({self.lock_timeout}) must be shorter than "
                f"retention ({self.retention}), or a running claim could expire under its owner."
            )


@dataclass(frozen=True)
class IdempotencyRecord:
    """One row of the store, as :meth:`IdempotencyStore.records` shows it."""

    key: str
    """The idempotency key."""
    status: KeyStatus
    """``in_progress`` (claimed), ``completed`` (result stored) or ``failed`` (released)."""
    fingerprint: str
    """SHA-256 of the request the key is bound to."""
    result: Any
    """The stored result as plain JSON values, or ``None`` until completed."""
    error: str | None
    """The last error an attempt raised, if any."""
    attempts: int
    """How many times the effect was started under this key."""
    created_at: datetime
    """When the key was first claimed."""
    updated_at: datetime
    """When the row last changed."""
    expires_at: datetime
    """When the key will behave as new."""
    locked_until: datetime | None
    """End of the current claim's lease (``in_progress`` only)."""


# --- the store ----------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key          TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('in_progress', 'completed', 'failed')),
    owner        TEXT,
    attempts     INTEGER NOT NULL,
    result       TEXT,
    error        TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    locked_until REAL,
    expires_at   REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at);
"""

# One atomic claim. The new row wins when the key is unknown; an existing row is
# taken over only when it has expired, or (same request) its last attempt failed
# or its owner's lease ran out. In DO UPDATE, bare column names are the old row.
_CLAIM = """
INSERT INTO idempotency_keys (key, fingerprint, status, owner, attempts, result, error,
                              created_at, updated_at, locked_until, expires_at)
VALUES (:key, :fingerprint, 'in_progress', :owner, 1, NULL, NULL,
        :now, :now, :locked_until, :expires_at)
ON CONFLICT (key) DO UPDATE SET
    fingerprint  = excluded.fingerprint,
    status       = 'in_progress',
    owner        = excluded.owner,
    attempts     = CASE WHEN expires_at <= :now THEN 1 ELSE attempts + 1 END,
    result       = NULL,
    error        = CASE WHEN expires_at <= :now THEN NULL ELSE error END,
    created_at   = CASE WHEN expires_at <= :now THEN :now ELSE created_at END,
    updated_at   = :now,
    locked_until = excluded.locked_until,
    expires_at   = excluded.expires_at
WHERE expires_at <= :now
   OR (fingerprint = excluded.fingerprint
       AND (status = 'failed' OR (status = 'in_progress' AND locked_until <= :now)))
RETURNING owner
"""


@dataclass(frozen=True)
class _Claimed:
    owner: str


@dataclass(frozen=True)
class _Stored:
    result: str


@dataclass(frozen=True)
class _Busy:
    locked_until: float


_Outcome = _Claimed | _Stored | _Busy


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _dt(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


class IdempotencyStore:
    """Idempotency keys and stored results in one SQLite file, shared by threads and processes.

    Nothing touches the disk until the first call, so a store can be created at
    module level beside the activities that use it. Each operation opens its own
    connection (WAL mode, ``busy_timeout``), so one store object may be used from
    many threads, and many processes may open the same file.

    Args:
        path: the SQLite file; its folder is created if needed. ``":memory:"``
            is refused because every connection would see a different database.
        options: retention, lease, waiting and locking times.
        clock: returns the current time; tests pass a fake one to move time
            without sleeping.
        sleep: waits between polls of a duplicate call (``time.sleep`` by default;
            :meth:`run_async` always uses ``asyncio.sleep``).

    Raises:
        ConfigurationError: ``path`` is ``":memory:"`` or empty.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        options: IdempotencyOptions | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if str(path) in ("", ":memory:"):
            raise ConfigurationError(
                f"IdempotencyStore needs a file path, got {str(path)!r}: an in-memory database "
                "is private to one connection. Use a file, e.g. tmp_path / 'keys.db'."
            )
        self.path = Path(path)
        self.options = options or IdempotencyOptions()
        self._clock = clock
        self._sleep = sleep
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"IdempotencyStore({str(self.path)!r})"

    # --- connections ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            self._ensure_schema()
            conn = sqlite3.connect(
                self.path,
                timeout=self.options.busy_timeout.total_seconds(),
                isolation_level=None,  # autocommit; transactions are explicit
            )
        except sqlite3.Error as err:
            raise self._store_error(err) from err
        try:
            yield conn
        except sqlite3.Error as err:
            raise self._store_error(err) from err
        finally:
            conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")  # take the write lock now: no lost updates
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _store_error(self, err: sqlite3.Error) -> IdempotencyError:
        return IdempotencyError(
            f"The idempotency store {self.path} could not be used: {err}. Check that the folder "
            "is writable and not on a network share; 'database is locked' means another writer "
            "held the file longer than busy_timeout: retry, or raise busy_timeout."
        )

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self.options.busy_timeout.total_seconds(),
                isolation_level=None,
            )
            try:
                conn.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                conn.executescript(_SCHEMA)
            finally:
                conn.close()
            self._schema_ready = True

    def _now(self) -> float:
        return self._clock().timestamp()

    # --- the three steps: claim, complete, release ----------------------------------------------

    def _claim(self, key: str, request_fingerprint: str) -> _Outcome:
        now = self._now()
        owner = uuid.uuid4().hex
        with self._transaction() as conn:
            won = conn.execute(
                _CLAIM,
                {
                    "key": key,
                    "fingerprint": request_fingerprint,
                    "owner": owner,
                    "now": now,
                    "locked_until": now + self.options.lock_timeout.total_seconds(),
                    "expires_at": now + self.options.retention.total_seconds(),
                },
            ).fetchall()
            if won and won[0][0] == owner:
                return _Claimed(owner)
            stored_fingerprint, status, result, locked_until = conn.execute(
                "SELECT fingerprint, status, result, locked_until FROM idempotency_keys "
                "WHERE key = ?",
                (key,),
            ).fetchone()
        if stored_fingerprint != request_fingerprint:
            raise IdempotencyConflict(
                f"The idempotency key {key!r} was already used for a different request "
                f"(fingerprint {stored_fingerprint[:12]}..., this one {request_fingerprint[:12]}"
                "...). Send exactly the same request to get the stored result, or use a new key "
                "for a new operation."
            )
        if status == "completed":
            return _Stored(result)
        return _Busy(locked_until)

    def _complete(self, key: str, owner: str, result_json: str) -> None:
        now = self._now()
        with self._connect() as conn:
            updated = conn.execute(
                "UPDATE idempotency_keys SET status = 'completed', result = ?, owner = NULL, "
                "locked_until = NULL, updated_at = ?, expires_at = ? "
                "WHERE key = ? AND owner = ? AND status = 'in_progress'",
                (result_json, now, now + self.options.retention.total_seconds(), key, owner),
            ).rowcount
        if updated != 1:
            raise IdempotencyLeaseLost(
                f"The effect for idempotency key {key!r} finished, but its claim had expired "
                f"(lock_timeout {self.options.lock_timeout}) and another caller took the key "
                "over, so the effect may have run twice. Make lock_timeout longer than the "
                "slowest effect."
            )

    def _release(self, key: str, owner: str, error: BaseException) -> None:
        text = f"{type(error).__name__}: {error}"[:1000]
        try:
            with self._connect() as conn:
                conn.execute(
                    "UPDATE idempotency_keys SET status = 'failed', error = ?, owner = NULL, "
                    "locked_until = NULL, updated_at = ? WHERE key = ? AND owner = ?",
                    (text, self._now(), key, owner),
                )
        except IdempotencyError as store_err:
            error.add_note(
                f"sagakit: the idempotency key {key!r} could not be released ({store_err}); "
                "it becomes free when its lease (lock_timeout) ends."
            )

    def _finish(self, key: str, owner: str, value: Any, result_type: Any) -> Any:
        try:
            result_json = _canonical_json(value)
            decoded = _decode(result_json, result_type)
        except (TypeError, ValueError) as err:
            problem = IdempotencyError(
                f"The result for idempotency key {key!r} cannot be stored as JSON and read back "
                f"as {_type_name(result_type)}: {err}. Return a dataclass or JSON-native values "
                "(dict, list, str, int, float, bool, None) and annotate the return type. The key "
                "was released, so a retry runs the effect again."
            )
            self._release(key, owner, problem)
            raise problem from err
        self._complete(key, owner, result_json)
        return decoded

    def _in_progress(self, key: str, locked_until: float) -> IdempotencyInProgress:
        return IdempotencyInProgress(
            f"The idempotency key {key!r} is held by a call that is still running (its lease "
            f"ends {_dt(locked_until).isoformat()}); waited {self.options.wait_timeout}. Retry "
            "later to get its result; if its owner crashed, the key is taken over once the "
            "lease ends."
        )

    # --- public API ------------------------------------------------------------------------------

    def run(
        self,
        key: str,
        request: Any,
        effect: Callable[[], T],
        *,
        result_type: Any = None,
    ) -> T:
        """Run ``effect()`` once for ``key`` and return its (stored) result.

        Args:
            key: the idempotency key.
            request: what the caller asked for; its :func:`fingerprint` is bound to the key.
            effect: the side effect, called with no arguments at most once per live key
                (again only after a raised attempt or an expired lease).
            result_type: type hint to decode the stored JSON into (``None``: plain JSON).

        Raises:
            IdempotencyKeyError: the key is not valid.
            IdempotencyConflict: the key is bound to a different request.
            IdempotencyInProgress: another call holds the key beyond ``wait_timeout``.
            IdempotencyLeaseLost: the effect outlived its lease and the key was taken over.
            IdempotencyError: the result or request is not JSON, or the file is unusable.
        """
        key = _check_key(key)
        request_fingerprint = fingerprint(request)
        deadline = time.monotonic() + self.options.wait_timeout.total_seconds()
        while True:
            outcome = self._claim(key, request_fingerprint)
            if isinstance(outcome, _Stored):
                return cast(T, _decode(outcome.result, result_type))
            if isinstance(outcome, _Claimed):
                break
            if time.monotonic() >= deadline:
                raise self._in_progress(key, outcome.locked_until)
            self._sleep(self.options.poll_interval.total_seconds())
        try:
            value = effect()
        except BaseException as err:  # KeyboardInterrupt too: the effect did not finish
            self._release(key, outcome.owner, err)
            raise
        return cast(T, self._finish(key, outcome.owner, value, result_type))

    async def run_async(
        self,
        key: str,
        request: Any,
        effect: Callable[[], Awaitable[T]],
        *,
        result_type: Any = None,
    ) -> T:
        """Like :meth:`run`, for an ``async`` effect; database calls run in a thread.

        Raises:
            IdempotencyKeyError: the key is not valid.
            IdempotencyConflict: the key is bound to a different request.
            IdempotencyInProgress: another call holds the key beyond ``wait_timeout``.
            IdempotencyLeaseLost: the effect outlived its lease and the key was taken over.
            IdempotencyError: the result or request is not JSON, or the file is unusable.
        """
        key = _check_key(key)
        request_fingerprint = fingerprint(request)
        deadline = time.monotonic() + self.options.wait_timeout.total_seconds()
        while True:
            outcome = await asyncio.to_thread(self._claim, key, request_fingerprint)
            if isinstance(outcome, _Stored):
                return cast(T, _decode(outcome.result, result_type))
            if isinstance(outcome, _Claimed):
                break
            if time.monotonic() >= deadline:
                raise self._in_progress(key, outcome.locked_until)
            await asyncio.sleep(self.options.poll_interval.total_seconds())
        try:
            value = await effect()
        except BaseException as err:  # asyncio.CancelledError too
            self._release(key, outcome.owner, err)  # one quick UPDATE, run inline
            raise
        finish = functools.partial(self._finish, key, outcome.owner, value, result_type)
        return cast(T, await asyncio.to_thread(finish))

    def idempotent(
        self,
        key: Callable[..., str] | None = None,
        *,
        request: Callable[..., Any] | None = None,
        operation: str | None = None,
    ) -> Callable[[F], F]:
        """Decorate a sync or async function (or activity) so each key runs it once.

        Put it *under* ``@activity.defn``. The wrapper keeps the function's name,
        signature and annotations, which Temporal reads.

        Args:
            key: called with the function's arguments, returns the key; ``None``
                means :func:`key_from_activity`.
            request: called with the function's arguments, returns what to
                fingerprint; ``None`` means all arguments by name.
            operation: name mixed into the fingerprint, so two functions cannot
                share a key; defaults to the function's ``__qualname__``.

        Returns:
            A decorator that returns a function of the same type.
        """

        def decorate(fn: F) -> F:
            name = operation or fn.__qualname__
            signature = inspect.signature(fn)
            hints = _ReturnHint(fn)

            def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
                the_key = key(*args, **kwargs) if key is not None else key_from_activity()
                if request is not None:
                    return the_key, {"operation": name, "request": request(*args, **kwargs)}
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                return the_key, {"operation": name, "arguments": dict(bound.arguments)}

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    the_key, the_request = prepare(args, kwargs)
                    return await self.run_async(
                        the_key,
                        the_request,
                        lambda: fn(*args, **kwargs),
                        result_type=hints.get(),
                    )

                return cast(F, async_wrapper)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                the_key, the_request = prepare(args, kwargs)
                return self.run(
                    the_key, the_request, lambda: fn(*args, **kwargs), result_type=hints.get()
                )

            return cast(F, wrapper)

        return decorate

    def get(self, key: str) -> IdempotencyRecord | None:
        """The record for ``key``, or ``None`` if the store has never seen it.

        Raises:
            IdempotencyKeyError: the key is not valid.
        """
        key = _check_key(key)
        with self._connect() as conn:
            row = conn.execute(f"{_SELECT_RECORD} WHERE key = ?", (key,)).fetchone()
        return _record(row) if row else None

    def records(self) -> list[IdempotencyRecord]:
        """Every row, oldest first, expired ones included until they are purged."""
        with self._connect() as conn:
            rows = conn.execute(f"{_SELECT_RECORD} ORDER BY created_at, key").fetchall()
        return [_record(row) for row in rows]

    def table(self, *, width: int = 40) -> str:
        """The records as a plain-text table: key, status, attempts, fingerprint, result.

        Args:
            width: longest text shown for a key or a result before it is cut.
        """

        def cut(text: str) -> str:
            return text if len(text) <= width else text[: width - 3] + "..."

        header = ("key", "status", "attempts", "fingerprint", "result / last error")
        rows = [header]
        for record in self.records():
            shown = (
                _canonical_json(record.result)
                if record.status == "completed"
                else (record.error or "")
            )
            rows.append(
                (
                    cut(record.key),
                    record.status,
                    str(record.attempts),
                    record.fingerprint[:12],
                    cut(shown),
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        lines = [
            "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(line.rstrip() for line in lines)

    def purge_expired(self) -> int:
        """Delete keys whose retention has passed; return how many were deleted."""
        with self._connect() as conn:
            deleted: int = conn.execute(
                "DELETE FROM idempotency_keys WHERE expires_at <= ?", (self._now(),)
            ).rowcount
        return deleted


_SELECT_RECORD = (
    "SELECT key, status, fingerprint, result, error, attempts, created_at, updated_at, "
    "expires_at, locked_until FROM idempotency_keys"
)


def _record(row: tuple[Any, ...]) -> IdempotencyRecord:
    key, status, fp, result, error, attempts, created, updated, expires, locked = row
    return IdempotencyRecord(
        key=key,
        status=status,
        fingerprint=fp,
        result=json.loads(result) if result is not None else None,
        error=error,
        attempts=attempts,
        created_at=_dt(created),
        updated_at=_dt(updated),
        expires_at=_dt(expires),
        locked_until=_dt(locked) if locked is not None else None,
    )


def _decode(result_json: str, result_type: Any) -> Any:
    value = json.loads(result_json)
    if result_type is None:
        return value
    return value_to_type(result_type, value)


def _type_name(hint: Any) -> str:
    return "plain JSON" if hint is None else getattr(hint, "__name__", repr(hint))


class _ReturnHint:
    """The return annotation of a function, resolved on first use (names may be defined later)."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn
        self._resolved = False
        self._hint: Any = None

    def get(self) -> Any:
        if not self._resolved:
            try:
                hint = typing.get_type_hints(self._fn).get("return")
            except Exception as err:  # NameError and friends from unresolvable annotations
                raise IdempotencyError(
                    f"The return annotation of {self._fn.__qualname__} cannot be resolved "
                    f"({err}); idempotent() needs it to read stored results back. Define the "
                    "return type at module level, or remove the annotation and return "
                    "JSON-native values."
                ) from err
            self._hint = None if hint is Any else hint
            self._resolved = True
        return self._hint
