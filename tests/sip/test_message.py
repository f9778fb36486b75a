from __future__ import annotations

import pytest

from sbcsim.errors import LocalProtocolError
from sbcsim.sip import Request, Response, build_request, make_response, parse_message
from sbcsim.sip.headers import parse_name_addr
from sbcsim.testing.samples import OK_200, OPTIONS, TEAMS_INVITE


def test_typed_views_of_a_teams_invite() -> None:
    msg = parse_message(TEAMS_INVITE)
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert (
        str(msg.uri)
        == "sip:+15551230001@tenant-a.customers.example.com:5061;user=phone;transport=tls"
    )
    assert msg.top_via.branch == "z9hG4bK2f1c9a3e7b6d4c21" and msg.top_via.has_rport
    assert msg.from_.display_name == "Alex Wilber" and msg.from_.tag == "8a6c1f2e0b9d4e7f"
    assert msg.to.tag is None
    assert msg.cseq.seq == 1 and msg.cseq.method == "INVITE"
    assert msg.contact[0].sip_uri.param("x-i") == "4f2d1c3b-9a8e-4b7d-a6c5-1e2f3a4b5c6d"
    assert msg.record_route[0].sip_uri.has_param("lr")
    assert "REFER" in msg.allow and msg.supports("timer") and msg.supports("100rel")
    se = msg.session_expires
    assert se is not None and (se.delta, se.refresher) == (3600, "uac")
    assert msg.min_se == 90
    assert msg.content_type is not None and msg.content_type.mime == "application/sdp"
    assert msg.content_length == len(msg.body)
    assert msg.p_asserted_identity[0].sip_uri.user == "+15551239876"


def test_make_response_follows_8_2_6() -> None:
    req = parse_message(TEAMS_INVITE)
    assert isinstance(req, Request)
    req.headers.append("Timestamp", "54")
    trying = make_response(req, 100, to_tag="ignored")
    assert trying.to.tag is None  # never a tag on 100 (§8.2.6.2)
    assert trying.headers.get("Timestamp") == "54"
    ringing = make_response(req, 180, to_tag="t1", headers=[("Allow", "INVITE, ACK")])
    assert ringing.to.tag == "t1"
    assert [v.branch for v in ringing.via] == [v.branch for v in req.via]
    assert ringing.call_id == req.call_id and str(ringing.cseq) == "1 INVITE"
    assert ringing.from_.tag == req.from_.tag
    assert ringing.headers.get("Timestamp") is None
    data = ringing.to_bytes()
    assert data.startswith(b"SIP/2.0 180 Ringing\r\n")
    assert data.endswith(b"Content-Length: 0\r\n\r\n")
    again = parse_message(data)
    assert isinstance(again, Response) and again.status == 180 and again.to.tag == "t1"
    with pytest.raises(LocalProtocolError):
        make_response(req, 700)


def test_build_request_in_dialog() -> None:
    req = build_request(
        "BYE",
        "sip:api-du-b.pstnhub.microsoft.com:443;x-i=abc",
        from_=parse_name_addr("<sip:+15551230001@tenant-a.customers.example.com>;tag=sbc-7d3e9a"),
        to=parse_name_addr("<sip:+15551239876@sip.pstnhub.microsoft.com>;tag=8a6c1f2e0b9d4e7f"),
        call_id="9c4d2a1e7f3b45d8a0c6e2b1f4d7a9c3",
        cseq=2,
        via="SIP/2.0/TLS tenant-a.customers.example.com:5061;branch=z9hG4bKbye1",
        route=["<sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls;lr>"],
        headers=[("X-MS-SBC", "sbcsim/Reference/0.1.0")],
    )
    assert req.to_bytes() == (
        b"BYE sip:api-du-b.pstnhub.microsoft.com:443;x-i=abc SIP/2.0\r\n"
        b"Via: SIP/2.0/TLS tenant-a.customers.example.com:5061;branch=z9hG4bKbye1\r\n"
        b"Route: <sip:sip-du-a-us.pstnhub.microsoft.com:5061;transport=tls;lr>\r\n"
        b"Max-Forwards: 70\r\n"
        b"From: <sip:+15551230001@tenant-a.customers.example.com>;tag=sbc-7d3e9a\r\n"
        b"To: <sip:+15551239876@sip.pstnhub.microsoft.com>;tag=8a6c1f2e0b9d4e7f\r\n"
        b"Call-ID: 9c4d2a1e7f3b45d8a0c6e2b1f4d7a9c3\r\n"
        b"CSeq: 2 BYE\r\n"
        b"X-MS-SBC: sbcsim/Reference/0.1.0\r\n"
        b"Content-Length: 0\r\n"
        b"\r\n"
    )


def test_untouched_messages_keep_their_bytes_and_changes_show() -> None:
    for data in (TEAMS_INVITE, OK_200, OPTIONS):
        msg = parse_message(data)
        assert msg.to_bytes() == data
    msg = parse_message(OPTIONS)
    assert isinstance(msg, Request)
    msg.headers.set("Max-Forwards", "69")
    assert b"Max-Forwards: 69\r\n" in msg.to_bytes()
    assert msg.max_forwards == 69  # the typed cache was invalidated
    msg.uri = "sip:sip2.pstnhub.microsoft.com:5061;transport=tls"
    assert msg.to_bytes().startswith(
        b"OPTIONS sip:sip2.pstnhub.microsoft.com:5061;transport=tls SIP/2.0\r\n"
    )


def test_body_change_corrects_content_length() -> None:
    msg = parse_message(OK_200)
    msg.body = b"v=0\r\n"
    msg._mark_dirty()
    out = parse_message(msg.to_bytes())
    assert out.content_length == 5 and out.body == b"v=0\r\n"


def test_equality_is_by_value() -> None:
    assert parse_message(OPTIONS) == parse_message(OPTIONS)
    assert parse_message(OPTIONS) != parse_message(OK_200)
