"""Lesson 10's late retry on the time-skipping server: a key that expires first charges twice."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sagakit.course.lessons.expiry import LateRetryInput, charge_with_late_retry
from sagakit.testing import time_skipping_environment


@pytest.mark.parametrize(
    ("retention", "charges"),
    [
        (timedelta(hours=1), 2),  # the retry comes 2 hours later: the key is gone, a new charge
        (timedelta(hours=24), 1),  # the key outlives the step's 3-hour horizon: one charge
    ],
)
async def test_a_retry_after_the_key_expired_charges_again(
    tmp_path: Path, retention: timedelta, charges: int
) -> None:
    order = LateRetryInput("1", retry_after_s=2 * 3600, horizon_s=3 * 3600)
    async with time_skipping_environment() as env:
        assert env.supports_time_skipping
        n = await charge_with_late_retry(
            env.client, tmp_path, retention=retention, order=order, workflow_id="expiry-1"
        )
    assert n == charges
