"""Requests inside a call: re-INVITE (hold/resume), UPDATE, glare, INFO/OPTIONS, and the
automatic rejections (481, 500, policy)."""

from __future__ import annotations

import pytest
from uapump import SDP_A, SDP_B, Net, call_between

from sbcsim.dialog.events import (
    CallEnded,
    GlareBackoff,
    IncomingCall,
    IncomingRequest,
    ReinviteReceived,
    RequestCompleted,
    SessionRefreshed,
    UpdateReceived,
)
from sbcsim.dialog.states import CallState
from sbcsim.dialog.timers import SessionTimerConfig
from sbcsim.errors import LocalProtocolError
from sbcsim.sip import Response, build_request

A_HOLD = SDP_A.replace(b"1000 1 IN", b"1000 2 IN") + b"a=sendonly\r\n"
A_RESUME = SDP_A.replace(b"1000 1 IN", b"1000 3 IN")
B_HOLD = SDP_B.replace(b"2000 1 IN", b"2000 2 IN") + b"a=sendonly\r\n"
NO_TIMER = SessionTimerConfig(enabled=False)


def test_reinvite_hold_and_resume(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call, callee = call_between(net, a, b)
    net.run_until(10.0)
    hold = a.reinvite(call, A_HOLD, now=10.0)
    net.run_until(20.0)
    resume = a.reinvite(call, A_RESUME, now=20.0)
    net.run_until(30.0)
    assert net.ladder()[3:] == [
        (10.0, "A>B", "INVITE"),
        (10.0, "B>A", "200 OK (INVITE)"),
        (10.0, "A>B", "ACK"),
        (20.0, "A>B", "INVITE"),
        (20.0, "B>A", "200 OK (INVITE)"),
        (20.0, "A>B", "ACK"),
    ]
    reinvite = net.wire[3].message
    assert reinvite.start_line() == "INVITE sip:b@10.0.0.2:5060 SIP/2.0"
    assert reinvite.headers.items()[2:] == [
        ("From", "<sip:a@example.com>;tag=at1"),
        ("To", "<sip:b@example.com>;tag=bt1"),
        ("Call-ID", "ac1@10.0.0.1"),
        ("CSeq", "2 INVITE"),
        ("Contact", "<sip:a@10.0.0.1:5060>"),
        ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY"),
        ("Supported", "100rel, timer, replaces, norefersub"),
        ("Session-Expires", "1800;refresher=uac"),
        ("Min-SE", "90"),
        ("User-Agent", "sbcsim"),
        ("Content-Type", "application/sdp"),
        ("Content-Length", str(len(A_HOLD))),
    ]
    # RFC 3264 §8.4: a sendonly offer is answered recvonly, with a new origin version
    held = net.wire[4].message.body
    assert held == SDP_B.replace(b"2000 1 IN", b"2000 2 IN") + b"a=recvonly\r\n"
    resumed = net.wire[7].message.body
    assert resumed == SDP_B.replace(b"2000 1 IN", b"2000 3 IN")
    received = [ev for _, ev in net.all_events("B", ReinviteReceived)]
    assert [(r.hold, r.sdp, r.handle) for r in received] == [
        (True, A_HOLD, None),
        (False, A_RESUME, None),
    ]
    done = [ev for _, ev in net.all_events("A", RequestCompleted)]
    assert [(d.ref, d.status) for d in done] == [(hold, 200), (resume, 200)]
    assert a.remote_sdp(call) == resumed and a.local_sdp(call) == A_RESUME
    assert b.local_sdp(callee) == resumed
    assert net.wire[5].message.headers.get("CSeq") == "2 ACK"


def test_reinvite_answered_by_the_application(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2", app_answers={"INVITE"})
    call, _callee = call_between(net, a, b)
    net.run_until(1.0)
    ref = a.reinvite(call, A_HOLD, now=1.0)
    net.flush()
    received = net.event("B", ReinviteReceived)
    assert received.handle is not None and received.hold
    assert net.sent("B", "200 OK (INVITE)")[-1].time == 0.0  # nothing yet
    b.respond_request(received.handle, 488, now=1.0)
    net.flush()
    done = net.event("A", RequestCompleted)
    assert (done.ref, done.status, done.reason) == (ref, 488, "Not Acceptable Here")
    assert a.local_sdp(call) == SDP_A  # the offer was rejected: nothing changed
    with pytest.raises(LocalProtocolError):
        b.respond_request(received.handle, 200, now=1.0)  # used up
    assert a.call_state(call) is CallState.CONFIRMED


def test_update_with_offer(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call, _ = call_between(net, a, b)
    net.run_until(3.0)
    ref = a.update(call, A_HOLD, now=3.0)
    net.run_until(4.0)
    assert net.ladder()[3:] == [(3.0, "A>B", "UPDATE"), (3.0, "B>A", "200 OK (UPDATE)")]
    update, ok = (w.message for w in net.wire[3:])
    assert update.headers.get("CSeq") == "2 UPDATE"
    assert update.headers.get("Session-Expires") == "1800;refresher=uac"
    assert update.headers.get("Contact") == "<sip:a@10.0.0.1:5060>"
    assert ok.headers.get("Session-Expires") == "1800;refresher=uac"
    assert ok.headers.get("Require") == "timer"
    assert ok.headers.get("Contact") == "<sip:b@10.0.0.2:5060>"
    assert ok.body.endswith(b"a=recvonly\r\n")
    assert net.event("B", UpdateReceived).hold is True
    assert net.event("A", RequestCompleted).ref == ref
    assert net.all_events("A", SessionRefreshed) == [
        (3.0, SessionRefreshed(call, 1800, "local", "local"))
    ]
    assert net.event("B", SessionRefreshed).by == "remote"


def test_glare_491_and_backoff(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call, callee = call_between(net, a, b)
    net.run_until(5.0)
    ra = a.reinvite(call, A_HOLD, now=5.0)
    rb = b.reinvite(callee, B_HOLD, now=5.0)
    net.run_until(20.0)
    owner_retry = 5.0 + (2.1 + 1.9 * 0.5)  # A chose the Call-ID: 2.1 .. 4 s (§14.1)
    other_retry = 5.0 + 2.0 * 0.5  # B did not: 0 .. 2 s
    assert net.ladder()[3:] == [
        (5.0, "A>B", "INVITE"),
        (5.0, "B>A", "INVITE"),
        (5.0, "B>A", "491 Request Pending (INVITE)"),
        (5.0, "A>B", "491 Request Pending (INVITE)"),
        (5.0, "A>B", "ACK"),
        (5.0, "B>A", "ACK"),
        (other_retry, "B>A", "INVITE"),
        (other_retry, "A>B", "200 OK (INVITE)"),
        (other_retry, "B>A", "ACK"),
        (owner_retry, "A>B", "INVITE"),
        (owner_retry, "B>A", "200 OK (INVITE)"),
        (owner_retry, "A>B", "ACK"),
    ]
    assert net.all_events("A", GlareBackoff) == [(5.0, GlareBackoff(call, ra, owner_retry))]
    assert net.all_events("B", GlareBackoff) == [(5.0, GlareBackoff(callee, rb, other_retry))]
    # the retries are new transactions with new CSeqs
    assert net.sent("B", "INVITE")[-1].message.headers.get("CSeq") == "2 INVITE"
    assert net.sent("A", "INVITE")[-1].message.headers.get("CSeq") == "3 INVITE"
    assert [(t, ev.status) for t, ev in net.all_events("A", RequestCompleted)] == [
        (owner_retry, 200)
    ]
    assert [(t, ev.status) for t, ev in net.all_events("B", RequestCompleted)] == [
        (other_retry, 200)
    ]


def test_info_options_notify_answered_automatically(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2", session_timer=NO_TIMER)
    call, callee = call_between(net, a, b)
    net.run_until(1.0)
    dtmf = b"Signal=5\r\nDuration=160\r\n"
    info = a.info(call, dtmf, "application/dtmf-relay", now=1.0)
    options = a.request(call, "OPTIONS", now=1.0)
    net.flush()
    assert net.ladder()[3:] == [
        (1.0, "A>B", "INFO"),
        (1.0, "A>B", "OPTIONS"),
        (1.0, "B>A", "200 OK (INFO)"),
        (1.0, "B>A", "200 OK (OPTIONS)"),
    ]
    got = [ev for _, ev in net.all_events("B", IncomingRequest)]
    assert [(g.call, g.handle, g.request.method) for g in got] == [
        (callee, None, "INFO"),
        (callee, None, "OPTIONS"),
    ]
    assert got[0].request.body == dtmf
    options_ok = net.wire[6].message
    assert isinstance(options_ok, Response) and options_ok.cseq.method == "OPTIONS"
    assert options_ok.headers.get("Allow") == (
        "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, REFER, NOTIFY"
    )
    assert options_ok.headers.get("Accept") == "application/sdp"
    assert options_ok.headers.get("Supported") == "100rel, replaces, norefersub"
    done = [(ev.ref, ev.status) for _, ev in net.all_events("A", RequestCompleted)]
    assert done == [(info, 200), (options, 200)]


def test_info_answered_by_the_application(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2", app_answers={"INFO"})
    call, _ = call_between(net, a, b)
    net.run_until(1.0)
    ref = a.info(call, b"x", "text/plain", now=1.0)
    net.flush()
    got = net.event("B", IncomingRequest)
    assert got.handle is not None and got.handle.method == "INFO"
    b.respond_request(got.handle, 403, reason="Nope", now=1.0)
    net.flush()
    done = net.event("A", RequestCompleted)
    assert (done.ref, done.status, done.reason) == (ref, 403, "Nope")
    assert a.call_state(call) is CallState.CONFIRMED  # a 403 does not end the call


def test_481_for_an_unknown_dialog_ends_our_call(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call, callee = call_between(net, a, b)
    b._forget(b._calls[callee.id])  # B lost the call (a restart) without telling A
    net.run_until(2.0)
    ref = a.info(call, b"x", "text/plain", now=2.0)
    net.flush()
    assert net.ladder()[3:] == [
        (2.0, "A>B", "INFO"),
        (2.0, "B>A", "481 Call/Transaction Does Not Exist (INFO)"),
    ]
    assert net.event("A", RequestCompleted).ref == ref
    # §12.2.1.2: a 481 inside the dialog ends it
    assert net.all_events("A", CallEnded) == [(2.0, CallEnded(call, "dialog-gone"))]
    assert a.active_calls == 0


def _raw(
    method: str,
    *,
    to_tag: str | None,
    from_tag: str,
    call_id: str,
    cseq: int,
    extra=(),
    uri: str = "sip:b@10.0.0.2:5060",
) -> bytes:
    to = "<sip:b@example.com>" + (f";tag={to_tag}" if to_tag else "")
    request = build_request(
        method,
        uri,
        from_=f"<sip:x@example.com>;tag={from_tag}",
        to=to,
        call_id=call_id,
        cseq=cseq,
        via=f"SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-{from_tag}{cseq}{method}",
        headers=list(extra),
    )
    return request.to_bytes()


RAW = ("10.0.0.9", 5060)
B_ADDR = ("10.0.0.2", 5060)


def _answers(net: Net) -> list[tuple[int, str]]:
    return [
        (w.message.status, w.message.reason_phrase)
        for w in net.wire
        if w.dst == "10.0.0.9:5060" and isinstance(w.message, Response)
    ]


def test_bye_for_unknown_dialog_gets_481(net: Net) -> None:
    net.add("B", "10.0.0.2")
    net.inject(RAW, B_ADDR, _raw("BYE", to_tag="nope", from_tag="x1", call_id="zz@h", cseq=5))
    net.flush()
    assert _answers(net) == [(481, "Call/Transaction Does Not Exist")]


def test_cseq_lower_than_remote_gets_500(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call, callee = call_between(net, a, b)
    net.run_until(1.0)
    a.info(call, b"1", "text/plain", now=1.0)  # CSeq 2: B's remote CSeq is now 2
    net.flush()
    d = b.dialog_id(callee)
    assert d is not None
    stale = _raw("INFO", to_tag=d.local_tag, from_tag=d.remote_tag, call_id=d.call_id, cseq=1)
    net.inject(RAW, B_ADDR, stale)
    net.flush()
    assert _answers(net) == [(500, "CSeq Out of Order")]
    assert b.call_state(callee) is CallState.CONFIRMED


@pytest.mark.parametrize(
    ("method", "extra", "expected", "header"),
    [
        ("FOO", (), (501, "Not Implemented"), ("Allow", None)),
        ("PUBLISH", (), (405, "Method Not Allowed"), ("Allow", None)),
        ("OPTIONS", (("Require", "foo"),), (420, "Bad Extension"), ("Unsupported", "foo")),
        (
            "OPTIONS",
            (("Content-Type", "text/html"),),
            (415, "Unsupported Media Type"),
            ("Accept", None),
        ),
        ("INVITE", (("Accept", "text/html"),), (406, "Not Acceptable"), ("Warning", None)),
    ],
)
def test_policy_rejections(net: Net, method, extra, expected, header) -> None:
    net.add("B", "10.0.0.2")
    net.inject(
        RAW, B_ADDR, _raw(method, to_tag=None, from_tag="x1", call_id="p@h", cseq=1, extra=extra)
    )
    net.flush()
    assert _answers(net) == [expected]
    response = next(w.message for w in net.wire if w.dst == "10.0.0.9:5060")
    name, value = header
    assert response.headers.get(name) is not None
    if value is not None:
        assert response.headers.get(name) == value
    assert response.to.tag == "bt1"  # §8.2.6.2: even a rejection carries a To-tag


def test_unsupported_uri_scheme_416(net: Net) -> None:
    net.add("B", "10.0.0.2")
    raw = _raw("OPTIONS", to_tag=None, from_tag="x1", call_id="u@h", cseq=1, uri="im:b@example.com")
    net.inject(RAW, B_ADDR, raw)
    assert _answers(net) == [(416, "Unsupported URI Scheme")]


def test_options_outside_a_dialog(net: Net) -> None:
    net.add("B", "10.0.0.2")
    net.inject(RAW, B_ADDR, _raw("OPTIONS", to_tag=None, from_tag="x1", call_id="o@h", cseq=1))
    net.flush()
    response = net.wire[0].message
    assert isinstance(response, Response) and response.status == 200
    assert response.headers.get("Accept") == "application/sdp"
    assert response.headers.get("Supported") == "100rel, timer, replaces, norefersub"
    assert net.event("B", IncomingRequest).call is None


def test_invite_without_contact_400_and_merged_482(net: Net) -> None:
    net.add("B", "10.0.0.2")
    net.inject(RAW, B_ADDR, _raw("INVITE", to_tag=None, from_tag="x1", call_id="m@h", cseq=1))
    with_contact = (("Contact", "<sip:x@10.0.0.9>"),)
    first = _raw("INVITE", to_tag=None, from_tag="x2", call_id="m2@h", cseq=1, extra=with_contact)
    net.inject(RAW, B_ADDR, first)
    # the same request again through another branch (a forking proxy upstream): §8.2.2.2
    merged = first.replace(b"z9hG4bK-x21INVITE", b"z9hG4bK-other")
    net.inject(RAW, B_ADDR, merged)
    net.run_until(0.3)  # before the 400 and 482 are retransmitted (Timer G)
    assert _answers(net) == [
        (400, "Missing Contact"),
        (482, "Loop Detected"),
        (100, "Trying"),  # the first INVITE is left to the application
    ]
    assert len(net.all_events("B", IncomingCall)) == 1
