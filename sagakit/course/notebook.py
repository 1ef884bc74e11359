"""Small display helpers for the lesson notebooks."""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["show_source"]


def show_source(obj: Any) -> Any:
    """Return the source of a sagakit function, class or module as a Markdown code block.

    Lessons use it to show the workflow code they are about to run, so the
    notebook never drifts from the module that really runs.
    """
    from IPython.display import Markdown

    return Markdown(f"```python\n{inspect.getsource(obj).rstrip()}\n```")  # type: ignore[no-untyped-call]
