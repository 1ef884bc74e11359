"""Re-execute notebooks in place, the way nbval runs them, so their outputs can be committed.

Usage: python tools/execute_notebooks.py [NOTEBOOK ...]   (default: every notebook)

Each notebook runs top to bottom in a fresh kernel of the current environment
(nbval's --nbval-current-env kernel), with the notebook's folder as the working
directory, and its outputs and execution counts are written back.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient
from nbval.kernel import CURRENT_ENV_KERNEL_NAME, NbvalKernelspecManager

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"


def lesson_notebooks() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def execute(path: Path) -> float:
    nb = nbformat.read(path, as_version=4)
    # The kernel listens on Unix sockets in a folder of its own, as nbval's kernels do in the
    # tests (over TCP, ipykernel warns of unencrypted traffic every time a kernel starts). The
    # folder's path stays short: a socket's path may not be longer than about 100 bytes.
    with tempfile.TemporaryDirectory(prefix="kernel-") as sockets:
        km = KernelManager(
            kernel_name=CURRENT_ENV_KERNEL_NAME,
            kernel_spec_manager=NbvalKernelspecManager(),
            transport="ipc",
            ip=str(Path(sockets) / "k"),
        )
        client = NotebookClient(
            nb,
            km=km,
            timeout=300,
            resources={"metadata": {"path": str(path.parent)}},
        )
        started = time.perf_counter()
        # The kernel manager is ours, so nbclient would leave the kernel running (and its
        # client's sockets open) when the notebook ends: it is shut down here instead.
        client.execute(cleanup_kc=True)
        elapsed = time.perf_counter() - started
    # The kernelspec must name a kernel every learner has, not nbval's internal one.
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return elapsed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description="Re-execute notebooks in place, the way nbval runs them."
    )
    parser.add_argument(
        "notebooks", nargs="*", type=Path, help="notebooks to execute (default: every notebook)"
    )
    args = parser.parse_args(argv)
    not_notebooks = [str(p) for p in args.notebooks if p.suffix != ".ipynb" or not p.is_file()]
    if not_notebooks:
        parser.error(f"not a notebook file: {', '.join(not_notebooks)}")
    paths = [p.resolve() for p in args.notebooks] or lesson_notebooks()
    for path in paths:
        print(f"executing {path.relative_to(ROOT)} ...", flush=True)
        print(f"  done in {execute(path):.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
