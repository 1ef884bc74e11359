"""Connect to Temporal: a configured cluster if there is one, else the local dev server.

:func:`connect` is the one door the lessons use. If ``TEMPORAL_ADDRESS`` or a
Temporal environment-configuration profile (``TEMPORAL_PROFILE``, the
``temporal.toml`` file) names a server, it connects there, so the same notebook
runs against a shared cluster or Temporal Cloud. Otherwise it reuses the local
dev server, starting one if none is up.

When the server is gone, every door says so quickly and plainly: :func:`connect`
raises :class:`~sagakit.course.errors.ServerUnreachable` (naming the address and
the fix) within its ``timeout``, and :func:`server_errors_explained` does the same
for the calls made on a client that was connected earlier.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote

from temporalio.client import Client
from temporalio.envconfig import ClientConfigProfile
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from sagakit._errors import ConfigurationError
from sagakit._runtime import quiet_runtime
from sagakit.course._net import Answer, is_loopback, parse_address, probe_http2
from sagakit.course.devserver import DevServer, DevServerConfig, ui_url_of_local_server
from sagakit.course.errors import ServerUnreachable

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


_last: _Connection | None = None


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


def _start_command(host: str, port: int) -> str:
    if port == 7233:
        return "`make server-start` (or `python -m sagakit server start`)"
    return f"`python -m sagakit server start --port {port}`"


def _unreachable_message(address: str, source: str, why: str) -> str:
    """What went wrong at ``address`` and what to do, for :class:`ServerUnreachable`."""
    try:
        host, port = parse_address(address)
    except ConfigurationError:
        host, port = "", 0
    if source == "the local dev server" or (port and is_loopback(host)):
        start = (
            f"If it is the course's dev server, start it again: {_start_command(host, port)}. "
            if port
            else ""
        )
    else:
        start = ""
    unset = (
        ", or unset TEMPORAL_ADDRESS / TEMPORAL_PROFILE to use the local dev server"
        if source != "the local dev server"
        else ""
    )
    return (
        f"No Temporal server answered at {address} (from {source}): {why}. "
        f"Check the address and that the server is running. {start}"
        f"To use another server, set TEMPORAL_ADDRESS to its host:port{unset}."
    )


def _why(answer: Answer, timeout: float) -> str:
    return {
        "refused": "nothing listens there (connection refused)",
        "silent": f"it did not answer within {timeout:g}s",
        "other": "the program there does not speak gRPC, so it is not a Temporal server",
        "unresolvable": "the host name could not be resolved",
        "tls-error": "the TLS handshake failed",
        "http2": "it answered, but not as a Temporal server",
    }[answer]


def _uses_tls(tls: object) -> tuple[bool, str | None]:
    """Whether a ``tls`` connect option turns TLS on, and the server name it gives.

    A profile with an API key sets ``tls`` too. When it is left unset on a client,
    the probe speaks plain text, and a TLS server's refusal counts as an answer.
    """
    if isinstance(tls, TLSConfig):
        return True, tls.domain
    return tls is True, None


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
        raise ServerUnreachable(_unreachable_message(address, source, _why(answer, timeout)))
    try:
        return await asyncio.wait_for(
            Client.connect(**options, runtime=quiet_runtime()),
            timeout=max(deadline - loop.time(), 1.0),
        )
    except ValueError as err:
        raise ConfigurationError(
            f"The Temporal address {address!r} from {source} is not valid ({err}). "
            "Use host:port, for example 127.0.0.1:7233."
        ) from err
    except TimeoutError as err:
        raise ServerUnreachable(
            _unreachable_message(address, source, f"it did not answer within {timeout:g}s")
        ) from err
    except RuntimeError as err:
        raise ServerUnreachable(
            _unreachable_message(address, source, f"the connection failed ({err})")
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
    """
    global _last
    if timeout <= 0:
        raise ConfigurationError(f"timeout must be positive, got {timeout}.")
    profile = configured_profile()
    if profile is None:
        status = await DevServer(server).start()
        client = await _connect_checked(
            {"target_host": status.address},
            source="the local dev server",
            timeout=timeout,
            tls=False,
            server_name=None,
        )
        _last = _Connection(status.address, client.namespace, status.ui_url)
        return client

    options: dict[str, Any] = dict(profile.to_client_connect_config())
    address = str(options.get("target_host", ""))
    source = "TEMPORAL_ADDRESS" if os.environ.get("TEMPORAL_ADDRESS") else "your Temporal profile"
    tls, server_name = _uses_tls(options.get("tls"))
    client = await _connect_checked(
        options, source=source, timeout=timeout, tls=tls, server_name=server_name
    )
    _last = _Connection(address, client.namespace, _local_ui_url(address))
    return client


def _local_ui_url(address: str) -> str | None:
    """The Web UI of a dev server on this machine at ``address``; ``None`` for other hosts."""
    try:
        host, port = parse_address(address)
    except ConfigurationError:
        return None
    return ui_url_of_local_server(host, port) if is_loopback(host) else None


# -- errors on a client that was connected earlier ----------------------------------------------


def _client_address(client: Client) -> str:
    return str(client.service_client.config.target_host)


async def explain_unreachable(
    client: Client, error: BaseException | None = None, *, timeout: float = 2.0
) -> ServerUnreachable | None:
    """If ``client``'s server does not answer now, return the error that says so; else ``None``.

    Use it where an SDK call failed with an ``RPCError``, a ``RuntimeError`` or a
    bare ``CancelledError``: if the server is gone, raise what this returns (it
    names the address and the fix, and has ``error`` as its cause)::

        except RPCError as err:
            if (clear := await explain_unreachable(client, err)) is not None:
                raise clear from err
            raise

    It asks in plain asyncio, in at most about ``timeout`` seconds.
    """
    address = _client_address(client)
    try:
        host, port = parse_address(address)
    except ConfigurationError:
        return None
    tls, server_name = _uses_tls(client.service_client.config.tls)
    answer = await probe_http2(host, port, timeout=timeout, tls=tls, server_name=server_name)
    if answer not in ("refused", "silent", "unresolvable"):
        return None  # something answers there: not a server that went away
    unreachable = ServerUnreachable(_unreachable_message(address, _source(), _why(answer, timeout)))
    unreachable.__cause__ = error
    return unreachable


def _source() -> str:
    if os.environ.get("TEMPORAL_ADDRESS"):
        return "TEMPORAL_ADDRESS"
    if os.environ.get("TEMPORAL_PROFILE"):
        return "your Temporal profile"
    return "the local dev server"


def _means_unreachable(error: BaseException) -> bool:
    if isinstance(error, RPCError):
        return error.status in (
            RPCStatusCode.UNAVAILABLE,
            RPCStatusCode.DEADLINE_EXCEEDED,
            RPCStatusCode.CANCELLED,
            RPCStatusCode.UNKNOWN,
        )
    return isinstance(error, RuntimeError | OSError | TimeoutError | asyncio.CancelledError)


class ServerWatch:
    """The context manager of :func:`server_errors_explained`."""

    def __init__(self, client: Client, *, interval: float, probe_timeout: float) -> None:
        """Watch ``client``'s server every ``interval`` seconds."""
        self._client = client
        self._interval = interval
        self._probe_timeout = probe_timeout
        self._task: asyncio.Task[Any] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._found: ServerUnreachable | None = None
        self._cancelling = 0

    async def __aenter__(self) -> ServerWatch:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("server_errors_explained() must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            found = await explain_unreachable(self._client, timeout=self._probe_timeout)
            if found is not None:
                self._found = found
                assert self._task is not None
                self._task.cancel()
                return

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._task is not None
        assert self._watcher is not None
        if not self._watcher.done():
            self._watcher.cancel()
        if self._found is not None:
            # We cancelled the block: take that cancellation back and say why.
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                raise self._found from exc
            if exc is not None and _means_unreachable(exc):
                raise self._found from exc
            return
        if exc is None or not _means_unreachable(exc):
            return
        if isinstance(exc, asyncio.CancelledError) and self._task.cancelling() > self._cancelling:
            return  # a real cancellation from outside: let it through
        found = await explain_unreachable(self._client, exc, timeout=self._probe_timeout)
        if found is not None:
            raise found from exc


def server_errors_explained(
    client: Client, *, interval: float = 1.0, probe_timeout: float = 2.0
) -> ServerWatch:
    """Turn "the server went away" under ``client`` into a clear error, within seconds.

    While the ``async with`` block runs, the client's server is asked every
    ``interval`` seconds (in plain asyncio) whether it still answers. If it does
    not, the block is cancelled and :class:`~sagakit.course.errors.ServerUnreachable`
    is raised, naming the address and the fix; without this, an SDK call waits
    out its retries (10 s or more) and may end in a bare ``CancelledError``. An
    ``RPCError``, ``RuntimeError`` or stray ``CancelledError`` raised in the block
    while the server does not answer becomes ``ServerUnreachable`` as well. Other
    errors pass through unchanged::

        async with server_errors_explained(client):
            result = await client.execute_workflow(...)
    """
    return ServerWatch(client, interval=interval, probe_timeout=probe_timeout)


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
    (its recorded UI port), else the local dev server's default UI.
    """
    known = _last
    if client is not None:
        address = _client_address(client)
        known = _Connection(address, client.namespace, _local_ui_url(address))
    root = (
        base
        or os.environ.get("SAGAKIT_UI_URL")
        or (known.ui_url if known is not None else None)
        or DevServerConfig().ui_url
    ).rstrip("/")
    space = namespace or (known.namespace if known is not None else None) or "default"
    url = f"{root}/namespaces/{quote(space, safe='')}/workflows/{quote(workflow_id, safe='')}"
    return f"{url}/{run_id}/history" if run_id else url
