"""The asyncio transport: real UDP, TCP and TLS sockets behind :class:`TransportLayer`.

A node talks to :class:`LiveTransport` exactly as it talks to the memory network's transport:
``send()`` queues a message and returns, whole messages come back through the
:class:`~sbcsim.net.base.Receiver`, and every failure — refused, reset, timed out, a TLS handshake
the peer or we rejected, a framing error — arrives as a :class:`~sbcsim.errors.TransportError`
through :meth:`Receiver.transport_error`, never as an exception out of ``send()`` and never as an
unhandled task exception.  Errors are delivered on a later loop iteration, never from inside
``send()``, so a node is not re-entered while it is sending.

Connections (RFC 3261 §18) are found two ways:

* by ``connection_id`` — a response goes back over the connection its request came in on;
* by ``(remote address, transport)`` — a request reuses any open connection to that peer,
  including one the peer opened to us; otherwise a new one is made (TLS with SNI).

When ``connection_id`` names a connection that is gone, the message goes over a connection to
``remote`` instead (RFC 3261 §18.2.2 for responses), as the memory network does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Coroutine
from types import TracebackType

import structlog

from sbcsim.errors import TransportError
from sbcsim.net.base import Address, PeerInfo, Receiver, TransportName
from sbcsim.net.stream import (
    DEFAULT_MAX_SEND_BUFFER,
    StreamConnection,
    StreamListener,
    StreamTransportName,
    open_stream_listener,
)
from sbcsim.net.tls import client_context
from sbcsim.net.udp import (
    UdpEndpoint,
    address_family,
    canonical_host,
    format_address,
    open_udp_endpoint,
    os_error_hint,
)
from sbcsim.sip.parser import ParserLimits

__all__ = ["LiveTransport"]

log = structlog.get_logger("sbcsim.net")

_Key = tuple[Address, StreamTransportName]

# How long aclose() waits for sockets to be released before giving up on a silent peer.
_CLOSE_GRACE = 2.0
# Destination hosts whose UDP source socket is remembered.
_UDP_ROUTES_LIMIT = 1024


class LiveTransport:
    """UDP, TCP and TLS over asyncio sockets for one node; implements ``TransportLayer``.

    ``client_ssl_context`` is used for outgoing TLS unless ``send()`` is given one; without
    either, a context trusting the system store is made on first use.  ``connect_timeout``
    bounds the TCP connect plus the TLS handshake, in both directions.  ``idle_timeout`` closes
    connections with no traffic either way for that long (off by default: Direct Routing keeps
    connections open and pings them with OPTIONS).
    """

    def __init__(
        self,
        receiver: Receiver,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        client_ssl_context: ssl.SSLContext | None = None,
        connect_timeout: float = 5.0,
        idle_timeout: float | None = None,
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
        limits: ParserLimits | None = None,
        source_host: str | None = None,
    ) -> None:
        if connect_timeout <= 0:
            raise ValueError(f"connect_timeout must be positive, got {connect_timeout!r}")
        self.receiver = receiver
        self.client_ssl_context = client_ssl_context
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.max_send_buffer = max_send_buffer
        self.limits = limits
        #: Outgoing TCP/TLS connections are made from this address (a Microsoft proxy's own, as
        #: the SBC must see it); None lets the OS choose.
        self.source_host = source_host
        self.closed = False
        self._loop = loop
        self._listening: list[tuple[TransportName, Address]] = []
        self._udp: list[UdpEndpoint] = []
        self._udp_ephemeral: dict[socket.AddressFamily, UdpEndpoint] = {}
        self._udp_routes: dict[str, UdpEndpoint] = {}
        self._udp_batch: list[tuple[UdpEndpoint, bytes, Address]] = []
        self._udp_waiting: dict[socket.AddressFamily, list[tuple[bytes, Address]]] = {}
        self._listeners: list[StreamListener] = []
        self._by_id: dict[int, StreamConnection] = {}
        self._by_key: dict[_Key, StreamConnection] = {}
        self._accepted: set[StreamConnection] = set()  # inbound, not open yet (TLS handshake)
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_udp_destination: dict[socket.AddressFamily, Address] = {}

    # -- information ------------------------------------------------------------------------

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def local_addresses(self) -> tuple[Address, ...]:
        """Every bound (host, port), in the order listened on, without repeats."""
        return tuple(dict.fromkeys(addr for _, addr in self._listening))

    @property
    def listeners(self) -> tuple[tuple[TransportName, Address], ...]:
        """(transport, bound address) for every listener, in the order listened on."""
        return tuple(self._listening)

    def address(self, transport: TransportName) -> Address:
        """The first address listening for ``transport`` (for Via and Contact headers)."""
        for name, addr in self._listening:
            if name == transport:
                return addr
        raise LookupError(f"no {transport} listener")

    def connections(self) -> list[PeerInfo]:
        """The open TCP/TLS connections, oldest first."""
        return [c.peer_info() for c in self._by_id.values() if c.state == "open"]

    def connection(self, connection_id: int) -> StreamConnection | None:
        """The connection with that id, while it is known."""
        return self._by_id.get(connection_id)

    def __repr__(self) -> str:
        listening = ", ".join(f"{format_address(a)}/{t}" for t, a in self._listening)
        state = " closed" if self.closed else ""
        return f"<LiveTransport [{listening}]{state}>"

    # -- listening ----------------------------------------------------------------------------

    async def listen_udp(self, host: str, port: int) -> Address:
        """Bind a UDP socket; it also becomes the source of UDP sent to its address family."""
        self._check_open()
        self._loop = self._loop or asyncio.get_running_loop()
        endpoint = await open_udp_endpoint(host, port, self._datagram_received, self._udp_error)
        self._udp.append(endpoint)
        self._udp_routes.clear()
        self._listening.append(("udp", endpoint.local))
        log.info("listening", transport="udp", local=format_address(endpoint.local))
        return endpoint.local

    async def listen_tcp(self, host: str, port: int) -> Address:
        """Accept TCP connections on ``host:port``; returns the bound address."""
        return await self._listen_stream(host, port, "tcp", None)

    async def listen_tls(self, host: str, port: int, ssl_context: ssl.SSLContext) -> Address:
        """Accept TLS connections on ``host:port`` with a server context (see
        :func:`sbcsim.net.tls.server_context`); returns the bound address."""
        return await self._listen_stream(host, port, "tls", ssl_context)

    async def _listen_stream(
        self, host: str, port: int, transport: StreamTransportName, ctx: ssl.SSLContext | None
    ) -> Address:
        self._check_open()
        self._loop = self._loop or asyncio.get_running_loop()
        listener = await open_stream_listener(
            host, port, transport, _Acceptor(self, transport, ctx), ctx
        )
        self._listeners.append(listener)
        self._listening.append((transport, listener.local))
        log.info("listening", transport=transport, local=format_address(listener.local))
        return listener.local

    def _check_open(self) -> None:
        if self.closed:
            raise TransportError("the transport is closed")

    # -- sending ------------------------------------------------------------------------------

    def send(
        self,
        data: bytes,
        remote: Address,
        transport: TransportName,
        *,
        server_name: str | None = None,
        connection_id: int | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """Queue ``data`` for ``remote``; see :meth:`sbcsim.net.base.TransportLayer.send`.

        ``ssl_context`` overrides the client context for a new TLS connection.
        """
        remote = (canonical_host(remote[0]), int(remote[1]))
        if self.closed:
            self._report_later(
                remote,
                transport,
                TransportError(
                    f"cannot send to {format_address(remote)}/{transport}: the transport is closed",
                    address=remote,
                ),
            )
            return
        if transport == "udp":
            self._send_udp(data, remote)
            return
        if transport not in ("tcp", "tls"):
            self._report_later(
                remote,
                transport,
                TransportError(
                    f"unknown transport {transport!r} for {format_address(remote)}", address=remote
                ),
            )
            return
        self._send_stream(data, remote, transport, server_name, connection_id, ssl_context)

    def _send_stream(
        self,
        data: bytes,
        remote: Address,
        transport: StreamTransportName,
        server_name: str | None,
        connection_id: int | None,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        conn: StreamConnection | None = None
        if connection_id is not None:
            conn = self._by_id.get(connection_id)
            if conn is not None and (conn.state == "closed" or conn.transport_name != transport):
                conn = None
        if conn is None:
            conn = self._by_key.get((remote, transport))
        if conn is None:
            conn = self._connect(remote, transport, server_name, ssl_context)
        if data:
            conn.write(data)

    def _connect(
        self,
        remote: Address,
        transport: StreamTransportName,
        server_name: str | None,
        ssl_context: ssl.SSLContext | None,
    ) -> StreamConnection:
        conn = StreamConnection(
            self,
            transport,
            remote,
            outbound=True,
            server_name=server_name if transport == "tls" else None,
            limits=self.limits,
            idle_timeout=self.idle_timeout,
            max_send_buffer=self.max_send_buffer,
            local_host=self.source_host,
        )
        self._by_id[conn.id] = conn
        self._by_key.setdefault((remote, transport), conn)
        ctx: ssl.SSLContext | None = None
        if transport == "tls":
            ctx = ssl_context or self.client_ssl_context
            if ctx is None:
                ctx = self.client_ssl_context = client_context(None)
        conn.start_connect(ctx, self.connect_timeout)
        return conn

    def _send_udp(self, data: bytes, remote: Address) -> None:
        family = address_family(remote[0])
        if family is None:
            self._spawn(self._resolve_and_send_udp(data, remote))
            return
        endpoint = self._udp_endpoint(family, remote[0])
        if endpoint is None:
            self._udp_waiting.setdefault(family, []).append((data, remote))
            if len(self._udp_waiting[family]) == 1:
                self._spawn(self._open_ephemeral_udp(family))
            return
        # Datagrams leave at the end of this loop iteration, together: on a loaded node one
        # iteration handles several received datagrams, and waking the peer once for all the
        # answers costs far less than once per answer (a sendto that wakes a sleeping receiver
        # on another CPU is ten to thirty times dearer than one that does not).
        batch = self._udp_batch
        batch.append((endpoint, data, remote))
        if len(batch) == 1:
            self.loop.call_soon(self._flush_udp)

    def _flush_udp(self) -> None:
        batch = self._udp_batch
        if not batch:
            return
        self._udp_batch = []
        for endpoint, data, remote in batch:
            self._last_udp_destination[endpoint.family] = remote
            try:
                endpoint.send(data, remote)
            except (OSError, ValueError, TypeError) as exc:
                message = f"cannot send UDP to {format_address(remote)}: {os_error_hint(exc)}"
                log.warning(
                    "udp_send_failed", transport="udp", remote=format_address(remote), error=message
                )
                self._report(remote, "udp", TransportError(message, address=remote))

    def _udp_endpoint(self, family: socket.AddressFamily, host: str) -> UdpEndpoint | None:
        # The choice depends only on the destination host and the bound sockets: remembered per
        # host (until a socket is added or closes), as it is made for every datagram sent.
        endpoint = self._udp_routes.get(host)
        if endpoint is not None and endpoint.is_open:
            return endpoint
        endpoint = self._choose_udp_endpoint(family, host)
        if endpoint is not None and len(self._udp_routes) < _UDP_ROUTES_LIMIT:
            self._udp_routes[host] = endpoint
        return endpoint

    def _choose_udp_endpoint(self, family: socket.AddressFamily, host: str) -> UdpEndpoint | None:
        candidates = [e for e in self._udp if e.family == family and e.is_open]
        if not candidates:
            ephemeral = self._udp_ephemeral.get(family)
            return ephemeral if ephemeral is not None and ephemeral.is_open else None
        # A socket bound to loopback cannot reach other hosts (and vice versa a specific
        # external address is a poor source for loopback): prefer a matching or wildcard bind.
        to_loopback = ipaddress.ip_address(host).is_loopback
        for endpoint in candidates:
            bound = ipaddress.ip_address(endpoint.local[0])
            if bound.is_unspecified or bound.is_loopback == to_loopback:
                return endpoint
        return candidates[0]

    async def _open_ephemeral_udp(self, family: socket.AddressFamily) -> None:
        wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"
        try:
            endpoint = await open_udp_endpoint(
                wildcard, 0, self._datagram_received, self._udp_error
            )
        except TransportError as exc:
            for _, remote in self._udp_waiting.pop(family, []):
                self._report(
                    remote,
                    "udp",
                    TransportError(
                        f"cannot send UDP to {format_address(remote)}: no socket for its address "
                        f"family ({exc.msg})",
                        address=remote,
                    ),
                )
            return
        if self.closed:
            endpoint.close()
            return
        self._udp_ephemeral[family] = endpoint
        log.debug("udp_source_bound", transport="udp", local=format_address(endpoint.local))
        for data, remote in self._udp_waiting.pop(family, []):
            self._send_udp(data, remote)

    async def _resolve_and_send_udp(self, data: bytes, remote: Address) -> None:
        host, port = remote
        try:
            infos = await self.loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        except OSError as exc:
            self._report(
                remote,
                "udp",
                TransportError(
                    f"cannot send UDP to {format_address(remote)}: {os_error_hint(exc)}",
                    address=remote,
                ),
            )
            return
        if self.closed or not infos:
            return
        # Prefer a family we already have a socket for, so the source port is a listening port.
        families = {e.family for e in self._udp}
        chosen = next((i for i in infos if i[0] in families), infos[0])
        self._send_udp(data, (canonical_host(str(chosen[4][0])), int(chosen[4][1])))

    # -- closing ------------------------------------------------------------------------------

    def close_connection(self, connection_id: int) -> bool:
        """Close one TCP/TLS connection (queued data is still flushed), as a server that drops
        a peer it refuses.  Returns False when no open connection has that id."""
        conn = self._by_id.get(connection_id)
        if conn is None or conn.state == "closed":
            return False
        conn.close()
        return True

    def close(self) -> None:
        """Stop listening and close every socket; queued stream data is still flushed."""
        if self.closed:
            return
        self._flush_udp()  # what was sent before close() still goes out
        self.closed = True
        for listener in self._listeners:
            listener.close()
        for endpoint in [*self._udp, *self._udp_ephemeral.values()]:
            endpoint.close()
        for conn in [*self._by_id.values(), *self._accepted]:
            conn.close()
        for task in self._tasks:
            task.cancel()
        self._udp_waiting.clear()
        log.info(
            "transport_closed", listening=[f"{format_address(a)}/{t}" for t, a in self._listening]
        )

    async def aclose(self) -> None:
        """:meth:`close`, then wait (a bounded time) until the sockets are released."""
        conns = [*self._by_id.values(), *self._accepted]
        self.close()
        waits: list[asyncio.Future[None]] = [
            *(asyncio.ensure_future(listener.wait_closed()) for listener in self._listeners),
            *(asyncio.ensure_future(c.wait_closed()) for c in conns),
            *self._tasks,
        ]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=_CLOSE_GRACE)
            for fut in pending:
                fut.cancel()

    async def __aenter__(self) -> LiveTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- StreamOwner --------------------------------------------------------------------------

    def stream_opened(self, conn: StreamConnection) -> None:
        self._accepted.discard(conn)
        if self.closed:
            conn.close()
            return
        self._by_id[conn.id] = conn
        self._by_key.setdefault((conn.remote, conn.transport_name), conn)

    def stream_message(self, conn: StreamConnection, data: bytes) -> None:
        self._deliver(data, conn.peer_info())

    def stream_closed(self, conn: StreamConnection, error: TransportError | None) -> None:
        self._accepted.discard(conn)
        self._by_id.pop(conn.id, None)
        key = (conn.remote, conn.transport_name)
        if self._by_key.get(key) is conn:
            del self._by_key[key]
            # Another open connection to the same peer (both sides connected at once) takes over.
            for other in self._by_id.values():
                if (other.remote, other.transport_name) == key and other.state != "closed":
                    self._by_key[key] = other
                    break
        if error is not None:
            self._report_later(conn.remote, conn.transport_name, error)

    # -- internals ----------------------------------------------------------------------------

    def _datagram_received(self, endpoint: UdpEndpoint, data: bytes, remote: Address) -> None:
        if not data.strip(b"\r\n"):
            # Empty or CRLF-only datagrams are keep-alives some SBCs send over UDP; they are not
            # SIP messages and there is nothing to answer (RFC 5626 uses STUN on UDP).
            return
        self._deliver(data, PeerInfo("udp", endpoint.local, remote))

    def _udp_error(self, endpoint: UdpEndpoint, exc: OSError) -> None:
        # The OS does not say which datagram failed; the latest destination is the best guess.
        remote = self._last_udp_destination.get(endpoint.family, ("", 0))
        message = (
            f"UDP error on {format_address(endpoint.local)} after sending to "
            f"{format_address(remote)}: {os_error_hint(exc)}"
        )
        log.warning("udp_error", transport="udp", remote=format_address(remote), error=message)
        self._report(remote, "udp", TransportError(message, address=remote))

    def _deliver(self, data: bytes, peer: PeerInfo) -> None:
        try:
            self.receiver.message_received(data, peer)
        except Exception:
            # A bug above must not tear down the connection (or the UDP socket) it came from.
            log.exception(
                "receiver_failed",
                transport=peer.transport,
                remote=format_address(peer.remote),
                connection_id=peer.connection_id,
            )

    def _report(self, remote: Address, transport: TransportName, error: TransportError) -> None:
        try:
            self.receiver.transport_error(remote, transport, error)
        except Exception:
            log.exception("receiver_failed", transport=transport, remote=format_address(remote))

    def _report_later(
        self, remote: Address, transport: TransportName, error: TransportError
    ) -> None:
        self.loop.call_soon(self._report, remote, transport, error)

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class _Acceptor:
    """Turns each socket accepted by one listener into an inbound connection."""

    __slots__ = ("_ctx", "_owner", "_transport")

    def __init__(
        self, owner: LiveTransport, transport: StreamTransportName, ctx: ssl.SSLContext | None
    ) -> None:
        self._owner = owner
        self._transport: StreamTransportName = transport
        self._ctx = ctx

    def __call__(self, sock: socket.socket, remote: Address) -> None:
        owner = self._owner
        if owner.closed:
            sock.close()
            return
        conn = StreamConnection(
            owner,
            self._transport,
            remote,
            outbound=False,
            limits=owner.limits,
            idle_timeout=owner.idle_timeout,
            max_send_buffer=owner.max_send_buffer,
        )
        owner._accepted.add(conn)
        conn.start_accept(sock, self._ctx, owner.connect_timeout)
