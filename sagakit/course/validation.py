"""Check, before a workflow starts, that its arguments can travel to Temporal.

Temporal sends workflow and activity arguments as payloads, JSON by default.
A value its converter cannot encode (a ``Path``, an open file, a client, a
lambda) fails deep inside ``start_workflow`` with a bare ``TypeError: Object of
type PosixPath is not JSON serializable``, which names neither the argument nor
the fix. :func:`check_serializable` asks the same converter first and says both::

    check_serializable(TripSagaInput("t1"), what="the trip saga's input")   # fine
    check_serializable(Path("world.db"))  # NotSerializable: ... pass str(path) ...
"""

from __future__ import annotations

import dataclasses
from typing import Any

from temporalio.converter import DataConverter

from sagakit import ConfigurationError

__all__ = ["NotSerializable", "check_serializable"]


class NotSerializable(ConfigurationError):
    """A value cannot be encoded by Temporal's data converter."""


def check_serializable(
    value: Any,
    *,
    what: str = "the workflow argument",
    converter: DataConverter | None = None,
) -> None:
    """Raise :class:`NotSerializable` if ``converter`` cannot encode ``value``.

    Args:
        value: The argument to send (a dataclass, str, int, list, dict, ...).
        what: How the message names the value, e.g. ``"the input of BookTrip"``.
        converter: The client's data converter; by default Temporal's default one.

    Raises:
        NotSerializable: It cannot be encoded; the message names the field at fault
            (for a dataclass) and what to pass instead.
    """
    payload_converter = (converter or DataConverter.default).payload_converter
    try:
        payload_converter.to_payloads([value])
    except (TypeError, ValueError, RuntimeError) as err:
        field = _bad_field(value, payload_converter)
        where = f" (field {field!r})" if field else ""
        raise NotSerializable(
            f"{what.capitalize()}{where} cannot be sent to Temporal: {err}. Workflow and "
            "activity arguments travel as JSON: use dataclasses, str, int, float, bool, "
            "None, lists and dicts. Pass a path as str(path), a time as an ISO string, and "
            "never a client, connection, file or function (create those inside the "
            "activity instead)."
        ) from err


def _bad_field(value: Any, payload_converter: Any) -> str | None:
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        return None
    for item in dataclasses.fields(value):
        try:
            payload_converter.to_payloads([getattr(value, item.name)])
        except (TypeError, ValueError, RuntimeError):
            return item.name
    return None
