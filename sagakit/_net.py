"""Addresses, quick probes and port owners: the network questions the course tooling asks.

Standard library only (``psutil`` is imported inside :func:`port_holder`), so
that ``python -m sagakit doctor`` can use it before it knows what is installed.

Why a probe of our own: Temporal's native client, once handed an address,
keeps connecting in a background thread for up to 30 s even after Python
stopped waiting for it, and a process that exits meanwhile can crash in that
thread. So an address is first asked, in plain asyncio, whether anything there
speaks HTTP/2 (the transport of gRPC); only then does the native client get it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
import ssl
from typing import Literal

from sagakit._errors import ConfigurationError

__all__ = [
    "Answer",
    "format_address",
    "format_host",
    "is_loopback",
    "parse_address",
    "port_bindable",
    "port_holder",
    "probe_http2",
    "start_command",
]

Answer = Literal["http2", "tls-error", "refused", "silent", "other", "unresolvable"]
"""What a probe found: an HTTP/2 (gRPC) server; a TLS server that refused our plain
handshake; nothing listening; a listener that never answers; something that is not
HTTP/2; a host name that does not resolve."""

_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_EMPTY_SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # length 0, type SETTINGS, stream 0
_SETTINGS = 0x4


def parse_address(address: str, *, source: str = "the configuration") -> tuple[str, int]:
    """Split ``host:port`` (or ``[v6]:port``) into host and port.

    Raises:
        ConfigurationError: the address has a scheme, no port, or a port out of range;
            the message names ``source`` (``TEMPORAL_ADDRESS``, a profile …) and the fix.
    """
    text = address.strip()

    def bad(reason: str, example: str = "127.0.0.1:7233") -> ConfigurationError:
        return ConfigurationError(
            f"The Temporal address {address!r} from {source} is not valid ({reason}). "
            f"Use host:port, for example {example}."
        )

    if "://" in text:
        rest = text.split("://", 1)[1].rstrip("/")
        raise bad("it starts with a scheme; Temporal addresses have none", rest or "127.0.0.1:7233")
    if text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed or not rest.startswith(":"):
            raise bad("an IPv6 address needs a port after the brackets", "[::1]:7233")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise bad("it has no port", f"{text or '127.0.0.1'}:7233")
        if ":" in host:
            raise bad("an IPv6 address must be written in brackets", "[::1]:7233")
    if not host or any(ch.isspace() for ch in host):
        raise bad("the host is missing or contains spaces")
    if not port_text.isdigit() or not port_text.isascii():
        raise bad(f"the port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise bad(f"the port {port} is not between 1 and 65535")
    return host, port


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``127.x``, ``::1`` or ``localhost``)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def format_host(host: str) -> str:
    """``host`` as it appears in ``host:port`` and URLs (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def format_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 host in brackets."""
    return f"{format_host(host)}:{port}"


def _tls_context() -> ssl.SSLContext:
    # Only asks whether a TLS server answers; the real client verifies the certificate.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


async def probe_http2(
    host: str,
    port: int,
    *,
    timeout: float = 2.0,
    tls: bool = False,
    server_name: str | None = None,
) -> Answer:
    """Ask ``host:port`` whether it speaks HTTP/2, in at most about ``timeout`` seconds.

    Sends the HTTP/2 client preface and an empty SETTINGS frame; every gRPC server
    (a Temporal frontend among them) answers with a SETTINGS frame at once. Pure
    asyncio: cancelling it leaves nothing running.
    """
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for drops a cancel that arrives as
    # the connection opens, and the watches that cancel a probe rely on it stopping.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                host,
                port,
                ssl=_tls_context() if tls else None,
                server_hostname=(server_name or host) if tls else None,
            )
    except socket.gaierror:
        return "unresolvable"
    except ssl.SSLError:
        return "tls-error"
    except TimeoutError:
        return "silent"
    except OSError:
        return "refused"
    try:
        async with asyncio.timeout_at(max(deadline, loop.time() + 0.2)):
            writer.write(_PREFACE + _EMPTY_SETTINGS)
            await writer.drain()
            head = await reader.readexactly(9)
    except TimeoutError:
        return "silent"
    except ssl.SSLError:
        return "tls-error"
    except (OSError, asyncio.IncompleteReadError):
        return "other"
    finally:
        writer.transport.abort()
    stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
    return "http2" if head[3] == _SETTINGS and stream == 0 else "other"


def start_command(port: int) -> str:
    """The command that starts the course's dev server on ``port``, as a learner types it."""
    if port == 7233:
        return "`make server-start` (or `python -m sagakit server start`)"
    return f"`python -m sagakit server start --port {port}`"


def port_bindable(host: str, port: int) -> bool:
    """Whether a server could listen on ``host:port`` now (as Go's ``net.Listen`` would).

    False also for a port that some program has bound without listening on it,
    which a connection attempt does not reveal.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OverflowError):
        return True  # not ours to judge here; the server reports it
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(sockaddr)
        except OSError as err:
            return err.errno != errno.EADDRINUSE
    return True


def port_holder(port: int) -> str | None:
    """Name the process that holds TCP ``port`` on this machine (``"pid 123: nginx …"``).

    ``None`` when it cannot be known: no ``psutil``, or the process belongs to
    another user (the operating system does not say whose socket it is).
    """
    try:
        import psutil  # type: ignore[import-untyped]
    except ImportError:
        return None
    try:
        connections = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    pids: list[int] = [
        int(conn.pid)
        for conn in connections
        if conn.pid and conn.laddr and conn.laddr.port == port and not conn.raddr
    ]
    if not pids:
        return None
    pid = pids[0]
    with contextlib.suppress(psutil.Error, OSError):
        process = psutil.Process(pid)
        command = " ".join(str(part) for part in process.cmdline()) or str(process.name())
        if len(command) > 100:
            command = command[:97] + "..."
        return f"pid {pid}: {command}"
    return f"pid {pid}"
