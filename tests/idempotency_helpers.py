"""Test doubles shared by the idempotency-store tests: a hand-moved clock, an effect log."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

WORKER_SCRIPT = Path(__file__).with_name("idempotency_worker_proc.py")
START = datetime(2030, 1, 1, tzinfo=UTC)


@dataclass
class FakeClock:
    """A clock the test moves by hand."""

    now: datetime = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


class Effects:
    """The side effects a test observed (thread-safe), owned by the test."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[Any] = []

    def record(self, what: Any) -> int:
        with self._lock:
            self.calls.append(what)
            return len(self.calls)
