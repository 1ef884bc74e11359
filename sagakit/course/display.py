"""A tiny table for notebooks: HTML in Jupyter, aligned plain text everywhere else.

Lessons show every table through :class:`Table`, so the course needs no pandas.
A notebook renders it with :meth:`Table._repr_html_`; ``print()``, the Python
REPL and nbval's ``text/plain`` comparison see the same rows as a fixed-width
text table, laid out deterministically::

    >>> print(Table(["step", "attempts"], [["reserve_car", 1], ["charge_card", 3]]))
    step         attempts
    -----------  --------
    reserve_car         1
    charge_card         3

Numbers are right-aligned, everything else is left-aligned, and ``None`` is an
empty cell.
"""

from __future__ import annotations

import dataclasses
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sagakit import ConfigurationError
from sagakit._text import text_table

__all__ = ["Table"]

Alignment = Literal["left", "right"]


@dataclass(frozen=True, repr=False)
class Table:
    """Rows of values under named columns, shown as HTML in Jupyter and as text elsewhere.

    The rows are copied into tuples, so a table does not change when the lists
    it was built from do.
    """

    columns: Sequence[str]
    """Column headers, left to right."""

    rows: Sequence[Sequence[object]]
    """One sequence of cell values per row, as many cells as there are columns."""

    title: str | None = None
    """A caption shown above the table, or ``None`` for none."""

    max_width: int = 60
    """In the text form, longer cells are cut to this many characters and end in "…"."""

    align: Sequence[Alignment] | None = field(default=None)
    """``"left"`` or ``"right"`` per column; by default numbers go right, the rest left."""

    def __post_init__(self) -> None:
        columns = tuple(str(column) for column in self.columns)
        rows = tuple(tuple(row) for row in self.rows)
        for number, row in enumerate(rows, start=1):
            if len(row) != len(columns):
                raise ConfigurationError(
                    f"Row {number} of the table has {len(row)} cells but there are "
                    f"{len(columns)} columns {list(columns)}. Give every row one value per "
                    "column (use None for an empty cell)."
                )
        if self.max_width < 2:
            raise ConfigurationError(
                f"Table max_width must be at least 2, not {self.max_width}. It is the widest "
                "a text cell may be before it is cut."
            )
        align = tuple(self.align) if self.align is not None else _default_alignment(rows, columns)
        if len(align) != len(columns) or any(a not in ("left", "right") for a in align):
            raise ConfigurationError(
                f"Table align must give 'left' or 'right' for each of the {len(columns)} "
                f"columns, not {list(align)}."
            )
        object.__setattr__(self, "columns", columns)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "align", align)

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any] | Any],
        columns: Sequence[str] | Mapping[str, str] | None = None,
        *,
        title: str | None = None,
    ) -> Table:
        """Build a table from dicts or dataclass instances, one record per row.

        Args:
            records: mappings or dataclass instances. A key or field that a
                record lacks becomes an empty cell.
            columns: the keys or field names to show, in order; a mapping from
                key to header also renames them. By default, the keys of the
                first record (the fields of the first dataclass) are shown.
            title: a caption for the table.

        Raises:
            ConfigurationError: a record is neither a mapping nor a dataclass
                instance.
        """
        dicts = [_as_dict(record) for record in records]
        if columns is None:
            keys = list(dicts[0]) if dicts else []
            headers = keys
        elif isinstance(columns, Mapping):
            keys = list(columns)
            headers = [columns[key] for key in keys]
        else:
            keys = list(columns)
            headers = keys
        rows = [[record.get(key) for key in keys] for record in dicts]
        return cls(headers, rows, title=title)

    def text(self) -> str:
        """The table as fixed-width text: title, header, a rule, then one line per row."""
        assert self.align is not None  # set in __post_init__
        cells = [[_cut(_format(value), self.max_width) for value in row] for row in self.rows]
        return text_table(self.columns, cells, align=self.align, title=self.title)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return self.text()

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        """Show the text table as IPython's ``text/plain`` output."""
        printer.text(self.text())

    def _repr_html_(self) -> str:
        """Render the table as escaped HTML for Jupyter."""
        aligns = self.align or ()

        def cell(tag: str, value: object, how: Alignment) -> str:
            style = ' style="text-align: right"' if how == "right" else ' style="text-align: left"'
            return f"<{tag}{style}>{html.escape(_format(value, one_line=False))}</{tag}>"

        parts = ["<table>"]
        if self.title:
            parts.append(f"<caption>{html.escape(self.title)}</caption>")
        header = "".join(cell("th", c, a) for c, a in zip(self.columns, aligns, strict=True))
        parts.append(f"<thead><tr>{header}</tr></thead>")
        parts.append("<tbody>")
        for row in self.rows:
            body = "".join(cell("td", v, a) for v, a in zip(row, aligns, strict=True))
            parts.append(f"<tr>{body}</tr>")
        parts.append("</tbody>")
        parts.append("</table>")
        return "\n".join(parts)


def _as_dict(record: Mapping[str, Any] | Any) -> Mapping[str, Any]:
    if isinstance(record, Mapping):
        return record
    if dataclasses.is_dataclass(record) and not isinstance(record, type):
        return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    raise ConfigurationError(
        f"Table.from_records got a {type(record).__name__}; it takes dicts or dataclass "
        "instances. Convert each record, for example with vars(record) or a dict literal."
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _default_alignment(
    rows: Sequence[Sequence[object]], columns: Sequence[str]
) -> tuple[Alignment, ...]:
    aligns: list[Alignment] = []
    for i in range(len(columns)):
        values = [row[i] for row in rows if row[i] is not None]
        aligns.append("right" if values and all(_is_number(v) for v in values) else "left")
    return tuple(aligns)


def _format(value: object, *, one_line: bool = True) -> str:
    if value is None:
        return ""
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return re.sub(r"\s*[\r\n]+\s*", " ", text) if one_line else text


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
