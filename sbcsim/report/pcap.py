"""A scenario's trace as a classic libpcap file (for Wireshark/tshark) and as JSON lines.

Every :class:`~sbcsim.testplan.results.TraceEntry` becomes an Ethernet frame with a real IPv4 or
IPv6 header (chosen by the addresses) and a UDP or TCP header, so Wireshark's SIP dissector picks
the message up by port exactly as it would on a live capture.  The bytes depend only on the trace:
timestamps are the virtual times counted from the Unix epoch, MAC addresses and TCP initial
sequence numbers are derived from the addresses, and IP identification numbers count frames.
That keeps a pcap as reproducible as the verdict it documents.

TLS legs are written as the *decrypted* SIP over plain TCP on the real ports.  A capture of the
ciphertext would be useless to the person debugging the call, and the trace never had it anyway
(the memory network carries plaintext with a TLS identity beside it).

A stream message larger than one Ethernet MTU is split into several TCP segments with
consecutive sequence numbers, as a real stack would; tshark reassembles them by Content-Length.
A UDP datagram is written as one IP packet (no IP fragmentation), however large: pcap does not
enforce an MTU and tshark decodes such frames fine.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sbcsim.testplan.results import PlanResult, TraceEntry

__all__ = [
    "LINKTYPE_ETHERNET",
    "MTU",
    "jsonl_lines",
    "pcap_bytes",
    "scenario_file_stem",
    "write_jsonl",
    "write_pcap",
    "write_scenario_traces",
]

LINKTYPE_ETHERNET = 1
#: The link MTU TCP segments are cut to (standard Ethernet).
MTU = 1500
_SNAPLEN = 262_144
_PCAP_MAGIC = 0xA1B2C3D4  # microsecond timestamps
_ETHERTYPE_IPV4 = 0x0800
_ETHERTYPE_IPV6 = 0x86DD
_PROTO_TCP = 6
_PROTO_UDP = 17
_TCP_PSH_ACK = 0x18
_TCP_WINDOW = 65_535
_TTL = 64
#: Largest UDP payload an IPv4 packet can carry (65535 - 20 - 8); larger datagrams are cut.
_MAX_UDP_PAYLOAD = 65_507

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def pcap_bytes(trace: Iterable[TraceEntry]) -> bytes:
    """The whole pcap file for ``trace`` (header + one or more frames per entry)."""
    writer = _PcapBuilder()
    for entry in trace:
        writer.add(entry)
    return writer.getvalue()


def write_pcap(path: str | Path, trace: Iterable[TraceEntry]) -> None:
    """Write ``trace`` as a libpcap file at ``path`` (LINKTYPE_ETHERNET, microsecond stamps)."""
    Path(path).write_bytes(pcap_bytes(trace))


def jsonl_lines(trace: Iterable[TraceEntry]) -> list[str]:
    """One compact JSON object per message, in trace order (no trailing newlines)."""
    lines = []
    for entry in trace:
        record = {
            "index": entry.index,
            "time": round(entry.time, 6),
            "src": [entry.src[0], entry.src[1]],
            "dst": [entry.dst[0], entry.dst[1]],
            "names": {"src": entry.src_name, "dst": entry.dst_name},
            "transport": entry.transport,
            "connection_id": entry.connection_id,
            "dropped": entry.dropped,
            "text": entry.data.decode("utf-8", "replace"),
        }
        lines.append(json.dumps(record, ensure_ascii=False, separators=(",", ":")))
    return lines


def write_jsonl(path: str | Path, trace: Iterable[TraceEntry]) -> None:
    """Write ``trace`` as JSON lines (UTF-8, ``\\n`` after every object)."""
    text = "".join(line + "\n" for line in jsonl_lines(trace))
    Path(path).write_text(text, encoding="utf-8", newline="\n")


def scenario_file_stem(scenario_id: str) -> str:
    """A file-name-safe form of a scenario id (``dr/options-ping`` -> ``dr_options-ping``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", scenario_id).strip("._") or "scenario"


def write_scenario_traces(directory: str | Path, result: PlanResult) -> list[Path]:
    """``<scenario>.pcap`` and ``<scenario>.jsonl`` for every scenario with a trace.

    Returns the files written, in scenario order.  Two ids that clean up to the same stem get
    ``-2``, ``-3`` ... suffixes in scenario order, so no file overwrites another.
    """
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    written: list[Path] = []
    for scenario in result.scenarios:
        stem = base = scenario_file_stem(scenario.id)
        serial = 1
        while stem in used:
            serial += 1
            stem = f"{base}-{serial}"
        used.add(stem)
        if not scenario.trace:
            continue
        pcap, jsonl = folder / f"{stem}.pcap", folder / f"{stem}.jsonl"
        write_pcap(pcap, scenario.trace)
        write_jsonl(jsonl, scenario.trace)
        written += [pcap, jsonl]
    return written


@dataclass(slots=True)
class _Direction:
    """One direction of one TCP connection: the next sequence number to send."""

    next_seq: int


class _PcapBuilder:
    """Accumulates frames; holds the per-trace state (IP ids, TCP sequence numbers, name map)."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = [
            struct.pack("<IHHiIII", _PCAP_MAGIC, 2, 4, 0, 0, _SNAPLEN, LINKTYPE_ETHERNET)
        ]
        self._ip_id = 0
        self._tcp: dict[tuple[object, ...], _Direction] = {}
        self._synthetic: dict[str, ipaddress.IPv4Address] = {}

    def getvalue(self) -> bytes:
        return b"".join(self._chunks)

    def add(self, entry: TraceEntry) -> None:
        src_ip, dst_ip = self._addresses(entry.src[0], entry.dst[0])
        src_port, dst_port = entry.src[1] & 0xFFFF, entry.dst[1] & 0xFFFF
        stamp = _timestamp(entry.time)
        if entry.transport.lower() == "udp":
            payload = entry.data[:_MAX_UDP_PAYLOAD]
            segment = _udp(src_ip, dst_ip, src_port, dst_port, payload)
            self._frame(stamp, src_ip, dst_ip, _PROTO_UDP, segment)
            return
        # tcp and tls (decrypted, see the module docstring)
        header_room = 20 if src_ip.version == 4 else 40
        mss = MTU - header_room - 20
        forward, backward = self._connection(entry, src_ip, dst_ip, src_port, dst_port)
        data = entry.data
        pieces = [data[i : i + mss] for i in range(0, len(data), mss)] or [b""]
        for piece in pieces:
            segment = _tcp(
                src_ip,
                dst_ip,
                src_port,
                dst_port,
                seq=forward.next_seq,
                ack=backward.next_seq,
                payload=piece,
            )
            forward.next_seq = (forward.next_seq + len(piece)) & 0xFFFFFFFF
            self._frame(stamp, src_ip, dst_ip, _PROTO_TCP, segment)

    def _connection(
        self,
        entry: TraceEntry,
        src_ip: IPAddress,
        dst_ip: IPAddress,
        src_port: int,
        dst_port: int,
    ) -> tuple[_Direction, _Direction]:
        """Both directions of the connection ``entry`` travels on, created on first use."""
        a = (src_ip.packed, src_port)
        b = (dst_ip.packed, dst_port)
        key = (entry.connection_id, *sorted((a, b)))
        directions = []
        for one, other in ((a, b), (b, a)):
            dkey = (*key, one)
            if dkey not in self._tcp:
                self._tcp[dkey] = _Direction(_initial_sequence(key, one, other))
            directions.append(self._tcp[dkey])
        return directions[0], directions[1]

    def _addresses(self, src: str, dst: str) -> tuple[IPAddress, IPAddress]:
        """Both addresses in one IP family (IPv4 mapped into IPv6 when the families differ)."""
        s, d = self._address(src), self._address(dst)
        if s.version != d.version:
            s, d = _as_v6(s), _as_v6(d)
        return s, d

    def _address(self, host: str) -> IPAddress:
        """``host`` as an IP address; a name gets a stable one from 198.18.0.0/15 (RFC 2544)."""
        try:
            return ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
        except ValueError:
            pass
        if host not in self._synthetic:
            base = int(ipaddress.IPv4Address("198.18.0.0"))
            self._synthetic[host] = ipaddress.IPv4Address(base + 1 + len(self._synthetic))
        return self._synthetic[host]

    def _frame(
        self, stamp: tuple[int, int], src: IPAddress, dst: IPAddress, proto: int, segment: bytes
    ) -> None:
        if src.version == 4:
            self._ip_id = (self._ip_id + 1) & 0xFFFF
            packet = _ipv4(src, dst, proto, self._ip_id, segment)
            ethertype = _ETHERTYPE_IPV4
        else:
            packet = _ipv6(src, dst, proto, segment)
            ethertype = _ETHERTYPE_IPV6
        frame = _mac(dst) + _mac(src) + struct.pack("!H", ethertype) + packet
        captured = frame[:_SNAPLEN]
        self._chunks.append(struct.pack("<IIII", stamp[0], stamp[1], len(captured), len(frame)))
        self._chunks.append(captured)


def _timestamp(time: float) -> tuple[int, int]:
    micros = max(0, round(time * 1_000_000))
    seconds, micro = divmod(micros, 1_000_000)
    return seconds & 0xFFFFFFFF, micro


def _as_v6(address: IPAddress) -> ipaddress.IPv6Address:
    if isinstance(address, ipaddress.IPv6Address):
        return address
    return ipaddress.IPv6Address("::ffff:" + str(address))


def _mac(address: IPAddress) -> bytes:
    """A locally administered unicast MAC derived from the IP, so each host keeps one."""
    return b"\x02" + hashlib.sha256(address.packed).digest()[:5]


def _initial_sequence(key: Sequence[object], one: object, other: object) -> int:
    digest = hashlib.sha256(repr((tuple(key), one, other)).encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\x00"
    words: tuple[int, ...] = struct.unpack(f"!{len(data) // 2}H", data)
    total = sum(words)
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src: IPAddress, dst: IPAddress, proto: int, length: int) -> bytes:
    if src.version == 4:
        return src.packed + dst.packed + struct.pack("!BBH", 0, proto, length)
    return src.packed + dst.packed + struct.pack("!I3xB", length, proto)


def _udp(src: IPAddress, dst: IPAddress, sport: int, dport: int, payload: bytes) -> bytes:
    length = 8 + len(payload)
    header = struct.pack("!HHHH", sport, dport, length, 0)
    checksum = _checksum(_pseudo_header(src, dst, _PROTO_UDP, length) + header + payload)
    # RFC 768: a computed zero is sent as all ones (zero means "no checksum").
    checksum = checksum or 0xFFFF
    return struct.pack("!HHHH", sport, dport, length, checksum) + payload


def _tcp(
    src: IPAddress,
    dst: IPAddress,
    sport: int,
    dport: int,
    *,
    seq: int,
    ack: int,
    payload: bytes,
) -> bytes:
    offset_flags = (5 << 12) | _TCP_PSH_ACK
    header = struct.pack("!HHIIHHHH", sport, dport, seq, ack, offset_flags, _TCP_WINDOW, 0, 0)
    pseudo = _pseudo_header(src, dst, _PROTO_TCP, len(header) + len(payload))
    checksum = _checksum(pseudo + header + payload)
    header = header[:16] + struct.pack("!H", checksum) + header[18:]
    return header + payload


def _ipv4(
    src: ipaddress.IPv4Address | ipaddress.IPv6Address,
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
    proto: int,
    ident: int,
    payload: bytes,
) -> bytes:
    total = 20 + len(payload)
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, total, ident, 0x4000, _TTL, proto, 0, src.packed, dst.packed
    )
    checksum = _checksum(header)
    return header[:10] + struct.pack("!H", checksum) + header[12:] + payload


def _ipv6(
    src: ipaddress.IPv4Address | ipaddress.IPv6Address,
    dst: ipaddress.IPv4Address | ipaddress.IPv6Address,
    proto: int,
    payload: bytes,
) -> bytes:
    header = struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, _TTL, src.packed, dst.packed)
    return header + payload
