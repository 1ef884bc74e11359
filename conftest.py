"""The test session: every test and notebook talks to a real Temporal server, never a mock.

The tests never touch what belongs to the learner. Unless a server is named
(TEMPORAL_ADDRESS or a Temporal profile), the session starts its OWN dev server
through sagakit, on a free port with a temporary data folder, and points
everything at it through the environment: this process, the notebooks that nbval
runs (their kernels inherit the environment) and the worker processes the tests
start. The learner's server on 7233, its data in ~/.sagakit and its Web UI are
left alone, so ``make test`` can run while ``make lab`` is open. The session's
server is stopped and its folder removed at the end.

Under pytest-xdist (``make test`` runs the files on a few worker processes) each
worker starts a server of its own, so the workers' fixed workflow IDs (a lesson's
learner and solved editions use the same ones) never meet; the controlling
process runs no test and starts none.

It sits at the top of the repository so a run of the notebooks alone (``pytest
notebooks/09-sagas.ipynb``) gets the session's own server too, not the learner's on 7233.
The fixtures are in tests/conftest.py.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

import sagakit.course.client
from sagakit.course.devserver import DevServer, DevServerConfig
from sagakit.course.errors import PortInUseError, ServerStartError
from tests.assert_cache import write_rewritten_bytecode
from tests.forked_kernels import KernelForkServer, forking_kernel_manager
from tests.helpers import free_port
from tests.run_order import LONG_FILES, WAITING_FILES, hand_out_order

_session_server: DevServer | None = None
_scratch: Path | None = None
_fork_server: KernelForkServer | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    """Cache the rewritten test modules once (pytest-xdist's controller: see tests/assert_cache.py).

    In a process that runs tests: set up the children's scratch folder, then this process's
    own dev server (see above).
    """
    global _session_server
    if _is_xdist_controller(session.config):
        # Before the test processes start (pytest-xdist starts them after this hook).
        # The files pytest rewrites: conftests, and test modules by its own python_files rule.
        tests = Path(__file__).parent / "tests"
        patterns = session.config.getini("python_files")
        modules = sorted({path for pattern in patterns for path in tests.glob(pattern)})
        write_rewritten_bytecode([tests / "conftest.py", *modules], session.config)
        return
    _give_children_a_scratch_folder()
    if sagakit.course.client.configured_profile() is not None:
        return
    # The dev servers the tests start (this one and those a test starts itself) collect
    # garbage less often: about 7 % less of their CPU (the same workload, three runs each),
    # for about 80 MB more memory each. And each runs its Go code on one thread: a test
    # run starts a server per test process on a machine of a few cores, and Go's threads
    # that spin looking for work cost a server about a tenth of its CPU (four runs each).
    # A learner's server keeps Go's defaults.
    os.environ.setdefault("GOGC", "400")
    os.environ.setdefault("GOMAXPROCS", "1")
    data_dir = Path(tempfile.mkdtemp(prefix="sagakit-test-server-"))
    # A port found free can be taken before the server binds it (other test processes
    # start servers too, each listening on a few more ports of the ephemeral range): then
    # the server exits at once, and a fresh port is tried.
    for attempt in range(3):
        port = free_port()
        server = DevServer(DevServerConfig(port=port, ui_port=port + 1000, data_dir=data_dir))
        try:
            asyncio.run(server.start())
            break
        except (ServerStartError, PortInUseError):
            if attempt == 2:
                raise
    _session_server = server
    os.environ["TEMPORAL_ADDRESS"] = f"127.0.0.1:{port}"
    os.environ["SAGAKIT_UI_URL"] = f"http://127.0.0.1:{port + 1000}"
    os.environ["SAGAKIT_DATA_DIR"] = str(data_dir)
    os.environ["SAGAKIT_TEST_SERVER"] = "own"  # tests/test_isolation.py checks the promise


def _give_children_a_scratch_folder() -> None:
    """Point the temporary folder of every process the tests start at one of this session's.

    Each lesson makes a scratch folder (``tempfile.mkdtemp(prefix="lesson-09-")``) for its
    services' state, as a learner's kernel should; a test run executes 50 notebooks and the
    folders piled up in /tmp by the thousand. Kernels, learner runs and worker processes
    inherit TMPDIR, and the folder goes at the end of the session.

    The kernels' IPython folder goes there too: IPython keeps a history database in it, and
    the tests' 50 kernels wrote their sessions into the learner's ~/.ipython (the kernels of
    the test processes, starting at once, into one SQLite file). So do the Jupyter
    runtime files (each kernel's connection file), which went to the learner's runtime folder.
    """
    global _scratch
    _scratch = Path(tempfile.mkdtemp(prefix="sagakit-test-tmp-"))
    os.environ["TMPDIR"] = str(_scratch)
    os.environ["IPYTHONDIR"] = str(_scratch / "ipython")
    os.environ["JUPYTER_RUNTIME_DIR"] = str(_scratch / "jupyter-runtime")
    _start_kernels_forked_on_unix_sockets(_scratch / "kernels")


def _start_kernels_forked_on_unix_sockets(folder: Path) -> None:
    """Have nbval start each notebook's kernel forked, on Unix sockets in ``folder``.

    For TCP, jupyter_client picks a kernel's five ports by binding port 0 and letting go,
    and the kernel binds them once it has started, a second later. Meanwhile the other test
    processes start dev servers, JupyterLab and connections that may take one of those ports:
    the kernel then dies at start, and every cell of its notebook fails. Nothing else can
    take a socket path in this session's own folder.

    Each kernel is forked from this process's fork server (tests/forked_kernels.py), not
    started cold: the server has imported ipykernel, temporalio and sagakit once, which
    every kernel otherwise imports again (about a second of CPU each, 53 times a run).
    """
    import nbval.kernel  # type: ignore[import-untyped]  # nbval ships no type hints

    global _fork_server
    folder.mkdir()
    numbers = itertools.count()
    _fork_server = KernelForkServer()
    manager_class = forking_kernel_manager(_fork_server)

    def manager(**kwargs: Any) -> Any:
        # A short path: a Unix socket's path may not be longer than about 100 bytes.
        return manager_class(transport="ipc", ip=str(folder / str(next(numbers))), **kwargs)

    nbval.kernel.KernelManager = manager


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: three test processes more than there are cores.

    The tests and the notebooks wait on servers, timers and child processes for much of
    their time (most lessons keep a core busy a tenth to a fifth of their run): on two
    cores with two processes the CPU was idle a third of the run, with four about 90
    core-seconds of a clean-clone run, with five about 40. A fifth process pays its own
    start, collection and dev server, but over 21 clean-clone runs the CPU's busy time was
    the same with four and five (about 660 core-seconds on average), and the runs with five
    took 349 s where those with four took 385 s (medians of ten runs with four and eleven
    with five, of nearly the same code, over two working sessions; three runs back to back
    took 394 s with four, 366 s with five, 394 s with four).
    """
    return len(os.sched_getaffinity(0)) + 3


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Hand the long files out first, in ``hand_out_order``; the rest as collected.

    A stable sort: every file stays whole and in its own order.
    """
    rank = {name: place for place, name in enumerate(hand_out_order(LONG_FILES, WAITING_FILES))}
    items.sort(key=lambda item: rank.get(item.nodeid.partition("::")[0], len(rank)))


def _is_xdist_controller(config: pytest.Config) -> bool:
    """Whether this process only hands test files to pytest-xdist workers (and runs none)."""
    workers = getattr(config.option, "numprocesses", None)
    return bool(workers) and "PYTEST_XDIST_WORKER" not in os.environ


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the session's server, remove its data folder and the children's scratch folder."""
    if _session_server is not None:
        # Killed, not shut down gracefully: its data folder goes next, and the server's
        # orderly shutdown took a second at the end of every test process.
        _session_server.stop(timeout=0)
        shutil.rmtree(_session_server.config.data_dir, ignore_errors=True)
    if _fork_server is not None:
        _fork_server.close()
    if _scratch is not None:
        shutil.rmtree(_scratch, ignore_errors=True)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Leave this process's objects out of the garbage collections of its exit.

    When a test process exits, the interpreter collects its garbage over every object it
    still holds (the collected tests, the notebooks' cells, the clients): after a whole run,
    py-spy found every test process in those collections for three seconds and more, all at
    once at the end of the run, over memory each was about to hand back anyway. pytest's own
    last collection, which reports exceptions raised in finalizers, has run by now.
    """
    gc.freeze()
