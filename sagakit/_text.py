"""One plain-text table renderer, for the core's own reports and the course's ``Table``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

__all__ = ["Alignment", "text_table"]

Alignment = Literal["left", "right"]


def text_table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    align: Sequence[Alignment] | None = None,
    title: str | None = None,
) -> str:
    """Lay out already formatted cells as fixed-width text.

    The result is the title (if any), the header, a rule of dashes, then one line per row;
    columns are as wide as their widest cell and two spaces apart, lines end without spaces.

    Args:
        columns: the header of each column.
        rows: the cells, one sequence per row, as many as ``columns``.
        align: ``"left"`` or ``"right"`` per column; all left if ``None``.
        title: a first line above the header.
    """
    how = list(align) if align is not None else ["left"] * len(columns)
    widths = [
        max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(columns)
    ]

    def line(values: Sequence[str]) -> str:
        padded = (
            value.rjust(width) if side == "right" else value.ljust(width)
            for value, width, side in zip(values, widths, how, strict=True)
        )
        return "  ".join(padded).rstrip()

    lines = [title] if title else []
    lines.append(line(columns))
    lines.append("  ".join("-" * width for width in widths))
    lines.extend(line(row) for row in rows)
    return "\n".join(lines)
