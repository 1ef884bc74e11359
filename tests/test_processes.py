"""Child processes and worker processes: started, watched, killed for real (no mocks)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from temporalio.client import Client

from sagakit.course.lessons.acid import STILL_WRITING
from sagakit.course.lessons.durable import (
    OrderInput,
    OrderWorkflow,
    create_step_log,
    read_step_log,
)
from sagakit.course.processes import (
    READY_PREFIX,
    ChildProcess,
    ChildProcessFailed,
    start_worker_process,
)
from tests.helpers import ROOT


def _exited(pid: int, timeout: float) -> bool:
    """True once the process is gone or a zombie (an orphan may never be reaped here)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def test_a_killed_child_reports_sigkill_and_keeps_its_output(tmp_path: Path) -> None:
    with ChildProcess.start(
        "sagakit.course.lessons.acid", "writer", str(tmp_path / "o.db")
    ) as child:
        line = child.wait_for_line(STILL_WRITING)
        assert child.alive
        assert child.kill() == -signal.SIGKILL
    assert STILL_WRITING in line
    assert not child.alive
    assert "committed order 3" in child.output
    assert child.kill() == -signal.SIGKILL  # killing again only reports the status


def test_waiting_for_a_line_fails_clearly_when_the_child_exits(tmp_path: Path) -> None:
    child = ChildProcess.start("sagakit.course.lessons.acid", "no-such-command")
    with pytest.raises(ChildProcessFailed, match="exited with status 2") as caught:
        child.wait_for_line("never printed")
    assert "usage: python -m sagakit.course.lessons.acid" in str(caught.value)
    assert child.returncode == 2


def test_waiting_for_a_line_times_out_with_the_output_so_far(tmp_path: Path) -> None:
    with ChildProcess.start(
        "sagakit.course.lessons.acid", "writer", str(tmp_path / "o.db")
    ) as child:
        child.wait_for_line(STILL_WRITING)
        with pytest.raises(ChildProcessFailed, match="did not print") as caught:
            child.wait_for_line("a line the writer never prints", timeout=0.2)
        assert "committed order 1" in str(caught.value)


def test_a_child_stops_when_its_parent_dies(tmp_path: Path) -> None:
    script = (
        "import sys, time\n"
        "from sagakit.course.processes import ChildProcess\n"
        "child = ChildProcess.start('sagakit.course.lessons.acid', 'writer', sys.argv[1])\n"
        "child.wait_for_line('still writing')\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script, str(tmp_path / "o.db")],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert parent.stdout is not None
    grandchild = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    parent.stdout.close()
    assert _exited(grandchild, timeout=20), "the orphaned writer kept running"


async def test_a_worker_process_polls_runs_workflows_and_stops_cleanly(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    log = create_step_log(tmp_path / "steps.db")
    worker = await start_worker_process(
        client, "sagakit.course.lessons.durable", "worker", task_queue, task_queue=task_queue
    )
    try:
        result = await client.execute_workflow(
            OrderWorkflow.run,
            OrderInput("o-1", str(log), step_seconds=0),
            id=f"processes-{task_queue}",
            task_queue=task_queue,
        )
    finally:
        status = worker.terminate()
    assert len(result) == 5
    assert {record.pid for record in read_step_log(log)} == {worker.pid}
    assert status == 0
    assert worker.output.startswith(READY_PREFIX)


async def test_a_worker_that_cannot_start_fails_fast(client: Client, task_queue: str) -> None:
    with pytest.raises(ChildProcessFailed, match="exited with status 2"):
        await start_worker_process(
            client, "sagakit.course.lessons.durable", "not-a-command", task_queue=task_queue
        )


async def test_a_worker_process_stops_when_its_parent_dies(client: Client, task_queue: str) -> None:
    script = (
        "import asyncio, os, sys, time\n"
        "from sagakit import course\n"
        "from sagakit.course.processes import start_worker_process\n"
        "async def main():\n"
        "    client = await course.connect()\n"
        "    w = await start_worker_process(client, 'sagakit.course.lessons.durable', 'worker',\n"
        "                                   sys.argv[1], task_queue=sys.argv[1])\n"
        "    print(w.pid, flush=True)\n"
        "    time.sleep(60)\n"
        "asyncio.run(main())\n"
    )
    env = {
        **os.environ,
        "TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "TEMPORAL_NAMESPACE": client.namespace,
    }
    parent = subprocess.Popen(
        [sys.executable, "-c", script, task_queue],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    assert parent.stdout is not None
    worker_pid = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    assert _exited(worker_pid, timeout=20), "the orphaned worker kept running"
