"""Errors of the course's own tooling: the dev server, ports and connections.

They belong to the one sagakit error tree (see ``sagakit._errors``): every class
here derives from :class:`sagakit.SagakitError`.
"""

from __future__ import annotations

from sagakit._errors import (
    ServerError,
    ServerStartError,
    ServerUnreachable,
    TemporalBinaryNotFound,
)

__all__ = [
    "PortInUseError",
    "ServerError",
    "ServerStartError",
    "ServerUnreachable",
    "TemporalBinaryNotFound",
]


class PortInUseError(ServerError):
    """A port sagakit needs is held by a program that is not a Temporal server."""
