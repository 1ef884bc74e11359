"""Lesson 00a: the gather workflow on the real server, shield-and-keep-waiting, the exercise check."""

from __future__ import annotations

import ast
import asyncio
import inspect
import json
from collections.abc import Sequence
from typing import Any

import pytest
from temporalio.client import Client

from sagakit import running_worker
from sagakit.course.lessons.primer import (
    PRICES,
    QUOTE_TIMEOUT,
    SUPPLIERS,
    BestQuoteWorkflow,
    QuoteRequest,
    activity_seconds,
    ask_for_quote,
    check_fetch_quotes,
    grade_fetch_quotes,
    supplier_quote,
    wait_to_the_end,
)
from sagakit.course.lessons.scaling import max_in_flight
from tests.helpers import ROOT

NOTEBOOK = ROOT / "notebooks" / "solutions" / "00a-asyncio-primer.ipynb"
"""The solved edition: its exercise cell holds the solution, its metadata the starter."""


async def test_the_workflow_gathers_every_quote_at_once_and_keeps_the_cheapest(
    client: Client, task_queue: str
) -> None:
    request = QuoteRequest(item="a kettle", suppliers=("north", "east", "west"), seconds=0.3)
    async with running_worker(
        client, task_queue=task_queue, workflows=[BestQuoteWorkflow], activities=[ask_for_quote]
    ):
        handle = await client.start_workflow(
            BestQuoteWorkflow.run, request, id=f"primer-{task_queue}", task_queue=task_queue
        )
        best = await handle.result()
    assert (best.supplier, best.item, best.price) == ("east", "a kettle", PRICES["east"])
    history = await handle.fetch_history()
    assert max_in_flight(history) == 3, "all three activities must be in flight together"
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled == ["ask_for_quote"] * 3
    assert 0.3 <= activity_seconds(history) < 3 * 0.3 + 5  # at least one wait, on any machine


async def _slow(log: list[str], seconds: float = 0.2) -> str:
    await asyncio.sleep(seconds)
    log.append("work finished")
    return "done"


async def test_wait_to_the_end_returns_the_result_when_nobody_cancels() -> None:
    log: list[str] = []
    assert await wait_to_the_end(asyncio.create_task(_slow(log, 0.01))) == "done"


async def test_a_cancelled_waiter_waits_for_the_work_then_raises_the_cancel() -> None:
    log: list[str] = []
    work = asyncio.create_task(_slow(log))
    waiter = asyncio.create_task(wait_to_the_end(work))
    await asyncio.sleep(0.05)
    waiter.cancel()
    await asyncio.sleep(0.05)
    waiter.cancel()  # a second cancel is noted too, and does not cut the work short
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert log == ["work finished"], "the cancel was raised before the work had finished"
    assert work.result() == "done"


async def test_a_plain_shield_stops_the_waiter_at_once() -> None:
    """The contrast the lesson draws: shield alone protects the work, not the waiting."""
    log: list[str] = []
    work = asyncio.create_task(_slow(log))
    waiter = asyncio.ensure_future(asyncio.shield(work))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert log == []  # the waiter gave up while the work still ran
    assert await work == "done"


async def test_wait_to_the_end_gives_up_when_the_work_itself_is_cancelled() -> None:
    log: list[str] = []
    work = asyncio.create_task(_slow(log))
    waiter = asyncio.create_task(wait_to_the_end(work))
    await asyncio.sleep(0.05)
    work.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert log == []


# --- The exercise ------------------------------------------------------------------------------


async def _starter(suppliers: Sequence[str]) -> list[int | None] | None:
    return None


async def _solution(suppliers: Sequence[str]) -> list[int | None]:
    async def one(supplier: str) -> int | None:
        try:
            return await asyncio.wait_for(supplier_quote(supplier), timeout=QUOTE_TIMEOUT)
        except TimeoutError:
            return None

    return list(await asyncio.gather(*(one(s) for s in suppliers)))


async def _one_by_one(suppliers: Sequence[str]) -> list[int | None]:
    quotes: list[int | None] = []
    for supplier in suppliers:
        try:
            quotes.append(await asyncio.wait_for(supplier_quote(supplier), timeout=QUOTE_TIMEOUT))
        except TimeoutError:
            quotes.append(None)
    return quotes


async def _no_timeout(suppliers: Sequence[str]) -> list[int]:
    return list(await asyncio.gather(*(supplier_quote(s) for s in suppliers)))


async def _timeout_escapes(suppliers: Sequence[str]) -> list[int]:
    calls = (asyncio.wait_for(supplier_quote(s), timeout=QUOTE_TIMEOUT) for s in suppliers)
    return list(await asyncio.gather(*calls))


async def _wrong_order(suppliers: Sequence[str]) -> list[int | None]:
    return list(reversed(await _solution(suppliers)))


def _not_async(suppliers: Sequence[str]) -> list[int]:
    return [PRICES[s] for s in suppliers]


async def test_the_starter_is_not_done_yet() -> None:
    lines = await grade_fetch_quotes(_starter)
    assert len(lines) == 1
    assert lines[0].startswith("○ Not done yet:")
    assert "asyncio.gather" in lines[0]


async def test_the_solution_passes() -> None:
    lines = await grade_fetch_quotes(_solution)
    assert len(lines) == 1
    assert lines[0].startswith("✓ ")


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (_one_by_one, "one after another"),
        (_no_timeout, "It waited for south"),
        (_timeout_escapes, "let a TimeoutError out"),
        (_wrong_order, "in the order asked"),
        (_not_async, "async def"),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
async def test_wrong_answers_say_what_is_wrong(answer: Any, says: str) -> None:
    lines = await grade_fetch_quotes(answer)
    assert lines
    assert all(line.startswith("✗ ") for line in lines), lines
    assert says in " ".join(lines)


async def test_the_check_prints_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    await check_fetch_quotes(_starter)
    captured = capsys.readouterr()
    assert captured.out.startswith("○ Not done yet:")
    assert captured.err == ""


def _exercise_cells() -> tuple[dict[str, Any], dict[str, Any]]:
    cells = json.loads(NOTEBOOK.read_text())["cells"]
    tagged = [c for c in cells if "exercise" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, "the lesson has one exercise cell"
    position = cells.index(tagged[0])
    check = cells[position + 1]
    assert "exercise-check" in check["metadata"].get("tags", []), "the check follows the exercise"
    return tagged[0], check


async def _run_cell(source: str, namespace: dict[str, Any]) -> None:
    """Run one notebook cell's source (top-level await allowed) in ``namespace``."""
    code = compile(source, "<cell>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(code, namespace)  # the lesson's own cell
    if inspect.iscoroutine(result):
        await result


@pytest.mark.parametrize(
    ("edition", "expected"), [("starter", "○ Not done yet:"), ("solved", "✓ ")]
)
async def test_the_notebook_cells_give_the_right_verdict(
    edition: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    exercise, check = _exercise_cells()
    source = exercise["metadata"]["sagakit"]["starter"] if edition == "starter" else None
    source = source or "".join(exercise["source"])
    assert ("# TODO" in source) == (edition == "starter")
    namespace: dict[str, Any] = {"asyncio": asyncio}
    await _run_cell(source, namespace)
    capsys.readouterr()
    await _run_cell("".join(check["source"]), namespace)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    assert out[0].startswith(expected), out
    assert namespace["SUPPLIERS"] == SUPPLIERS
