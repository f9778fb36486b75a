"""Parser properties: round trips, any chunking, and nothing but RemoteProtocolError escapes."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sbcsim.errors import RemoteProtocolError
from sbcsim.sip import (
    KeepAlive,
    Request,
    Response,
    StreamFramer,
    StreamParser,
    build_request,
    parse_message,
)
from sbcsim.sip.parser import ParserLimits
from sbcsim.testing.samples import OK_200, OPTIONS, TEAMS_INVITE

DATA = Path(__file__).resolve().parent.parent / "data" / "rfc4475"
VALID_FIXTURES = [TEAMS_INVITE, OK_200, OPTIONS]


def _feed_in_chunks(data: bytes, cuts: list[int]) -> list[bytes | KeepAlive]:
    framer = StreamFramer()
    out: list[bytes | KeepAlive] = []
    last = 0
    for cut in sorted(set(cuts)):
        out += framer.feed(data[last:cut])
        last = cut
    out += framer.feed(data[last:])
    return out


@pytest.mark.parametrize("data", VALID_FIXTURES)
def test_byte_by_byte_whole_and_with_trailing_data(data: bytes) -> None:
    whole = StreamFramer().feed(data)
    assert whole == [data]
    framer = StreamFramer()
    frames: list[bytes | KeepAlive] = []
    for i in range(len(data)):
        frames += framer.feed(data[i : i + 1])
        if i < len(data) - 1:
            assert frames == []
    assert frames == [data]
    trailing = StreamFramer().feed(data + data[:10])
    assert trailing == [data]


def test_several_messages_and_keepalives_in_one_chunk() -> None:
    stream = b"\r\n\r\n" + OPTIONS + b"\r\n" + OK_200 + TEAMS_INVITE
    items = StreamFramer().feed(stream)
    assert items == [KeepAlive(True), OPTIONS, KeepAlive(False), OK_200, TEAMS_INVITE]
    parsed = StreamParser().feed(stream)
    assert isinstance(parsed[1], Request) and parsed[1].method == "OPTIONS"
    assert isinstance(parsed[3], Response) and parsed[3].status == 200


def test_split_keepalive_is_still_a_ping() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r") == []
    assert framer.feed(b"\n") == [KeepAlive(True)]


@pytest.mark.parametrize(
    ("head", "message"),
    [
        (b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: -1\r\n\r\n", "invalid Content-Length"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\nContent-Length: 6\r\n\r\n", "conflicting"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n", "mandatory"),
    ],
)
def test_stream_framing_errors_close_the_connection(head: bytes, message: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        StreamFramer().feed(head)
    assert info.value.close_connection
    assert message in info.value.msg


def test_limits() -> None:
    small = ParserLimits(max_message_size=200)
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(TEAMS_INVITE, limits=small)
    assert info.value.status_hint == 513
    few = ParserLimits(max_headers=5)
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(TEAMS_INVITE, limits=few)
    assert info.value.status_hint == 400
    with pytest.raises(RemoteProtocolError):
        StreamFramer(small).feed(b"OPTIONS sip:a@b SIP/2.0\r\n" + b"X: " + b"y" * 300)


def test_malformed_response_is_discarded_not_answered() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_message(OK_200.replace(b"CSeq: 1 INVITE", b"CSeq: x INVITE"))
    assert info.value.status_hint is None


def test_leading_crlf_ignored() -> None:
    msg = parse_message(b"\r\n\r\n" + OPTIONS)
    assert isinstance(msg, Request) and msg.method == "OPTIONS"


# ---------------------------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------------------------
token = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~",
    min_size=1,
    max_size=12,
)
host = st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){0,3}", fullmatch=True)
user = st.from_regex(r"\+?[A-Za-z0-9_.!~*'()&=$,-]{1,16}", fullmatch=True)
methods = st.sampled_from(
    ["INVITE", "BYE", "OPTIONS", "REFER", "NOTIFY", "INFO", "UPDATE", "PRACK", "MESSAGE"]
)
header_value = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30
).map(str.strip)
display = st.one_of(
    st.none(),
    st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters='"\\'),
        max_size=16,
    ),
)


@st.composite
def requests(draw: st.DrawFn) -> Request:
    method = draw(methods)
    port = draw(st.one_of(st.none(), st.integers(1, 65535)))
    h = draw(host)
    target = f"sip:{draw(user)}@{h}" + (f":{port}" if port else "")
    disp = draw(display)
    from_ = (
        f'"{disp}" ' if disp is not None else ""
    ) + f"<sip:{draw(user)}@{draw(host)}>;tag={draw(token)}"
    extra = draw(st.lists(st.tuples(token.map(lambda t: "X-" + t), header_value), max_size=4))
    body = draw(st.binary(max_size=200))
    req = build_request(
        method,
        target,
        from_=from_,
        to=f"<sip:{draw(user)}@{draw(host)}>",
        call_id=draw(token) + "@" + draw(host),
        cseq=draw(st.integers(0, 2**32 - 1)),
        via=f"SIP/2.0/{draw(st.sampled_from(['UDP', 'TCP', 'TLS']))} {draw(host)}:{draw(st.integers(1, 65535))};branch=z9hG4bK{draw(token)}",
        headers=extra,
        body=body,
        content_type="application/octet-stream" if body else None,
    )
    return req


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_generated_messages_round_trip(req: Request) -> None:
    data = req.to_bytes()
    for transport in ("udp", "tcp"):
        parsed = parse_message(data, transport=transport)
        assert isinstance(parsed, Request)
        assert parsed.to_bytes() == data
        assert parsed.method == req.method
        assert parsed.body == req.body
        assert parsed.headers == req.headers
        assert parsed.call_id == req.call_id and parsed.cseq == req.cseq
        assert parsed.from_.display_name == req.from_.display_name


@settings(max_examples=200)
@given(st.lists(st.sampled_from(VALID_FIXTURES), min_size=1, max_size=4), st.data())
def test_any_chunking_gives_the_same_messages(messages: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(messages)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    assert _feed_in_chunks(stream, cuts) == messages


@settings(max_examples=500)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_only_raise_remote_protocol_error(data: bytes) -> None:
    for transport in ("udp", "tcp"):
        try:
            msg = parse_message(data, transport=transport)
        except RemoteProtocolError:
            continue
        msg.to_bytes()
    try:
        StreamParser().feed(data)
    except RemoteProtocolError as exc:
        assert exc.close_connection


corpus = [TEAMS_INVITE, OK_200, OPTIONS, *sorted(p.read_bytes() for p in DATA.glob("*.dat"))]


@settings(max_examples=1000)
@given(st.sampled_from(corpus), st.data())
def test_mutations_and_truncations_only_raise_remote_protocol_error(
    base: bytes, data: st.DataObject
) -> None:
    buf = bytearray(base)
    for _ in range(data.draw(st.integers(0, 8))):
        if not buf:
            break
        op = data.draw(st.sampled_from(["flip", "delete", "insert", "truncate"]))
        pos = data.draw(st.integers(0, len(buf) - 1))
        if op == "flip":
            buf[pos] = data.draw(st.sampled_from(list(b'\x00\r\n :;,<>"\\%@=?/\xff\x80ZZ09')))
        elif op == "delete":
            del buf[pos]
        elif op == "insert":
            buf[pos:pos] = data.draw(
                st.sampled_from([b"\r\n", b" ", b",", b";", b"<", b'"', b"\r\n ", b"%", b"\x00"])
            )
        else:
            del buf[pos:]
    mutated = bytes(buf)
    for transport in ("udp", "tcp"):
        try:
            msg = parse_message(mutated, transport=transport)
        except RemoteProtocolError:
            continue
        # a message that parses also serializes, and its typed views are already validated
        msg.to_bytes()
        _ = (msg.via, msg.from_, msg.to, msg.cseq, msg.call_id, msg.contact)
    try:
        StreamParser().feed(mutated)
    except RemoteProtocolError as exc:
        assert exc.close_connection
