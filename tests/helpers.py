"""Small helpers shared by the foundation tests."""

from __future__ import annotations

import importlib.util
import json
import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (and whose +1000 is free too).

    Picked below the ephemeral range, where the system hands out no port by itself: every
    dev server also listens on a few ports the system picks (its internal services), and a
    port found by binding to port 0, or its +1000 for the Web UI, could be one of them by
    the time a server of ours starts. From 10000 up: the learner's 7233 and 8233 are never
    picked.
    """
    ephemeral_low = _ephemeral_range_start()
    while True:
        port = _random.randrange(10_000, ephemeral_low - 1000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        if not _listening(port) and not _listening(port + 1000):
            return port


_random = random.SystemRandom()


def _ephemeral_range_start() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768  # Linux's default; macOS starts at 49152
    return max(low, 12_000)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sagakit ARGS`` in a child process and capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", "sagakit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        check=False,
    )


def release_together(children: list[subprocess.Popen[str]]) -> list[str]:
    """Wait until every child printed "ready", send them all "go", and collect their output.

    The children then race from the same starting line; any that hangs is killed.
    """
    try:
        for child in children:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        return [child.communicate(timeout=120)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.communicate()


def load_tool(name: str) -> ModuleType:
    """Import ``tools/<name>.py`` (a script, not a package module) as ``course_<name>``."""
    spec = importlib.util.spec_from_file_location(f"course_{name}", ROOT / "tools" / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


async def pollers(client: Client, task_queue: str, *, namespace: str | None = None) -> list[str]:
    """The identities of the workers that recently polled ``task_queue`` for workflow tasks.

    ``namespace`` defaults to the client's.
    """
    response = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=namespace or client.namespace,
            task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return [poller.identity for poller in response.pollers]


def fresh_python(code: str) -> str:
    """Run ``code`` in a new interpreter (nothing imported yet) and return what it printed."""
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def modules_imported_by(code: str, *, already: str = "") -> list[str]:
    """The modules that ``code`` imports in a fresh interpreter, once ``already`` has run."""
    loaded: list[str] = json.loads(
        fresh_python(
            f"import json, sys\n{already}\nbefore = set(sys.modules)\n{code}\n"
            "print(json.dumps(sorted(set(sys.modules) - before)))"
        )
    )
    return loaded
