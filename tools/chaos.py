"""Long chaos profile: run many generated fault schedules through the real trip saga.

    python tools/chaos.py --schedules 300

Each batch of trips (``--batch`` at once, each with its own trip id and its own
schedule of faults) runs against the Temporal server that ``course.connect()``
finds (the local dev server unless TEMPORAL_ADDRESS says otherwise). After each
batch the world is checked. The last line says how many schedules ran and how
many ended inconsistent; the exit status is 1 if any did (or if any trip ended
otherwise than its schedule predicts), else 0.

The schedules come from the same Hypothesis strategy as tests/test_chaos.py,
with longer fault lists by default. ``--seed`` makes a run repeatable.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python tools/chaos.py` from a checkout
    sys.path.insert(0, str(ROOT))

from sagakit import course  # noqa: E402
from sagakit.course.chaos import (  # noqa: E402
    ChaosReport,
    ChaosSettings,
    TripSchedule,
    TripVerdict,
    run_schedules,
    schedule_strategy,
)
from sagakit.course.logs import quiet_expected_failures  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run generated fault schedules through the trip saga and check the world."
    )
    parser.add_argument("--schedules", type=int, default=300, help="at least this many (300)")
    parser.add_argument("--batch", type=int, default=50, help="trips run at once (50)")
    parser.add_argument("--seed", type=int, default=2024, help="Hypothesis seed (2024)")
    parser.add_argument(
        "--max-step-faults", type=int, default=4, help="longest fault list of a booking step (4)"
    )
    parser.add_argument(
        "--max-undo-failures", type=int, default=3, help="most failures of one undo (3)"
    )
    parser.add_argument("--max-attempts", type=int, default=4, help="attempts per booking step (4)")
    args = parser.parse_args(argv)
    if args.schedules < 1 or args.batch < 1:
        parser.error("--schedules and --batch must be 1 or more")
    return args


def generate(args: argparse.Namespace, rounds: int, batch: int) -> list[list[TripSchedule]]:
    """Draw ``rounds`` batches of schedules from the Hypothesis strategy."""
    batches: list[list[TripSchedule]] = []
    strategy = st.lists(
        schedule_strategy(
            max_step_faults=args.max_step_faults, max_undo_failures=args.max_undo_failures
        ),
        min_size=batch,
        max_size=batch,
    )

    @seed(args.seed)
    @settings(
        max_examples=rounds + 1,  # the first example is the all-OK batch, which is skipped
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(schedules: list[TripSchedule]) -> None:
        if any(s != TripSchedule() for s in schedules):  # Hypothesis tries all-OK first
            batches.append(schedules)

    collect()
    if not batches:
        raise SystemExit("Hypothesis generated no schedules with faults; try another --seed.")
    return batches[:rounds]


async def main(args: argparse.Namespace) -> int:
    with quiet_expected_failures():
        return await run(args)


async def run(args: argparse.Namespace) -> int:
    client = await course.connect()
    opts = ChaosSettings(max_attempts=args.max_attempts)
    verdicts: list[TripVerdict] = []
    reports: list[ChaosReport] = []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sagakit-chaos-") as folder:
        while len(verdicts) < args.schedules:
            wanted = -(-(args.schedules - len(verdicts)) // args.batch)
            for schedules in generate(args, wanted, args.batch):
                db = Path(folder) / f"world-{len(reports)}.db"
                report = await run_schedules(client, schedules, db, settings=opts)
                reports.append(report)
                verdicts.extend(report.verdicts)
                print(
                    f"batch {len(reports)}: {report.ran} schedules, "
                    f"{report.inconsistent} inconsistent, {report.unexpected} unexpected, "
                    f"{report.excused} after an unplanned timeout "
                    f"({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
                for failure in report.failures():
                    print(f"  - {failure}", flush=True)
            args.seed += 1
    inconsistent = sum(r.inconsistent for r in reports)
    unexpected = sum(r.unexpected for r in reports)
    excused = sum(r.excused for r in reports)
    outcomes = ChaosReport(tuple(verdicts)).outcomes
    summary = ", ".join(f"{n} {o.value}" for o, n in sorted(outcomes.items()))
    print(f"outcomes: {summary}")
    print(
        f"schedules run: {len(verdicts)}, inconsistent: {inconsistent}, "
        f"not as predicted: {unexpected} (+{excused} after an unplanned timeout)"
    )
    return 1 if inconsistent or unexpected else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(parse_args())))
