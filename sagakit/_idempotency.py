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
* If the effect **raises** (an :class:`Exception`), the error is recorded and the
  key is released: the next call with that key (a retry) runs the effect again.
  The contract is that an effect which raises did not take place (or is itself
  safe to repeat).
* If the effect **ran but its result cannot be stored** (not JSON, or not what
  the return annotation says), the key is kept as ``poisoned`` and every call
  with it raises :class:`IdempotencyPoisoned`, which Temporal does not retry:
  the effect happened once and must not happen again.
* A claim whose owner never finished (the process was killed, the effect was
  cancelled or interrupted half-way, or it outlived ``lock_timeout``) is
  **abandoned**: the store cannot know whether the effect happened. What the
  next call does is a policy, :attr:`IdempotencyOptions.on_abandoned`:

  - ``"refuse"`` (the default) raises :class:`IdempotencyAbandoned` until
    someone finds out and says so: :meth:`IdempotencyStore.resolve` (it
    happened, here is its result) or :meth:`IdempotencyStore.release` (it did
    not). A call may pass ``recover=``, a function that asks the other system
    whether the effect with this key happened and returns its result (running
    the effect only if it did not), as Stripe-style recovery does; the store
    then calls it instead of the effect.
  - ``"rerun"`` takes the key over and runs the effect again.

* A key lives for ``retention`` (default 24 h) after it was last used; then it
  behaves as new. :meth:`IdempotencyStore.purge_expired` deletes expired rows.

**The guarantee.** With the default policy the effect starts **at most once**
per live key, except after it raised (which, by contract, means it did not take
place), after a deliberate :meth:`~IdempotencyStore.release`, or when a
``recover`` function runs it. An abandoned effect is never repeated on a guess;
the price is that it may have happened without a stored result, and a person
(or ``recover``) must settle it. With ``on_abandoned="rerun"`` the effect runs
**at least once**: it is never lost, but a crash after the effect and before its
result was stored runs it twice. A slow owner whose claim was taken over learns
it from :class:`IdempotencyLeaseLost` when it tries to store its result.

Exactly once is out of the store's reach: the effect commits in another system
(a card network) and the store's record in this file, and a crash can fall
between the two commits. The only exactly-once case is an effect in the *same*
database as the key, committed in the same transaction: the course's simulated
services do that (``sagakit.course.services._store.run_once`` writes the key
row, the effect and its ledger entry in one transaction). When the other system
accepts your idempotency key itself, send the key there too.

Every claim is one SQLite transaction (``BEGIN IMMEDIATE`` plus an
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
:class:`IdempotencyPoisoned` is a non-retryable Temporal ``ApplicationError``
itself. :class:`IdempotencyInProgress` and :class:`IdempotencyAbandoned` are
retryable: the activity keeps retrying (each failure visible in the Temporal
UI) until the first call finishes or someone settles the abandoned key.
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
from collections.abc import Awaitable, Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from temporalio import activity
from temporalio.converter import AdvancedJSONEncoder, value_to_type
from temporalio.exceptions import ApplicationError

from sagakit import _sqlite
from sagakit._errors import ConfigurationError, SagakitError
from sagakit._text import text_table

__all__ = [
    "MAX_KEY_LENGTH",
    "NON_RETRYABLE_ERROR_TYPES",
    "AbandonedPolicy",
    "IdempotencyAbandoned",
    "IdempotencyConflict",
    "IdempotencyError",
    "IdempotencyInProgress",
    "IdempotencyKeyError",
    "IdempotencyLeaseLost",
    "IdempotencyOptions",
    "IdempotencyPoisoned",
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

KeyStatus = Literal["in_progress", "completed", "failed", "abandoned", "poisoned"]
"""State of a key: claimed and running, result stored, last attempt raised (released),
owner never finished (outcome unknown), or effect ran but its result could not be stored."""

AbandonedPolicy = Literal["refuse", "rerun"]
"""What a call does with an abandoned claim: refuse (at most once) or run again (at least once)."""

NON_RETRYABLE_ERROR_TYPES = ("IdempotencyConflict", "IdempotencyKeyError", "IdempotencyPoisoned")
"""Error type names to list in an activity's ``RetryPolicy.non_retryable_error_types``."""

_KEY_ADVICE = (
    "A good key names one business operation and stays the same on every retry of it: "
    "a business id such as 'payment-42', key_from_parts('order', order_id, 'charge'), "
    "key_from_activity() inside an activity, or a workflow.uuid4() made in the workflow "
    f"and passed in the activity's input. Keys are non-empty strings of at most "
    f"{MAX_KEY_LENGTH} characters."
)

_SETTLE_ADVICE = (
    "To settle the key, find out from the system the effect acts on whether it happened, then call "
    "store.resolve({key!r}, result) if it did or store.release({key!r}) if it did not; or pass "
    "recover=... (a function that looks the effect up by this key and returns its result) so "
    "the store can settle it itself."
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
    """The idempotency key is missing, empty, too long, not a string or not valid text."""


class IdempotencyAbandoned(IdempotencyError):
    """An earlier claim of the key never finished, so its effect may or may not have happened.

    Raised while :attr:`IdempotencyOptions.on_abandoned` is ``"refuse"`` and the
    call has no ``recover`` function. Retryable: it stops once someone calls
    :meth:`IdempotencyStore.resolve` or :meth:`IdempotencyStore.release`.
    """


class IdempotencyPoisoned(IdempotencyError, ApplicationError):
    """The effect ran, but its result could not be stored: the key refuses every call.

    It is a non-retryable Temporal :class:`~temporalio.exceptions.ApplicationError`
    (type ``"IdempotencyPoisoned"``), so an activity that raises it is not
    retried whatever its retry policy says: a retry could not succeed, and the
    effect must not run again.
    """

    def __init__(self, message: str) -> None:
        """Make the error, non-retryable for Temporal.

        Args:
            message: what happened and what to do.
        """
        ApplicationError.__init__(self, message, non_retryable=True)
        self._type = "IdempotencyPoisoned"  # after __init__: keeps str(error) == message


# --- keys and fingerprints ----------------------------------------------------------------------


def _unencodable(text: str) -> UnicodeEncodeError | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        return err
    return None


def _not_text_error(what: str, text: str, err: UnicodeEncodeError) -> IdempotencyKeyError:
    return IdempotencyKeyError(
        f"{what} {text[:40]!r} is not valid text: the character {text[err.start]!r} at "
        f"position {err.start} cannot be encoded as UTF-8 (a lone surrogate, often left by "
        "decoding bytes with errors='surrogateescape'). Build the key from ids, or decode the "
        f"bytes with errors='replace'. {_KEY_ADVICE}"
    )


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
    problem = _unencodable(key)
    if problem is not None:
        raise _not_text_error("The idempotency key", key, problem)
    return key


def key_from_parts(*parts: str | int) -> str:
    """Join identifiers into one key, e.g. ``key_from_parts("order", 42, "charge")``.

    Parts are joined with ``/`` (a ``/`` or ``%`` inside a part is escaped, so
    different parts never give the same key). A result longer than
    :data:`MAX_KEY_LENGTH` is replaced by ``"sha256:"`` and its hex digest.

    Raises:
        IdempotencyKeyError: no parts, or a part that is empty, not a str/int, or
            not valid text (a lone surrogate).
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
        problem = _unencodable(text)
        if problem is not None:
            raise _not_text_error(f"Key part {len(texts) + 1}", text, problem)
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
    """How long keys live, claims last and duplicates wait, and what abandoned claims mean."""

    retention: timedelta = timedelta(hours=24)
    """How long a key is kept after it was last used; after that it behaves as new."""

    lock_timeout: timedelta = timedelta(minutes=5)
    """Lease of a claim: a claim older than this whose owner has not finished counts as
    abandoned (see :attr:`on_abandoned`). Make it longer than the slowest effect."""

    wait_timeout: timedelta = timedelta(seconds=10)
    """How long a duplicate waits for a running first call before raising
    :class:`IdempotencyInProgress`; zero raises at once. Measured with the store's
    ``clock``. In an activity with a ``heartbeat_timeout``, keep it shorter than
    that: waiting does not heartbeat."""

    poll_interval: timedelta = timedelta(milliseconds=50)
    """How often a waiting duplicate looks at the key again."""

    busy_timeout: timedelta = timedelta(seconds=10)
    """How long one SQLite statement waits for another writer to let go of the file."""

    on_abandoned: AbandonedPolicy = "refuse"
    """What a call without ``recover`` does when it finds an abandoned claim:
    ``"refuse"`` raises :class:`IdempotencyAbandoned` (at most once per key: the
    effect is never repeated on a guess), ``"rerun"`` takes the key over and runs
    the effect again (at least once: a crash after the effect runs it twice)."""

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
        if self.on_abandoned not in ("refuse", "rerun"):
            raise ConfigurationError(
                f"IdempotencyOptions.on_abandoned must be 'refuse' or 'rerun', got "
                f"{self.on_abandoned!r}."
            )


@dataclass(frozen=True)
class IdempotencyRecord:
    """One row of the store, as :meth:`IdempotencyStore.records` shows it."""

    key: str
    """The idempotency key."""
    status: KeyStatus
    """``in_progress`` (claimed), ``completed`` (result stored), ``failed`` (the last
    attempt raised; released), ``abandoned`` (the owner never finished; a claim whose
    lease ended shows as abandoned too) or ``poisoned`` (the effect ran, its result
    could not be stored)."""
    fingerprint: str
    """SHA-256 of the request the key is bound to."""
    result: Any
    """The stored result as plain JSON values, or ``None`` until completed."""
    error: str | None
    """The last error an attempt raised or met, if any."""
    attempts: int
    """How many times the effect (or a ``recover`` function) was started under this key."""
    created_at: datetime
    """When the key was first claimed."""
    updated_at: datetime
    """When the row last changed."""
    expires_at: datetime
    """When the key will behave as new."""
    locked_until: datetime | None
    """End of the claim's lease (``in_progress``; for ``abandoned``, when it ended)."""


# --- the store ----------------------------------------------------------------------------------

_SCHEMA_VERSION = 2
"""``PRAGMA user_version`` of a current key file; 0 is the first layout (three statuses)."""

_TABLE = """
CREATE TABLE idempotency_keys (
    key          TEXT PRIMARY KEY,
    fingerprint  TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('in_progress', 'completed', 'failed',
                                                 'abandoned', 'poisoned')),
    owner        TEXT,
    attempts     INTEGER NOT NULL,
    result       TEXT,
    error        TEXT,
    created_at   REAL NOT NULL,
    updated_at   REAL NOT NULL,
    locked_until REAL,
    expires_at   REAL NOT NULL
)
"""
_INDEX = "CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at ON idempotency_keys (expires_at)"
_COLUMNS = (
    "key, fingerprint, status, owner, attempts, result, error, created_at, updated_at, "
    "locked_until, expires_at"
)

# One atomic claim. The new row wins when the key is unknown; an existing row is
# taken over only when it has expired, or (same request) its last attempt failed,
# or (same request, and the caller may take abandoned claims) its owner never
# finished. In DO UPDATE, bare column names are the old row.
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
       AND (status = 'failed'
            OR (:take_abandoned
                AND (status = 'abandoned'
                     OR (status = 'in_progress' AND locked_until <= :now)))))
RETURNING owner
"""


@dataclass(frozen=True)
class _Claimed:
    owner: str
    abandoned: bool
    """The claim took over an abandoned one: the effect may already have happened."""


@dataclass(frozen=True)
class _Stored:
    result: str


@dataclass(frozen=True)
class _Busy:
    locked_until: float


@dataclass(frozen=True)
class _Abandoned:
    since: float
    error: str | None


@dataclass(frozen=True)
class _Poisoned:
    error: str | None


_Outcome = _Claimed | _Stored | _Busy | _Abandoned | _Poisoned


# The steps of one call. IdempotencyStore._protocol yields them; run() performs them
# in the calling thread, run_async() awaits the effect and runs the blocking steps in
# a thread. A step that raises is thrown back into the protocol at its yield.


class _Blocking:
    """A blocking store operation; remembers its value, so an interrupted caller can undo it."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.value: Any = None

    def __call__(self) -> Any:
        self.value = self.fn()
        return self.value


@dataclass(frozen=True)
class _Effect:
    """The caller's effect (or recover function): a plain call in run(), awaited in run_async()."""

    fn: Callable[[], Any]


@dataclass(frozen=True)
class _Sleep:
    """Wait between two polls of a busy key."""

    seconds: float


_Step = _Blocking | _Effect | _Sleep


async def _in_thread(step: _Blocking) -> Any:
    """Run ``step`` in a thread; if cancelled meanwhile, wait for it to end, then re-raise.

    A thread cannot be stopped, so a claim it is making commits anyway; waiting
    lets the protocol see the claim and give it back instead of leaving it held
    for the whole lease.
    """
    future = asyncio.ensure_future(asyncio.to_thread(step))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        if not future.cancelled():
            future.exception()  # mark it retrieved: the cancellation is what the caller sees
        raise


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _dt(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def _error_text(error: BaseException) -> str:
    message = str(error)
    text = f"{type(error).__name__}: {message}"[:1000] if message else type(error).__name__
    return text.encode("utf-8", "backslashreplace").decode("utf-8")  # lone surrogates too


class IdempotencyStore:
    """Idempotency keys and stored results in one SQLite file, shared by threads and processes.

    Nothing touches the disk until the first call, so a store can be created at
    module level beside the activities that use it. Each operation opens its own
    connection (WAL mode, ``busy_timeout``), so one store object may be used from
    many threads, and many processes may open (and create) the same file at once.
    Deleting the file forgets every key: a store that was using it refuses to go
    on (it does not re-create an empty file behind your back).

    Guarantee: by default an effect starts **at most once** per live key (again
    only after it raised, after :meth:`release`, or through a ``recover``
    function); a claim whose owner never finished is refused with
    :class:`IdempotencyAbandoned` until it is settled. ``on_abandoned="rerun"``
    makes it **at least once** instead. Neither is exactly once: that needs the
    key committed in the same transaction as the effect, which only works when
    the effect is in the same database (as in the course's simulated services).

    Args:
        path: the SQLite file; its folder is created if needed. ``":memory:"``
            is refused because every connection would see a different database.
        options: retention, lease, waiting, locking times and the abandoned-claim policy.
        clock: returns the current time (leases, retention and ``wait_timeout`` are
            measured with it); tests pass a fake one to move time without sleeping.
        sleep: waits between polls of a duplicate call in :meth:`run`.
        async_sleep: waits between polls of a duplicate call in :meth:`run_async`.

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
        async_sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
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
        self._async_sleep = async_sleep
        self._schema_ready = False
        self._schema_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"IdempotencyStore({str(self.path)!r})"

    # --- connections ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self._ensure_schema()
        if not self.path.exists():  # connecting would silently create an empty file
            raise self._lost_error("was deleted while this store was using it")
        try:
            conn = _sqlite.connect(self.path, busy_timeout=self.options.busy_timeout)
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
        with self._connect() as conn, _sqlite.immediate_transaction(conn):
            yield conn

    def _store_error(self, err: sqlite3.Error) -> IdempotencyError:
        if "no such table" in str(err):
            return self._lost_error(
                "lost its table while this store was using it (the file was deleted or replaced)"
            )
        return IdempotencyError(
            f"The idempotency store {self.path} could not be used: {err}. Check that the folder "
            "is writable and not on a network share; 'database is locked' means another writer "
            "held the file longer than busy_timeout: retry, or raise busy_timeout."
        )

    def _lost_error(self, what_happened: str) -> IdempotencyError:
        return IdempotencyError(
            f"The idempotency store file {self.path} {what_happened}: every key recorded in "
            "it is gone, so effects could run a second time. "
            "Restore the file from a backup; or, to start again with no keys on purpose, make "
            f"a new IdempotencyStore({str(self.path)!r})."
        )

    def _ensure_schema(self) -> None:
        if self._schema_ready:
            return
        with self._schema_lock:
            if self._schema_ready:
                return
            self._make_folder()
            try:
                conn = _sqlite.connect(self.path, busy_timeout=self.options.busy_timeout)
            except sqlite3.Error as err:
                raise self._store_error(err) from err
            try:
                # Several processes may create the same new file at once: the WAL switch
                # retries 'database is locked', and the schema is made in one write
                # transaction, by whichever process takes the lock first.
                _sqlite.enable_wal(conn, busy_timeout=self.options.busy_timeout)
                with _sqlite.immediate_transaction(conn):
                    self._create_or_upgrade(conn)
            except sqlite3.Error as err:
                raise self._store_error(err) from err
            finally:
                conn.close()
            self._schema_ready = True

    def _make_folder(self) -> None:
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            blocker = next(
                (p for p in (folder, *folder.parents) if p.exists() and not p.is_dir()), None
            )
            reason = (
                f"{blocker} is a file, not a folder"
                if blocker is not None
                else f"{err.strerror or err}"
            )
            raise IdempotencyError(
                f"The idempotency store {self.path} cannot be created: its folder {folder} "
                f"cannot be made ({reason}). Put the key file in a folder you can write to, "
                "e.g. tmp_path / 'keys.db', or move the file that is in the way."
            ) from err

    def _create_or_upgrade(self, conn: sqlite3.Connection) -> None:
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        exists = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'idempotency_keys'"
        ).fetchone()
        if version > _SCHEMA_VERSION:
            raise IdempotencyError(
                f"The idempotency store {self.path} was written by a newer sagakit (layout "
                f"{version}, this one knows {_SCHEMA_VERSION}). Upgrade sagakit, or use "
                "another file."
            )
        if exists and version == _SCHEMA_VERSION:
            return
        if exists:  # the first layout: same columns, fewer statuses allowed
            conn.execute("ALTER TABLE idempotency_keys RENAME TO idempotency_keys_v1")
            conn.execute(_TABLE)
            conn.execute(
                f"INSERT INTO idempotency_keys ({_COLUMNS}) "
                f"SELECT {_COLUMNS} FROM idempotency_keys_v1"
            )
            conn.execute("DROP TABLE idempotency_keys_v1")
        else:
            conn.execute(_TABLE)
        conn.execute(_INDEX)
        conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    def _now(self) -> float:
        return self._clock().timestamp()

    # --- the steps: claim, complete, fail, abandon, poison, unclaim -----------------------------

    def _claim(self, key: str, request_fingerprint: str, take_abandoned: bool) -> _Outcome:
        now = self._now()
        owner = uuid.uuid4().hex
        with self._transaction() as conn:
            before = conn.execute(
                "SELECT fingerprint, status, result, error, locked_until, expires_at "
                "FROM idempotency_keys WHERE key = ?",
                (key,),
            ).fetchone()
            won = conn.execute(
                _CLAIM,
                {
                    "key": key,
                    "fingerprint": request_fingerprint,
                    "owner": owner,
                    "now": now,
                    "locked_until": now + self.options.lock_timeout.total_seconds(),
                    "expires_at": now + self.options.retention.total_seconds(),
                    "take_abandoned": int(take_abandoned),
                },
            ).fetchall()
            if won and won[0][0] == owner:
                took_abandoned = (
                    before is not None
                    and before[5] > now
                    and _status(before[1], before[4], now) == "abandoned"
                )
                return _Claimed(owner, took_abandoned)
            stored_fingerprint, status, result, error, locked_until, _ = before
            if stored_fingerprint != request_fingerprint:
                raise IdempotencyConflict(
                    f"The idempotency key {key!r} was already used for a different request "
                    f"(fingerprint {stored_fingerprint[:12]}..., this one "
                    f"{request_fingerprint[:12]}...). Send exactly the same request to get the "
                    "stored result, or use a new key for a new operation."
                )
            if status == "completed":
                return _Stored(result)
            if status == "poisoned":
                return _Poisoned(error)
            if status == "in_progress" and locked_until > now:
                return _Busy(locked_until)
            if status == "in_progress":  # the lease ended: say so in the file too
                conn.execute(
                    "UPDATE idempotency_keys SET status = 'abandoned', updated_at = ? "
                    "WHERE key = ?",
                    (now, key),
                )
            return _Abandoned(locked_until if locked_until is not None else now, error)

    def _complete(self, key: str, owner: str, result_json: str) -> None:
        now = self._now()
        with self._connect() as conn:
            updated = conn.execute(
                "UPDATE idempotency_keys SET status = 'completed', result = ?, owner = NULL, "
                "locked_until = NULL, updated_at = ?, expires_at = ? "
                "WHERE key = ? AND owner = ? AND status IN ('in_progress', 'abandoned')",
                (result_json, now, now + self.options.retention.total_seconds(), key, owner),
            ).rowcount
        if updated != 1:
            raise self._lease_lost(key)

    def _lease_lost(self, key: str) -> IdempotencyLeaseLost:
        return IdempotencyLeaseLost(
            f"The effect for idempotency key {key!r} finished, but its claim had ended "
            f"(lock_timeout {self.options.lock_timeout}) and the key was taken over or "
            "settled by hand meanwhile, so the effect may have run twice. Make lock_timeout "
            "longer than the slowest effect."
        )

    def _set_outcome(
        self, key: str, owner: str, error: BaseException, sql: str, params: tuple[Any, ...]
    ) -> None:
        """Run one UPDATE about ``owner``'s claim; a store failure becomes a note on ``error``."""
        try:
            with self._connect() as conn:
                conn.execute(sql, params)
        except IdempotencyError as store_err:
            error.add_note(
                f"sagakit: the idempotency key {key!r} could not be updated after "
                f"{type(error).__name__} ({store_err}); its claim ends with its lease "
                "(lock_timeout) and then counts as abandoned."
            )

    def _fail(self, key: str, owner: str, error: BaseException) -> None:
        """The effect raised: it did not take place, so release the key for a retry."""
        self._set_outcome(
            key,
            owner,
            error,
            "UPDATE idempotency_keys SET status = 'failed', error = ?, owner = NULL, "
            "locked_until = NULL, updated_at = ? WHERE key = ? AND owner = ?",
            (_error_text(error), self._now(), key, owner),
        )

    def _abandon(self, key: str, owner: str, error: BaseException) -> None:
        """The effect was interrupted (or recover failed): whether it happened is unknown."""
        now = self._now()
        self._set_outcome(
            key,
            owner,
            error,
            "UPDATE idempotency_keys SET status = 'abandoned', error = ?, owner = NULL, "
            "locked_until = ?, updated_at = ? WHERE key = ? AND owner = ?",
            (_error_text(error), now, now, key, owner),
        )

    def _unclaim(self, key: str, claimed: _Claimed, error: BaseException) -> None:
        """Interrupted before the effect started: give the key back as it was."""
        status = "abandoned" if claimed.abandoned else "failed"
        now = self._now()
        self._set_outcome(
            key,
            claimed.owner,
            error,
            "UPDATE idempotency_keys SET status = ?, attempts = attempts - 1, error = ?, "
            "owner = NULL, locked_until = ?, updated_at = ? WHERE key = ? AND owner = ?",
            (
                status,
                f"{_error_text(error)} (before the effect started)",
                now if claimed.abandoned else None,
                now,
                key,
                claimed.owner,
            ),
        )

    def _finish(self, key: str, owner: str, value: Any, result_type: Any) -> Any:
        try:
            result_json = _canonical_json(value)
            decoded = _decode(result_json, result_type)
        except Exception as err:  # TypeError, ValueError, or a dataclass refusing its fields
            problem = IdempotencyPoisoned(
                f"The effect for idempotency key {key!r} ran, but its result cannot be stored "
                f"as JSON and read back as {_type_name(result_type)}: {err}. The key is kept "
                "as 'poisoned', so the effect will not run again for it, and this error is not "
                "retried. Fix the effect: return a dataclass or JSON-native values (dict, list, "
                "str, int, float, bool, None) that match the return annotation. "
                + _SETTLE_ADVICE.format(key=key)
            )
            now = self._now()
            with self._connect() as conn:
                updated = conn.execute(
                    "UPDATE idempotency_keys SET status = 'poisoned', error = ?, owner = NULL, "
                    "locked_until = NULL, updated_at = ?, expires_at = ? "
                    "WHERE key = ? AND owner = ? AND status IN ('in_progress', 'abandoned')",
                    (
                        _error_text(err),
                        now,
                        now + self.options.retention.total_seconds(),
                        key,
                        owner,
                    ),
                ).rowcount
            if updated != 1:
                raise self._lease_lost(key) from err
            raise problem from err
        self._complete(key, owner, result_json)
        return decoded

    def _in_progress(self, key: str, locked_until: float) -> IdempotencyInProgress:
        return IdempotencyInProgress(
            f"The idempotency key {key!r} is held by a call that is still running (its lease "
            f"ends {_dt(locked_until).isoformat()}); waited {self.options.wait_timeout}. Retry "
            "later to get its result; if its owner is gone, the claim counts as abandoned once "
            "the lease ends."
        )

    def _abandoned(self, key: str, outcome: _Abandoned) -> IdempotencyAbandoned:
        why = f" (last error: {outcome.error})" if outcome.error else ""
        return IdempotencyAbandoned(
            f"The idempotency key {key!r} was claimed by a call that never finished{why}; its "
            f"claim ended {_dt(outcome.since).isoformat()}. Its effect may or may not have "
            "happened, and the store cannot tell, so it refuses to run the effect again (at most "
            "once per key). " + _SETTLE_ADVICE.format(key=key) + " To run it again without "
            "asking, accepting a possible second effect, use "
            "IdempotencyOptions(on_abandoned='rerun')."
        )

    def _poisoned(self, key: str, outcome: _Poisoned, result_type: Any) -> IdempotencyPoisoned:
        return IdempotencyPoisoned(
            f"The effect for idempotency key {key!r} ran once, but its result could not be "
            f"stored as JSON and read back as {_type_name(result_type)} ({outcome.error}); the "
            "key is 'poisoned' and will not run the effect again. Fix the effect's result. "
            + _SETTLE_ADVICE.format(key=key)
        )

    def _read_stored(self, key: str, result_json: str, result_type: Any) -> Any:
        try:
            return _decode(result_json, result_type)
        except Exception as err:
            raise IdempotencyError(
                f"The stored result for idempotency key {key!r} cannot be read back as "
                f"{_type_name(result_type)}: {err}. Did the return type change since it was "
                "stored? Keep old results readable (new fields need defaults), or use new keys."
            ) from err

    # --- one call: the shared core of run() and run_async() -------------------------------------

    def _protocol(
        self,
        key: str,
        request: Any,
        effect: Callable[[], Any],
        recover: Callable[[], Any] | None,
        result_type: Any,
    ) -> Generator[_Step, Any, Any]:
        """Claim the key (waiting for a busy one), run the effect, store or undo its outcome."""
        key = _check_key(key)
        request_fingerprint = fingerprint(request)
        take_abandoned = recover is not None or self.options.on_abandoned == "rerun"
        deadline = self._now() + self.options.wait_timeout.total_seconds()
        while True:
            claim = _Blocking(
                functools.partial(self._claim, key, request_fingerprint, take_abandoned)
            )
            try:
                outcome = yield claim
            except BaseException as err:
                # Cancelled while the claim ran (run_async waited for it to end): a won
                # claim goes back, as its effect will not start.
                if isinstance(claim.value, _Claimed) and not isinstance(err, GeneratorExit):
                    yield _Blocking(functools.partial(self._unclaim, key, claim.value, err))
                raise
            if isinstance(outcome, _Claimed):
                break
            if isinstance(outcome, _Stored):
                return self._read_stored(key, outcome.result, result_type)
            if isinstance(outcome, _Poisoned):
                raise self._poisoned(key, outcome, result_type)
            if isinstance(outcome, _Abandoned):
                raise self._abandoned(key, outcome)
            if self._now() >= deadline:
                raise self._in_progress(key, outcome.locked_until)
            yield _Sleep(self.options.poll_interval.total_seconds())

        owner = outcome.owner
        recovering = outcome.abandoned and recover is not None
        try:
            value = yield _Effect(recover if recover is not None and recovering else effect)
        except Exception as err:
            # A raising effect did not take place (the contract); a raising recover
            # function settled nothing, so the key stays abandoned.
            settle = self._abandon if recovering else self._fail
            yield _Blocking(functools.partial(settle, key, owner, err))
            raise
        except BaseException as err:
            # Cancelled or interrupted half-way: the effect may have happened.
            if not isinstance(err, GeneratorExit):
                yield _Blocking(functools.partial(self._abandon, key, owner, err))
            raise
        return (yield _Blocking(functools.partial(self._finish, key, owner, value, result_type)))

    def _drive(self, protocol: Generator[_Step, Any, Any]) -> Any:
        try:
            step = next(protocol)
            while True:
                try:
                    if isinstance(step, _Sleep):
                        self._sleep(step.seconds)
                        value = None
                    elif isinstance(step, _Effect):
                        value = step.fn()
                    else:
                        value = step()
                except BaseException as err:  # KeyboardInterrupt too: the protocol decides
                    step = protocol.throw(err)
                else:
                    step = protocol.send(value)
        except StopIteration as stop:
            return stop.value

    async def _drive_async(self, protocol: Generator[_Step, Any, Any]) -> Any:
        try:
            step = next(protocol)
            while True:
                try:
                    if isinstance(step, _Sleep):
                        await self._async_sleep(step.seconds)
                        value = None
                    elif isinstance(step, _Effect):
                        value = await step.fn()
                    else:
                        value = await _in_thread(step)
                except BaseException as err:  # asyncio.CancelledError too
                    step = protocol.throw(err)
                else:
                    step = protocol.send(value)
        except StopIteration as stop:
            return stop.value

    # --- public API ------------------------------------------------------------------------------

    def run(
        self,
        key: str,
        request: Any,
        effect: Callable[[], T],
        *,
        result_type: Any = None,
        recover: Callable[[], T] | None = None,
    ) -> T:
        """Run ``effect()`` once for ``key`` and return its (stored) result.

        Args:
            key: the idempotency key.
            request: what the caller asked for; its :func:`fingerprint` is bound to the key.
            effect: the side effect, called with no arguments at most once per live key
                (again only after it raised, or as the abandoned-claim policy allows).
            result_type: type hint to decode the stored JSON into (``None``: plain JSON).
            recover: called instead of ``effect`` when an earlier claim of the key was
                abandoned. It should ask the system the effect acts on whether the
                effect with this key happened and return its result; if it did not
                happen, run the effect and return that result. Its result is stored
                like the effect's; if it raises, the key stays abandoned.

        Raises:
            IdempotencyKeyError: the key is not valid.
            IdempotencyConflict: the key is bound to a different request.
            IdempotencyInProgress: another call holds the key beyond ``wait_timeout``.
            IdempotencyAbandoned: an earlier claim never finished, and no ``recover``.
            IdempotencyPoisoned: the effect ran (now or before) but its result cannot be stored.
            IdempotencyLeaseLost: the effect outlived its lease and the key was taken over.
            IdempotencyError: the request is not JSON, or the file is unusable.
        """
        return cast(T, self._drive(self._protocol(key, request, effect, recover, result_type)))

    async def run_async(
        self,
        key: str,
        request: Any,
        effect: Callable[[], Awaitable[T]],
        *,
        result_type: Any = None,
        recover: Callable[[], Awaitable[T]] | None = None,
    ) -> T:
        """Like :meth:`run`, for an ``async`` effect; database calls run in a thread.

        Cancelled while it claims the key or waits for it, the call gives a won
        claim back before it ends, so the key is free at once. Cancelled during
        the effect, the key is abandoned: the effect may have happened.

        Raises:
            IdempotencyKeyError: the key is not valid.
            IdempotencyConflict: the key is bound to a different request.
            IdempotencyInProgress: another call holds the key beyond ``wait_timeout``.
            IdempotencyAbandoned: an earlier claim never finished, and no ``recover``.
            IdempotencyPoisoned: the effect ran (now or before) but its result cannot be stored.
            IdempotencyLeaseLost: the effect outlived its lease and the key was taken over.
            IdempotencyError: the request is not JSON, or the file is unusable.
        """
        protocol = self._protocol(key, request, effect, recover, result_type)
        return cast(T, await self._drive_async(protocol))

    def idempotent(
        self,
        key: Callable[..., str] | None = None,
        *,
        request: Callable[..., Any] | None = None,
        operation: str | None = None,
        recover: Callable[..., Any] | None = None,
    ) -> Callable[[F], F]:
        """Decorate a sync or async function (or activity) so each key runs it once.

        Put it *under* ``@activity.defn``. The wrapper keeps the function's name,
        signature and annotations, which Temporal reads.

        On a method, the first parameter (``self`` or ``cls``) is left out of the
        fingerprint: it is the object doing the work (clients, settings), not the
        request, so two workers configured differently still agree on a key.
        ``key``, ``request`` and ``recover`` receive it like the method does.

        Args:
            key: called with the function's arguments, returns the key; ``None``
                means :func:`key_from_activity`.
            request: called with the function's arguments, returns what to
                fingerprint; ``None`` means all arguments by name (but ``self``/``cls``).
            operation: name mixed into the fingerprint, so two functions cannot
                share a key; defaults to the function's ``__qualname__``.
            recover: called with the function's arguments when an earlier claim of
                the key was abandoned (see :meth:`run`); async for an async function.

        Returns:
            A decorator that returns a function of the same type.
        """

        def decorate(fn: F) -> F:
            name = operation or fn.__qualname__
            signature = inspect.signature(fn)
            hints = _ReturnHint(fn)
            names = list(signature.parameters)
            receiver = names[0] if names and names[0] in ("self", "cls") else None

            def prepare(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
                the_key = key(*args, **kwargs) if key is not None else key_from_activity()
                if request is not None:
                    return the_key, {"operation": name, "request": request(*args, **kwargs)}
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                arguments = dict(bound.arguments)
                if receiver is not None:
                    del arguments[receiver]
                return the_key, {"operation": name, "arguments": arguments}

            def recovery(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                if recover is None:
                    return None
                return lambda: recover(*args, **kwargs)

            if inspect.iscoroutinefunction(fn):

                @functools.wraps(fn)
                async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                    the_key, the_request = prepare(args, kwargs)
                    return await self.run_async(
                        the_key,
                        the_request,
                        lambda: fn(*args, **kwargs),
                        result_type=hints.get(),
                        recover=recovery(args, kwargs),
                    )

                return cast(F, async_wrapper)

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                the_key, the_request = prepare(args, kwargs)
                return self.run(
                    the_key,
                    the_request,
                    lambda: fn(*args, **kwargs),
                    result_type=hints.get(),
                    recover=recovery(args, kwargs),
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
        return _record(row, self._now()) if row else None

    def records(self) -> list[IdempotencyRecord]:
        """Every row, oldest first, expired ones included until they are purged."""
        with self._connect() as conn:
            rows = conn.execute(f"{_SELECT_RECORD} ORDER BY created_at, key").fetchall()
        now = self._now()
        return [_record(row, now) for row in rows]

    def resolve(self, key: str, result: Any) -> IdempotencyRecord:
        """Settle an abandoned or poisoned key by hand: its effect happened, with ``result``.

        Later calls with the key get ``result`` back, as if the effect had
        stored it. Use it after checking, in the system the effect acts on, that
        the effect took place.

        Args:
            key: the idempotency key.
            result: the effect's result (JSON-like values or a dataclass).

        Returns:
            The key's record after the change.

        Raises:
            IdempotencyKeyError: the key is not valid.
            IdempotencyError: the key is unknown, completed or still running, or the
                result is not JSON.
        """
        key = _check_key(key)
        try:
            result_json = _canonical_json(result)
        except (TypeError, ValueError) as err:
            raise IdempotencyError(
                f"The result given for idempotency key {key!r} cannot be stored as JSON: "
                f"{err}. Pass a dataclass or JSON-native values."
            ) from err
        return self._settle(key, "resolve", "completed", result_json)

    def release(self, key: str) -> IdempotencyRecord:
        """Settle an abandoned or poisoned key by hand: its effect did not happen.

        The next call with the key runs the effect again. Use it after checking,
        in the system the effect acts on, that the effect did not take place.

        Args:
            key: the idempotency key.

        Returns:
            The key's record after the change.

        Raises:
            IdempotencyKeyError: the key is not valid.
            IdempotencyError: the key is unknown, completed or still running.
        """
        return self._settle(_check_key(key), "release", "failed", None)

    def _settle(
        self, key: str, verb: str, status: KeyStatus, result_json: str | None
    ) -> IdempotencyRecord:
        now = self._now()
        with self._transaction() as conn:
            row = conn.execute(f"{_SELECT_RECORD} WHERE key = ?", (key,)).fetchone()
            if row is None or row[8] <= now:
                raise IdempotencyError(
                    f"Cannot {verb} idempotency key {key!r}: the store has no live record of it "
                    "(never used, or expired); the next call with it runs the effect anyway."
                )
            before = _record(row, now)
            if before.status in ("completed", "in_progress"):
                raise IdempotencyError(
                    f"Cannot {verb} idempotency key {key!r}: it is {before.status}. Only a key "
                    "that is abandoned, poisoned or failed can be settled by hand"
                    + (
                        "; a running claim counts as abandoned once its lease ends."
                        if before.status == "in_progress"
                        else "; its stored result stands until the key expires."
                    )
                )
            note = f"{verb}d by hand (was {before.status})"
            conn.execute(
                "UPDATE idempotency_keys SET status = ?, result = ?, error = ?, owner = NULL, "
                "locked_until = NULL, updated_at = ?, expires_at = ? WHERE key = ?",
                (
                    status,
                    result_json,
                    f"{note}: {before.error}" if before.error else note,
                    now,
                    now + self.options.retention.total_seconds(),
                    key,
                ),
            )
            row = conn.execute(f"{_SELECT_RECORD} WHERE key = ?", (key,)).fetchone()
        return _record(row, now)

    def table(self, *, width: int = 40) -> str:
        """The records as a plain-text table: key, status, attempts, fingerprint, result.

        Args:
            width: longest text shown for a key or a result before it is cut.
        """

        def cut(text: str) -> str:
            return text if len(text) <= width else text[: width - 3] + "..."

        rows = []
        for record in self.records():
            shown = (
                _canonical_json(record.result)
                if record.status == "completed"
                else (record.error or "")
            )
            rows.append(
                [
                    cut(record.key),
                    record.status,
                    str(record.attempts),
                    record.fingerprint[:12],
                    cut(shown),
                ]
            )
        return text_table(["key", "status", "attempts", "fingerprint", "result / last error"], rows)

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


def _status(status: str, locked_until: float | None, now: float) -> KeyStatus:
    """The status a row has now: a running claim whose lease ended is abandoned."""
    if status == "in_progress" and locked_until is not None and locked_until <= now:
        return "abandoned"
    return cast(KeyStatus, status)


def _record(row: tuple[Any, ...], now: float) -> IdempotencyRecord:
    key, status, fp, result, error, attempts, created, updated, expires, locked = row
    return IdempotencyRecord(
        key=key,
        status=_status(status, locked, now),
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
