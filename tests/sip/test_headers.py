from __future__ import annotations

import pytest

from sbcsim.errors import RemoteProtocolError
from sbcsim.sip.headers import (
    Headers,
    canonical_name,
    parse_cseq,
    parse_event,
    parse_history_info,
    parse_name_addr,
    parse_name_addrs,
    parse_rack,
    parse_reason,
    parse_replaces,
    parse_session_expires,
    parse_subscription_state,
    parse_token_list,
    parse_via,
    split_commas,
)
from sbcsim.sip.uri import SipUri


@pytest.mark.parametrize(
    ("short", "long"),
    [
        ("v", "via"),
        ("f", "from"),
        ("t", "to"),
        ("i", "call-id"),
        ("m", "contact"),
        ("l", "content-length"),
        ("c", "content-type"),
        ("k", "supported"),
        ("s", "subject"),
        ("e", "content-encoding"),
        ("o", "event"),
        ("r", "refer-to"),
        ("b", "referred-by"),
        ("u", "allow-events"),
        ("x", "session-expires"),
        ("y", "identity"),
    ],
)
def test_compact_forms(short: str, long: str) -> None:
    assert canonical_name(short) == long
    assert canonical_name(short.upper()) == long
    h = Headers([(short, "value")])
    assert h.get(long) == "value" and h.get(long.upper()) == "value"


def test_container_keeps_order_duplicates_and_spelling() -> None:
    h = Headers(
        [
            ("VIA", "SIP/2.0/UDP a;branch=z9hG4bK1"),
            ("Route", "<sip:p1;lr>"),
            ("v", "SIP/2.0/UDP b;branch=z9hG4bK2"),
            ("route", "<sip:p2;lr>"),
        ]
    )
    assert h.get_all("via") == ["SIP/2.0/UDP a;branch=z9hG4bK1", "SIP/2.0/UDP b;branch=z9hG4bK2"]
    assert [f.name for f in h] == ["VIA", "Route", "v", "route"]
    h.prepend("Via", "SIP/2.0/TLS c;branch=z9hG4bK3")
    assert h.get("via") == "SIP/2.0/TLS c;branch=z9hG4bK3"
    assert h.remove_first_value("Route") == "<sip:p1;lr>"
    assert h.get_all("route") == ["<sip:p2;lr>"]
    h.set("Max-Forwards", 69)
    assert h.get("max-forwards") == "69"
    assert h.remove("via") == 3 and "Via" not in h


def test_split_commas_respects_quotes_and_angles() -> None:
    assert split_commas('"Doe, John" <sip:j@a.com;x=1,2>, <sip:b@b.com> ,sip:c@c.com') == [
        '"Doe, John" <sip:j@a.com;x=1,2>',
        "<sip:b@b.com>",
        "sip:c@c.com",
    ]
    with pytest.raises(RemoteProtocolError):
        split_commas("a,,b")
    with pytest.raises(RemoteProtocolError):
        split_commas('"unterminated, x')


def test_via() -> None:
    v = parse_via(
        "SIP / 2.0 / tls  sbc.example.com : 5061 ;branch=z9hG4bKabc ; received=192.0.2.1;rport=5062"
    )
    assert (v.protocol, v.transport, v.host, v.port) == ("SIP/2.0", "TLS", "sbc.example.com", 5061)
    assert (v.branch, v.received, v.rport, v.has_rport, v.rfc3261) == (
        "z9hG4bKabc",
        "192.0.2.1",
        5062,
        True,
        True,
    )
    assert v.sent_by == ("sbc.example.com", 5061)
    v6 = parse_via("SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKx;rport")
    assert v6.host == "[2001:db8::1]" and v6.rport is None and v6.has_rport
    for bad in (
        "SIP/2.0 host",
        "SIP/2.0/UDP",
        "SIP/2.0/UDP host;;branch=1",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP host:70000",
    ):
        with pytest.raises(RemoteProtocolError):
            parse_via(bad)


def test_name_addr_forms() -> None:
    na = parse_name_addr('"Alice \\"A\\" Smith" <sip:alice@atlanta.com>;tag=1928301774')
    assert na.display_name == 'Alice "A" Smith' and na.tag == "1928301774"
    assert isinstance(na.uri, SipUri) and na.uri.user == "alice"
    bare = parse_name_addr("sip:+15551234567@pstn.example.com;user=phone;tag=abc")
    # addr-spec form: params after the URI belong to the header, not to the URI
    assert isinstance(bare.uri, SipUri) and bare.uri.params == ()
    assert bare.param("user") == "phone" and bare.tag == "abc"
    tokens = parse_name_addr("Bob Smith <sip:bob@biloxi.com>")
    assert tokens.display_name == "Bob Smith"
    star = parse_name_addrs(["*"], allow_star=True)
    assert star[0].star
    with pytest.raises(RemoteProtocolError):
        parse_name_addrs(["*, <sip:a@b>"], allow_star=True)
    with pytest.raises(RemoteProtocolError):
        parse_name_addr("Bell, Alexander <sip:a.g.bell@bell-tel.com>")
    with pytest.raises(RemoteProtocolError):
        parse_name_addr("<sip:user@example.com    >")
    assert (
        str(parse_name_addr("Bob <sip:bob@b.com>").with_tag("x9")) == "Bob <sip:bob@b.com>;tag=x9"
    )


def test_scalars_and_lists() -> None:
    assert parse_cseq("4711 INVITE").seq == 4711
    with pytest.raises(RemoteProtocolError):
        parse_cseq("4294967296 INVITE")
    with pytest.raises(RemoteProtocolError):
        parse_cseq("1")
    assert parse_token_list(["INVITE, ACK,BYE", "REFER"]) == ["INVITE", "ACK", "BYE", "REFER"]
    assert parse_token_list([""]) == []


def test_session_timer_headers() -> None:
    se = parse_session_expires("1800;refresher=uac")
    assert (se.delta, se.refresher) == (1800, "uac")
    with pytest.raises(RemoteProtocolError):
        parse_session_expires("1800;refresher=both")


def test_reason() -> None:
    r = parse_reason('Q.850;cause=16;text="Normal call clearing"')
    assert (r.protocol, r.cause, r.text) == ("Q.850", 16, "Normal call clearing")


def test_history_info_rfc7044() -> None:
    entries = parse_history_info(
        [
            "<sip:+15551230000@sip.pstnhub.microsoft.com>;index=1",
            "<sip:+15551239999@sip.pstnhub.microsoft.com?Reason=SIP%3Bcause%3D302>;index=1.1;rc=1",
        ]
    )
    assert [e.index for e in entries] == ["1", "1.1"]
    assert entries[1].tag == "rc"
    assert entries[1].reason == "SIP;cause=302"
    with pytest.raises(RemoteProtocolError):
        parse_history_info(["<sip:a@b.com>"])  # no index


def test_replaces_event_substate_rack() -> None:
    r = parse_replaces("98732@sbc.example.com;to-tag=r33th4x0r;from-tag=ff87ff;early-only")
    assert (r.call_id, r.to_tag, r.from_tag, r.early_only) == (
        "98732@sbc.example.com",
        "r33th4x0r",
        "ff87ff",
        True,
    )
    with pytest.raises(RemoteProtocolError):
        parse_replaces("98732@sbc.example.com;to-tag=a")
    e = parse_event("refer;id=93809824")
    assert (e.package, e.id) == ("refer", "93809824")
    s = parse_subscription_state("terminated;reason=noresource")
    assert (s.state, s.reason, s.expires) == ("terminated", "noresource", None)
    assert parse_subscription_state("Active;expires=60").expires == 60
    rack = parse_rack("776656 1 INVITE")
    assert (rack.rseq, rack.cseq, rack.method) == (776656, 1, "INVITE")
