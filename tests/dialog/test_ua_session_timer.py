"""Session timers (RFC 4028) at exact virtual times: refresh at half the interval, BYE at
``interval - min(32, interval/3)`` without a refresh, 422 and the retry."""

from __future__ import annotations

from uapump import SDP_A, SDP_B, Net, call_between

from sbcsim.dialog.events import (
    CallEnded,
    IncomingCall,
    RequestCompleted,
    SessionRefreshed,
)
from sbcsim.dialog.timers import SessionTimer, SessionTimerConfig
from sbcsim.sip import Request


def test_refresher_reinvites_at_half_the_interval(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call, callee = call_between(net, a, b)
    assert a.session_timer(call) == SessionTimer(1800, True, 90)
    assert b.session_timer(callee) == SessionTimer(1800, False, 90)
    net.run_until(2000.0)
    assert net.ladder()[3:] == [
        (900.0, "A>B", "INVITE"),
        (900.0, "B>A", "200 OK (INVITE)"),
        (900.0, "A>B", "ACK"),
        (1800.0, "A>B", "INVITE"),
        (1800.0, "B>A", "200 OK (INVITE)"),
        (1800.0, "A>B", "ACK"),
    ]
    refresh, ok = net.wire[3].message, net.wire[4].message
    assert refresh.headers.get("Session-Expires") == "1800;refresher=uac"
    assert refresh.headers.get("Min-SE") == "90"
    assert refresh.headers.get("CSeq") == "2 INVITE"
    assert refresh.body == SDP_A  # the same session, the same version (RFC 4028 §7.4)
    assert ok.body == SDP_B
    assert ok.headers.get("Session-Expires") == "1800;refresher=uac"
    assert ok.headers.get("Require") == "timer"
    assert net.all_events("A", SessionRefreshed) == [
        (900.0, SessionRefreshed(call, 1800, "local", "local")),
        (1800.0, SessionRefreshed(call, 1800, "local", "local")),
    ]
    assert net.all_events("B", SessionRefreshed) == [
        (900.0, SessionRefreshed(callee, 1800, "remote", "remote")),
        (1800.0, SessionRefreshed(callee, 1800, "remote", "remote")),
    ]
    assert net.all_events("A", RequestCompleted) == []  # refreshes are the core's own


def test_no_refresh_means_bye_at_interval_minus_32(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    call, callee = call_between(net, a, b)
    net.drop = lambda src, dst, msg: src == "A"  # A's refreshes never arrive
    net.run_until(2000.0)
    assert [w.time for w in net.sent("A", "INVITE")][:3] == [0.0, 900.0, 900.5]
    # A's refresh times out (Timer B, 64*T1): A gives up the call
    assert net.all_events("A", CallEnded) == [(932.0, CallEnded(call, "timeout"))]
    # B heard nothing since the 2xx at 0: BYE at 1800 - min(32, 1800/3) = 1768
    assert next(w.time for w in net.sent("B", "BYE")) == 1768.0
    assert net.all_events("B", CallEnded) == [(1768.0, CallEnded(callee, "session-expired"))]
    assert b.active_calls == 0


def test_short_interval_refresh_and_expiry() -> None:
    short = SessionTimerConfig(session_expires=90, min_se=90)
    net = Net()
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2", session_timer=short)
    _, callee = call_between(net, a, b)
    assert b.session_timer(callee) == SessionTimer(90, False, 90)
    net.run_until(100.0)
    assert [w.time for w in net.sent("A", "INVITE")] == [0.0, 45.0, 90.0]

    net = Net()
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2", session_timer=short)
    _call, callee = call_between(net, a, b)
    net.drop = lambda src, dst, msg: src == "A"
    net.run_until(100.0)
    # 90 - min(32, 90/3) = 60
    assert next(w.time for w in net.sent("B", "BYE")) == 60.0
    assert net.all_events("B", CallEnded) == [(60.0, CallEnded(callee, "session-expired"))]


def test_422_then_retry_with_the_larger_interval(net: Net) -> None:
    a = net.add("A", "10.0.0.1", session_timer=SessionTimerConfig(session_expires=90))
    b = net.add(
        "B", "10.0.0.2", session_timer=SessionTimerConfig(session_expires=1800, min_se=1800)
    )
    call = a.invite(
        "sip:b@10.0.0.2", from_="<sip:a@x>", to="<sip:b@x>", remote=("10.0.0.2", 5060),
        sdp=SDP_A, now=0.0,
    )  # fmt: skip
    net.flush()
    assert net.ladder() == [
        (0.0, "A>B", "INVITE"),
        (0.0, "B>A", "422 Session Interval Too Small (INVITE)"),
        (0.0, "A>B", "ACK"),
        (0.0, "A>B", "INVITE"),
    ]
    first, too_small, _, retry = (w.message for w in net.wire)
    assert first.headers.get("Session-Expires") == "90;refresher=uac"
    assert too_small.headers.get("Min-SE") == "1800"
    assert isinstance(retry, Request) and isinstance(first, Request)
    assert retry.headers.get("Session-Expires") == "1800;refresher=uac"
    assert retry.headers.get("Min-SE") == "1800"
    assert retry.headers.get("CSeq") == "2 INVITE"
    assert retry.call_id == first.call_id and retry.from_.tag == first.from_.tag
    assert retry.top_via.branch != first.top_via.branch
    incoming = net.event("B", IncomingCall)
    b.respond(incoming.call, 200, sdp=SDP_B, now=0.0)
    net.flush()
    assert net.wire[-2].message.headers.get("Session-Expires") == "1800;refresher=uac"
    assert a.session_timer(call) == SessionTimer(1800, True, 1800)


def test_callee_as_refresher(net: Net) -> None:
    a = net.add("A", "10.0.0.1", session_timer=SessionTimerConfig(refresher="uas"))
    b = net.add("B", "10.0.0.2")
    call, callee = call_between(net, a, b)
    assert net.wire[0].message.headers.get("Session-Expires") == "1800;refresher=uas"
    assert net.wire[1].message.headers.get("Session-Expires") == "1800;refresher=uas"
    net.run_until(1000.0)
    assert net.ladder()[3:] == [
        (900.0, "B>A", "INVITE"),
        (900.0, "A>B", "200 OK (INVITE)"),
        (900.0, "B>A", "ACK"),
    ]
    # B sends the re-INVITE as its UAC now: it names itself refresher=uac
    assert net.wire[3].message.headers.get("Session-Expires") == "1800;refresher=uac"
    assert net.all_events("B", SessionRefreshed) == [
        (900.0, SessionRefreshed(callee, 1800, "local", "local"))
    ]
    assert net.all_events("A", SessionRefreshed) == [
        (900.0, SessionRefreshed(call, 1800, "remote", "remote"))
    ]


def test_refresh_with_update(net: Net) -> None:
    a = net.add("A", "10.0.0.1", session_timer=SessionTimerConfig(method="UPDATE"))
    b = net.add("B", "10.0.0.2")
    call_between(net, a, b)
    net.run_until(1000.0)
    assert net.ladder()[3:] == [(900.0, "A>B", "UPDATE"), (900.0, "B>A", "200 OK (UPDATE)")]
    update = net.wire[3].message
    assert update.body == b"" and update.headers.get("Session-Expires") == "1800;refresher=uac"


def test_no_timer_when_the_callee_does_not_support_it(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2", session_timer=SessionTimerConfig(enabled=False))
    call, callee = call_between(net, a, b)
    ok = net.wire[1].message
    assert ok.headers.get("Session-Expires") is None
    assert ok.headers.get("Supported") == "100rel, replaces, norefersub"
    assert a.session_timer(call) is None and b.session_timer(callee) is None
    net.run_until(5000.0)
    assert len(net.wire) == 3
