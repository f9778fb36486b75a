"""SDP model, parser and serializer, and the RFC 3264 offer/answer helpers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sbcsim.errors import LocalProtocolError, RemoteProtocolError
from sbcsim.sip import sdp
from sbcsim.sip.sdp import (
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Bandwidth,
    Candidate,
    Connection,
    Crypto,
    CryptoKey,
    Direction,
    Fmtp,
    Line,
    MediaDescription,
    Origin,
    RtcpAddress,
    RtpMap,
    SessionDescription,
    Timing,
    answer_direction,
    intersect_formats,
    is_hold,
)

KEY_A = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwd"  # bytes 0..29
KEY_B = "yMnKy8zNzs/Q0dLT1NXW19jZ2tvc3d7f4OHi4+Tl"  # bytes 200..229
KEY_256 = "ZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f4CBgoOEhYaHiImKi4yNjo+QkQ=="  # bytes 100..145

TEAMS_LINES = [
    "v=0",
    "o=- 7316241095 2 IN IP4 52.114.76.76",
    "s=session",
    "c=IN IP4 52.114.76.76",
    "b=CT:10000000",
    "t=0 0",
    "m=audio 52000 RTP/SAVP 0 8 101 13 118 104 9",
    "c=IN IP4 52.114.76.76",
    "a=rtcp:52001",
    "a=ice-ufrag:Xk3v",
    "a=ice-pwd:v9q2Lr7hPz0aB4cD8eF1gH6j",
    "a=rtcp-fb:* x-message app send:dsh recv:dsh",
    "a=rtcp-rsize",
    "a=label:main-audio",
    "a=mid:1",
    "a=sendrecv",
    f"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{KEY_A}|2^31|1:1",
    f"a=crypto:3 AES_CM_128_HMAC_SHA1_80 inline:{KEY_B}|2^31",
    f"a=crypto:4 AES_256_CM_HMAC_SHA1_80 inline:{KEY_256}|2^31|2:1 UNENCRYPTED_SRTCP",
    "a=candidate:1 1 UDP 2130706431 10.0.4.12 52000 typ host",
    "a=candidate:1 2 UDP 2130705918 10.0.4.12 52001 typ host",
    "a=candidate:2 1 UDP 1694498815 52.114.76.76 52000 typ srflx raddr 10.0.4.12 rport 52000",
    "a=candidate:3 1 TCP-ACT 174846975 52.114.76.76 9 typ relay raddr 10.0.4.12 rport 9 generation 0",
    "a=rtcp-mux",
    "a=rtpmap:0 PCMU/8000",
    "a=rtpmap:8 PCMA/8000",
    "a=rtpmap:101 telephone-event/8000",
    "a=fmtp:101 0-16",
    "a=rtpmap:13 CN/8000",
    "a=rtpmap:118 CN/16000",
    "a=rtpmap:104 SILK/16000",
    "a=rtpmap:9 G722/8000",
    "a=ptime:20",
    "a=x-something:opaque;value=1",
    "a=x-flag",
]
TEAMS_SDP = ("\r\n".join(TEAMS_LINES) + "\r\n").encode()

PSTN_SDP = (
    b"v=0\r\n"
    b"o=PSTN-GW 1234 5678 IN IP4 198.51.100.10\r\n"
    b"s=SIP Call\r\n"
    b"c=IN IP4 198.51.100.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 16384 RTP/AVP 0 8 18 101\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
)


def make_sdp(*media_lines: str, session: tuple[str, ...] = ()) -> bytes:
    """A minimal valid body: session lines, then ``session`` extras, then ``media_lines``."""
    head = ["v=0", "o=- 1 1 IN IP4 192.0.2.1", "s=-", "c=IN IP4 192.0.2.1", "t=0 0", *session]
    return ("\r\n".join([*head, *media_lines]) + "\r\n").encode()


# ------------------------------------------------------------------------------------------
# The Teams media-processor offer
# ------------------------------------------------------------------------------------------


class TestTeamsOffer:
    def test_round_trips_byte_exactly(self) -> None:
        assert SessionDescription.parse(TEAMS_SDP).to_bytes() == TEAMS_SDP

    def test_round_trips_with_lf_and_without_final_line_ending(self) -> None:
        lf = TEAMS_SDP.replace(b"\r\n", b"\n")
        assert SessionDescription.parse(lf).to_bytes() == lf
        assert SessionDescription.parse(lf).line_ending == "\n"
        assert SessionDescription.parse(TEAMS_SDP[:-2]).to_bytes() == TEAMS_SDP[:-2]
        assert SessionDescription.parse(lf[:-1]).to_bytes() == lf[:-1]

    def test_str_input_and_copy(self) -> None:
        parsed = SessionDescription.parse(TEAMS_SDP.decode())
        assert parsed.to_bytes() == TEAMS_SDP
        clone = parsed.copy()
        clone.media[0].set_port(4000)
        assert parsed.to_bytes() == TEAMS_SDP
        assert clone.to_bytes() == TEAMS_SDP.replace(b"m=audio 52000", b"m=audio 4000")
        assert parsed == SessionDescription.parse(TEAMS_SDP)
        assert clone != parsed

    def test_session_level(self) -> None:
        sd = SessionDescription.parse(TEAMS_SDP)
        assert sd.version == 0
        assert sd.origin == Origin("-", "7316241095", 2, "IN", "IP4", "52.114.76.76")
        assert sd.session_name == "session"
        assert sd.information is None
        assert sd.uri is None
        assert sd.emails == []
        assert sd.phones == []
        assert sd.connection == Connection("IN", "IP4", "52.114.76.76")
        assert sd.bandwidths == [Bandwidth("CT", 10000000)]
        assert sd.times == [Timing(0, 0, ())]
        assert sd.time_zones is None
        assert sd.encryption_key is None
        assert sd.attributes == []
        assert sd.unknown_lines == []
        assert sd.direction is None
        assert sd.ice_lite is False
        assert sd.line_ending == "\r\n"
        assert len(sd.media) == 1

    def test_media_line_and_plain_attributes(self) -> None:
        sd = SessionDescription.parse(TEAMS_SDP)
        audio = sd.media[0]
        assert audio.media == "audio"
        assert audio.port == 52000
        assert audio.port_count is None
        assert audio.proto == "RTP/SAVP"
        assert audio.formats == ["0", "8", "101", "13", "118", "104", "9"]
        assert audio.connections == [Connection("IN", "IP4", "52.114.76.76")]
        assert audio.connection == Connection("IN", "IP4", "52.114.76.76")
        assert audio.bandwidths == []
        assert audio.information is None
        assert audio.encryption_key is None
        assert audio.unknown_lines == []
        assert [str(a) for a in audio.attributes] == [line[2:] for line in TEAMS_LINES[8:]]
        assert audio.attributes[-2] == Attribute("x-something", "opaque;value=1")
        assert audio.attributes[-1] == Attribute("x-flag", None)
        assert audio.attribute_value("x-something") == "opaque;value=1"
        assert audio.attribute("x-flag") == Attribute("x-flag")
        assert audio.has_attribute("rtcp-rsize")
        assert audio.attribute("nope") is None
        assert len(audio.attributes_named("crypto")) == 3

    def test_typed_attributes(self) -> None:
        sd = SessionDescription.parse(TEAMS_SDP)
        audio = sd.media[0]
        assert audio.direction is Direction.SENDRECV
        assert sd.effective_direction(audio) is Direction.SENDRECV
        assert audio.label == "main-audio"
        assert audio.mid == "1"
        assert audio.ptime == 20
        assert audio.maxptime is None
        assert audio.rtcp_mux is True
        assert audio.rtcp == RtcpAddress(52001)
        assert audio.ice_ufrag == "Xk3v"
        assert audio.ice_pwd == "v9q2Lr7hPz0aB4cD8eF1gH6j"
        assert sd.effective_ice_ufrag(audio) == "Xk3v"
        assert sd.effective_ice_pwd(audio) == "v9q2Lr7hPz0aB4cD8eF1gH6j"
        assert sd.effective_connection(audio) == Connection("IN", "IP4", "52.114.76.76")
        assert audio.rtpmaps == [
            RtpMap(0, "PCMU", 8000),
            RtpMap(8, "PCMA", 8000),
            RtpMap(101, "telephone-event", 8000),
            RtpMap(13, "CN", 8000),
            RtpMap(118, "CN", 16000),
            RtpMap(104, "SILK", 16000),
            RtpMap(9, "G722", 8000),
        ]
        assert audio.codecs == [
            RtpMap(0, "PCMU", 8000),
            RtpMap(8, "PCMA", 8000),
            RtpMap(101, "telephone-event", 8000),
            RtpMap(13, "CN", 8000),
            RtpMap(118, "CN", 16000),
            RtpMap(104, "SILK", 16000),
            RtpMap(9, "G722", 8000),
        ]
        assert audio.rtpmap_for(118) == RtpMap(118, "CN", 16000)
        assert audio.rtpmap_for("96") is None
        assert audio.fmtps == [Fmtp("101", "0-16")]
        assert audio.fmtp_for(101) == Fmtp("101", "0-16")
        assert audio.fmtp_for(101).parameter_map() == {"0-16": None}  # type: ignore[union-attr]
        assert audio.fmtp_for(0) is None
        sd.validate()

    def test_crypto(self) -> None:
        audio = SessionDescription.parse(TEAMS_SDP).media[0]
        assert audio.cryptos == [
            Crypto(
                2,
                "AES_CM_128_HMAC_SHA1_80",
                (CryptoKey("inline", KEY_A, "2^31", 1, 1),),
            ),
            Crypto(3, "AES_CM_128_HMAC_SHA1_80", (CryptoKey("inline", KEY_B, "2^31"),)),
            Crypto(
                4,
                "AES_256_CM_HMAC_SHA1_80",
                (CryptoKey("inline", KEY_256, "2^31", 2, 1),),
                ("UNENCRYPTED_SRTCP",),
            ),
        ]
        first, second, third = audio.cryptos
        assert first.keys[0].key_salt_bytes() == bytes(range(30))
        assert second.keys[0].key_salt_bytes() == bytes(range(200, 230))
        assert third.keys[0].key_salt_bytes() == bytes(range(100, 146))
        assert first.keys[0].lifetime_packets == 2**31
        assert all(c.has_valid_key_lengths() for c in audio.cryptos)
        assert [str(c) for c in audio.cryptos] == [
            a.value for a in audio.attributes_named("crypto")
        ]

    def test_candidates(self) -> None:
        audio = SessionDescription.parse(TEAMS_SDP).media[0]
        assert audio.candidates == [
            Candidate("1", 1, "UDP", 2130706431, "10.0.4.12", 52000, "host"),
            Candidate("1", 2, "UDP", 2130705918, "10.0.4.12", 52001, "host"),
            Candidate(
                "2", 1, "UDP", 1694498815, "52.114.76.76", 52000, "srflx", "10.0.4.12", 52000
            ),
            Candidate(
                "3",
                1,
                "TCP-ACT",
                174846975,
                "52.114.76.76",
                9,
                "relay",
                "10.0.4.12",
                9,
                (("generation", "0"),),
            ),
        ]
        assert [str(c) for c in audio.candidates] == [
            a.value for a in audio.attributes_named("candidate")
        ]


# ------------------------------------------------------------------------------------------
# The PSTN offer, hold and offer/answer
# ------------------------------------------------------------------------------------------


class TestPstnOffer:
    def test_round_trip_and_values(self) -> None:
        sd = SessionDescription.parse(PSTN_SDP)
        assert sd.to_bytes() == PSTN_SDP
        assert sd.origin == Origin("PSTN-GW", "1234", 5678, "IN", "IP4", "198.51.100.10")
        assert sd.session_name == "SIP Call"
        audio = sd.media[0]
        assert (audio.media, audio.port, audio.proto) == ("audio", 16384, "RTP/AVP")
        assert audio.formats == ["0", "8", "18", "101"]
        assert audio.connection is None
        assert sd.effective_connection(audio) == Connection("IN", "IP4", "198.51.100.10")
        # Static payload types without rtpmap come from RFC 3551.
        assert audio.codecs == [
            RtpMap(0, "PCMU", 8000),
            RtpMap(8, "PCMA", 8000),
            RtpMap(18, "G729", 8000),
            RtpMap(101, "telephone-event", 8000),
        ]
        assert audio.cryptos == []
        assert audio.candidates == []
        assert audio.rtcp is None
        assert audio.rtcp_mux is False
        assert audio.ice_ufrag is None
        assert not is_hold(sd)

    def test_next_version(self) -> None:
        sd = SessionDescription.parse(PSTN_SDP)
        sd.origin = sd.origin.next_version()
        assert sd.to_bytes() == PSTN_SDP.replace(b"1234 5678", b"1234 5679")


class TestHold:
    @pytest.mark.parametrize(
        ("lines", "held"),
        [
            ((), False),
            (("a=sendrecv",), False),
            (("a=recvonly",), False),
            (("a=sendonly",), True),
            (("a=inactive",), True),
            (("c=IN IP4 0.0.0.0",), True),
            (("c=IN IP4 0.0.0.0", "a=sendrecv"), True),
        ],
    )
    def test_media_level(self, lines: tuple[str, ...], held: bool) -> None:
        sd = SessionDescription.parse(make_sdp("m=audio 5000 RTP/AVP 0", *lines))
        assert is_hold(sd, sd.media[0]) is held
        assert is_hold(sd) is held

    def test_session_level_direction_and_connection(self) -> None:
        sd = SessionDescription.parse(make_sdp("m=audio 5000 RTP/AVP 0", session=("a=inactive",)))
        assert sd.direction is Direction.INACTIVE
        assert sd.effective_direction(sd.media[0]) is Direction.INACTIVE
        assert is_hold(sd)
        # The media level wins over the session level.
        sd.media[0].set_direction("sendrecv")
        assert sd.effective_direction(sd.media[0]) is Direction.SENDRECV
        assert not is_hold(sd)
        held = make_sdp("m=audio 5000 RTP/AVP 0").replace(
            b"c=IN IP4 192.0.2.1", b"c=IN IP4 0.0.0.0"
        )
        assert is_hold(SessionDescription.parse(held))

    def test_whole_call_needs_every_active_stream_held(self) -> None:
        sd = SessionDescription.parse(
            make_sdp(
                "m=audio 5000 RTP/AVP 0",
                "a=sendonly",
                "m=video 5002 RTP/AVP 96",
                "a=rtpmap:96 H264/90000",
                "m=video 0 RTP/AVP 97",
            )
        )
        assert is_hold(sd, sd.media[0])
        assert not is_hold(sd, sd.media[1])
        assert not is_hold(sd)
        sd.media[1].set_direction(Direction.INACTIVE)
        assert is_hold(sd)  # the rejected stream (port 0) does not count
        sd.media[0].set_port(0)
        sd.media[1].set_port(0)
        assert not is_hold(sd)


class TestAnswerDirection:
    @pytest.mark.parametrize(
        ("offer", "answer"),
        [
            ("sendonly", "recvonly"),
            ("recvonly", "sendonly"),
            ("inactive", "inactive"),
            ("sendrecv", "sendrecv"),
        ],
    )
    def test_default(self, offer: str, answer: str) -> None:
        assert answer_direction(Direction(offer)) is Direction(answer)
        assert answer_direction(offer) is Direction(answer)

    @pytest.mark.parametrize(
        ("offer", "local", "answer"),
        [
            ("sendrecv", "sendonly", "sendonly"),
            ("sendrecv", "recvonly", "recvonly"),
            ("sendrecv", "inactive", "inactive"),
            ("sendonly", "sendonly", "inactive"),
            ("sendonly", "recvonly", "recvonly"),
            ("recvonly", "recvonly", "inactive"),
            ("recvonly", "sendrecv", "sendonly"),
            ("inactive", "sendrecv", "inactive"),
        ],
    )
    def test_with_local_preference(self, offer: str, local: str, answer: str) -> None:
        assert answer_direction(offer, local) is Direction(answer)


class TestIntersectFormats:
    OURS = (
        RtpMap(0, "PCMU", 8000),
        RtpMap(8, "PCMA", 8000),
        RtpMap(96, "telephone-event", 8000),
        RtpMap(97, "opus", 48000, 2),
        RtpMap(13, "CN", 8000),
    )

    def test_teams_offer(self) -> None:
        audio = SessionDescription.parse(TEAMS_SDP).media[0]
        # telephone-event is matched by name (offer 101, ours 96) and keeps the offer's number;
        # CN/16000 has no 16 kHz codec beside it; SILK and G722 are not supported.
        assert intersect_formats(audio, self.OURS) == [
            RtpMap(0, "PCMU", 8000),
            RtpMap(8, "PCMA", 8000),
            RtpMap(101, "telephone-event", 8000),
            RtpMap(13, "CN", 8000),
        ]

    def test_dynamic_renumbering_by_name_in_offer_order(self) -> None:
        sd = SessionDescription.parse(
            make_sdp(
                "m=audio 5000 RTP/AVP 111 9 0 110 126",
                "a=rtpmap:111 OPUS/48000/2",
                "a=rtpmap:110 telephone-event/48000",
                "a=rtpmap:126 telephone-event/8000",
            )
        )
        assert intersect_formats(sd.media[0], self.OURS) == [
            RtpMap(111, "OPUS", 48000, 2),
            RtpMap(0, "PCMU", 8000),
            RtpMap(126, "telephone-event", 8000),
        ]
        wideband_dtmf = RtpMap(100, "telephone-event", 48000)
        assert intersect_formats(sd.media[0], [*self.OURS, wideband_dtmf]) == [
            RtpMap(111, "OPUS", 48000, 2),
            RtpMap(0, "PCMU", 8000),
            RtpMap(110, "telephone-event", 48000),
            RtpMap(126, "telephone-event", 8000),
        ]
        # Without opus there is no 48 kHz codec for the 48 kHz events to go with.
        assert intersect_formats(sd.media[0], [RtpMap(0, "PCMU", 8000), wideband_dtmf]) == [
            RtpMap(0, "PCMU", 8000)
        ]

    def test_channels_and_rate_must_match(self) -> None:
        sd = SessionDescription.parse(
            make_sdp("m=audio 5000 RTP/AVP 96 98", "a=rtpmap:96 opus/48000", "a=rtpmap:98 x/8000")
        )
        assert intersect_formats(sd.media[0], self.OURS) == []

    def test_static_payload_types_match_by_number(self) -> None:
        sd = SessionDescription.parse(make_sdp("m=audio 5000 RTP/AVP 8 18", "a=rtpmap:8 pcma/8000"))
        assert intersect_formats(sd.media[0], [RtpMap(8, "PCMA", 8000)]) == [
            RtpMap(8, "pcma", 8000)
        ]
        assert intersect_formats(sd.media[0], [RtpMap(100, "PCMA", 8000)]) == []

    def test_telephone_event_alone_is_no_stream(self) -> None:
        sd = SessionDescription.parse(
            make_sdp("m=audio 5000 RTP/AVP 18 101 13", "a=rtpmap:101 telephone-event/8000")
        )
        assert intersect_formats(sd.media[0], self.OURS) == []

    def test_non_rtp_media_has_no_codecs(self) -> None:
        sd = SessionDescription.parse(make_sdp("m=image 6000 udptl t38"))
        assert sd.media[0].codecs == []
        assert intersect_formats(sd.media[0], self.OURS) == []

    def test_static_table(self) -> None:
        assert STATIC_PAYLOAD_TYPES[0] == RtpMap(0, "PCMU", 8000)
        assert STATIC_PAYLOAD_TYPES[8] == RtpMap(8, "PCMA", 8000)
        assert STATIC_PAYLOAD_TYPES[9] == RtpMap(9, "G722", 8000)
        assert STATIC_PAYLOAD_TYPES[18] == RtpMap(18, "G729", 8000)
        assert 101 not in STATIC_PAYLOAD_TYPES


# ------------------------------------------------------------------------------------------
# Mutations keep everything else intact
# ------------------------------------------------------------------------------------------


def replace_line(data: bytes, old: str, new: str | None) -> bytes:
    lines = data.decode().split("\r\n")
    index = lines.index(old)
    if new is None:
        del lines[index]
    else:
        lines[index] = new
    return "\r\n".join(lines).encode()


class TestMutations:
    def test_set_direction_in_place(self) -> None:
        sd = SessionDescription.parse(TEAMS_SDP)
        sd.media[0].set_direction(Direction.SENDONLY)
        assert sd.to_bytes() == replace_line(TEAMS_SDP, "a=sendrecv", "a=sendonly")
        assert is_hold(sd)

    def test_set_direction_appends_when_absent(self) -> None:
        sd = SessionDescription.parse(PSTN_SDP)
        sd.set_direction("inactive")  # session level: after the last session attribute
        sd.media[0].remove_attributes("sendrecv")
        assert sd.to_bytes() == (
            b"v=0\r\no=PSTN-GW 1234 5678 IN IP4 198.51.100.10\r\ns=SIP Call\r\n"
            b"c=IN IP4 198.51.100.10\r\nt=0 0\r\na=inactive\r\n"
            b"m=audio 16384 RTP/AVP 0 8 18 101\r\na=rtpmap:101 telephone-event/8000\r\n"
            b"a=fmtp:101 0-15\r\na=ptime:20\r\n"
        )

    def test_set_replace_remove_attribute(self) -> None:
        sd = SessionDescription.parse(TEAMS_SDP)
        audio = sd.media[0]
        audio.set_attribute("ptime", "30")
        audio.set_attribute("label", None)
        expected = replace_line(TEAMS_SDP, "a=ptime:20", "a=ptime:30")
        expected = replace_line(expected, "a=label:main-audio", "a=label")
        assert sd.to_bytes() == expected

        new_crypto = Crypto(9, "AES_CM_128_HMAC_SHA1_80", (CryptoKey("inline", KEY_B),))
        audio.replace_attributes("crypto", [new_crypto.to_attribute()])
        expected = replace_line(expected, TEAMS_LINES[16], f"a=crypto:{new_crypto}")
        expected = replace_line(expected, TEAMS_LINES[17], None)
        expected = replace_line(expected, TEAMS_LINES[18], None)
        assert sd.to_bytes() == expected
        assert audio.cryptos == [new_crypto]

        assert audio.remove_attributes("candidate", lambda a: " typ host" not in str(a)) == 2
        expected = replace_line(expected, TEAMS_LINES[21], None)
        expected = replace_line(expected, TEAMS_LINES[22], None)
        assert sd.to_bytes() == expected
        assert audio.remove_attributes("no-such") == 0

        audio.add_attribute("maxptime", "40")
        audio.set_attribute("new-flag")
        assert sd.to_bytes() == expected + b"a=maxptime:40\r\na=new-flag\r\n"
        assert audio.maxptime == 40

    def test_set_port_and_connection_address(self) -> None:
        sd = SessionDescription.parse(TEAMS_SDP)
        sd.media[0].set_port(40000)
        sd.set_connection_address("203.0.113.5")
        expected = TEAMS_SDP.replace(b"m=audio 52000", b"m=audio 40000").replace(
            b"c=IN IP4 52.114.76.76", b"c=IN IP4 203.0.113.5"
        )
        assert sd.to_bytes() == expected
        sd.media[0].set_connection_address("2001:db8::5")
        assert sd.media[0].connection == Connection("IN", "IP6", "2001:db8::5")
        with pytest.raises(LocalProtocolError):
            sd.media[0].set_port(65536)
        with pytest.raises(LocalProtocolError):
            sd.media[0].set_port(5000, 0)

    def test_connection_added_where_rfc_puts_it(self) -> None:
        sd = SessionDescription.parse(
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
            b"m=audio 5000 RTP/AVP 0\r\nb=AS:64\r\na=sendrecv\r\n"
        )
        sd.media[0].set_connection_address("192.0.2.9")
        sd.media[0].information = "voice"
        sd.bandwidths.append(Bandwidth("CT", 100))
        assert sd.to_bytes() == (
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nb=CT:100\r\nt=0 0\r\n"
            b"m=audio 5000 RTP/AVP 0\r\ni=voice\r\nc=IN IP4 192.0.2.9\r\nb=AS:64\r\na=sendrecv\r\n"
        )

    def test_session_connection_added_only_when_needed(self) -> None:
        sd = SessionDescription.parse(
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\n"
            b"m=audio 5000 RTP/AVP 0\r\nc=IN IP4 192.0.2.1\r\n"
        )
        sd.set_connection_address("192.0.2.7")
        assert sd.connection is None
        assert sd.media[0].connections == [Connection("IN", "IP4", "192.0.2.7")]
        sd.media.append(MediaDescription("video", 5002, "RTP/AVP", ["31"]))
        sd.set_connection_address("192.0.2.8")
        assert sd.connection == Connection("IN", "IP4", "192.0.2.8")
        assert sd.to_bytes() == (
            b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.8\r\nt=0 0\r\n"
            b"m=audio 5000 RTP/AVP 0\r\nc=IN IP4 192.0.2.8\r\nm=video 5002 RTP/AVP 31\r\n"
        )

    def test_restrict_formats(self) -> None:
        sd = SessionDescription.parse(TEAMS_SDP)
        audio = sd.media[0]
        audio.add_attribute("rtcp-fb", "104 nack")
        removed = audio.restrict_formats(["8", 0, "101", "999"])
        assert removed == ["13", "118", "104", "9"]
        assert audio.formats == ["0", "8", "101"]
        expected = TEAMS_SDP.replace(b"RTP/SAVP 0 8 101 13 118 104 9", b"RTP/SAVP 0 8 101")
        for gone in ("a=rtpmap:13 CN/8000", "a=rtpmap:118 CN/16000"):
            expected = replace_line(expected, gone, None)
        for gone in ("a=rtpmap:104 SILK/16000", "a=rtpmap:9 G722/8000"):
            expected = replace_line(expected, gone, None)
        # "a=rtcp-fb:* ..." applies to every format and stays.
        assert sd.to_bytes() == expected
        assert audio.restrict_formats(["0", "8", "101"]) == []
        with pytest.raises(LocalProtocolError):
            audio.restrict_formats([])
        assert audio.formats == ["0", "8", "101"]

    def test_typed_values_to_attribute(self) -> None:
        media = MediaDescription("audio", 1, "RTP/AVP", ["0"])
        for value in (
            RtpMap(97, "opus", 48000, 2),
            Fmtp("97", "useinbandfec=1; stereo=1"),
            RtcpAddress(53020, Connection("IN", "IP4", "126.16.64.4")),
            Candidate("a", 1, "udp", 1, "::1", 2, "host", extensions=(("generation", "0"),)),
            Crypto(1, "AES_CM_128_HMAC_SHA1_32", (CryptoKey("inline", KEY_A, "1024", 5, 4),)),
        ):
            media.attributes.append(value.to_attribute())
        assert media.rtpmaps == [RtpMap(97, "opus", 48000, 2)]
        assert media.fmtps[0].parameter_map() == {"useinbandfec": "1", "stereo": "1"}
        assert media.rtcp == RtcpAddress(53020, Connection("IN", "IP4", "126.16.64.4"))
        assert str(media.rtcp) == "53020 IN IP4 126.16.64.4"
        assert media.candidates[0].extensions == (("generation", "0"),)
        assert media.cryptos[0].keys[0].lifetime_packets == 1024
        assert str(media.cryptos[0]) == f"1 AES_CM_128_HMAC_SHA1_32 inline:{KEY_A}|1024|5:4"


# ------------------------------------------------------------------------------------------
# Fidelity details
# ------------------------------------------------------------------------------------------


class TestFidelity:
    def test_built_from_scratch_uses_crlf_and_rfc_order(self) -> None:
        audio = MediaDescription(
            "audio",
            5004,
            "RTP/AVP",
            ["0", "101"],
            connections=[Connection.for_address("192.0.2.4")],
            attributes=[RtpMap(101, "telephone-event", 8000).to_attribute()],
        )
        audio.set_direction("recvonly")
        sd = SessionDescription(
            Origin("sbcsim", "42", 1, address="192.0.2.4"),
            media=[audio],
            unknown_lines=[Line("y", "0100000001")],
        )
        sd.add_attribute("ice-lite")
        assert sd.ice_lite
        data = sd.to_bytes()
        assert data == (
            b"v=0\r\no=sbcsim 42 1 IN IP4 192.0.2.4\r\ns=-\r\nt=0 0\r\na=ice-lite\r\ny=0100000001\r\n"
            b"m=audio 5004 RTP/AVP 0 101\r\nc=IN IP4 192.0.2.4\r\n"
            b"a=rtpmap:101 telephone-event/8000\r\na=recvonly\r\n"
        )
        assert SessionDescription.parse(data) == sd
        assert bytes(sd) == data

    def test_out_of_order_and_unknown_lines_keep_their_place(self) -> None:
        data = (
            b"v=0\n"
            b"o=-  0123  00002 IN IP4 192.0.2.1\n"
            b"s=\n"
            b"t=0 0\n"
            b"r=604800 3600 0 90000\n"
            b"c=IN IP4 192.0.2.1\n"
            b"a=group:BUNDLE 0\n"
            b"y=0100000001\n"
            b"b=AS:80\n"
            b"m=audio 05000/2 RTP/AVP 0\n"
            b"a=sendrecv\n"
            b"f=v/2/25\n"
            b"c=IN  IP4 192.0.2.2\n"
        )
        sd = SessionDescription.parse(data)
        assert sd.to_bytes() == data
        assert sd.origin == Origin("-", "0123", 2, "IN", "IP4", "192.0.2.1")
        assert sd.session_name == ""
        assert sd.times == [Timing(0, 0, ("604800 3600 0 90000",))]
        assert sd.unknown_lines == [Line("y", "0100000001")]
        audio = sd.media[0]
        assert (audio.port, audio.port_count) == (5000, 2)
        assert audio.unknown_lines == [Line("f", "v/2/25")]
        assert audio.connections == [Connection("IN", "IP4", "192.0.2.2")]
        # Untouched lines keep spelling and place; changed ones are written canonically.
        audio.set_direction("inactive")
        sd.add_attribute("ice-lite")
        sd.unknown_lines.append(Line("y", "2"))
        assert sd.to_bytes() == data.replace(b"a=sendrecv", b"a=inactive").replace(
            b"a=group:BUNDLE 0\n", b"a=group:BUNDLE 0\na=ice-lite\n"
        ).replace(b"y=0100000001\n", b"y=0100000001\ny=2\n")
        sd.origin = sd.origin.next_version()
        audio.set_port(5000, 2)
        assert b"o=- 0123 3 IN IP4 192.0.2.1\n" in sd.to_bytes()
        assert b"m=audio 05000/2 RTP/AVP 0\n" in sd.to_bytes()  # same value, same spelling
        audio.formats.append("8")
        assert b"m=audio 5000/2 RTP/AVP 0 8\n" in sd.to_bytes()

    def test_mixed_line_endings_and_trailing_blank_lines(self) -> None:
        data = make_sdp("m=audio 5000 RTP/AVP 0").replace(b"s=-\r\n", b"s=-\n") + b"\r\n\n"
        sd = SessionDescription.parse(data)
        assert sd.line_ending == "\r\n"
        assert sd.to_bytes() == data
        sd.media[0].set_direction("sendonly")
        assert sd.to_bytes() == (make_sdp("m=audio 5000 RTP/AVP 0", "a=sendonly") + b"\r\n\r\n")
        sd.line_ending = "\n"
        assert sd.to_bytes() == (
            make_sdp("m=audio 5000 RTP/AVP 0", "a=sendonly").replace(b"\r\n", b"\n") + b"\n\n"
        )

    def test_non_utf8_bytes_survive(self) -> None:
        data = make_sdp("m=audio 5000 RTP/AVP 0").replace(b"s=-", b"s=caf\xe9 \xc3\xa9t\xc3\xa9")
        sd = SessionDescription.parse(data)
        assert sd.session_name == "caf\udce9 été"
        assert sd.to_bytes() == data

    def test_serializer_refuses_line_breaks_in_values(self) -> None:
        sd = SessionDescription.parse(PSTN_SDP)
        sd.media[0].add_attribute("x", "a\r\nm=video 1 RTP/AVP 0")
        with pytest.raises(LocalProtocolError):
            sd.to_bytes()
        sd = SessionDescription.parse(PSTN_SDP)
        sd.session_name = "bad\rname"
        with pytest.raises(LocalProtocolError):
            sd.to_bytes()
        sd = SessionDescription.parse(PSTN_SDP)
        sd.media[0].formats.clear()
        with pytest.raises(LocalProtocolError):
            sd.to_bytes()
        sd = SessionDescription.parse(PSTN_SDP)
        sd.line_ending = "\r"
        with pytest.raises(LocalProtocolError):
            sd.to_bytes()


# ------------------------------------------------------------------------------------------
# Malformed input
# ------------------------------------------------------------------------------------------

GOOD = make_sdp("m=audio 5000 RTP/AVP 0 101", "a=rtpmap:101 telephone-event/8000")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\r\n\r\n",
        GOOD.replace(b"v=0\r\n", b""),
        GOOD.replace(b"v=0", b"v=1"),
        b"o=- 1 1 IN IP4 192.0.2.1\r\n" + GOOD,
        GOOD.replace(b"o=- 1 1 IN IP4 192.0.2.1", b"o=- 1 IN IP4 192.0.2.1"),
        GOOD.replace(b"o=- 1 1 IN IP4 192.0.2.1", b"o=- 1 x IN IP4 192.0.2.1"),
        GOOD.replace(b"o=- 1 1 IN IP4 192.0.2.1\r\n", b""),
        GOOD.replace(b"s=-\r\n", b""),
        GOOD.replace(b"t=0 0\r\n", b""),
        GOOD.replace(b"t=0 0", b"t=0"),
        GOOD.replace(b"t=0 0", b"t=0 now"),
        GOOD.replace(b"c=IN IP4 192.0.2.1", b"c=IN IP4"),
        GOOD.replace(b"t=0 0", b"t=0 0\r\nb=AS"),
        GOOD.replace(b"t=0 0", b"t=0 0\r\nb=AS:fast"),
        GOOD.replace(b"m=audio 5000 RTP/AVP 0 101", b"m=audio 5000 RTP/AVP"),
        GOOD.replace(b"m=audio 5000", b"m=audio 5x00"),
        GOOD.replace(b"m=audio 5000", b"m=audio 70000"),
        GOOD.replace(b"m=audio 5000", b"m=audio 5000/"),
        GOOD.replace(b"m=audio 5000", b"m=audio +5000"),
        GOOD.replace(b"m=audio 5000", "m=audio ５０００".encode()),
        GOOD.replace(b"RTP/AVP 0 101", b"RTP/AVP 0 128"),
        GOOD.replace(b"RTP/AVP 0 101", b"RTP/AVP 0 PCMU"),
        GOOD.replace(b"a=rtpmap", b"A=rtpmap"),
        GOOD.replace(b"a=rtpmap", b"1=rtpmap"),
        GOOD.replace(b"a=rtpmap:101 telephone-event/8000", b"a=:101"),
        GOOD.replace(b"a=rtpmap", b"ab=rtpmap"),
        GOOD.replace(b"t=0 0\r\n", b"t=0 0\r\n\r\n"),
        GOOD.replace(b"t=0 0\r\n", b"t=0 0\r\nx\r\n"),
        GOOD.replace(b"s=-", b"s=a\rb"),
        GOOD.replace(b"s=-", b"s=a\x00b"),
        GOOD + b"\r",
        GOOD + b"u=http://example.com/\r\n",
        GOOD + b"r=1 2 3\r\n",
        GOOD.replace(b"t=0 0\r\n", b"t=0 0\r\na=x\r\nr=1 2 0\r\n"),
        GOOD + b"v=0\r\n",
        GOOD.replace(b"s=-", b"s=-\r\ns=again"),
        GOOD.replace(b"s=-", b"s=-\r\no=- 1 1 IN IP4 192.0.2.1"),
        GOOD.replace(b"c=IN IP4 192.0.2.1", b"c=IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.2"),
        GOOD.replace(b"s=-", b"s=-\r\ni=a\r\ni=b"),
        GOOD.replace(b"s=-", b"s=-\r\nu=a\r\nu=b"),
        GOOD.replace(b"s=-", b"s=-\r\nk=a\r\nk=b"),
        GOOD.replace(b"t=0 0", b"t=0 0\r\nz=a\r\nz=b"),
        GOOD + b"i=a\r\ni=b\r\n",
        GOOD + b"k=a\r\nk=b\r\n",
        GOOD + b"c=IN IP4\r\n",
        GOOD + b"b=X\r\n",
    ],
)
def test_malformed_sdp_is_a_remote_error(data: bytes) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        SessionDescription.parse(data)
    assert info.value.status_hint == 400


@pytest.mark.parametrize(
    "attribute",
    [
        "a=rtpmap:101",
        "a=rtpmap:101 telephone-event",
        "a=rtpmap:x PCMU/8000",
        "a=rtpmap:200 PCMU/8000",
        "a=rtpmap:101 telephone-event/8000/1/2",
        "a=rtpmap:101 /8000",
        "a=rtpmap",
        "a=fmtp: 0-16",
        "a=ptime:20.5",
        "a=maxptime:x",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80",
        "a=crypto:x AES_CM_128_HMAC_SHA1_80 inline:" + KEY_A,
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:not*base64",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY_A + "|2^x",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY_A + "|2^99999",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY_A + "|1:4|2^20",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY_A + "|1:4|2:4",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY_A + "|1:999",
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:" + KEY_A + "|1|2|3",
        "a=candidate:1 1 UDP 1 10.0.0.1 5000 host",
        "a=candidate:1 1 UDP 1 10.0.0.1 5000 typ host raddr",
        "a=candidate:1 x UDP 1 10.0.0.1 5000 typ host",
        "a=candidate:1 1 UDP 1 10.0.0.1 99999 typ host",
        "a=candidate:1 1 UDP 1 10.0.0.1 5000 typ host rport x",
        "a=rtcp:x",
        "a=rtcp:5000 IN IP4",
        "a=label",
        "a=mid",
        "a=ice-ufrag",
        "a=sendonly\r\na=recvonly",
    ],
)
def test_malformed_attribute_is_a_remote_error_on_access(attribute: str) -> None:
    sd = SessionDescription.parse(make_sdp("m=audio 5000 RTP/AVP 0 101", attribute))
    assert sd.to_bytes() == make_sdp("m=audio 5000 RTP/AVP 0 101", attribute)
    with pytest.raises(RemoteProtocolError) as info:
        sd.validate()
    assert info.value.status_hint == 400


def test_crypto_key_lengths_checked_per_suite() -> None:
    assert not Crypto.parse(f"1 AES_256_CM_HMAC_SHA1_80 inline:{KEY_A}").has_valid_key_lengths()
    assert Crypto.parse(f"1 FUTURE_SUITE inline:{KEY_A}").has_valid_key_lengths()
    unpadded = KEY_256.rstrip("=")
    key = Crypto.parse(f"1 AES_256_CM_HMAC_SHA1_80 inline:{unpadded}").keys[0]
    assert key.key_salt_bytes() == bytes(range(100, 146))
    other = Crypto.parse("1 AES_CM_128_HMAC_SHA1_80 mikey:abc|def")
    assert other.keys == (CryptoKey("mikey", "abc|def"),)
    assert other.has_valid_key_lengths()


def test_module_is_pure() -> None:
    tree = ast.parse(Path(sdp.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported.isdisjoint({"asyncio", "socket", "ssl", "time", "random", "uuid", "re"})
    assert sorted(sdp.__all__) == sorted(set(sdp.__all__))
    assert all(hasattr(sdp, name) for name in sdp.__all__)


# ------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------

_token = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"),
    min_size=1,
    max_size=12,
)
_text_value = st.text(
    alphabet=st.characters(exclude_characters="\r\n\x00", exclude_categories=["Cs"]),
    max_size=20,
)
_spaces = st.sampled_from([" ", " ", "  "])
_number = st.integers(0, 2**32).map(str)
_padded_number = st.builds(lambda zeros, n: "0" * zeros + n, st.integers(0, 2), _number)


@st.composite
def _attribute_line(draw: st.DrawFn) -> str:
    name = draw(_token)
    value = draw(st.none() | _text_value)
    return f"a={name}" if value is None else f"a={name}:{value}"


@st.composite
def _media_section(draw: st.DrawFn) -> list[str]:
    rtp = draw(st.booleans())
    if rtp:
        proto = draw(st.sampled_from(["RTP/AVP", "RTP/SAVP", "UDP/TLS/RTP/SAVPF"]))
        formats = draw(st.lists(st.integers(0, 127).map(str), min_size=1, max_size=6))
    else:
        proto = draw(st.sampled_from(["udptl", "TCP/MRCPv2"]))
        formats = draw(st.lists(_token, min_size=1, max_size=3))
    port = draw(_padded_number.filter(lambda p: int(p) <= 65535))
    if draw(st.booleans()):
        port += "/" + draw(st.integers(1, 9).map(str))
    sp = draw(_spaces)
    media = draw(st.sampled_from(["audio", "video", "image", "application"]))
    lines = [f"m={media}{sp}{port}{sp}{proto}{sp}" + sp.join(formats)]
    body: list[str] = []
    if draw(st.booleans()):
        body.append("i=" + draw(_text_value))
    for _ in range(draw(st.integers(0, 2))):
        body.append(f"c=IN{draw(_spaces)}IP4 192.0.2.{draw(st.integers(0, 255))}")
    for _ in range(draw(st.integers(0, 2))):
        body.append(f"b={draw(_token)}:{draw(_padded_number)}")
    if draw(st.booleans()):
        body.append("k=" + draw(_text_value))
    body += draw(st.lists(_attribute_line(), max_size=6))
    body += [
        f"{draw(st.sampled_from('dfghjlnqwxy'))}={draw(_text_value)}"
        for _ in range(draw(st.integers(0, 1)))
    ]
    if draw(st.booleans()):
        body = draw(st.permutations(body))
    return lines + list(body)


@st.composite
def sdp_texts(draw: st.DrawFn) -> str:
    sp = draw(_spaces)
    head = [
        "v=0",
        f"o={draw(_token)}{sp}{draw(_token)}{sp}{draw(_padded_number)} IN IP4 {draw(_token)}",
        "s=" + draw(_text_value),
    ]
    rest: list[str] = []
    if draw(st.booleans()):
        rest.append("i=" + draw(_text_value))
    if draw(st.booleans()):
        rest.append("u=" + draw(_text_value))
    rest += ["e=" + draw(_text_value) for _ in range(draw(st.integers(0, 2)))]
    rest += ["p=" + draw(_text_value) for _ in range(draw(st.integers(0, 1)))]
    if draw(st.booleans()):
        rest.append(f"c=IN IP6{draw(_spaces)}2001:db8::{draw(st.integers(0, 99))}")
    rest += [f"b={draw(_token)}:{draw(_padded_number)}" for _ in range(draw(st.integers(0, 2)))]
    for _ in range(draw(st.integers(1, 2))):
        rest.append(f"t={draw(_padded_number)}{draw(_spaces)}{draw(_number)}")
        rest += ["r=" + draw(_text_value) for _ in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()):
        rest.append("z=" + draw(_text_value))
    if draw(st.booleans()):
        rest.append("k=" + draw(_text_value))
    rest += draw(st.lists(_attribute_line(), max_size=5))
    if draw(st.booleans()):
        rest.append("y=" + draw(_text_value))
    media: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        media += draw(_media_section())
    lines = head + rest + media
    endings = draw(st.sampled_from(["crlf", "lf", "mixed"]))
    if endings == "mixed":
        eols = [draw(st.sampled_from(["\r\n", "\n"])) for _ in lines]
    else:
        eols = ["\r\n" if endings == "crlf" else "\n"] * len(lines)
    text = "".join(line + eol for line, eol in zip(lines, eols, strict=True))
    if draw(st.booleans()):
        text = text[: -len(eols[-1])]
    elif draw(st.booleans()):
        text += eols[-1] * draw(st.integers(1, 2))
    return text


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(sdp_texts())
def test_generated_sdp_round_trips(text: str) -> None:
    data = text.encode("utf-8", "surrogateescape")
    sd = SessionDescription.parse(data)
    assert sd.to_bytes() == data
    assert SessionDescription.parse(sd.to_text()) == sd
    # A copy with every line type touched still parses back to the same model.
    clone = sd.copy()
    clone.origin = clone.origin.next_version()
    clone.line_ending = "\r\n"
    for media in clone.media:
        media.set_direction("inactive")
        media.set_port(media.port)
    again = SessionDescription.parse(clone.to_bytes())
    assert again == clone
    assert again.to_bytes() == clone.to_bytes()


def _parse_and_touch(data: bytes) -> None:
    """Parse; on success the body must round-trip and every accessor may only raise 400."""
    try:
        sd = SessionDescription.parse(data)
    except RemoteProtocolError as exc:
        assert exc.status_hint == 400
        return
    assert sd.to_bytes() == data
    try:
        sd.validate()
        for media in sd.media:
            sd.effective_direction(media)
            is_hold(sd, media)
            intersect_formats(media, [RtpMap(0, "PCMU", 8000), RtpMap(96, "opus", 48000, 2)])
            for crypto in media.cryptos:
                crypto.has_valid_key_lengths()
                for key in crypto.keys:
                    _ = key.lifetime_packets
    except RemoteProtocolError as exc:
        assert exc.status_hint == 400


@settings(max_examples=500)
@given(st.binary(max_size=300))
@example(b"v=0")
@example(b"v=0\r\no=- 1 1 IN IP4 x\r\ns=\r\nt=0 0")
def test_arbitrary_bytes_only_raise_remote_errors(data: bytes) -> None:
    _parse_and_touch(data)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_a_valid_head(data: bytes) -> None:
    _parse_and_touch(make_sdp("m=audio 5000 RTP/AVP 0") + data)


@st.composite
def mutated_teams_sdp(draw: st.DrawFn) -> bytes:
    data = bytearray(TEAMS_SDP)
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "swap"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if action == "flip" and data:
            data[position] = draw(st.sampled_from(b" :/=\r\n\x00\xff0a9|;^-"))
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=4))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 8))]
        elif action == "truncate":
            del data[position:]
        else:
            lines = bytes(data).split(b"\r\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            data = bytearray(b"\r\n".join(lines))
    return bytes(data)


@settings(max_examples=1000)
@given(mutated_teams_sdp())
def test_mutated_teams_sdp_only_raises_remote_errors(data: bytes) -> None:
    _parse_and_touch(data)


@settings(max_examples=200)
@given(st.integers(0, len(TEAMS_SDP)))
def test_every_truncation_of_the_teams_sdp(length: int) -> None:
    _parse_and_touch(TEAMS_SDP[:length])
