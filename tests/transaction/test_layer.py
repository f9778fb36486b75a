"""TransactionLayer behaviour at exact virtual times: retransmissions, timeouts, matching,
CANCEL, response routing, RFC 2543 fallback, transport errors, and random operation sequences."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sbcsim.errors import LocalProtocolError, TransportError
from sbcsim.net.base import PeerInfo, TransportName
from sbcsim.sip import Request, Response, make_response, parse_message
from sbcsim.transaction import (
    AckReceived,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    State,
    StrayResponse,
    TimerConfig,
    TransactionEvent,
    TransactionKey,
    TransactionLayer,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
    make_cancel,
    make_non2xx_ack,
)

RFC4475 = Path(__file__).resolve().parent.parent / "data" / "rfc4475"

UAC_IP = "192.0.2.10"
UAS_IP = "192.0.2.20"
UAS = (UAS_IP, 5060)
FROM_UAS = PeerInfo("udp", local=(UAC_IP, 5060), remote=UAS)
FROM_UAC = PeerInfo("udp", local=UAS, remote=(UAC_IP, 5060))


def request(
    method: str = "INVITE",
    branch: str | None = "z9hG4bKa1",
    *,
    sent_by: str = f"{UAC_IP}:5060",
    transport: str = "UDP",
    rport: bool = False,
    cseq: int = 1,
    to_tag: str | None = None,
    routes: tuple[str, ...] = (),
    uri: str = "sip:bob@example.com",
) -> Request:
    """A request built field by field (what a peer would send, or what our TU hands us)."""
    via = f"SIP/2.0/{transport} {sent_by}"
    if branch is not None:
        via += f";branch={branch}"
    if rport:
        via += ";rport"
    to = "<sip:bob@example.com>" + (f";tag={to_tag}" if to_tag else "")
    fields = [("Via", via)]
    fields += [("Route", r) for r in routes]
    fields += [
        ("Max-Forwards", "70"),
        ("From", "Alice <sip:alice@example.com>;tag=a1"),
        ("To", to),
        ("Call-ID", "call-1@192.0.2.10"),
        ("CSeq", f"{cseq} {method}"),
    ]
    return Request(method, uri, fields)


def peer(
    remote: tuple[str, int] = (UAC_IP, 5060),
    transport: TransportName = "udp",
    connection_id: int | None = None,
) -> PeerInfo:
    return PeerInfo(transport, local=UAS, remote=remote, connection_id=connection_id)


def run_timers(
    layer: TransactionLayer, until: float = 1e9
) -> list[tuple[float, list[Outgoing], list[TransactionEvent]]]:
    """Fire every timer up to ``until``, one deadline at a time; what each firing produced."""
    log = []
    while (deadline := layer.get_timer()) is not None and deadline <= until:
        layer.handle_timer(deadline)
        log.append((deadline, layer.messages_to_send(), layer.next_events()))
    return log


def server_with(
    req: Request, p: PeerInfo | None = None, **kw: float | None
) -> tuple[TransactionLayer, TransactionKey]:
    layer = TransactionLayer(TimerConfig(**kw)) if kw else TransactionLayer()
    layer.receive(req, p or peer(), 0.0)
    (event,) = layer.next_events()
    assert isinstance(event, RequestReceived)
    layer.messages_to_send()
    return layer, event.key


# ------------------------------------------------------------------------------------------------
# client retransmissions and timeouts
# ------------------------------------------------------------------------------------------------
def test_invite_over_udp_retransmits_with_uncapped_doubling_then_timer_b() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, "udp", 0.0)
    assert layer.messages_to_send() == [Outgoing(inv, UAS, "udp")]
    log = run_timers(layer)
    sends = [t for t, out, _ in log for o in out if o.message is inv]
    assert sends == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert log[-1][0] == 32.0
    assert log[-1][2] == [TransactionTimedOut(key, "B", inv), TransactionTerminated(key)]
    assert len(layer) == 0 and layer.get_timer() is None


def test_non_invite_over_udp_retransmits_capped_at_t2_then_timer_f() -> None:
    layer = TransactionLayer()
    opt = request("OPTIONS")
    key = layer.send_request(opt, UAS, "udp", 0.0)
    log = run_timers(layer)
    sends = [t for t, out, _ in log if out]
    assert sends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert log[-1] == (32.0, [], [TransactionTimedOut(key, "F", opt), TransactionTerminated(key)])


def test_non_invite_retransmits_every_t2_once_proceeding() -> None:
    layer = TransactionLayer()
    opt = request("OPTIONS")
    key = layer.send_request(opt, UAS, "udp", 0.0)
    layer.receive(make_response(opt, 100), FROM_UAS, 0.2)
    assert layer.state_of(key) is State.PROCEEDING
    log = run_timers(layer)
    sends = [t for t, out, _ in log if out]
    assert sends == [0.5, 4.5, 8.5, 12.5, 16.5, 20.5, 24.5, 28.5]
    assert log[-1][0] == 32.0 and isinstance(log[-1][2][0], TransactionTimedOut)


def test_reliable_transport_never_retransmits_but_still_times_out() -> None:
    layer = TransactionLayer()
    inv = request(transport="TCP")
    key = layer.send_request(inv, UAS, "tcp", 0.0, server_name="uas.example.com")
    assert layer.messages_to_send() == [Outgoing(inv, UAS, "tcp", None, "uas.example.com")]
    log = run_timers(layer)
    assert log == [(32.0, [], [TransactionTimedOut(key, "B", inv), TransactionTerminated(key)])]


def test_invite_proceeding_has_no_timeout() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, "udp", 0.0)
    layer.receive(make_response(inv, 180, to_tag="b1"), FROM_UAS, 0.2)
    assert layer.get_timer() is None  # A and B stopped (RFC 3261 Figure 5)
    assert layer.state_of(key) is State.PROCEEDING


def test_non_2xx_final_is_acked_and_timer_d_is_32s_over_udp() -> None:
    layer = TransactionLayer()
    inv = request(routes=("<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"))
    key = layer.send_request(inv, UAS, "udp", 0.0)
    layer.messages_to_send()
    busy = make_response(inv, 486, to_tag="b1")
    layer.receive(busy, FROM_UAS, 1.0)
    (out,) = layer.messages_to_send()
    ack = out.message
    assert isinstance(ack, Request) and out.remote == UAS and out.transport == "udp"
    assert ack.to_bytes() == (
        b"ACK sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Route: <sip:p2.example.com;lr>\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: Alice <sip:alice@example.com>;tag=a1\r\n"
        b"To: <sip:bob@example.com>;tag=b1\r\n"
        b"Call-ID: call-1@192.0.2.10\r\n"
        b"CSeq: 1 ACK\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert layer.next_events() == [ResponseReceived(key, busy, FROM_UAS)]
    # a retransmitted final is acked again with the same ACK, and not passed up
    layer.receive(make_response(inv, 486, to_tag="b1"), FROM_UAS, 2.0)
    assert [o.message for o in layer.messages_to_send()] == [ack]
    assert layer.next_events() == []
    assert layer.get_timer() == 33.0
    assert run_timers(layer) == [(33.0, [], [TransactionTerminated(key)])]


def test_timer_d_is_zero_over_tcp() -> None:
    layer = TransactionLayer()
    inv = request(transport="TCP")
    key = layer.send_request(inv, UAS, "tcp", 0.0, connection_id=7)
    layer.messages_to_send()
    busy = make_response(inv, 603, to_tag="b1")
    layer.receive(busy, PeerInfo("tcp", (UAC_IP, 40000), UAS, connection_id=7), 1.0)
    (out,) = layer.messages_to_send()
    assert isinstance(out.message, Request) and out.message.method == "ACK"
    assert out.connection_id == 7
    events = layer.next_events()
    assert [type(e) for e in events] == [ResponseReceived, TransactionTerminated]
    assert layer.state_of(key) is None and layer.get_timer() is None


@pytest.mark.parametrize(("transport", "end"), [("udp", 6.0), ("tcp", 1.0)])
def test_timer_k_is_t4_over_udp_and_zero_over_tcp(transport: TransportName, end: float) -> None:
    layer = TransactionLayer()
    opt = request("OPTIONS", transport=transport.upper())
    key = layer.send_request(opt, UAS, transport, 0.0)
    layer.messages_to_send()
    ok = make_response(opt, 200, to_tag="b1")
    layer.receive(ok, PeerInfo(transport, (UAC_IP, 5060), UAS), 1.0)
    assert layer.next_events()[0] == ResponseReceived(
        key, ok, PeerInfo(transport, (UAC_IP, 5060), UAS)
    )
    if transport == "udp":
        assert layer.state_of(key) is State.COMPLETED
        # a retransmitted final is absorbed in Completed
        layer.receive(make_response(opt, 200, to_tag="b1"), FROM_UAS, 2.0)
        assert layer.next_events() == []
        assert run_timers(layer) == [(end, [], [TransactionTerminated(key)])]
    else:
        assert layer.state_of(key) is None


def test_timer_m_keeps_invite_client_accepting_forked_2xx_for_32s() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, "udp", 0.0)
    first = make_response(inv, 200, to_tag="fork1")
    second = make_response(inv, 200, to_tag="fork2")
    layer.receive(first, FROM_UAS, 1.0)
    layer.receive(make_response(inv, 180, to_tag="fork3"), FROM_UAS, 1.5)  # absorbed
    layer.receive(second, FROM_UAS, 2.0)
    layer.receive(make_response(inv, 200, to_tag="fork1"), FROM_UAS, 3.0)  # retransmission
    events = layer.next_events()
    assert [e.response.to.tag for e in events if isinstance(e, ResponseReceived)] == [
        "fork1",
        "fork2",
        "fork1",
    ]
    assert layer.messages_to_send() == [Outgoing(inv, UAS, "udp")]  # no ACK: that is the TU's
    assert layer.state_of(key) is State.ACCEPTED
    assert run_timers(layer) == [(33.0, [], [TransactionTerminated(key)])]
    # after Timer M a late 2xx matches nothing: the dialog layer re-ACKs it
    late = make_response(inv, 200, to_tag="fork1")
    layer.receive(late, FROM_UAS, 40.0)
    assert layer.next_events() == [StrayResponse(late, FROM_UAS)]


def test_response_matching_uses_branch_and_cseq_method() -> None:
    layer = TransactionLayer()
    inv = request()
    layer.send_request(inv, UAS, "udp", 0.0)
    other_branch = make_response(request(branch="z9hG4bKother"), 180)
    other_method = make_response(inv, 200)
    other_method.headers.set("CSeq", "1 OPTIONS")
    layer.receive(other_branch, FROM_UAS, 0.1)
    layer.receive(other_method, FROM_UAS, 0.1)
    assert layer.next_events() == [
        StrayResponse(other_branch, FROM_UAS),
        StrayResponse(other_method, FROM_UAS),
    ]


def test_get_timer_skips_stopped_timers() -> None:
    layer = TransactionLayer()
    inv = request()
    layer.send_request(inv, UAS, "udp", 0.0)
    assert layer.get_timer() == 0.5
    layer.receive(make_response(inv, 200, to_tag="b"), FROM_UAS, 0.25)
    assert layer.get_timer() == 32.25  # Timer M; A (0.5) and B (32.0) were stopped
    layer.handle_timer(32.0)  # stale entries fire nothing
    assert layer.messages_to_send() == [Outgoing(inv, UAS, "udp")]
    assert layer.next_events()[1:] == []


# ------------------------------------------------------------------------------------------------
# server side
# ------------------------------------------------------------------------------------------------
def test_retransmitted_invite_is_absorbed_and_last_response_resent() -> None:
    layer, key = server_with(request(), trying=None)
    layer.receive(request(), peer(), 0.1)  # nothing sent yet: nothing to re-send
    assert layer.messages_to_send() == [] and layer.next_events() == []
    inv = layer._txs[key].request
    ringing = make_response(inv, 180, to_tag="b1")
    layer.send_response(key, ringing, 0.2)
    assert layer.messages_to_send() == [Outgoing(ringing, (UAC_IP, 5060), "udp")]
    layer.receive(request(), peer(), 0.5)
    assert layer.messages_to_send() == [Outgoing(ringing, (UAC_IP, 5060), "udp")]
    assert layer.next_events() == []


def test_100_trying_after_200ms_unless_the_tu_answers_first() -> None:
    layer, key = server_with(request())
    assert layer.get_timer() == 0.2
    run_timers(layer, until=0.2)
    assert layer.state_of(key) is State.PROCEEDING
    layer.receive(request(), peer(), 0.5)
    (out,) = layer.messages_to_send()  # the 100 is the response a retransmission gets
    assert isinstance(out.message, Response) and out.message.status == 100
    assert out.message.to.tag is None
    # a TU that answers within 200 ms suppresses it
    layer, key = server_with(request(branch="z9hG4bKa2"))
    req = layer._txs[key].request
    layer.send_response(key, make_response(req, 180, to_tag="t"), 0.1)
    layer.messages_to_send()
    assert layer.get_timer() is None
    # trying=0 sends it at once
    layer, key = server_with(request(branch="z9hG4bKa3"), trying=0.0)
    assert layer._txs[key].last_out is not None


def test_timer_g_retransmits_486_until_timer_h() -> None:
    layer, key = server_with(request(), trying=None)
    busy = make_response(layer._txs[key].request, 486, to_tag="b1")
    layer.send_response(key, busy, 0.0)
    assert layer.messages_to_send() == [Outgoing(busy, (UAC_IP, 5060), "udp")]
    log = run_timers(layer)
    sends = [t for t, out, _ in log if out == [Outgoing(busy, (UAC_IP, 5060), "udp")]]
    assert sends == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert log[-1][0] == 32.0
    timed_out, terminated = log[-1][2]
    assert isinstance(timed_out, TransactionTimedOut) and timed_out.timer == "H"
    assert timed_out.key == key and timed_out.request.method == "INVITE"
    assert terminated == TransactionTerminated(key)


def test_ack_for_non_2xx_is_absorbed_then_timer_i() -> None:
    layer, key = server_with(request(), trying=None)
    busy = make_response(layer._txs[key].request, 486, to_tag="b1")
    layer.send_response(key, busy, 0.0)
    layer.messages_to_send()
    layer.receive(request("ACK", to_tag="b1"), peer(), 0.3)
    assert layer.state_of(key) is State.CONFIRMED
    assert layer.next_events() == [] and layer.messages_to_send() == []
    layer.receive(request("ACK", to_tag="b1"), peer(), 0.4)  # retransmitted ACK: absorbed
    layer.receive(request(), peer(), 0.4)  # late INVITE retransmission: absorbed
    assert layer.next_events() == [] and layer.messages_to_send() == []
    assert run_timers(layer) == [(5.3, [], [TransactionTerminated(key)])]


def test_timer_i_is_zero_over_tcp() -> None:
    p = peer((UAC_IP, 40001), "tcp", connection_id=3)
    layer, key = server_with(request(transport="TCP"), p, trying=None)
    layer.send_response(key, make_response(layer._txs[key].request, 486, to_tag="b"), 0.0)
    assert layer.get_timer() == 32.0  # H only: no G over TCP
    layer.receive(request("ACK", transport="TCP", to_tag="b"), p, 0.1)
    assert layer.state_of(key) is None
    assert layer.next_events() == [TransactionTerminated(key)]


def test_2xx_ack_reaches_the_tu_and_accepted_passes_2xx_retransmissions() -> None:
    layer, key = server_with(request(), trying=None)
    inv = layer._txs[key].request
    ok = make_response(inv, 200, to_tag="b1")
    layer.send_response(key, ok, 1.0)
    layer.send_response(key, ok, 1.5)  # the dialog layer's retransmission
    assert layer.messages_to_send() == [Outgoing(ok, (UAC_IP, 5060), "udp")] * 2
    assert layer.state_of(key) is State.ACCEPTED
    layer.receive(request(), peer(), 1.6)  # INVITE retransmission: absorbed, nothing re-sent
    assert layer.messages_to_send() == [] and layer.next_events() == []
    ack = request("ACK", branch="z9hG4bKack1", to_tag="b1")  # new branch: no transaction
    layer.receive(ack, peer(), 2.0)
    same_branch_ack = request("ACK", to_tag="b1")  # matches the INVITE in Accepted
    layer.receive(same_branch_ack, peer(), 2.1)
    assert layer.next_events() == [AckReceived(ack, peer()), AckReceived(same_branch_ack, peer())]
    with pytest.raises(LocalProtocolError):
        layer.send_response(key, make_response(inv, 180, to_tag="b1"), 2.2)
    with pytest.raises(LocalProtocolError):
        layer.send_response(key, make_response(inv, 486, to_tag="b1"), 2.2)
    assert run_timers(layer) == [(33.0, [], [TransactionTerminated(key)])]
    with pytest.raises(LocalProtocolError):
        layer.send_response(key, ok, 40.0)


@pytest.mark.parametrize(("transport", "end"), [("udp", 33.0), ("tcp", 1.0)])
def test_timer_j_is_64_t1_over_udp_and_zero_over_tcp(transport: TransportName, end: float) -> None:
    p = peer(transport=transport, connection_id=None if transport == "udp" else 9)
    layer, key = server_with(request("OPTIONS", transport=transport.upper()), p)
    ok = make_response(layer._txs[key].request, 200, to_tag="b")
    layer.send_response(key, ok, 1.0)
    layer.messages_to_send()
    if transport == "udp":
        layer.receive(request("OPTIONS"), p, 2.0)
        assert layer.messages_to_send() == [Outgoing(ok, (UAC_IP, 5060), "udp")]
        assert run_timers(layer) == [(end, [], [TransactionTerminated(key)])]
    else:
        assert layer.state_of(key) is None


def test_non_invite_server_absorbs_retransmissions_in_trying() -> None:
    layer, key = server_with(request("OPTIONS"))
    assert layer.get_timer() is None  # no 100 Trying for non-INVITE
    layer.receive(request("OPTIONS"), peer(), 0.5)
    assert layer.messages_to_send() == [] and layer.next_events() == []
    assert layer.state_of(key) is State.TRYING


def test_illegal_tu_responses_raise() -> None:
    layer, key = server_with(request("OPTIONS"))
    req = layer._txs[key].request
    layer.send_response(key, make_response(req, 200, to_tag="b"), 0.1)
    with pytest.raises(LocalProtocolError):
        layer.send_response(key, make_response(req, 404, to_tag="b"), 0.2)
    bad = make_response(req, 200, to_tag="b")
    bad.status = 99
    with pytest.raises(LocalProtocolError):
        layer.send_response(key, bad, 0.2)
    unknown = TransactionKey("z9hG4bKnone", "192.0.2.10:5060", "OPTIONS", False)
    with pytest.raises(LocalProtocolError):
        layer.send_response(unknown, make_response(req, 200), 0.2)
    client_key = layer.send_request(request("OPTIONS", "z9hG4bKc1"), UAS, "udp", 0.3)
    with pytest.raises(LocalProtocolError):
        layer.send_response(client_key, make_response(req, 200), 0.3)


# ------------------------------------------------------------------------------------------------
# CANCEL
# ------------------------------------------------------------------------------------------------
def test_cancel_matching_a_proceeding_invite_goes_to_the_tu() -> None:
    layer, inv_key = server_with(request(), trying=None)
    inv = layer._txs[inv_key].request
    layer.send_response(inv_key, make_response(inv, 180, to_tag="b1"), 0.1)
    layer.messages_to_send()
    cancel = make_cancel(request())
    layer.receive(cancel, peer(), 1.0)
    (event,) = layer.next_events()
    assert isinstance(event, RequestReceived)
    assert event.cancels == inv_key and event.request is cancel
    assert event.key == TransactionKey("z9hG4bKa1", "192.0.2.10:5060", "CANCEL", False)
    assert layer.messages_to_send() == []
    layer.send_response(event.key, make_response(cancel, 200, to_tag="b1"), 1.0)
    layer.send_response(inv_key, make_response(inv, 487, to_tag="b1"), 1.0)
    statuses = [
        o.message.status for o in layer.messages_to_send() if isinstance(o.message, Response)
    ]
    assert statuses == [200, 487]


def test_cancel_without_invite_is_answered_481_by_the_layer() -> None:
    layer = TransactionLayer()
    cancel = make_cancel(request(branch="z9hG4bKgone"))
    layer.receive(cancel, peer(), 0.0)
    assert layer.next_events() == []
    (out,) = layer.messages_to_send()
    assert isinstance(out.message, Response) and out.message.status == 481
    assert str(out.message.cseq) == "1 CANCEL" and out.message.to.tag is not None
    assert out.remote == (UAC_IP, 5060)
    layer.receive(make_cancel(request(branch="z9hG4bKgone")), peer(), 0.5)  # retransmission
    assert layer.messages_to_send() == [out]
    assert run_timers(layer) == [(32.0, [], [])]  # Timer J; the TU never heard of it
    assert len(layer) == 0


def test_cancel_after_the_final_response_gets_200_and_leaves_the_invite_alone() -> None:
    layer, inv_key = server_with(request(), trying=None)
    inv = layer._txs[inv_key].request
    layer.send_response(inv_key, make_response(inv, 486, to_tag="b7"), 0.1)
    layer.messages_to_send()
    layer.receive(make_cancel(request()), peer(), 0.2)
    assert layer.next_events() == []
    (out,) = layer.messages_to_send()
    assert isinstance(out.message, Response) and out.message.status == 200
    assert out.message.to.tag == "b7"  # §9.2: same To tag as the INVITE's response
    assert layer.state_of(inv_key) is State.COMPLETED


def test_make_cancel_follows_9_1() -> None:
    inv = request(routes=("<sip:p1.example.com;lr>",), cseq=42)
    inv.headers.append("Contact", "<sip:alice@192.0.2.10>")
    inv.body = b"v=0\r\n"
    cancel = make_cancel(inv, headers=[("Reason", 'SIP;cause=487;text="Request Terminated"')])
    assert cancel.to_bytes() == (
        b"CANCEL sip:bob@example.com SIP/2.0\r\n"
        b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1\r\n"
        b"Route: <sip:p1.example.com;lr>\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: Alice <sip:alice@example.com>;tag=a1\r\n"
        b"To: <sip:bob@example.com>\r\n"
        b"Call-ID: call-1@192.0.2.10\r\n"
        b"CSeq: 42 CANCEL\r\n"
        b'Reason: SIP;cause=487;text="Request Terminated"\r\n'
        b"Content-Length: 0\r\n\r\n"
    )
    with pytest.raises(LocalProtocolError):
        make_cancel(request("OPTIONS"))


def test_make_non2xx_ack_keeps_only_the_top_via() -> None:
    inv = request()
    inv.headers.append("Via", "SIP/2.0/UDP proxy.example.com;branch=z9hG4bKp1")
    ack = make_non2xx_ack(inv, make_response(inv, 404, to_tag="n1"))
    assert [v.branch for v in ack.via] == ["z9hG4bKa1"]
    assert ack.to.tag == "n1" and str(ack.cseq) == "1 ACK"


def test_cancel_waits_for_a_provisional_response() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, "udp", 0.0, server_name="uas.example.com")
    layer.messages_to_send()
    cancel_key = layer.cancel(key, 0.1, headers=[("Reason", "SIP;cause=487")])
    assert cancel_key == TransactionKey("z9hG4bKa1", "192.0.2.10:5060", "CANCEL", True)
    assert layer.cancel(key, 0.2) == cancel_key  # idempotent
    assert layer.messages_to_send() == []  # §9.1: not before a 1xx
    ringing = make_response(inv, 180, to_tag="b1")
    layer.receive(ringing, FROM_UAS, 0.3)
    (out,) = layer.messages_to_send()
    assert isinstance(out.message, Request) and out.message.method == "CANCEL"
    assert out.message.headers.get("Reason") == "SIP;cause=487"
    assert (out.remote, out.transport, out.server_name) == (UAS, "udp", "uas.example.com")
    assert layer.state_of(cancel_key) is State.TRYING
    layer.receive(make_response(out.message, 200, to_tag="b1"), FROM_UAS, 0.4)
    layer.receive(make_response(inv, 487, to_tag="b1"), FROM_UAS, 0.5)
    responses = [e.response.status for e in layer.next_events() if isinstance(e, ResponseReceived)]
    assert responses == [180, 200, 487]


def test_cancel_in_proceeding_goes_at_once_and_not_after_a_final() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, "udp", 0.0)
    layer.receive(make_response(inv, 183, to_tag="b1"), FROM_UAS, 0.1)
    layer.messages_to_send()
    cancel_key = layer.cancel(key, 0.2)
    (out,) = layer.messages_to_send()
    assert isinstance(out.message, Request) and out.message.method == "CANCEL"
    assert cancel_key is not None and layer.state_of(cancel_key) is State.TRYING
    other = layer.send_request(request(branch="z9hG4bKa9"), UAS, "udp", 0.3)
    layer.receive(make_response(request(branch="z9hG4bKa9"), 200, to_tag="x"), FROM_UAS, 0.4)
    assert layer.cancel(other, 0.5) is None  # already answered
    assert layer.cancel(TransactionKey("z9hG4bKnope", "h", "INVITE", True), 0.5) is None
    with pytest.raises(LocalProtocolError):
        layer.cancel(cancel_key, 0.5)  # a CANCEL is not cancelled


def test_pending_cancel_is_dropped_when_a_final_comes_first() -> None:
    layer = TransactionLayer()
    inv = request()
    key = layer.send_request(inv, UAS, "udp", 0.0)
    layer.cancel(key, 0.1)
    layer.messages_to_send()
    layer.receive(make_response(inv, 486, to_tag="b"), FROM_UAS, 0.2)
    sent = [o.message.method for o in layer.messages_to_send() if isinstance(o.message, Request)]
    assert sent == ["ACK"]


# ------------------------------------------------------------------------------------------------
# §18.2.1 / §18.2.2 / RFC 3581
# ------------------------------------------------------------------------------------------------
def test_rport_is_filled_and_response_goes_to_source_port() -> None:
    nat = peer(("203.0.113.9", 31001))
    layer, key = server_with(request(rport=True), nat, trying=None)
    req = layer._txs[key].request
    assert req.headers.get("Via") == (
        "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1;rport=31001;received=203.0.113.9"
    )
    ok = make_response(req, 200, to_tag="b")
    layer.send_response(key, ok, 0.1)
    assert layer.messages_to_send() == [Outgoing(ok, ("203.0.113.9", 31001), "udp")]
    assert ok.top_via.rport == 31001 and ok.top_via.received == "203.0.113.9"


def test_rport_demands_received_even_when_the_address_is_the_same() -> None:
    layer, key = server_with(request(rport=True), peer((UAC_IP, 5060)), trying=None)
    via = layer._txs[key].request.top_via
    assert (via.received, via.rport) == (UAC_IP, 5060)


def test_received_without_rport_uses_sent_by_port() -> None:
    nat = peer(("203.0.113.9", 31001))
    layer, key = server_with(request(sent_by="192.0.2.10:5070"), nat, trying=None)
    req = layer._txs[key].request
    assert (
        req.headers.get("Via")
        == "SIP/2.0/UDP 192.0.2.10:5070;branch=z9hG4bKa1;received=203.0.113.9"
    )
    ok = make_response(req, 200, to_tag="b")
    layer.send_response(key, ok, 0.1)
    assert layer.messages_to_send()[0].remote == ("203.0.113.9", 5070)


def test_matching_source_leaves_the_via_alone_and_defaults_to_5060() -> None:
    req = request(sent_by=UAC_IP)
    raw = req.to_bytes()
    layer, key = server_with(req, peer((UAC_IP, 5099)), trying=None)
    assert layer._txs[key].request.to_bytes() == raw
    layer.send_response(key, make_response(req, 180, to_tag="b"), 0.1)
    assert layer.messages_to_send()[0].remote == (UAC_IP, 5060)


def test_hostname_sent_by_gets_received() -> None:
    layer, key = server_with(request(sent_by="uac.example.com"), peer(), trying=None)
    assert layer._txs[key].request.top_via.received == UAC_IP


def test_stream_responses_use_the_arrival_connection() -> None:
    p = peer(("203.0.113.9", 45123), "tls", connection_id=12)
    layer, key = server_with(request(transport="TLS", sent_by="uac.example.com"), p, trying=None)
    ok = make_response(layer._txs[key].request, 200, to_tag="b")
    layer.send_response(key, ok, 0.1)
    # on connection 12; should it be gone, a new connection to received + sent-by port (5061)
    assert layer.messages_to_send() == [Outgoing(ok, ("203.0.113.9", 5061), "tls", 12)]


def test_ipv6_source_is_compared_without_brackets() -> None:
    v6 = PeerInfo("udp", local=("2001:db8::1", 5060), remote=("2001:db8::10", 5060))
    layer, key = server_with(request(sent_by="[2001:db8::10]:5060"), v6, trying=None)
    assert layer._txs[key].request.top_via.received is None


# ------------------------------------------------------------------------------------------------
# RFC 2543 fallback matching (§17.2.3)
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("branch", ["z9hG4bK", None, "2543-style-branch"])
def test_rfc2543_matching_of_invite_retransmission_and_ack(branch: str | None) -> None:
    layer, key = server_with(request(branch=branch), trying=None)
    assert key.branch.startswith("rfc2543;")
    req = layer._txs[key].request
    busy = make_response(req, 486, to_tag="b1")
    layer.send_response(key, busy, 0.1)
    layer.messages_to_send()
    layer.receive(request(branch=branch), peer(), 0.2)  # retransmission
    assert layer.messages_to_send() == [Outgoing(busy, (UAC_IP, 5060), "udp")]
    assert layer.next_events() == []
    # an ACK whose To tag is not our response's does not match the transaction
    stray = request("ACK", branch=branch, to_tag="other")
    layer.receive(stray, peer(), 0.3)
    assert layer.next_events() == [AckReceived(stray, peer())]
    assert layer.state_of(key) is State.COMPLETED
    layer.receive(request("ACK", branch=branch, to_tag="b1"), peer(), 0.4)
    assert layer.state_of(key) is State.CONFIRMED
    # the same request from another Call-ID is another transaction
    other = request(branch=branch)
    other.headers.set("Call-ID", "call-2@192.0.2.10")
    layer.receive(other, peer(), 0.5)
    (event,) = layer.next_events()
    assert isinstance(event, RequestReceived) and event.key != key


def test_rfc4475_missing_transaction_identifier_falls_back() -> None:
    data = (RFC4475 / "badbranch.dat").read_bytes()
    first = parse_message(data)
    assert isinstance(first, Request)
    layer = TransactionLayer()
    src = peer(("192.0.2.1", 5060))
    layer.receive(first, src, 0.0)
    (event,) = layer.next_events()
    assert isinstance(event, RequestReceived) and event.key.branch.startswith("rfc2543;")
    ok = make_response(event.request, 200, to_tag="x1")
    layer.send_response(event.key, ok, 0.1)
    layer.messages_to_send()
    layer.receive(parse_message(data), src, 0.6)
    assert layer.messages_to_send() == [Outgoing(ok, ("192.0.2.1", 5060), "udp")]
    assert layer.next_events() == []


def test_rfc4475_rfc2543_invite_matches_cancel() -> None:
    data = (RFC4475 / "inv2543.dat").read_bytes()
    inv = parse_message(data)
    assert isinstance(inv, Request)
    layer = TransactionLayer(TimerConfig(trying=None))
    src = peer(("192.0.2.5", 5060))
    layer.receive(inv, src, 0.0)
    (event,) = layer.next_events()
    assert isinstance(event, RequestReceived)
    assert inv.top_via.received == "192.0.2.5"  # sent-by is a host name
    layer.send_response(event.key, make_response(inv, 180, to_tag="r1"), 0.1)
    assert layer.messages_to_send()[0].remote == ("192.0.2.5", 5060)
    cancel = make_cancel(parse_message(data))
    layer.receive(cancel, src, 0.2)
    (event2,) = layer.next_events()
    assert isinstance(event2, RequestReceived) and event2.cancels == event.key


# ------------------------------------------------------------------------------------------------
# transport errors, ACK sending, misuse
# ------------------------------------------------------------------------------------------------
def test_transport_error_fails_the_transactions_that_sent_there() -> None:
    layer = TransactionLayer()
    inv = request(transport="TLS")
    key = layer.send_request(inv, UAS, "tls", 0.0, server_name="uas.example.com")
    other = layer.send_request(
        request("OPTIONS", "z9hG4bKo1", transport="TLS"), ("192.0.2.99", 5061), "tls", 0.0
    )
    same_addr_udp = layer.send_request(request("OPTIONS", "z9hG4bKo2"), UAS, "udp", 0.0)
    error = TransportError("TLS handshake failed", address=UAS)
    layer.transport_error(UAS, "tls", error, 0.1)
    assert layer.next_events() == [TransportFailed(key, error, inv), TransactionTerminated(key)]
    assert layer.state_of(other) is State.TRYING
    assert layer.state_of(same_addr_udp) is State.TRYING


def test_transport_error_on_a_server_connection() -> None:
    p = peer(("203.0.113.9", 45123), "tcp", connection_id=4)
    layer, key = server_with(request(transport="TCP"), p, trying=None)
    layer.send_response(key, make_response(layer._txs[key].request, 180, to_tag="b"), 0.1)
    layer.transport_error(("203.0.113.9", 45123), "tcp", TransportError("reset"), 0.2)
    events = layer.next_events()
    assert [type(e) for e in events] == [TransportFailed, TransactionTerminated]


def test_ack_is_sent_without_a_transaction() -> None:
    layer = TransactionLayer()
    ack = request("ACK", branch="z9hG4bKack", to_tag="b")
    key = layer.send_request(ack, UAS, "udp", 0.0)
    assert key.method == "ACK" and len(layer) == 0
    assert layer.messages_to_send() == [Outgoing(ack, UAS, "udp")]
    assert layer.get_timer() is None


def test_send_request_misuse_raises() -> None:
    layer = TransactionLayer()
    layer.send_request(request(), UAS, "udp", 0.0)
    with pytest.raises(LocalProtocolError):
        layer.send_request(request(), UAS, "udp", 0.0)  # same branch and method
    with pytest.raises(LocalProtocolError):
        layer.send_request(request(branch=None), UAS, "udp", 0.0)
    bad = request(branch="z9hG4bKm1")
    bad.headers.set("CSeq", "1 OPTIONS")
    with pytest.raises(LocalProtocolError):
        layer.send_request(bad, UAS, "udp", 0.0)
    no_via = request(branch="z9hG4bKm2")
    no_via.headers.remove("Via")
    with pytest.raises(LocalProtocolError):
        layer.send_request(no_via, UAS, "udp", 0.0)


def test_same_branch_for_client_and_server_does_not_collide() -> None:
    layer = TransactionLayer(TimerConfig(trying=None))
    client = layer.send_request(request(), UAS, "udp", 0.0)
    layer.receive(request(), peer(), 0.0)  # e.g. a looped request
    (event,) = layer.next_events()
    assert isinstance(event, RequestReceived) and event.key != client and len(layer) == 2


def test_heap_is_compacted_when_stopped_timers_pile_up() -> None:
    layer = TransactionLayer()
    for n in range(3000):
        inv = request(branch=f"z9hG4bKc{n}")
        layer.send_request(inv, UAS, "udp", 0.0)
        layer.receive(make_response(inv, 200, to_tag="b"), FROM_UAS, 0.0)
    assert len(layer) == 3000
    assert len(layer._heap) <= 2 * 3000 + 1024
    layer.messages_to_send()
    layer.next_events()
    log = run_timers(layer)
    assert [t for t, _, _ in log] == [32.0]
    assert log[0][2] == [e for e in log[0][2] if isinstance(e, TransactionTerminated)]
    assert len(log[0][2]) == 3000
    assert len(layer) == 0 and layer.get_timer() is None


# ------------------------------------------------------------------------------------------------
# random operation sequences
# ------------------------------------------------------------------------------------------------
BRANCHES = ["z9hG4bKh1", "z9hG4bKh2", "z9hG4bK", None]
METHODS = ["INVITE", "OPTIONS", "ACK", "CANCEL", "BYE"]

operation = st.one_of(
    st.tuples(st.just("recv_request"), st.sampled_from(METHODS), st.sampled_from(BRANCHES), st.sampled_from([None, "b1", "b2"])),
    st.tuples(st.just("send_request"), st.sampled_from(["INVITE", "OPTIONS", "ACK"]), st.sampled_from(BRANCHES[:2])),
    st.tuples(st.just("recv_response"), st.sampled_from([100, 180, 200, 404, 486, 603]), st.integers(0, 5)),
    st.tuples(st.just("send_response"), st.sampled_from([100, 180, 200, 404, 487]), st.integers(0, 5)),
    st.tuples(st.just("cancel"), st.integers(0, 5)),
    st.tuples(st.just("transport_error"), st.sampled_from(["udp", "tcp"])),
    st.tuples(st.just("advance"), st.sampled_from([0.1, 0.5, 4.0, 40.0])),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(ops=st.lists(operation, max_size=40), transport=st.sampled_from(["udp", "tcp"]))
def test_random_operations_raise_only_local_protocol_errors(
    ops: list[tuple[Any, ...]], transport: TransportName
) -> None:
    layer = TransactionLayer()
    now = 0.0
    server_keys: list[tuple[TransactionKey, Request]] = []
    client_reqs: list[Request] = []
    src = peer(transport=transport, connection_id=None if transport == "udp" else 1)
    for op in ops:
        kind = op[0]
        try:
            if kind == "recv_request":
                _, method, branch, tag = op
                layer.receive(
                    request(str(method), branch, to_tag=tag, transport=transport.upper()), src, now
                )
            elif kind == "send_request":
                _, method, branch = op
                req = request(str(method), branch, transport=transport.upper())
                layer.send_request(req, UAS, transport, now)
                client_reqs.append(req)
            elif kind == "recv_response" and client_reqs:
                _, status, i = op
                req = client_reqs[int(i) % len(client_reqs)]
                layer.receive(make_response(req, int(status), to_tag="t"), FROM_UAS, now)
            elif kind == "send_response" and server_keys:
                _, status, i = op
                key, req = server_keys[int(i) % len(server_keys)]
                layer.send_response(key, make_response(req, int(status), to_tag="t"), now)
            elif kind == "cancel":
                keys = [k for k in list(layer._txs) if k.client]
                if keys:
                    layer.cancel(keys[int(op[1]) % len(keys)], now)
            elif kind == "transport_error":
                layer.transport_error(
                    UAS if op[1] == "udp" else src.remote, op[1], TransportError("x"), now
                )
            elif kind == "advance":
                now += float(op[1])
                layer.handle_timer(now)
        except LocalProtocolError:
            assert kind in ("send_request", "send_response", "cancel")
        for event in layer.next_events():
            if isinstance(event, RequestReceived):
                server_keys.append((event.key, event.request))
        layer.messages_to_send()
        deadline = layer.get_timer()
        assert deadline is None or deadline > now  # nothing due is left unfired
    # every timer runs out; what is left waits on the TU (a request it never answered) or on
    # the peer (an INVITE that got a 1xx: no Timer B in Proceeding)
    layer.handle_timer(now + 1000.0)
    remaining = {layer.state_of(k) for k in list(layer._txs)}
    assert remaining <= {State.PROCEEDING, State.TRYING}  # only those wait on the TU forever
