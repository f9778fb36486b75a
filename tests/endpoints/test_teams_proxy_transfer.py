"""Transfers, hold and escalation from the Teams side: direct-routing-sip.md Parts 5, 8.4, 8.5,
with a raw-UA SBC on the memory network playing the SBC's part of each flow."""

from __future__ import annotations

import re
from collections.abc import Callable

from rawsbc import SBC_ALLOW_WITHOUT_REFER, SDES_SDP, SIP1, RawSbc

from sbcsim.dialog import (
    CallEnded,
    CallRef,
    IncomingCall,
    ReferReceived,
    ReinviteReceived,
)
from sbcsim.endpoints.teams_users import tenant_guid
from sbcsim.lab import Lab

ALICE = "alice.archer@contoso.example"
CHLOE = "chloe.chen@contoso.example"


def _connected_call(lab: Lab, raw: RawSbc, **kwargs: object) -> CallRef:
    ref = raw.invite(**kwargs)  # type: ignore[arg-type]
    lab.run_for(5)
    assert raw.established(ref) is not None
    return ref


def _answer_invites(raw: RawSbc) -> None:
    def on_invite(event: IncomingCall) -> None:
        raw.ua.respond(event.call, 180, now=raw.lab.now())
        raw.ua.respond(event.call, 200, sdp=SDES_SDP, now=raw.lab.now())

    raw.on_invite = on_invite


def test_refer_only_when_allow_lists_refer(lab: Lab, raw_sbc: RawSbc) -> None:
    _connected_call(lab, raw_sbc)
    record = lab.teams_user(ALICE).transfer_to(CHLOE)
    lab.run_for(1)
    assert record.method == "refer"
    assert len(raw_sbc.of(ReferReceived)) == 1


def test_no_refer_in_allow_gives_internal_transfer_by_reinvite(
    lab: Lab, make_sbc: Callable[..., RawSbc]
) -> None:
    raw_sbc = make_sbc(lab, allow=tuple(SBC_ALLOW_WITHOUT_REFER.split(", ")))
    _connected_call(lab, raw_sbc, headers=())
    record = lab.teams_user(ALICE).transfer_to(CHLOE)
    lab.run_for(5)
    assert record.method == "internal"
    assert raw_sbc.of(ReferReceived) == []
    assert len(raw_sbc.of(ReinviteReceived)) == 1
    chloe = lab.teams_user(CHLOE)
    assert [c.id for c in chloe.calls] == [1]
    assert lab.teams_user(ALICE).calls == []


def test_refer_to_teams_user_has_x_m_and_x_t(lab: Lab, raw_sbc: RawSbc) -> None:
    _connected_call(lab, raw_sbc)
    lab.teams_user(ALICE).transfer_to(CHLOE)
    lab.run_for(1)
    refer = raw_sbc.of(ReferReceived)[0]
    chloe = lab.teams_user(CHLOE)
    guid = tenant_guid(lab.topology.tenant("tenant-a"))
    assert refer.request.headers.get("Refer-To") == (
        f"<sip:{SIP1}:5061;transport=tls;x-m=8:orgid:{chloe.user.graph_id};x-t={guid}>"
    )
    assert refer.request.headers.get("User-Agent", "").startswith("Microsoft.PSTNHub.SIPProxy")


def test_refer_to_pstn_number_has_e164_user_part(lab: Lab, raw_sbc: RawSbc) -> None:
    _connected_call(lab, raw_sbc)
    lab.teams_user(ALICE).transfer_to("+13125550102")
    lab.run_for(1)
    refer = raw_sbc.of(ReferReceived)[0]
    assert refer.request.headers.get("Refer-To") == (
        f"<sip:+13125550102@{SIP1}:5061;user=phone;transport=tls>"
    )


def test_referred_by_has_transferor_mri_and_x_ti_x_tt(lab: Lab, raw_sbc: RawSbc) -> None:
    _connected_call(lab, raw_sbc)
    lab.teams_user(ALICE).transfer_to(CHLOE)
    lab.run_for(1)
    value = raw_sbc.of(ReferReceived)[0].referred_by or ""
    alice = lab.teams_user(ALICE)
    assert value.startswith(f"<sip:{SIP1}:5061;x-m=8:orgid:{alice.user.graph_id};x-t=")
    assert re.search(r";x-ti=[0-9a-f-]{36};x-tt=[a-z0-9_%-]+>$", value)
    assert len(raw_sbc.of(ReferReceived)[0].request.headers.get("Refer-To") or "") <= 400


def _sbc_follows_refer(raw: RawSbc, *, referred_by: str | bool | None = True) -> CallRef:
    """The SBC's side of Part 5.3: 202, then a new INVITE to the Refer-To URI."""
    refer = raw.of(ReferReceived)[-1]
    raw.ua.respond_request(refer.handle, 202, now=raw.lab.now())
    uri = str(refer.refer_to.uri)
    headers: list[tuple[str, str]] = [("Allow", "INVITE, ACK, BYE, CANCEL, REFER, NOTIFY")]
    if referred_by is True:
        headers.append(("Referred-By", refer.referred_by or ""))
    elif isinstance(referred_by, str):
        headers.append(("Referred-By", referred_by))
    ref = raw.invite(request_uri=uri, headers=tuple(headers))
    raw.node.poke()
    return ref


def test_transfer_completes_with_notify_200_then_bye_on_old_leg(lab: Lab, raw_sbc: RawSbc) -> None:
    old = _connected_call(lab, raw_sbc)
    record = lab.teams_user(ALICE).transfer_to(CHLOE)
    lab.run_for(1)
    new = _sbc_follows_refer(raw_sbc)
    lab.run_for(5)  # chloe answers after 3 s
    assert raw_sbc.established(new) is not None
    assert record.referred_by_ok is True
    handle = raw_sbc.of(ReferReceived)[-1].handle
    raw_sbc.ua.notify_refer(handle, 200, now=lab.now())
    raw_sbc.node.poke()
    lab.run_for(1)
    assert record.outcome == "completed"
    assert [s for _, s, _ in record.notifies] == [100, 200]
    ended = [e for e in raw_sbc.of(CallEnded) if e.call == old]
    assert [e.reason for e in ended] == ["remote-bye"]
    assert [c.id for c in lab.teams_user(CHLOE).calls] == [2]
    assert lab.teams_user(ALICE).calls == []


def test_altered_referred_by_gets_400(lab: Lab, raw_sbc: RawSbc) -> None:
    _connected_call(lab, raw_sbc)
    record = lab.teams_user(ALICE).transfer_to(CHLOE)
    lab.run_for(1)
    original = raw_sbc.of(ReferReceived)[0].referred_by or ""
    new = _sbc_follows_refer(raw_sbc, referred_by=original.replace("x-tt=", "x-tt=x"))
    lab.run_for(1)
    response = raw_sbc.final_response(new)
    assert response is not None and response.status == 400
    assert record.referred_by_ok is False


def test_missing_referred_by_gets_400(lab: Lab, raw_sbc: RawSbc) -> None:
    _connected_call(lab, raw_sbc)
    lab.teams_user(ALICE).transfer_to(CHLOE)
    lab.run_for(1)
    new = _sbc_follows_refer(raw_sbc, referred_by=None)
    lab.run_for(1)
    response = raw_sbc.final_response(new)
    assert response is not None and response.status == 400
    assert lab.service.records[-1].failed_rules == ["referred-by-missing"]


def test_transfer_to_pstn_hairpins_through_the_sbc(lab: Lab, raw_sbc: RawSbc) -> None:
    _connected_call(lab, raw_sbc)
    lab.teams_user(ALICE).transfer_to("+13125550102")
    lab.run_for(1)
    _answer_invites(raw_sbc)
    new = _sbc_follows_refer(raw_sbc)
    lab.run_for(2)
    hairpin = raw_sbc.of(IncomingCall)[0].request
    assert str(hairpin.uri).startswith("sip:+13125550102@tenant-a.customers.example.com")
    assert hairpin.headers.get("Referred-By") == raw_sbc.of(ReferReceived)[0].referred_by
    assert raw_sbc.established(new) is not None


def test_rejected_refer_keeps_the_call(lab: Lab, raw_sbc: RawSbc) -> None:
    old = _connected_call(lab, raw_sbc)
    record = lab.teams_user(ALICE).transfer_to(CHLOE)
    lab.run_for(1)
    raw_sbc.ua.respond_request(raw_sbc.of(ReferReceived)[0].handle, 603, now=lab.now())
    raw_sbc.node.poke()
    lab.run_for(1)
    assert (record.refer_status, record.outcome) == (603, "failed")
    assert raw_sbc.ua.call_state(old).name == "CONFIRMED"


def test_teams_hold_uses_a_inactive(lab: Lab, raw_sbc: RawSbc) -> None:
    _connected_call(lab, raw_sbc)
    alice = lab.teams_user(ALICE)
    alice.hold()
    lab.run_for(1)
    alice.resume()
    lab.run_for(1)
    reinvites = raw_sbc.of(ReinviteReceived)
    assert [r.hold for r in reinvites] == [True, False]
    assert b"a=inactive" in (reinvites[0].sdp or b"")
    assert b"a=sendrecv" in (reinvites[1].sdp or b"")


def test_escalation_to_group_call_moves_media_and_dials_in(lab: Lab, raw_sbc: RawSbc) -> None:
    _connected_call(lab, raw_sbc)
    _answer_invites(raw_sbc)
    alice = lab.teams_user(ALICE)
    call = alice.add_participant("+13125550102")
    lab.run_for(2)
    assert call.conference is True
    assert len(raw_sbc.of(ReinviteReceived)) == 1
    assert str(raw_sbc.of(IncomingCall)[0].request.uri).startswith("sip:+13125550102@")
    assert str(lab.presence.presence(alice.user.graph_id)) == "Busy/InAConferenceCall"


def test_consult_transfer_sends_invite_with_replaces_to_the_sbc(
    lab: Lab, raw_sbc: RawSbc, make_sbc: Callable[..., RawSbc]
) -> None:
    _connected_call(lab, raw_sbc)
    alice = lab.teams_user(ALICE)
    alice.hold()
    _answer_invites(raw_sbc)
    alice.place_call("+13125550102")
    lab.run_for(2)
    consult_leg = raw_sbc.of(IncomingCall)[0]
    record = alice.consult_transfer()
    lab.run_for(2)
    replacing = raw_sbc.of(IncomingCall)[1].request
    dialog = raw_sbc.ua.dialog_id(consult_leg.call)
    assert dialog is not None
    assert replacing.headers.get("Replaces") == (
        f"{dialog.call_id};to-tag={dialog.local_tag};from-tag={dialog.remote_tag}"
    )
    assert record.method == "replaces" and record.outcome == "completed"
    assert alice.calls == []


def test_in_dialog_request_from_another_proxy_over_a_new_connection(
    make_sbc: Callable[..., RawSbc],
) -> None:
    from sbcsim.endpoints.microsoft import MicrosoftSettings

    lab = Lab.build(settings=MicrosoftSettings(send_options=False, in_dialog_from_other_proxy=True))
    raw = make_sbc(lab)
    _connected_call(lab, raw)
    lab.teams_user(ALICE).hold()
    lab.run_for(1)
    (reinvite,) = [t for t in lab.trace() if t.summary.startswith("INVITE sip:+13125550101@")]
    invite = next(t for t in lab.trace() if t.summary.startswith("INVITE sip:+14255550101@"))
    assert reinvite.src[0] == "127.0.1.2"  # sip2's address, not sip's
    assert reinvite.connection_id != invite.connection_id
    assert len(raw.of(ReinviteReceived)) == 1
    # the SBC's 200 went back to sip2, which handed it to sip: the re-INVITE completed (ACK)
    assert any(t.summary.startswith("ACK ") and t.src[0] == "127.0.1.2" for t in lab.trace())
    assert lab.service.calls[0].state == "connected"
