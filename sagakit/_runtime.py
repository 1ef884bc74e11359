"""A Temporal runtime whose native core keeps quiet.

The SDK's Rust core writes WARN lines straight to the process's stdout. In a
notebook those lines land in cell outputs under one runner and not another, so
course clients use a runtime that only reports errors.
"""

from __future__ import annotations

import functools

from temporalio.runtime import LoggingConfig, Runtime, TelemetryConfig, TelemetryFilter

__all__ = ["quiet_runtime"]


@functools.cache
def quiet_runtime() -> Runtime:
    """Return the shared runtime (created once) that logs only errors from the core."""
    return Runtime(
        telemetry=TelemetryConfig(
            logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
        )
    )
