"""The course's own furniture: what the lessons use, not what you take home.

Dev server and connection (:mod:`~sagakit.course.client`,
:mod:`~sagakit.course.devserver`, :mod:`~sagakit.course.doctor`), notebook display
(:mod:`~sagakit.course.display`, :mod:`~sagakit.course.history_views`,
:mod:`~sagakit.course.notebook`), the playground and quiz, the teaching models
(replicated store, event log, event bus), the simulated services, each lesson's
workflows (:mod:`~sagakit.course.lessons`) and the exercises.

This file imports nothing: lesson workflow modules live below it, and the
workflow sandbox re-executes every package ``__init__`` on their path for each
workflow run. The few names used in almost every lesson are loaded on first use.
"""

import importlib as _importlib
import typing as _typing

if _typing.TYPE_CHECKING:
    from sagakit.course.client import connect, web_ui_url
    from sagakit.course.display import Table
    from sagakit.course.notebook import show_source

_EXPORTS = {
    "Table": "sagakit.course.display",
    "connect": "sagakit.course.client",
    "show_source": "sagakit.course.notebook",
    "web_ui_url": "sagakit.course.client",
}

__all__ = ["Table", "connect", "show_source", "web_ui_url"]


def __getattr__(name: str) -> _typing.Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'sagakit.course' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
