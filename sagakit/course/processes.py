"""Run Python modules, and Temporal workers, in child processes that a lesson can kill.

Crash demos need a real process to crash: a worker that dies with ``SIGKILL``
gets no chance to clean up, exactly like a machine losing power. This module
has both halves of that:

- the parent side, :class:`ChildProcess`: start ``python -m <module> ARGS`` in
  a child process, read what it prints, wait for a given line, and kill it
  with ``SIGKILL`` (or stop it politely with ``SIGTERM``);
  :func:`start_worker_process` also waits until the child's worker is really
  polling its task queue on the server;
- the child side, :func:`serve_worker` / :func:`run_worker`: what a module's
  ``if __name__ == "__main__":`` block calls to run a worker until it is
  killed or told to stop.

A lesson module that can be started as a worker process looks like this::

    if __name__ == "__main__":
        run_worker(task_queue=sys.argv[1], workflows=[MyWorkflow], activities=[my_activity])

and the notebook drives it::

    worker = await start_worker_process(client, "sagakit.course.lessons.mine", "lesson-09",
                                        task_queue="lesson-09")
    ...
    worker.kill()          # SIGKILL: no cleanup, no goodbye

A child never outlives the process that started it by more than about half a
second: it watches its parent and exits when the parent is gone.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client
from temporalio.worker import Worker

from sagakit import SagakitError, sandbox_runner
from sagakit._worker import _worker_task_queue, code_build_id
from sagakit.course._polling import poll_until

__all__ = [
    "IDENTITY_ENV",
    "READY_PREFIX",
    "ChildProcess",
    "ChildProcessFailed",
    "WorkerOptions",
    "run_explained",
    "run_worker",
    "serve_worker",
    "start_worker_process",
    "wait_until_polling",
]

IDENTITY_ENV = "SAGAKIT_WORKER_IDENTITY"
"""Environment variable through which :func:`start_worker_process` names the child's worker."""

READY_PREFIX = "sagakit-worker polling"
"""The start of the line :func:`serve_worker` prints once its worker is polling."""

# No resolve() at import: the workflow sandbox re-imports sagakit and forbids it.
_PROJECT_ROOT = Path(__file__).parents[2]

T = TypeVar("T")


class ChildProcessFailed(SagakitError):
    """A child process exited too early, did not print what was expected, or could not start."""


class ChildProcess:
    """A ``python -m <module>`` child process whose output is collected line by line.

    Standard output and standard error are merged; a background thread reads
    them so the child never blocks on a full pipe. Use it as a context
    manager (or call :meth:`kill`) so no child is left running.
    """

    def __init__(self, popen: subprocess.Popen[str], module: str) -> None:
        self._popen = popen
        self.module = module
        """The module the child runs, for messages."""
        self._lines: list[str] = []
        self._closed = False  # the child's output has ended (it exited)
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"output of {module}", daemon=True)
        self._reader.start()

    @classmethod
    def start(
        cls,
        module: str,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
    ) -> ChildProcess:
        """Start ``sys.executable -m module *args`` as a child process.

        Args:
            module: the module to run, for example ``"sagakit.course.lessons.durable"``.
            args: its command-line arguments.
            env: extra environment variables, added to this process's environment.
            cwd: the child's working directory; by default the folder that
                holds the ``sagakit`` package, so it is importable.

        Raises:
            ChildProcessFailed: the interpreter could not be started.
        """
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        try:
            popen = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                cwd=str(cwd) if cwd is not None else str(_PROJECT_ROOT),
                env=environment,
                start_new_session=True,  # a Ctrl-C in the notebook does not reach the child
            )
        except OSError as err:
            raise ChildProcessFailed(
                f"Could not start `python -m {module}`: {err}. Check that {sys.executable} "
                "exists and can be run."
            ) from err
        return cls(popen, module)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once the child has ended (``-9`` after SIGKILL), else ``None``."""
        return self._popen.poll()

    @property
    def alive(self) -> bool:
        """Whether the child is still running."""
        return self._popen.poll() is None

    @property
    def output(self) -> str:
        """Everything the child has printed so far (stdout and stderr)."""
        with self._changed:
            return "".join(self._lines)

    def wait_for_line(self, text: str, *, timeout: float = 30.0) -> str:
        """Wait until the child prints a line that contains ``text``, and return that line.

        Raises:
            ChildProcessFailed: the child exited first, or ``timeout`` seconds passed.
        """
        found: list[str] = []

        def printed_or_closed() -> bool:  # called with the lock held, at every new line
            found.extend(line for line in self._lines if text in line)
            return bool(found) or self._closed

        with self._changed:
            if not self._changed.wait_for(printed_or_closed, timeout):
                raise ChildProcessFailed(
                    f"`python -m {self.module}` did not print a line containing {text!r} "
                    f"within {timeout:g} s. It printed:\n{self._tail()}\nCheck the "
                    "module's main block, or give it more time."
                )
        if not found:  # output closed: the child has exited
            raise self._early_exit(f"printing a line with {text!r}")
        return found[0].rstrip("\n")

    def kill(self) -> int:
        """Kill the child with SIGKILL (no cleanup, like a power cut) and return its exit status.

        Killing a child that has already exited only returns its status.
        """
        if self._popen.poll() is None:
            os.kill(self._popen.pid, signal.SIGKILL)
        status = self._popen.wait()
        self._reader.join(timeout=5)
        return status

    def terminate(self, *, timeout: float = 10.0) -> int:
        """Ask the child to stop with SIGTERM; kill it if it has not exited within ``timeout``."""
        if self._popen.poll() is None:
            self._popen.terminate()
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return self.kill()
        self._reader.join(timeout=5)
        return self._popen.wait()

    def wait(self, *, timeout: float | None = None) -> int:
        """Wait for the child to exit by itself and return its exit status.

        Raises:
            ChildProcessFailed: it was still running after ``timeout`` seconds.
        """
        try:
            status = self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise ChildProcessFailed(
                f"`python -m {self.module}` was still running after {timeout:g} s. "
                "Kill it with .kill() or wait longer."
            ) from err
        self._reader.join(timeout=5)
        return status

    def __enter__(self) -> ChildProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.kill()

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited with {self.returncode}"
        return f"<ChildProcess python -m {self.module}: {state}>"

    def _read(self) -> None:
        stream = self._popen.stdout
        assert stream is not None  # opened with stdout=PIPE
        for line in stream:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        stream.close()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _tail(self, lines: int = 20) -> str:
        tail = self._lines[-lines:]
        return "".join(tail).rstrip() or "(nothing)"

    def _early_exit(self, doing: str) -> ChildProcessFailed:
        status = self._popen.wait()
        return ChildProcessFailed(
            f"`python -m {self.module}` exited with status {status} before {doing}. "
            f"Its last output:\n{self._tail()}\nFix the error it reports and start it again."
        )


async def wait_until_polling(
    client: Client,
    task_queue: str,
    identity: str,
    *,
    timeout: float = 30.0,
    process: ChildProcess | None = None,
) -> None:
    """Wait until the server has seen a worker named ``identity`` poll ``task_queue``.

    The server lists the workers that recently polled a task queue; a worker
    on that list is really connected and asking for work, not just started.

    Args:
        client: a client of the server the worker polls.
        task_queue: the task queue the worker polls for workflow tasks.
        identity: the worker's identity.
        timeout: seconds to wait.
        process: the worker's child process, to fail fast if it exits.

    Raises:
        ChildProcessFailed: the process exited, or the worker did not poll in time.
    """
    request = DescribeTaskQueueRequest(
        namespace=client.namespace,
        task_queue=TaskQueue(name=task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )

    async def polling() -> bool | None:
        response = await client.workflow_service.describe_task_queue(request)
        if any(poller.identity == identity for poller in response.pollers):
            return True
        if process is not None and not process.alive:
            raise process._early_exit(f"polling task queue {task_queue!r}")
        return None

    await poll_until(
        polling,
        timeout=timeout,
        what=f"worker {identity!r} to poll task queue {task_queue!r}",
        timed_out=lambda: ChildProcessFailed(
            f"No worker named {identity!r} polled task queue {task_queue!r} within "
            f"{timeout:g} s. Check that the worker uses that task queue and reaches the "
            "same Temporal server as this client."
        ),
    )


async def start_worker_process(
    client: Client,
    module: str,
    *args: str,
    task_queue: str,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> ChildProcess:
    """Start ``python -m module *args`` as a worker process and wait until it polls.

    The child learns the server's address and namespace from ``client``
    (``TEMPORAL_ADDRESS`` and ``TEMPORAL_NAMESPACE``, read by
    :func:`sagakit.connect`) and its worker identity from
    :data:`IDENTITY_ENV`; :func:`run_worker` uses both. It inherits
    ``SAGAKIT_LEARNER`` too, so in a learner's namespace it polls that
    namespace's ``task_queue``, never another learner's.

    Args:
        client: a client of the server the worker should poll.
        module: the module whose main block calls :func:`run_worker`.
        args: its command-line arguments.
        task_queue: the task queue the child's worker polls.
        timeout: seconds to wait for the worker to poll.
        env: extra environment variables for the child.

    Raises:
        ChildProcessFailed: the child exited or did not poll in time; it is
            killed before the error is raised.
        ServerUnreachable: the server stopped answering while the child
            started; raised within a few seconds (the child is killed).
    """
    identity = f"{module}-{uuid.uuid4().hex[:12]}"
    child_env = {
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
        IDENTITY_ENV: identity,
        **(env or {}),
    }
    from sagakit.course.client import server_errors_explained

    child = ChildProcess.start(module, *args, env=child_env)
    try:
        async with server_errors_explained(client):
            polled = _worker_task_queue(client, task_queue)  # the child renames it the same way
            await wait_until_polling(client, polled, identity, timeout=timeout, process=child)
    except BaseException:
        child.kill()
        raise
    return child


_left_to_finish: set[asyncio.Task[Any]] = set()
"""Work that :func:`run_explained` gave up on, finishing (shutting its workers down) on its own."""


def _forget(task: asyncio.Task[Any]) -> None:
    _left_to_finish.discard(task)
    if not task.cancelled():
        task.exception()  # seen: the caller was told why the work was given up on


async def run_explained(client: Client, work: Awaitable[T]) -> T:
    """Await ``work`` (which uses ``client``); if the server goes away, say so within seconds.

    ``work`` runs in a task of its own under
    :func:`~sagakit.course.client.server_errors_explained`. When the server stops
    answering, :class:`~sagakit.course.errors.ServerUnreachable` is raised at once
    (naming the address and the fix) and ``work`` is cancelled, finishing in the
    background: a worker with an activity in flight can take several more seconds
    to give up reporting it, and the learner need not wait for that. Cancelling
    this call cancels ``work`` the same way.
    """
    from sagakit.course.client import server_errors_explained

    task = asyncio.ensure_future(work)
    try:
        async with server_errors_explained(client):
            return await asyncio.shield(task)
    finally:
        if not task.done():
            task.cancel()
            _left_to_finish.add(task)
            task.add_done_callback(_forget)


@dataclass(frozen=True)
class WorkerOptions:
    """How :func:`serve_worker` runs the worker inside a child process."""

    max_cached_workflows: int = 0
    """Workflows kept in memory between tasks. The default 0 means no sticky task queue, so
    when this worker dies, its successor gets the next workflow task at once instead of after
    the sticky queue's timeout."""

    activity_threads: int = 8
    """Threads for plain ``def`` activities."""

    watch_parent: bool = True
    """Exit when the process that started this one is gone, so no worker is left behind."""

    passthrough: tuple[str, ...] = ()
    """More modules to pass through the workflow sandbox, besides the sagakit core
    (see :func:`sagakit.sandbox_runner`)."""


async def serve_worker(
    *,
    task_queue: str,
    workflows: Sequence[type] = (),
    activities: Sequence[Callable[..., Any]] = (),
    options: WorkerOptions | None = None,
    client: Client | None = None,
) -> None:
    """Run a worker until SIGTERM/SIGINT (or the parent's death); print a ready line first.

    This is the child side of :func:`start_worker_process`. Once the worker
    has started, it prints ``sagakit-worker polling task_queue=… identity=…``.

    Args:
        task_queue: the task queue to poll.
        workflows: workflow classes to run.
        activities: activity functions to run.
        options: cache size, thread count and parent watching.
        client: the client to use; by default :func:`sagakit.connect`.
    """
    from sagakit.course.client import connect  # a child imports it only when it runs a worker

    opts = options or WorkerOptions()
    client = client or await connect()
    task_queue = _worker_task_queue(client, task_queue)  # e.g. ada.lesson-09 in a shared namespace
    identity = os.environ.get(IDENTITY_ENV) or f"{task_queue}-{os.getpid()}"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    parent = os.getppid()

    async def watch_parent() -> None:
        while True:
            await asyncio.sleep(0.5)
            if os.getppid() != parent:
                stop.set()
                return

    watcher = asyncio.create_task(watch_parent()) if opts.watch_parent else None
    with ThreadPoolExecutor(max_workers=opts.activity_threads) as executor:
        worker = Worker(
            client,
            task_queue=task_queue,
            workflows=list(workflows),
            activities=list(activities),
            activity_executor=executor if activities else None,
            identity=identity,
            max_cached_workflows=opts.max_cached_workflows,
            workflow_runner=sandbox_runner(passthrough=opts.passthrough),
            build_id=code_build_id([*workflows, *activities]),  # as running_worker's workers
        )
        async with worker:
            print(f"{READY_PREFIX} task_queue={task_queue} identity={identity}", flush=True)
            await stop.wait()
    if watcher is not None:
        watcher.cancel()


def run_worker(
    *,
    task_queue: str,
    workflows: Sequence[type] = (),
    activities: Sequence[Callable[..., Any]] = (),
    options: WorkerOptions | None = None,
) -> NoReturn:
    """Run :func:`serve_worker` and exit the process (the body of a module's main block).

    It leaves with ``os._exit`` after a clean stop, because the Temporal
    runtime's threads can crash a normal interpreter shutdown.
    """
    asyncio.run(
        serve_worker(
            task_queue=task_queue, workflows=workflows, activities=activities, options=options
        )
    )
    sys.stdout.flush()
    os._exit(0)
