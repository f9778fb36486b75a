"""Two user agents over the simulated network (TLS with latency), driven by the Simulator.

The pump tests use instant delivery; this one checks the UA core against real transport
behaviour: a response goes back on the connection its request came in on, in-dialog requests
open connections to the Contact, and virtual time is exact through connection set-up latency.
"""

from __future__ import annotations

from sbcsim.dialog import (
    CallEnded,
    CallEstablished,
    IncomingCall,
    SessionRefreshed,
    SessionTimerConfig,
    UaEvent,
    UserAgent,
)
from sbcsim.errors import TransportError
from sbcsim.net.base import Address, PeerInfo, TlsIdentity, TransportName
from sbcsim.net.memory import LinkProfile, MemoryNetwork
from sbcsim.sim import Simulator, TimerHandle
from sbcsim.sip import parse_message
from sbcsim.sip.uri import SipUri

LATENCY = 0.25  # exact in binary floating point, so times compare with ==


class MiniNode:
    """The least a node does: bytes <-> UserAgent, and one simulator timer for get_timer()."""

    def __init__(self, sim: Simulator, network: MemoryNetwork, name: str, host: str) -> None:
        self.sim = sim
        self.ua = UserAgent(
            ids=sim.ids,
            random=sim.derive_rng(name).random,
            contact=SipUri(user_raw=name, host=host, port=5061, params=(("transport", "tls"),)),
            sent_by=f"{host}:5061",
            transport="tls",
            session_timer=SessionTimerConfig(session_expires=120, min_se=90),
            name=name,
        )
        self.transport = network.attach(
            host,
            self,
            udp_ports=(),
            tls_ports=(5061,),
            tls_identity=TlsIdentity((f"{name}.example.com",)),
        )
        self.events: list[tuple[float, UaEvent]] = []
        self.received: list[tuple[float, str, PeerInfo]] = []
        self._timer: TimerHandle | None = None

    def message_received(self, data: bytes, peer: PeerInfo) -> None:
        message = parse_message(data, transport=peer.transport)
        first = data.split(b"\r\n", 1)[0].decode()
        self.received.append((self.sim.now(), first, peer))
        self.ua.receive(message, peer, self.sim.now())
        self.pump()

    def transport_error(
        self, remote: Address, transport: TransportName, exc: TransportError
    ) -> None:
        self.ua.transport_error(remote, transport, exc, self.sim.now())
        self.pump()

    def pump(self) -> None:
        for out in self.ua.messages_to_send():
            self.transport.send(
                out.message.to_bytes(),
                out.remote,
                out.transport,
                server_name=out.server_name,
                connection_id=out.connection_id,
            )
        now = self.sim.now()
        self.events += [(now, ev) for ev in self.ua.next_events()]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.ua.get_timer()
        if deadline is not None:
            self._timer = self.sim.call_at(deadline, self._fire)

    def _fire(self) -> None:
        self._timer = None
        self.ua.handle_timer(self.sim.now())
        self.pump()

    def of(self, kind: type) -> list[tuple[float, UaEvent]]:
        return [(t, ev) for t, ev in self.events if isinstance(ev, kind)]


def test_tls_call_refresh_and_bye_at_exact_times() -> None:
    sim = Simulator(seed=7)
    network = MemoryNetwork(sim)
    network.default_link = LinkProfile(latency=LATENCY)
    alice = MiniNode(sim, network, "alice", "10.0.0.1")
    bob = MiniNode(sim, network, "bob", "10.0.0.2")
    call = alice.ua.invite(
        "sip:bob@bob.example.com;transport=tls",
        from_="<sip:alice@example.com>",
        to="<sip:bob@example.com>",
        remote=("10.0.0.2", 5061),
        server_name="bob.example.com",
        sdp=b"v=0\r\no=a 1 1 IN IP4 10.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n",
        now=0.0,
    )
    alice.pump()
    assert sim.run_until(lambda: bool(bob.of(IncomingCall)), timeout=10.0)
    # TCP connect (one round trip) + TLS handshake (another) + the INVITE (one way)
    assert sim.now() == 5 * LATENCY
    incoming = bob.of(IncomingCall)[0][1]
    assert isinstance(incoming, IncomingCall)
    bob.ua.respond(
        incoming.call,
        200,
        sdp=b"v=0\r\no=b 2 1 IN IP4 10.0.0.2\r\ns=-\r\nt=0 0\r\nm=audio 5000 RTP/AVP 0\r\n",
        now=sim.now(),
    )
    bob.pump()
    sim.run_for(100.0)
    assert [t for t, _ in alice.of(CallEstablished)] == [6 * LATENCY]
    assert [t for t, _ in bob.of(CallEstablished)] == [7 * LATENCY]
    # the 2xx went back on the connection the INVITE came in on
    invite_peer = next(p for _, line, p in bob.received if line.startswith("INVITE"))
    ok_peer = next(p for _, line, p in alice.received if line.startswith("SIP/2.0 200"))
    assert ok_peer.connection_id is not None and invite_peer.connection_id is not None
    assert ok_peer.remote == ("10.0.0.2", 5061)
    # Alice refreshes at half of 120 s after the 2xx arrived
    refreshed = alice.of(SessionRefreshed)
    assert [t for t, _ in refreshed] == [6 * LATENCY + 60.0 + 2 * LATENCY]
    alice.ua.bye(call, sim.now())
    alice.pump()
    sim.run_for(10.0)
    assert [ev.reason for _, ev in bob.of(CallEnded) if isinstance(ev, CallEnded)] == ["remote-bye"]
    assert alice.ua.active_calls == bob.ua.active_calls == 0
