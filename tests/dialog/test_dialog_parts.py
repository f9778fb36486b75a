"""The pure pieces under the UA core: dialog requests and routing, session-timer arithmetic and
negotiation, sipfrag and Refer-To handling, automatic SDP answers."""

from __future__ import annotations

import pytest
from uapump import SDP_A, SDP_B

from sbcsim.dialog.dialog import dialog_as_uac, dialog_as_uas
from sbcsim.dialog.events import DialogId
from sbcsim.dialog.media import auto_answer, offer_is_hold
from sbcsim.dialog.refer import (
    Sipfrag,
    parse_sipfrag,
    refer_target,
    refer_to_with_replaces,
    replaces_in,
    sipfrag,
)
from sbcsim.dialog.timers import (
    SessionTimer,
    SessionTimerConfig,
    expiry_delay,
    negotiate_as_uas,
    refresh_delay,
    result_as_uac,
    session_headers,
    too_small,
)
from sbcsim.errors import ConfigError, RemoteProtocolError
from sbcsim.sip import Request, Response, build_request, make_response, parse_name_addr
from sbcsim.sip.uri import SipUri


def _invite(*extra: tuple[str, str]) -> Request:
    return build_request(
        "INVITE",
        "sip:bob@b.example.com",
        from_="<sip:alice@a.example.com>;tag=f1",
        to="<sip:bob@b.example.com>",
        call_id="c1@a",
        cseq=7,
        via="SIP/2.0/UDP a.example.com;branch=z9hG4bK1",
        contact="<sip:alice@10.0.0.1>",
        headers=list(extra),
    )


# -- dialogs ------------------------------------------------------------------------------------
def test_uac_dialog_route_set_is_reversed_record_route() -> None:
    invite = _invite()
    ok = make_response(
        invite,
        200,
        to_tag="t9",
        headers=[
            ("Record-Route", "<sip:p2.example.com;lr>"),
            ("Record-Route", "<sip:p1.example.com;lr>"),
            ("Contact", "<sip:bob@10.0.0.2:5070>"),
        ],
    )
    d = dialog_as_uac(invite, ok, "confirmed")
    assert d.id == DialogId("c1@a", "f1", "t9")
    assert [str(r) for r in d.route_set] == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert str(d.next_hop_uri()) == "sip:p1.example.com;lr"
    bye = d.request("BYE", via="SIP/2.0/UDP a;branch=z9hG4bKx", cseq=d.next_seq())
    assert bye.start_line() == "BYE sip:bob@10.0.0.2:5070 SIP/2.0"
    assert bye.headers.get_all("Route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert bye.headers.get("CSeq") == "8 BYE"
    assert bye.headers.get("To") == "<sip:bob@b.example.com>;tag=t9"


def test_strict_route_puts_the_first_route_in_the_request_uri() -> None:
    invite = _invite()
    ok = make_response(
        invite,
        200,
        to_tag="t9",
        headers=[
            ("Record-Route", "<sip:strict.example.com;method=INVITE>"),
            ("Contact", "<sip:bob@10.0.0.2>"),
        ],
    )
    d = dialog_as_uac(invite, ok, "confirmed")
    bye = d.request("BYE", via="SIP/2.0/UDP a;branch=z9hG4bKx", cseq=9)
    # §12.2.1.1: first route as Request-URI (minus forbidden params), target appended as Route
    assert bye.start_line() == "BYE sip:strict.example.com SIP/2.0"
    assert bye.headers.get_all("Route") == ["<sip:bob@10.0.0.2>"]


def test_uas_dialog_and_target_refresh() -> None:
    invite = _invite(("Record-Route", "<sip:p1.example.com;lr>"))
    d = dialog_as_uas(invite, "u1", "early")
    assert d.id == DialogId("c1@a", "u1", "f1")
    assert d.remote_seq == 7 and d.local_seq == 0
    assert str(d.local_uri) == "<sip:bob@b.example.com>;tag=u1"
    assert [str(r) for r in d.route_set] == ["<sip:p1.example.com;lr>"]
    reinvite = _invite(("Contact", "<sip:alice@10.9.9.9>"))
    reinvite.headers.remove("Contact")
    reinvite.headers.append("Contact", "<sip:alice@10.9.9.9>")
    d.refresh_target(reinvite)
    assert str(d.remote_target) == "sip:alice@10.9.9.9"


def test_a_dialog_needs_a_contact_except_an_early_one() -> None:
    invite = _invite()
    ringing = make_response(invite, 180, to_tag="t1")
    assert str(dialog_as_uac(invite, ringing, "early").remote_target) == "sip:bob@b.example.com"
    with pytest.raises(RemoteProtocolError):
        dialog_as_uac(invite, make_response(invite, 200, to_tag="t1"), "confirmed")


# -- session timers ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("interval", "refresh", "expiry"),
    [(90, 45.0, 60.0), (1800, 900.0, 1768.0), (96, 48.0, 64.0), (3600, 1800.0, 3568.0)],
)
def test_refresh_and_expiry_delays(interval: int, refresh: float, expiry: float) -> None:
    assert refresh_delay(interval) == refresh
    assert expiry_delay(interval) == expiry


def test_config_rejects_intervals_below_rfc_minimum() -> None:
    with pytest.raises(ConfigError):
        SessionTimerConfig(min_se=60)
    with pytest.raises(ConfigError):
        SessionTimerConfig(session_expires=100, min_se=120)


def test_uas_negotiation() -> None:
    config = SessionTimerConfig()
    plain = _invite()
    assert negotiate_as_uas(plain, config) == (1800, "uas", 90)  # no Supported: timer
    supported = _invite(("Supported", "timer"))
    assert negotiate_as_uas(supported, config) == (1800, "uac", 90)
    asked = _invite(("Supported", "timer"), ("Session-Expires", "600;refresher=uas"))
    assert negotiate_as_uas(asked, config) == (600, "uas", 90)
    longer = _invite(("Supported", "timer"), ("Session-Expires", "7200"), ("Min-SE", "300"))
    assert negotiate_as_uas(longer, config) == (
        1800,
        "uac",
        300,
    )  # we may lower it, not below Min-SE
    assert negotiate_as_uas(plain, SessionTimerConfig(enabled=False)) is None
    current = SessionTimer(600, True, 90)
    assert negotiate_as_uas(supported, config, current) == (600, "uas", 90)
    assert too_small(_invite(("Session-Expires", "60")), config)
    assert not too_small(_invite(("Session-Expires", "90")), config)


def test_uac_result_and_headers() -> None:
    invite = _invite()
    ok = make_response(invite, 200, to_tag="t", headers=[("Session-Expires", "900;refresher=uas")])
    assert result_as_uac(ok, 90) == SessionTimer(900, False, 90)
    assert result_as_uac(make_response(invite, 200, to_tag="t"), 90) is None
    assert SessionTimer(900, False, 90).refresher_param("uac") == "uas"
    assert SessionTimer(900, True, 90).refresher_param("uas") == "uas"
    assert session_headers(1800, None, 90) == [("Session-Expires", "1800"), ("Min-SE", "90")]


# -- REFER pieces --------------------------------------------------------------------------------
def test_sipfrag_round_trip_and_errors() -> None:
    assert sipfrag(180) == b"SIP/2.0 180 Ringing\r\n"
    assert sipfrag(503, "Gone Fishing") == b"SIP/2.0 503 Gone Fishing\r\n"
    assert parse_sipfrag(b"SIP/2.0 200 OK\r\nContact: <sip:x@y>\r\n") == Sipfrag(200, "OK")
    assert parse_sipfrag(b"SIP/2.0 100\n") == Sipfrag(100, "")
    for bad in (b"", b"INVITE sip:x SIP/2.0\r\n", b"SIP/2.0 99 Low\r\n", b"SIP/2.0 abc\r\n"):
        with pytest.raises(RemoteProtocolError):
            parse_sipfrag(bad)


def test_refer_to_with_replaces_round_trip() -> None:
    dialog = DialogId("abc@h", "mine", "theirs")
    refer_to = refer_to_with_replaces(SipUri(user_raw="c", host="c.example.com"), dialog)
    parsed = parse_name_addr(str(refer_to))
    uri, headers = refer_target(parsed)
    assert str(uri) == "sip:c@c.example.com"
    assert headers == (("Replaces", "abc@h;to-tag=theirs;from-tag=mine"),)
    replaces = replaces_in(parsed)
    assert replaces is not None and (replaces.to_tag, replaces.from_tag) == ("theirs", "mine")
    assert replaces_in(parse_name_addr("<sip:c@c.example.com>")) is None


# -- automatic SDP answers -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        (b"a=sendonly\r\n", b"a=recvonly\r\n"),
        (b"a=inactive\r\n", b"a=inactive\r\n"),
        (b"a=recvonly\r\n", b"a=sendonly\r\n"),
    ],
)
def test_auto_answer_mirrors_hold(offered: bytes, answered: bytes) -> None:
    offer = SDP_A + offered
    assert offer_is_hold(offer) is (offered != b"a=recvonly\r\n")
    answer = auto_answer(offer, SDP_B, SDP_B)
    assert answer == SDP_B.replace(b"2000 1 IN", b"2000 2 IN") + answered


def test_auto_answer_keeps_an_unchanged_body_and_its_version() -> None:
    assert auto_answer(SDP_A, SDP_B, SDP_B) is SDP_B
    assert auto_answer(None, SDP_B, None) is SDP_B  # asked for an offer: our last one
    assert auto_answer(b"not sdp", SDP_B, SDP_B) is SDP_B
    two_streams = SDP_A + b"m=video 0 RTP/AVP 31\r\n"
    assert auto_answer(two_streams, SDP_B, SDP_B) is SDP_B  # streams do not line up
    assert not offer_is_hold(None) and not offer_is_hold(b"garbage")


def test_auto_answer_resumes_after_hold() -> None:
    held = auto_answer(SDP_A + b"a=sendonly\r\n", SDP_B, SDP_B)
    resumed = auto_answer(SDP_A, SDP_B, held)
    assert resumed == SDP_B.replace(b"2000 1 IN", b"2000 3 IN")
    assert Response(200).status == 200
