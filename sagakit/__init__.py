"""sagakit: sagas, compensating actions and idempotency keys for Temporal workflows.

The public API is the names in ``__all__``; the modules behind them are private
(``sagakit._saga``, ``sagakit._idempotency`` …). Two public submodules stand
beside it: :mod:`sagakit.history` (read a workflow's History) and
:mod:`sagakit.testing` (the time-skipping test server). The course's own
furniture (dev server, notebook display, simulated services, lessons) lives in
:mod:`sagakit.course`, which this package never imports.

Why the names are loaded lazily, inside ``imports_passed_through``:
Temporal's workflow sandbox re-executes, for every workflow run, each module a
workflow module imports unless it is passed through. A workflow module that
says ``from sagakit import Saga`` makes the sandbox re-run this file, and only
this file: it defines a table of names, and the first lookup of a name fetches
it from the already imported (host) core module, passed through the sandbox.
So the plain import costs a few lines per run instead of re-importing the
package. The core modules are safe to pass through: they are deterministic and
keep no module-level state that workflow code reads. And ``python -m sagakit doctor`` can run without
``temporalio`` installed, because importing this file loads nothing.
"""

import sys as _sys
import typing as _typing

if _typing.TYPE_CHECKING:
    from sagakit._errors import ConfigurationError, SagakitError, ServerUnreachable
    from sagakit._faults import Fault, FaultPlan, FaultRule, UnknownStepError, act_out_fault
    from sagakit._idempotency import (
        IdempotencyAbandoned,
        IdempotencyConflict,
        IdempotencyError,
        IdempotencyInProgress,
        IdempotencyKeyError,
        IdempotencyLeaseLost,
        IdempotencyOptions,
        IdempotencyPoisoned,
        IdempotencyRecord,
        IdempotencyStore,
        key_from_activity,
        key_from_parts,
    )
    from sagakit._saga import (
        CompensationError,
        CompensationProgress,
        CompensationStatus,
        Saga,
        SagaProgress,
        SagaResolution,
        SagaState,
        SagaUsageError,
    )
    from sagakit._worker import running_worker, sandbox_runner

_EXPORTS: dict[str, str] = {
    "CompensationError": "sagakit._saga",
    "CompensationProgress": "sagakit._saga",
    "CompensationStatus": "sagakit._saga",
    "ConfigurationError": "sagakit._errors",
    "Fault": "sagakit._faults",
    "FaultPlan": "sagakit._faults",
    "FaultRule": "sagakit._faults",
    "IdempotencyAbandoned": "sagakit._idempotency",
    "IdempotencyConflict": "sagakit._idempotency",
    "IdempotencyError": "sagakit._idempotency",
    "IdempotencyInProgress": "sagakit._idempotency",
    "IdempotencyKeyError": "sagakit._idempotency",
    "IdempotencyLeaseLost": "sagakit._idempotency",
    "IdempotencyOptions": "sagakit._idempotency",
    "IdempotencyPoisoned": "sagakit._idempotency",
    "IdempotencyRecord": "sagakit._idempotency",
    "IdempotencyStore": "sagakit._idempotency",
    "Saga": "sagakit._saga",
    "SagaProgress": "sagakit._saga",
    "SagaResolution": "sagakit._saga",
    "SagaState": "sagakit._saga",
    "SagaUsageError": "sagakit._saga",
    "SagakitError": "sagakit._errors",
    "ServerUnreachable": "sagakit._errors",
    "UnknownStepError": "sagakit._faults",
    "act_out_fault": "sagakit._faults",
    "key_from_activity": "sagakit._idempotency",
    "key_from_parts": "sagakit._idempotency",
    "running_worker": "sagakit._worker",
    "sandbox_runner": "sagakit._worker",
}

__all__ = [
    "CompensationError",
    "CompensationProgress",
    "CompensationStatus",
    "ConfigurationError",
    "Fault",
    "FaultPlan",
    "FaultRule",
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
    "Saga",
    "SagaProgress",
    "SagaResolution",
    "SagaState",
    "SagaUsageError",
    "SagakitError",
    "ServerUnreachable",
    "UnknownStepError",
    "act_out_fault",
    "key_from_activity",
    "key_from_parts",
    "running_worker",
    "sandbox_runner",
]


def __getattr__(name: str) -> _typing.Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'sagakit' has no attribute {name!r}")
    # A workflow sandbox has imported temporalio.workflow before any workflow module runs:
    # there the host's module is handed over instead of re-executed (see the module
    # docstring). Elsewhere a plain import will do, and a program that needs only an error
    # class or the World does not pay for importing Temporal's SDK.
    workflow = _sys.modules.get("temporalio.workflow")
    if workflow is None:
        module = __import__(module_name, fromlist=[name])
    else:
        with workflow.unsafe.imports_passed_through():
            module = __import__(module_name, fromlist=[name])
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
