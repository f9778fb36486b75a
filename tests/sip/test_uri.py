from __future__ import annotations

import pytest

from sbcsim.errors import RemoteProtocolError
from sbcsim.sip.uri import AbsoluteUri, SipUri, TelUri, escape, parse_uri, unescape


def test_sip_uri_components() -> None:
    uri = parse_uri(
        "sips:alice:secret@Example.COM:5061;transport=tls;lr;maddr=10.0.0.1?subject=hi&priority=urgent"
    )
    assert isinstance(uri, SipUri)
    assert (uri.scheme, uri.user, uri.password, uri.host, uri.port) == (
        "sips",
        "alice",
        "secret",
        "Example.COM",
        5061,
    )
    assert uri.params == (("transport", "tls"), ("lr", None), ("maddr", "10.0.0.1"))
    assert uri.headers == (("subject", "hi"), ("priority", "urgent"))
    assert uri.secure and uri.transport == "tls" and uri.param("lr") == ""
    assert (
        str(uri)
        == "sips:alice:secret@Example.COM:5061;transport=tls;lr;maddr=10.0.0.1?subject=hi&priority=urgent"
    )


@pytest.mark.parametrize(
    ("text", "host", "port", "is_ip"),
    [
        (
            "sip:+15551234567@sbc1.customers.example.com:5061;user=phone",
            "sbc1.customers.example.com",
            5061,
            False,
        ),
        ("sip:192.0.2.10", "192.0.2.10", None, True),
        ("sip:bob@[2001:db8::10]:5070", "[2001:db8::10]", 5070, True),
        ("sip:[::1]", "[::1]", None, True),
        ("sip:sip.pstnhub.microsoft.com", "sip.pstnhub.microsoft.com", None, False),
    ],
)
def test_hosts(text: str, host: str, port: int | None, is_ip: bool) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, SipUri)
    assert (uri.host, uri.port, uri.host_is_ip) == (host, port, is_ip)
    assert str(uri) == text


@pytest.mark.parametrize(
    "text",
    [
        "sip:",
        "sip:user@",
        "sip:user@host:99999",
        "sip:user@host:port",
        "sip:user@256.1.1.1",
        "sip:user@[2001:db8::1",
        "sip:us er@host",
        "sip:user@host;;lr",
        "sip:user@host?x",
        "tel:5551234",  # a local number needs phone-context
        "tel:+",
        "no-colon",
        ":nothing",
        "1sip:x",
    ],
)
def test_malformed_uris(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_uri(text)
    assert info.value.status_hint == 400


def test_tel_uris() -> None:
    g = parse_uri("tel:+1-201-555-0123;ext=1234")
    assert isinstance(g, TelUri)
    assert g.is_global and g.digits == "+12015550123" and g.param("ext") == "1234"
    local = parse_uri("tel:7042;phone-context=example.com")
    assert (
        isinstance(local, TelUri)
        and not local.is_global
        and local.param("phone-context") == "example.com"
    )
    assert str(g) == "tel:+1-201-555-0123;ext=1234"


@pytest.mark.parametrize(
    "text",
    [
        "isbn:2983792873",
        "http://www.example.com",
        "soap.beep://192.0.2.103:3002",
        "name:John_Smith",
    ],
)
def test_other_schemes_are_opaque(text: str) -> None:
    uri = parse_uri(text)
    assert isinstance(uri, AbsoluteUri)
    assert str(uri) == text


def test_escape_once() -> None:
    assert unescape("value%2541") == "value%41"
    assert unescape("%00%00") == "\x00\x00"
    assert unescape("100%") == "100%"  # not an escape: kept literally
    assert unescape("caf%C3%A9") == "café"
    assert escape("a b@c") == "a%20b%40c"
    assert unescape(escape("+1 (555) 0123 é")) == "+1 (555) 0123 é"


def test_comparison_rfc3261_19_1_4() -> None:
    a = parse_uri("sip:%61lice@atlanta.com;transport=TCP")
    b = parse_uri("sip:alice@AtLanTa.CoM;Transport=tcp")
    assert isinstance(a, SipUri)
    assert a.equivalent(b)
    assert not a.equivalent(parse_uri("sip:ALICE@AtLanTa.CoM;Transport=udp"))
    assert not parse_uri("sip:bob@biloxi.com").equivalent(parse_uri("sip:bob@biloxi.com:5060"))  # type: ignore[union-attr]
    assert not parse_uri("sip:carol@chicago.com").equivalent(
        parse_uri("sip:carol@chicago.com;user=phone")
    )  # type: ignore[union-attr]
    assert parse_uri("sip:carol@chicago.com").equivalent(
        parse_uri("sip:carol@chicago.com;newparam=5")
    )  # type: ignore[union-attr]


def test_building() -> None:
    uri = SipUri(user_raw="+15551234567", host="tenant-a.customers.example.com", port=5061)
    uri = uri.with_params(user="phone", transport="tls")
    assert (
        str(uri) == "sip:+15551234567@tenant-a.customers.example.com:5061;user=phone;transport=tls"
    )
    assert (
        str(uri.without_params("transport"))
        == "sip:+15551234567@tenant-a.customers.example.com:5061;user=phone"
    )
    assert (
        str(uri.replace(user="a b", port=None))
        == "sip:a%20b@tenant-a.customers.example.com;user=phone;transport=tls"
    )
