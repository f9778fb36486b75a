"""Outbound calls (Microsoft -> SBC) and trunk hunting: direct-routing-sip.md Parts 3, 5.5, 5.6,
6.3, with a raw-UA SBC on the memory network answering as each test scripts."""

from __future__ import annotations

from collections.abc import Callable

from rawsbc import CARRIER, SDES_SDP, SIP1, RawSbc

from sbcsim.dialog import CallCancelled, IncomingCall
from sbcsim.endpoints.microsoft import MicrosoftSettings
from sbcsim.lab import Lab

ALICE = "alice.archer@contoso.example"
TRUNK_A = "tenant-a.customers.example.com"
TRUNK_B = "tenant-b.customers.example.com"


def answering(raw: RawSbc, *, status_for: Callable[[IncomingCall], int] = lambda _: 200) -> None:
    """Make the raw SBC answer each INVITE: 180, then the status ``status_for`` picks."""

    def on_invite(event: IncomingCall) -> None:
        ua, now = raw.ua, raw.lab.now()
        status = status_for(event)
        if status == 0:
            return  # stay silent (the transaction layer still sends 100 Trying)
        ua.respond(event.call, 180, now=now)
        if status == 200:
            ua.respond(
                event.call,
                200,
                sdp=SDES_SDP,
                headers=(("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, NOTIFY, REFER"),),
                now=now,
            )
        elif status > 0:
            ua.respond(event.call, status, now=now)

    raw.on_invite = on_invite


def _invites(raw: RawSbc) -> list[IncomingCall]:
    return raw.of(IncomingCall)


def test_outbound_invite_request_uri_has_trunk_fqdn_and_user_phone(
    lab: Lab, raw_sbc: RawSbc
) -> None:
    answering(raw_sbc)
    call = lab.teams_user(ALICE).place_call("+13125550101")
    lab.run_for(2)
    request = _invites(raw_sbc)[0].request
    assert str(request.uri) == f"sip:+13125550101@{TRUNK_A}:5061;user=phone;transport=tls"
    assert request.headers.get("From", "").startswith(
        f"<sip:+14255550101@{SIP1}:5061;user=phone>;tag="
    )
    assert request.headers.get("User-Agent") == "Microsoft.PSTNHub.SIPProxy v.2024.11.4.2 i.USWE2.1"
    assert request.headers.get("Supported") == "timer"
    assert request.headers.get("Session-Expires") == "1800;refresher=uac"
    assert call.state == "connected"


def test_outbound_offer_is_sdes_with_two_crypto_lines(lab: Lab, raw_sbc: RawSbc) -> None:
    answering(raw_sbc)
    lab.teams_user(ALICE).place_call("+13125550101")
    lab.run_for(2)
    body = _invites(raw_sbc)[0].request.body
    assert b"m=audio 51154 RTP/SAVP 9 0 8 13 101" in body
    assert body.index(b"AES_CM_128_HMAC_SHA1_32") < body.index(b"AES_CM_128_HMAC_SHA1_80")
    assert b"a=rtcp-mux" in body


def test_pai_and_privacy_when_forward_pai(lab: Lab, raw_sbc: RawSbc) -> None:
    answering(raw_sbc)
    lab.teams_user(ALICE).place_call("+13125550101")
    lab.run_for(2)
    request = _invites(raw_sbc)[0].request
    assert request.headers.get("P-Asserted-Identity") == (
        f"<sip:+14255550101@{SIP1}:5061;user=phone>"
    )
    assert request.headers.get("Privacy") == "id"


def test_no_pai_without_forward_pai(make_sbc: Callable[..., RawSbc]) -> None:
    from sbcsim.topology import load_topology

    topo = load_topology(None)
    settings = topo.carrier.settings.model_copy(update={"forward_pai": False})
    topo = topo.model_copy(
        update={"carrier": topo.carrier.model_copy(update={"settings": settings})}
    )
    lab = Lab.build(topo, settings=MicrosoftSettings(send_options=False))
    raw = make_sbc(lab)
    answering(raw)
    lab.teams_user(ALICE).place_call("+13125550101")
    lab.run_for(2)
    request = _invites(raw)[0].request
    assert request.headers.get("P-Asserted-Identity") is None
    assert request.headers.get("Privacy") is None


def test_refer_allowed_read_from_the_sbc_200(lab: Lab, raw_sbc: RawSbc) -> None:
    answering(raw_sbc)
    lab.teams_user(ALICE).place_call("+13125550101")
    lab.run_for(2)
    record = next(r for r in lab.service.records if r.direction == "outbound")
    assert record.refer_allowed is True


def test_hunting_fails_over_on_503(make_sbc: Callable[..., RawSbc]) -> None:
    settings = MicrosoftSettings(
        send_options=False, shuffle_trunks=False, voice_routes={"tenant-a": (TRUNK_A, TRUNK_B)}
    )
    lab = Lab.build(settings=settings)
    raw = make_sbc(lab)
    answering(raw, status_for=lambda ev: 503 if TRUNK_A in str(ev.request.uri) else 200)
    call = lab.teams_user(ALICE).place_call("+13125550101")
    lab.run_for(3)
    record = next(r for r in lab.service.records if r.direction == "outbound")
    assert [(a.trunk_fqdn, a.status, a.failover) for a in record.attempts] == [
        (TRUNK_A, 503, "code"),
        (TRUNK_B, 200, ""),
    ]
    assert call.state == "connected"


def test_non_failover_code_completes_the_call(make_sbc: Callable[..., RawSbc]) -> None:
    settings = MicrosoftSettings(
        send_options=False, shuffle_trunks=False, voice_routes={"tenant-a": (TRUNK_A, TRUNK_B)}
    )
    lab = Lab.build(settings=settings)
    raw = make_sbc(lab)
    answering(raw, status_for=lambda ev: 486)
    call = lab.teams_user(ALICE).place_call("+13125550101")
    lab.run_for(3)
    assert len(_invites(raw)) == 1  # Part 3.3 [DOC]: a 4xx completes the call
    assert (call.state, call.rejection) == ("failed", 486)


def test_failover_timer_10s_moves_to_next_trunk(make_sbc: Callable[..., RawSbc]) -> None:
    settings = MicrosoftSettings(
        send_options=False, shuffle_trunks=False, voice_routes={"tenant-a": (TRUNK_A, TRUNK_B)}
    )
    lab = Lab.build(settings=settings)
    raw = make_sbc(lab)
    answering(raw, status_for=lambda ev: 0 if TRUNK_A in str(ev.request.uri) else 200)
    call = lab.teams_user(ALICE).place_call("+13125550101")
    lab.run_for(12)
    record = next(r for r in lab.service.records if r.direction == "outbound")
    first, second = record.attempts
    assert (first.trunk_fqdn, first.failover, first.status) == (TRUNK_A, "timer", 408)
    assert second.started_at - first.started_at == 10.0
    assert call.state == "connected"
    assert len(raw.of(CallCancelled)) == 1  # the abandoned INVITE was cancelled


def test_network_failure_retries_the_trunk_from_the_next_datacenter(lab: Lab) -> None:
    call = lab.teams_user(ALICE).place_call("+13125550101")  # nobody listens at the SBC
    lab.run_for(5)
    record = next(r for r in lab.service.records if r.direction == "outbound")
    assert [(a.proxy, a.failover) for a in record.attempts] == [
        ("sip.pstnhub.microsoft.com", "network"),
        ("sip2.pstnhub.microsoft.com", "network"),
        ("sip3.pstnhub.microsoft.com", "network"),
    ]
    assert call.state == "failed"


def test_demoted_trunk_is_tried_last(lab: Lab) -> None:
    settings = MicrosoftSettings(
        send_options=False,
        shuffle_trunks=False,
        voice_routes={"tenant-a": ("sbc9.other.example", TRUNK_A)},
    )
    lab.service.settings = settings
    lab.run_for(301)
    lab.service.options_seen(CARRIER, lab.proxy(SIP1))  # the carrier trunk pings, the other not
    tenant = lab.topology.tenant("tenant-a")
    assert lab.service.trunk_health("sbc9.other.example").demoted is True
    assert lab.service.hunt_order(tenant) == [TRUNK_A, "sbc9.other.example"]


def test_drained_trunk_gets_no_calls(make_sbc: Callable[..., RawSbc]) -> None:
    from sbcsim.topology import load_topology

    topo = load_topology(None)
    settings = topo.carrier.settings.model_copy(update={"enabled": False})
    topo = topo.model_copy(
        update={"carrier": topo.carrier.model_copy(update={"settings": settings})}
    )
    lab = Lab.build(topo, settings=MicrosoftSettings(send_options=False))
    raw = make_sbc(lab)
    call = lab.teams_user(ALICE).place_call("+13125550101")
    lab.run_for(2)
    assert _invites(raw) == []
    assert call.state == "failed"


def test_simultaneous_ring_pstn_fork_has_history_info(lab: Lab, raw_sbc: RawSbc) -> None:
    answering(raw_sbc, status_for=lambda ev: 0)
    grace = "+14255550107"  # simultaneous ring +13125550102, answers after 4 s
    ref = raw_sbc.invite(grace)
    lab.run_for(1)
    fork = _invites(raw_sbc)[0].request
    assert str(fork.uri).startswith(f"sip:+13125550102@{TRUNK_A}")
    assert fork.headers.get("History-Info") == (
        f"<sip:{grace}@{SIP1}:5061;user=phone?Reason=SIP%3Bcause%3D480%3Btext%3D%22Temporarily"
        f"%20Unavailable%22>;index=1,<sip:+13125550102@{SIP1}:5061;user=phone>;index=1.1"
    )
    lab.run_for(5)
    assert raw_sbc.final_response(ref) is not None
    assert len(raw_sbc.of(CallCancelled)) == 1  # grace answered: the PSTN fork is cancelled


def test_immediate_forward_to_pstn_sends_181_and_history_info(lab: Lab, raw_sbc: RawSbc) -> None:
    from sbcsim.topology import Forwarding

    alice = lab.teams_user(ALICE)
    alice.user = alice.user.model_copy(update={"forwarding": Forwarding(immediate="+13125550102")})
    answering(raw_sbc, status_for=lambda ev: 200 if "+13125550102" in str(ev.request.uri) else 0)
    ref = raw_sbc.invite()
    lab.run_for(2)
    statuses = [p.status for p in raw_sbc.progress(ref)]
    assert statuses[:2] == [183, 181]
    fork = _invites(raw_sbc)[0].request
    assert "cause%3D302" in (fork.headers.get("History-Info") or "")
    final = raw_sbc.final_response(ref)
    assert final is not None and final.status == 200
