"""sagakit: sagas, compensations and idempotency for Temporal, and the course that teaches them.

The public API is re-exported here; submodules hold one concept each.
"""

from sagakit.client import configured_profile, connect, web_ui_url
from sagakit.devserver import (
    DevServer,
    DevServerConfig,
    PortState,
    ServerStatus,
    default_data_dir,
    find_temporal_binary,
    find_test_server_binary,
    probe_port,
)
from sagakit.doctor import DoctorCheck, run_doctor
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
from sagakit.testing import time_skipping_environment
from sagakit.worker import running_worker

__all__ = [
    "ConfigurationError",
    "DevServer",
    "DevServerConfig",
    "DoctorCheck",
    "PortInUseError",
    "PortState",
    "SagakitError",
    "ServerError",
    "ServerStartError",
    "ServerStatus",
    "ServerUnreachable",
    "TemporalBinaryNotFound",
    "configured_profile",
    "connect",
    "default_data_dir",
    "find_temporal_binary",
    "find_test_server_binary",
    "probe_port",
    "quiet_runtime",
    "run_doctor",
    "running_worker",
    "show_source",
    "time_skipping_environment",
    "web_ui_url",
]
