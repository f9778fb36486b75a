"""TCP and TLS connections for the live transport: framing, keep-alives, back-pressure, idle close.

One :class:`StreamConnection` is one asyncio protocol instance, inbound or outbound.  It cuts the
byte stream into SIP messages with :class:`~sbcsim.sip.parser.StreamFramer`, answers RFC 5626
``CRLFCRLF`` pings with a ``CRLF`` pong, and reports to its owner (the live transport) through
three calls — opened, message, closed — so that connection bookkeeping lives in one place.

Listeners run their own accept loop instead of ``create_server(ssl=...)``: with the latter a
failed server-side handshake is swallowed by the loop (logged in debug mode only), and "the SBC
presented no client certificate" is exactly the failure a Direct Routing lab must report.  Each
accepted socket is handed to ``loop.connect_accepted_socket``, which does the handshake and
raises when it fails, on the default loop and on uvloop alike.

Writes never block: ``transport.write`` takes data while the kernel and the loop keep up; once the
loop asks us to pause (``pause_writing``) messages wait in a queue capped at ``max_send_buffer``
bytes, and a peer that stops reading long enough to fill it has its connection dropped with an
error rather than growing memory without bound.
"""

from __future__ import annotations

import asyncio
import errno
import itertools
import socket
import ssl
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, Protocol, cast

import structlog

from sbcsim.errors import RemoteProtocolError, TransportError
from sbcsim.net.base import Address, PeerInfo, TlsIdentity
from sbcsim.net.tls import certificate_names, ssl_failure_hint
from sbcsim.net.udp import (
    bind_error,
    bind_socket,
    format_address,
    normalize_sockaddr,
    os_error_hint,
    resolve_bind_address,
)
from sbcsim.sip.parser import KeepAlive, ParserLimits, StreamFramer

__all__ = [
    "DEFAULT_MAX_SEND_BUFFER",
    "ConnectionState",
    "StreamConnection",
    "StreamListener",
    "StreamOwner",
    "StreamTransportName",
    "open_stream_listener",
]

log = structlog.get_logger("sbcsim.net")

StreamTransportName = Literal["tcp", "tls"]
#: ``connecting`` covers the TCP connect (or accept) and the TLS handshake.
ConnectionState = Literal["connecting", "open", "closed"]

#: Bytes that may wait for a slow peer before its connection is dropped (about 100 INVITEs).
DEFAULT_MAX_SEND_BUFFER = 1 << 20

# Connection ids are unique in the process, so a log line or a PeerInfo names one connection
# even when several transports (several emulated parties) run in the same process.
_connection_ids = itertools.count(1)

# The SNI name each server-side TLS session received, filled in by the callback installed by
# open_stream_listener (the ssl module offers no other way to read it on the server side).
_sni_seen: weakref.WeakKeyDictionary[ssl.SSLObject, str] = weakref.WeakKeyDictionary()

# The loops' own TLS handshake timeout is set past ours, so that the error a slow handshake
# produces is always our asyncio.wait_for timeout with its clear message.
_HANDSHAKE_TIMEOUT_MARGIN = 1.0

# Accept errors that mean "out of resources": back off instead of spinning.
_ACCEPT_RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
_ACCEPT_RETRY_DELAY = 0.5

# asyncio may run a timer up to one clock tick early; an idle check that fires that little
# before its deadline counts as on time instead of re-arming for a few microseconds.
_TIMER_SLACK = 0.005


class StreamOwner(Protocol):
    """Who keeps track of connections (the live transport)."""

    def stream_opened(self, conn: StreamConnection) -> None:
        """``conn`` is connected (and, for TLS, the handshake succeeded)."""

    def stream_message(self, conn: StreamConnection, data: bytes) -> None:
        """One whole SIP message arrived on ``conn``."""

    def stream_closed(self, conn: StreamConnection, error: TransportError | None) -> None:
        """``conn`` is gone: cleanly (``error is None``) or because of ``error``."""


class StreamConnection(asyncio.Protocol):
    """One TCP or TLS connection, inbound or outbound."""

    def __init__(
        self,
        owner: StreamOwner,
        transport: StreamTransportName,
        remote: Address,
        *,
        outbound: bool,
        server_name: str | None = None,
        limits: ParserLimits | None = None,
        idle_timeout: float | None = None,
        max_send_buffer: int = DEFAULT_MAX_SEND_BUFFER,
        local_host: str | None = None,
    ) -> None:
        self.id = next(_connection_ids)
        self.transport_name: StreamTransportName = transport
        self.remote = remote
        self.local: Address = ("", 0)
        self.outbound = outbound
        self.server_name = server_name
        self.local_host = local_host  # outbound: the address to connect from (None: any)
        self.peer_identity: TlsIdentity | None = None
        self.state: ConnectionState = "connecting"
        self._owner = owner
        self._framer = StreamFramer(limits)
        self._idle_timeout = idle_timeout
        self._max_send_buffer = max_send_buffer
        self._transport: asyncio.Transport | None = None
        self._accepted_sock: socket.socket | None = None  # until the loop takes it over
        self._pending: deque[bytes] = deque()
        self._pending_bytes = 0
        self._received = 0  # bytes, ever
        self._paused = False
        self._last_activity = 0.0
        self._idle_handle: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._released: asyncio.Future[None] | None = None  # made on first use
        self._socket_released = False
        self._info: PeerInfo | None = None
        self._extra: dict[str, str] = {}
        self._log = log.bind(
            transport=transport, remote=format_address(remote), connection_id=self.id
        )

    # -- information ------------------------------------------------------------------------

    @property
    def where(self) -> str:
        """``host:port/transport`` (and the SNI name), for messages."""
        text = f"{format_address(self.remote)}/{self.transport_name}"
        if self.server_name and self.outbound:
            text += f" (SNI {self.server_name})"
        return text

    def peer_info(self) -> PeerInfo:
        """What the layer above learns about a message received on this connection."""
        if self._info is None:
            self._info = PeerInfo(
                transport=self.transport_name,
                local=self.local,
                remote=self.remote,
                connection_id=self.id,
                peer_identity=self.peer_identity,
                server_name=self.server_name,
                extra=dict(self._extra),
            )
        return self._info

    def __repr__(self) -> str:
        direction = "to" if self.outbound else "from"
        return f"<StreamConnection #{self.id} {direction} {self.where} {self.state}>"

    # -- opening ------------------------------------------------------------------------------

    def start_connect(self, ssl_context: ssl.SSLContext | None, timeout: float) -> None:
        """Begin connecting in the background (outbound connections)."""
        self._task = asyncio.get_running_loop().create_task(self._connect(ssl_context, timeout))

    async def _connect(self, ssl_context: ssl.SSLContext | None, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        host, port = self.remote
        self._log.debug("connecting", server_name=self.server_name)
        local_addr = (self.local_host, 0) if self.local_host else None
        try:
            if ssl_context is None:
                coro = loop.create_connection(lambda: self, host, port, local_addr=local_addr)
            else:
                coro = loop.create_connection(
                    lambda: self,
                    host,
                    port,
                    local_addr=local_addr,
                    ssl=ssl_context,
                    # Without a name, the certificate is checked against the address itself.
                    server_hostname=self.server_name or host,
                    ssl_handshake_timeout=timeout + _HANDSHAKE_TIMEOUT_MARGIN,
                )
            await asyncio.wait_for(coro, timeout)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            step = "connect or TLS handshake" if ssl_context is not None else "connect"
            self._fail_opening(
                f"{step} to {self.where} timed out after {timeout:g} s: "
                "the host is down, unreachable or filtered",
                "connect_failed",
            )
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._fail_opening(
                f"TLS handshake with {self.where} failed: {ssl_failure_hint(exc)}",
                "tls_handshake_failed",
            )
        except Exception as exc:  # OSError and anything a loop may raise for a bad address
            self._fail_opening(
                f"cannot connect to {self.where}: {os_error_hint(exc)}", "connect_failed"
            )

    def start_accept(
        self, sock: socket.socket, ssl_context: ssl.SSLContext | None, timeout: float
    ) -> None:
        """Take over an accepted socket (inbound connections); TLS handshakes in the background."""
        self._accepted_sock = sock
        self._task = asyncio.get_running_loop().create_task(self._accept(ssl_context, timeout))

    async def _accept(self, ssl_context: ssl.SSLContext | None, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        sock, self._accepted_sock = self._accepted_sock, None  # the loop owns it from here on
        assert sock is not None
        try:
            if ssl_context is None:
                coro = loop.connect_accepted_socket(lambda: self, sock)
            else:
                coro = loop.connect_accepted_socket(
                    lambda: self,
                    sock,
                    ssl=ssl_context,
                    ssl_handshake_timeout=timeout + _HANDSHAKE_TIMEOUT_MARGIN,
                )
            await asyncio.wait_for(coro, timeout)
        except asyncio.CancelledError:
            raise
        except TimeoutError:
            self._fail_opening(
                f"TLS handshake with {self.where} timed out after {timeout:g} s: "
                "the client sent no ClientHello (not speaking TLS?)",
                "tls_handshake_failed",
            )
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._fail_opening(
                f"TLS handshake with {self.where} failed: {ssl_failure_hint(exc)}",
                "tls_handshake_failed",
            )
        except Exception as exc:
            if self.transport_name == "tcp":
                message = f"cannot accept {self.where}: {os_error_hint(exc)}"
                self._fail_opening(message, "accept_failed")
                return
            if isinstance(exc, ConnectionResetError | ConnectionAbortedError | BrokenPipeError):
                # A client that rejects our certificate aborts without flushing its alert.
                hint = (
                    "the client dropped the connection during the handshake: it probably does "
                    "not trust our certificate"
                )
            else:
                hint = os_error_hint(exc)
            self._fail_opening(
                f"TLS handshake with {self.where} failed: {hint}", "tls_handshake_failed"
            )

    def _fail_opening(self, message: str, event: str) -> None:
        if self.state == "closed":
            return
        self._log.warning(event, error=message)
        self._finish(TransportError(message, address=self.remote), abort=True)

    def _opened(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        sockname = transport.get_extra_info("sockname")
        if sockname:
            self.local = normalize_sockaddr(sockname)
        ssl_object = transport.get_extra_info("ssl_object")
        if isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
            der = ssl_object.getpeercert(binary_form=True)
            if der:
                self.peer_identity = TlsIdentity(names=certificate_names(der))
            if not self.outbound and isinstance(ssl_object, ssl.SSLObject):
                self.server_name = _sni_seen.get(ssl_object)
            self._extra["tls_version"] = ssl_object.version() or ""
            cipher = ssl_object.cipher()
            if cipher:
                self._extra["cipher"] = cipher[0]
        self.state = "open"
        self._last_activity = asyncio.get_running_loop().time()
        self._arm_idle(self._idle_timeout)
        self._log.info(
            "connection_opened",
            local=format_address(self.local),
            direction="outbound" if self.outbound else "inbound",
            server_name=self.server_name,
            peer_names=list(self.peer_identity.names) if self.peer_identity else None,
        )
        self._owner.stream_opened(self)
        self._flush()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, base: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, hence a cast, not a check.
        transport = cast(asyncio.Transport, base)
        if self.state == "closed":  # closed while the connect was in flight
            transport.abort()
            return
        self._opened(transport)

    def data_received(self, data: bytes) -> None:
        if self.state != "open":
            return
        self._last_activity = asyncio.get_running_loop().time()
        self._received += len(data)
        self._framer.receive(data)
        self._deliver_frames()

    def _deliver_frames(self) -> None:
        while self.state == "open":
            try:
                frame = self._framer.next_frame()
            except RemoteProtocolError as exc:
                message = f"framing error on {self.where}: {exc.msg}; connection closed"
                self._log.warning("framing_error", error=exc.msg)
                self._finish(TransportError(message, address=self.remote), abort=False)
                return
            if frame is None:
                return
            if isinstance(frame, KeepAlive):
                if frame.pong_required:
                    self._log.debug("keepalive_pong_sent")
                    self.write(b"\r\n")
                continue
            self._owner.stream_message(self, frame)

    def eof_received(self) -> bool | None:
        # SIP has no half-close: let the transport close, connection_lost() follows.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._mark_released()
        if self.state != "open":
            # Closed by us, or the connect/handshake failed and its task reports it.
            return
        silent_close = exc is None or isinstance(exc, ConnectionResetError | BrokenPipeError)
        if silent_close and self.outbound and self.transport_name == "tls" and not self._received:
            # A server that rejects our certificate (or our lack of one) fails its side of a
            # TLS 1.3 handshake after ours has completed; the loops drop the connection without
            # flushing the alert, so all we see is a close (or a reset, if our first request
            # was still unread) before the server said anything.
            message = (
                f"connection to {self.where} closed by the server before it sent anything: "
                "it probably rejected our client certificate, or requires one"
            )
            self._log.warning("connection_lost", error=message)
            self._finish(TransportError(message, address=self.remote), abort=True)
            return
        if exc is None:
            if self._framer.buffered:
                self._log.info(
                    "connection_closed",
                    by="peer",
                    unframed_bytes=self._framer.buffered,
                )
            else:
                self._log.info("connection_closed", by="peer")
            self._finish(None, abort=False)
            return
        if isinstance(exc, ssl.SSLError):
            hint = ssl_failure_hint(exc)
        else:
            hint = os_error_hint(exc)
        message = f"connection to {self.where} lost: {hint}"
        self._log.warning("connection_lost", error=message)
        self._finish(TransportError(message, address=self.remote), abort=True)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._flush()

    # -- sending and closing ------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send ``data`` now, or queue it while connecting or while the peer is slow."""
        if self.state == "closed":
            return
        if self.state == "open" and not self._paused and not self._pending:
            assert self._transport is not None
            self._last_activity = asyncio.get_running_loop().time()
            self._transport.write(data)
            return
        if self._pending_bytes + len(data) > self._max_send_buffer:
            message = (
                f"send buffer for {self.where} is full ({self._pending_bytes} bytes queued): "
                + ("the peer is not reading" if self.state == "open" else "still connecting")
            )
            self._log.warning("send_buffer_full", error=message)
            self._finish(TransportError(message, address=self.remote), abort=True)
            return
        self._pending.append(data)
        self._pending_bytes += len(data)

    def _flush(self) -> None:
        transport = self._transport
        while self._pending and not self._paused and self.state == "open" and transport is not None:
            data = self._pending.popleft()
            self._pending_bytes -= len(data)
            self._last_activity = asyncio.get_running_loop().time()
            transport.write(data)

    def close(self) -> None:
        """Close cleanly: what is queued is still sent, then the connection is shut down."""
        self._finish(None, abort=False)

    def abort(self) -> None:
        """Drop the connection at once, discarding anything queued."""
        self._finish(None, abort=True)

    async def wait_closed(self) -> None:
        """Wait until the connection is closed (by either side) and its socket released."""
        if self.state == "closed" and self._socket_released:
            return
        if self._released is None:
            self._released = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._released)

    def _mark_released(self) -> None:
        self._socket_released = True
        if self.state == "closed" and self._released is not None and not self._released.done():
            self._released.set_result(None)

    def _finish(self, error: TransportError | None, *, abort: bool) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        if self._idle_handle is not None:
            self._idle_handle.cancel()
            self._idle_handle = None
        task = self._task
        if task is not None and not task.done() and task is not _current_task():
            task.cancel()
        transport = self._transport
        if transport is not None:
            if abort:
                transport.abort()
            else:
                while self._pending:
                    transport.write(self._pending.popleft())
                transport.close()
        else:
            if self._accepted_sock is not None:  # closed before the accept task even started
                self._accepted_sock.close()
                self._accepted_sock = None
            self._socket_released = True  # never connected, or connection_lost came first
        self._pending.clear()
        self._pending_bytes = 0
        if self._socket_released:
            self._mark_released()
        self._owner.stream_closed(self, error)

    # -- idle timer ---------------------------------------------------------------------------

    def _arm_idle(self, delay: float | None) -> None:
        if delay is None or delay <= 0:
            return
        self._idle_handle = asyncio.get_running_loop().call_later(delay, self._check_idle)

    def _check_idle(self) -> None:
        self._idle_handle = None
        if self.state != "open" or self._idle_timeout is None:
            return
        remaining = self._last_activity + self._idle_timeout - asyncio.get_running_loop().time()
        if remaining > _TIMER_SLACK:
            self._arm_idle(remaining)
            return
        self._log.info("idle_timeout", idle_s=self._idle_timeout)
        self._finish(None, abort=False)


class StreamListener:
    """A listening TCP socket and its accept loop; ``on_accept(sock, remote)`` gets each new
    connection's socket (the TLS handshake, if any, is the connection's business)."""

    def __init__(
        self,
        sock: socket.socket,
        transport: StreamTransportName,
        on_accept: Callable[[socket.socket, Address], None],
    ) -> None:
        self.transport_name: StreamTransportName = transport
        self.local = normalize_sockaddr(sock.getsockname())
        self._sock = sock
        self._on_accept = on_accept
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._accept_loop())
        # The socket is closed only once the task is done, i.e. after the loop has stopped
        # watching it; closing it under a pending accept could confuse a reused descriptor.
        self._task.add_done_callback(lambda _: self._sock.close())

    async def _accept_loop(self) -> None:
        loop = asyncio.get_running_loop()
        where = f"{format_address(self.local)}/{self.transport_name}"
        while True:
            try:
                sock, addr = await loop.sock_accept(self._sock)
            except asyncio.CancelledError:
                raise
            except OSError as exc:
                log.warning(
                    "accept_failed",
                    transport=self.transport_name,
                    local=where,
                    error=os_error_hint(exc),
                )
                if exc.errno in _ACCEPT_RESOURCE_ERRORS:
                    await asyncio.sleep(_ACCEPT_RETRY_DELAY)
                continue
            self._on_accept(sock, normalize_sockaddr(addr))

    def close(self) -> None:
        if self._task is None:
            self._sock.close()
        else:
            self._task.cancel()

    async def wait_closed(self) -> None:
        if self._task is not None:
            await asyncio.wait([self._task])

    def __repr__(self) -> str:
        return f"<StreamListener {format_address(self.local)}/{self.transport_name}>"


async def open_stream_listener(
    host: str,
    port: int,
    transport: StreamTransportName,
    on_accept: Callable[[socket.socket, Address], None],
    ssl_context: ssl.SSLContext | None = None,
    *,
    backlog: int = 128,
) -> StreamListener:
    """Listen on ``host:port`` (port 0 = any) and start accepting.

    With ``ssl_context`` and no SNI callback of its own, a callback is installed that records the
    server name each client asks for, so that inbound :class:`PeerInfo` carries it.
    Raises :class:`TransportError` when the address cannot be bound.
    """
    if transport == "tls" and ssl_context is None:
        raise TransportError(
            f"a TLS listener on {format_address((host, port))} needs an SSL context"
        )
    try:
        family, address = await resolve_bind_address(host, port, "tcp")
    except OSError as exc:
        raise bind_error(exc, (host, port), transport) from exc
    try:
        sock = bind_socket(family, address, "tcp")
    except OSError as exc:
        raise bind_error(exc, address, transport) from exc
    try:
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise bind_error(exc, address, transport) from exc
    if ssl_context is not None and ssl_context.sni_callback is None:
        ssl_context.sni_callback = _record_sni
    listener = StreamListener(sock, transport, on_accept)
    listener.start()
    return listener


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # closing from outside the loop (after it stopped)
        return None


def _record_sni(ssl_object: Any, server_name: str | None, context: ssl.SSLContext) -> None:
    if server_name and isinstance(ssl_object, ssl.SSLObject):
        _sni_seen[ssl_object] = server_name
