"""Command line: ``python -m sagakit server start|stop|status`` and ``python -m sagakit doctor``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import NoReturn

from sagakit import SagakitError
from sagakit.course.devserver import DevServer, DevServerConfig, default_data_dir
from sagakit.course.doctor import run_doctor


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sagakit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="manage the local Temporal dev server")
    server.add_argument("action", choices=["start", "stop", "status"])
    for sub in (server, commands.add_parser("doctor", help="check this machine for the course")):
        sub.add_argument("--port", type=int, default=7233, help="frontend port (default 7233)")
        sub.add_argument(
            "--ui-port", type=int, default=None, help="Web UI port (default port+1000)"
        )
        sub.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help=f"state folder (default {default_data_dir()})",
        )
    return parser


async def _run(args: argparse.Namespace) -> int:
    config = DevServerConfig(
        port=args.port, ui_port=args.ui_port, data_dir=args.data_dir or default_data_dir()
    )
    if args.command == "doctor":
        checks = await run_doctor(config)
        for check in checks:
            print(check.render())
        failed = sum(check.verdict == "fail" for check in checks)
        print(f"\n{failed} problem(s) found." if failed else "\nAll set: the course can run.")
        return 1 if failed else 0
    server = DevServer(config)
    if args.action == "start":
        status = await server.start()
        verb = "Started" if status.started_here else "Already running:"
        print(f"{verb} {status.describe()}")
        return 0
    if args.action == "stop":
        stopped = server.stop()
        print(
            f"Stopped the dev server on port {config.port}."
            if stopped
            else f"sagakit has not started a dev server on port {config.port}; nothing to stop."
        )
        return 0
    status = await server.status()
    print(status.describe())
    return 0 if status.running else 3


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except SagakitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run() -> NoReturn:
    """Run the command line, then leave the process at once with its exit code."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # temporalio's native runtime can crash at interpreter shutdown
    # (PyGILState_Release, sdk-python#300); leave without running finalizers.
    os._exit(code)
