"""The trip playground of lesson 09: its runs on the real server, and what its Run button does."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from temporalio.client import Client

from sagakit import ConfigurationError, Fault, FaultPlan
from sagakit.course.logs import WORKER_LOGGERS
from sagakit.course.playground import TripChoice, TripPlayground, run_trip


def test_a_choice_becomes_a_fault_plan() -> None:
    assert TripChoice(step=None).plan() == FaultPlan()
    assert TripChoice(step="book_hotel", fault=Fault.OK).plan() == FaultPlan()
    first = TripChoice(step="book_flight", fault=Fault.HANG).plan()
    assert [first.decide("book_flight", n) for n in (1, 2)] == [Fault.HANG, Fault.OK]
    every = TripChoice(step="book_flight", fault="fail_before", every_attempt=True).plan()  # type: ignore[arg-type]
    assert {every.decide("book_flight", n) for n in (1, 2, 3, 9)} == {Fault.FAIL_BEFORE}
    assert every.decide("book_hotel", 1) is Fault.OK


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"step": "book_car"}, "not a step"),
        ({"fault": "explode"}, "not a fault"),
        ({"max_attempts": 0}, "no attempt"),
    ],
)
def test_a_wrong_choice_says_what_to_use(kwargs: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigurationError, match=words):
        TripChoice(**kwargs)  # type: ignore[arg-type]


async def test_without_keys_a_lost_reply_double_books_and_the_checker_sees_it(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    choice = TripChoice(step="book_flight", fault=Fault.FAIL_AFTER, idempotency_keys=False)
    run = await run_trip(
        client, choice, workdir=tmp_path, workflow_id=f"pg-{task_queue}", task_queue=task_queue
    )
    assert run.outcome == "booked"
    assert run.error is None
    assert run.bookings_left() == "hotel, flight ×2, excursion"
    assert not run.consistent
    assert "flight booked 2 times" in run.summary()
    assert run.attempts("book_flight") == 2


async def test_a_hung_step_times_out_is_retried_and_books_once(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    choice = TripChoice(step="book_flight", fault=Fault.HANG)
    run = await run_trip(
        client, choice, workdir=tmp_path, workflow_id=f"pg-{task_queue}", task_queue=task_queue
    )
    assert (run.outcome, run.bookings_left(), run.consistent) == (
        "booked",
        "hotel, flight, excursion",
        True,
    )
    assert run.attempts("book_flight") == 2


async def test_running_again_starts_from_a_fresh_world(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    choice = TripChoice(step=None)
    for _ in range(2):
        run = await run_trip(
            client, choice, workdir=tmp_path, workflow_id=f"pg-{task_queue}", task_queue=task_queue
        )
    assert [b.booking_id for b in run.bookings] == [1, 2, 3]
    assert run.consistent


async def test_the_run_button_runs_the_saga_and_shows_it(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    playground = TripPlayground(client, workdir=tmp_path, task_queue=task_queue, id_prefix="pg")
    playground.step.value = "book_excursion"
    playground.fault.value = Fault.FAIL_PERMANENT.value
    playground.parallel.value = True

    playground.button.click()  # what the browser's click does: call the button's handler
    assert playground.task is not None
    assert playground.button.disabled  # disabled while the saga runs
    run = await playground.task

    assert run is not None
    assert run is playground.last_run
    assert run.workflow_id == "pg-1"
    assert run.choice == TripChoice(step="book_excursion", parallel_compensation=True)
    assert (run.outcome, run.bookings_left(), run.consistent) == ("compensated", "none", True)
    assert not playground.button.disabled
    assert playground.status.value == "pg-1: compensated, world consistent"
    summary, figure, bookings = playground.output.outputs
    assert "✓ all invariants hold" in summary["text"]
    assert "injected permanent fault in book_excursion" in summary["text"]
    assert figure["data"]["image/png"]
    assert "cancelled" in bookings["data"]["text/plain"]


async def test_a_run_that_cannot_start_shows_why_in_the_output(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "a-file"
    not_a_folder.write_text("")
    playground = TripPlayground(client, workdir=not_a_folder, task_queue=task_queue)
    assert await playground.run(TripChoice(step=None)) is None
    (message,) = playground.output.outputs
    assert message["name"] == "stderr"
    assert "could not run" in playground.status.value
    assert not playground.button.disabled


async def test_a_click_outside_an_event_loop_explains_itself(
    client: Client, tmp_path: Path
) -> None:
    playground = TripPlayground(client, workdir=tmp_path)
    with pytest.raises(ConfigurationError, match=r"await playground.run"):
        await asyncio.to_thread(playground.click)


async def test_the_notebook_shows_a_short_plain_text_form(client: Client, tmp_path: Path) -> None:
    playground = TripPlayground(client, workdir=tmp_path, initial=TripChoice(step="book_hotel"))
    bundle = playground._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert data["text/plain"] == (
        "<TripPlayground: book_hotel: FAIL_PERMANENT on attempt 1; keys; undo in reverse; "
        "0 run(s) so far>"
    )
    assert "application/vnd.jupyter.widget-view+json" in data


async def test_overlapping_runs_stay_quiet_until_the_last_one_ends(
    client: Client, task_queue: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    levels = [logging.getLogger(name).level for name in WORKER_LOGGERS]
    quick = run_trip(
        client,
        TripChoice(step=None),
        workdir=tmp_path,
        workflow_id=f"quick-{task_queue}",
        task_queue=f"{task_queue}-quick",
    )
    hung = run_trip(  # its hung attempt gives up, and is reported, when its worker stops
        client,
        TripChoice(step="book_flight", fault=Fault.HANG),
        workdir=tmp_path,
        workflow_id=f"hung-{task_queue}",
        task_queue=f"{task_queue}-hung",
    )
    with caplog.at_level(logging.WARNING):
        runs = await asyncio.gather(quick, hung)
    assert [run.consistent for run in runs] == [True, True]
    assert [r.getMessage() for r in caplog.records if r.name.startswith("temporalio")] == []
    assert [logging.getLogger(name).level for name in WORKER_LOGGERS] == levels
