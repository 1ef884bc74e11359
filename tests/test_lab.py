"""`make lab` brings up JupyterLab: run its very command headless and fetch /lab with the token."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

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


async def _execute(channels: HTTPRequest, code: str) -> str:
    """Run `code` over a kernel's websocket, as JupyterLab's page does; what it printed."""
    connection = await websocket_connect(channels)
    request_id = uuid.uuid4().hex
    header = {
        "msg_id": request_id,
        "msg_type": "execute_request",
        "session": uuid.uuid4().hex,
        "username": "learner",
        "version": "5.3",
        "date": "",
    }
    await connection.write_message(
        json.dumps(
            {
                "header": header,
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False},
                "channel": "shell",
                "buffers": [],
            }
        )
    )
    printed: list[str] = []
    replied = idle = False
    while not (replied and idle):  # outputs and the reply come on two channels, in any order
        raw = await asyncio.wait_for(connection.read_message(), timeout=60)
        assert raw is not None, "the kernel's websocket closed"
        message = json.loads(raw)
        if message["parent_header"].get("msg_id") != request_id:
            continue
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])
        elif message["msg_type"] == "execute_reply":
            assert message["content"]["status"] == "ok", message["content"]
            replied = True
        elif message["msg_type"] == "status":
            idle = message["content"]["execution_state"] == "idle"
    connection.close()
    return "".join(printed)


def _run_a_cell(lab_url: str, code: str, runtime: Path) -> tuple[str, dict[str, Any]]:
    """Start a kernel in a running JupyterLab and run `code` in it; what it printed, and the
    kernel's connection file as it was while it ran. The kernel is shut down after."""
    parts = urllib.parse.urlsplit(lab_url)
    auth = {"Authorization": f"token {urllib.parse.parse_qs(parts.query)['token'][0]}"}
    kernels = f"http://{parts.netloc}/api/kernels"
    start = urllib.request.Request(kernels, b'{"name": "python3"}', auth, method="POST")
    with urllib.request.urlopen(start, timeout=30) as response:
        kernel_id = json.load(response)["id"]
    try:
        session = uuid.uuid4().hex
        channels = f"ws://{parts.netloc}/api/kernels/{kernel_id}/channels?session_id={session}"
        printed = asyncio.run(_execute(HTTPRequest(channels, headers=auth), code))
        connection = json.loads((runtime / f"kernel-{kernel_id}.json").read_text())
    finally:
        stop = urllib.request.Request(f"{kernels}/{kernel_id}", headers=auth, method="DELETE")
        urllib.request.urlopen(stop, timeout=30).close()
    return printed, connection


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
    """What a learner sees: a few lines, one URL with its token, no news popup in the page, and
    a notebook's kernel that runs a cell without a word in the terminal (its messages encrypted)."""
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
        cell_printed, kernel_connection = _run_a_cell(url, "print(6 * 7)", tmp_path / "runtime")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        rest, _ = process.communicate(timeout=30)
    printed += rest.splitlines()
    assert cell_printed == "42\n"
    assert kernel_connection.get("curve_publickey"), "the kernel's messages are not encrypted"
    # What make and JupyterLab say about the SIGTERM sent above is not what a learner sees.
    stopping = re.compile(r"received signal|Terminated|^make(\[\d+\])?: \*\*\* ")
    # jupyter_server 2.21 gives tornado 6.5 a websocket ping timeout longer than its ping
    # interval, and tornado says so once, at the first websocket (jupyter_server issue 1612).
    upstream = re.compile(r"websocket_ping_timeout")
    shown = [line for line in printed if not stopping.search(line) and not upstream.search(line)]
    assert not [line for line in shown if "without encryption" in line], shown
    assert len(shown) <= 4, shown
    assert not [line for line in shown if "file://" in line or "non-installed" in line]
    assert sum("token=" in line for line in shown) == 1
    config = re.search(
        r'<script id="jupyter-config-data" type="application/json">(.*?)</script>', body, re.S
    )
    assert config is not None
    page = json.loads(config.group(1))
    assert page["news"] == {"disabled": True}
