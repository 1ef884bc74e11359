"""The tests never touch what belongs to the learner: their server, its History, their data."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import nbval.kernel as nbval_kernel  # type: ignore[import-untyped]  # no type hints
import pytest
from temporalio.client import Client

from sagakit.course.devserver import DevServerConfig
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
