"""Random walks over lossy links: whatever is lost, both user agents end with no call, no
transaction and no timer left, and never raise.  (Hypothesis picks the script and the seed of the
loss pattern; a failing example prints both.)"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from uapump import SDP_A, SDP_B, Net

from sbcsim.dialog.events import IncomingCall
from sbcsim.dialog.states import CallState
from sbcsim.dialog.timers import SessionTimerConfig
from sbcsim.errors import LocalProtocolError

END = 4000.0  # past every timer: Timer B/F, 64*T1 waits, a 90 s session timer's expiry


@settings(max_examples=100, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.sampled_from([0.0, 0.1, 0.3, 0.6]),
    answer=st.sampled_from(["ring-answer", "answer", "busy", "reliable", "never"]),
    answer_at=st.sampled_from([0.0, 0.5, 3.0]),
    cancel_at=st.none() | st.sampled_from([0.1, 1.0, 3.0]),
    hangup=st.sampled_from(["A", "B", "nobody"]),
    hangup_at=st.sampled_from([5.0, 40.0, 200.0]),
    reinvite_at=st.none() | st.sampled_from([10.0, 41.0]),
)
def test_lossy_calls_always_clean_up(
    seed: int,
    loss: float,
    answer: str,
    answer_at: float,
    cancel_at: float | None,
    hangup: str,
    hangup_at: float,
    reinvite_at: float | None,
) -> None:
    rng = random.Random(seed)
    net = Net(record=False)
    short = SessionTimerConfig(session_expires=90, min_se=90)
    a = net.add("A", "10.0.0.1", session_timer=short)
    b = net.add("B", "10.0.0.2", session_timer=short)
    net.drop = lambda src, dst, msg: rng.random() < loss
    call = a.invite(
        "sip:b@10.0.0.2", from_="<sip:a@x>", to="<sip:b@x>", remote=("10.0.0.2", 5060),
        sdp=SDP_A, now=0.0,
    )  # fmt: skip
    steps: list[tuple[float, str]] = [(answer_at, "answer"), (hangup_at, "hangup")]
    if cancel_at is not None:
        steps.append((cancel_at, "cancel"))
    if reinvite_at is not None:
        steps.append((reinvite_at, "reinvite"))
    for at, step in sorted(steps):
        net.run_until(at)
        incoming = [ev for _, ev in net.all_events("B", IncomingCall)]
        callee = incoming[0].call if incoming else None
        if step == "answer" and callee is not None and b.call_state(callee) is CallState.INCOMING:
            if answer == "ring-answer":
                b.respond(callee, 180, now=at)
                b.respond(callee, 200, sdp=SDP_B, now=at)
            elif answer == "answer":
                b.respond(callee, 200, sdp=SDP_B, now=at)
            elif answer == "busy":
                b.respond(callee, 486, now=at)
            elif answer == "reliable":
                b.respond(callee, 183, sdp=SDP_B, reliable=True, now=at)
                b.respond(callee, 200, sdp=SDP_B, now=at)
        elif step == "cancel" and a.call_state(call) in (CallState.CALLING, CallState.PROCEEDING):
            a.cancel(call, at)
        elif step == "reinvite" and a.call_state(call) is CallState.CONFIRMED:
            if a.local_sdp(call) is not None and not a._calls[call.id].local_offer:
                try:
                    a.reinvite(call, SDP_A.replace(b" 1 IN", b" 2 IN"), now=at)
                except LocalProtocolError as exc:  # busy with a refresh: allowed to refuse
                    assert "in progress" in exc.msg or "outstanding" in exc.msg
        elif step == "hangup":
            if hangup == "A" and a.call_state(call) is CallState.CONFIRMED:
                a.bye(call, at)
            elif (
                hangup == "B" and callee is not None and b.call_state(callee) is CallState.CONFIRMED
            ):
                b.bye(callee, at)
            elif callee is not None and b.call_state(callee) in (
                CallState.INCOMING,
                CallState.EARLY,
            ):
                try:
                    b.respond(callee, 480, now=at)
                except LocalProtocolError as exc:  # a 2xx is already queued behind a PRACK
                    assert "waiting for a PRACK" in exc.msg
    # Whatever the script left standing is ended over a healed network at t=300: hang up an
    # established call, cancel or reject a ringing one (nobody else would: the RFC has no
    # timer for a callee that never answers).
    net.run_until(300.0)
    net.drop = None
    incoming = [ev for _, ev in net.all_events("B", IncomingCall)]
    callee = incoming[0].call if incoming else None
    if a.call_state(call) is CallState.CONFIRMED:
        a.bye(call, 300.0)
    elif callee is not None and b.call_state(callee) is CallState.CONFIRMED:
        b.bye(callee, 300.0)
    if a.call_state(call) in (CallState.CALLING, CallState.PROCEEDING):
        a.cancel(call, 300.0)
    if callee is not None and b.call_state(callee) in (CallState.INCOMING, CallState.EARLY):
        try:
            b.respond(callee, 480, now=300.0)
        except LocalProtocolError as exc:
            assert "waiting for a PRACK" in exc.msg
    net.run_until(END)
    assert a.active_calls == 0, a._calls
    assert b.active_calls == 0, b._calls
    assert net.next_deadline() is None
    for ua in (a, b):
        assert not ua._client and not ua._server and not ua._acks and not ua._by_dialog
        assert not ua._uas_by_key and not ua._merging
