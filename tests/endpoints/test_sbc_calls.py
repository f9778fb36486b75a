"""The reference SBC against raw peers: inbound and outbound calls, OPTIONS, numbers, 18x,
failover, 603, hold and SDP rewriting (direct-routing-sip.md Parts 1, 2, 4, 6, 8)."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sbc_bench import (
    JULIA,
    LATENCY,
    PSTN_HOST,
    SBC_HOST,
    SIP,
    SIP2,
    SIP3,
    X_MS_SBC,
    Bench,
    pstn_sdp,
    teams_sdp,
)

from sbcsim.dialog import (
    CallEnded,
    CallFailed,
    CallProgress,
    IncomingCall,
    IncomingRequest,
    ReinviteReceived,
    RequestCompleted,
    SessionRefreshed,
    StandaloneCompleted,
)
from sbcsim.endpoints.sbc import ReferenceSbc, SbcSettings, normalise_number
from sbcsim.errors import ConfigError
from sbcsim.net.memory import request_method
from sbcsim.sim import Simulator

TENANT_A_CONTACT = "<sip:+13125550101@tenant-a.customers.example.com:5061;transport=tls>"


def srtp_keys(count: int, seed: int = 0) -> list[str]:
    """The SDES keys the SBC draws for its first ``count`` Microsoft-side legs."""
    rng = Simulator(seed).derive_rng("sbc:srtp")
    return [base64.b64encode(rng.randbytes(30)).decode() for _ in range(count)]


def test_inbound_call_reaches_microsoft_as_the_tenant_with_srtp() -> None:
    bench = Bench()
    pstn_call, _ = bench.established_inbound()
    (invite,) = bench.to_microsoft("INVITE")
    assert str(invite.message.uri) == "sip:+14255550101@sip.pstnhub.microsoft.com:5061;user=phone"
    assert invite.dst == (bench.address_of(SIP), 5061)
    assert invite.header("From").startswith(  # type: ignore[union-attr]
        "<sip:+13125550101@tenant-a.customers.example.com;user=phone>;tag="
    )
    assert invite.header("To") == "<sip:+14255550101@sip.pstnhub.microsoft.com;user=phone>"
    assert invite.header("Contact") == TENANT_A_CONTACT
    assert invite.header("X-MS-SBC") == X_MS_SBC
    assert "REFER" in invite.message.allow
    assert invite.header("Record-Route") is None
    assert invite.body_lines() == [
        "v=0",
        "o=sbcsim 1002 1 IN IP4 127.0.0.2",
        "s=sbcsim",
        "c=IN IP4 127.0.0.2",
        "t=0 0",
        "m=audio 40000 RTP/SAVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{srtp_keys(1)[0]}|2^31",
        "a=rtcp-mux",
        "a=sendrecv",
    ]
    # the carrier gets the 180 and a plain RTP answer built from Microsoft's SRTP answer
    assert [w.method for w in bench.to_pstn()] == ["180 (INVITE)", "200 (INVITE)"]
    (ok,) = bench.to_pstn("200")
    assert ok.body_lines() == [
        "v=0",
        "o=sbcsim 1001 1 IN IP4 127.0.0.2",
        "s=sbcsim",
        "c=IN IP4 127.0.0.2",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]
    assert ok.header("X-MS-SBC") is None  # toward the carrier: no Microsoft header
    # the carrier hangs up: Microsoft gets the BYE, with X-MS-SBC
    bench.pstn.act(lambda ua, now: ua.bye(pstn_call, now))
    bench.run(1.0)
    (bye,) = bench.to_microsoft("BYE")
    assert bye.header("X-MS-SBC") == X_MS_SBC
    assert bench.proxy().seen(CallEnded)
    assert bench.sbc.active_calls == 0


def test_the_second_tenant_gets_its_own_trunk_fqdn() -> None:
    bench = Bench()
    bench.call_from_pstn(to=JULIA)
    bench.until(lambda: bool(bench.proxy().seen(IncomingCall)))
    (invite,) = bench.to_microsoft("INVITE")
    assert invite.header("Contact") == (
        "<sip:+13125550101@tenant-b.customers.example.com:5061;transport=tls>"
    )
    assert invite.header("From").startswith(  # type: ignore[union-attr]
        "<sip:+13125550101@tenant-b.customers.example.com;user=phone>"
    )


def test_outbound_call_reaches_the_carrier_in_plain_rtp_and_answers_microsoft_in_srtp() -> None:
    bench = Bench()
    history = (
        "<sip:+14255550102@sip.pstnhub.microsoft.com:5061;user=phone"
        "?Reason=SIP%3Bcause%3D302>;index=1"
    )
    pai = "<sip:+14255550101@sip.pstnhub.microsoft.com;user=phone>"
    teams_call = bench.call_from_teams(
        headers=(("History-Info", history), ("P-Asserted-Identity", pai))
    )
    bench.until(lambda: bool(bench.pstn.seen(IncomingCall)))
    (invite,) = bench.to_pstn("INVITE")
    assert str(invite.message.uri) == "sip:+13125550101@127.0.2.1:5060;user=phone"
    assert invite.header("From").startswith(  # type: ignore[union-attr]
        "<sip:+14255550101@127.0.0.2;user=phone>;tag="
    )
    assert invite.header("History-Info") == history
    assert invite.header("P-Asserted-Identity") == pai
    assert invite.header("X-MS-SBC") is None
    assert invite.body_lines() == [
        "v=0",
        "o=sbcsim 1001 1 IN IP4 127.0.0.2",
        "s=sbcsim",
        "c=IN IP4 127.0.0.2",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0 8 101",  # SILK (104) is not an SBC codec: intersected away
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=sendrecv",
    ]
    pstn_call = bench.pstn.last(IncomingCall).call
    bench.answer(bench.pstn, pstn_call, pstn_sdp(port=20002))
    bench.until(lambda: bench.proxy().ua.dialog_id(teams_call) is not None)
    bench.run(1.0)
    ringing, ok = bench.to_microsoft("180")[0], bench.to_microsoft("200")[0]
    contact = "<sip:+13125550101@tenant-a.customers.example.com:5061;transport=tls>"
    assert ringing.header("Contact") == ok.header("Contact") == contact
    assert ringing.header("X-MS-SBC") == ok.header("X-MS-SBC") == X_MS_SBC
    assert ok.body_lines() == [
        "v=0",
        "o=sbcsim 1002 1 IN IP4 127.0.0.2",
        "s=sbcsim",
        "c=IN IP4 127.0.0.2",
        "t=0 0",
        "m=audio 40000 RTP/SAVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        # the answer takes Microsoft's AES_CM_128_HMAC_SHA1_80 line (tag 2), not the _32 one
        f"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{srtp_keys(1)[0]}|2^31",
        "a=rtcp-mux",
        "a=sendrecv",
    ]
    # Microsoft hangs up: the carrier gets the BYE
    bench.proxy().act(lambda ua, now: ua.bye(teams_call, now))
    bench.run(1.0)
    assert len(bench.to_pstn("BYE")) == 1
    assert bench.sbc.active_calls == 0


def test_a_microsoft_offer_without_the_80_bit_suite_is_refused_with_488() -> None:
    bench = Bench()
    only_32 = teams_sdp().replace(
        b"a=crypto:2 AES_CM_128_HMAC_SHA1_80", b"a=crypto:2 F8_128_HMAC_SHA1_80"
    )
    teams_call = bench.call_from_teams(sdp=only_32)
    bench.run(1.0)
    assert bench.proxy().last(CallFailed).status == 488
    assert bench.to_pstn() == []
    assert bench.proxy().last(CallFailed).call == teams_call


def test_options_go_to_every_proxy_by_name_every_minute() -> None:
    bench = Bench(options_start_delay=0.0)
    bench.run(150.0)
    sent = bench.to_microsoft("OPTIONS")
    hosts = [bench.address_of(f) for f in (SIP, SIP2, SIP3)]
    # the first cycle waits for the TLS handshakes (two round trips); then the connections stay
    assert [(w.time, w.dst[0]) for w in sent] == [
        (t, host) for t in (4 * LATENCY, 60.0, 120.0) for host in hosts
    ]
    first = sent[0]
    assert str(first.message.uri) == "sip:sip.pstnhub.microsoft.com:5061"
    assert first.header("From").startswith(  # type: ignore[union-attr]
        "<sip:sbc.customers.example.com:5061;transport=tls>;tag="
    )
    assert first.header("To") == "<sip:sip.pstnhub.microsoft.com:5061>"
    assert first.header("Contact") == "<sip:sbc.customers.example.com:5061;transport=tls>"
    assert first.header("X-MS-SBC") == X_MS_SBC
    # each proxy saw the OPTIONS arrive with its own name as SNI
    for fqdn in (SIP, SIP2, SIP3):
        seen = bench.proxy(fqdn).seen(IncomingRequest)
        assert [ev.request.method for ev in seen] == ["OPTIONS"] * 3
        assert {ev.peer.server_name for ev in seen} == {fqdn}
    assert bench.sbc.options_results == {
        fqdn: (120.0 + 2 * LATENCY, 200) for fqdn in (SIP, SIP2, SIP3)
    }


def test_microsofts_options_get_200_with_the_carrier_contact() -> None:
    bench = Bench()
    peer = bench.proxy(SIP2)
    peer.act(
        lambda ua, now: ua.send_request(
            "OPTIONS",
            "sip:sbc.customers.example.com:5061;transport=tls",
            from_="<sip:sip2.pstnhub.microsoft.com:5061>",
            to="<sip:sbc.customers.example.com:5061>",
            remote=(SBC_HOST, 5061),
            transport="tls",
            server_name="sbc.customers.example.com",
            now=now,
        )
    )
    bench.run(1.0)
    done = peer.last(StandaloneCompleted)
    assert done.status == 200
    assert done.response.headers.get("Contact") == (
        "<sip:sbc.customers.example.com:5061;transport=tls>"
    )
    assert "REFER" in done.response.allow
    assert done.response.headers.get("X-MS-SBC") == X_MS_SBC


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+14255550101", "+14255550101"),
        ("4255550101", "+14255550101"),
        ("14255550101", "+14255550101"),
        ("0014255550101", "+14255550101"),
        ("011442079460000", "+442079460000"),
        ("(425) 555-0101", "+14255550101"),
        ("555", None),
        ("+0123456789", None),
        ("anonymous", None),
    ],
)
def test_normalise_number(raw: str, e164: str | None) -> None:
    assert normalise_number(raw) == e164


def test_national_numbers_from_the_carrier_reach_microsoft_in_e164() -> None:
    bench = Bench()
    bench.pstn.act(
        lambda ua, now: ua.invite(
            f"sip:4255550101@{SBC_HOST}",
            from_=f"<sip:3125550101@{PSTN_HOST}>",
            to=f"<sip:4255550101@{SBC_HOST}>",
            remote=(SBC_HOST, 5060),
            sdp=pstn_sdp(),
            now=now,
        )
    )
    bench.until(lambda: bool(bench.proxy().seen(IncomingCall)))
    (invite,) = bench.to_microsoft("INVITE")
    assert str(invite.message.uri) == "sip:+14255550101@sip.pstnhub.microsoft.com:5061;user=phone"
    assert invite.header("Contact") == TENANT_A_CONTACT


def test_unknown_and_malformed_numbers_are_refused_at_the_carrier_side() -> None:
    bench = Bench()
    unknown = bench.call_from_pstn(to="+16175550100")  # in no tenant's ranges
    bench.run(1.0)
    garbage = bench.call_from_pstn(to="help")
    bench.run(1.0)
    failed = {ev.call: ev.status for ev in bench.pstn.seen(CallFailed)}
    assert failed == {unknown: 404, garbage: 484}
    assert bench.to_microsoft("INVITE") == []


def test_the_carrier_hears_each_18x_once_and_only_the_first_early_media() -> None:
    bench = Bench()
    bench.call_from_pstn()
    bench.until(lambda: bool(bench.proxy().seen(IncomingCall)))
    teams_call = bench.proxy().last(IncomingCall).call
    proxy = bench.proxy()
    # the ringback bot's early media, two forks ringing, a second 183 with SDP, then 200
    proxy.act(lambda ua, now: ua.respond(teams_call, 183, sdp=teams_sdp(offer=False), now=now))
    proxy.act(lambda ua, now: ua.respond(teams_call, 180, now=now))
    proxy.act(lambda ua, now: ua.respond(teams_call, 180, to_tag="fork2", now=now))
    proxy.act(
        lambda ua, now: ua.respond(
            teams_call, 183, sdp=teams_sdp(port=52002, offer=False), to_tag="fork2", now=now
        )
    )
    bench.run(1.0)
    proxy.act(lambda ua, now: ua.respond(teams_call, 200, sdp=teams_sdp(offer=False), now=now))
    bench.run(1.0)
    got = [(w.method, bool(w.message.body)) for w in bench.to_pstn()]
    assert got == [("183 (INVITE)", True), ("180 (INVITE)", False), ("200 (INVITE)", True)]
    assert [ev.status for ev in bench.pstn.seen(CallProgress)] == [183, 180]


def test_failover_sip_503_then_sip2_timeout_then_sip3_at_exact_times() -> None:
    bench = Bench()
    sip2 = bench.address_of(SIP2)
    bench.net.add_rule(lambda p: request_method("INVITE")(p) and p.dst[0] == sip2, "drop")
    bench.proxy(SIP).on_call = lambda ev: bench.proxy(SIP).act(
        lambda ua, now: ua.respond(ev.call, 503, headers=(("Retry-After", "1"),), now=now)
    )
    bench.proxy(SIP3).on_call = lambda ev: bench.answer(
        bench.proxy(SIP3), ev.call, teams_sdp(offer=False)
    )
    pstn_call = bench.call_from_pstn()
    bench.until(lambda: bench.pstn.ua.dialog_id(pstn_call) is not None, timeout=120.0)
    invites = [
        w for w in bench.wire(src=SBC_HOST, method="INVITE", dropped=True) if w.dst[0] != PSTN_HOST
    ]
    busy = bench.wire(method="503")
    assert [w.dst[0] for w in invites] == [bench.address_of(f) for f in (SIP, SIP2, SIP3)]
    # sip2 is tried the instant the 503 arrives, sip3 when sip2's INVITE times out (Timer B,
    # 64*T1 = 32 s); each INVITE waits for its TLS handshake (two round trips) first
    t_503 = busy[0].time + LATENCY
    assert invites[1].time == t_503 + 4 * LATENCY
    assert invites[2].time == invites[1].time + 32.0
    assert [e.kind for e in bench.sbc.events if e.kind == "failover"] == ["failover"] * 2
    # the busy datacenter's connection was closed (Part 6.2), the others stay
    conns = {p.remote[0] for p in bench.sbc.ms_node.transport.connections()}  # type: ignore[union-attr]
    assert bench.address_of(SIP) not in conns


def test_a_busy_datacenter_is_skipped_until_retry_after_expires() -> None:
    bench = Bench()
    first = bench.proxy(SIP)
    first.on_call = lambda ev: first.act(
        lambda ua, now: ua.respond(ev.call, 503, headers=(("Retry-After", "10"),), now=now)
    )
    for fqdn in (SIP2, SIP3):
        peer = bench.proxy(fqdn)
        peer.on_call = lambda ev, peer=peer: bench.answer(peer, ev.call, teams_sdp(offer=False))
    bench.call_from_pstn()
    bench.run(2.0)
    bench.call_from_pstn()  # within Retry-After: straight to sip2
    bench.run(10.0)
    bench.call_from_pstn()  # after it: sip first again
    bench.run(2.0)
    firsts = [w.dst[0] for w in bench.to_microsoft("INVITE")]
    sip, sip2 = bench.address_of(SIP), bench.address_of(SIP2)
    assert firsts == [sip, sip2, sip2, sip, sip2]


def test_603_is_not_retried_on_another_proxy() -> None:
    bench = Bench()
    first = bench.proxy(SIP)
    first.on_call = lambda ev: first.act(lambda ua, now: ua.respond(ev.call, 603, now=now))
    bench.call_from_pstn()
    bench.run(5.0)
    assert len(bench.to_microsoft("INVITE")) == 1
    assert bench.pstn.last(CallFailed).status == 603


def test_every_proxy_timing_out_gives_the_carrier_408() -> None:
    bench = Bench()
    hosts = {p.address for p in bench.topology.microsoft.proxies}
    bench.net.add_rule(
        lambda p: request_method("INVITE")(p) and p.dst[0] in hosts, "drop", count=None
    )
    bench.call_from_pstn()
    bench.run(200.0)
    invites = bench.wire(src=SBC_HOST, method="INVITE", dropped=True)
    assert [w.dst[0] for w in invites] == [bench.address_of(f) for f in (SIP, SIP2, SIP3)]
    failed = bench.pstn.last(CallFailed)
    assert failed.status == 408
    assert bench.sbc.active_calls == 0


def test_carrier_hold_sendonly_becomes_inactive_toward_microsoft() -> None:
    bench = Bench()
    pstn_call, teams_call = bench.established_inbound()
    bench.pstn.act(
        lambda ua, now: ua.reinvite(pstn_call, pstn_sdp(direction="sendonly", version=2), now=now)
    )
    bench.until(lambda: bool(bench.proxy().seen(ReinviteReceived)))
    offer = bench.proxy().last(ReinviteReceived)
    assert offer.sdp.decode().split("\r\n")[:-1] == [
        "v=0",
        "o=sbcsim 1002 2 IN IP4 127.0.0.2",
        "s=sbcsim",
        "c=IN IP4 127.0.0.2",
        "t=0 0",
        "m=audio 40000 RTP/SAVP 0 8 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{srtp_keys(1)[0]}|2^31",
        "a=rtcp-mux",
        "a=inactive",
    ]
    bench.until(lambda: bool(bench.pstn.seen(RequestCompleted)))
    done = bench.pstn.last(RequestCompleted)
    assert done.status == 200
    # Microsoft's core answered inactive with its own codecs: the carrier gets them in its
    # numbering, on the same port, version 2
    assert done.response.body.decode().split("\r\n")[:-1] == [
        "v=0",
        "o=sbcsim 1001 2 IN IP4 127.0.0.2",
        "s=sbcsim",
        "c=IN IP4 127.0.0.2",
        "t=0 0",
        "m=audio 30000 RTP/AVP 0 101",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=inactive",
    ]
    # resuming: sendrecv both ways again, version 3 on each side
    bench.pstn.act(lambda ua, now: ua.reinvite(pstn_call, pstn_sdp(version=3), now=now))
    bench.until(lambda: len(bench.pstn.seen(RequestCompleted)) == 2)
    resumed = bench.proxy().seen(ReinviteReceived)[-1].sdp.decode().split("\r\n")
    assert (resumed[1], resumed[-2]) == ("o=sbcsim 1002 3 IN IP4 127.0.0.2", "a=sendrecv")
    answer = bench.pstn.last(RequestCompleted).response.body.decode().split("\r\n")
    assert (answer[1], answer[-2]) == ("o=sbcsim 1001 3 IN IP4 127.0.0.2", "a=sendrecv")
    assert teams_call is not None


def test_a_carrier_invite_without_sdp_gets_an_offer_toward_microsoft_and_in_the_200() -> None:
    bench = Bench()
    pstn_call = bench.call_from_pstn(sdp=b"")
    bench.until(lambda: bool(bench.proxy().seen(IncomingCall)))
    (invite,) = bench.to_microsoft("INVITE")
    assert invite.body_lines()[5] == "m=audio 40000 RTP/SAVP 0 8 9 18 101 13"  # every SBC codec
    teams_call = bench.proxy().last(IncomingCall).call
    bench.answer(bench.proxy(), teams_call, teams_sdp(offer=False))
    bench.until(lambda: bench.pstn.ua.dialog_id(pstn_call) is not None)
    (ok,) = bench.to_pstn("200")
    assert ok.body_lines()[5:] == [
        "m=audio 30000 RTP/AVP 0 101",  # an offer of what Microsoft chose
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000",
        "a=fmtp:101 0-16",
        "a=ptime:20",
        "a=sendrecv",
    ]


def test_a_session_refresh_is_answered_without_bothering_the_other_side() -> None:
    bench = Bench()
    pstn_call, teams_call = bench.established_inbound()
    before = len(bench.to_pstn())
    proxy = bench.proxy()
    again = proxy.ua.remote_sdp(teams_call)
    proxy.act(lambda ua, now: ua.reinvite(teams_call, ua.local_sdp(teams_call), now=now))
    bench.run(1.0)
    assert proxy.last(RequestCompleted).status == 200
    assert proxy.last(RequestCompleted).response.body == again  # unchanged SDP, same version
    assert len(bench.to_pstn()) == before
    assert pstn_call is not None


def test_session_timers_as_refresher_and_as_refreshee() -> None:
    bench = Bench(proxy_timers=True)
    # inbound: the SBC's INVITE asks refresher=uac, so it refreshes every 900 s
    pstn_call, teams_call = bench.established_inbound()
    (ok,) = [
        w
        for w in bench.wire(method="200")
        if w.message.cseq.method == "INVITE" and w.dst[0] == SBC_HOST and w.src[1] == 5061
    ]
    assert ok.header("Session-Expires") == "1800;refresher=uac"
    bench.run(1000.0)
    refresh = bench.to_microsoft("INVITE")[1]
    assert refresh.time == ok.time + LATENCY + 900.0
    assert refresh.header("Session-Expires") == "1800;refresher=uac"
    assert refresh.message.body == bench.to_microsoft("INVITE")[0].message.body
    # outbound: Microsoft refreshes (refresher=uac) and the SBC answers each refresh itself
    teams_out = bench.call_from_teams()
    bench.until(lambda: len(bench.pstn.seen(IncomingCall)) == 1)
    bench.answer(bench.pstn, bench.pstn.last(IncomingCall).call, pstn_sdp(port=20002))
    bench.until(lambda: bench.proxy().ua.dialog_id(teams_out) is not None)
    pstn_invites = len(bench.to_pstn("INVITE"))
    bench.run(3000.0)
    mine = [ev for ev in bench.proxy().seen(SessionRefreshed) if ev.call == teams_out]
    assert [(ev.by, ev.interval) for ev in mine] == [("local", 1800)] * 3
    assert bench.proxy().ua.call_state(teams_out).name == "CONFIRMED"
    assert len(bench.to_pstn("INVITE")) == pstn_invites  # refreshes are not relayed
    assert bench.pstn.ua.call_state(pstn_call).name == "CONFIRMED"
    assert teams_call is not None


def test_settings_reject_unknown_keys_and_bad_values() -> None:
    with pytest.raises(ConfigError, match="unknown SBC setting"):
        SbcSettings.from_overrides({"options_every": 5})
    with pytest.raises(ConfigError, match="options_interval"):
        SbcSettings(options_interval=0)
    with pytest.raises(ConfigError, match="unknown mutant"):
        ReferenceSbc.factory("no-such-fault")


def test_the_carrier_cancelling_cancels_the_microsoft_leg() -> None:
    bench = Bench()
    pstn_call = bench.call_from_pstn()
    bench.until(lambda: bool(bench.proxy().seen(IncomingCall)))
    teams_call = bench.proxy().last(IncomingCall).call
    bench.proxy().act(lambda ua, now: ua.respond(teams_call, 180, now=now))
    bench.until(lambda: bool(bench.pstn.seen(CallProgress)))
    bench.pstn.act(lambda ua, now: ua.cancel(pstn_call, now))
    bench.run(2.0)
    assert len(bench.to_microsoft("CANCEL")) == 1
    assert bench.pstn.last(CallFailed).status == 487
    assert bench.sbc.active_calls == 0
