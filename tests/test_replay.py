"""Replay reports and log quieting (replays against the real server are in the lesson tests)."""

from __future__ import annotations

import logging

from temporalio.workflow import NondeterminismError

from sagakit.course.logs import WORKER_LOGGERS, quiet_expected_failures
from sagakit.course.replay import ReplayReport, core_message


def test_core_message_extracts_the_inner_message() -> None:
    error = NondeterminismError(
        "Workflow activation completion failed: Failure { failure: Some(Failure { message: "
        '"[TMPRL1100] Nondeterminism error: a \\"quoted\\" word", source: "" }) }'
    )
    assert core_message(error) == '[TMPRL1100] Nondeterminism error: a "quoted" word'


def test_core_message_falls_back_to_the_first_line() -> None:
    assert core_message(RuntimeError("first\nsecond")) == "first"
    assert core_message(RuntimeError()) == "RuntimeError"


def test_a_report_reads_as_one_line() -> None:
    assert str(ReplayReport("wf", ok=True)) == "✓ wf: replayed cleanly"
    failed = ReplayReport("wf", ok=False, error_type="NondeterminismError", message="boom")
    assert str(failed) == "✗ wf: NondeterminismError: boom"


def test_quiet_expected_failures_restores_the_levels() -> None:
    loggers = [logging.getLogger(name) for name in WORKER_LOGGERS]
    before = [logger.level for logger in loggers]
    loggers[0].setLevel(logging.INFO)
    try:
        with quiet_expected_failures():
            assert all(not logger.isEnabledFor(logging.WARNING) for logger in loggers)
            assert all(logger.isEnabledFor(logging.ERROR) for logger in loggers)
        assert loggers[0].level == logging.INFO
        assert [logger.level for logger in loggers[1:]] == before[1:]
    finally:
        loggers[0].setLevel(before[0])
