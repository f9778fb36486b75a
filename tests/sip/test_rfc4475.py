"""RFC 4475 torture tests: every message gets the verdict the RFC asks for.

Each row is (file, transport, valid, response, action).  ``response`` is the status our UAS core
answers with (``None``: processed normally, or silently discarded when ``valid`` is False and the
message is a response).  The expectations paraphrase RFC 4475's own text for each section.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from sbcsim.cli import main, parse_verdict
from sbcsim.errors import RemoteProtocolError
from sbcsim.sip import Request, SipUri, inspect_request, parse_message

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"

# (file, section, valid, response over UDP)
EXPECTED: list[tuple[str, str, bool, int | None]] = [
    # 3.1.1 valid messages: must parse
    ("wsinv.dat", "3.1.1.1", True, None),
    ("intmeth.dat", "3.1.1.2", True, 501),  # unknown method at an endpoint: 501 with Allow
    ("esc01.dat", "3.1.1.3", True, None),
    ("escnull.dat", "3.1.1.4", True, None),
    ("esc02.dat", "3.1.1.5", True, 501),  # RE%47IST%45R is not REGISTER
    ("lwsdisp.dat", "3.1.1.6", True, None),
    ("longreq.dat", "3.1.1.7", True, None),
    ("dblreq.dat", "3.1.1.8", True, None),
    ("semiuri.dat", "3.1.1.9", True, None),
    ("transports.dat", "3.1.1.10", True, None),
    ("mpart01.dat", "3.1.1.11", True, None),
    ("unreason.dat", "3.1.1.12", True, None),
    ("noreason.dat", "3.1.1.13", True, None),
    # 3.1.2 invalid messages: rejected with the RFC's code, or discarded (responses)
    ("badinv01.dat", "3.1.2.1", False, 400),
    ("clerr.dat", "3.1.2.2", False, 400),
    ("ncl.dat", "3.1.2.3", False, 400),
    ("scalar02.dat", "3.1.2.4", False, 400),
    ("scalarlg.dat", "3.1.2.5", False, None),
    ("quotbal.dat", "3.1.2.6", False, 400),
    ("ltgtruri.dat", "3.1.2.7", False, 400),
    ("lwsruri.dat", "3.1.2.8", False, 400),
    ("lwsstart.dat", "3.1.2.9", False, 400),
    ("trws.dat", "3.1.2.10", False, 400),
    ("escruri.dat", "3.1.2.11", False, 400),
    ("baddate.dat", "3.1.2.12", False, 400),
    ("regbadct.dat", "3.1.2.13", False, 400),
    ("badaspec.dat", "3.1.2.14", False, 400),
    ("baddn.dat", "3.1.2.15", False, 400),
    ("badvers.dat", "3.1.2.16", False, 505),
    ("mismatch01.dat", "3.1.2.17", False, 400),
    ("mismatch02.dat", "3.1.2.18", False, 501),
    ("bigcode.dat", "3.1.2.19", False, None),
    # 3.2 transaction layer: parse; matching falls back to RFC 2543 rules
    ("badbranch.dat", "3.2.1", True, None),
    # 3.3 application layer
    ("insuf.dat", "3.3.1", False, 400),
    ("unkscm.dat", "3.3.2", True, 416),
    ("novelsc.dat", "3.3.3", True, 416),
    ("unksm2.dat", "3.3.4", True, 400),  # a registrar: To must be a SIP/SIPS AOR
    ("bext01.dat", "3.3.5", True, 420),
    ("invut.dat", "3.3.6", True, 415),
    ("regaut01.dat", "3.3.7", True, None),  # a registrar that ignores authorization
    ("multi01.dat", "3.3.8", False, 400),
    ("mcl01.dat", "3.3.9", False, 400),
    ("bcast.dat", "3.3.10", True, None),  # a response: an endpoint discards it
    ("zeromf.dat", "3.3.11", True, None),  # an endpoint processes Max-Forwards 0 normally
    ("cparam01.dat", "3.3.12", True, None),
    ("cparam02.dat", "3.3.13", True, None),
    ("regescrt.dat", "3.3.14", True, None),
    ("sdp01.dat", "3.3.15", True, 406),
    # 3.4 backward compatibility
    ("inv2543.dat", "3.4.1", True, None),
]


def test_every_rfc_case_is_covered() -> None:
    manifest = [line.split("\t") for line in (DATA / "MANIFEST.tsv").read_text().splitlines()[1:]]
    rfc_cases = {row[0] for row in manifest if row[3] not in ("unreferenced", "archive")}
    assert len(rfc_cases) == 49
    assert {row[0] for row in EXPECTED} == rfc_cases


@pytest.mark.parametrize(
    ("name", "section", "valid", "response"), EXPECTED, ids=[r[0] for r in EXPECTED]
)
def test_parse_verdict_over_udp(name: str, section: str, valid: bool, response: int | None) -> None:
    verdict = parse_verdict((DATA / name).read_bytes(), "udp")
    assert verdict["valid"] is valid, verdict
    assert verdict["response"] == response, verdict
    if not valid:
        assert verdict["error"]


@pytest.mark.parametrize(
    ("name", "section", "valid", "response"), EXPECTED, ids=[r[0] for r in EXPECTED]
)
def test_cli_exit_code_and_json(name: str, section: str, valid: bool, response: int | None) -> None:
    result = CliRunner().invoke(main, ["parse", str(DATA / name)])
    assert result.exit_code == (0 if valid else 1), result.output
    verdict = json.loads(result.output)
    assert verdict["valid"] is valid
    assert verdict["response"] == response
    assert verdict["kind"] == (
        "response" if (DATA / name).read_bytes().startswith(b"SIP/") else "request"
    )


# Over a stream, framing rules differ (RFC 3261 §18.3, RFC 4475 §3.1.2.2/3, §3.3.9).
STREAM_EXPECTED = [
    ("clerr.dat", False, None, "wait-then-close"),  # wait for the rest; close if it never comes
    ("ncl.dat", False, 400, "close-connection"),
    ("mcl01.dat", False, 400, "close-connection"),
    ("dblreq.dat", True, None, None),  # the REGISTER is framed by its Content-Length: 0
    ("inv2543.dat", False, 400, "close-connection"),  # no Content-Length on a stream
    ("wsinv.dat", True, None, None),
]


@pytest.mark.parametrize(
    ("name", "valid", "response", "action"), STREAM_EXPECTED, ids=[r[0] for r in STREAM_EXPECTED]
)
def test_parse_verdict_over_tcp(
    name: str, valid: bool, response: int | None, action: str | None
) -> None:
    verdict = parse_verdict((DATA / name).read_bytes(), "tcp")
    assert verdict["valid"] is valid, verdict
    assert verdict["response"] == response
    assert verdict.get("action") == action


def test_zeromf_at_a_proxy_is_483() -> None:
    verdict = parse_verdict((DATA / "zeromf.dat").read_bytes(), "udp", role="proxy")
    assert verdict["response"] == 483


def test_bext01_lists_both_unsupported_tags() -> None:
    msg = parse_message((DATA / "bext01.dat").read_bytes())
    assert isinstance(msg, Request)
    rejection = inspect_request(msg)
    assert rejection is not None
    assert rejection.headers == (("Unsupported", "nothingSupportsThis, nothingSupportsThisEither"),)


def test_wsinv_values() -> None:
    msg = parse_message((DATA / "wsinv.dat").read_bytes())
    assert isinstance(msg, Request)
    assert msg.max_forwards == 68
    assert msg.cseq.seq == 9 and msg.cseq.method == "INVITE"
    assert msg.to.tag == "1918181833n"
    assert msg.from_.display_name == 'J Rosenberg \\"'
    assert msg.from_.tag == "98asjd8"
    vias = msg.via
    assert [(v.transport, v.host, v.branch) for v in vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    (contact,) = msg.contact
    assert contact.display_name == 'Quoted string ""'
    assert contact.param("newparam") == "newvalue"
    assert contact.param("q") == "0.33"
    assert contact.has_param("secondparam")
    assert msg.headers.get("s") == ""
    assert msg.content_length == 150 and len(msg.body) == 150
    assert msg.to_bytes() == (DATA / "wsinv.dat").read_bytes()


def test_escaping_is_undone_exactly_once() -> None:
    msg = parse_message((DATA / "esc01.dat").read_bytes())
    assert isinstance(msg, Request)
    assert isinstance(msg.uri, SipUri)
    assert msg.uri.user == "sips:user@example.com"
    assert msg.to.sip_uri.user == "user"
    assert msg.from_.sip_uri.user == "I have spaces"
    (contact,) = msg.contact
    uri = contact.sip_uri
    assert uri.user == "caller"
    assert uri.param("lr") == ""  # %6C%72 is "lr"
    assert uri.param("name") == "value%41"  # %25%34%31 -> "%41", never "A"
    assert str(uri) == "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31"


def test_escaped_nulls_keep_their_length() -> None:
    msg = parse_message((DATA / "escnull.dat").read_bytes())
    users = [c.uri.user for c in msg.contact if isinstance(c.uri, SipUri)]
    assert users == ["\x00", "\x00\x00"]


def test_semicolon_in_user_part() -> None:
    msg = parse_message((DATA / "semiuri.dat").read_bytes())
    assert isinstance(msg, Request) and isinstance(msg.uri, SipUri)
    assert msg.uri.user == "user;par=u@example.net"
    assert msg.uri.host == "example.com"


def test_esc02_method_and_display_name() -> None:
    msg = parse_message((DATA / "esc02.dat").read_bytes())
    assert isinstance(msg, Request)
    assert msg.method == "RE%47IST%45R"
    assert msg.from_.display_name == "%Z%45"
    assert len(msg.contact) == 2


def test_dblreq_trailing_octets_ignored() -> None:
    data = (DATA / "dblreq.dat").read_bytes()
    msg = parse_message(data)
    assert isinstance(msg, Request) and msg.method == "REGISTER"
    assert msg.body == b""
    assert b"INVITE" not in msg.to_bytes()


def test_mpart01_binary_body_framed_by_content_length() -> None:
    msg = parse_message((DATA / "mpart01.dat").read_bytes())
    assert len(msg.body) == 553
    assert b"\x00" in msg.body


def test_inv2543_body_is_rest_of_datagram() -> None:
    msg = parse_message((DATA / "inv2543.dat").read_bytes())
    assert isinstance(msg, Request)
    assert len(msg.body) == 105
    assert msg.top_via.branch is None and not msg.top_via.rfc3261
    assert msg.from_.tag is None
    assert msg.max_forwards is None


def test_badbranch_is_not_rfc3261() -> None:
    msg = parse_message((DATA / "badbranch.dat").read_bytes())
    assert msg.top_via.branch == "z9hG4bK"
    assert not msg.top_via.rfc3261


def test_unusual_reason_phrases() -> None:
    unreason = parse_message((DATA / "unreason.dat").read_bytes())
    noreason = parse_message((DATA / "noreason.dat").read_bytes())
    assert unreason.status == 200  # type: ignore[union-attr]
    assert unreason.reason_phrase == "= 2**3 * 5**2 но сто девяносто девять - простое"  # type: ignore[union-attr]
    assert noreason.status == 100 and noreason.reason_phrase == ""  # type: ignore[union-attr]


@pytest.mark.parametrize("name", [r[0] for r in EXPECTED if r[2]])
def test_valid_messages_round_trip_exactly(name: str) -> None:
    data = (DATA / name).read_bytes()
    msg = parse_message(data)
    out = msg.to_bytes()
    if name == "dblreq.dat":
        assert data.startswith(out)
    else:
        assert out == data
    # and re-serializing after a change still parses to the same values
    msg.headers.append("X-Touched", "1")
    again = parse_message(msg.to_bytes())
    assert again.headers.get("X-Touched") == "1"
    assert again.call_id == msg.call_id


@pytest.mark.parametrize("name", [r[0] for r in EXPECTED if not r[2]])
def test_invalid_messages_raise_only_remote_protocol_error(name: str) -> None:
    data = (DATA / name).read_bytes()
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(data)
    expected = {r[0]: r[3] for r in EXPECTED}[name]
    assert info.value.status_hint == expected


def test_options_with_an_accept_we_never_answer_with_is_still_200() -> None:
    # RFC 3261 §11.2: our 200 to OPTIONS carries no body, so no Accept can make it unacceptable.
    data = (DATA / "sdp01.dat").read_bytes().replace(b"INVITE", b"OPTIONS")
    verdict = parse_verdict(data, "udp")
    assert verdict["valid"] is True and verdict["response"] is None
