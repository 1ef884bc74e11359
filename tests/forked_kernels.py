"""Notebook kernels forked from a warmed-up process instead of started cold.

Every kernel nbval starts spends about half a second of CPU importing ipykernel (with
IPython, zmq and debugpy) before it can answer, and most notebooks then spend as much
again importing temporalio and sagakit in their first cell: a second of CPU for each of
the run's 53 kernels. Here each test process keeps one *fork server*: a Python process
that has imported those modules once and forks a kernel on request. The child becomes
the kernel exactly as ``python -m ipykernel_launcher -f <connection file>`` would: its
own session (so an interrupt reaches it alone), the folder, environment and arguments
nbval gave the launch, and the same ``sys.path``; then it runs ``ipykernel_launcher``.

What a notebook could notice is kept as it is:

- matplotlib and ipywidgets are not loaded ahead: matplotlib picks its backend when it is
  imported, and ipywidgets registers itself with the kernel that imports it.
- A module loaded ahead that printed or warned while loading would print or warn in a
  learner's first cell, where nbval compares it with the committed output. The fork
  server refuses to serve then, and the kernels start cold (``KernelForkServer.refused``
  says why; tests/test_isolation.py checks that the session's fork server serves).
- A fork needs a process with one thread: the fork server starts none, and checks.

Run as a script, this file is the fork server (``python tests/forked_kernels.py``).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from typing import Any

import psutil  # type: ignore[import-untyped]  # psutil ships no type hints here

# Loaded before the kernel exists, as a cold kernel loads them: what they print goes to
# the process's own stderr, which nbval discards either way. Besides ipykernel's own
# modules, what a cold kernel imports while it starts, before any cell: its debugger
# (debugpy, whose import warns about frozen modules on stderr and sets
# PYDEVD_USE_FRAME_EVAL, see ``_become_kernel``), the history's sqlite3, the magics'
# and extensions' modules.
KERNEL_MODULES = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.debugger",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "pdb",
    "sqlite3",
    "tornado.platform.asyncio",
)
# Loaded by the lessons' first cells; checked to load silently (see above).
LESSON_MODULES = (
    "temporalio.activity",
    "temporalio.client",
    "temporalio.common",
    "temporalio.exceptions",
    "temporalio.worker",
    "temporalio.workflow",
    "sagakit",
    "sagakit.course.client",
    "sagakit.course.display",
    "sagakit.course.notebook",
)
# Never ahead of the kernel (see above).
NOT_AHEAD = ("matplotlib", "ipywidgets")

_READY = "ready"


class ForkedKernel:
    """A kernel process the fork server forked: what jupyter_client needs of a ``Popen``.

    The kernel is the fork server's child, not this process's. As sagakit does with the
    dev servers it stops, it is watched and signalled through psutil, which knows the
    process by its pid and start time and refuses a pid that a newer process took since.
    """

    stdin = stdout = stderr = None  # jupyter_client closes these if set

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._process = psutil.Process(pid)
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """None while the kernel runs; its exit code is not ours to read, so 0 after."""
        if self.returncode is None:
            try:
                ended = self._process.status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                ended = True
            if ended or not self._process.is_running():
                self.returncode = 0
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(["kernel", str(self.pid)], timeout or 0)
            time.sleep(0.02)
        return code

    def send_signal(self, signum: int) -> None:
        with contextlib.suppress(psutil.NoSuchProcess):
            self._process.send_signal(signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class KernelForkServer:
    """One fork server for this process, started on first use; ``close`` stops it.

    ``lesson_modules`` is what it loads ahead besides the kernel's own modules (the
    tests give it a module that prints, to see it refuse).
    """

    def __init__(self, lesson_modules: tuple[str, ...] = LESSON_MODULES) -> None:
        self._lesson_modules = lesson_modules
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self.refused: str | None = None

    def fork_kernel(self, argv: list[str], cwd: str, env: dict[str, str]) -> ForkedKernel | None:
        """Fork a kernel with these ``ipykernel_launcher`` arguments; None: start it cold."""
        with self._lock:
            process = self._started()
            if process is None or process.stdin is None or process.stdout is None:
                return None
            request = {"argv": argv, "cwd": cwd, "env": {**env, "JPY_PARENT_PID": str(process.pid)}}
            try:
                process.stdin.write(json.dumps(request).encode() + b"\n")
                process.stdin.flush()
                answer = process.stdout.readline().decode().strip()
            except OSError as err:
                answer = f"the fork server is gone ({err})"
        if not answer.isdigit():
            self.refused = answer or "the fork server exited"
            return None
        pid = int(answer)
        kernel = ForkedKernel(pid)
        # It answers once the child has its own session: the group jupyter_client signals.
        if os.getpgid(pid) != pid:
            raise RuntimeError(f"forked kernel {pid} is not in a process group of its own")
        return kernel

    def _started(self) -> subprocess.Popen[bytes] | None:
        if self.refused is not None:
            return None
        if self._process is None:
            self._process = subprocess.Popen(
                [sys.executable, __file__, *self._lesson_modules],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # as nbval does with a kernel's stderr
            )
            assert self._process.stdout is not None
            answer = self._process.stdout.readline().decode().strip()
            if answer != _READY:
                self.refused = answer or "the fork server exited while loading"
                self.close()
                return None
        return self._process

    def close(self) -> None:
        """Stop the fork server (end of its input); kernels it forked stop with it."""
        process, self._process = self._process, None
        if process is None:
            return
        assert process.stdin is not None
        assert process.stdout is not None
        process.stdin.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()


def forking_kernel_manager(server: KernelForkServer) -> type[Any]:
    """A jupyter_client ``KernelManager`` whose kernels ``server`` forks (cold if it cannot)."""
    from jupyter_client.manager import KernelManager
    from jupyter_client.provisioning.local_provisioner import LocalProvisioner

    class ForkedKernelManager(KernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            kernel = None
            if kernel_cmd[:3] == [sys.executable, "-m", "ipykernel_launcher"]:
                kernel = server.fork_kernel(
                    kernel_cmd[3:],
                    str(kw.get("cwd") or os.getcwd()),
                    dict(kw.get("env") or os.environ),
                )
            if kernel is None:
                await super()._async_launch_kernel(kernel_cmd, **kw)
                return
            # The kernel spec names no provisioner: the local one, which watches and signals
            # its ``process`` (and the process group) as it does a Popen's.
            provisioner = self.provisioner
            assert isinstance(provisioner, LocalProvisioner)
            provisioner.process = kernel  # type: ignore[assignment]  # a Popen where it is used
            provisioner.pid = provisioner.pgid = kernel.pid
            provisioner.cwd = kw.get("cwd")
            self._reconcile_connection_info(provisioner.connection_info)

    return ForkedKernelManager


def _load_kernel_modules() -> dict[str, str]:
    """Import what a kernel imports as it starts; the environment variables that set."""
    # ipykernel reads its parent's pid from the environment when it is imported (to exit
    # when the parent does): the parent of the kernels forked here is this process.
    os.environ["JPY_PARENT_PID"] = str(os.getpid())
    before = dict(os.environ)
    for name in KERNEL_MODULES:
        importlib.import_module(name)
    return {name: value for name, value in os.environ.items() if before.get(name) != value}


def _load_ahead(lesson_modules: list[str]) -> str:
    """Import what every lesson imports first; the reason not to serve, or "ready"."""
    printed = io.StringIO()
    with (
        warnings.catch_warnings(record=True) as caught,
        contextlib.redirect_stdout(printed),
        contextlib.redirect_stderr(printed),
    ):
        warnings.simplefilter("always")
        for name in lesson_modules:
            importlib.import_module(name)
    if caught:
        return f"refused: loading {' '.join(lesson_modules)} warned: {caught[0].message}"
    if printed.getvalue():
        return f"refused: loading {' '.join(lesson_modules)} printed: {printed.getvalue()[:200]!r}"
    ahead = [name for name in NOT_AHEAD if name in sys.modules]
    if ahead:
        return f"refused: loading the lesson modules loaded {', '.join(ahead)}"
    return _READY


def _become_kernel(request: dict[str, Any], set_while_loading: dict[str, str]) -> None:
    """In the forked child: turn into ``python -m ipykernel_launcher ARGV`` and never return.

    ``set_while_loading``: what the kernel modules set in the fork server's environment.
    """
    import atexit
    import runpy

    code = 0
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the kernel waits for its children
        os.setsid()  # as jupyter_client starts a kernel: its own session and process group
        os.write(1, f"{os.getpid()}\n".encode())
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, 65536)  # the fork server's pipes are not the kernel's
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # A cold kernel's imports set these in its environment (where unset), which its
        # children inherit; here they ran in the fork server, whose environment is gone.
        for name, value in set_while_loading.items():
            os.environ.setdefault(name, value)
        sys.argv = ["ipykernel_launcher", *request["argv"]]
        runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    except BaseException:
        code = 1
    finally:
        with contextlib.suppress(BaseException):
            atexit._run_exitfuncs()
        os._exit(code)


def main(lesson_modules: list[str]) -> None:
    """The fork server: load ahead, say so, then fork a kernel for each request line."""
    # A cold kernel's sys.path has no script folder first (ipykernel_launcher drops it).
    del sys.path[0]
    set_while_loading = _load_kernel_modules()
    answer = _load_ahead(lesson_modules)
    os.write(1, f"{answer}\n".encode())
    if answer != _READY:
        return
    # Forked kernels are reaped by the system as they end; this process never waits.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    # What was loaded ahead lives as long as a kernel does: left out of the kernels' full
    # garbage collections, which would otherwise walk it, and write to every page of it
    # that the fork shares, each time.
    gc.freeze()
    for line in sys.stdin.buffer:
        if threading.active_count() != 1 or len(os.listdir("/proc/self/task")) != 1:
            os.write(1, b"refused: the fork server has more than one thread\n")
            return
        if os.fork() == 0:
            _become_kernel(json.loads(line), set_while_loading)


if __name__ == "__main__":
    main(sys.argv[1:])
