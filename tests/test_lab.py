"""`make lab` brings up JupyterLab: run its very command headless and fetch /lab with the token."""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ROOT, free_port


def _lab_command(port: int) -> list[str]:
    """The JupyterLab command line exactly as `make lab` would run it (`make -n` prints it)."""
    dry_run = subprocess.run(
        ["make", "-n", "lab", f"LAB_PORT={port}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in dry_run.splitlines() if "jupyter lab" in line)
    words = shlex.split(line.lstrip("@"))
    while "=" in words[0] and not words[0].startswith("-"):  # the token travels in the env
        words.pop(0)
    return words


def test_lab_listens_on_loopback_with_token_auth() -> None:
    command = _lab_command(8888)
    assert "--ip=127.0.0.1" in command
    assert not any("token" in arg.lower() for arg in command), "token auth must stay on"
    assert "--notebook-dir=notebooks" in command


def test_jupyterlab_serves_lab_with_token(tmp_path: Path) -> None:
    port = free_port()
    token = secrets.token_hex(16)
    # The token is given through the environment, as a learner's would be generated.
    process = subprocess.Popen(
        _lab_command(port),
        cwd=ROOT,
        env={
            **os.environ,
            "JUPYTER_TOKEN": token,
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                url = f"http://127.0.0.1:{port}/lab?token={token}"
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = response.read().decode()
                    status = response.status
                break
            except (urllib.error.URLError, ConnectionError):
                assert process.poll() is None, "JupyterLab exited early"
                assert time.monotonic() < deadline, "JupyterLab did not answer within 60 s"
                time.sleep(0.5)
        assert status == 200
        assert "JupyterLab" in body
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/contents", timeout=5)
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_make_lab_prints_one_url_and_turns_the_news_off(tmp_path: Path) -> None:
    """What a learner sees: a few lines, one URL with its token, no news popup in the page."""
    port = free_port()
    process = subprocess.Popen(
        ["make", "--no-print-directory", "lab", f"LAB_PORT={port}"],
        cwd=ROOT,
        env={
            **os.environ,
            "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
            "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # make, the server check and JupyterLab stop together
    )
    try:
        assert process.stdout is not None
        printed: list[str] = []
        while not any("token=" in line for line in printed):
            line = process.stdout.readline()
            assert line, f"make lab ended early: {printed}"
            printed.append(line.rstrip())
        [url] = re.findall(r"http://127\.0\.0\.1:\d+/lab\?token=\w+", "\n".join(printed))
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    body = response.read().decode()
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "JupyterLab did not answer within 60 s"
                time.sleep(0.5)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    printed += rest.splitlines()
    # What make and JupyterLab say about the SIGTERM sent above is not what a learner sees.
    stopping = re.compile(r"received signal|Terminated|^make(\[\d+\])?: \*\*\* ")
    shown = [line for line in printed if not stopping.search(line)]
    assert len(shown) <= 4, shown
    assert not [line for line in shown if "file://" in line or "non-installed" in line]
    assert sum("token=" in line for line in shown) == 1
    config = re.search(
        r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', body, re.S
    )
    assert config is not None
    page = json.loads(config.group(1))
    assert page["news"] == {"disabled": True}
