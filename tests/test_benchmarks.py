"""Smoke tests of the benchmarks: each core function runs with tiny samples and returns
well-formed results (a row per variant, positive ratios). Speed is never asserted here;
that is what ``python benchmarks/run_all.py`` reports."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from temporalio.client import Client

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import (  # noqa: E402
    _common,
    bench_course,
    bench_fanout,
    bench_idempotency,
    bench_overhead,
    bench_sandbox,
    bench_throughput,
    run_all,
)


@pytest.fixture(autouse=True)
def charts_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Charts of the smoke runs go to a temporary folder, not benchmarks/results."""
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    return tmp_path


def _positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


def test_statistics_helpers() -> None:
    assert _common.median([3.0, 1.0, 2.0]) == 2.0
    assert _common.percentile([float(i) for i in range(1, 101)], 95) == 95.0
    assert _common.percentile([5.0], 95) == 5.0
    assert math.isnan(_common.ratio(1.0, 0.0))
    assert _common.rotations(["a", "b", "c"], 4) == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    table = _common.format_table(["name", "n"], [("x", 1.5), ("longer", 20.0)])
    assert table.splitlines()[0].split() == ["name", "n"]
    assert "1.500" in table


def test_every_benchmark_is_in_run_all() -> None:
    scripts = {p.stem.removeprefix("bench_") for p in (ROOT / "benchmarks").glob("bench_*.py")}
    assert scripts == set(run_all.BENCHMARKS)


async def test_overhead(client: Client, charts_in_tmp: Path) -> None:
    result = await bench_overhead.measure(client, runs=1, warmup=0)
    pairs = {(row.scenario, row.variant) for row in result.rows}
    assert pairs == {
        (scenario, variant)
        for scenario, variants in bench_overhead.SCENARIOS.items()
        for variant in variants
    }
    assert all(row.runs == 1 and _positive(row.median_ms) for row in result.rows)
    assert {"c/b", "c/a", "c/b compensating", "c/b CPU"} <= set(result.ratios)
    assert all(_positive(v) for v in result.ratios.values())
    assert bench_overhead.report(result).splitlines()[-1].startswith("SUMMARY overhead: c/b = ")
    assert bench_overhead.chart(result) == charts_in_tmp / "overhead.png"
    assert (charts_in_tmp / "overhead.png").stat().st_size > 0


async def test_sandbox(client: Client, charts_in_tmp: Path) -> None:
    result = await bench_sandbox.measure(client, runs=1, warmup=0)
    assert {(row.variant, row.shape) for row in result.rows} == {
        (variant, shape) for variant in bench_sandbox.VARIANTS for shape in bench_sandbox.SHAPES
    }
    assert all(row.runs == 1 and _positive(row.cpu_ms) for row in result.rows)
    assert [load.variant for load in result.loads] == list(bench_sandbox.VARIANTS)
    fresh = {load.variant: load.fresh_modules for load in result.loads}
    # The public import executes sagakit's __init__ in the sandbox and no other sagakit module.
    assert not [m for m in fresh["b: from sagakit import Saga"] if m.startswith("sagakit.")]
    assert set(result.ratios) == {"b/a", "c/a", "d/a"}
    assert all(_positive(v) for v in result.ratios.values())
    text = bench_sandbox.report(result)
    assert "sagakit/handwritten CPU per run: " in text
    assert "(target <= 1.10): " in text
    assert text.splitlines()[-1].startswith("SUMMARY sandbox: b/a = ")
    assert bench_sandbox.chart(result) == charts_in_tmp / "sandbox.png"


async def test_fanout(client: Client) -> None:
    result = await bench_fanout.measure(client, runs=1, count=3, seconds=0.05, warmup=0)
    assert [(r.variant, r.compensations) for r in result.rows] == [
        ("single", 1),
        ("sequential", 3),
        ("parallel", 3),
    ]
    assert all(_positive(r.median_s) and _positive(r.end_to_end_s) for r in result.rows)
    assert set(result.ratios) == {"sequential/single", "parallel/single"}
    assert all(_positive(v) for v in result.ratios.values())
    assert "SUMMARY fanout: parallel/single = " in bench_fanout.report(result)
    bench_fanout.chart(result)


async def test_throughput(client: Client) -> None:
    result = await bench_throughput.measure(client, rounds=1, batch=2, warmup=0)
    assert [(r.mode, r.workers) for r in result.rows] == [
        ("sandboxed", 1),
        ("sandboxed", 2),
        ("passthrough", 1),
        ("passthrough", 2),
    ]
    assert all(_positive(r.median_per_s) and r.worker_cpu_ms >= 0 for r in result.rows)
    assert all(_positive(v) for v in result.ratios.values())
    assert "SUMMARY throughput: " in bench_throughput.report(result)
    bench_throughput.chart(result)


def test_idempotency() -> None:
    result = bench_idempotency.measure(rounds=1, calls=3, threads=2)
    assert {(r.workload, r.threads) for r in result.rows} == {
        (w, n) for w in bench_idempotency.WORKLOADS for n in (1, 2)
    }
    assert all(_positive(r.median_per_s) for r in result.rows)
    assert len(result.ratios) == 3
    assert all(_positive(v) for v in result.ratios.values())
    assert "SUMMARY idempotency: " in bench_idempotency.report(result)
    bench_idempotency.chart(result)


async def test_course_on_the_welcome_notebook() -> None:
    welcome = bench_course.NOTEBOOKS / "00-welcome.ipynb"
    # One process, one dev server: xdist's two workers (and two servers) for one notebook
    # would only add start-up time.
    result = await bench_course.measure([welcome], server_starts=1, slowest=3, workers="0")
    assert result.passed, result.failures
    assert result.failures == ""
    assert [row.notebook for row in result.notebooks] == [welcome.name]
    assert result.notebooks[0].cells > 0
    assert len(result.slowest) == 3
    assert result.slowest[0].seconds >= result.slowest[-1].seconds
    assert all(cell.notebook == welcome.name and cell.first_line for cell in result.slowest)
    assert len(result.server_start_s) == len(result.server_restart_s) == 1
    assert _positive(result.server_start_s[0])
    assert _positive(result.server_restart_s[0])
    assert "SUMMARY course: nbval total " in bench_course.report(result)
    bench_course.chart(result)
