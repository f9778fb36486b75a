"""The in-memory network: UDP faults, rules, partitions, TCP/TLS connections, capture."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import pytest

from sbcsim.errors import ConfigError, TransportError
from sbcsim.net import (
    CapturedPacket,
    MemoryNetwork,
    MemoryTransport,
    Packet,
    PeerInfo,
    TlsIdentity,
    TransportName,
    identity_matches,
    request_method,
    response_status,
)
from sbcsim.net.memory import LinkProfile
from sbcsim.sim import Simulator

A = "10.0.0.1"
B = "10.0.0.2"
C = "10.0.0.3"
L = 0.25  # a link latency that is exact in binary floating point, so times compare with ==

SBC_ID = TlsIdentity(("sbc1.contoso.com",))
PROXY_ID = TlsIdentity(("sip.pstnhub.microsoft.com", "*.pstnhub.microsoft.com"))


def sip(first_line: str, body: bytes = b"") -> bytes:
    head = f"{first_line}\r\nCall-ID: c1\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


INVITE = sip("INVITE sip:+15550100@sbc1.contoso.com SIP/2.0", b"v=0\r\n")
OK = sip("SIP/2.0 200 OK")
OPTIONS = sip("OPTIONS sip:sbc1.contoso.com SIP/2.0")


@dataclass
class Recorder:
    """A node stand-in: records what arrives and which errors are reported, with virtual times."""

    sim: Simulator
    messages: list[tuple[float, bytes, PeerInfo]] = field(default_factory=list)
    errors: list[tuple[float, tuple[str, int], TransportName, str]] = field(default_factory=list)

    def message_received(self, data: bytes, peer: PeerInfo) -> None:
        self.messages.append((self.sim.now(), data, peer))

    def transport_error(
        self, remote: tuple[str, int], transport: TransportName, exc: TransportError
    ) -> None:
        assert exc.address == remote
        self.errors.append((self.sim.now(), remote, transport, exc.msg))


class Lab:
    def __init__(self, seed: int = 0, **net_options: float) -> None:
        self.sim = Simulator(seed)
        self.net = MemoryNetwork(self.sim, **net_options)  # type: ignore[arg-type]
        self.a = Recorder(self.sim)
        self.b = Recorder(self.sim)

    def run(self, timeout: float = 60.0) -> None:
        self.sim.run_until(lambda: False, timeout)


def udp_pair(lab: Lab) -> tuple[MemoryTransport, MemoryTransport]:
    return lab.net.attach(A, lab.a), lab.net.attach(B, lab.b)


# -- UDP ----------------------------------------------------------------------------------------


def test_udp_datagram_arrives_after_the_default_latency() -> None:
    lab = Lab()
    ta, _ = udp_pair(lab)
    ta.send(OPTIONS, (B, 5060), "udp")
    assert lab.b.messages == []  # nothing happens inside send()
    lab.run(1.0)
    assert lab.b.messages == [(0.001, OPTIONS, PeerInfo("udp", (B, 5060), (A, 5060)))]
    assert lab.net.capture == [
        CapturedPacket(0.0, (A, 5060), (B, 5060), "udp", OPTIONS, None, 0.001)
    ]


def test_udp_to_nobody_is_dropped_silently() -> None:
    lab = Lab()
    ta, _ = udp_pair(lab)
    ta.send(OPTIONS, (B, 5070), "udp")
    ta.send(OPTIONS, (C, 5060), "udp")
    lab.run(1.0)
    assert lab.a.errors == [] and lab.b.messages == []
    assert [(p.dst, p.arrival, p.dropped, p.fault) for p in lab.net.capture] == [
        ((B, 5070), None, True, "no_listener"),
        ((C, 5060), None, True, "no_listener"),
    ]


def test_udp_from_a_host_without_udp_ports_uses_an_ephemeral_port_that_gets_replies() -> None:
    lab = Lab()
    client = lab.net.attach(A, lab.a, udp_ports=())
    server = lab.net.attach(B, lab.b)
    client.send(OPTIONS, (B, 5060), "udp")
    lab.run(1.0)
    (_, _, peer) = lab.b.messages[0]
    assert peer.remote == (A, 49152)
    server.send(OK, peer.remote, "udp")
    lab.run(1.0)
    assert lab.a.messages == [(1.001, OK, PeerInfo("udp", (A, 49152), (B, 5060)))]


def test_one_host_listens_on_several_ports_and_transports() -> None:
    lab = Lab()
    tb = lab.net.attach(
        B, lab.b, udp_ports=(5060, 5070), tcp_ports=(5060,), tls_ports=(5061,), tls_identity=SBC_ID
    )
    assert tb.local == ((B, 5060), (B, 5070), (B, 5061))
    assert [tb.address(t) for t in ("udp", "tcp", "tls")] == [(B, 5060), (B, 5060), (B, 5061)]
    ta = lab.net.attach(A, lab.a)
    ta.send(OPTIONS, (B, 5070), "udp")
    ta.send(OPTIONS, (B, 5060), "tcp")
    ta.send(OPTIONS, (B, 5061), "tls")
    lab.run(1.0)
    assert [(p.transport, p.local) for _, _, p in lab.b.messages] == [
        ("udp", (B, 5070)),
        ("tcp", (B, 5060)),
        ("tls", (B, 5061)),
    ]


def test_links_have_their_own_latency_and_can_be_one_way() -> None:
    lab = Lab()
    ta, tb = udp_pair(lab)
    lab.net.set_link(A, B, latency=0.5)
    lab.net.set_link(B, A, latency=0.125, one_way=True)
    assert lab.net.link(A, B) == LinkProfile(latency=0.5)
    assert lab.net.link(A, C) == LinkProfile(latency=0.001)
    ta.send(OPTIONS, (B, 5060), "udp")
    tb.send(OK, (A, 5060), "udp")
    lab.run(1.0)
    assert [t for t, _, _ in lab.b.messages] == [0.5]
    assert [t for t, _, _ in lab.a.messages] == [0.125]


def lossy_exchange(seed: int) -> tuple[list[CapturedPacket], list[tuple[float, bytes]]]:
    lab = Lab(seed)
    ta, tb = udp_pair(lab)
    lab.net.set_link(A, B, latency=0.02, jitter=0.01, loss=0.2, duplicate=0.1, reorder=0.1)
    for i in range(50):
        lab.sim.call_at(i * 0.005, ta.send, sip(f"MESSAGE sip:{i}@b SIP/2.0"), (B, 5060), "udp")
        lab.sim.call_at(i * 0.005, tb.send, sip(f"SIP/2.0 {200 + i} OK"), (A, 5060), "udp")
    lab.run(5.0)
    return lab.net.capture, [(t, data) for t, data, _ in lab.b.messages + lab.a.messages]


def test_same_seed_gives_identical_capture_bytes_and_times() -> None:
    capture1, received1 = lossy_exchange(seed=11)
    capture2, received2 = lossy_exchange(seed=11)
    assert capture1 == capture2
    assert received1 == received2
    assert {p.fault for p in capture1} >= {None, "loss", "duplicate", "reorder"}
    capture3, _ = lossy_exchange(seed=12)
    assert capture3 != capture1


def test_loss_duplicate_and_reorder_rates_over_ten_thousand_datagrams() -> None:
    lab = Lab(seed=2024)
    ta, _ = udp_pair(lab)
    lab.net.set_link(
        A, B, latency=0.005, loss=0.1, duplicate=0.05, reorder=0.05, reorder_delay=0.01
    )
    n = 10_000
    for i in range(n):
        lab.sim.call_at(i * 0.001, ta.send, b"%d" % i, (B, 5060), "udp")
    lab.run(20.0)
    faults = Counter(p.fault for p in lab.net.capture)
    received = [int(data) for _, data, _ in lab.b.messages]
    highest = -1
    overtaken = 0
    for value in received:
        if value < highest:
            overtaken += 1
        highest = max(highest, value)
    assert dict(faults) == EXPECTED_FAULTS
    assert (len(received), overtaken) == EXPECTED_RECEIVED
    # ... and those exact counts are what the configured rates predict.
    assert abs(faults["loss"] / n - 0.1) < 0.01
    assert abs(faults["duplicate"] / (n - faults["loss"]) - 0.05) < 0.01
    assert abs(faults["reorder"] / (n - faults["loss"]) - 0.05) < 0.01
    assert len(received) == n - faults["loss"] + faults["duplicate"]


EXPECTED_FAULTS: dict[str | None, int] = {None: 8604, "loss": 981, "duplicate": 435, "reorder": 415}
EXPECTED_RECEIVED = (9454, 434)  # a reordered datagram (and its copy) arrives after later ones


# -- rules --------------------------------------------------------------------------------------


def test_a_rule_drops_only_the_first_matching_packet() -> None:
    lab = Lab()
    ta, _ = udp_pair(lab)
    rule = lab.net.add_rule(request_method("INVITE"))
    ta.send(OPTIONS, (B, 5060), "udp")
    ta.send(INVITE, (B, 5060), "udp")
    lab.sim.call_at(0.5, ta.send, INVITE, (B, 5060), "udp")
    lab.run(1.0)
    assert [(t, d) for t, d, _ in lab.b.messages] == [(0.001, OPTIONS), (0.501, INVITE)]
    assert [(p.data[:7], p.dropped, p.fault) for p in lab.net.capture] == [
        (b"OPTIONS", False, None),
        (b"INVITE ", True, "rule_drop"),
        (b"INVITE ", False, None),
    ]
    assert (rule.hits, rule.exhausted) == (1, True)


def test_rules_duplicate_and_delay_the_first_200() -> None:
    lab = Lab()
    _, tb = udp_pair(lab)
    lab.net.add_rule(response_status(200), "delay", delay=0.5)
    lab.net.add_rule(response_status(200), "duplicate")
    forever = lab.net.add_rule(lambda p: p.data.startswith(b"SIP/2.0 180"), "drop", count=None)
    ringing = sip("SIP/2.0 180 Ringing")
    for _ in range(3):
        tb.send(ringing, (A, 5060), "udp")
    tb.send(OK, (A, 5060), "udp")  # delayed
    tb.send(OK, (A, 5060), "udp")  # duplicated
    tb.send(OK, (A, 5060), "udp")  # untouched
    lab.run(1.0)
    assert [t for t, _, _ in lab.a.messages] == [0.001, 0.001, 0.001, 0.501]
    assert [p.fault for p in lab.net.capture] == [
        "rule_drop",
        "rule_drop",
        "rule_drop",
        "rule_delay",
        None,
        "rule_duplicate",
        None,
    ]
    assert forever.hits == 3 and not forever.exhausted
    lab.net.remove_rule(forever)
    tb.send(ringing, (A, 5060), "udp")
    lab.run(1.0)
    assert lab.a.messages[-1][:2] == (1.001, ringing)


def test_rule_predicates_see_src_dst_and_transport() -> None:
    lab = Lab()
    ta, _ = udp_pair(lab)
    seen: list[Packet] = []

    def spy(packet: Packet) -> bool:
        seen.append(packet)
        return False

    lab.net.add_rule(spy, count=None)
    ta.send(OPTIONS, (B, 5060), "udp")
    lab.net.attach(C, Recorder(lab.sim), udp_ports=(), tcp_ports=(5060,))
    ta.send(OPTIONS, (C, 5060), "tcp")
    lab.run(1.0)
    assert seen == [
        Packet(0.0, (A, 5060), (B, 5060), "udp", OPTIONS, None),
        Packet(0.002, (A, 49152), (C, 5060), "tcp", OPTIONS, 1),
    ]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"latency": -0.1}, "latency"),
        ({"jitter": float("inf")}, "jitter"),
        ({"loss": 1.5}, "loss"),
        ({"duplicate": -0.1}, "duplicate"),
        ({"reorder": float("nan")}, "reorder"),
    ],
)
def test_link_settings_are_validated(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Lab().net.set_link(A, B, **kwargs)  # type: ignore[arg-type]


def test_rule_settings_are_validated() -> None:
    net = Lab().net
    with pytest.raises(ConfigError):
        net.add_rule(lambda p: True, "mangle")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        net.add_rule(lambda p: True, count=0)
    with pytest.raises(ConfigError):
        net.add_rule(lambda p: True, "delay", delay=-1.0)


# -- partitions ---------------------------------------------------------------------------------


def test_partition_drops_udp_until_healed() -> None:
    lab = Lab()
    ta, tb = udp_pair(lab)
    lab.net.partition(A, B)
    assert lab.net.is_partitioned(A, B) and lab.net.is_partitioned(B, A)
    ta.send(OPTIONS, (B, 5060), "udp")
    tb.send(OPTIONS, (A, 5060), "udp")
    lab.run(1.0)
    lab.net.heal(A, B)
    ta.send(INVITE, (B, 5060), "udp")
    lab.run(1.0)
    assert lab.a.messages == []
    assert [(t, d) for t, d, _ in lab.b.messages] == [(1.001, INVITE)]
    assert [(p.time, p.dropped, p.fault) for p in lab.net.capture] == [
        (0.0, True, "partition"),
        (0.0, True, "partition"),
        (1.0, False, None),
    ]


def test_one_way_partition() -> None:
    lab = Lab()
    ta, tb = udp_pair(lab)
    lab.net.partition(A, B, one_way=True)
    ta.send(OPTIONS, (B, 5060), "udp")
    tb.send(OPTIONS, (A, 5060), "udp")
    lab.run(1.0)
    assert (len(lab.a.messages), len(lab.b.messages)) == (1, 0)


def test_partition_breaks_connections_on_both_ends_and_heal_allows_new_ones() -> None:
    lab = Lab()
    lab.net.set_link(A, B, latency=L)
    ta = lab.net.attach(A, lab.a)
    lab.net.attach(B, lab.b, tcp_ports=(5060,))
    ta.send(INVITE, (B, 5060), "tcp")
    lab.run(1.0)
    lab.net.partition(A, B)
    ta.send(OK, (B, 5060), "tcp")  # a new connection attempt into the partition
    lab.run(3.0)
    message = "connection 1 broken by a network partition between 10.0.0.1 and 10.0.0.2"
    assert lab.a.errors == [
        (1.0, (B, 5060), "tcp", message),
        (3.0, (B, 5060), "tcp", "connection to 10.0.0.2:5060 timed out"),
    ]
    assert lab.b.errors == [(1.0, (A, 49152), "tcp", message)]
    lab.net.heal(A, B)
    ta.send(OPTIONS, (B, 5060), "tcp")
    lab.run(1.0)
    assert [(t, d, p.connection_id) for t, d, p in lab.b.messages] == [
        (0.75, INVITE, 1),
        (4.75, OPTIONS, 3),
    ]


# -- TCP ----------------------------------------------------------------------------------------


def tcp_lab() -> tuple[Lab, MemoryTransport, MemoryTransport]:
    lab = Lab()
    lab.net.set_link(A, B, latency=L)
    ta = lab.net.attach(A, lab.a)
    tb = lab.net.attach(B, lab.b, udp_ports=(), tcp_ports=(5060,))
    return lab, ta, tb


def test_tcp_connect_refused_is_reported_after_one_round_trip() -> None:
    lab = Lab()
    lab.net.set_link(A, B, latency=L)
    ta = lab.net.attach(A, lab.a)
    lab.net.attach(B, lab.b)  # UDP only
    ta.send(INVITE, (B, 5060), "tcp")
    lab.run(5.0)
    assert lab.a.errors == [(0.5, (B, 5060), "tcp", "connection to 10.0.0.2:5060 refused")]
    assert lab.net.capture == [
        CapturedPacket(0.5, (A, 49152), (B, 5060), "tcp", INVITE, 1, None, True, "connect_failed")
    ]
    assert ta.connections() == []


def test_tcp_connect_into_a_partition_times_out() -> None:
    lab = Lab(connect_timeout=7.5)
    ta = lab.net.attach(A, lab.a)
    lab.net.attach(B, lab.b, tcp_ports=(5060,))
    lab.net.partition(A, B)
    ta.send(INVITE, (B, 5060), "tcp")
    lab.run(60.0)
    assert lab.a.errors == [(7.5, (B, 5060), "tcp", "connection to 10.0.0.2:5060 timed out")]


def test_tcp_round_trip_and_connection_reuse() -> None:
    lab, ta, tb = tcp_lab()
    ta.send(INVITE, (B, 5060), "tcp")
    ta.send(OPTIONS, (B, 5060), "tcp")  # queued behind the handshake on the same connection
    lab.run(1.0)
    server_side = PeerInfo("tcp", (B, 5060), (A, 49152), connection_id=1)
    assert lab.b.messages == [(0.75, INVITE, server_side), (0.75, OPTIONS, server_side)]
    tb.send(OK, (A, 49152), "tcp", connection_id=1)
    lab.run(1.0)
    assert lab.a.messages == [(1.25, OK, PeerInfo("tcp", (A, 49152), (B, 5060), connection_id=1))]
    ta.send(OPTIONS, (B, 5060), "tcp")
    lab.run(1.0)
    assert [p.connection_id for _, _, p in lab.b.messages] == [1, 1, 1]
    assert ta.connections() == [PeerInfo("tcp", (A, 49152), (B, 5060), connection_id=1)]
    assert tb.connections() == [server_side]
    assert lab.a.errors == lab.b.errors == []


def test_tcp_response_without_connection_id_reuses_the_connection_to_that_address() -> None:
    lab, ta, tb = tcp_lab()
    ta.send(INVITE, (B, 5060), "tcp")
    lab.run(1.0)
    tb.send(OK, (A, 49152), "tcp")
    lab.run(1.0)
    assert [(t, p.connection_id) for t, _, p in lab.a.messages] == [(1.25, 1)]


def test_tcp_stale_connection_id_falls_back_to_a_new_connection() -> None:
    lab, _, tb = tcp_lab()
    lab.net.attach(A, lab.a, udp_ports=(), tcp_ports=(5060,))
    tb.send(OK, (A, 5060), "tcp", connection_id=99)
    lab.run(1.0)
    assert [(t, p.connection_id, p.local) for t, _, p in lab.a.messages] == [(0.75, 1, (A, 5060))]


def test_stream_framing_reassembles_split_and_joined_messages() -> None:
    lab, ta, _ = tcp_lab()
    ta.send(INVITE[:10], (B, 5060), "tcp")
    ta.send(INVITE[10:] + OPTIONS[:3], (B, 5060), "tcp")
    ta.send(OPTIONS[3:] + OK, (B, 5060), "tcp")
    lab.run(1.0)
    assert [d for _, d, _ in lab.b.messages] == [INVITE, OPTIONS, OK]


def test_keep_alive_ping_is_answered_with_a_pong() -> None:
    lab, ta, _ = tcp_lab()
    ta.send(b"\r\n\r\n", (B, 5060), "tcp")
    lab.run(2.0)
    assert lab.a.messages == lab.b.messages == []
    assert lab.net.capture == [
        CapturedPacket(0.5, (A, 49152), (B, 5060), "tcp", b"\r\n\r\n", 1, 0.75),
        CapturedPacket(0.75, (B, 5060), (A, 49152), "tcp", b"\r\n", 1, 1.0),
    ]


def test_framing_error_closes_the_connection_and_the_peer_sees_the_close() -> None:
    lab, ta, _ = tcp_lab()
    ta.send(b"INVITE sip:x SIP/2.0\r\nContent-Length: lots\r\n\r\n", (B, 5060), "tcp")
    lab.run(2.0)
    [(when, remote, transport, message)] = lab.b.errors
    assert (when, remote, transport) == (0.75, (A, 49152), "tcp")
    assert message.startswith("framing error: ") and "Content-Length" in message
    assert lab.a.errors == [(1.0, (B, 5060), "tcp", "connection 1 closed by the peer")]
    ta.send(OPTIONS, (B, 5060), "tcp")
    lab.run(2.0)
    assert [(t, p.connection_id) for t, _, p in lab.b.messages] == [(2.75, 2)]


def test_close_closes_connections_and_listeners() -> None:
    lab, ta, tb = tcp_lab()
    ta.send(INVITE, (B, 5060), "tcp")
    lab.run(1.0)
    tb.send(OK, (A, 49152), "tcp", connection_id=1)
    tb.close()  # the 200 already on the wire is delivered before the close
    tb.close()  # idempotent
    lab.run(1.0)
    assert [t for t, _, _ in lab.a.messages] == [1.25]
    assert lab.a.errors == [(1.25, (B, 5060), "tcp", "connection 1 closed by the peer")]
    assert lab.b.errors == []
    ta.send(OPTIONS, (B, 5060), "tcp")
    lab.run(1.0)
    assert lab.a.errors[-1] == (2.5, (B, 5060), "tcp", "connection to 10.0.0.2:5060 refused")
    tb.send(OK, (A, 5060), "udp")
    lab.run(1.0)
    assert lab.b.errors == [(3.0, (A, 5060), "udp", "transport is closed")]


def test_data_in_flight_to_a_closed_end_is_flagged_dropped() -> None:
    lab, ta, tb = tcp_lab()
    ta.send(INVITE, (B, 5060), "tcp")
    lab.run(0.6)  # connected, INVITE on the wire
    tb.close()
    lab.run(1.0)
    assert lab.b.messages == []
    assert [(p.dropped, p.fault) for p in lab.net.capture] == [(True, "connection_closed")]


def test_tcp_to_a_tls_port_fails() -> None:
    lab = Lab()
    lab.net.set_link(A, B, latency=L)
    ta = lab.net.attach(A, lab.a)
    lab.net.attach(B, lab.b, tls_ports=(5061,), tls_identity=SBC_ID)
    ta.send(OPTIONS, (B, 5061), "tcp")
    lab.run(1.0)
    assert lab.a.errors == [
        (0.5, (B, 5061), "tcp", "TCP connection to 10.0.0.2:5061 failed: it expects TLS")
    ]


# -- TLS ----------------------------------------------------------------------------------------


def tls_lab(
    *,
    server_identity: TlsIdentity = PROXY_ID,
    client_identity: TlsIdentity | None = SBC_ID,
    require_client_cert: bool = False,
    client_trusts: object = None,
    server_trusts: object = None,
) -> tuple[Lab, MemoryTransport, MemoryTransport]:
    lab = Lab()
    lab.net.set_link(A, B, latency=L)
    ta = lab.net.attach(A, lab.a, tls_identity=client_identity, trusted=client_trusts)  # type: ignore[arg-type]
    tb = lab.net.attach(
        B,
        lab.b,
        udp_ports=(),
        tls_ports=(5061,),
        tls_identity=server_identity,
        require_client_cert=require_client_cert,
        trusted=server_trusts,  # type: ignore[arg-type]
    )
    return lab, ta, tb


@pytest.mark.parametrize(
    "sni",
    [
        "sip.pstnhub.microsoft.com",
        "sip2.pstnhub.microsoft.com",
        "SIP3.PSTNHUB.microsoft.com.",
        None,
    ],
)
def test_tls_with_sni_and_wildcard_succeeds_after_two_round_trips(sni: str | None) -> None:
    lab, ta, tb = tls_lab()
    ta.send(OPTIONS, (B, 5061), "tls", server_name=sni)
    lab.run(2.0)
    assert lab.b.messages == [
        (1.25, OPTIONS, PeerInfo("tls", (B, 5061), (A, 49152), connection_id=1, server_name=sni))
    ]
    tb.send(OK, (A, 49152), "tls", connection_id=1)
    lab.run(2.0)
    assert lab.a.messages == [
        (
            2.25,
            OK,
            PeerInfo(
                "tls",
                (A, 49152),
                (B, 5061),
                connection_id=1,
                peer_identity=PROXY_ID,
                server_name=sni,
            ),
        )
    ]
    assert lab.a.errors == lab.b.errors == []


def test_mutual_tls_gives_each_side_the_other_identity() -> None:
    lab, ta, tb = tls_lab(require_client_cert=True, server_trusts=lambda i: i.names == SBC_ID.names)
    ta.send(OPTIONS, (B, 5061), "tls", server_name="sip.pstnhub.microsoft.com")
    lab.run(2.0)
    tb.send(OK, (A, 49152), "tls", connection_id=1)
    lab.run(2.0)
    [(_, _, server_view)] = lab.b.messages
    [(_, _, client_view)] = lab.a.messages
    assert (server_view.peer_identity, client_view.peer_identity) == (SBC_ID, PROXY_ID)
    assert server_view.server_name == client_view.server_name == "sip.pstnhub.microsoft.com"


SNI_ERROR = (
    "TLS handshake with 10.0.0.2:5061 failed: server certificate "
    "['sip.pstnhub.microsoft.com', '*.pstnhub.microsoft.com'] does not match {!r}"
)


@pytest.mark.parametrize(
    ("options", "sni", "client_problem"),
    [
        ({}, "sbc.contoso.com", SNI_ERROR.format("sbc.contoso.com")),
        ({}, "pstnhub.microsoft.com", SNI_ERROR.format("pstnhub.microsoft.com")),
        ({}, "a.b.pstnhub.microsoft.com", SNI_ERROR.format("a.b.pstnhub.microsoft.com")),
        (
            {"server_identity": TlsIdentity(("sip.pstnhub.microsoft.com",), valid=False)},
            None,
            "TLS handshake with 10.0.0.2:5061 failed: server certificate "
            "['sip.pstnhub.microsoft.com'] failed validation",
        ),
        (
            {"client_trusts": lambda identity: False},
            "sip.pstnhub.microsoft.com",
            "TLS handshake with 10.0.0.2:5061 failed: server certificate "
            "['sip.pstnhub.microsoft.com', '*.pstnhub.microsoft.com'] is not trusted",
        ),
    ],
)
def test_client_side_tls_failures(
    options: dict[str, object], sni: str | None, client_problem: str
) -> None:
    lab, ta, _ = tls_lab(**options)  # type: ignore[arg-type]
    ta.send(OPTIONS, (B, 5061), "tls", server_name=sni)
    lab.run(5.0)
    assert lab.a.errors == [(1.0, (B, 5061), "tls", client_problem)]
    assert lab.b.errors == [
        (
            1.25,
            (A, 49152),
            "tls",
            "TLS handshake with 10.0.0.1:49152 failed: rejected by the client",
        )
    ]
    assert lab.b.messages == []
    assert [(p.time, p.dropped, p.fault) for p in lab.net.capture] == [
        (1.0, True, "connect_failed")
    ]
    assert ta.connections() == []


@pytest.mark.parametrize(
    ("client_identity", "server_trusts", "problem"),
    [
        (None, None, "no client certificate"),
        (
            TlsIdentity(("sbc1.contoso.com",), valid=False),
            None,
            "client certificate ['sbc1.contoso.com'] failed validation",
        ),
        (SBC_ID, lambda identity: False, "client certificate ['sbc1.contoso.com'] is not trusted"),
    ],
)
def test_server_side_mutual_tls_failures(
    client_identity: TlsIdentity | None, server_trusts: object, problem: str
) -> None:
    lab, ta, _ = tls_lab(
        client_identity=client_identity, require_client_cert=True, server_trusts=server_trusts
    )
    ta.send(OPTIONS, (B, 5061), "tls", server_name="sip.pstnhub.microsoft.com")
    lab.run(5.0)
    assert lab.b.errors == [
        (1.25, (A, 49152), "tls", f"TLS handshake with 10.0.0.1:49152 failed: {problem}")
    ]
    assert lab.a.errors == [
        (1.5, (B, 5061), "tls", "TLS handshake with 10.0.0.2:5061 failed: rejected by the server")
    ]
    assert lab.b.messages == []
    assert [(p.time, p.arrival, p.dropped, p.fault) for p in lab.net.capture] == [
        (1.0, None, True, "connection_closed")
    ]


def test_server_closing_during_a_tls_handshake_resets_the_client() -> None:
    lab, ta, tb = tls_lab()
    ta.send(OPTIONS, (B, 5061), "tls")
    lab.sim.call_at(0.3, tb.close)  # after the SYN arrived, before the ClientHello
    lab.run(5.0)
    assert lab.a.errors == [(0.55, (B, 5061), "tls", "connection 1 closed by the peer")]
    assert lab.b.errors == [] and lab.b.messages == []
    assert [(p.time, p.fault) for p in lab.net.capture] == [(0.55, "connect_failed")]


def test_client_closing_during_a_tls_handshake_leaves_nothing_behind() -> None:
    lab, ta, tb = tls_lab()
    ta.send(OPTIONS, (B, 5061), "tls")
    lab.sim.call_at(0.6, ta.close)  # the ClientHello is on its way
    lab.run(5.0)
    assert lab.a.errors == lab.b.errors == [] and lab.b.messages == []
    assert ta.connections() == tb.connections() == []
    assert lab.net._connections == {}
    assert [(p.time, p.fault) for p in lab.net.capture] == [(0.6, "connect_failed")]


def test_tls_to_a_tcp_port_fails() -> None:
    lab, ta, _ = tcp_lab()
    ta.send(OPTIONS, (B, 5060), "tls")
    lab.run(1.0)
    assert lab.a.errors == [
        (0.5, (B, 5060), "tls", "TLS connection to 10.0.0.2:5060 failed: it expects TCP")
    ]


def test_tls_and_tcp_to_the_same_address_are_separate_connections() -> None:
    lab = Lab()
    ta = lab.net.attach(A, lab.a)
    lab.net.attach(B, lab.b, tcp_ports=(5060,), tls_ports=(5061,), tls_identity=PROXY_ID)
    ta.send(OPTIONS, (B, 5060), "tcp")
    ta.send(OPTIONS, (B, 5061), "tls")
    ta.send(OPTIONS, (B, 5060), "tcp")
    lab.run(1.0)
    assert [(p.transport, p.connection_id) for _, _, p in lab.b.messages] == [
        ("tcp", 1),
        ("tcp", 1),
        ("tls", 2),
    ]


@pytest.mark.parametrize(
    ("names", "server_name", "expected"),
    [
        (("sbc1.contoso.com",), "sbc1.contoso.com", True),
        (("sbc1.contoso.com",), "SBC1.Contoso.COM.", True),
        (("sbc1.contoso.com",), "sbc2.contoso.com", False),
        (("*.contoso.com",), "sbc1.contoso.com", True),
        (("*.contoso.com",), "contoso.com", False),
        (("*.contoso.com",), "a.sbc1.contoso.com", False),
        (("*.com",), "contoso.com", False),
        (("s*.contoso.com",), "sbc1.contoso.com", False),
        (("sbc1.*.com",), "sbc1.contoso.com", False),
        (("*.contoso.com",), "*.contoso.com", False),
        (("other.example", "*.contoso.com"), "x.contoso.com", True),
        ((), "sbc1.contoso.com", False),
    ],
)
def test_identity_name_matching(names: tuple[str, ...], server_name: str, expected: bool) -> None:
    assert identity_matches(TlsIdentity(names), server_name) is expected


# -- capture and configuration ------------------------------------------------------------------


def test_capture_of_a_tcp_exchange_is_exact() -> None:
    lab, ta, tb = tcp_lab()
    ta.send(INVITE, (B, 5060), "tcp")
    lab.sim.call_at(0.8, lambda: tb.send(OK, (A, 49152), "tcp", connection_id=1))
    ta.send(INVITE, (C, 5060), "udp")
    lab.run(2.0)
    assert lab.net.capture == [
        CapturedPacket(0.0, (A, 5060), (C, 5060), "udp", INVITE, None, None, True, "no_listener"),
        CapturedPacket(0.5, (A, 49152), (B, 5060), "tcp", INVITE, 1, 0.75),
        CapturedPacket(0.8, (B, 5060), (A, 49152), "tcp", OK, 1, 1.05),
    ]


def test_stream_rules_keep_the_stream_in_order() -> None:
    lab, ta, _ = tcp_lab()
    lab.net.add_rule(request_method("INVITE"), "delay", delay=1.0)
    ta.send(INVITE, (B, 5060), "tcp")
    ta.send(OPTIONS, (B, 5060), "tcp")
    lab.run(3.0)
    assert [(t, d) for t, d, _ in lab.b.messages] == [(1.75, INVITE), (1.75, OPTIONS)]


def test_stream_rules_can_drop_and_duplicate_messages() -> None:
    lab, ta, _ = tcp_lab()
    lab.net.add_rule(request_method("INVITE"), "drop")
    lab.net.add_rule(request_method("OPTIONS"), "duplicate")
    ta.send(INVITE, (B, 5060), "tcp")
    ta.send(OPTIONS, (B, 5060), "tcp")
    lab.run(3.0)
    assert [d for _, d, _ in lab.b.messages] == [OPTIONS, OPTIONS]
    assert [p.fault for p in lab.net.capture] == ["rule_drop", None, "rule_duplicate"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tls_ports": (5061,)}, "without a tls_identity"),
        ({"udp_ports": (5060, 5060)}, "already in use"),
        ({"tcp_ports": (5060,), "tls_ports": (5060,), "tls_identity": SBC_ID}, "already in use"),
        ({"udp_ports": (0,)}, "invalid port"),
    ],
)
def test_attach_validates_its_ports(kwargs: dict[str, object], message: str) -> None:
    lab = Lab()
    with pytest.raises(ConfigError, match=message):
        lab.net.attach(A, lab.a, **kwargs)  # type: ignore[arg-type]


def test_attach_refuses_taken_addresses_and_names() -> None:
    lab = Lab()
    lab.net.attach(A, lab.a, tcp_ports=(5060,))
    with pytest.raises(ConfigError, match="already in use"):
        lab.net.attach(A, lab.b, udp_ports=(), tcp_ports=(5060,))
    second = lab.net.attach(A, lab.b, udp_ports=(5070,))  # same host, other ports: fine
    assert second.local == ((A, 5070),)
    with pytest.raises(ConfigError, match="IP address"):
        lab.net.attach("sbc1.contoso.com", lab.a)


def test_connect_timeout_is_validated() -> None:
    with pytest.raises(ConfigError):
        MemoryNetwork(Simulator(), connect_timeout=0.0)
