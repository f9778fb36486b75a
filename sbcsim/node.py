"""A node joins one sans-I/O SIP stack to a transport, a clock and exactly one timer.

The same class runs in simulation (:class:`~sbcsim.sim.Simulator` + memory network) and live
(asyncio loop + real sockets): only the injected ``clock``, ``call_at`` and transport differ.

The stack is anything with the sans-I/O surface of the transaction layer and the UA core::

    receive(message, peer, now); transport_error(remote, transport, exc, now)
    handle_timer(now); get_timer() -> float | None
    messages_to_send() -> list[Outgoing]; next_events() -> list[event]

Bytes that fail to parse never reach the stack: a request gets the stateless error response
the parser's ``status_hint`` names (RFC 3261 §8.2 / §18.2.2), anything else is discarded and
logged.  Events drained from the stack go to ``on_event`` (the endpoint's behaviour).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import structlog

from sbcsim.clock import Clock
from sbcsim.errors import RemoteProtocolError, TransportError
from sbcsim.net.base import Address, PeerInfo, TransportLayer, TransportName
from sbcsim.sip.message import Request, Response, make_response
from sbcsim.sip.parser import DEFAULT_LIMITS, ParserLimits, parse_message

__all__ = ["Cancellable", "Node", "SansIoStack", "response_destination"]


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class _Outgoing(Protocol):
    @property
    def message(self) -> Request | Response: ...
    @property
    def remote(self) -> Address: ...
    @property
    def transport(self) -> TransportName: ...
    @property
    def connection_id(self) -> int | None: ...
    @property
    def server_name(self) -> str | None: ...


class SansIoStack(Protocol):
    def receive(self, message: Request | Response, peer: PeerInfo, now: float) -> None: ...
    def transport_error(
        self, remote: Address, transport: TransportName, exc: TransportError, now: float
    ) -> None: ...
    def handle_timer(self, now: float) -> None: ...
    def get_timer(self) -> float | None: ...
    def messages_to_send(self) -> list[Any]: ...
    def next_events(self) -> list[Any]: ...


def response_destination(request: Request, peer: PeerInfo) -> Address:
    """Where a response to ``request`` goes over an unreliable transport (§18.2.2, RFC 3581):
    the source address, and the source port when rport was asked for, else the sent-by port."""
    via = request.top_via
    if via.has_rport:
        return peer.remote
    default = 5061 if via.transport == "TLS" else 5060
    return (peer.remote[0], via.port or default)


class Node:
    """One SIP stack on one transport.  Implements :class:`~sbcsim.net.base.Receiver`."""

    def __init__(
        self,
        name: str,
        stack: SansIoStack,
        clock: Clock,
        call_at: Callable[[float, Callable[[], None]], Cancellable],
        *,
        on_event: Callable[[Any], None] | None = None,
        limits: ParserLimits = DEFAULT_LIMITS,
    ) -> None:
        self.name = name
        self.stack = stack
        self.clock = clock
        self._call_at = call_at
        self.on_event = on_event
        self.limits = limits
        self.transport: TransportLayer | None = None
        self._timer: Cancellable | None = None
        self._timer_at: float | None = None
        self._flushing = False
        self.log = structlog.get_logger("sbcsim.node").bind(node=name)
        self.discarded = 0
        #: Log every message received and sent at debug level, with ``call_id`` and ``branch``
        #: bound (off by default: it costs a log call per message on the hot path).
        self.log_messages = False

    def attach(self, transport: TransportLayer) -> None:
        self.transport = transport

    # -- Receiver ---------------------------------------------------------------------------
    def message_received(self, data: bytes, peer: PeerInfo) -> None:
        now = self.clock.now()
        try:
            msg = parse_message(data, transport=peer.transport, limits=self.limits)
        except RemoteProtocolError as exc:
            self._reject_malformed(data, peer, exc)
            return
        if self.log_messages:
            self._log_message("sip_received", msg, peer.remote, peer.transport)
        self.stack.receive(msg, peer, now)
        self.flush()

    def transport_error(
        self, remote: Address, transport: TransportName, exc: TransportError
    ) -> None:
        self.log.info(
            "transport_error", remote=f"{remote[0]}:{remote[1]}", transport=transport, error=exc.msg
        )
        self.stack.transport_error(remote, transport, exc, self.clock.now())
        self.flush()

    # -- driving the stack -------------------------------------------------------------------
    def now(self) -> float:
        return self.clock.now()

    def call_later(self, delay: float, fn: Callable[[], None]) -> Cancellable:
        """Run ``fn`` (an endpoint's behaviour) after ``delay`` seconds, then send what it queued."""

        def run() -> None:
            fn()
            self.flush()

        return self._call_at(self.clock.now() + delay, run)

    def poke(self) -> None:
        """Call after an API call on the stack (e.g. ``ua.invite(...)``) to send what it queued."""
        self.flush()

    def flush(self) -> None:
        if self._flushing:
            return
        self._flushing = True
        try:
            while True:
                out = self.stack.messages_to_send()
                events = self.stack.next_events()
                if not out and not events:
                    break
                for item in out:
                    self._send(item)
                if self.on_event is not None:
                    for event in events:
                        self.on_event(event)
        finally:
            self._flushing = False
        self._rearm()

    def _send(self, item: _Outgoing) -> None:
        if self.transport is None:
            raise RuntimeError(f"node {self.name} has no transport attached")
        if self.log_messages:
            self._log_message("sip_sent", item.message, item.remote, item.transport)
        self.transport.send(
            item.message.to_bytes(),
            item.remote,
            item.transport,
            server_name=item.server_name,
            connection_id=item.connection_id,
        )

    def _log_message(
        self, event: str, msg: Request | Response, remote: Address, transport: TransportName
    ) -> None:
        what = msg.method if isinstance(msg, Request) else str(msg.status)
        try:
            call_id: str | None = msg.call_id
            branch = msg.top_via.branch
            if isinstance(msg, Response):
                what = f"{msg.status} {msg.cseq.method}"
        except RemoteProtocolError:
            call_id = branch = None  # parsed messages were validated; ours are well formed
        self.log.bind(call_id=call_id, branch=branch).debug(
            event, message=what, remote=f"{remote[0]}:{remote[1]}", transport=transport
        )

    def _rearm(self) -> None:
        deadline = self.stack.get_timer()
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None:
            self._timer = self._call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self.stack.handle_timer(self.clock.now())
        self.flush()

    # -- malformed input ----------------------------------------------------------------------
    def _reject_malformed(self, data: bytes, peer: PeerInfo, exc: RemoteProtocolError) -> None:
        status = exc.status_hint
        request: Request | None = None
        if status is not None:
            try:
                loose = parse_message(data, transport="udp", limits=self.limits, validate=False)
                if isinstance(loose, Request) and loose.method != "ACK":
                    _ = (loose.top_via, loose.call_id, loose.cseq)
                    request = loose
            except RemoteProtocolError:
                request = None
        if request is None or status is None:
            self.discarded += 1
            self.log.warning(
                "malformed_message_discarded",
                remote=f"{peer.remote[0]}:{peer.remote[1]}",
                error=exc.msg,
            )
            return
        response = make_response(request, status, headers=list(exc.extra_headers))
        response.headers.append(
            "Warning", f'399 sbcsim "{exc.msg[:120].replace(chr(34), chr(39))}"'
        )
        self.log.info(
            "malformed_request_rejected", status=status, error=exc.msg, call_id=request.call_id
        )
        if self.transport is None:
            return
        if peer.transport == "udp":
            self.transport.send(response.to_bytes(), response_destination(request, peer), "udp")
        else:
            self.transport.send(
                response.to_bytes(), peer.remote, peer.transport, connection_id=peer.connection_id
            )
