"""The tests never touch what belongs to the learner: their server, its History, their data."""

from __future__ import annotations

import os
from pathlib import Path

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
