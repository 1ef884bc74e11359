"""sagakit: sagas, compensations and idempotency for Temporal, and the course that teaches them.

The public API is re-exported here; submodules hold one concept each.
"""

from sagakit.client import configured_profile, connect, web_ui_url
from sagakit.devserver import (
    DevServer,
    DevServerConfig,
    ServerStatus,
    find_temporal_binary,
    find_test_server_binary,
)
from sagakit.errors import (
    ConfigurationError,
    PortInUseError,
    SagakitError,
    ServerError,
    ServerStartError,
    ServerUnreachable,
    TemporalBinaryNotFound,
)
from sagakit.notebook import show_source
from sagakit.runtime import quiet_runtime
from sagakit.worker import running_worker

__all__ = [
    "ConfigurationError",
    "DevServer",
    "DevServerConfig",
    "PortInUseError",
    "SagakitError",
    "ServerError",
    "ServerStartError",
    "ServerStatus",
    "ServerUnreachable",
    "TemporalBinaryNotFound",
    "configured_profile",
    "connect",
    "find_temporal_binary",
    "find_test_server_binary",
    "quiet_runtime",
    "running_worker",
    "show_source",
    "web_ui_url",
]
