"""The whole engine under network faults, on the virtual clock.

Two user agents (``sim_node``) talk over the memory network while it loses, duplicates, reorders
or partitions; every assertion is at an exact virtual time read from ``net.capture`` or from the
events the nodes delivered.  The link latency is ``L = 2**-7`` s: exact in binary floating point
(so every sum below compares with ``==``) and small enough that a response is back (2L) long
before T1 (0.5 s), so no arrival ever ties with a retransmission timer.

What is checked, with the RFC text behind it:

* Timer A (RFC 3261 §17.1.1.2): a lost INVITE is retransmitted at 0.5, 1.5, 3.5 ... s (doubling,
  no cap) until a response arrives; Timer B ends it at 64*T1 = 32 s with a 408 (§8.1.3.1).
* 2xx retransmission by the UAS core (§13.3.1.4): T1, 2T1, 4T1 ... capped at T2 until the ACK,
  and a BYE at 64*T1 when no ACK ever comes.
* CANCEL without a final response (§9.1): the INVITE client transaction ends 64*T1 after the
  CANCEL went out.
* Random loss, duplication and reordering: every call completes, and the TU hears of each
  state change exactly once.
* Partitions over TCP and TLS: transport errors become 503s (§8.1.3.1) at the instant the
  connection breaks or the new one fails, and RFC 4028 ends a session nobody refreshes.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sbcsim.dialog import (
    CallCancelled,
    CallEnded,
    CallEstablished,
    CallFailed,
    CallRef,
    IncomingCall,
    RequestCompleted,
    SessionTimerConfig,
    UserAgent,
)
from sbcsim.endpoints.basic import AnsweringUas, CallGenerator, g711_sdp
from sbcsim.errors import TransportError
from sbcsim.net.base import Address, PeerInfo, TlsIdentity, TransportName
from sbcsim.net.memory import MemoryNetwork, Packet, request_method
from sbcsim.node import Node
from sbcsim.sim import Simulator
from sbcsim.sip import Request, make_response
from sbcsim.stack import UaOptions, sim_node
from sbcsim.transaction import (
    ResponseReceived,
    State,
    StrayResponse,
    TransactionEvent,
    TransactionKey,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    make_cancel,
)

L = 0.0078125  # 2**-7 s one way
UAC_HOST = "10.0.0.1"
UAS_HOST = "10.0.0.2"
SILENT_HOST = "10.0.0.9"
TARGET = f"sip:bob@{UAS_HOST}"
#: When an INVITE client transaction (re)sends over UDP: T1 doubling without a cap (§17.1.1.2).
TIMER_A_SENDS = (0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5)
#: When a UAS core (re)sends its 2xx, relative to the first: T1 doubling, capped at T2 (§13.3.1.4).
#: Also the Timer G schedule of a non-2xx final, and Timer E's of a non-INVITE request.
CAPPED_SENDS = (0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5)

_CSEQ = re.compile(rb"\r\nCSeq: *\d+ +([A-Z]+)", re.IGNORECASE)
_CALL_ID = re.compile(rb"\r\n(?:Call-ID|i): *([^\r]+)", re.IGNORECASE)

Recorded = list[tuple[float, object]]


# ------------------------------------------------------------------------------------------------
# helpers
# ------------------------------------------------------------------------------------------------
def label(data: bytes) -> str:
    """``INVITE`` for a request, ``200/BYE`` for a response (status and CSeq method)."""
    first = data.split(b"\r\n", 1)[0].decode()
    if first.startswith("SIP/2.0 "):
        match = _CSEQ.search(data)
        assert match is not None
        return f"{first.split()[1]}/{match.group(1).decode()}"
    return first.split(" ", 1)[0]


def call_id(data: bytes) -> bytes:
    match = _CALL_ID.search(data)
    assert match is not None
    return match.group(1)


def ladder(net: MemoryNetwork) -> list[tuple[float, str, str, float | str]]:
    """The capture as (sent at, sender host, message, arrival time or why it was dropped)."""
    out: list[tuple[float, str, str, float | str]] = []
    for p in net.capture:
        if p.data.strip():  # (not a keep-alive)
            fate = p.fault if p.dropped else p.arrival
            assert fate is not None
            out.append((p.time, p.src[0], label(p.data), fate))
    return out


def sends(net: MemoryNetwork, what: str) -> list[tuple[float, float | str]]:
    """(sent at, arrival or drop reason) of every captured ``what`` (a :func:`label`)."""
    return [(t, fate) for t, _, name, fate in ladder(net) if name == what]


def record(sim: Simulator, node: Node) -> Recorded:
    """Every event ``node`` delivers, with its virtual time; the node's behaviour still runs."""
    events: Recorded = []
    inner = node.on_event

    def on_event(event: object) -> None:
        events.append((sim.now(), event))
        if inner is not None:
            inner(event)

    node.on_event = on_event
    return events


def kinds(events: Recorded) -> list[tuple[float, str]]:
    return [(t, type(e).__name__) for t, e in events]


def ua(node: Node) -> UserAgent:
    stack = node.stack
    assert isinstance(stack, UserAgent)
    return stack


def is_2xx_to_invite(packet: Packet) -> bool:
    return packet.data.startswith(b"SIP/2.0 200 ") and label(packet.data) == "200/INVITE"


@dataclass
class Lab:
    """A caller (CallGenerator) and a callee (AnsweringUas) on two hosts, UDP."""

    sim: Simulator
    net: MemoryNetwork
    caller: Node
    callee: Node
    gen: CallGenerator
    answer: AnsweringUas
    caller_events: Recorded
    callee_events: Recorded

    def run(self, bound: float = 600.0) -> None:
        """Until every call is over and nothing is left to do (a bounded virtual wait)."""
        assert self.sim.run_until(lambda: self.gen.done, bound)
        self.sim.run_until_idle(bound)
        assert self.sim.next_deadline() is None


def udp_lab(
    *,
    seed: int = 0,
    calls: int = 1,
    rate: float = 1.0,
    hold: float = 1.0,
    loss: float = 0.0,
    duplicate: float = 0.0,
    reorder: float = 0.0,
) -> Lab:
    sim = Simulator(seed)
    net = MemoryNetwork(sim)
    net.set_link(UAC_HOST, UAS_HOST, latency=L, loss=loss, duplicate=duplicate, reorder=reorder)
    caller = sim_node(sim, net, "caller", UAC_HOST)
    callee = sim_node(sim, net, "callee", UAS_HOST)
    answer = AnsweringUas(callee)
    gen = CallGenerator(
        caller, TARGET, (UAS_HOST, 5060), transport="udp", calls=calls, rate=rate, hold=hold
    )
    lab = Lab(sim, net, caller, callee, gen, answer, record(sim, caller), record(sim, callee))
    gen.start()
    return lab


def assert_all_clean(*nodes: Node) -> None:
    """No call, transaction or timer left anywhere."""
    for node in nodes:
        stack = ua(node)
        assert stack.active_calls == 0
        assert len(stack._tl) == 0
        assert stack.get_timer() is None


# ------------------------------------------------------------------------------------------------
# Timer A: lost INVITEs are retransmitted on schedule and the call still completes
# ------------------------------------------------------------------------------------------------
def test_first_invite_lost_over_udp_is_retransmitted_at_t1_and_the_call_completes() -> None:
    lab = udp_lab()
    lab.net.add_rule(request_method("INVITE"), "drop", count=1)
    lab.run()
    assert ladder(lab.net) == [
        (0.0, UAC_HOST, "INVITE", "rule_drop"),
        (0.5, UAC_HOST, "INVITE", 0.5 + L),  # Timer A = T1
        (0.5 + L, UAS_HOST, "180/INVITE", 0.5 + 2 * L),  # answered at once: no 100 Trying
        (0.5 + L, UAS_HOST, "200/INVITE", 0.5 + 2 * L),
        (0.5 + 2 * L, UAC_HOST, "ACK", 0.5 + 3 * L),
        (1.5 + 2 * L, UAC_HOST, "BYE", 1.5 + 3 * L),  # after the 1 s hold
        (1.5 + 3 * L, UAS_HOST, "200/BYE", 1.5 + 4 * L),
    ]
    assert kinds(lab.caller_events) == [
        (0.5 + 2 * L, "CallProgress"),
        (0.5 + 2 * L, "CallEstablished"),
        (1.5 + 2 * L, "CallEnded"),
        (1.5 + 4 * L, "RequestCompleted"),
    ]
    assert kinds(lab.callee_events) == [
        (0.5 + L, "IncomingCall"),
        (0.5 + 3 * L, "CallEstablished"),
        (1.5 + 3 * L, "CallEnded"),
    ]
    assert (lab.gen.stats.completed, lab.gen.stats.failed) == (1, 0)
    assert_all_clean(lab.caller, lab.callee)


@pytest.mark.parametrize("lost", [2, 4, 6])
def test_invite_retransmissions_follow_timer_a_doubling(lost: int) -> None:
    lab = udp_lab()
    lab.net.add_rule(request_method("INVITE"), "drop", count=lost)
    lab.run()
    got_through = TIMER_A_SENDS[lost]
    assert sends(lab.net, "INVITE") == [
        *((t, "rule_drop") for t in TIMER_A_SENDS[:lost]),
        (got_through, got_through + L),
    ]
    # the 6th retransmission (31.5 s) still beats Timer B (32 s) by 2L
    assert [(t, type(e)) for t, e in lab.caller_events if isinstance(e, CallEstablished)] == [
        (got_through + 2 * L, CallEstablished)
    ]
    assert [t for t, e in lab.callee_events if isinstance(e, IncomingCall)] == [got_through + L]
    assert (lab.gen.stats.completed, lab.gen.stats.failed) == (1, 0)
    assert_all_clean(lab.caller, lab.callee)


def test_seven_lost_invites_end_in_timer_b_at_32s() -> None:
    lab = udp_lab()
    lab.net.add_rule(request_method("INVITE"), "drop", count=7)
    lab.run()
    assert sends(lab.net, "INVITE") == [(t, "rule_drop") for t in TIMER_A_SENDS]
    ((when, failed),) = lab.caller_events
    assert isinstance(failed, CallFailed)
    assert (when, failed.status, failed.reason, failed.response) == (
        32.0,
        408,
        "Request Timeout",
        None,
    )
    assert lab.callee_events == []
    assert lab.gen.stats.failures == {"408 Request Timeout": 1}
    assert_all_clean(lab.caller, lab.callee)


# ------------------------------------------------------------------------------------------------
# Timer B: nobody ever answers
# ------------------------------------------------------------------------------------------------
class Silent:
    """A host that accepts connections and reads everything, and never says a word."""

    def message_received(self, data: bytes, peer: PeerInfo) -> None:
        pass

    def transport_error(
        self, remote: Address, transport: TransportName, exc: TransportError
    ) -> None:
        pass


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_invite_to_a_host_that_never_answers_fails_408_at_exactly_32s(
    transport: TransportName,
) -> None:
    sim = Simulator(0)
    net = MemoryNetwork(sim)
    net.set_link(UAC_HOST, SILENT_HOST, latency=L)
    if transport == "tcp":  # the connection comes up, the INVITE is read, nothing comes back
        net.attach(SILENT_HOST, Silent(), udp_ports=(), tcp_ports=(5060,))
    caller = sim_node(sim, net, "caller", UAC_HOST, transport=transport)
    events = record(sim, caller)
    call = ua(caller).invite(
        f"sip:bob@{SILENT_HOST}",
        from_=f"<sip:alice@{UAC_HOST}>",
        to=f"<sip:bob@{SILENT_HOST}>",
        remote=(SILENT_HOST, 5060),
        transport=transport,
        sdp=g711_sdp(UAC_HOST, 30000),
        now=0.0,
    )
    caller.poke()
    sim.run_until_idle(100.0)
    if transport == "udp":  # every copy is lost on arrival: nobody is bound there
        assert sends(net, "INVITE") == [(t, "no_listener") for t in TIMER_A_SENDS]
    else:  # one copy, once the connection is up after one round trip; no Timer A on TCP
        assert sends(net, "INVITE") == [(2 * L, 3 * L)]
    assert events == [(32.0, CallFailed(call, 408, "Request Timeout"))]
    assert_all_clean(caller)


# ------------------------------------------------------------------------------------------------
# 2xx retransmission by the UAS core until the ACK (§13.3.1.4)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("lost", [1, 3, 6])
def test_lost_2xx_is_retransmitted_at_t1_2t1_4t1_capped_at_t2_until_the_ack(lost: int) -> None:
    lab = udp_lab(hold=40.0)  # the BYE comes long after the last retransmission
    lab.net.add_rule(is_2xx_to_invite, "drop", count=lost)
    lab.run()
    times = [L + d for d in CAPPED_SENDS]
    arrived = times[lost] + L
    assert sends(lab.net, "200/INVITE") == [
        *((t, "rule_drop") for t in times[:lost]),
        (times[lost], arrived),
    ]
    assert sends(lab.net, "ACK") == [(arrived, arrived + L)]
    # every retransmission is the same 2xx, byte for byte
    assert len({p.data for p in lab.net.capture if is_2xx_to_invite(p)}) == 1
    # the 180 reached the caller first, so its INVITE was never retransmitted
    assert sends(lab.net, "INVITE") == [(0.0, L)]
    assert kinds(lab.caller_events)[:2] == [(2 * L, "CallProgress"), (arrived, "CallEstablished")]
    assert [(t, type(e)) for t, e in lab.callee_events][:2] == [
        (L, IncomingCall),
        (arrived + L, CallEstablished),
    ]
    assert (lab.gen.stats.completed, lab.answer.stats.completed) == (1, 1)
    assert_all_clean(lab.caller, lab.callee)


def test_no_ack_at_all_ends_the_callee_side_with_a_bye_at_64_t1() -> None:
    lab = udp_lab()
    lab.net.add_rule(is_2xx_to_invite, "drop", count=None)
    lab.sim.run_for(100.0)
    assert sends(lab.net, "200/INVITE") == [(L + d, "rule_drop") for d in CAPPED_SENDS]
    assert sends(lab.net, "BYE") == [(L + 32.0, 2 * L + 32.0)]
    assert kinds(lab.callee_events) == [(L, "IncomingCall"), (L + 32.0, "CallEnded")]
    ended = lab.callee_events[1][1]
    assert isinstance(ended, CallEnded) and ended.reason == "no-ack"
    assert ua(lab.callee).active_calls == 0


# ------------------------------------------------------------------------------------------------
# CANCEL that gets no final response (§9.1): the INVITE transaction ends 64*T1 later
# ------------------------------------------------------------------------------------------------
UAS_ADDR = (UAS_HOST, 5060)
FROM_UAS = PeerInfo("udp", local=(UAC_HOST, 5060), remote=UAS_ADDR)


def invite_request(branch: str = "z9hG4bKc1") -> Request:
    return Request(
        "INVITE",
        TARGET,
        [
            ("Via", f"SIP/2.0/UDP {UAC_HOST}:5060;branch={branch}"),
            ("Max-Forwards", "70"),
            ("From", f"<sip:alice@{UAC_HOST}>;tag=a1"),
            ("To", f"<{TARGET}>"),
            ("Call-ID", "cancel-1@10.0.0.1"),
            ("CSeq", "1 INVITE"),
        ],
    )


def drive(layer: TransactionLayer, until: float) -> list[tuple[float, TransactionEvent]]:
    """Fire the layer's timers in order up to ``until``; the events with their times."""
    out: list[tuple[float, TransactionEvent]] = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        layer.messages_to_send()
        out += [(deadline, e) for e in layer.next_events()]
    return out


@pytest.mark.parametrize("how", ["cancel-in-proceeding", "cancel-before-a-1xx", "tu-built-cancel"])
def test_cancelled_invite_without_a_final_ends_64_t1_after_the_cancel(how: str) -> None:
    layer = TransactionLayer()
    invite = invite_request()
    key = layer.send_request(invite, UAS_ADDR, "udp", 0.0)
    layer.messages_to_send()
    if how == "cancel-before-a-1xx":
        layer.cancel(key, 0.125)
        assert layer.messages_to_send() == []  # held back until a 1xx arrives (§9.1)
    layer.receive(make_response(invite, 180, to_tag="b1"), FROM_UAS, 0.25)
    if how == "cancel-in-proceeding":
        layer.cancel(key, 1.0)
    elif how == "tu-built-cancel":  # what the UA core does: its own CANCEL, same branch
        layer.send_request(make_cancel(invite), UAS_ADDR, "udp", 1.0)
    sent_at = 0.25 if how == "cancel-before-a-1xx" else 1.0
    cancel = next(
        o.message
        for o in layer.messages_to_send()
        if isinstance(o.message, Request) and o.message.method == "CANCEL"
    )
    layer.next_events()
    # the CANCEL itself is answered: its own transaction completes normally
    layer.receive(make_response(cancel, 200, to_tag="b1"), FROM_UAS, sent_at + L)
    assert [type(e) for e in layer.next_events()] == [ResponseReceived]
    deadline = sent_at + 32.0
    cancel_key = TransactionKey("z9hG4bKc1", f"{UAC_HOST}:5060", "CANCEL", True)
    assert drive(layer, deadline - L) == [(sent_at + L + 5.0, TransactionTerminated(cancel_key))]
    assert layer.state_of(key) is State.PROCEEDING
    assert layer.get_timer() == deadline
    layer.handle_timer(deadline)
    assert layer.messages_to_send() == []
    assert layer.next_events() == [
        TransactionTimedOut(key, "cancel", invite),
        TransactionTerminated(key),
    ]
    assert layer.state_of(key) is None and len(layer) == 0 and layer.get_timer() is None
    # a final arriving after that has no transaction left to match (and gets no ACK from us)
    layer.receive(make_response(invite, 487, to_tag="b1"), FROM_UAS, deadline + 1.0)
    assert [type(e) for e in layer.next_events()] == [StrayResponse]
    assert layer.messages_to_send() == []


def test_a_final_response_after_the_cancel_ends_the_invite_the_usual_way() -> None:
    layer = TransactionLayer()
    invite = invite_request()
    key = layer.send_request(invite, UAS_ADDR, "udp", 0.0)
    layer.receive(make_response(invite, 180, to_tag="b1"), FROM_UAS, 0.25)
    layer.messages_to_send()
    layer.next_events()
    cancel_key = layer.cancel(key, 1.0)
    (out,) = layer.messages_to_send()
    assert isinstance(out.message, Request) and cancel_key is not None
    layer.receive(make_response(out.message, 200, to_tag="b1"), FROM_UAS, 1.0 + L)
    layer.receive(make_response(invite, 487, to_tag="b1"), FROM_UAS, 1.0 + 2 * L)
    assert [label(o.message.to_bytes()) for o in layer.messages_to_send()] == ["ACK"]
    assert [type(e) for e in layer.next_events()] == [ResponseReceived, ResponseReceived]
    # no "cancel" timeout: the INVITE ends by Timer D (32 s after the 487), the CANCEL by K
    assert drive(layer, 100.0) == [
        (1.0 + L + 5.0, TransactionTerminated(cancel_key)),
        (1.0 + 2 * L + 32.0, TransactionTerminated(key)),
    ]
    assert len(layer) == 0


def test_ua_cancel_without_a_final_fails_the_call_at_64_t1_and_frees_the_transaction() -> None:
    sim = Simulator(0)
    net = MemoryNetwork(sim)
    net.set_link(UAC_HOST, UAS_HOST, latency=L)
    caller = sim_node(sim, net, "caller", UAC_HOST)
    callee = sim_node(sim, net, "callee", UAS_HOST)
    caller_events = record(sim, caller)
    callee_events = record(sim, callee)

    def ring(event: object) -> None:
        if isinstance(event, IncomingCall):
            ua(callee).respond(event.call, 180, now=sim.now())

    recorder = callee.on_event
    assert recorder is not None

    def on_event(event: object) -> None:
        recorder(event)
        ring(event)

    callee.on_event = on_event
    net.add_rule(lambda p: label(p.data) == "487/INVITE", "drop", count=None)
    call = ua(caller).invite(
        TARGET, from_="<sip:alice@x>", to=f"<{TARGET}>", remote=UAS_ADDR, transport="udp",
        sdp=g711_sdp(UAC_HOST, 30000), now=0.0,
    )  # fmt: skip
    caller.poke()
    sim.run_for(1.0)
    ua(caller).cancel(call, 1.0)
    caller.poke()
    sim.run_until(lambda: False, 32.0 - L)
    assert len(ua(caller)._tl) == 1  # the INVITE transaction, still in Proceeding
    sim.run_until_idle(200.0)
    assert kinds(caller_events) == [(2 * L, "CallProgress"), (33.0, "CallFailed")]
    assert caller_events[1][1] == CallFailed(call, 408, "Request Timeout")
    assert kinds(callee_events) == [(L, "IncomingCall"), (1.0 + L, "CallCancelled")]
    assert isinstance(callee_events[1][1], CallCancelled)
    assert sends(net, "CANCEL") == [(1.0, 1.0 + L)]
    assert sends(net, "200/CANCEL") == [(1.0 + L, 1.0 + 2 * L)]
    # the callee's 487 is lost every time: Timer G resends it until Timer H (64*T1) gives up
    assert sends(net, "487/INVITE") == [(1.0 + L + d, "rule_drop") for d in CAPPED_SENDS]
    assert_all_clean(caller, callee)


# ------------------------------------------------------------------------------------------------
# random loss, duplication and reordering: 1,000 calls
# ------------------------------------------------------------------------------------------------
def delivered_in_order(net: MemoryNetwork) -> dict[bytes, list[tuple[str, str]]]:
    """Per Call-ID, the delivered packets as (receiving host, label) in the order the receivers
    saw them: by arrival time, ties in capture order (the simulator's tie-break)."""
    items = sorted(
        (p.arrival, index, p)
        for index, p in enumerate(net.capture)
        if not p.dropped and p.arrival is not None and p.data.strip()
    )
    calls: dict[bytes, list[tuple[str, str]]] = {}
    for _, _, packet in items:
        calls.setdefault(call_id(packet.data), []).append((packet.dst[0], label(packet.data)))
    return calls


def provisionals_before_the_2xx(calls: dict[bytes, list[tuple[str, str]]]) -> int:
    """180s the caller received before the first 2xx to its INVITE: each is a CallProgress
    (RFC 3261 §17.1.1.2 passes every provisional up, and an unreliable one carries nothing
    that tells a network copy from a resend — that is what RFC 3262's RSeq is for)."""
    total = 0
    for seen in calls.values():
        for host, name in seen:
            if host == UAC_HOST and name == "200/INVITE":
                break
            total += host == UAC_HOST and name == "180/INVITE"
    return total


def acked_before_the_bye(calls: dict[bytes, list[tuple[str, str]]]) -> int:
    """Calls whose callee got an ACK before the BYE: only those are established on its side
    (the callee's CallEstablished is the ACK; a BYE in the answered state ends the call)."""
    total = 0
    for seen in calls.values():
        names = [name for host, name in seen if host == UAS_HOST]
        total += "ACK" in names and names.index("ACK") < names.index("BYE")
    return total


def event_counts(events: Recorded) -> Counter[str]:
    return Counter(type(e).__name__ for _, e in events)


def test_ten_percent_loss_each_way_1000_calls_all_complete() -> None:
    """Nothing fails: a lost INVITE or 1xx/2xx is recovered by Timer A and the 2xx resends
    (each 2xx copy is ACKed again), a lost BYE or its 200 by Timer E.  A round trip fails
    with p = 0.19, and an INVITE gets 7 tries, a BYE 11, so a failed call is a ~1e-5 event
    per transaction: none for this seed.  Two counts are below 1,000 and
    both follow from the capture: a 180 lost on the way is never seen (the 2xx still is), and a
    callee whose ACKs were all lost until the BYE got there first (the 1 s hold leaves room
    for one or two 2xx resends) ends the call without ever calling it established."""
    lab = udp_lab(seed=20260101, calls=1000, rate=50.0, hold=1.0, loss=0.1)
    lab.run()
    faults = Counter(p.fault for p in lab.net.capture)
    assert faults == {None: 6098, "loss": 721}  # ~10 % of everything sent, either way
    stats = lab.gen.stats
    assert (stats.started, stats.established, stats.completed, stats.failed) == (
        1000,
        1000,
        1000,
        0,
    )
    assert lab.answer.stats.completed == 1000 and lab.answer.stats.failed == 0
    calls = delivered_in_order(lab.net)
    assert event_counts(lab.caller_events) == {
        "CallProgress": provisionals_before_the_2xx(calls),  # 180s lost on the way are not seen
        "CallEstablished": 1000,
        "CallEnded": 1000,
        "RequestCompleted": 1000,
    }
    assert event_counts(lab.callee_events) == {
        "IncomingCall": 1000,
        "CallEstablished": acked_before_the_bye(calls),
        "CallEnded": 1000,
    }
    assert provisionals_before_the_2xx(calls) == 893
    assert acked_before_the_bye(calls) == 971
    # every BYE got its 200: retransmissions (Timer E) recovered every lost BYE and 200
    assert {e.status for _, e in lab.caller_events if isinstance(e, RequestCompleted)} == {200}
    assert {e.reason for _, e in lab.callee_events if isinstance(e, CallEnded)} == {"remote-bye"}
    assert_all_clean(lab.caller, lab.callee)


def test_duplication_and_reordering_1000_calls_each_event_once() -> None:
    lab = udp_lab(seed=20260102, calls=1000, rate=50.0, hold=1.0, duplicate=0.1, reorder=0.1)
    lab.run()
    faults = Counter(p.fault for p in lab.net.capture)
    assert faults == {None: 5592, "duplicate": 573, "reorder": 594}
    stats = lab.gen.stats
    assert (stats.started, stats.established, stats.completed, stats.failed) == (
        1000,
        1000,
        1000,
        0,
    )
    calls = delivered_in_order(lab.net)
    assert event_counts(lab.caller_events) == {
        "CallProgress": provisionals_before_the_2xx(calls),
        "CallEstablished": 1000,
        "CallEnded": 1000,
        "RequestCompleted": 1000,
    }
    assert event_counts(lab.callee_events) == {
        "IncomingCall": 1000,
        "CallEstablished": 1000,
        "CallEnded": 1000,
    }
    # one event per call and kind: no duplicate reached the application
    for events in (lab.caller_events, lab.callee_events):
        per_call = Counter(
            (type(e).__name__, e.call.id)
            for _, e in events
            if isinstance(e, IncomingCall | CallEstablished | CallEnded)
        )
        assert set(per_call.values()) == {1}
    assert_all_clean(lab.caller, lab.callee)


# ------------------------------------------------------------------------------------------------
# partitions over TCP and TLS
# ------------------------------------------------------------------------------------------------
@dataclass
class StreamLab:
    sim: Simulator
    net: MemoryNetwork
    caller: Node
    callee: Node
    caller_events: Recorded
    callee_events: Recorded
    setup: float  # when the INVITE goes out: the connection needs 1 (TCP) or 2 (TLS) RTTs
    port: int


def stream_lab(
    transport: TransportName,
    on_incoming: Callable[[UserAgent, IncomingCall, float], None],
    options: UaOptions | None = None,
) -> StreamLab:
    options = options or UaOptions()
    sim = Simulator(0)
    net = MemoryNetwork(sim, connect_timeout=2.0)
    net.set_link(UAC_HOST, UAS_HOST, latency=L)
    tls = transport == "tls"
    ids = {
        "caller": TlsIdentity(("caller.example.com",)) if tls else None,
        "callee": TlsIdentity(("callee.example.com",)) if tls else None,
    }
    caller = sim_node(
        sim, net, "caller", UAC_HOST, transport=transport, tls_identity=ids["caller"],
        options=options,
    )  # fmt: skip
    callee = sim_node(
        sim, net, "callee", UAS_HOST, transport=transport, tls_identity=ids["callee"],
        options=options,
    )  # fmt: skip
    callee_ua = ua(callee)

    def behave(event: object) -> None:
        if isinstance(event, IncomingCall):
            on_incoming(callee_ua, event, sim.now())

    callee.on_event = behave
    lab = StreamLab(
        sim, net, caller, callee, record(sim, caller), record(sim, callee),
        4 * L if tls else 2 * L, 5061 if tls else 5060,
    )  # fmt: skip
    return lab


def place_call(lab: StreamLab, transport: TransportName) -> CallRef:
    call = ua(lab.caller).invite(
        "sip:bob@callee.example.com", from_="<sip:alice@caller.example.com>",
        to="<sip:bob@callee.example.com>", remote=(UAS_HOST, lab.port), transport=transport,
        sdp=g711_sdp(UAC_HOST, 30000),
        server_name="callee.example.com" if transport == "tls" else None, now=0.0,
    )  # fmt: skip
    lab.caller.poke()
    return call


def answer_at_once(callee: UserAgent, event: IncomingCall, now: float) -> None:
    callee.respond(event.call, 180, now=now)
    callee.respond(event.call, 200, sdp=g711_sdp(UAS_HOST, 40000), now=now)


def ring_only(callee: UserAgent, event: IncomingCall, now: float) -> None:
    callee.respond(event.call, 180, now=now)


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_partition_while_ringing_fails_the_invite_503_at_that_instant(
    transport: TransportName,
) -> None:
    lab = stream_lab(transport, ring_only)
    call = place_call(lab, transport)
    lab.sim.run_for(5.0)
    lab.net.partition(UAC_HOST, UAS_HOST)
    lab.sim.run_for(100.0)
    s = lab.setup
    assert kinds(lab.caller_events) == [(s + 2 * L, "CallProgress"), (5.0, "CallFailed")]
    # the connection the INVITE went out on is gone: a transport failure is a 503 (§8.1.3.1)
    assert lab.caller_events[1][1] == CallFailed(call, 503, "Service Unavailable")
    assert ua(lab.caller).active_calls == 0 and len(ua(lab.caller)._tl) == 0


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_partition_in_an_established_call_fails_only_the_bye(transport: TransportName) -> None:
    lab = stream_lab(transport, answer_at_once)
    call = place_call(lab, transport)
    lab.sim.run_for(10.0)
    lab.net.partition(UAC_HOST, UAS_HOST)
    lab.sim.run_for(10.0)
    # a broken connection is no reason to end a dialog: nothing happens until someone sends
    s = lab.setup
    assert kinds(lab.caller_events) == [(s + 2 * L, "CallProgress"), (s + 2 * L, "CallEstablished")]
    assert kinds(lab.callee_events) == [(s + L, "IncomingCall"), (s + 3 * L, "CallEstablished")]
    bye = ua(lab.caller).bye(call, 20.0)
    lab.caller.poke()
    lab.sim.run_for(100.0)
    # §15.1.1: the caller's session ends when the BYE is handed to its transaction; the BYE
    # needs a new connection, which times out (connect_timeout 2 s): a 503 for the BYE
    assert kinds(lab.caller_events)[2:] == [(20.0, "CallEnded"), (22.0, "RequestCompleted")]
    assert lab.caller_events[2][1] == CallEnded(call, "local-bye")
    assert lab.caller_events[3][1] == RequestCompleted(call, bye, 503, "Service Unavailable")
    assert sends(lab.net, "BYE") == [(22.0, "connect_failed")]
    assert ua(lab.caller).active_calls == 0 and len(ua(lab.caller)._tl) == 0
    # the callee never hears of it: without session timers its call stays up
    assert ua(lab.callee).active_calls == 1


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_partition_lets_the_session_timer_end_the_call_on_the_callee(
    transport: TransportName,
) -> None:
    timer = SessionTimerConfig(session_expires=90, min_se=90)  # the caller refreshes
    lab = stream_lab(transport, answer_at_once, UaOptions(session_timer=timer))
    call = place_call(lab, transport)
    lab.sim.run_for(10.0)
    lab.net.partition(UAC_HOST, UAS_HOST)
    lab.sim.run_for(200.0)
    s = lab.setup
    answered = s + L  # the callee's session timer runs from its 2xx (RFC 4028 §10)
    # the caller's refresh at half the interval cannot get a connection (2 s connect timeout)
    assert sends(lab.net, "INVITE")[1:] == [(s + 2 * L + 45.0 + 2.0, "connect_failed")]
    # RFC 4028 §10: the side that does not refresh sends BYE min(32, SE/3) = 30 s before expiry
    assert kinds(lab.callee_events) == [
        (answered, "IncomingCall"),
        (s + 3 * L, "CallEstablished"),
        (answered + 60.0, "CallEnded"),
    ]
    ended = lab.callee_events[2][1]
    assert isinstance(ended, CallEnded) and ended.reason == "session-expired"
    assert sends(lab.net, "BYE") == [(answered + 62.0, "connect_failed")]
    assert ua(lab.callee).active_calls == 0
    # (What the refresher does after its refresh failed with a 503 is not pinned here: RFC 4028
    # §10 only asks it to "follow the rules specific to that response code and retry if
    # possible".)
    assert kinds(lab.caller_events)[:2] == [
        (s + 2 * L, "CallProgress"),
        (s + 2 * L, "CallEstablished"),
    ]
    assert call is not None


@pytest.mark.parametrize("transport", ["tcp", "tls"])
def test_partition_while_ringing_leaves_the_callee_no_call(transport: TransportName) -> None:
    sim = Simulator(0)
    net = MemoryNetwork(sim)
    tls = transport == "tls"
    caller = sim_node(
        sim, net, "caller", UAC_HOST, transport=transport,
        tls_identity=TlsIdentity(("caller.example.com",)) if tls else None,
    )  # fmt: skip
    callee = sim_node(
        sim, net, "callee", UAS_HOST, transport=transport,
        tls_identity=TlsIdentity(("callee.example.com",)) if tls else None,
    )  # fmt: skip
    answer = AnsweringUas(callee, answer_delay=3.0)
    gen = CallGenerator(
        caller, "sip:bob@callee.example.com", (UAS_HOST, 5061 if tls else 5060),
        transport=transport, calls=1, rate=1.0, hold=10.0,
        server_name="callee.example.com" if tls else None,
    )  # fmt: skip
    gen.start()
    sim.call_at(1.0, net.partition, UAC_HOST, UAS_HOST)
    sim.run_for(200.0)
    assert gen.stats.failures == {"503 Service Unavailable": 1}
    assert ua(callee).active_calls == 0
    assert answer.stats.started == 1
    assert answer.stats.failures == {"transport-error": 1}  # ended at the partition, not answered
