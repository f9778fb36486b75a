from __future__ import annotations

import ipaddress
import json
import os
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

from sbcsim.report.pcap import (
    MTU,
    jsonl_lines,
    pcap_bytes,
    scenario_file_stem,
    write_jsonl,
    write_pcap,
    write_scenario_traces,
)
from sbcsim.testplan.results import PlanResult, TraceEntry

# --- an independent reader, so the tests do not trust the writer's own helpers -------------


@dataclass
class Frame:
    seconds: int
    micros: int
    ethertype: int
    version: int
    src: str
    dst: str
    proto: int
    ttl: int
    sport: int
    dport: int
    payload: bytes
    seq: int | None = None
    ack: int | None = None
    flags: int | None = None
    ip_total: int = 0
    l4_ok: bool = False
    l3_ok: bool = True


def _sum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = 0
    for (word,) in struct.iter_unpack("!H", data):
        total += word
        total = (total & 0xFFFF) + (total >> 16)
    return total


def read_pcap(data: bytes) -> tuple[bytes, list[Frame]]:
    header, rest = data[:24], data[24:]
    frames = []
    while rest:
        sec, usec, incl, orig = struct.unpack("<IIII", rest[:16])
        assert incl == orig
        raw, rest = rest[16 : 16 + incl], rest[16 + incl :]
        ethertype = struct.unpack("!H", raw[12:14])[0]
        packet = raw[14:]
        if ethertype == 0x0800:
            total, proto, ttl = struct.unpack("!H", packet[2:4])[0], packet[9], packet[8]
            src, dst = packet[12:16], packet[16:20]
            l4 = packet[20:total]
            pseudo = src + dst + struct.pack("!BBH", 0, proto, len(l4))
            l3_ok = _sum16(packet[:20]) == 0xFFFF
            version = 4
        else:
            assert ethertype == 0x86DD
            length, proto, ttl = struct.unpack("!HBB", packet[4:8])
            src, dst = packet[8:24], packet[24:40]
            l4 = packet[40 : 40 + length]
            total = 40 + length
            pseudo = src + dst + struct.pack("!I3xB", len(l4), proto)
            l3_ok, version = True, 6
        sport, dport = struct.unpack("!HH", l4[:4])
        frame = Frame(
            sec,
            usec,
            ethertype,
            version,
            str(ipaddress.ip_address(src)),
            str(ipaddress.ip_address(dst)),
            proto,
            ttl,
            sport,
            dport,
            payload=b"",
            ip_total=total,
            l3_ok=l3_ok,
        )
        frame.l4_ok = _sum16(pseudo + l4) == 0xFFFF
        if proto == 17:
            assert struct.unpack("!H", l4[4:6])[0] == len(l4)
            frame.payload = l4[8:]
        else:
            assert proto == 6
            frame.seq, frame.ack = struct.unpack("!II", l4[4:12])
            offset_flags = struct.unpack("!H", l4[12:14])[0]
            frame.flags = offset_flags & 0x3F
            frame.payload = l4[(offset_flags >> 12) * 4 :]
        frames.append(frame)
    return header, frames


# --- fixtures ------------------------------------------------------------------------------


def invite_of_size(
    sip: SimpleNamespace, size: int, uri: str = "sip:+15550200@sbc.example.com"
) -> bytes:
    bare = sip.request(
        "INVITE", uri, via="SIP/2.0/TCP 192.0.2.10:40000", body=sip.SDP, extra=b"X-Pad: \r\n"
    )
    data: bytes = sip.request(
        "INVITE",
        uri,
        via="SIP/2.0/TCP 192.0.2.10:40000",
        body=sip.SDP,
        extra=b"X-Pad: " + b"p" * (size - len(bare)) + b"\r\n",
    )
    assert len(data) == size
    return data


def interop_trace(sip: SimpleNamespace) -> list[TraceEntry]:
    """INVITE over UDP, 200 over TLS, an IPv6 OPTIONS, a 1,600-byte INVITE over TCP."""
    tls_via = "SIP/2.0/TLS sbc.example.com:5061"
    options = sip.request(
        "OPTIONS", "sip:[2001:db8::20]:5060", via="SIP/2.0/UDP [2001:db8::10]:5060"
    )
    return [
        TraceEntry(
            0,
            0.0,
            sip.PSTN,
            sip.SBC_UDP,
            "udp",
            sip.request("INVITE", "sip:+15550200@sbc", body=sip.SDP),
            "pstn",
            "sbc",
        ),
        TraceEntry(
            1,
            0.25,
            sip.MS,
            sip.SBC_TLS,
            "tls",
            sip.response(200, "OK", "INVITE", via=tls_via),
            "ms",
            "sbc",
            connection_id=3,
        ),
        TraceEntry(2, 1.5, ("2001:db8::10", 5060), ("2001:db8::20", 5060), "udp", options),
        TraceEntry(
            3,
            2.000001,
            ("192.0.2.10", 40000),
            ("192.0.2.20", 5060),
            "tcp",
            invite_of_size(sip, 1600),
            connection_id=4,
        ),
    ]


# --- structure -----------------------------------------------------------------------------


def test_global_header_is_classic_libpcap_ethernet(trace: list[TraceEntry]) -> None:
    header, _ = read_pcap(pcap_bytes(trace))
    assert header == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262_144, 1)
    assert pcap_bytes([]) == header


def test_one_frame_per_message_with_virtual_timestamps(trace: list[TraceEntry]) -> None:
    _, frames = read_pcap(pcap_bytes(trace))
    assert [(f.seconds, f.micros) for f in frames] == [
        (0, 0),
        (0, 20_000),
        (0, 50_000),
        (1, 250_000),
        (1, 270_000),
        (1, 300_000),
    ]
    assert [f.payload for f in frames] == [e.data for e in trace]
    assert all(f.l3_ok and f.l4_ok for f in frames)
    assert all(f.ttl == 64 for f in frames)


def test_udp_message(trace: list[TraceEntry]) -> None:
    _, frames = read_pcap(pcap_bytes(trace))
    first = frames[0]
    assert (first.ethertype, first.version, first.proto) == (0x0800, 4, 17)
    assert (first.src, first.sport, first.dst, first.dport) == (
        "192.0.2.10",
        5060,
        "192.0.2.20",
        5060,
    )
    assert first.ip_total == 20 + 8 + len(trace[0].data)


def test_tls_leg_is_plain_tcp_with_per_connection_sequence_numbers(trace: list[TraceEntry]) -> None:
    _, frames = read_pcap(pcap_bytes(trace))
    out, trying, ok = frames[1], frames[2], frames[3]
    assert (out.proto, out.sport, out.dport) == (6, 40001, 5061)
    assert (trying.sport, trying.dport) == (5061, 40001)
    assert {out.flags, trying.flags, ok.flags} == {0x18}  # PSH|ACK
    assert out.seq is not None and trying.seq is not None
    assert trying.ack == (out.seq + len(trace[1].data)) & 0xFFFFFFFF
    assert ok.seq == (trying.seq + len(trace[2].data)) & 0xFFFFFFFF
    assert ok.ack == trying.ack
    assert out.ack == trying.seq  # nothing received from Microsoft yet


def test_large_stream_message_is_cut_into_mss_segments(sip: SimpleNamespace) -> None:
    big = invite_of_size(sip, 3000)
    trace = [
        TraceEntry(
            0, 2.0, ("192.0.2.10", 40000), ("192.0.2.20", 5060), "tcp", big, connection_id=1
        ),
        TraceEntry(
            1, 2.5, ("2001:db8::1", 40000), ("2001:db8::2", 5060), "tls", big, connection_id=2
        ),
    ]
    _, frames = read_pcap(pcap_bytes(trace))
    assert [len(f.payload) for f in frames] == [1460, 1460, 80, 1440, 1440, 120]
    assert [f.ip_total for f in frames] == [1500, 1500, 120, 1500, 1500, 180]
    assert max(f.ip_total for f in frames) == MTU
    v4 = frames[:3]
    assert [f.seq for f in v4] == [v4[0].seq, v4[0].seq + 1460, v4[0].seq + 2920]  # type: ignore[operator]
    assert b"".join(f.payload for f in v4) == big
    assert b"".join(f.payload for f in frames[3:]) == big
    assert {(f.seconds, f.micros) for f in v4} == {(2, 0)}


def test_udp_datagram_bigger_than_the_mtu_stays_one_packet(sip: SimpleNamespace) -> None:
    big = invite_of_size(sip, 4000)
    _, frames = read_pcap(pcap_bytes([TraceEntry(0, 0.0, sip.PSTN, sip.SBC_UDP, "udp", big)]))
    assert len(frames) == 1
    assert frames[0].payload == big
    assert frames[0].l4_ok


def test_ipv6_and_mixed_families_and_names(sip: SimpleNamespace) -> None:
    msg = sip.request("OPTIONS", "sip:x")
    trace = [
        TraceEntry(0, 0.0, ("2001:db8::10", 5060), ("2001:db8::20", 5060), "udp", msg),
        TraceEntry(1, 0.0, ("192.0.2.1", 5060), ("2001:db8::20", 5060), "udp", msg),
        TraceEntry(2, 0.0, ("sbc.example.com", 5061), ("teams.example.com", 5061), "tcp", msg),
        TraceEntry(3, 0.0, ("teams.example.com", 5061), ("sbc.example.com", 5061), "tcp", msg),
        TraceEntry(4, 0.0, ("[::1]", 5060), ("::1", 5062), "udp", msg),
    ]
    _, frames = read_pcap(pcap_bytes(trace))
    assert [(f.ethertype, f.src, f.dst) for f in frames] == [
        (0x86DD, "2001:db8::10", "2001:db8::20"),
        (0x86DD, "::ffff:c000:201", "2001:db8::20"),
        (0x0800, "198.18.0.1", "198.18.0.2"),
        (0x0800, "198.18.0.2", "198.18.0.1"),
        (0x86DD, "::1", "::1"),
    ]
    assert all(f.l4_ok for f in frames)


def test_a_new_connection_on_the_same_ports_gets_new_sequence_numbers(sip: SimpleNamespace) -> None:
    msg = sip.request("OPTIONS", "sip:x")
    a, b = ("192.0.2.1", 40000), ("192.0.2.2", 5061)
    trace = [
        TraceEntry(0, 0.0, a, b, "tls", msg, connection_id=1),
        TraceEntry(1, 1.0, a, b, "tls", msg, connection_id=1),
        TraceEntry(2, 2.0, a, b, "tls", msg, connection_id=2),
    ]
    _, frames = read_pcap(pcap_bytes(trace))
    assert frames[1].seq == (frames[0].seq + len(msg)) & 0xFFFFFFFF  # type: ignore[operator]
    assert frames[2].seq not in (frames[0].seq, frames[1].seq)


def test_same_trace_same_bytes(
    tmp_path: Path, trace: list[TraceEntry], sip: SimpleNamespace
) -> None:
    rebuilt = [TraceEntry(**{f: getattr(e, f) for f in e.__slots__}) for e in trace]
    assert pcap_bytes(trace) == pcap_bytes(rebuilt)
    write_pcap(tmp_path / "a.pcap", trace)
    write_pcap(tmp_path / "b.pcap", rebuilt)
    assert (
        (tmp_path / "a.pcap").read_bytes()
        == (tmp_path / "b.pcap").read_bytes()
        == pcap_bytes(trace)
    )
    write_pcap(tmp_path / "i.pcap", interop_trace(sip))
    assert (tmp_path / "i.pcap").read_bytes() == pcap_bytes(interop_trace(sip))


# --- JSON lines ----------------------------------------------------------------------------


def test_jsonl(tmp_path: Path) -> None:
    trace = [
        TraceEntry(
            0,
            1.5,
            ("192.0.2.1", 5060),
            ("2001:db8::2", 5061),
            "tls",
            b"OPTIONS sip:x SIP/2.0\r\n\r\n",
            "sbc",
            "ms",
            9,
        ),
        TraceEntry(
            1, 2.0, ("192.0.2.2", 5060), ("192.0.2.1", 5060), "udp", b"\xff\r\n", dropped=True
        ),
    ]
    expected = [
        '{"index":0,"time":1.5,"src":["192.0.2.1",5060],"dst":["2001:db8::2",5061],'
        '"names":{"src":"sbc","dst":"ms"},"transport":"tls","connection_id":9,"dropped":false,'
        '"text":"OPTIONS sip:x SIP/2.0\\r\\n\\r\\n"}',
        '{"index":1,"time":2.0,"src":["192.0.2.2",5060],"dst":["192.0.2.1",5060],'
        '"names":{"src":"","dst":""},"transport":"udp","connection_id":null,"dropped":true,'
        '"text":"\ufffd\\r\\n"}',
    ]
    assert jsonl_lines(trace) == expected
    write_jsonl(tmp_path / "t.jsonl", trace)
    assert (tmp_path / "t.jsonl").read_bytes() == ("\n".join(expected) + "\n").encode()
    assert [json.loads(line)["index"] for line in expected] == [0, 1]


def test_scenario_traces_are_written_per_scenario(tmp_path: Path, plan: PlanResult) -> None:
    plan.scenarios[2].id = "dr/inbound basic"
    plan.scenarios[2].trace = list(plan.scenarios[0].trace)
    plan.scenarios[3].id = "dr:inbound:basic"
    plan.scenarios[3].trace = list(plan.scenarios[0].trace)
    written = write_scenario_traces(tmp_path / "out", plan)
    assert [p.name for p in written] == [
        "dr-inbound-basic.pcap",
        "dr-inbound-basic.jsonl",
        "dr-contact-fqdn.pcap",
        "dr-contact-fqdn.jsonl",
        "dr_inbound_basic.pcap",
        "dr_inbound_basic.jsonl",
        "dr_inbound_basic-2.pcap",
        "dr_inbound_basic-2.jsonl",
    ]
    assert written[0].read_bytes() == pcap_bytes(plan.scenarios[0].trace)
    assert scenario_file_stem("../etc/passwd") == "etc_passwd"
    assert scenario_file_stem("...") == "scenario"


# --- the real tshark -----------------------------------------------------------------------


def _tshark(binary: str, pcap: Path, home: Path, *args: str) -> list[list[str]]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "LC_ALL": "C",
    }
    done = subprocess.run(
        [binary, "-n", "-r", str(pcap), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [line.split("\t") for line in done.stdout.splitlines()]


@pytest.mark.interop
def test_tshark_decodes_every_message_as_sip(
    tmp_path: Path, sip: SimpleNamespace, require_peer: Callable[[str], str]
) -> None:
    tshark = require_peer("tshark")
    pcap = tmp_path / "f.pcap"
    write_pcap(pcap, interop_trace(sip))
    fields = ["-T", "fields", "-e", "sip.Method", "-e", "sip.Status-Code", "-e", "frame.number"]
    assert _tshark(tshark, pcap, tmp_path, "-Y", "sip", *fields) == [
        ["INVITE", "", "1"],
        ["", "200", "2"],
        ["OPTIONS", "", "3"],
        # frame 4 is the first 1,460 bytes of the big INVITE; frame 5 completes it
        ["INVITE", "", "5"],
    ]
    assert _tshark(tshark, pcap, tmp_path, *fields) == [
        ["INVITE", "", "1"],
        ["", "200", "2"],
        ["OPTIONS", "", "3"],
        ["", "", "4"],
        ["INVITE", "", "5"],
    ]
    # Addresses, ports, reassembly and every checksum as Wireshark sees them.
    details = _tshark(
        tshark,
        pcap,
        tmp_path,
        "-o", "ip.check_checksum:TRUE",
        "-o", "udp.check_checksum:TRUE",
        "-o", "tcp.check_checksum:TRUE",
        "-T", "fields",
        "-e", "frame.time_epoch",
        "-e", "ip.src", "-e", "ipv6.src",
        "-e", "udp.srcport", "-e", "tcp.srcport", "-e", "tcp.dstport",
        "-e", "ip.checksum.status", "-e", "udp.checksum.status", "-e", "tcp.checksum.status",
        "-e", "tcp.reassembled.length", "-e", "sip.CSeq",
    )  # fmt: skip
    assert details == [
        ["0.000000000", "192.0.2.10", "", "5060", "", "", "1", "1", "", "", "1 INVITE"],
        ["0.250000000", "52.114.148.0", "", "", "5061", "40001", "1", "", "1", "", "1 INVITE"],
        ["1.500000000", "", "2001:db8::10", "5060", "", "", "", "1", "", "", "1 OPTIONS"],
        ["2.000001000", "192.0.2.10", "", "", "40000", "5060", "1", "", "1", "", ""],
        ["2.000001000", "192.0.2.10", "", "", "40000", "5060", "1", "", "1", "1600", "1 INVITE"],
    ]
