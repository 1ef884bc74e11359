"""Run every benchmark, one after the other, and print their summary lines at the end.

Usage: python benchmarks/run_all.py [--quick] [--only NAME ...]

Each benchmark runs in its own process (``python benchmarks/bench_NAME.py``),
prints its table, saves its chart in ``benchmarks/results/`` and ends with a
``SUMMARY`` line. ``--quick`` uses small sample sizes (a minute or two in
all, for a first look; the figures are rougher). The exit status is non-zero
only when a benchmark crashed: a missed target is reported, not failed.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHMARKS: dict[str, tuple[list[str], list[str]]] = {
    # name: (full arguments, --quick arguments)
    "overhead": (["--runs", "30"], ["--runs", "5"]),
    "sandbox": (["--runs", "60"], ["--runs", "5"]),
    "fanout": (["--runs", "5"], ["--runs", "2"]),
    "throughput": (["--rounds", "5", "--batch", "40"], ["--rounds", "1", "--batch", "20"]),
    "idempotency": (["--rounds", "5"], ["--rounds", "2", "--calls", "100"]),
    "course": (["--server-starts", "3"], ["--server-starts", "1"]),
    "class": (["--cells", "4"], ["--learners", "1", "2", "--cells", "1"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small samples, rough figures")
    parser.add_argument(
        "--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS), metavar="NAME"
    )
    args = parser.parse_args(argv)
    summaries: list[str] = []
    crashed: list[str] = []
    for name in args.only:
        full, quick = BENCHMARKS[name]
        command = [sys.executable, str(HERE / f"bench_{name}.py"), *(quick if args.quick else full)]
        print(f"\n=== {name}: {' '.join(command[1:])}", flush=True)
        started = time.perf_counter()
        with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, bufsize=1) as child:
            assert child.stdout is not None
            for line in child.stdout:
                print(line, end="", flush=True)
                if line.startswith("SUMMARY "):
                    summaries.append(line.strip())
        print(f"=== {name} took {time.perf_counter() - started:.0f} s", flush=True)
        if child.returncode != 0:
            crashed.append(f"{name} (exit {child.returncode})")
    print("\n" + "\n".join(summaries))
    if crashed:
        print(f"FAILED to run: {', '.join(crashed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
