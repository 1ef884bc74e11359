"""Connect to Temporal: a configured cluster if there is one, else the local dev server.

:func:`connect` is the one door the lessons use. If ``TEMPORAL_ADDRESS`` or a
Temporal environment-configuration profile (``TEMPORAL_PROFILE``, the
``temporal.toml`` file) names a server, it connects there, so the same notebook
runs against a shared cluster or Temporal Cloud. Otherwise it reuses the local
dev server, starting one if none is up.

The namespace comes from :mod:`sagakit.course.learner`: the one the instructor
named (``TEMPORAL_NAMESPACE`` or the profile's), else ``learner-<name>`` when
``SAGAKIT_LEARNER`` is set (registered on first use if the server allows it),
else ``default``. Worker processes started by the course inherit it. In a
namespace shared by several learners, the client it returns scopes workflow IDs
and task queues to the learner (see :class:`~sagakit.course.learner.LearnerScope`).

When the server is gone, every door says so quickly and plainly: :func:`connect`
raises :class:`~sagakit.course.errors.ServerUnreachable` (naming the address and
the fix) within its ``timeout``, and :func:`server_errors_explained` does the same
for the calls made on a client that was connected earlier.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from temporalio.client import Client

from sagakit._errors import ConfigurationError
from sagakit._net import is_loopback, parse_address, probe_http2
from sagakit._runtime import quiet_runtime
from sagakit._server_watch import (
    ServerWatch,
    client_address,
    explain_unreachable,
    server_errors_explained,
    unreachable_message,
    uses_tls,
    why_unreachable,
)
from sagakit.course.devserver import DevServer, DevServerConfig, ui_url_of_local_server
from sagakit.course.errors import ServerUnreachable
from sagakit.course.learner import (
    LearnerScope,
    choose_namespace,
    configured_namespace,
    ensure_namespace,
    learner,
)
from sagakit.course.profile import configured_profile

__all__ = [
    "ServerWatch",
    "configured_profile",
    "connect",
    "explain_unreachable",
    "server_errors_explained",
    "web_ui_url",
]


@dataclass(frozen=True)
class _Connection:
    """What :func:`web_ui_url` needs to know about the last client :func:`connect` returned."""

    address: str
    namespace: str
    ui_url: str | None
    scope: LearnerScope | None = None


_last: _Connection | None = None


async def _connect_checked(
    options: dict[str, Any], *, source: str, timeout: float, tls: bool, server_name: str | None
) -> Client:
    """Probe the address in plain asyncio, then hand it to the native client."""
    address = str(options["target_host"])
    host, port = parse_address(address, source=source)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    answer = await probe_http2(host, port, timeout=timeout, tls=tls, server_name=server_name)
    if answer not in ("http2", "tls-error"):
        raise ServerUnreachable(
            unreachable_message(address, source, why_unreachable(answer, timeout))
        )
    try:
        # asyncio.timeout, not wait_for: on Python 3.11, wait_for drops a cancel that arrives
        # as the connection succeeds.
        async with asyncio.timeout(max(deadline - loop.time(), 1.0)):
            return await Client.connect(**options, runtime=quiet_runtime())
    except ValueError as err:
        raise ConfigurationError(
            f"The Temporal address {address!r} from {source} is not valid ({err}). "
            "Use host:port, for example 127.0.0.1:7233."
        ) from err
    except TimeoutError as err:
        raise ServerUnreachable(
            unreachable_message(address, source, f"it did not answer within {timeout:g}s")
        ) from err
    except RuntimeError as err:
        raise ServerUnreachable(
            unreachable_message(address, source, f"the connection failed ({err})")
        ) from err


async def connect(
    *,
    server: DevServerConfig | None = None,
    timeout: float = 5.0,
) -> Client:
    """Return a connected :class:`temporalio.client.Client`.

    Args:
        server: the local dev server to use when no cluster is configured.
        timeout: seconds to wait for the server to answer (starting a local dev
            server that is not running yet may take longer).

    Raises:
        ServerUnreachable: the server did not answer within ``timeout``; the message
            names the address and the fix.
        ConfigurationError: the configured address or profile is malformed.
        ServerError: the local dev server could not be started (see its subclasses).
        ConfigurationError: also when ``SAGAKIT_LEARNER`` is not a valid name, or the
            learner's namespace is missing and the server refuses to create it.
    """
    global _last
    if timeout <= 0:
        raise ConfigurationError(f"timeout must be positive, got {timeout}.")
    profile = configured_profile()
    choice = choose_namespace(configured_namespace(), learner())
    # In a namespace shared with other learners, the names written in the notebooks get the
    # learner's prefix; elsewhere the client is exactly the plain one.
    scope = LearnerScope(choice.learner) if choice.shared and choice.learner else None
    ui_url: str | None
    if profile is None:
        status = await DevServer(server).start()
        plain: dict[str, Any] = {"target_host": status.address, "namespace": choice.namespace}
        if scope is not None:
            plain["interceptors"] = [scope]
        client = await _connect_checked(
            plain,
            source="the local dev server",
            timeout=timeout,
            tls=False,
            server_name=None,
        )
        address, ui_url = status.address, status.ui_url
    else:
        options: dict[str, Any] = dict(profile.to_client_connect_config())
        options["namespace"] = choice.namespace
        if scope is not None:
            options["interceptors"] = [*options.get("interceptors", ()), scope]
        address = str(options.get("target_host", ""))
        source = (
            "TEMPORAL_ADDRESS" if os.environ.get("TEMPORAL_ADDRESS") else "your Temporal profile"
        )
        tls, server_name = uses_tls(options.get("tls"))
        client = await _connect_checked(
            options, source=source, timeout=timeout, tls=tls, server_name=server_name
        )
        ui_url = _local_ui_url(address)
    if not choice.given and choice.learner is not None:
        async with server_errors_explained(client):
            await ensure_namespace(client)
    _last = _Connection(address, client.namespace, ui_url, scope)
    return client


def _local_ui_url(address: str) -> str | None:
    """The Web UI of a dev server on this machine at ``address``; ``None`` for other hosts."""
    try:
        host, port = parse_address(address)
    except ConfigurationError:
        return None
    return ui_url_of_local_server(host, port) if is_loopback(host) else None


# -- errors on a client that was connected earlier ----------------------------------------------


# -- the Web UI -----------------------------------------------------------------------------------


def web_ui_url(
    workflow_id: str,
    run_id: str | None = None,
    *,
    namespace: str | None = None,
    base: str | None = None,
    client: Client | None = None,
) -> str:
    """Link to a workflow run in the Temporal Web UI.

    ``namespace`` defaults to ``client``'s namespace, else that of the client
    :func:`connect` returned last, else ``default``. ``base`` defaults to
    ``$SAGAKIT_UI_URL``, else the Web UI of the dev server that client talks to
    (its recorded UI port), else the local dev server's default UI. For a learner
    in a shared namespace (that client has a :class:`~sagakit.course.learner.LearnerScope`),
    the link goes to the learner's workflow: ``lesson-09-happy`` links to
    ``ada.lesson-09-happy`` (an ID that has the prefix already is kept).
    """
    known = _last
    if client is not None:
        address = client_address(client)
        known = _Connection(
            address, client.namespace, _local_ui_url(address), LearnerScope.of(client)
        )
    root = (
        base
        or os.environ.get("SAGAKIT_UI_URL")
        or (known.ui_url if known is not None else None)
        or DevServerConfig().ui_url
    ).rstrip("/")
    if known is not None and known.scope is not None:
        workflow_id = known.scope.scope(workflow_id)
    space = namespace or (known.namespace if known is not None else None) or "default"
    url = f"{root}/namespaces/{quote(space, safe='')}/workflows/{quote(workflow_id, safe='')}"
    return f"{url}/{run_id}/history" if run_id else url
