"""Smoke test of benchmarks/bench_class.py: one learner, one cell, against the session's server.

Speed is never asserted; ``python benchmarks/bench_class.py`` reports it.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import _common, bench_class  # noqa: E402


@pytest.fixture(autouse=True)
def charts_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The smoke run's chart goes to a temporary folder, not benchmarks/results."""
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    return tmp_path


@pytest.mark.timeout(300)
def test_one_learner_runs_a_lesson_cell_and_the_server_cpu_is_read(charts_in_tmp: Path) -> None:
    address = os.environ.get("TEMPORAL_ADDRESS", "")
    if os.environ.get("SAGAKIT_TEST_SERVER") != "own" or not address:
        pytest.skip("needs the test session's own dev server")
    server = _common.server_pid(int(address.rpartition(":")[2]))
    assert server is not None
    result = bench_class.measure(
        address=address, server=server, learners=[1], cells=2, pause=0.1, processes=1
    )
    (row,) = result.rows
    assert (row.learners, row.cells, row.p95_ratio) == (1, 2, 1.0)
    assert 0 < row.median_s <= row.p95_s < 60
    assert row.server_ms_per_cell > 0  # the server did work for the learner's cells
    assert math.isfinite(result.learners_per_server_core)
    assert result.learners_before_p95_doubles == 1
    text = bench_class.report(result)
    assert text.splitlines()[-1].startswith("SUMMARY class: p95 cell time / 1 learner = 1: 1.00")
    assert bench_class.chart(result) == charts_in_tmp / "class.png"
