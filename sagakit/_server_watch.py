"""Say "the server went away" quickly and plainly, naming the address and the fix.

When a Temporal server stops, an SDK call on a client connected earlier waits out
its retries (10 s or more) and may end in a bare ``CancelledError``, and a worker
keeps polling. :class:`ServerWatch` asks the server, in plain asyncio, every
second whether it still answers; when it does not, it cancels the block it
watches and raises :class:`~sagakit.ServerUnreachable` instead. The core's
:func:`~sagakit.running_worker` and the course's entry points use it.
"""

from __future__ import annotations

import asyncio
import os
from types import TracebackType
from typing import Any

from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode, TLSConfig

from sagakit._errors import ConfigurationError, ServerUnreachable
from sagakit._net import Answer, is_loopback, parse_address, probe_http2, start_command

__all__ = [
    "ServerWatch",
    "client_address",
    "explain_unreachable",
    "server_errors_explained",
    "unreachable_message",
    "uses_tls",
    "why_unreachable",
]


def unreachable_message(address: str, source: str, why: str) -> str:
    """What went wrong at ``address`` and what to do, for :class:`ServerUnreachable`."""
    try:
        host, port = parse_address(address)
    except ConfigurationError:
        host, port = "", 0
    if source == "the local dev server" or (port and is_loopback(host)):
        start = (
            f"If it is the course's dev server, start it again: {start_command(port)}. "
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


def why_unreachable(answer: Answer, timeout: float) -> str:
    return {
        "refused": "nothing listens there (connection refused)",
        "silent": f"it did not answer within {timeout:g}s",
        "other": "the program there does not speak gRPC, so it is not a Temporal server",
        "unresolvable": "the host name could not be resolved",
        "tls-error": "the TLS handshake failed",
        "http2": "it answered, but not as a Temporal server",
    }[answer]


def uses_tls(tls: object) -> tuple[bool, str | None]:
    """Whether a ``tls`` connect option turns TLS on, and the server name it gives.

    A profile with an API key sets ``tls`` too. When it is left unset on a client,
    the probe speaks plain text, and a TLS server's refusal counts as an answer.
    """
    if isinstance(tls, TLSConfig):
        return True, tls.domain
    return tls is True, None


def client_address(client: Client) -> str:
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
    asked = await _ask(client, timeout)
    if asked is None or asked[1] not in _GONE:
        return None  # something answers there: not a server that went away
    return _unreachable(*asked, timeout, error)


_GONE = ("refused", "silent", "unresolvable")
"""The probe's answers that mean no server is there (any other answer: something is)."""


async def _ask(client: Client, timeout: float) -> tuple[str, Answer] | None:
    """Probe ``client``'s server: its address and the answer (None: the address is not host:port)."""
    address = client_address(client)
    try:
        host, port = parse_address(address)
    except ConfigurationError:
        return None
    tls, server_name = uses_tls(client.service_client.config.tls)
    answer = await probe_http2(host, port, timeout=timeout, tls=tls, server_name=server_name)
    return address, answer


def _unreachable(
    address: str, answer: Answer, timeout: float, error: BaseException | None
) -> ServerUnreachable:
    unreachable = ServerUnreachable(
        unreachable_message(address, _source(), why_unreachable(answer, timeout))
    )
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
        self._stopped = False

    async def __aenter__(self) -> ServerWatch:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("server_errors_explained() must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()
        self._watcher = asyncio.create_task(self._watch())
        return self

    async def _watch(self) -> None:
        # A stopped server refuses at once; a busy one on a loaded machine may stay silent
        # past the probe's timeout, so silence counts only when it comes twice in a row.
        silent = 0
        while True:
            await asyncio.sleep(self._interval)
            asked = await _ask(self._client, self._probe_timeout)
            if self._stopped:
                # Python 3.11's wait_for can swallow our cancel when its probe ends at the
                # same moment: the block has already left, so it must not be cancelled now.
                return
            if asked is None:
                continue
            silent = silent + 1 if asked[1] == "silent" else 0
            if asked[1] in _GONE and silent != 1:
                self._found = _unreachable(*asked, self._probe_timeout, None)
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
        self._stopped = True
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
    not, the block is cancelled and :class:`~sagakit.ServerUnreachable`
    is raised, naming the address and the fix; without this, an SDK call waits
    out its retries (10 s or more) and may end in a bare ``CancelledError``. An
    ``RPCError``, ``RuntimeError`` or stray ``CancelledError`` raised in the block
    while the server does not answer becomes ``ServerUnreachable`` as well. Other
    errors pass through unchanged::

        async with server_errors_explained(client):
            result = await client.execute_workflow(...)
    """
    return ServerWatch(client, interval=interval, probe_timeout=probe_timeout)
