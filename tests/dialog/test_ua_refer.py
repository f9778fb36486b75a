"""Transfers: REFER with its implicit subscription (RFC 3515), Referred-By (RFC 3892) and
Replaces (RFC 3891), in the style of RFC 5589's call flows."""

from __future__ import annotations

import pytest
from uapump import SDP_A, SDP_B, SDP_C, Net, call_between

from sbcsim.dialog.events import (
    CallEnded,
    CallEstablished,
    IncomingCall,
    ReferProgress,
    ReferReceived,
    RequestCompleted,
)
from sbcsim.dialog.refer import refer_target, refer_to_with_replaces, replaces_value
from sbcsim.errors import LocalProtocolError
from sbcsim.sip import Request, Response
from sbcsim.sip.uri import SipUri

CAROL = SipUri(user_raw="c", host="10.0.0.3", port=5060)


def test_blind_transfer_with_sipfrag_notifies(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    c = net.add("C", "10.0.0.3")
    a_call, b_call = call_between(net, a, b)
    net.run_until(1.0)
    refer = a.refer(a_call, CAROL, referred_by='"Alice" <sip:alice@example.com>', now=1.0)
    net.flush()
    received = net.event("B", ReferReceived)
    assert received.call == b_call and received.replaces is None
    assert str(received.refer_to) == "<sip:c@10.0.0.3:5060>"
    assert received.referred_by == '"Alice" <sip:alice@example.com>'
    b.respond_request(received.handle, 202, now=1.0)
    net.flush()
    target, extra = refer_target(received.refer_to)
    assert extra == ()
    b_to_c = b.invite(
        target,
        from_="<sip:b@example.com>",
        to=f"<{target}>",
        remote=("10.0.0.3", 5060),
        sdp=SDP_B,
        headers=(("Referred-By", received.referred_by or ""),),
        now=1.0,
    )
    net.flush()
    c_in = net.event("C", IncomingCall)
    c.respond(c_in.call, 180, now=1.0)
    net.flush()
    b.notify_refer(received.handle, 180, now=1.0)
    net.run_until(3.0)
    c.respond(c_in.call, 200, sdp=SDP_C, now=3.0)
    net.flush()
    assert net.last("B", CallEstablished).call == b_to_c
    b.notify_refer(received.handle, 200, now=3.0)
    net.flush()
    a.bye(a_call, 3.0)
    net.run_until(10.0)

    assert net.ladder()[3:] == [
        (1.0, "A>B", "REFER"),
        (1.0, "B>A", "202 Accepted (REFER)"),
        (1.0, "B>A", "NOTIFY"),
        (1.0, "A>B", "200 OK (NOTIFY)"),
        (1.0, "B>C", "INVITE"),
        (1.0, "C>B", "180 Ringing (INVITE)"),
        (1.0, "B>A", "NOTIFY"),
        (1.0, "A>B", "200 OK (NOTIFY)"),
        (3.0, "C>B", "200 OK (INVITE)"),
        (3.0, "B>C", "ACK"),
        (3.0, "B>A", "NOTIFY"),
        (3.0, "A>B", "200 OK (NOTIFY)"),
        (3.0, "A>B", "BYE"),
        (3.0, "B>A", "200 OK (BYE)"),
    ]
    refer_msg = net.wire[3].message
    assert isinstance(refer_msg, Request)
    assert refer_msg.headers.items()[2:] == [
        ("From", "<sip:a@example.com>;tag=at1"),
        ("To", "<sip:b@example.com>;tag=bt1"),
        ("Call-ID", "ac1@10.0.0.1"),
        ("CSeq", "2 REFER"),
        ("Contact", "<sip:a@10.0.0.1:5060>"),
        ("User-Agent", "sbcsim"),
        ("Refer-To", "<sip:c@10.0.0.3:5060>"),
        ("Referred-By", '"Alice" <sip:alice@example.com>'),
        ("Content-Length", "0"),
    ]
    notifies = [w.message for w in net.sent("B", "NOTIFY")]
    assert [
        (n.headers.get("Event"), n.headers.get("Subscription-State"), n.body) for n in notifies
    ] == [
        ("refer;id=2", "active;expires=60", b"SIP/2.0 100 Trying\r\n"),
        ("refer;id=2", "active;expires=60", b"SIP/2.0 180 Ringing\r\n"),
        ("refer;id=2", "terminated;reason=noresource", b"SIP/2.0 200 OK\r\n"),
    ]
    assert {n.headers.get("Content-Type") for n in notifies} == {"message/sipfrag;version=2.0"}
    assert [n.headers.get("CSeq") for n in notifies] == ["1 NOTIFY", "2 NOTIFY", "3 NOTIFY"]
    # RFC 3892: the triggered INVITE carries Referred-By unchanged
    triggered = net.sent("B", "INVITE")[0].message
    assert triggered.headers.get("Referred-By") == '"Alice" <sip:alice@example.com>'
    assert triggered.start_line() == "INVITE sip:c@10.0.0.3:5060 SIP/2.0"

    progress = [(t, ev) for t, ev in net.all_events("A", ReferProgress)]
    assert progress == [
        (1.0, ReferProgress(a_call, refer, 100, "Trying", "active", False)),
        (1.0, ReferProgress(a_call, refer, 180, "Ringing", "active", False)),
        (3.0, ReferProgress(a_call, refer, 200, "OK", "terminated", True)),
    ]
    completed = [ev for _, ev in net.all_events("A", RequestCompleted)]
    assert [(ev.ref.method, ev.status) for ev in completed] == [("REFER", 202), ("BYE", 200)]
    # the subscription is over: nothing more to notify
    assert b.notify_refer(received.handle, 200, now=3.0) is None


def test_refer_expires_counts_down_and_rejection(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2", refer_expires=120)
    a_call, _ = call_between(net, a, b)
    first = a.refer(a_call, "sip:c@10.0.0.3", now=0.0)
    net.flush()
    handle = net.last("B", ReferReceived).handle
    b.respond_request(handle, 202, now=0.0)
    net.run_until(30.0)
    b.notify_refer(handle, 183, "Session Progress", now=30.0)
    net.flush()
    states = [w.message.headers.get("Subscription-State") for w in net.sent("B", "NOTIFY")]
    assert states == ["active;expires=120", "active;expires=90"]
    second = a.refer(a_call, "<sip:d@10.0.0.4>", now=30.0)
    net.flush()
    b.respond_request(net.last("B", ReferReceived).handle, 603, now=30.0)
    net.flush()
    done = [(ev.ref, ev.status) for _, ev in net.all_events("A", RequestCompleted)]
    assert done == [(first, 202), (second, 603)]
    assert net.sent("A", "REFER")[1].message.headers.get("Refer-To") == "<sip:d@10.0.0.4>"


def test_refer_sub_false_makes_no_subscription(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    a_call, _ = call_between(net, a, b)
    a.refer(a_call, "sip:c@10.0.0.3", headers=(("Refer-Sub", "false"),), now=0.0)
    net.flush()
    handle = net.event("B", ReferReceived).handle
    b.respond_request(handle, 202, now=0.0)
    net.flush()
    accepted = net.wire[-1].message
    assert isinstance(accepted, Response) and accepted.headers.get("Refer-Sub") == "false"
    assert net.sent("B", "NOTIFY") == []
    assert b.notify_refer(handle, 200, now=0.0) is None


def test_attended_transfer_with_replaces(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    b = net.add("B", "10.0.0.2")
    c = net.add("C", "10.0.0.3")
    ab, _ba = call_between(net, a, b)
    ac, ca = call_between(net, a, c)
    dialog_ac = a.dialog_id(ac)
    assert dialog_ac is not None
    refer_to = refer_to_with_replaces(CAROL, dialog_ac)
    assert str(refer_to) == (
        "<sip:c@10.0.0.3:5060?Replaces=ac2%4010.0.0.1%3Bto-tag%3Dct1%3Bfrom-tag%3Dat2>"
    )
    a.refer(ab, refer_to, referred_by="<sip:a@example.com>", now=0.0)
    net.flush()
    received = net.event("B", ReferReceived)
    assert received.replaces is not None
    assert (received.replaces.call_id, received.replaces.to_tag, received.replaces.from_tag) == (
        "ac2@10.0.0.1",
        "ct1",
        "at2",
    )
    b.respond_request(received.handle, 202, now=0.0)
    target, extra = refer_target(received.refer_to)
    assert str(target) == "sip:c@10.0.0.3:5060"
    assert extra == (("Replaces", "ac2@10.0.0.1;to-tag=ct1;from-tag=at2"),)
    b.invite(
        target,
        from_="<sip:b@example.com>",
        to=f"<{target}>",
        remote=("10.0.0.3", 5060),
        sdp=SDP_B,
        headers=(*extra, ("Referred-By", received.referred_by or "")),
        now=0.0,
    )
    net.flush()
    replacing = net.last("C", IncomingCall)
    assert replacing.replaces == ca  # C learns which of its calls this one replaces
    c.respond(replacing.call, 200, sdp=SDP_C, now=0.0)
    net.flush()
    c.bye(ca, 0.0)  # ending the replaced call is the application's step
    net.flush()
    ended = net.last("A", CallEnded)
    assert (ended.call, ended.reason) == (ac, "remote-bye")


def _invite_with_replaces(net: Net, value: str) -> tuple[int, str]:
    caller = net.agents[("10.0.0.9", 5060)]
    caller.invite(
        "sip:c@10.0.0.3",
        from_="<sip:x@example.com>",
        to="<sip:c@example.com>",
        remote=("10.0.0.3", 5060),
        sdp=SDP_A,
        headers=(("Replaces", value),),
        now=net.now,
    )
    net.flush()
    final = [w.message for w in net.wire if w.src == "C" and isinstance(w.message, Response)]
    return final[-1].status, final[-1].reason_phrase


@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("no-match", (481, "Call/Transaction Does Not Exist")),
        ("early-only", (486, "Busy Here")),
        ("wrong-tags", (481, "Call/Transaction Does Not Exist")),
    ],
)
def test_replaces_rejections(net: Net, which: str, expected: tuple[int, str]) -> None:
    a = net.add("A", "10.0.0.1")
    c = net.add("C", "10.0.0.3")
    net.add("X", "10.0.0.9")
    ac, ca = call_between(net, a, c)
    d = a.dialog_id(ac)
    assert d is not None
    value = {
        "no-match": "nothing@h;to-tag=1;from-tag=2",
        "early-only": replaces_value(d) + ";early-only",
        "wrong-tags": f"{d.call_id};to-tag={d.local_tag};from-tag={d.remote_tag}",
    }[which]
    assert _invite_with_replaces(net, value) == expected
    assert net.all_events("C", IncomingCall)[-1][1].call == ca


def test_refer_needs_an_established_call(net: Net) -> None:
    a = net.add("A", "10.0.0.1")
    net.add("B", "10.0.0.2")
    call = a.invite(
        "sip:b@10.0.0.2", from_="<sip:a@x>", to="<sip:b@x>", remote=("10.0.0.2", 5060), now=0.0
    )
    with pytest.raises(LocalProtocolError):
        a.refer(call, "sip:c@10.0.0.3", now=0.0)
    assert SDP_A
