"""Inbound calls (SBC -> Microsoft) on the emulated proxies: direct-routing-sip.md Parts 2, 5.5,
6.2, 6.4, 8, one test per rule, with a raw-UA SBC on the memory network."""

from __future__ import annotations

from collections.abc import Callable

from rawsbc import (
    BLACKHOLE_SDP,
    PLAIN_RTP_SDP,
    SDES_SDP,
    SIP1,
    TENANT_A,
    RawSbc,
)

from sbcsim.dialog import CallEnded, CallEstablished, RequestCompleted
from sbcsim.endpoints.microsoft import MicrosoftSettings
from sbcsim.lab import Lab
from sbcsim.sip.sdp import SessionDescription

ALICE = "alice.archer@contoso.example"  # +14255550101, answers after 2 s


def _final(raw: RawSbc, ref: object) -> int | None:
    response = raw.final_response(ref)  # type: ignore[arg-type]
    return None if response is None else response.status


def _reason(raw: RawSbc, ref: object) -> str | None:
    response = raw.final_response(ref)  # type: ignore[arg-type]
    return None if response is None else response.headers.get("Reason")


def test_inbound_call_rings_and_is_answered(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite()
    lab.run_for(5)
    assert [p.status for p in raw_sbc.progress(ref)] == [183, 180]
    assert _final(raw_sbc, ref) == 200
    record = lab.service.records[0]
    assert [status for _, status, _ in record.sent] == [100, 183, 180, 200]
    assert record.established_at is not None and round(record.established_at, 6) == 2.007


def test_tenant_by_full_fqdn_then_parent_domain(lab: Lab, make_sbc: Callable[..., RawSbc]) -> None:
    sbc = make_sbc(lab, names=("*.customers.example.com", "sbc1.contoso.example"))
    first = sbc.invite()
    second = sbc.invite(contact="<sip:+13125550101@sbc1.contoso.example:5061;transport=tls>")
    lab.run_for(5)
    assert _final(sbc, first) == 200 and _final(sbc, second) == 200
    by_fqdn, by_parent = lab.service.records[0], lab.service.records[1]
    assert (by_fqdn.tenant, by_fqdn.tenant_matched_by) == ("tenant-a", "fqdn")
    assert (by_parent.tenant, by_parent.tenant_matched_by) == ("tenant-a", "parent-domain")


def test_unknown_contact_fqdn_gets_403_no_trunk_config(
    lab: Lab, make_sbc: Callable[..., RawSbc]
) -> None:
    sbc = make_sbc(lab, names=("*.unknown.example.net",))
    ref = sbc.invite(contact="<sip:+13125550101@sbc.unknown.example.net:5061;transport=tls>")
    lab.run_for(1)
    assert _final(sbc, ref) == 403
    assert _reason(sbc, ref) == 'Q.850;cause=21;text="510532 No trunk config was found"'


def test_invite_with_ip_in_contact_gets_403(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite(contact="<sip:+13125550101@127.0.0.2:5061;transport=tls>")
    lab.run_for(1)
    assert _final(raw_sbc, ref) == 403
    assert lab.service.records[0].failed_rules == ["ip-in-contact"]


def test_record_route_is_checked_before_contact(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite(headers=(("Record-Route", "<sip:127.0.0.2:5061;transport=tls;lr>"),))
    lab.run_for(1)
    assert _final(raw_sbc, ref) == 403
    assert lab.service.records[0].failed_rules == ["ip-in-contact"]


def test_certificate_mismatch_on_invite_closes_connection(
    lab: Lab, make_sbc: Callable[..., RawSbc]
) -> None:
    sbc = make_sbc(lab, names=("sbc.customers.example.com",))
    ref = sbc.invite()  # Contact tenant-a..., certificate only for the carrier name
    lab.run_for(1)
    assert lab.service.records[0].failed_rules == ["certificate-mismatch"]
    failure = sbc.failure(ref)
    assert failure is not None and failure.status == 503 and failure.response is None


def test_unknown_number_gets_404(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite("+14255550199")
    lab.run_for(1)
    assert _final(raw_sbc, ref) == 404
    assert _reason(raw_sbc, ref) == (
        'Q.850;cause=1;text="511404 Getting user info by number from RuntimeAPI failed"'
    )


def test_number_of_another_tenant_gets_404(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite("+12065550101")  # tenant-b's Julia, Contact names tenant-a
    lab.run_for(1)
    assert _final(raw_sbc, ref) == 404


def test_invite_without_sdp_gets_415(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite(sdp=None)
    lab.run_for(1)
    assert _final(raw_sbc, ref) == 415
    assert lab.service.records[0].failed_rules == ["no-sdp"]


def test_plain_rtp_gets_488(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite(sdp=PLAIN_RTP_SDP)
    lab.run_for(1)
    assert _final(raw_sbc, ref) == 488
    assert _reason(raw_sbc, ref) == 'Q.850;cause=65;text="531000 SrtpEncryptionRequired"'


def test_blackhole_connection_address_gets_488(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite(sdp=BLACKHOLE_SDP)
    lab.run_for(1)
    assert _final(raw_sbc, ref) == 488
    assert lab.service.records[0].failed_rules == ["blackhole-media"]


def test_replaces_from_sbc_gets_403(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite(headers=(("Replaces", "abc@host;to-tag=1;from-tag=2"),))
    lab.run_for(1)
    assert _final(raw_sbc, ref) == 403
    assert lab.service.records[0].failed_rules == ["replaces-from-sbc"]


def test_replaces_rejection_status_is_a_setting(make_sbc: Callable[..., RawSbc]) -> None:
    lab = Lab.build(settings=MicrosoftSettings(send_options=False, replaces_rejection_status=400))
    sbc = make_sbc(lab)
    ref = sbc.invite(headers=(("Replaces", "abc@host;to-tag=1;from-tag=2"),))
    lab.run_for(1)
    assert _final(sbc, ref) == 400


def test_forked_180s_have_distinct_to_tags(lab: Lab, raw_sbc: RawSbc) -> None:
    lab.teams_user(ALICE).endpoints = 3
    ref = raw_sbc.invite()
    lab.run_for(5)
    progress = raw_sbc.progress(ref)
    ringing_tags = [p.response.to.tag for p in progress if p.status == 180]
    assert len(ringing_tags) == 3 and len(set(ringing_tags)) == 3
    answered = raw_sbc.final_response(ref)
    assert answered is not None and answered.to.tag == ringing_tags[0]


def test_ringback_bot_183_comes_before_any_180(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite()
    lab.run_for(5)
    progress = raw_sbc.progress(ref)
    assert [p.status for p in progress] == [183, 180]
    assert progress[0].sdp is not None
    assert progress[0].response.to.tag != progress[1].response.to.tag


def test_without_ringback_bot_one_183_follows_the_first_180(
    make_sbc: Callable[..., RawSbc],
) -> None:
    lab = Lab.build(settings=MicrosoftSettings(send_options=False, ringback_bot=False))
    lab.teams_user(ALICE).endpoints = 2
    sbc = make_sbc(lab)
    ref = sbc.invite()
    lab.run_for(5)
    progress = sbc.progress(ref)
    assert [p.status for p in progress] == [180, 183, 180]
    assert progress[0].response.to.tag == progress[1].response.to.tag


def test_200_has_media_processor_sdes_answer_and_session_timer(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite()
    lab.run_for(5)
    answer = raw_sbc.final_response(ref)
    assert answer is not None
    sdp = SessionDescription.parse(answer.body)
    media = sdp.media[0]
    assert media.proto == "RTP/SAVP"
    assert [c.suite for c in media.cryptos] == ["AES_CM_128_HMAC_SHA1_80"]
    assert media.cryptos[0].tag == 1
    assert media.formats == ["0", "101"]
    assert sdp.effective_connection(media) is not None
    assert sdp.effective_connection(media).host == "127.0.1.100"  # type: ignore[union-attr]
    assert answer.headers.get("Session-Expires") == "1800;refresher=uas"


def test_no_session_timer_on_bypass_trunk(make_sbc: Callable[..., RawSbc]) -> None:
    from sbcsim.topology import load_topology

    topo = load_topology(None)
    carrier = topo.carrier.model_copy(
        update={"settings": topo.carrier.settings.model_copy(update={"media_bypass": True})}
    )
    lab = Lab.build(
        topo.model_copy(update={"carrier": carrier}), settings=MicrosoftSettings(send_options=False)
    )
    sbc = make_sbc(lab)
    ice = SDES_SDP + b"a=candidate:1 1 UDP 2130706431 127.0.0.2 30000 typ host\r\n"
    ref = sbc.invite(sdp=ice)
    lab.run_for(5)
    answer = sbc.final_response(ref)
    assert answer is not None and answer.status == 200
    assert answer.headers.get("Session-Expires") is None


def test_busy_mode_503_retry_after_1(lab: Lab, raw_sbc: RawSbc) -> None:
    lab.proxy(SIP1).busy_mode()
    ref = raw_sbc.invite()
    lab.run_for(1)
    response = raw_sbc.final_response(ref)
    assert response is not None and response.status == 503
    assert response.headers.get("Retry-After") == "1"


def test_busy_user_gets_486_with_nicc_cause_34(lab: Lab, raw_sbc: RawSbc) -> None:
    lab.teams_user(ALICE).set_behaviour("busy", 1.0)
    ref = raw_sbc.invite()
    lab.run_for(3)
    assert _final(raw_sbc, ref) == 486
    assert _reason(raw_sbc, ref) == 'Q.850;cause=34;text="486"'


def test_decline_gets_603(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite("+14255550109")  # Ivan declines after 1 s
    lab.run_for(3)
    assert _final(raw_sbc, ref) == 603
    assert _reason(raw_sbc, ref) == 'Q.850;cause=21;text="Decline"'


def test_dnd_user_does_not_ring_and_gets_480(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite("+14255550105")  # Elena, DoNotDisturb
    lab.run_for(3)
    assert [p.status for p in raw_sbc.progress(ref)] == [183]
    assert _final(raw_sbc, ref) == 480


def test_dnd_breakthrough_lets_it_ring(lab: Lab, raw_sbc: RawSbc) -> None:
    elena = lab.teams_user("elena.estrada@contoso.example")
    elena.dnd_breakthrough = True
    ref = raw_sbc.invite("+14255550105")
    lab.run_for(3)
    assert [p.status for p in raw_sbc.progress(ref)] == [183, 180]
    elena.answer()
    lab.run_for(1)
    assert _final(raw_sbc, ref) == 200


def test_presence_busy_in_a_call_and_back_after(lab: Lab, raw_sbc: RawSbc) -> None:
    alice = lab.teams_user(ALICE)
    graph_id = alice.user.graph_id
    ref = raw_sbc.invite()
    lab.run_for(5)
    assert str(lab.presence.presence(graph_id)) == "Busy/InACall"
    raw_sbc.ua.bye(ref, lab.now())
    raw_sbc.node.poke()
    lab.run_for(1)
    assert str(lab.presence.presence(graph_id)) == "Available/Available"
    assert alice.calls == []


def test_teams_user_hangs_up_with_bye(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite()
    lab.run_for(5)
    lab.teams_user(ALICE).hang_up()
    lab.run_for(1)
    ended = [e for e in raw_sbc.of(CallEnded) if e.call == ref]
    assert [e.reason for e in ended] == ["remote-bye"]


def test_caller_cancel_stops_ringing(lab: Lab, raw_sbc: RawSbc) -> None:
    lab.teams_user(ALICE).set_behaviour("no-answer")
    ref = raw_sbc.invite()
    lab.run_for(2)
    raw_sbc.ua.cancel(ref, lab.now())
    raw_sbc.node.poke()
    lab.run_for(1)
    assert _final(raw_sbc, ref) == 487
    assert lab.teams_user(ALICE).ringing() == []


def test_call_queue_answers_then_rings_agents(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite("+14255550150")  # support queue: alice (2 s), bruno (1 s)
    lab.run_for(0.5)
    assert [p.status for p in raw_sbc.progress(ref)] == []
    assert _final(raw_sbc, ref) == 200  # server endpoint: 200 straight away (Part 2.3 S3)
    assert [a.user.upn for a in lab.service.calls[0].alerts] == [
        "alice.archer@contoso.example",
        "bruno.baptiste@contoso.example",
    ]
    lab.run_for(2)
    call = lab.service.calls[0]
    assert [u.upn for u in call.users] == ["bruno.baptiste@contoso.example"]
    assert [a.state for a in call.alerts] == ["cancelled", "answered"]


def test_unanswered_call_forwards_to_voicemail(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite("+14255550106")  # Farid: no answer, voicemail after 20 s
    lab.run_for(19)
    assert _final(raw_sbc, ref) is None
    lab.run_for(2)
    statuses = [p.status for p in raw_sbc.progress(ref)]
    assert statuses == [183, 180, 181]
    assert _final(raw_sbc, ref) == 200


def test_serial_call_group_rings_members_in_turn(lab: Lab, make_sbc: Callable[..., RawSbc]) -> None:
    sbc = make_sbc(lab, names=("*.customers.example.com",))
    julia = lab.teams_user("julia.jensen@fabrikam.example")
    julia.set_behaviour("no-answer")
    lab.teams_user("kenji.kato@fabrikam.example").set_behaviour("no-answer")
    ref = sbc.invite(
        "+12065550101",
        contact="<sip:+13125550101@tenant-b.customers.example.com:5061;transport=tls>",
    )
    lab.run_for(1)
    call = lab.service.calls[0]
    assert [a.user.upn for a in call.alerts] == [
        "julia.jensen@fabrikam.example",
        "kenji.kato@fabrikam.example",
    ]
    lab.run_for(20)
    assert [a.user.upn for a in call.alerts][-1] == "lena.larsen@fabrikam.example"
    assert _final(sbc, ref) is None


def test_sendonly_hold_reinvite_gets_488(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite()
    lab.run_for(5)
    held = SDES_SDP.replace(b"o=sbc 1 1", b"o=sbc 1 2").replace(b"a=sendrecv", b"a=sendonly")
    req = raw_sbc.ua.reinvite(ref, held, now=lab.now())
    raw_sbc.node.poke()
    lab.run_for(1)
    done = next(e for e in raw_sbc.of(RequestCompleted) if e.ref == req)
    assert done.status == 488


def test_inactive_hold_is_answered_inactive(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite()
    lab.run_for(5)
    held = SDES_SDP.replace(b"o=sbc 1 1", b"o=sbc 1 2").replace(b"a=sendrecv", b"a=inactive")
    req = raw_sbc.ua.reinvite(ref, held, now=lab.now())
    raw_sbc.node.poke()
    lab.run_for(1)
    done = next(e for e in raw_sbc.of(RequestCompleted) if e.ref == req)
    assert done.status == 200 and done.response is not None
    sdp = SessionDescription.parse(done.response.body)
    assert sdp.effective_direction(sdp.media[0]).value == "inactive"
    assert sdp.origin.sess_version == 2


def test_update_gets_405(lab: Lab, raw_sbc: RawSbc) -> None:
    ref = raw_sbc.invite()
    lab.run_for(5)
    req = raw_sbc.ua.update(ref, None, now=lab.now())
    raw_sbc.node.poke()
    lab.run_for(1)
    done = next(e for e in raw_sbc.of(RequestCompleted) if e.ref == req)
    assert done.status == 405


def test_missing_ack_ends_the_call_when_ack_timeout_is_set(
    make_sbc: Callable[..., RawSbc],
) -> None:
    from sbcsim.net.memory import request_method

    lab = Lab.build(settings=MicrosoftSettings(send_options=False, ack_timeout=4.0))
    sbc = make_sbc(lab)
    lab.net.add_rule(request_method("ACK"), "drop", count=None)
    sbc.invite()
    lab.run_for(10)
    record = lab.service.records[0]
    assert "no-ack" in record.failed_rules
    assert record.end_reason == "no-ack"
    assert not any(
        isinstance(e, CallEstablished) and e.call is None for e in sbc.of(CallEstablished)
    )
    assert TENANT_A  # the call came from tenant A's trunk
