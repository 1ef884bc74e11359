"""Table: the same rows as escaped HTML and as aligned, deterministic text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from IPython.lib.pretty import pretty

from sagakit import ConfigurationError, SagakitError
from sagakit.course.display import Table
from sagakit.course.services.world import World


@dataclass(frozen=True)
class Booking:
    step: str
    attempts: int
    note: str | None = None


def test_text_aligns_numbers_right_and_text_left() -> None:
    table = Table(["step", "attempts"], [["reserve_car", 1], ["charge_card", 12]], title="Steps")
    assert table.text() == (
        "Steps\n"
        "step         attempts\n"
        "-----------  --------\n"
        "reserve_car         1\n"
        "charge_card        12"
    )
    assert str(table) == repr(table) == pretty(table) == table.text()  # type: ignore[no-untyped-call]


def test_text_has_no_trailing_spaces_and_empty_cells_for_none() -> None:
    table = Table(["a", "b"], [["x", None], [None, "y"]])
    lines = table.text().splitlines()
    assert lines == ["a  b", "-  -", "x", "   y"]
    assert all(line == line.rstrip() for line in lines)


def test_long_and_multiline_cells_stay_on_one_line_of_bounded_width() -> None:
    table = Table(["failure"], [["line one\nline two"], ["x" * 100]], max_width=20)
    lines = table.text().splitlines()
    assert lines[2] == "line one line two"
    assert lines[3] == "x" * 19 + "…"
    assert lines[1] == "-" * 20
    assert max(len(line) for line in lines) == 20


def test_floats_are_formatted_compactly_and_explicit_alignment_wins() -> None:
    table = Table(["x", "y"], [[0.1 + 0.2, "r"]], align=["left", "right"])
    assert table.text().splitlines() == ["x    y", "---  -", "0.3  r"]


def test_html_is_escaped_and_has_caption_header_and_rows() -> None:
    table = Table(["<name>", "n"], [["<script>alert('x')</script> & co", 3]], title="A < B")
    html = table._repr_html_()
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; co" in html
    assert "<caption>A &lt; B</caption>" in html
    assert '<th style="text-align: left">&lt;name&gt;</th>' in html
    assert '<td style="text-align: right">3</td>' in html
    assert html.count("<tr>") == 2


def test_rows_are_copied_so_the_table_does_not_change() -> None:
    rows = [["a", 1]]
    table = Table(["k", "v"], rows)
    rows[0][1] = 99
    rows.append(["b", 2])
    assert table.rows == (("a", 1),)
    assert isinstance(table.columns, tuple)


def test_from_records_with_dataclasses() -> None:
    table = Table.from_records([Booking("reserve_car", 1), Booking("charge_card", 3, "retried")])
    assert table.columns == ("step", "attempts", "note")
    assert table.rows == (("reserve_car", 1, None), ("charge_card", 3, "retried"))


def test_from_records_with_dicts_selected_and_renamed_columns() -> None:
    records = [{"step": "a", "ms": 5, "extra": "x"}, {"step": "b"}]
    assert Table.from_records(records, ["ms", "step"]).rows == ((5, "a"), (None, "b"))
    renamed = Table.from_records(records, {"step": "Step", "ms": "Time (ms)"}, title="T")
    assert renamed.columns == ("Step", "Time (ms)")
    assert renamed.title == "T"
    assert Table.from_records([], ["a", "b"]).text() == "a  b\n-  -"


def test_from_records_rejects_other_objects() -> None:
    with pytest.raises(ConfigurationError, match="dicts or dataclass instances"):
        Table.from_records([("a", 1)])


def test_row_of_the_wrong_length_is_a_sagakit_error() -> None:
    with pytest.raises(SagakitError, match="Row 2 of the table has 1 cells but there are 2"):
        Table(["a", "b"], [[1, 2], [3]])


def test_bad_alignment_and_width_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="align"):
        Table(["a"], [[1]], align=["middle"])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="max_width"):
        Table(["a"], [[1]], max_width=1)


def test_the_ledger_is_drawn_by_the_same_table(tmp_path: Path) -> None:
    world = World(tmp_path / "world.db")
    world.trips.book_hotel("t1", "<ada>", idempotency_key="k1")
    page = world.ledger._repr_html_()
    assert page.startswith("<table>\n<thead><tr>")
    assert '<th style="text-align: right">#</th>' in page
    assert '<td style="text-align: right">+1</td>' in page  # amounts line up on the right
    assert "&lt;ada&gt;" in page
    assert "<ada>" not in page
    assert page.count("<tr>") == 1 + len(world.ledger)  # the header and one row per entry
