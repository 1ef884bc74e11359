"""Command line: ``python -m sagakit server start|stop|status`` and ``python -m sagakit doctor``.

The default port is 7233, or the port of ``TEMPORAL_ADDRESS`` when that names
this machine (``TEMPORAL_ADDRESS=127.0.0.1:7234 make lab`` starts the dev server
on 7234 and the notebooks connect there).

This module imports the standard library only; the dev server and doctor
modules are imported when a command runs, so ``doctor`` can report missing
packages (``temporalio`` among them) instead of failing with a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from sagakit._errors import ConfigurationError, SagakitError

if TYPE_CHECKING:
    from sagakit.course.devserver import DevServer, DevServerConfig

DEFAULT_PORT = 7233


def _address_from_environment() -> tuple[str, int] | None:
    """Host and port of ``TEMPORAL_ADDRESS`` when it names this machine, else ``None``."""
    from sagakit._net import is_loopback, parse_address

    text = os.environ.get("TEMPORAL_ADDRESS", "").strip()
    if not text:
        return None
    try:
        host, port = parse_address(text, source="TEMPORAL_ADDRESS")
    except ConfigurationError:
        return None  # connect() and doctor explain a malformed address
    return (host, port) if is_loopback(host) else None


def _parser() -> argparse.ArgumentParser:
    from sagakit.course.devserver import default_data_dir

    parser = argparse.ArgumentParser(prog="python -m sagakit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    server = commands.add_parser("server", help="manage the local Temporal dev server")
    server.add_argument("action", choices=["start", "stop", "status"])
    for sub in (server, commands.add_parser("doctor", help="check this machine for the course")):
        sub.add_argument(
            "--port",
            type=int,
            default=None,
            help=f"frontend port (default {DEFAULT_PORT}, or the port of a local TEMPORAL_ADDRESS)",
        )
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


def _config(args: argparse.Namespace) -> DevServerConfig:
    from sagakit.course.devserver import DevServerConfig, default_data_dir

    host = "127.0.0.1"
    port = args.port
    if port is None:
        port = DEFAULT_PORT
        local = _address_from_environment()
        if local is not None:
            port = local[1]
            # An IP literal is bound as given ([::1] stays IPv6); names bind 127.0.0.1.
            try:
                host = str(ipaddress.ip_address(local[0]))
            except ValueError:
                host = "127.0.0.1"
    return DevServerConfig(
        host=host, port=port, ui_port=args.ui_port, data_dir=args.data_dir or default_data_dir()
    )


async def _run(args: argparse.Namespace) -> int:
    from sagakit.course.devserver import DevServer

    config = _config(args)
    if args.command == "doctor":
        from sagakit.course.doctor import run_doctor

        checks = await run_doctor(config)
        for check in checks:
            print(check.render())
        failed = sum(check.verdict == "fail" for check in checks)
        print(f"\n{failed} problem(s) found." if failed else "\nAll set: the course can run.")
        return 1 if failed else 0
    server = DevServer(config)
    if args.action == "start":
        status = await server.start()
        _print_notice(server)
        verb = "Started" if status.started_here else "Already running:"
        print(f"{verb} {status.describe()}")
        return 0
    if args.action == "stop":
        stopped = server.stop()
        _print_notice(server)
        print(
            f"Stopped the dev server on port {config.port}."
            if stopped
            else f"sagakit has not started a dev server on port {config.port}; nothing to stop."
        )
        return 0
    status = await server.status()
    _print_notice(server)
    print(status.describe())
    return 0 if status.running else 3


def _print_notice(server: DevServer) -> None:
    if server.notice:
        print(server.notice)


def main(argv: list[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except SagakitError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        starting = args.command == "server" and args.action == "start"
        print(
            "Interrupted." + (" Nothing this command started is left running." if starting else ""),
            file=sys.stderr,
        )
        return 130


def run() -> NoReturn:
    """Run the command line, then leave the process at once with its exit code."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # temporalio's native runtime can crash at interpreter shutdown
    # (PyGILState_Release, sdk-python#300); leave without running finalizers.
    os._exit(code)
