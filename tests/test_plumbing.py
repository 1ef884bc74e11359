"""How sagakit.course opens its SQLite files: through the one connect helper of the core.

``sagakit._sqlite.connect`` sets the one busy timeout (lesson 03 passes its own,
0, on purpose). Read from the source, so a hand-rolled connection fails here.
(No import cycles: tests/test_packaging.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

COURSE = Path(__file__).parents[1] / "sagakit" / "course"


def test_every_course_database_opens_through_the_one_connect_helper() -> None:
    direct = [
        f"{path.relative_to(COURSE.parent.parent)}:{node.lineno}"
        for path in sorted(COURSE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute)
        and node.attr == "connect"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sqlite3"
    ]
    assert direct == []
