"""The reference SBC's transfers: REFER from Microsoft with sipfrag NOTIFYs, ringback and the PSTN
leg re-bridged (Part 5.3), and Replaces from either side (Part 5.4)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sbc_bench import (
    CHICAGO,
    LATENCY,
    REFER_TO,
    REFERRED_BY,
    SBC_HOST,
    SIP,
    X_MS_SBC,
    Bench,
    pstn_sdp,
    teams_sdp,
)

from sbcsim.dialog import (
    CallEnded,
    IncomingCall,
    ReferProgress,
    ReinviteReceived,
    RequestCompleted,
    replaces_value,
)
from sbcsim.sim import Simulator

TENANT_A_CONTACT = "<sip:+13125550101@tenant-a.customers.example.com:5061;transport=tls>"


def srtp_key(index: int) -> str:
    rng = Simulator(0).derive_rng("sbc:srtp")
    keys = [base64.b64encode(rng.randbytes(30)).decode() for _ in range(index + 1)]
    return keys[index]


def _refer(bench: Bench) -> tuple[object, object]:
    """An inbound call, then Microsoft's REFER on it; returns (PSTN call, old Teams call)."""
    pstn_call, teams_call = bench.established_inbound()
    bench.proxy().act(
        lambda ua, now: ua.refer(teams_call, REFER_TO, referred_by=REFERRED_BY, now=now)
    )
    bench.until(lambda: len(bench.proxy().seen(IncomingCall)) == 2)
    return pstn_call, teams_call


def test_refer_gets_202_a_new_invite_to_the_exact_refer_to_and_sipfrag_notifies() -> None:
    bench = Bench()
    pstn_call, old = _refer(bench)
    proxy = bench.proxy()
    assert proxy.last(RequestCompleted).status == 202
    invite = bench.to_microsoft("INVITE")[1]
    refer_uri = REFER_TO[1:-1]
    assert str(invite.message.uri) == refer_uri
    assert invite.dst == (bench.address_of(SIP), 5061)
    assert invite.header("To") == REFER_TO
    assert invite.header("Referred-By") == REFERRED_BY  # not one character changed
    assert invite.header("Replaces") is None
    assert invite.header("Contact") == TENANT_A_CONTACT
    assert invite.header("From").startswith(  # type: ignore[union-attr]
        "<sip:+13125550101@tenant-a.customers.example.com;user=phone>;tag="
    )
    assert invite.header("X-MS-SBC") == X_MS_SBC
    assert invite.body_lines() == [
        "v=0",
        "o=sbcsim 1003 1 IN IP4 127.0.0.2",
        "s=sbcsim",
        "c=IN IP4 127.0.0.2",
        "t=0 0",
        "m=audio 40002 RTP/SAVP 0 101",  # the PSTN leg's codecs, a new port and key
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{srtp_key(1)}|2^31",
        "a=rtcp-mux",
        "a=sendrecv",
    ]
    new = proxy.last(IncomingCall).call
    proxy.act(lambda ua, now: ua.respond(new, 180, now=now))
    bench.run(3.0)
    t_answer = bench.sim.now()
    proxy.act(lambda ua, now: ua.respond(new, 200, sdp=teams_sdp(offer=False), now=now))
    bench.run(1.0)
    progress = [(ev.status, ev.state, ev.final) for ev in proxy.seen(ReferProgress)]
    assert progress == [
        (100, "active", False),
        (180, "active", False),
        (200, "terminated", True),
    ]
    notifies = bench.to_microsoft("NOTIFY")
    assert [n.header("Content-Type") for n in notifies] == ["message/sipfrag;version=2.0"] * 3
    assert {n.header("Contact") for n in notifies} == {TENANT_A_CONTACT}
    assert {n.header("X-MS-SBC") for n in notifies} == {X_MS_SBC}
    # local ringback toward the transferee from the 180 until the 200 (Part 5.3)
    ringing = [(e.kind, e.time) for e in bench.sbc.events if e.kind.startswith("ringback")]
    t_180 = bench.wire(method="180")[-1].time + LATENCY
    assert ringing == [("ringback_started", t_180), ("ringback_stopped", t_answer + LATENCY)]
    # Microsoft ends the old leg after NOTIFY 200: the PSTN leg stays, now bridged to the new one
    proxy.act(lambda ua, now: ua.bye(old, now))  # type: ignore[arg-type]
    bench.run(1.0)
    assert bench.to_pstn("BYE") == []
    bench.pstn.act(lambda ua, now: ua.bye(pstn_call, now))  # type: ignore[arg-type]
    bench.run(1.0)
    byes = bench.to_microsoft("BYE")
    assert len(byes) == 1
    assert byes[0].message.call_id == new.call_id
    assert bench.sbc.active_calls == 0


def test_hold_before_refer_is_undone_on_the_pstn_leg_after_the_transfer() -> None:
    bench = Bench()
    pstn_call, teams_call = bench.established_inbound()
    proxy = bench.proxy()
    held = teams_sdp(direction="inactive", version=2)
    proxy.act(lambda ua, now: ua.reinvite(teams_call, held, now=now))
    bench.run(1.0)
    hold = bench.to_pstn("INVITE")[0]
    assert hold.body_lines()[-1] == "a=inactive"
    assert proxy.last(RequestCompleted).response.body.decode().split("\r\n")[-2] == "a=inactive"
    proxy.act(lambda ua, now: ua.refer(teams_call, REFER_TO, referred_by=REFERRED_BY, now=now))
    bench.until(lambda: len(proxy.seen(IncomingCall)) == 2)
    new = proxy.last(IncomingCall).call
    assert bench.to_microsoft("INVITE")[1].body_lines()[-1] == "a=sendrecv"
    bench.answer(proxy, new, teams_sdp(offer=False))
    bench.run(1.0)
    resume = bench.to_pstn("INVITE")[1]
    assert resume.body_lines() == [
        "v=0",
        "o=sbcsim 1001 3 IN IP4 127.0.0.2",
        "s=sbcsim",
        "c=IN IP4 127.0.0.2",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0 8 101",  # what the carrier answered to the hold offer
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    assert pstn_call is not None


def test_a_failed_transfer_reports_the_failure_and_keeps_the_old_bridge() -> None:
    bench = Bench()
    pstn_call, old = _refer(bench)
    proxy = bench.proxy()
    new = proxy.last(IncomingCall).call
    proxy.act(lambda ua, now: ua.respond(new, 486, now=now))
    bench.run(1.0)
    final = proxy.last(ReferProgress)
    assert (final.status, final.final) == (486, True)
    assert [e.kind for e in bench.sbc.events][-1] == "transfer_failed"
    bench.pstn.act(lambda ua, now: ua.bye(pstn_call, now))  # type: ignore[arg-type]
    bench.run(1.0)
    (bye,) = bench.to_microsoft("BYE")
    assert bye.message.call_id == old.call_id  # type: ignore[attr-defined]


def test_invite_with_replaces_from_microsoft_takes_over_the_call() -> None:
    bench = Bench()
    pstn_call, old = bench.established_inbound()
    proxy = bench.proxy()
    dialog = proxy.ua.dialog_id(old)
    assert dialog is not None
    new = proxy.act(
        lambda ua, now: ua.invite(
            "sip:+13125550101@tenant-a.customers.example.com:5061;transport=tls",
            from_="<sip:+14255550102@sip.pstnhub.microsoft.com;user=phone>",
            to="<sip:+13125550101@tenant-a.customers.example.com;user=phone>",
            remote=(SBC_HOST, 5061),
            transport="tls",
            server_name="tenant-a.customers.example.com",
            sdp=teams_sdp(port=52010),
            headers=(("Replaces", replaces_value(dialog)),),
            now=now,
        )
    )
    bench.run(1.0)
    assert proxy.ua.dialog_id(new) is not None
    ok = next(w for w in bench.to_microsoft("200") if w.message.call_id == new.call_id)
    assert ok.header("Contact") == TENANT_A_CONTACT
    assert ok.body_lines()[5] == "m=audio 40002 RTP/SAVP 0 8 101"
    assert [ev.call for ev in proxy.seen(CallEnded)] == [old]  # the SBC ended the old dialog
    assert bench.to_pstn("BYE") == [] and bench.to_pstn("INVITE") == []
    bench.pstn.act(lambda ua, now: ua.bye(pstn_call, now))
    bench.run(1.0)
    assert [w.message.call_id for w in bench.to_microsoft("BYE")] == [
        old.call_id,
        new.call_id,
    ]


def test_replaces_from_the_carrier_is_handled_without_sending_replaces_to_microsoft() -> None:
    bench = Bench()
    pstn_call, teams_call = bench.established_inbound()
    dialog = bench.pstn.ua.dialog_id(pstn_call)
    assert dialog is not None
    new = bench.pstn.act(
        lambda ua, now: ua.invite(
            f"sip:{CHICAGO}@{SBC_HOST}",
            from_="<sip:+13125550102@127.0.2.1;user=phone>",
            to=f"<sip:{CHICAGO}@{SBC_HOST}>",
            remote=(SBC_HOST, 5060),
            sdp=pstn_sdp(port=20010),
            headers=(("Replaces", replaces_value(dialog)),),
            now=now,
        )
    )
    bench.run(1.0)
    assert bench.pstn.ua.dialog_id(new) is not None
    assert [ev.call for ev in bench.pstn.seen(CallEnded)] == [pstn_call]
    assert len(bench.to_microsoft("INVITE")) == 1  # nothing new toward Microsoft
    assert all(w.header("Replaces") is None for w in bench.to_microsoft())
    assert bench.proxy().seen(ReinviteReceived) == []
    bench.proxy().act(lambda ua, now: ua.bye(teams_call, now))
    bench.run(1.0)
    assert [w.message.call_id for w in bench.to_pstn("BYE")] == [
        pstn_call.call_id,
        new.call_id,
    ]


def test_every_contact_toward_microsoft_names_the_tenant_and_never_an_ip() -> None:
    bench = Bench()
    pstn_call, teams_call = bench.established_inbound()
    proxy = bench.proxy()
    proxy.act(
        lambda ua, now: ua.reinvite(teams_call, teams_sdp(direction="inactive", version=2), now=now)
    )
    bench.run(1.0)
    _refer_and_answer(bench, teams_call)
    sent = [w for w in bench.to_microsoft() if w.method != "OPTIONS"]
    with_contact = [(w.method, w.header("Contact")) for w in sent if w.header("Contact")]
    assert [m for m, _ in with_contact] == [
        "INVITE",  # the call
        "200 (INVITE)",  # the answer to Microsoft's hold re-INVITE
        "202 (REFER)",
        "NOTIFY",
        "INVITE",  # the transfer
        "NOTIFY",
        "NOTIFY",
    ]
    assert {c for _, c in with_contact} == {TENANT_A_CONTACT}
    assert all(w.header("Record-Route") is None for w in sent)
    assert all(w.header("X-MS-SBC") == X_MS_SBC for w in sent)
    assert pstn_call is not None


def _refer_and_answer(bench: Bench, teams_call: object) -> None:
    proxy = bench.proxy()
    proxy.act(lambda ua, now: ua.refer(teams_call, REFER_TO, referred_by=REFERRED_BY, now=now))  # type: ignore[arg-type]
    bench.until(lambda: len(proxy.seen(IncomingCall)) == 2)
    bench.answer(proxy, proxy.last(IncomingCall).call, teams_sdp(offer=False))
    bench.run(1.0)
