"""Call set-up and tear-down between two user agents (RFC 3665 §2-3 style flows)."""

from __future__ import annotations

import pytest
from uapump import SDP_A, SDP_B, Net, call_between

from sbcsim.dialog.events import (
    CallCancelled,
    CallEnded,
    CallEstablished,
    CallFailed,
    CallProgress,
    ForkDiscarded,
    IncomingCall,
    ProvisionalAcknowledged,
    RequestCompleted,
)
from sbcsim.dialog.states import CallState
from sbcsim.dialog.timers import SessionTimerConfig
from sbcsim.errors import LocalProtocolError
from sbcsim.sip import Request, Response

ALICE = "<sip:alice@example.com>"
BOB = "<sip:bob@example.com>"


def test_basic_call_headers_and_teardown(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call = a.invite(
        "sip:bob@10.0.0.2", from_=ALICE, to=BOB, remote=("10.0.0.2", 5060), sdp=SDP_A, now=0.0
    )
    net.flush()
    incoming = net.event("B", IncomingCall)
    assert incoming.replaces is None and incoming.peer.remote == ("10.0.0.1", 5060)
    b.respond(incoming.call, 180, now=0.0)
    net.run_until(2.0)
    b.respond(incoming.call, 200, sdp=SDP_B, now=2.0)
    net.run_until(10.0)
    a.bye(call, 10.0)
    net.run_until(100.0)

    assert net.ladder() == [
        (0.0, "A>B", "INVITE"),
        (0.0, "B>A", "180 Ringing (INVITE)"),
        (2.0, "B>A", "200 OK (INVITE)"),
        (2.0, "A>B", "ACK"),
        (10.0, "A>B", "BYE"),
        (10.0, "B>A", "200 OK (BYE)"),
    ]
    invite, ringing, ok, ack, bye, _ = (w.message for w in net.wire)
    assert isinstance(invite, Request) and isinstance(ok, Response)
    assert invite.headers.items() == [
        ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-ab1;rport"),
        ("Max-Forwards", "70"),
        ("From", "<sip:alice@example.com>;tag=at1"),
        ("To", "<sip:bob@example.com>"),
        ("Call-ID", "ac1@10.0.0.1"),
        ("CSeq", "1 INVITE"),
        ("Contact", "<sip:a@10.0.0.1:5060>"),
        ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY"),
        ("Supported", "100rel, timer, replaces, norefersub"),
        ("Session-Expires", "1800;refresher=uac"),
        ("Min-SE", "90"),
        ("User-Agent", "sbcsim"),
        ("Content-Type", "application/sdp"),
        ("Content-Length", str(len(SDP_A))),
    ]
    assert invite.body == SDP_A
    assert ringing.headers.get("To") == "<sip:bob@example.com>;tag=bt1"
    assert ringing.headers.get("Contact") == "<sip:b@10.0.0.2:5060>"
    assert ok.headers.items()[1:] == [
        ("From", "<sip:alice@example.com>;tag=at1"),
        ("To", "<sip:bob@example.com>;tag=bt1"),
        ("Call-ID", "ac1@10.0.0.1"),
        ("CSeq", "1 INVITE"),
        ("Contact", "<sip:b@10.0.0.2:5060>"),
        ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY"),
        ("Supported", "100rel, timer, replaces, norefersub"),
        ("Require", "timer"),
        ("Session-Expires", "1800;refresher=uac"),
        ("Server", "sbcsim"),
        ("Content-Type", "application/sdp"),
        ("Content-Length", str(len(SDP_B))),
    ]
    # §13.2.2.4: the ACK goes to the remote target, new branch, the INVITE's CSeq number
    assert str(ack.start_line()) == "ACK sip:b@10.0.0.2:5060 SIP/2.0"
    assert ack.headers.items() == [
        ("Via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-ab2;rport"),
        ("Max-Forwards", "70"),
        ("From", "<sip:alice@example.com>;tag=at1"),
        ("To", "<sip:bob@example.com>;tag=bt1"),
        ("Call-ID", "ac1@10.0.0.1"),
        ("CSeq", "1 ACK"),
        ("Content-Length", "0"),
    ]
    assert bye.start_line() == "BYE sip:b@10.0.0.2:5060 SIP/2.0"
    assert bye.headers.get("CSeq") == "2 BYE"

    progress = net.event("A", CallProgress)
    assert (progress.status, progress.reason, progress.reliable) == (180, "Ringing", False)
    assert progress.dialog is not None and progress.dialog.remote_tag == "bt1"
    established = net.event("A", CallEstablished)
    assert established.sdp == SDP_B and established.dialog.local_tag == "at1"
    assert [(t, type(e).__name__) for t, e in net.events["A"]] == [
        (0.0, "CallProgress"),
        (2.0, "CallEstablished"),
        (10.0, "CallEnded"),
        (10.0, "RequestCompleted"),
    ]
    assert net.event("A", CallEnded).reason == "local-bye"
    assert net.event("A", RequestCompleted).status == 200
    assert [(t, type(e).__name__) for t, e in net.events["B"]] == [
        (0.0, "IncomingCall"),
        (2.0, "CallEstablished"),
        (10.0, "CallEnded"),
    ]
    ended = net.event("B", CallEnded)
    assert ended.reason == "remote-bye" and ended.request is not None
    assert net.event("B", CallEstablished).sdp is None  # the ACK carried no body
    assert a.active_calls == b.active_calls == 0
    assert a.call_state(call) is CallState.ENDED


def test_busy_486(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call = a.invite("sip:bob@10.0.0.2", from_=ALICE, to=BOB, remote=("10.0.0.2", 5060), now=0.0)
    net.flush()
    b.respond(net.event("B", IncomingCall).call, 486, now=0.0)
    net.run_until(60.0)
    assert net.ladder() == [
        (0.0, "A>B", "INVITE"),
        (0.0, "B>A", "486 Busy Here (INVITE)"),
        (0.0, "A>B", "ACK"),
    ]
    failed = net.event("A", CallFailed)
    assert (failed.call, failed.status, failed.reason) == (call, 486, "Busy Here")
    assert net.wire[1].message.headers.get("To") == "<sip:bob@example.com>;tag=bt1"
    assert a.active_calls == b.active_calls == 0


def test_no_answer_cancel_487(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call = a.invite("sip:bob@10.0.0.2", from_=ALICE, to=BOB, remote=("10.0.0.2", 5060), now=0.0)
    net.flush()
    b.respond(net.event("B", IncomingCall).call, 180, now=0.0)
    net.run_until(5.0)
    a.cancel(call, 5.0)
    net.run_until(60.0)
    assert net.ladder() == [
        (0.0, "A>B", "INVITE"),
        (0.0, "B>A", "180 Ringing (INVITE)"),
        (5.0, "A>B", "CANCEL"),
        (5.0, "B>A", "200 OK (CANCEL)"),
        (5.0, "B>A", "487 Request Terminated (INVITE)"),
        (5.0, "A>B", "ACK"),
    ]
    cancel = net.wire[2].message
    assert cancel.headers.get("CSeq") == "1 CANCEL"
    assert cancel.headers.get("Via") == net.wire[0].message.headers.get("Via")
    assert net.event("B", CallCancelled).request.method == "CANCEL"
    assert net.wire[4].message.headers.get("To") == "<sip:bob@example.com>;tag=bt1"
    failed = net.event("A", CallFailed)
    assert (failed.status, failed.reason) == (487, "Request Terminated")
    assert a.active_calls == b.active_calls == 0


def test_cancel_before_any_provisional_waits_for_100_trying(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    net.add("B", "10.0.0.2")
    call = a.invite("sip:bob@10.0.0.2", from_=ALICE, to=BOB, remote=("10.0.0.2", 5060), now=0.0)
    a.cancel(call, 0.0)  # §9.1: not before a provisional
    net.run_until(60.0)
    # B's transaction layer sends 100 Trying after 200 ms; only then does the CANCEL go.
    assert net.ladder() == [
        (0.0, "A>B", "INVITE"),
        (0.2, "B>A", "100 Trying (INVITE)"),
        (0.2, "A>B", "CANCEL"),
        (0.2, "B>A", "200 OK (CANCEL)"),
        (0.2, "B>A", "487 Request Terminated (INVITE)"),
        (0.2, "A>B", "ACK"),
    ]
    assert net.event("A", CallFailed).status == 487
    assert net.event("B", CallCancelled).call.call_id == "ac1@10.0.0.1"


def test_forking_two_early_dialogs_one_confirmed(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b1 = net.add("B1", "10.0.0.21")
    b2 = net.add("B2", "10.0.0.22")
    net.forks[("10.0.0.20", 5060)] = [("10.0.0.21", 5060), ("10.0.0.22", 5060)]
    call = a.invite(
        "sip:bob@example.com", from_=ALICE, to=BOB, remote=("10.0.0.20", 5060), sdp=SDP_A, now=0.0
    )
    net.flush()
    in1 = net.event("B1", IncomingCall)
    in2 = net.event("B2", IncomingCall)
    b1.respond(in1.call, 180, now=0.0)
    b2.respond(in2.call, 180, now=0.0)
    net.run_until(1.0)
    progress = [ev for _, ev in net.all_events("A", CallProgress)]
    assert [p.dialog.remote_tag for p in progress if p.dialog] == ["b1t1", "b2t1"]
    b1.respond(in1.call, 200, sdp=SDP_B, now=1.0)
    net.run_until(2.0)
    b2.respond(in2.call, 200, sdp=SDP_B, now=2.0)
    net.run_until(3.0)
    assert net.ladder() == [
        (0.0, "A>B1", "INVITE"),
        (0.0, "A>B2", "INVITE"),
        (0.0, "B1>A", "180 Ringing (INVITE)"),
        (0.0, "B2>A", "180 Ringing (INVITE)"),
        (1.0, "B1>A", "200 OK (INVITE)"),
        (1.0, "A>B1", "ACK"),
        (2.0, "B2>A", "200 OK (INVITE)"),
        (2.0, "A>B2", "ACK"),  # §13.2.2.4: every 2xx is ACKed ...
        (2.0, "A>B2", "BYE"),  # ... and the second dialog ended at once
        (2.0, "B2>A", "200 OK (BYE)"),
    ]
    established = net.event("A", CallEstablished)
    assert established.dialog.remote_tag == "b1t1" and a.dialog_id(call) == established.dialog
    discarded = net.event("A", ForkDiscarded)
    assert discarded.dialog.remote_tag == "b2t1" and discarded.call == call
    assert net.event("B2", CallEnded).reason == "remote-bye"
    assert net.event("B1", CallEstablished).call == in1.call
    assert a.call_state(call) is CallState.CONFIRMED
    assert b2.active_calls == 0 and b1.active_calls == 1


def test_2xx_retransmitted_until_ack_then_bye_at_64_t1(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    net.drop = lambda src, dst, msg: isinstance(msg, Request) and msg.method == "ACK"
    call_between(net, a, b)
    net.run_until(40.0)
    ok_times = [w.time for w in net.sent("B", "200 OK (INVITE)")]
    assert ok_times == [0.0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    # every retransmitted 2xx is ACKed again (all of them lost here)
    assert [w.time for w in net.sent("A", "ACK")] == ok_times
    acks = {w.message.to_bytes() for w in net.sent("A", "ACK")}
    assert len(acks) == 1  # the very same ACK each time
    assert [w.time for w in net.sent("B", "BYE")] == [32.0]
    assert net.all_events("B", CallEnded) == [
        (32.0, CallEnded(net.event("B", CallEnded).call, "no-ack"))
    ]
    assert net.event("A", CallEnded).reason == "remote-bye"
    assert a.active_calls == b.active_calls == 0


def test_lost_ack_is_repaired_by_the_2xx_retransmission(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    lost: list[int] = []

    def drop_first_ack(src: str, dst: str, msg: Request | Response) -> bool:
        if isinstance(msg, Request) and msg.method == "ACK" and not lost:
            lost.append(1)
            return True
        return False

    net.drop = drop_first_ack
    call_between(net, a, b)
    net.run_until(40.0)
    assert net.ladder() == [
        (0.0, "A>B", "INVITE"),
        (0.0, "B>A", "200 OK (INVITE)"),
        (0.0, "A>B", "ACK [lost]"),
        (0.5, "B>A", "200 OK (INVITE)"),
        (0.5, "A>B", "ACK"),
    ]
    assert net.all_events("B", CallEstablished)[0][0] == 0.5


def test_late_offer_answer_in_ack(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call = a.invite(
        "sip:bob@10.0.0.2",
        from_=ALICE,
        to=BOB,
        remote=("10.0.0.2", 5060),
        ack_sdp=SDP_A,
        now=0.0,
    )
    net.flush()
    incoming = net.event("B", IncomingCall)
    assert incoming.request.body == b""
    b.respond(incoming.call, 200, sdp=SDP_B, now=0.0)
    net.flush()
    ack = net.sent("A", "ACK")[0].message
    assert ack.body == SDP_A and ack.headers.get("Content-Type") == "application/sdp"
    assert net.event("B", CallEstablished).sdp == SDP_A
    assert a.local_sdp(call) == SDP_A and a.remote_sdp(call) == SDP_B


def test_prack_for_reliable_provisional(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call = a.invite(
        "sip:bob@10.0.0.2", from_=ALICE, to=BOB, remote=("10.0.0.2", 5060), sdp=SDP_A, now=0.0
    )
    net.flush()
    incoming = net.event("B", IncomingCall)
    b.respond(incoming.call, 183, sdp=SDP_B, reliable=True, now=0.0)
    net.flush()
    # RFC 3262 §3: a 2xx waits for the PRACK of a provisional that carried the answer
    b.respond(incoming.call, 200, sdp=SDP_B, now=0.0)
    net.run_until(1.0)
    assert net.ladder() == [
        (0.0, "A>B", "INVITE"),
        (0.0, "B>A", "183 Session Progress (INVITE)"),
        (0.0, "A>B", "PRACK"),
        (0.0, "B>A", "200 OK (PRACK)"),
        (0.0, "B>A", "200 OK (INVITE)"),
        (0.0, "A>B", "ACK"),
    ]
    rseq = 1 + int(0.5 * (2**31 - 2))
    progress = net.wire[1].message
    assert progress.headers.get("Require") == "100rel"
    assert progress.headers.get("RSeq") == str(rseq) == "1073741824"
    prack = net.wire[2].message
    assert prack.headers.get("RAck") == f"{rseq} 1 INVITE"
    assert prack.headers.get("CSeq") == "2 PRACK"
    assert prack.start_line() == "PRACK sip:b@10.0.0.2:5060 SIP/2.0"
    assert net.event("A", CallProgress).reliable is True
    assert net.event("B", ProvisionalAcknowledged).rseq == rseq
    assert net.event("A", CallEstablished).call == call
    # the next request in the dialog continues after the PRACK's CSeq
    a.bye(call, 1.0)
    net.flush()
    assert net.sent("A", "BYE")[0].message.headers.get("CSeq") == "3 BYE"


def test_reliable_provisional_retransmitted_until_prack_then_500(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    net.drop = lambda src, dst, msg: isinstance(msg, Response) and msg.status == 183
    a.invite("sip:bob@10.0.0.2", from_=ALICE, to=BOB, remote=("10.0.0.2", 5060), now=0.0)
    net.flush()
    incoming = net.event("B", IncomingCall)
    b.respond(incoming.call, 100, now=0.0)  # stops A's INVITE retransmissions
    b.respond(incoming.call, 183, reliable=True, now=0.0)
    net.run_until(40.0)
    assert [w.time for w in net.sent("B", "183")] == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [w.time for w in net.sent("B", "500")] == [32.0]
    assert net.all_events("B", CallEnded) == [(32.0, CallEnded(incoming.call, "prack-timeout"))]
    assert net.event("A", CallFailed).status == 500
    assert a.active_calls == b.active_calls == 0


def test_reliable_provisional_needs_100rel_support(net: Net) -> None:
    a = net.add("A", "10.0.0.1", supported=("timer",))
    b = net.add("B", "10.0.0.2")
    a.invite("sip:bob@10.0.0.2", from_=ALICE, to=BOB, remote=("10.0.0.2", 5060), now=0.0)
    net.flush()
    incoming = net.event("B", IncomingCall)
    with pytest.raises(LocalProtocolError):
        b.respond(incoming.call, 183, reliable=True, now=0.0)


def test_api_misuse_raises(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call, callee = call_between(net, a, b)
    with pytest.raises(LocalProtocolError):
        b.respond(callee, 180, now=0.0)  # after the 200
    with pytest.raises(LocalProtocolError):
        a.cancel(call, 0.0)  # the call is up: BYE, not CANCEL
    with pytest.raises(LocalProtocolError):
        a.respond(call, 200, now=0.0)  # the caller answers nothing


def test_bye_before_ack_is_refused_but_ack_timeout_ends_it(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2", session_timer=SessionTimerConfig(enabled=False))
    net.drop = lambda src, dst, msg: src == "A"
    a.invite("sip:bob@10.0.0.2", from_=ALICE, to=BOB, remote=("10.0.0.2", 5060), now=0.0)
    net.drop = None
    net.flush()
    incoming = net.event("B", IncomingCall)
    net.drop = lambda src, dst, msg: src == "A"
    b.respond(incoming.call, 200, sdp=SDP_B, now=0.0)
    with pytest.raises(LocalProtocolError):
        b.bye(incoming.call, 0.0)  # §15: not before the ACK
    assert b.call_state(incoming.call) is CallState.ANSWERED
