"""An in-memory IP network for simulation: hosts, links, faults, TCP and TLS without sockets.

Every host that takes part in a simulated lab is attached with :meth:`MemoryNetwork.attach` and
gets a :class:`MemoryTransport`, which implements :class:`sbcsim.net.base.TransportLayer` exactly
like the asyncio transports do, so a node cannot tell the difference.  Everything that happens on
the wire is an event on the :class:`~sbcsim.sim.Simulator` heap, and every random choice (loss,
duplication, reordering, jitter) is drawn from ``sim.derive_rng("network")``: one seed, one run.

What is modelled, and how:

* **Links** are directed host pairs with a latency, a uniform jitter in ``[0, jitter)`` and — for
  UDP only — loss, duplication and reordering probabilities.  A reordered datagram is held back by
  ``reorder_delay`` so that datagrams sent just after it overtake it.  Unconfigured pairs use
  :attr:`MemoryNetwork.default_link`.
* **UDP**: a datagram goes from the sender's first UDP port (or an ephemeral port bound on first
  use when it listens on none) to the receiver bound on the destination address.  Nobody bound
  there means the datagram is dropped silently: ICMP port-unreachable is not modelled, just as a
  real SIP stack cannot rely on seeing it.
* **TCP** takes one round trip of link latency to connect: the client may send at ``t0 + RTT``.
  No listener means a reset arriving at exactly ``t0 + RTT``; a partition means no answer and a
  timeout after :attr:`MemoryNetwork.connect_timeout`.  Data is delivered in order, never lost or
  duplicated, with the link's base latency (no jitter) and framed with
  :class:`~sbcsim.sip.parser.StreamFramer`.  RFC 5626 CRLFCRLF pings are answered with a CRLF
  pong by the network itself, as a socket layer would.
* **TLS** adds one more round trip on top of TCP (a TLS 1.3 full handshake).  The server shows its
  :class:`~sbcsim.net.base.TlsIdentity`; the client rejects it if it is not ``valid``, if its
  ``trusted`` predicate says no, or — when the client gave a ``server_name`` (SNI) — if no name
  in it matches (exact, or a ``*.example.com`` wildcard standing for exactly one leftmost label).
  A server with ``require_client_cert=True`` requests the client's identity and rejects a missing,
  invalid or untrusted one.  A server that does not ask for a certificate never sees one, as in
  real TLS.  A failed handshake closes the connection and reports ``transport_error`` on both
  sides; nothing queued is delivered.
* **Partitions** block traffic between two hosts and break every connection between them at
  once: both ends get ``transport_error``.
* **Closing** a transport (or a framing error) closes its connections; the peer learns it one
  latency later, behind the data still in flight, as a ``transport_error`` ("closed by the
  peer") — the only way the :class:`~sbcsim.net.base.Receiver` interface has to say so.
* **Rules** (:meth:`MemoryNetwork.add_rule`) drop, duplicate or delay chosen packets ("drop the
  first INVITE").  They apply to every transport; on a stream a dropped message simply never
  reaches the peer's SIP layer and a delayed one holds back everything sent after it.

The receiver is never called from inside :meth:`MemoryTransport.send`, ``close()`` or
:meth:`MemoryNetwork.partition`: every callback runs as a simulator event.

:attr:`MemoryNetwork.capture` records every packet handed to the network, in send order, with its
arrival time — or ``dropped=True`` and the reason — enough to write a pcap or draw a ladder.
TLS payloads are captured in the clear, like a capture taken with the session keys.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from sbcsim.errors import ConfigError, RemoteProtocolError, TransportError
from sbcsim.net.base import (
    Address,
    PeerInfo,
    Receiver,
    TlsIdentity,
    TransportLayer,
    TransportName,
)
from sbcsim.net.names import name_matches
from sbcsim.sim import Simulator, TimerHandle
from sbcsim.sip.parser import ParserLimits, StreamFramer

__all__ = [
    "CapturedPacket",
    "Fault",
    "FaultRule",
    "LinkProfile",
    "MemoryNetwork",
    "MemoryTransport",
    "Packet",
    "RuleAction",
    "identity_matches",
    "request_method",
    "response_status",
]

RuleAction = Literal["drop", "duplicate", "delay"]

#: Why a captured packet was dropped, or what happened to a delivered one.
Fault = Literal[
    "loss",  # random loss on the link (UDP)
    "duplicate",  # this is the extra copy of a randomly duplicated datagram
    "reorder",  # held back by reorder_delay (UDP)
    "partition",  # the hosts are partitioned
    "no_listener",  # nobody bound the destination (UDP) on arrival
    "rule_drop",  # dropped by a rule
    "rule_duplicate",  # the extra copy made by a rule
    "rule_delay",  # delayed by a rule
    "connection_closed",  # arrived on a connection that was already closed
    "connect_failed",  # queued for a connection that never came up
]

_DROP_FAULTS = frozenset(
    {"loss", "partition", "no_listener", "rule_drop", "connection_closed", "connect_failed"}
)

EPHEMERAL_PORTS = range(49152, 65536)
_PONG = b"\r\n"


@dataclass(frozen=True, slots=True)
class Packet:
    """One SIP message (or keep-alive) handed to the network: what a rule predicate sees.

    ``time`` is when it was sent; ``connection_id`` is None for UDP.
    """

    time: float
    src: Address
    dst: Address
    transport: TransportName
    data: bytes
    connection_id: int | None = None


@dataclass(frozen=True, slots=True)
class CapturedPacket(Packet):
    """A :class:`Packet` as recorded in :attr:`MemoryNetwork.capture`.

    ``arrival`` is when it reached the receiving host (None when dropped); ``fault`` says why it
    was dropped, or marks a delivered packet that was reordered, delayed or duplicated.
    """

    arrival: float | None = None
    dropped: bool = False
    fault: Fault | None = None


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """The behaviour of one direction of a link between two hosts.

    ``loss``, ``duplicate`` and ``reorder`` are probabilities per UDP datagram; streams only
    suffer ``latency``.
    """

    latency: float = 0.001
    jitter: float = 0.0
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.01

    def __post_init__(self) -> None:
        for name in ("latency", "jitter", "reorder_delay"):
            value = getattr(self, name)
            if not 0.0 <= value < float("inf"):
                raise ConfigError(f"link {name} must be a finite number >= 0, got {value!r}")
        for name in ("loss", "duplicate", "reorder"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"link {name} must be a probability in [0, 1], got {value!r}")


class FaultRule:
    """A scripted fault: the first ``count`` packets matching ``predicate`` get ``action``.

    ``count=None`` applies it forever.  ``hits`` counts the packets it acted on.
    """

    __slots__ = ("action", "delay", "hits", "predicate", "remaining")

    def __init__(
        self,
        predicate: Callable[[Packet], bool],
        action: RuleAction,
        count: int | None,
        delay: float,
    ) -> None:
        self.predicate = predicate
        self.action: RuleAction = action
        self.remaining = count
        self.delay = delay
        self.hits = 0

    @property
    def exhausted(self) -> bool:
        """True once the rule has acted ``count`` times."""
        return self.remaining is not None and self.remaining <= 0

    def __repr__(self) -> str:
        return f"<FaultRule {self.action} hits={self.hits} remaining={self.remaining}>"


def request_method(method: str) -> Callable[[Packet], bool]:
    """A rule predicate matching SIP requests of ``method`` (``"INVITE"``)."""
    prefix = method.encode("ascii") + b" "
    return lambda packet: packet.data.startswith(prefix)


def response_status(status: int) -> Callable[[Packet], bool]:
    """A rule predicate matching SIP responses with status code ``status``."""
    prefix = b"SIP/2.0 %d " % status
    return lambda packet: packet.data.startswith(prefix)


def identity_matches(identity: TlsIdentity, server_name: str) -> bool:
    """Whether a certificate carrying ``identity`` is valid for the host name ``server_name``."""
    return any(name_matches(pattern, server_name) for pattern in identity.names)


def _check_identity(
    identity: TlsIdentity | None,
    trusted: Callable[[TlsIdentity], bool] | None,
    whose: str,
) -> str | None:
    """The reason a peer certificate is unacceptable, or None if it is fine."""
    if identity is None:
        return f"no {whose} certificate"
    if not identity.valid:
        return f"{whose} certificate {list(identity.names)} failed validation"
    if trusted is not None and not trusted(identity):
        return f"{whose} certificate {list(identity.names)} is not trusted"
    return None


_EndState = Literal["connecting", "open", "closed"]


class _Connection:
    """One TCP or TLS connection; holds both ends once the server has accepted."""

    __slots__ = ("client", "id", "server", "server_name", "timeout", "transport")

    def __init__(self, conn_id: int, transport: TransportName, server_name: str | None) -> None:
        self.id = conn_id
        self.transport: TransportName = transport
        self.server_name = server_name
        self.client: _End | None = None
        self.server: _End | None = None
        self.timeout: TimerHandle | None = None


class _End:
    """One side of a connection, owned by the transport of the host it lives on."""

    __slots__ = (
        "conn",
        "framer",
        "info",
        "is_client",
        "last_arrival",
        "local",
        "owner",
        "peer_identity",
        "queue",
        "remote",
        "state",
    )

    def __init__(
        self,
        conn: _Connection,
        owner: MemoryTransport,
        local: Address,
        remote: Address,
        is_client: bool,
        limits: ParserLimits | None,
    ) -> None:
        self.conn = conn
        self.owner = owner
        self.local = local
        self.remote = remote
        self.is_client = is_client
        self.state: _EndState = "connecting"
        self.framer = StreamFramer(limits)
        self.peer_identity: TlsIdentity | None = None
        self.queue: list[bytes] = []
        self.last_arrival = 0.0  # of data travelling *towards* this end, to keep it in order
        self.info: PeerInfo | None = None

    @property
    def peer(self) -> _End | None:
        return self.conn.server if self.is_client else self.conn.client

    def peer_info(self) -> PeerInfo:
        # PeerInfo is immutable, so one instance serves every message on the connection.
        if self.info is None:
            conn = self.conn
            self.info = PeerInfo(
                transport=conn.transport,
                local=self.local,
                remote=self.remote,
                connection_id=conn.id,
                peer_identity=self.peer_identity,
                server_name=conn.server_name,
            )
        return self.info


class MemoryTransport:
    """The transports of one attached host: implements :class:`~sbcsim.net.base.TransportLayer`.

    It listens on every port given to :meth:`MemoryNetwork.attach` and opens client connections
    from ephemeral ports (49152 and up) on demand.  UDP is sent from the first UDP port.
    """

    def __init__(
        self,
        network: MemoryNetwork,
        host: str,
        receiver: Receiver,
        listening: tuple[tuple[TransportName, Address], ...],
        identity: TlsIdentity | None,
        require_client_cert: bool,
        trusted: Callable[[TlsIdentity], bool] | None,
    ) -> None:
        self.network = network
        self.host = host
        self.receiver = receiver
        self.listening = listening
        self.identity = identity
        self.require_client_cert = require_client_cert
        self.trusted = trusted
        self.closed = False
        self._udp_source: Address | None = next(
            (addr for name, addr in listening if name == "udp"), None
        )
        self._ends_by_key: dict[tuple[Address, TransportName], _End] = {}
        self._ends_by_id: dict[int, _End] = {}

    @property
    def local(self) -> tuple[Address, ...]:
        """Every (host, port) this transport listens on, without repeats, UDP ports first."""
        return tuple(dict.fromkeys(addr for _, addr in self.listening))

    def address(self, transport: TransportName) -> Address:
        """The first address listening for ``transport`` (for Via and Contact headers)."""
        for name, addr in self.listening:
            if name == transport:
                return addr
        raise LookupError(f"{self.host} does not listen on {transport}")

    def connections(self) -> list[PeerInfo]:
        """The open connections of this host, oldest first."""
        return [end.peer_info() for end in self._ends_by_id.values() if end.state == "open"]

    def send(
        self,
        data: bytes,
        remote: Address,
        transport: TransportName,
        *,
        server_name: str | None = None,
        connection_id: int | None = None,
    ) -> None:
        """Send one SIP message; see :meth:`sbcsim.net.base.TransportLayer.send`.

        Over TCP/TLS a ``connection_id`` that is unknown or closed is ignored and the message goes
        over a connection to ``remote`` instead (RFC 3261 §18.2.2: a response whose connection
        is gone is sent over a new one).
        """
        network = self.network
        if self.closed:
            network._report(
                self, remote, transport, TransportError("transport is closed", address=remote)
            )
        elif transport == "udp":
            network._send_udp(self, data, remote)
        else:
            network._send_stream(self, data, remote, transport, server_name, connection_id)

    def close_connection(self, connection_id: int) -> bool:
        """Close one TCP/TLS connection of this host, as a server that drops a peer it refuses
        (the Microsoft proxies close the TLS connection of an SBC whose certificate does not
        match its Contact).  The peer sees the close after one latency, behind data in flight.
        Returns False when no open connection has that id."""
        end = self._ends_by_id.get(connection_id)
        if end is None or end.state == "closed":
            return False
        self.network._close_end(end, None, send_fin=True)
        return True

    def close(self) -> None:
        """Stop listening and close every connection; peers see the close after one latency."""
        if self.closed:
            return
        self.closed = True
        self.network._detach(self)
        for end in list(self._ends_by_id.values()):
            self.network._close_end(end, None, send_fin=True)

    def _register(self, end: _End) -> None:
        self._ends_by_key.setdefault((end.remote, end.conn.transport), end)
        self._ends_by_id[end.conn.id] = end

    def _unregister(self, end: _End) -> None:
        key = (end.remote, end.conn.transport)
        if self._ends_by_key.get(key) is end:
            del self._ends_by_key[key]
        self._ends_by_id.pop(end.conn.id, None)

    def __repr__(self) -> str:
        state = " closed" if self.closed else ""
        return f"<MemoryTransport {self.host} {list(self.listening)}{state}>"


class MemoryNetwork:
    """A simulated IP network between attached hosts; see the module docstring for the model."""

    def __init__(
        self,
        sim: Simulator,
        *,
        default_latency: float = 0.001,
        connect_timeout: float = 2.0,
        parser_limits: ParserLimits | None = None,
    ) -> None:
        self.sim = sim
        self.default_link = LinkProfile(latency=default_latency)
        if not 0.0 < connect_timeout < float("inf"):
            raise ConfigError(
                f"connect_timeout must be positive and finite, got {connect_timeout!r}"
            )
        self.connect_timeout = connect_timeout
        self.parser_limits = parser_limits
        self.capture: list[CapturedPacket] = []
        self.rules: list[FaultRule] = []
        self._rng = sim.derive_rng("network")
        self._links: dict[tuple[str, str], LinkProfile] = {}
        self._blocked: set[tuple[str, str]] = set()
        self._udp: dict[Address, MemoryTransport] = {}
        self._stream: dict[Address, tuple[MemoryTransport, TransportName]] = {}
        self._ephemeral_in_use: set[Address] = set()
        self._next_ephemeral: dict[str, int] = {}
        self._connections: dict[int, _Connection] = {}
        self._next_connection_id = 1

    # -- topology -------------------------------------------------------------------------------

    def attach(
        self,
        host_ip: str,
        receiver: Receiver,
        *,
        udp_ports: Iterable[int] = (5060,),
        tcp_ports: Iterable[int] = (),
        tls_ports: Iterable[int] = (),
        tls_identity: TlsIdentity | None = None,
        require_client_cert: bool = False,
        trusted: Callable[[TlsIdentity], bool] | None = None,
    ) -> MemoryTransport:
        """Put a host on the network, listening on the given ports, and return its transport.

        ``tls_identity`` is this host's certificate, shown as a server and — when asked — as a
        client; ``trusted`` decides which peer certificates it accepts (any valid one if None).
        A host address may be attached several times with different ports.
        """
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise ConfigError(f"host address must be an IP address, got {host_ip!r}") from None
        udp, tcp, tls = tuple(udp_ports), tuple(tcp_ports), tuple(tls_ports)
        if tls and tls_identity is None:
            raise ConfigError(f"{host_ip} listens on TLS ports {list(tls)} without a tls_identity")
        listening: list[tuple[TransportName, Address]] = []
        seen_udp: set[int] = set()
        seen_stream: set[int] = set()
        groups: tuple[tuple[TransportName, tuple[int, ...]], ...] = (
            ("udp", udp),
            ("tcp", tcp),
            ("tls", tls),
        )
        for name, ports in groups:
            is_udp = name == "udp"
            seen = seen_udp if is_udp else seen_stream
            for port in ports:
                if not 0 < port < 65536:
                    raise ConfigError(f"invalid port {port!r} for {host_ip}")
                addr = (host_ip, port)
                taken = addr in self._udp if is_udp else addr in self._stream
                if port in seen or taken or addr in self._ephemeral_in_use:
                    raise ConfigError(f"{name} address {_fmt(addr)} is already in use")
                seen.add(port)
                listening.append((name, addr))
        transport = MemoryTransport(
            self, host_ip, receiver, tuple(listening), tls_identity, require_client_cert, trusted
        )
        for name, addr in listening:
            if name == "udp":
                self._udp[addr] = transport
            else:
                self._stream[addr] = (transport, name)
        return transport

    def set_link(
        self,
        a: str,
        b: str,
        *,
        latency: float = 0.001,
        jitter: float = 0.0,
        loss: float = 0.0,
        duplicate: float = 0.0,
        reorder: float = 0.0,
        reorder_delay: float = 0.01,
        one_way: bool = False,
    ) -> LinkProfile:
        """Configure the link from host ``a`` to host ``b`` (and back, unless ``one_way``)."""
        profile = LinkProfile(latency, jitter, loss, duplicate, reorder, reorder_delay)
        self._links[(a, b)] = profile
        if not one_way:
            self._links[(b, a)] = profile
        return profile

    def link(self, src_host: str, dst_host: str) -> LinkProfile:
        """The profile used from ``src_host`` to ``dst_host``."""
        return self._links.get((src_host, dst_host), self.default_link)

    def partition(self, a: str, b: str, *, one_way: bool = False) -> None:
        """Cut traffic between hosts ``a`` and ``b`` (only ``a`` to ``b`` if ``one_way``).

        Every connection between the two hosts breaks now, in either case (TCP needs both
        directions); both ends get ``transport_error``.
        """
        self._blocked.add((a, b))
        if not one_way:
            self._blocked.add((b, a))
        for conn in list(self._connections.values()):
            client = conn.client
            assert client is not None
            hosts = {client.local[0], client.remote[0]}
            if hosts != {a, b}:
                continue
            message = f"connection {conn.id} broken by a network partition between {a} and {b}"
            for end in (client, conn.server):
                if end is not None and end.state != "closed":
                    error = TransportError(message, address=end.remote)
                    notify = end.is_client or end.state == "open"
                    self._close_end(end, error if notify else None, send_fin=False)

    def heal(self, a: str, b: str, *, one_way: bool = False) -> None:
        """Undo :meth:`partition` (new connections can be made again; broken ones stay broken)."""
        self._blocked.discard((a, b))
        if not one_way:
            self._blocked.discard((b, a))

    def is_partitioned(self, src_host: str, dst_host: str) -> bool:
        """Whether traffic from ``src_host`` to ``dst_host`` is currently cut."""
        return (src_host, dst_host) in self._blocked

    def add_rule(
        self,
        predicate: Callable[[Packet], bool],
        action: RuleAction = "drop",
        *,
        count: int | None = 1,
        delay: float = 0.0,
    ) -> FaultRule:
        """Apply ``action`` to the first ``count`` packets for which ``predicate`` is true.

        Rules are tried in the order they were added and at most one acts on a packet.
        ``delay`` (seconds) is only used by ``action="delay"``.
        """
        if action not in ("drop", "duplicate", "delay"):
            raise ConfigError(f"unknown rule action {action!r}")
        if count is not None and count < 1:
            raise ConfigError(f"rule count must be at least 1 or None, got {count!r}")
        if not 0.0 <= delay < float("inf"):
            raise ConfigError(f"rule delay must be a finite number >= 0, got {delay!r}")
        rule = FaultRule(predicate, action, count, delay)
        self.rules.append(rule)
        return rule

    def remove_rule(self, rule: FaultRule) -> None:
        """Stop applying ``rule``."""
        self.rules.remove(rule)

    # -- UDP ------------------------------------------------------------------------------------

    def _send_udp(self, transport: MemoryTransport, data: bytes, remote: Address) -> None:
        src = transport._udp_source
        if src is None:
            try:
                src = self._bind_udp_source(transport)
            except TransportError as exc:
                self._report(transport, remote, "udp", exc)
                return
        now = self.sim.clock.now()
        src_host, dst_host = src[0], remote[0]
        capture = self.capture
        if self._blocked and (src_host, dst_host) in self._blocked:
            capture.append(
                CapturedPacket(now, src, remote, "udp", data, None, None, True, "partition")
            )
            return
        extra = 0.0
        fault: Fault | None = None
        copy_fault: Fault | None = None
        if self.rules:
            rule = self._match_rule(Packet(now, src, remote, "udp", data))
            if rule is not None:
                if rule.action == "drop":
                    capture.append(
                        CapturedPacket(now, src, remote, "udp", data, None, None, True, "rule_drop")
                    )
                    return
                if rule.action == "delay":
                    extra = rule.delay
                    fault = "rule_delay"
                else:
                    copy_fault = "rule_duplicate"
        link = self._links.get((src_host, dst_host), self.default_link)
        rng = self._rng
        if link.loss and rng.random() < link.loss:
            capture.append(CapturedPacket(now, src, remote, "udp", data, None, None, True, "loss"))
            return
        if link.duplicate and rng.random() < link.duplicate and copy_fault is None:
            copy_fault = "duplicate"
        delay = link.latency + extra
        if link.jitter:
            delay += rng.random() * link.jitter
        if link.reorder and rng.random() < link.reorder:
            delay += link.reorder_delay
            fault = fault or "reorder"
        arrival = now + delay
        self._emit_udp(CapturedPacket(now, src, remote, "udp", data, None, arrival, False, fault))
        if copy_fault is not None:
            self._emit_udp(
                CapturedPacket(now, src, remote, "udp", data, None, arrival, False, copy_fault)
            )

    def _emit_udp(self, entry: CapturedPacket) -> None:
        index = len(self.capture)
        self.capture.append(entry)
        assert entry.arrival is not None
        self.sim.call_at(entry.arrival, self._deliver_udp, entry, index)

    def _deliver_udp(self, entry: CapturedPacket, index: int) -> None:
        transport = self._udp.get(entry.dst)
        if transport is None:
            self._mark_dropped(entry, index, "no_listener")
            return
        transport.receiver.message_received(entry.data, PeerInfo("udp", entry.dst, entry.src))

    def _bind_udp_source(self, transport: MemoryTransport) -> Address:
        addr = self._allocate_ephemeral(transport.host)
        transport._udp_source = addr
        self._udp[addr] = transport
        return addr

    # -- TCP / TLS ------------------------------------------------------------------------------

    def _send_stream(
        self,
        transport: MemoryTransport,
        data: bytes,
        remote: Address,
        name: TransportName,
        server_name: str | None,
        connection_id: int | None,
    ) -> None:
        end: _End | None = None
        if connection_id is not None:
            end = transport._ends_by_id.get(connection_id)
            if end is not None and (end.state == "closed" or end.conn.transport != name):
                end = None
        if end is None:
            end = transport._ends_by_key.get((remote, name))
        if end is None:
            try:
                end = self._connect(transport, remote, name, server_name)
            except TransportError as exc:
                self._report(transport, remote, name, exc)
                return
        if not data:
            return
        if end.state == "open":
            self._transmit(end, data)
        else:
            end.queue.append(data)

    def _connect(
        self,
        transport: MemoryTransport,
        remote: Address,
        name: TransportName,
        server_name: str | None,
    ) -> _End:
        local = self._allocate_ephemeral(transport.host)
        conn = _Connection(self._next_connection_id, name, server_name if name == "tls" else None)
        self._next_connection_id += 1
        client = _End(conn, transport, local, remote, True, self.parser_limits)
        conn.client = client
        transport._register(client)
        self._connections[conn.id] = conn
        conn.timeout = self.sim.call_later(self.connect_timeout, self._connect_timed_out, conn)
        self._signal(local[0], remote[0], self._syn_arrived, conn)  # SYN
        return client

    def _signal(
        self, src_host: str, dst_host: str, step: Callable[[_Connection], None], conn: _Connection
    ) -> None:
        """Carry one handshake message; lost without trace across a partition."""
        if self._blocked and (src_host, dst_host) in self._blocked:
            return
        latency = self._links.get((src_host, dst_host), self.default_link).latency
        self.sim.call_at(self.sim.clock.now() + latency, step, conn)

    def _syn_arrived(self, conn: _Connection) -> None:
        client = conn.client
        assert client is not None
        if client.state == "closed":
            return
        listener = self._stream.get(client.remote)
        server_host = client.remote[0]
        if listener is None:
            self._signal(server_host, client.local[0], self._refused, conn)  # RST
            return
        server_transport, listening_for = listener
        if listening_for != conn.transport:
            self._signal(server_host, client.local[0], self._mismatched, conn)
            return
        server = _End(
            conn, server_transport, client.remote, client.local, False, self.parser_limits
        )
        conn.server = server
        server_transport._register(server)
        if conn.transport == "tcp":
            self._open(server)
        self._signal(server_host, client.local[0], self._syn_ack_arrived, conn)

    def _refused(self, conn: _Connection) -> None:
        client = conn.client
        assert client is not None
        if client.state == "connecting":
            self._fail_connect(
                conn,
                TransportError(
                    f"connection to {_fmt(client.remote)} refused", address=client.remote
                ),
            )

    def _mismatched(self, conn: _Connection) -> None:
        client = conn.client
        assert client is not None
        if client.state == "connecting":
            other = "TCP" if conn.transport == "tls" else "TLS"
            message = f"{conn.transport.upper()} connection to {_fmt(client.remote)} failed: it expects {other}"
            self._fail_connect(conn, TransportError(message, address=client.remote))

    def _syn_ack_arrived(self, conn: _Connection) -> None:
        client = conn.client
        assert client is not None
        if client.state != "connecting":
            return
        if conn.transport == "tcp":
            self._open(client)
        else:  # ClientHello, with SNI
            self._signal(client.local[0], client.remote[0], self._client_hello_arrived, conn)

    def _client_hello_arrived(self, conn: _Connection) -> None:
        server = conn.server
        assert server is not None
        if server.state != "closed":  # ServerHello, certificate (and a certificate request)
            self._signal(server.local[0], server.remote[0], self._server_hello_arrived, conn)

    def _server_hello_arrived(self, conn: _Connection) -> None:
        client, server = conn.client, conn.server
        assert client is not None and server is not None
        if client.state != "connecting":
            return
        identity = server.owner.identity
        problem = _check_identity(identity, client.owner.trusted, "server")
        if problem is None and conn.server_name is not None:
            assert identity is not None
            if not identity_matches(identity, conn.server_name):
                problem = (
                    f"server certificate {list(identity.names)} does not match {conn.server_name!r}"
                )
        if problem is not None:
            self._fail_connect(conn, _tls_error(client, problem), notify_server=True)
            return
        client.peer_identity = identity
        # Certificate (if requested) and Finished go first, then the queued data behind them.
        self._signal(client.local[0], client.remote[0], self._client_finished_arrived, conn)
        self._open(client)

    def _client_finished_arrived(self, conn: _Connection) -> None:
        client, server = conn.client, conn.server
        assert client is not None and server is not None
        if server.state != "connecting":
            return
        if server.owner.require_client_cert:
            identity = client.owner.identity
            problem = _check_identity(identity, server.owner.trusted, "client")
            if problem is not None:
                self._close_end(server, _tls_error(server, problem), send_fin=False)
                if client.state != "closed":
                    self._signal(server.local[0], server.remote[0], self._alert_arrived, conn)
                return
            server.peer_identity = identity
        self._open(server)

    def _alert_arrived(self, conn: _Connection) -> None:
        client = conn.client
        assert client is not None
        self._close_end(client, _tls_error(client, "rejected by the server"), send_fin=False)

    def _server_alert_arrived(self, conn: _Connection) -> None:
        server = conn.server
        assert server is not None
        self._close_end(server, _tls_error(server, "rejected by the client"), send_fin=False)

    def _connect_timed_out(self, conn: _Connection) -> None:
        client = conn.client
        assert client is not None
        if client.state == "connecting":
            message = f"connection to {_fmt(client.remote)} timed out"
            self._fail_connect(conn, TransportError(message, address=client.remote))

    def _fail_connect(
        self, conn: _Connection, error: TransportError, *, notify_server: bool = False
    ) -> None:
        client, server = conn.client, conn.server
        assert client is not None
        self._close_end(client, error, send_fin=False)
        if server is not None and server.state != "closed":
            if notify_server:  # the client's alert reaches the server one latency later
                self._signal(client.local[0], client.remote[0], self._server_alert_arrived, conn)
            else:
                self._close_end(server, None, send_fin=False)

    def _open(self, end: _End) -> None:
        end.state = "open"
        if end.is_client and end.conn.timeout is not None:
            end.conn.timeout.cancel()
            end.conn.timeout = None
        queue, end.queue = end.queue, []
        for data in queue:
            self._transmit(end, data)

    def _transmit(self, end: _End, data: bytes) -> None:
        peer = end.peer
        assert peer is not None
        conn = end.conn
        now = self.sim.clock.now()
        src, dst = end.local, end.remote
        extra = 0.0
        fault: Fault | None = None
        copies = 1
        if self.rules:
            rule = self._match_rule(Packet(now, src, dst, conn.transport, data, conn.id))
            if rule is not None:
                if rule.action == "drop":
                    self.capture.append(
                        CapturedPacket(
                            now, src, dst, conn.transport, data, conn.id, None, True, "rule_drop"
                        )
                    )
                    return
                if rule.action == "delay":
                    extra = rule.delay
                    fault = "rule_delay"
                else:
                    copies = 2
        latency = self._links.get((src[0], dst[0]), self.default_link).latency
        arrival = max(now + latency + extra, peer.last_arrival)
        peer.last_arrival = arrival
        for copy in range(copies):
            entry = CapturedPacket(
                now,
                src,
                dst,
                conn.transport,
                data,
                conn.id,
                arrival,
                False,
                "rule_duplicate" if copy else fault,
            )
            index = len(self.capture)
            self.capture.append(entry)
            self.sim.call_at(arrival, self._deliver_stream, peer, entry, index)

    def _deliver_stream(self, end: _End, entry: CapturedPacket, index: int) -> None:
        if end.state != "open":
            self._mark_dropped(entry, index, "connection_closed")
            return
        try:
            items = end.framer.feed(entry.data)
        except RemoteProtocolError as exc:
            # The stream cannot be resynchronised (RFC 3261 §18.3): drop the connection.
            self._close_end(
                end, TransportError(f"framing error: {exc.msg}", address=end.remote), send_fin=True
            )
            return
        info = end.peer_info()
        receiver = end.owner.receiver
        for item in items:
            if end.state != "open":  # the receiver closed the transport meanwhile
                return
            if isinstance(item, bytes):
                receiver.message_received(item, info)
            elif item.pong_required:
                self._transmit(end, _PONG)

    def _close_end(self, end: _End, error: TransportError | None, *, send_fin: bool) -> None:
        """Close one end now; report ``error`` to its owner; optionally tell the peer (FIN)."""
        if end.state == "closed":
            return
        end.state = "closed"
        end.owner._unregister(end)
        conn = end.conn
        if end.is_client:
            self._ephemeral_in_use.discard(end.local)
            if conn.timeout is not None:
                conn.timeout.cancel()
                conn.timeout = None
        if end.queue:
            now = self.sim.clock.now()
            for data in end.queue:
                self.capture.append(
                    CapturedPacket(
                        now,
                        end.local,
                        end.remote,
                        conn.transport,
                        data,
                        conn.id,
                        None,
                        True,
                        "connect_failed",
                    )
                )
            end.queue = []
        if error is not None:
            self._report(end.owner, end.remote, conn.transport, error)
        peer = end.peer
        if send_fin and peer is not None and peer.state != "closed":
            if peer.state == "connecting" and not peer.is_client:
                # A server half-way through a handshake the client gave up on: it never told
                # its node about the connection, so it just goes away.
                self._close_end(peer, None, send_fin=False)
            else:
                self._send_fin(end, peer)
        if all(e is None or e.state == "closed" for e in (conn.client, conn.server)):
            self._connections.pop(conn.id, None)

    def _send_fin(self, end: _End, peer: _End) -> None:
        """The close reaches the peer one latency later, behind any data still in flight."""
        src_host, dst_host = end.local[0], end.remote[0]
        if self._blocked and (src_host, dst_host) in self._blocked:
            return
        latency = self._links.get((src_host, dst_host), self.default_link).latency
        arrival = max(self.sim.clock.now() + latency, peer.last_arrival)
        peer.last_arrival = arrival
        self.sim.call_at(arrival, self._fin_arrived, peer)

    def _fin_arrived(self, end: _End) -> None:
        error = TransportError(f"connection {end.conn.id} closed by the peer", address=end.remote)
        self._close_end(end, error, send_fin=False)

    # -- shared ---------------------------------------------------------------------------------

    def _report(
        self,
        transport: MemoryTransport,
        remote: Address,
        name: TransportName,
        error: TransportError,
    ) -> None:
        self.sim.call_soon(transport.receiver.transport_error, remote, name, error)

    def _match_rule(self, packet: Packet) -> FaultRule | None:
        for rule in self.rules:
            if not rule.exhausted and rule.predicate(packet):
                rule.hits += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                return rule
        return None

    def _mark_dropped(self, entry: CapturedPacket, index: int, fault: Fault) -> None:
        capture = self.capture
        if index < len(capture) and capture[index] is entry:
            capture[index] = replace(entry, arrival=None, dropped=True, fault=fault)

    def _allocate_ephemeral(self, host: str) -> Address:
        start = self._next_ephemeral.get(host, EPHEMERAL_PORTS.start)
        port = start
        while True:
            addr = (host, port)
            if (
                addr not in self._ephemeral_in_use
                and addr not in self._udp
                and addr not in self._stream
            ):
                break
            port = port + 1 if port + 1 < EPHEMERAL_PORTS.stop else EPHEMERAL_PORTS.start
            if port == start:
                raise TransportError(f"no ephemeral port left on {host}", address=addr)
        self._next_ephemeral[host] = (
            port + 1 if port + 1 < EPHEMERAL_PORTS.stop else EPHEMERAL_PORTS.start
        )
        self._ephemeral_in_use.add(addr)
        return addr

    def _detach(self, transport: MemoryTransport) -> None:
        for name, addr in transport.listening:
            if name == "udp":
                self._udp.pop(addr, None)
            else:
                self._stream.pop(addr, None)
        source = transport._udp_source
        if source is not None and self._udp.get(source) is transport:
            del self._udp[source]
            self._ephemeral_in_use.discard(source)


if TYPE_CHECKING:

    def _is_a_transport_layer(transport: MemoryTransport) -> TransportLayer:
        return transport  # mypy proves MemoryTransport implements the interface


def _fmt(addr: Address) -> str:
    host, port = addr
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _tls_error(end: _End, problem: str) -> TransportError:
    return TransportError(
        f"TLS handshake with {_fmt(end.remote)} failed: {problem}", address=end.remote
    )
