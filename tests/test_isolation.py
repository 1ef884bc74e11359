"""The tests never touch what belongs to the learner: their server, its History, their data."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import nbval.kernel as nbval_kernel  # type: ignore[import-untyped]  # no type hints
import psutil  # type: ignore[import-untyped]  # no type hints
import pytest
from jupyter_client.manager import KernelManager
from temporalio.client import Client

from sagakit.course.devserver import DevServerConfig
from tests.forked_kernels import ForkedKernel, KernelForkServer, forking_kernel_manager
from tests.helpers import fresh_python


@pytest.mark.skipif(
    os.environ.get("SAGAKIT_TEST_SERVER") != "own",
    reason="TEMPORAL_ADDRESS or a profile named the server for this session on purpose",
)
async def test_the_session_runs_on_its_own_server_and_data_folder(client: Client) -> None:
    learner = DevServerConfig(port=7233, data_dir=Path.home() / ".sagakit")
    address = client.service_client.config.target_host
    assert address != f"127.0.0.1:{learner.port}", "tests must not use the learner's server"
    assert os.environ["TEMPORAL_ADDRESS"] == address
    data_dir = Path(os.environ["SAGAKIT_DATA_DIR"])
    assert data_dir != learner.data_dir
    assert data_dir.name.startswith("sagakit-test-server-")
    # Web UI links printed by the notebooks under test point at the session's own UI.
    assert os.environ["SAGAKIT_UI_URL"] != learner.ui_url


def test_kernels_keep_their_ipython_history_out_of_the_learners_folder() -> None:
    """The notebooks' kernels (and every process the tests start) use the session's IPython
    folder, not ~/.ipython, where IPython keeps the learner's own command history."""
    found = fresh_python("import IPython.paths; print(IPython.paths.get_ipython_dir())").strip()
    assert Path(found) != Path.home() / ".ipython"
    assert Path(found).parent.name.startswith("sagakit-test-tmp-")  # the session's scratch


def test_kernels_keep_their_connection_files_out_of_the_learners_folder() -> None:
    """Each notebook kernel's connection file goes to the session's scratch folder, not to the
    learner's Jupyter runtime folder (which ``jupyter server list`` and JupyterLab read)."""
    found = fresh_python(
        "import jupyter_core.paths; print(jupyter_core.paths.jupyter_runtime_dir())"
    )
    assert Path(found.strip()).parent.name.startswith("sagakit-test-tmp-")


def test_a_notebook_kernel_talks_over_unix_sockets_in_the_sessions_folder(tmp_path: Path) -> None:
    """nbval's kernels use Unix sockets in the session's folder, not TCP ports that
    jupyter_client picks and the kernel binds a second later (another process may take one
    in between: the kernel dies, and every cell of its notebook fails)."""
    # nbval's own start (RunningKernel) leaves its stderr file open: DEVNULL is no file object.
    manager, client = nbval_kernel.start_new_kernel(
        kernel_name=nbval_kernel.CURRENT_ENV_KERNEL_NAME, stderr=subprocess.DEVNULL, cwd=tmp_path
    )
    try:
        info = manager.get_connection_info()
        assert info["transport"] == "ipc"
        assert Path(info["ip"]).parent.parent.name.startswith("sagakit-test-tmp-")
        for channel in ("shell", "iopub", "stdin", "control", "hb"):
            path = Path(f"{info['ip']}-{info[f'{channel}_port']}")
            assert stat.S_ISSOCK(path.stat().st_mode), f"{channel}: no socket at {path}"
        reply = client.execute_interactive("print(6 * 7)", timeout=60)
        assert reply["content"]["status"] == "ok"
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


_KERNEL_PROBE = """
import json, os, signal, sys
print(json.dumps({
    "path": sys.path, "cwd": os.getcwd(), "argv0": os.path.basename(sys.argv[0]),
    "probe": os.environ.get("SAGAKIT_KERNEL_PROBE"), "own_group": os.getpgid(0) == os.getpid(),
    "sigchld": int(signal.getsignal(signal.SIGCHLD)), "parent": os.getppid(),
    "ahead": [m for m in ("matplotlib", "ipywidgets") if m in sys.modules],
    "environ": {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID"},
}))
"""


def _probe(client: Any) -> dict[str, Any]:
    lines: list[str] = []

    def collect(message: dict[str, Any]) -> None:
        if message["msg_type"] == "stream":
            lines.append(message["content"]["text"])

    reply = client.execute_interactive(_KERNEL_PROBE, timeout=60, output_hook=collect)
    assert reply["content"]["status"] == "ok"
    probed: dict[str, Any] = json.loads("".join(lines))
    return probed


def test_a_notebook_kernel_is_forked_and_looks_like_a_cold_one(tmp_path: Path) -> None:
    """nbval's kernels are forked from the test process's fork server (it has imported what
    every kernel imports), and a notebook sees what it sees in a kernel started cold: the
    same sys.path, folder, arguments and environment (with what the kernel's own imports
    set in it, such as debugpy's PYDEVD_USE_FRAME_EVAL), a process group of its own, and no
    matplotlib or ipywidgets loaded before the notebook loads them."""
    env = {**os.environ, "SAGAKIT_KERNEL_PROBE": "this launch only"}
    cold_manager = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "cold"))
    cold_manager.start_kernel(cwd=tmp_path, env=env, stderr=subprocess.DEVNULL)
    cold_client = cold_manager.client()
    forked_manager, forked_client = nbval_kernel.start_new_kernel(
        kernel_name=nbval_kernel.CURRENT_ENV_KERNEL_NAME,
        stderr=subprocess.DEVNULL,
        cwd=tmp_path,
        env=env,
    )
    try:
        cold_client.start_channels()
        cold_client.wait_for_ready(timeout=60)
        cold, forked = _probe(cold_client), _probe(forked_client)
    finally:
        for client, manager in ((cold_client, cold_manager), (forked_client, forked_manager)):
            client.stop_channels()
            manager.shutdown_kernel(now=True)
    # Forked: its parent is this process's fork server, not this process.
    server = psutil.Process(forked.pop("parent"))
    assert server.cmdline()[1].endswith("tests/forked_kernels.py"), "the kernel was not forked"
    assert server.ppid() == os.getpid()
    assert cold.pop("parent") == os.getpid()
    assert forked == cold
    assert forked["probe"] == "this launch only"
    assert forked["own_group"]
    assert forked["ahead"] == []
    assert forked["environ"]["PYDEVD_USE_FRAME_EVAL"] == "NO"


NOISY_MODULES = {
    "prints_on_import": "print('loaded')",
    "warns_on_import": "import warnings\nwarnings.warn('a warning a first cell would show')",
    "loads_matplotlib": "import matplotlib.figure",
}


@pytest.mark.parametrize(
    ("module", "reason"),
    [
        ("prints_on_import", "printed"),
        ("warns_on_import", "warned"),
        ("loads_matplotlib", "loaded matplotlib"),
    ],
)
def test_a_fork_server_that_would_hide_an_import_refuses(
    module: str, reason: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A module loaded ahead that prints or warns would do so in a learner's first cell,
    where nbval compares the output: then the fork server does not serve, and kernels
    start cold (``None``). So does one that would load matplotlib before the kernel."""
    (tmp_path / f"{module}.py").write_text(NOISY_MODULES[module] + "\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # the fork server's, when it starts
    server = KernelForkServer(lesson_modules=(module,))
    try:
        assert server.fork_kernel(["-f", "unused.json"], os.getcwd(), dict(os.environ)) is None
        assert server.refused is not None
        assert reason in server.refused
    finally:
        server.close()


def test_a_forked_kernel_ends_with_its_fork_server(tmp_path: Path) -> None:
    """Closing the fork server leaves no kernel behind (each watches its parent)."""
    server = KernelForkServer()
    manager = forking_kernel_manager(server)(
        kernel_name="python3", transport="ipc", ip=str(tmp_path / "k")
    )
    manager.start_kernel(cwd=tmp_path, stderr=subprocess.DEVNULL)
    kernel = manager.provisioner.process
    assert isinstance(kernel, ForkedKernel)
    assert kernel.poll() is None
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
    finally:
        client.stop_channels()
    server.close()
    assert kernel.wait(timeout=20) == 0
    manager.cleanup_resources()
