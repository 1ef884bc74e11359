"""Run a Temporal worker for the length of a ``with`` block, with sagakit passed through.

Temporal's workflow sandbox re-imports, for every workflow run, each module
that a workflow module imports, unless the module is *passed through* (taken
from the worker's own, already imported copy). sagakit's core is deterministic
and keeps no module-level state that workflow code reads (the one set here holds
worker shutdowns, outside any workflow), so it can be passed through safely; your
workflow modules are still re-imported, so the sandbox still catches, say, a
``datetime.now()`` in your workflow code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import inspect
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import temporalio.service
from temporalio import workflow
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from sagakit._errors import ServerUnreachable
from sagakit._server_watch import ServerWatch

__all__ = ["CORE_MODULES", "running_worker", "sandbox_runner"]

CORE_MODULES: tuple[str, ...] = (
    "sagakit._binaries",
    "sagakit._errors",
    "sagakit._faults",
    "sagakit._idempotency",
    "sagakit._net",
    "sagakit._saga",
    "sagakit._server_watch",
    "sagakit._sqlite",
    "sagakit._text",
    "sagakit._worker",
    "sagakit.history",
)
"""The sagakit core modules that :func:`sandbox_runner` passes through the workflow sandbox.

``sagakit`` itself is not in the list (passing a package through passes all its
children, ``sagakit.course`` included); its ``__init__`` is a few lines and hands
out these modules' names passed through by itself.
"""


def sandbox_runner(
    restrictions: SandboxRestrictions | None = None, *, passthrough: Sequence[str] = ()
) -> SandboxedWorkflowRunner:
    """A sandboxed workflow runner that passes the sagakit core through.

    A worker checks each of its workflow classes when it starts, by loading the class's
    module in a new sandbox. With Temporal's default restrictions (``restrictions`` left
    ``None``), this runner checks a class once per process and pass-through list: a notebook
    starts a worker for the same workflows many times, and each check re-executes the
    workflow's module (10 to 40 ms for a lesson's). A class defined again (a notebook cell
    run again) is a new class and is checked again.

    Args:
        restrictions: the sandbox restrictions to start from; Temporal's defaults if ``None``.
        passthrough: more module names to pass through (only modules that are deterministic
            and keep no state; never your workflow modules).

    Example::

        Worker(client, task_queue="trips", workflows=[BookTrip], workflow_runner=sandbox_runner())
    """
    base = restrictions or SandboxRestrictions.default
    narrowed = base.with_passthrough_modules(*CORE_MODULES, *passthrough)
    if restrictions is not None:
        return SandboxedWorkflowRunner(restrictions=narrowed)
    return _CheckedOnceRunner(restrictions=narrowed)


_checked: set[tuple[type, frozenset[str]]] = set()
"""Workflow classes a worker of this process has checked, with the pass-through list they had."""


class _CheckedOnceRunner(SandboxedWorkflowRunner):
    """Temporal's sandboxed runner, whose start-up check runs once per class (see above).

    Built on Temporal's default restrictions only, so its pass-through list is all that
    tells two of them apart.
    """

    def prepare_workflow(self, defn: workflow._Definition) -> None:
        key = (defn.cls, frozenset(self.restrictions.passthrough_modules))
        if key not in _checked:
            super().prepare_workflow(defn)
            _checked.add(key)  # only once the check has passed: a failing class fails again


_VERSIONING_OPTIONS = ("build_id", "deployment_config", "use_worker_versioning")


def code_build_id(code: Iterable[object]) -> str:
    """A worker Build ID that names the code it runs: a hash of the modules ``code`` comes from.

    It hashes the source of each module that defines one of the workflows and activities
    (for one defined in a notebook or a script, its own source), of the sagakit core
    modules, and Temporal's SDK version. The same code gives the same ID in any process,
    a module run with ``python -m`` included; an edit to one of those modules gives a new one.

    Temporal's own default hashes the code of every module loaded in the process instead:
    a quarter of a second of CPU in a notebook kernel, and an ID that also changes with
    imports that have nothing to do with the worker.
    """
    items = list(code)
    digest = hashlib.md5(usedforsecurity=False)
    digest.update(f"temporalio {temporalio.service.__version__}".encode())
    files: dict[str, Path] = {}
    without_file: set[str] = set()
    for module in {getattr(item, "__module__", None) for item in items} | set(CORE_MODULES):
        if not isinstance(module, str):
            continue
        found = _source_file(module)
        if found is not None:
            files[found[0]] = found[1]
        else:
            without_file |= {
                _own_source(i) for i in items if getattr(i, "__module__", "") == module
            }
    for name, path in sorted(files.items()):
        digest.update(f"\0{name}\0".encode())
        digest.update(path.read_bytes())
    for text in sorted(without_file):
        digest.update(f"\0{text}".encode())
    return f"sagakit-{digest.hexdigest()[:16]}"


def _source_file(module: str) -> tuple[str, Path] | None:
    """The import name and ``.py`` file of ``module`` (found without importing it), or None.

    ``__main__`` has the name it was run under with ``python -m``; in a notebook or a
    script run by path it has none, and its definitions are hashed by their own source.
    """
    loaded = sys.modules.get(module)
    try:
        spec = loaded.__spec__ if loaded is not None else importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    if spec is None or not origin or not origin.endswith(".py") or not Path(origin).is_file():
        return None
    return spec.name, Path(origin)


def _own_source(item: object) -> str:
    try:
        return inspect.getsource(item)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return str(getattr(item, "__qualname__", repr(item)))


def _worker_task_queue(client: Client, task_queue: str) -> str:
    """The task queue a worker of ``client`` polls when asked to poll ``task_queue``.

    A client interceptor that renames the task queues of the workflows it starts
    (as ``sagakit.course`` does for a learner in a namespace shared by a class)
    says so with a method ``worker_task_queue(name) -> str``; its answer is used,
    so the worker polls the queue those workflows are sent to. Without one, the
    name is unchanged.
    """
    for interceptor in client.config()["interceptors"]:
        rename = getattr(interceptor, "worker_task_queue", None)
        if callable(rename):
            task_queue = str(rename(task_queue))
    return task_queue


_stopping_without_server: set[asyncio.Task[None]] = set()
"""Shutdowns of workers whose server went away (kept referenced until they finish)."""


@contextlib.asynccontextmanager
async def running_worker(
    client: Client,
    *,
    task_queue: str,
    workflows: Sequence[type] = (),
    activities: Sequence[Callable[..., Any]] = (),
    max_concurrent_activities: int | None = None,
    passthrough: Sequence[str] = (),
    watch_server: bool = True,
    **worker_options: Any,
) -> AsyncIterator[Worker]:
    """Poll ``task_queue`` with a worker while the block runs, then shut it down.

    Plain ``def`` activities (blocking code such as SQLite) run on a thread pool
    that the worker owns; ``async def`` activities run on the event loop. The
    workflow sandbox passes the sagakit core through (see :func:`sandbox_runner`).
    On exit the worker stops polling and waits for running tasks.

    While the block runs, the server is asked every second whether it still
    answers; if it stops answering, the block is cancelled and
    :class:`~sagakit.ServerUnreachable` is raised within a few seconds, naming the
    address and the fix (instead of SDK calls that wait out their retries and end
    in a bare ``CancelledError``, and a shutdown that waits for the server).

    A client interceptor that renames task queues for starts renames the
    worker's queue too (it answers ``worker_task_queue(name)``).

    The worker's Build ID (recorded in the History of each workflow task it completes)
    is :func:`code_build_id` of its workflows and activities, unless you pass
    ``build_id``, ``deployment_config`` or ``use_worker_versioning`` yourself, as a
    deployment that versions its workers does.

    Args:
        client: a connected Temporal client.
        task_queue: the task queue to poll.
        workflows: workflow classes to run.
        activities: activity callables to run.
        max_concurrent_activities: the most activities run at once (16 by default).
        passthrough: more modules to pass through the sandbox (see :func:`sandbox_runner`).
        watch_server: whether to watch the server as described above. Pass ``False``
            for a block that should ride out a server restart: the worker reconnects
            by itself when the server is back.
        **worker_options: any other ``temporalio.worker.Worker`` option
            (``workflow_failure_exception_types``, ``identity`` …).

    Raises:
        ServerUnreachable: the server stopped answering while the block ran.
    """
    threads = max_concurrent_activities or 16
    worker_options.setdefault("workflow_runner", sandbox_runner(passthrough=passthrough))
    if not any(option in worker_options for option in _VERSIONING_OPTIONS):
        worker_options["build_id"] = code_build_id([*workflows, *activities])
    executor = ThreadPoolExecutor(max_workers=threads)
    server_gone = False
    try:
        worker = Worker(
            client,
            task_queue=_worker_task_queue(client, task_queue),
            workflows=list(workflows),
            activities=list(activities),
            activity_executor=executor,
            max_concurrent_activities=max_concurrent_activities,
            **worker_options,
        )
        await worker.__aenter__()
        try:
            if watch_server:
                async with ServerWatch(client, interval=1.0, probe_timeout=2.0):
                    yield worker
            else:
                yield worker
        except ServerUnreachable:
            # A graceful shutdown would wait for pollers that retry until the server is
            # back: give it a moment, then let it finish in the background.
            server_gone = True
            stopping = asyncio.create_task(worker.__aexit__(None, None, None))
            _stopping_without_server.add(stopping)
            stopping.add_done_callback(_stopping_without_server.discard)
            await asyncio.wait({stopping}, timeout=1.0)
            raise
        except BaseException as err:
            await worker.__aexit__(type(err), err, err.__traceback__)
            raise
        else:
            await worker.__aexit__(None, None, None)
    finally:
        # Without a server, a running activity cannot report anyway: do not wait for it.
        executor.shutdown(wait=not server_gone, cancel_futures=server_gone)
