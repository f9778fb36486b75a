"""Races and failures: CANCEL against 2xx, timeouts, transport errors, route sets, requests the
application answers, NOTIFYs that match nothing, re-INVITEs that are never ACKed."""

from __future__ import annotations

import pytest
from uapump import SDP_A, SDP_B, Net, call_between

from sbcsim.dialog.events import (
    CallEnded,
    CallEstablished,
    CallFailed,
    IncomingCall,
    IncomingRequest,
    ReinviteReceived,
    RequestCompleted,
)
from sbcsim.dialog.refer import SIPFRAG_TYPE, sipfrag
from sbcsim.dialog.states import CallState
from sbcsim.errors import LocalProtocolError, TransportError
from sbcsim.sip import Request, Response, build_request

ALICE = "<sip:alice@example.com>"
BOB = "<sip:bob@example.com>"
A_HOLD = SDP_A.replace(b"1000 1 IN", b"1000 2 IN") + b"a=sendonly\r\n"


def test_cancel_loses_the_race_against_the_2xx(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call = a.invite(
        "sip:bob@10.0.0.2", from_=ALICE, to=BOB, remote=("10.0.0.2", 5060), sdp=SDP_A, now=0.0
    )
    net.flush()
    incoming = net.event("B", IncomingCall)
    b.respond(incoming.call, 180, now=0.0)
    net.run_until(5.0)
    a.cancel(call, 5.0)
    b.respond(incoming.call, 200, sdp=SDP_B, now=5.0)
    net.run_until(10.0)
    assert net.ladder()[2:] == [
        (5.0, "A>B", "CANCEL"),
        (5.0, "B>A", "200 OK (INVITE)"),
        (5.0, "B>A", "200 OK (CANCEL)"),  # too late: the transaction layer answers it alone
        (5.0, "A>B", "ACK"),
        (5.0, "A>B", "BYE"),  # §9.1: the call exists after all, so A ends it
        (5.0, "B>A", "200 OK (BYE)"),
    ]
    assert [type(ev).__name__ for _, ev in net.events["A"]] == [
        "CallProgress",
        "CallEstablished",
        "CallEnded",
    ]
    assert net.event("A", CallEnded).reason == "local-bye"
    assert net.event("B", CallEnded).reason == "remote-bye"
    assert a.active_calls == b.active_calls == 0


def test_invite_timeout_is_a_408(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    call = a.invite("sip:bob@10.0.0.2", from_=ALICE, to=BOB, remote=("10.0.0.2", 5060), now=0.0)
    net.run_until(40.0)
    assert [w.time for w in net.wire] == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert net.all_events("A", CallFailed) == [(32.0, CallFailed(call, 408, "Request Timeout"))]
    assert a.active_calls == 0


def test_transport_error_is_a_503(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    call = a.invite(
        "sip:bob@10.0.0.2", from_=ALICE, to=BOB, remote=("10.0.0.2", 5060), transport="tcp", now=0.0
    )
    net.flush()
    a.transport_error(("10.0.0.2", 5060), "tcp", TransportError("refused"), 0.25)
    net.flush()
    assert net.event("A", CallFailed) == CallFailed(call, 503, "Service Unavailable")
    assert net.wire[0].message.headers.get("Via").startswith("SIP/2.0/TCP 10.0.0.1:5060;")


def test_record_route_makes_a_route_set(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    net.names[("10.0.0.5", 5060)] = "P"
    net.forks[("10.0.0.5", 5060)] = [("10.0.0.2", 5060)]  # the "proxy" relays to B
    rr = (("Record-Route", "<sip:10.0.0.5;lr>"),)
    call, callee = call_between(net, a, b, headers=rr)
    ok = net.wire[1].message
    assert ok.headers.get_all("Record-Route") == ["<sip:10.0.0.5;lr>"]  # §12.1.1: copied
    ack = net.wire[2]
    assert ack.dst == "P" and ack.message.start_line() == "ACK sip:b@10.0.0.2:5060 SIP/2.0"
    assert ack.message.headers.get_all("Route") == ["<sip:10.0.0.5;lr>"]
    net.drop = lambda src, dst, msg: src == "B" and dst == "P"
    b.bye(callee, 1.0)
    net.flush()
    bye = net.sent("B", "BYE")[0]
    assert bye.dst == "P"  # B's BYE goes to the proxy (its route set), not to A directly
    assert bye.message.start_line() == "BYE sip:a@10.0.0.1:5060 SIP/2.0"
    assert bye.message.headers.get_all("Route") == ["<sip:10.0.0.5;lr>"]
    assert a.call_state(call) is CallState.CONFIRMED  # the proxy forwards nothing to A


def test_reinvite_never_acked_ends_the_call(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call, callee = call_between(net, a, b)
    net.run_until(10.0)
    net.drop = lambda src, dst, msg: isinstance(msg, Request) and msg.method == "ACK"
    a.reinvite(call, A_HOLD, now=10.0)
    net.run_until(60.0)
    assert [w.time for w in net.sent("B", "200 OK (INVITE)")][-3:] == [33.5, 37.5, 41.5]
    assert [w.time for w in net.sent("B", "BYE")] == [42.0]
    assert net.all_events("B", CallEnded) == [(42.0, CallEnded(callee, "no-ack"))]


def test_application_answers_and_busy_checks(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2", app_answers={"INVITE"})
    call, callee = call_between(net, a, b)
    a.reinvite(call, A_HOLD, now=0.0)
    net.flush()
    handle = net.event("B", ReinviteReceived).handle
    assert handle is not None
    with pytest.raises(LocalProtocolError):
        b.reinvite(callee, SDP_B, now=0.0)  # §14.1: their INVITE is still in progress
    with pytest.raises(LocalProtocolError):
        a.reinvite(call, SDP_A, now=0.0)  # ours too
    b.respond_request(handle, 100, now=0.0)
    b.respond_request(
        handle, 200, sdp=SDP_B.replace(b"2000 1", b"2000 2") + b"a=recvonly\r\n", now=0.0
    )
    net.flush()
    assert net.event("A", RequestCompleted).status == 200
    assert b.remote_sdp(callee) == A_HOLD


def test_cancel_of_a_pending_reinvite(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2", app_answers={"INVITE"})
    call, _ = call_between(net, a, b)
    a.reinvite(call, A_HOLD, now=0.0)
    net.flush()
    handle = net.event("B", ReinviteReceived).handle
    assert handle is not None
    b.respond_request(handle, 180, now=0.0)
    net.flush()
    reinvite = net.sent("A", "INVITE")[-1].message
    cancel = build_request(
        "CANCEL",
        reinvite.uri,
        from_=reinvite.from_,
        to=reinvite.to,
        call_id=reinvite.call_id,
        cseq=reinvite.cseq.seq,
        via=reinvite.headers.get("Via"),
    )
    net.inject(("10.0.0.1", 5060), ("10.0.0.2", 5060), cancel.to_bytes())
    net.flush()
    assert net.ladder()[-4:] == [
        (0.0, "B>A", "180 Ringing (INVITE)"),
        (0.0, "B>A", "200 OK (CANCEL)"),
        (0.0, "B>A", "487 Request Terminated (INVITE)"),
        (0.0, "A>B", "ACK"),
    ]
    assert net.event("A", RequestCompleted).status == 487
    with pytest.raises(LocalProtocolError):
        b.respond_request(handle, 200, now=0.0)


def test_out_of_dialog_message_answered_by_the_application(net: Net) -> None:
    b = net.add("B", "10.0.0.2")
    message = build_request(
        "MESSAGE",
        "sip:b@10.0.0.2",
        from_="<sip:x@example.com>;tag=x1",
        to="<sip:b@example.com>",
        call_id="msg@h",
        cseq=1,
        via="SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-msg",
        body=b"hello",
        content_type="text/plain",
    )
    net.inject(("10.0.0.9", 5060), ("10.0.0.2", 5060), message.to_bytes())
    got = net.event("B", IncomingRequest)
    assert got.call is None and got.handle is not None
    b.respond_request(got.handle, 202, now=0.0)
    net.flush()
    response = net.wire[-1].message
    assert isinstance(response, Response) and response.status == 202
    assert response.to.tag == "bt1"


def test_notify_matching_no_refer_gets_481_and_other_packages_200(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call, callee = call_between(net, a, b)
    stray = b.notify(
        callee,
        event="refer;id=99",
        subscription_state="active;expires=60",
        body=sipfrag(100),
        content_type=SIPFRAG_TYPE,
        now=0.0,
    )
    other = b.notify(callee, event="dialog", subscription_state="active", now=0.0)
    net.flush()
    done = [(ev.ref, ev.status) for _, ev in net.all_events("B", RequestCompleted)]
    assert done == [(stray, 481), (other, 200)]
    assert net.event("A", IncomingRequest).request.headers.get("Event") == "dialog"
    # a 481 to a NOTIFY ends the subscription usage only, not the call (RFC 5057)
    assert b.call_state(callee) is CallState.CONFIRMED and a.call_state(call) is CallState.CONFIRMED


def test_callee_ends_an_early_dialog_with_bye_from_the_caller(net: Net) -> None:
    b = net.add("B", "10.0.0.2")
    invite = build_request(
        "INVITE",
        "sip:b@10.0.0.2",
        from_="<sip:x@example.com>;tag=x1",
        to="<sip:b@example.com>",
        call_id="early@h",
        cseq=1,
        via="SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-e1",
        contact="<sip:x@10.0.0.9>",
    )
    net.inject(("10.0.0.9", 5060), ("10.0.0.2", 5060), invite.to_bytes())
    incoming = net.event("B", IncomingCall)
    b.respond(incoming.call, 180, now=0.0)
    net.flush()
    bye = build_request(
        "BYE",
        "sip:b@10.0.0.2:5060",
        from_="<sip:x@example.com>;tag=x1",
        to="<sip:b@example.com>;tag=bt1",
        call_id="early@h",
        cseq=2,
        via="SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-e2",
    )
    net.inject(("10.0.0.9", 5060), ("10.0.0.2", 5060), bye.to_bytes())
    net.flush()
    statuses = [
        (w.message.status, w.message.cseq.method)
        for w in net.wire
        if isinstance(w.message, Response)
    ]
    assert statuses == [(180, "INVITE"), (200, "BYE"), (487, "INVITE")]
    assert net.event("B", CallEnded).reason == "remote-bye"
    assert b.active_calls == 0
    assert not net.all_events("B", CallEstablished)


def test_reinvite_contact_refreshes_the_remote_target(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    _, callee = call_between(net, a, b)
    d = b.dialog_id(callee)
    assert d is not None
    moved = build_request(
        "INVITE",
        "sip:b@10.0.0.2:5060",
        from_=f"<sip:a@example.com>;tag={d.remote_tag}",
        to=f"<sip:b@example.com>;tag={d.local_tag}",
        call_id=d.call_id,
        cseq=2,
        via="SIP/2.0/UDP 10.0.0.7:5070;branch=z9hG4bK-moved",
        contact="<sip:a2@10.0.0.7:5070>",
        body=SDP_A,
        content_type="application/sdp",
    )
    net.inject(("10.0.0.7", 5070), ("10.0.0.2", 5060), moved.to_bytes())
    b.bye(callee, 0.0)
    net.flush()
    bye = net.sent("B", "BYE")[0]
    assert bye.dst == "10.0.0.7:5070"  # §12.2: the re-INVITE's Contact is the new target
    assert bye.message.start_line() == "BYE sip:a2@10.0.0.7:5070 SIP/2.0"
