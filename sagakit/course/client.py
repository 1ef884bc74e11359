"""Connect to Temporal: a configured cluster if there is one, else the local dev server.

:func:`connect` is the one door the lessons use. If ``TEMPORAL_ADDRESS`` or a
Temporal environment-configuration profile (``TEMPORAL_PROFILE``, the
``temporal.toml`` file) names a server, it connects there, so the same notebook
runs against a shared cluster or Temporal Cloud. Otherwise it reuses the local
dev server, starting one if none is up.
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import quote

from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile

from sagakit import ConfigurationError
from sagakit._runtime import quiet_runtime
from sagakit.course.devserver import DevServer, DevServerConfig
from sagakit.course.errors import ServerUnreachable

__all__ = ["configured_profile", "connect", "web_ui_url"]


def configured_profile() -> ClientConfigProfile | None:
    """Return the Temporal envconfig profile that names a server, or ``None``.

    Reads ``TEMPORAL_ADDRESS``, ``TEMPORAL_PROFILE``, ``TEMPORAL_CONFIG_FILE``
    and the default config file through :mod:`temporalio.envconfig`.

    Raises:
        ConfigurationError: the configuration cannot be read (for example a
            ``TEMPORAL_PROFILE`` that the file does not define).
    """
    try:
        profile = ClientConfigProfile.load()
    except Exception as err:  # the bridge raises its own ConfigError type
        raise ConfigurationError(
            f"Temporal's client configuration could not be read: {err}. Check "
            "TEMPORAL_PROFILE and TEMPORAL_CONFIG_FILE, or unset them to use the "
            "local dev server."
        ) from err
    return profile if profile.address else None


async def connect(
    *,
    server: DevServerConfig | None = None,
    timeout: float = 10.0,
) -> Client:
    """Return a connected :class:`temporalio.client.Client`.

    Args:
        server: the local dev server to use when no cluster is configured.
        timeout: seconds to wait for a configured cluster to answer.

    Raises:
        ServerUnreachable: a configured address did not answer within ``timeout``.
        ConfigurationError: the configured address or profile is malformed.
        ServerError: the local dev server could not be started (see its subclasses).
    """
    profile = configured_profile()
    if profile is None:
        status = await DevServer(server).start()
        return await Client.connect(status.address, runtime=quiet_runtime())

    options = profile.to_client_connect_config()
    address = options.get("target_host", "")
    source = "TEMPORAL_ADDRESS" if os.environ.get("TEMPORAL_ADDRESS") else "your Temporal profile"
    try:
        return await asyncio.wait_for(
            Client.connect(**options, runtime=quiet_runtime()), timeout=timeout
        )
    except ValueError as err:
        raise ConfigurationError(
            f"The Temporal address {address!r} from {source} is not valid ({err}). "
            "Use host:port, for example 127.0.0.1:7233."
        ) from err
    except (RuntimeError, TimeoutError) as err:
        raise ServerUnreachable(
            f"No Temporal server answered at {address} (from {source}) within "
            f"{timeout:g}s. Check the address and that the server is running, or unset "
            "TEMPORAL_ADDRESS / TEMPORAL_PROFILE to use the local dev server."
        ) from err


def web_ui_url(
    workflow_id: str,
    run_id: str | None = None,
    *,
    namespace: str = "default",
    base: str | None = None,
) -> str:
    """Link to a workflow run in the Temporal Web UI.

    ``base`` defaults to ``$SAGAKIT_UI_URL``, else the local dev server's UI.
    """
    root = (base or os.environ.get("SAGAKIT_UI_URL") or DevServerConfig().ui_url).rstrip("/")
    url = f"{root}/namespaces/{quote(namespace)}/workflows/{quote(workflow_id, safe='')}"
    return f"{url}/{run_id}/history" if run_id else url
