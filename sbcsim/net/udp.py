"""UDP sockets for the live transport, and the address helpers every live transport shares.

A SIP UDP listener is also the socket SIP sends from: RFC 3261 §18.1.1 lets a client send from
any port, but real peers (and the Microsoft proxies' NAT handling, RFC 3581 ``rport``) answer
the source address of a request, so sending from the listening port is what makes replies land.
:class:`UdpEndpoint` is therefore both sides: it hands every datagram up and sends through the same
socket.

Sockets are created and bound here rather than by the event loop, so the bind error is ours to
explain ("127.0.0.1:5060/udp is already in use") and IPv6 sockets are IPv6-only on every loop
(a wildcard ``::`` listener must not grab the IPv4 port a ``0.0.0.0`` listener wants).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import socket
from collections.abc import Callable
from typing import Any, Literal, cast

from sbcsim.errors import TransportError
from sbcsim.net.base import Address

__all__ = [
    "DatagramHandler",
    "ErrorHandler",
    "UdpEndpoint",
    "address_family",
    "bind_error",
    "bind_socket",
    "canonical_host",
    "format_address",
    "normalize_sockaddr",
    "open_udp_endpoint",
    "os_error_hint",
    "resolve_bind_address",
]


#: ``(endpoint, data, remote)``: one datagram arrived on ``endpoint``.
DatagramHandler = Callable[["UdpEndpoint", bytes, Address], None]
#: ``(endpoint, exc)``: the OS reported an error on ``endpoint`` (ICMP unreachable ...).
ErrorHandler = Callable[["UdpEndpoint", OSError], None]


def format_address(address: Address) -> str:
    """``host:port``, with IPv6 literals in brackets (``[::1]:5060``)."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# Every datagram in and out goes through canonical_host/address_family, and a node talks to a
# handful of peers: parsing the same literal with ipaddress each time was a tenth of the cost of
# a call.  Bounded so that a flood of distinct sources cannot grow them without limit.
_CACHE_LIMIT = 4096
_UDP_RECEIVE_BUFFER = 4 * 1024 * 1024
_canonical: dict[str, str] = {}
_families: dict[str, socket.AddressFamily | None] = {}


def canonical_host(host: str) -> str:
    """One spelling per host: IP literals compressed (``0:0::1`` -> ``::1``, no brackets, an
    IPv4-mapped IPv6 address as plain IPv4), names lower-case.  Connection keys depend on it."""
    known = _canonical.get(host)
    if known is None:
        known = _canonical_host(host)
        if len(_canonical) < _CACHE_LIMIT:
            _canonical[host] = known
    return known


def _canonical_host(host: str) -> str:
    host = host.strip()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host.lower().removesuffix(".")
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


def normalize_sockaddr(sockaddr: Any) -> Address:
    """A socket address (2-tuple for IPv4, 4-tuple for IPv6) as a canonical ``(host, port)``."""
    return (canonical_host(str(sockaddr[0])), int(sockaddr[1]))


def address_family(host: str) -> socket.AddressFamily | None:
    """``AF_INET`` / ``AF_INET6`` for an IP literal, ``None`` for a name that needs resolving."""
    try:
        return _families[host]
    except KeyError:
        family = _address_family(host)
        if len(_families) < _CACHE_LIMIT:
            _families[host] = family
        return family


def _address_family(host: str) -> socket.AddressFamily | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return socket.AF_INET6 if ip.version == 6 else socket.AF_INET


async def resolve_bind_address(
    host: str, port: int, kind: Literal["udp", "tcp"]
) -> tuple[socket.AddressFamily, Address]:
    """The family and address to bind for ``host`` (a literal, a name, or "" for all IPv4)."""
    host = canonical_host(host) if host else "0.0.0.0"
    family = address_family(host)
    if family is not None:
        return family, (host, port)
    loop = asyncio.get_running_loop()
    socktype = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    infos = await loop.getaddrinfo(host, port, type=socktype, flags=socket.AI_PASSIVE)
    if not infos:  # pragma: no cover - getaddrinfo raises rather than returning nothing
        raise OSError(errno.EADDRNOTAVAIL, f"{host} does not resolve")
    fam, _, _, _, sockaddr = infos[0]
    return socket.AddressFamily(fam), normalize_sockaddr(sockaddr)


def bind_socket(
    family: socket.AddressFamily, address: Address, kind: Literal["udp", "tcp"]
) -> socket.socket:
    """A non-blocking socket bound to ``address`` (raises :class:`OSError`)."""
    sock = socket.socket(family, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        if kind == "tcp" and hasattr(socket, "SO_REUSEADDR"):
            # Lets a restarted lab rebind a port still in TIME_WAIT.  Not for UDP: on Linux it
            # would let two processes share a UDP port silently.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if kind == "udp":
            # The default receive buffer holds about a hundred datagrams: a node answering a
            # few thousand calls a second drops requests during any pause of a few tens of
            # milliseconds (a collection, a busy CPU), and the peer's retransmissions then
            # load it further.  The kernel caps the request at net.core.rmem_max.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_RECEIVE_BUFFER)
        sock.setblocking(False)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_error(exc: OSError, address: Address, transport: str) -> TransportError:
    """Explain why listening on ``address`` failed."""
    where = f"{format_address(address)}/{transport}"
    if exc.errno == errno.EADDRINUSE:
        msg = f"{where} is already in use"
    elif exc.errno == errno.EADDRNOTAVAIL:
        msg = f"cannot listen on {where}: the address does not belong to this host"
    elif exc.errno == errno.EACCES:
        msg = f"cannot listen on {where}: permission denied (ports below 1024 need privileges)"
    elif isinstance(exc, socket.gaierror):
        msg = f"cannot listen on {where}: the host name does not resolve ({exc.strerror})"
    else:
        msg = f"cannot listen on {where}: {exc.strerror or exc}"
    return TransportError(msg, address=address)


def os_error_hint(exc: BaseException) -> str:
    """The likely cause of a socket error, in a few words."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused: nothing is listening there"
    if isinstance(exc, ConnectionResetError):
        return "connection reset by the peer"
    if isinstance(exc, BrokenPipeError | ConnectionAbortedError):
        return "the peer closed the connection"
    if isinstance(exc, TimeoutError):
        return "timed out: the host is down, unreachable or filtered"
    if isinstance(exc, socket.gaierror):
        return f"the host name does not resolve ({exc.strerror})"
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return f"no route to the host ({exc.strerror})"
        if exc.errno == errno.EAFNOSUPPORT:
            return "address family not supported (IPv6 disabled?)"
        if exc.errno == errno.EMSGSIZE:
            return "datagram too large for the path (use TCP for large messages)"
        return exc.strerror or str(exc) or type(exc).__name__
    return str(exc) or type(exc).__name__


class UdpEndpoint(asyncio.DatagramProtocol):
    """One bound UDP socket: hands datagrams to ``on_datagram`` and sends."""

    def __init__(self, on_datagram: DatagramHandler, on_error: ErrorHandler) -> None:
        self._on_datagram = on_datagram
        self._on_error = on_error
        self._transport: asyncio.DatagramTransport | None = None
        self.local: Address = ("", 0)
        self.family: socket.AddressFamily = socket.AF_INET

    # -- asyncio.DatagramProtocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Neither loop's datagram transport subclasses asyncio.DatagramTransport.
        self._transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        self.family = socket.AddressFamily(sock.family)
        self.local = normalize_sockaddr(transport.get_extra_info("sockname"))

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._on_datagram(self, data, normalize_sockaddr(addr))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable ...) on a later send or receive, where the OS reports them.
        if isinstance(exc, OSError):
            self._on_error(self, exc)
        else:  # pragma: no cover - loops only pass OSError here
            self._on_error(self, OSError(str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None

    # -- sending ------------------------------------------------------------------------------

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def send(self, data: bytes, remote: Address) -> None:
        """Queue one datagram (raises :class:`OSError` if the endpoint is closed)."""
        if self._transport is None or self._transport.is_closing():
            raise OSError(errno.EBADF, "the UDP socket is closed")
        self._transport.sendto(data, remote)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def open_udp_endpoint(
    host: str,
    port: int,
    on_datagram: DatagramHandler,
    on_error: ErrorHandler,
) -> UdpEndpoint:
    """Bind ``host:port`` (port 0 = any) and start receiving.

    Raises :class:`TransportError` when the address cannot be bound.
    """
    loop = asyncio.get_running_loop()
    try:
        family, address = await resolve_bind_address(host, port, "udp")
    except OSError as exc:
        raise bind_error(exc, (host, port), "udp") from exc
    try:
        sock = bind_socket(family, address, "udp")
    except OSError as exc:
        raise bind_error(exc, address, "udp") from exc
    try:
        _, endpoint = await loop.create_datagram_endpoint(
            lambda: UdpEndpoint(on_datagram, on_error), sock=sock
        )
    except BaseException:
        sock.close()
        raise
    return endpoint
