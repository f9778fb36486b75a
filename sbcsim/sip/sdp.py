"""SDP bodies: model, parser and serializer (RFC 4566/8866), plus offer/answer helpers (RFC 3264).

Every Teams call carries an SDP offer and an answer, and an SBC under test rewrites them (address,
port, crypto, codecs).  The lab has to read exactly what the SBC sent and, when it only forwards a
body, send back exactly what it read.  Hence the two promises of this module:

* **Fidelity.**  ``SessionDescription.parse(data).to_bytes() == data`` for every ``data`` that
  parses: line order (even where it breaks the RFC order), unknown ``x=`` lines and attributes,
  spacing inside structured lines, CRLF or bare LF (even mixed), a missing final line ending and
  trailing blank lines are all kept.  After a mutation the untouched lines keep their text and
  their position; new lines go where RFC 4566 puts them.
* **One failure mode.**  Bytes from the wire only ever raise
  :class:`~sbcsim.errors.RemoteProtocolError` (``status_hint=400``), from :meth:`parse` or, for
  a malformed attribute value, from the typed accessor that interprets it.  :meth:`validate`
  runs every accessor at once.  Misuse of the builder API raises
  :class:`~sbcsim.errors.LocalProtocolError`.

Shape of the model: a :class:`SessionDescription` and its :class:`MediaDescription` sections are
mutable builders whose ``list`` fields may be edited in place; every value stored in them
(:class:`Origin`, :class:`Connection`, :class:`Attribute`, :class:`Timing` ...) and every typed
view (:class:`RtpMap`, :class:`Crypto`, :class:`Candidate` ...) is a frozen value.  Attributes stay
an ordered list of ``Attribute(name, value)``; typed views are computed on access, which keeps
parsing a large Teams offer cheap.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import ClassVar

from sbcsim.errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "STATIC_PAYLOAD_TYPES",
    "Attribute",
    "Bandwidth",
    "Candidate",
    "Connection",
    "Crypto",
    "CryptoKey",
    "Direction",
    "Fmtp",
    "Line",
    "MediaDescription",
    "Origin",
    "RtcpAddress",
    "RtpMap",
    "SessionDescription",
    "Timing",
    "answer_direction",
    "intersect_formats",
    "is_hold",
]

_CRLF = "\r\n"
_MAX_DIGITS = 20  # 64-bit NTP times and session versions fit; also keeps int() cheap


def _bad(msg: str) -> RemoteProtocolError:
    return RemoteProtocolError(msg, status_hint=400)


def _show(text: str) -> str:
    """Quote a piece of peer input for an error message without echoing a whole body."""
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _int(text: str, what: str, maximum: int | None = None) -> int:
    # str.isdigit() alone accepts non-ASCII digits and int() accepts "+1", " 1" and "1_0".
    if not (0 < len(text) <= _MAX_DIGITS and text.isascii() and text.isdigit()):
        raise _bad(f"{what} is not a number: {_show(text)}")
    number = int(text)
    if maximum is not None and number > maximum:
        raise _bad(f"{what} out of range: {_show(text)}")
    return number


def _tokens(value: str) -> list[str]:
    """Split a structured value on spaces; runs of spaces are tolerated (the raw text is kept)."""
    return [token for token in value.split(" ") if token]


# --------------------------------------------------------------------------------------------
# Values of the structured lines
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=``.  ``sess_id`` is opaque text; ``sess_version`` is a number an offerer increments."""

    username: str
    sess_id: str
    sess_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "127.0.0.1"

    @classmethod
    def parse(cls, value: str) -> Origin:
        tokens = _tokens(value)
        if len(tokens) != 6:
            raise _bad(f"o= needs 6 fields, got {len(tokens)}: {_show(value)}")
        username, sess_id, version, nettype, addrtype, address = tokens
        return cls(username, sess_id, _int(version, "o= sess-version"), nettype, addrtype, address)

    def next_version(self) -> Origin:
        """The origin of a modified offer (RFC 3264 §8: the version grows by one)."""
        return replace(self, sess_version=self.sess_version + 1)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.sess_id} {self.sess_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=``.  ``address`` is kept as written, multicast ``/ttl/count`` suffix included."""

    nettype: str
    addrtype: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Connection:
        tokens = _tokens(value)
        if len(tokens) != 3:
            raise _bad(f"c= needs 3 fields, got {len(tokens)}: {_show(value)}")
        return cls(*tokens)

    @classmethod
    def for_address(cls, address: str, addrtype: str | None = None) -> Connection:
        """``IN IP4``/``IN IP6`` for ``address`` (IPv6 recognised by its colon)."""
        return cls("IN", addrtype or ("IP6" if ":" in address else "IP4"), address)

    @property
    def host(self) -> str:
        """The address without a multicast ``/ttl/count`` suffix."""
        return self.address.split("/", 1)[0]

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>``, e.g. ``CT:10000000`` (kbit/s) or ``AS:64``."""

    bwtype: str
    bandwidth: int

    @classmethod
    def parse(cls, value: str) -> Bandwidth:
        bwtype, sep, amount = value.partition(":")
        if not sep or not bwtype:
            raise _bad(f"b= is not <type>:<bandwidth>: {_show(value)}")
        return cls(bwtype, _int(amount, "b= bandwidth"))

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(frozen=True, slots=True)
class Timing:
    """One ``t=`` line with the ``r=`` lines that follow it (kept as text)."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Line:
    """A line whose type letter this module does not interpret; kept where it was read."""

    type: str
    value: str

    def __str__(self) -> str:
        return f"{self.type}={self.value}"


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=<name>`` (``value is None``) or ``a=<name>:<value>`` (the value may be empty)."""

    name: str
    value: str | None = None

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


class Direction(StrEnum):
    """Media direction attributes (RFC 3264 §5.1); the value is the attribute name."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"


_DIRECTIONS: Mapping[str, Direction] = {d.value: d for d in Direction}

# --------------------------------------------------------------------------------------------
# Typed attribute views
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RtpMap:
    """``a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>]``."""

    NAME: ClassVar[str] = "rtpmap"

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int | None = None

    @classmethod
    def parse(cls, value: str) -> RtpMap:
        tokens = _tokens(value)
        if len(tokens) != 2:
            raise _bad(f"a=rtpmap is not '<pt> <encoding>/<rate>': {_show(value)}")
        parts = tokens[1].split("/")
        if len(parts) not in (2, 3) or not parts[0]:
            raise _bad(f"a=rtpmap encoding is not '<name>/<rate>[/<channels>]': {_show(value)}")
        return cls(
            _int(tokens[0], "a=rtpmap payload type", 127),
            parts[0],
            _int(parts[1], "a=rtpmap clock rate"),
            _int(parts[2], "a=rtpmap channels") if len(parts) == 3 else None,
        )

    def matches(self, other: RtpMap) -> bool:
        """Same codec regardless of payload type number (name case-insensitive, RFC 4855)."""
        return (
            self.encoding.lower() == other.encoding.lower()
            and self.clock_rate == other.clock_rate
            and (self.channels or 1) == (other.channels or 1)
        )

    def to_attribute(self) -> Attribute:
        return Attribute(self.NAME, str(self))

    def __str__(self) -> str:
        tail = "" if self.channels is None else f"/{self.channels}"
        return f"{self.payload_type} {self.encoding}/{self.clock_rate}{tail}"


@dataclass(frozen=True, slots=True)
class Fmtp:
    """``a=fmtp:<format> <parameters>``; the parameters are format-specific text."""

    NAME: ClassVar[str] = "fmtp"

    format: str
    parameters: str

    @classmethod
    def parse(cls, value: str) -> Fmtp:
        fmt, _, parameters = value.partition(" ")
        if not fmt:
            raise _bad(f"a=fmtp has no format: {_show(value)}")
        return cls(fmt, parameters.lstrip(" "))

    def parameter_map(self) -> dict[str, str | None]:
        """``a=b;c`` as ``{"a": "b", "c": None}`` (``0-16`` of telephone-event gives one key)."""
        result: dict[str, str | None] = {}
        for item in self.parameters.split(";"):
            key, sep, val = item.strip().partition("=")
            if key:
                result[key] = val if sep else None
        return result

    def to_attribute(self) -> Attribute:
        return Attribute(self.NAME, str(self))

    def __str__(self) -> str:
        return f"{self.format} {self.parameters}"


# Key-and-salt lengths in bytes of the SDES suites (RFC 4568 §6.2, RFC 6188, RFC 7714).
_SRTP_KEY_SALT_LENGTHS: Mapping[str, int] = {
    "AES_CM_128_HMAC_SHA1_80": 30,
    "AES_CM_128_HMAC_SHA1_32": 30,
    "F8_128_HMAC_SHA1_80": 30,
    "AES_192_CM_HMAC_SHA1_80": 38,
    "AES_192_CM_HMAC_SHA1_32": 38,
    "AES_256_CM_HMAC_SHA1_80": 46,
    "AES_256_CM_HMAC_SHA1_32": 46,
    "AEAD_AES_128_GCM": 28,
    "AEAD_AES_256_GCM": 44,
}


def _b64decode(text: str) -> bytes:
    # Some stacks drop the padding of 46-byte AES-256 keys; accept both spellings.
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise _bad(f"a=crypto key is not base64: {_show(text)}") from None


@dataclass(frozen=True, slots=True)
class CryptoKey:
    """One key parameter: ``inline:<key||salt base64>[|<lifetime>][|<mki>:<mki length>]``.

    For a method other than ``inline`` the whole key info is in ``key_salt``.
    """

    method: str
    key_salt: str
    lifetime: str | None = None
    mki_value: int | None = None
    mki_length: int | None = None

    @classmethod
    def parse(cls, text: str) -> CryptoKey:
        method, sep, info = text.partition(":")
        if not sep or not method or not info:
            raise _bad(f"a=crypto key parameter is not <method>:<info>: {_show(text)}")
        if method != "inline":
            return cls(method, info)
        parts = info.split("|")
        if len(parts) > 3 or not parts[0]:
            raise _bad(f"a=crypto inline key is malformed: {_show(text)}")
        _b64decode(parts[0])
        lifetime: str | None = None
        mki: tuple[int, int] | None = None
        for part in parts[1:]:
            if ":" in part:
                if mki is not None:
                    raise _bad(f"a=crypto key has two MKIs: {_show(text)}")
                value, _, length = part.partition(":")
                mki = (_int(value, "a=crypto MKI"), _int(length, "a=crypto MKI length", 128))
            else:
                if lifetime is not None or mki is not None:
                    raise _bad(f"a=crypto lifetime misplaced: {_show(text)}")
                if part.startswith("2^"):
                    _int(part[2:], "a=crypto lifetime exponent", 64)
                else:
                    _int(part, "a=crypto lifetime")
                lifetime = part
        return cls(
            method,
            parts[0],
            lifetime,
            None if mki is None else mki[0],
            None if mki is None else mki[1],
        )

    def key_salt_bytes(self) -> bytes:
        """The decoded master key followed by the master salt."""
        return _b64decode(self.key_salt)

    @property
    def lifetime_packets(self) -> int | None:
        """The lifetime as a packet count (``2^31`` -> 2147483648)."""
        if self.lifetime is None:
            return None
        if self.lifetime.startswith("2^"):
            return 1 << int(self.lifetime[2:])
        return int(self.lifetime)

    def __str__(self) -> str:
        text = f"{self.method}:{self.key_salt}"
        if self.lifetime is not None:
            text += f"|{self.lifetime}"
        if self.mki_value is not None:
            text += f"|{self.mki_value}:{self.mki_length}"
        return text


@dataclass(frozen=True, slots=True)
class Crypto:
    """``a=crypto:<tag> <suite> <key-params> [<session-params>...]`` (RFC 4568 SDES)."""

    NAME: ClassVar[str] = "crypto"
    KEY_SALT_LENGTHS: ClassVar[Mapping[str, int]] = _SRTP_KEY_SALT_LENGTHS

    tag: int
    suite: str
    keys: tuple[CryptoKey, ...]
    session_params: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> Crypto:
        tokens = _tokens(value)
        if len(tokens) < 3:
            raise _bad(f"a=crypto needs tag, suite and key: {_show(value)}")
        return cls(
            _int(tokens[0], "a=crypto tag", 999_999_999),
            tokens[1],
            tuple(CryptoKey.parse(part) for part in tokens[2].split(";")),
            tuple(tokens[3:]),
        )

    def has_valid_key_lengths(self) -> bool:
        """False when an inline key of a known suite has the wrong size (unknown suites: True)."""
        expected = self.KEY_SALT_LENGTHS.get(self.suite)
        if expected is None:
            return True
        return all(
            len(key.key_salt_bytes()) == expected for key in self.keys if key.method == "inline"
        )

    def to_attribute(self) -> Attribute:
        return Attribute(self.NAME, str(self))

    def __str__(self) -> str:
        keys = ";".join(str(key) for key in self.keys)
        return " ".join([str(self.tag), self.suite, keys, *self.session_params])


@dataclass(frozen=True, slots=True)
class Candidate:
    """``a=candidate:`` (RFC 8839 §5.1; also Microsoft's ``TCP-PASS``/``TCP-ACT`` transports)."""

    NAME: ClassVar[str] = "candidate"

    foundation: str
    component: int
    transport: str
    priority: int
    address: str
    port: int
    type: str
    related_address: str | None = None
    related_port: int | None = None
    extensions: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, value: str) -> Candidate:
        tokens = _tokens(value)
        if len(tokens) < 8 or tokens[6] != "typ" or len(tokens) % 2:
            raise _bad(f"a=candidate is malformed: {_show(value)}")
        related_address: str | None = None
        related_port: int | None = None
        extensions: list[tuple[str, str]] = []
        for i in range(8, len(tokens), 2):
            name, val = tokens[i], tokens[i + 1]
            if name == "raddr":
                related_address = val
            elif name == "rport":
                related_port = _int(val, "a=candidate rport", 65535)
            else:
                extensions.append((name, val))
        return cls(
            tokens[0],
            _int(tokens[1], "a=candidate component", 256),
            tokens[2],
            _int(tokens[3], "a=candidate priority", 2**32 - 1),
            tokens[4],
            _int(tokens[5], "a=candidate port", 65535),
            tokens[7],
            related_address,
            related_port,
            tuple(extensions),
        )

    def to_attribute(self) -> Attribute:
        return Attribute(self.NAME, str(self))

    def __str__(self) -> str:
        parts = [
            self.foundation,
            str(self.component),
            self.transport,
            str(self.priority),
            self.address,
            str(self.port),
            "typ",
            self.type,
        ]
        if self.related_address is not None:
            parts += ["raddr", self.related_address]
        if self.related_port is not None:
            parts += ["rport", str(self.related_port)]
        for name, val in self.extensions:
            parts += [name, val]
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class RtcpAddress:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605)."""

    NAME: ClassVar[str] = "rtcp"

    port: int
    connection: Connection | None = None

    @classmethod
    def parse(cls, value: str) -> RtcpAddress:
        tokens = _tokens(value)
        if len(tokens) not in (1, 4):
            raise _bad(f"a=rtcp is not '<port> [IN IP4 <address>]': {_show(value)}")
        port = _int(tokens[0], "a=rtcp port", 65535)
        return cls(port, Connection(*tokens[1:]) if len(tokens) == 4 else None)

    def to_attribute(self) -> Attribute:
        return Attribute(self.NAME, str(self))

    def __str__(self) -> str:
        return str(self.port) if self.connection is None else f"{self.port} {self.connection}"


# RFC 3551 table 4 and 5 (audio with one channel leaves ``channels`` out, as rtpmap usually does).
STATIC_PAYLOAD_TYPES: Mapping[int, RtpMap] = {
    rtpmap.payload_type: rtpmap
    for rtpmap in (
        RtpMap(0, "PCMU", 8000),
        RtpMap(3, "GSM", 8000),
        RtpMap(4, "G723", 8000),
        RtpMap(5, "DVI4", 8000),
        RtpMap(6, "DVI4", 16000),
        RtpMap(7, "LPC", 8000),
        RtpMap(8, "PCMA", 8000),
        RtpMap(9, "G722", 8000),
        RtpMap(10, "L16", 44100, 2),
        RtpMap(11, "L16", 44100),
        RtpMap(12, "QCELP", 8000),
        RtpMap(13, "CN", 8000),
        RtpMap(14, "MPA", 90000),
        RtpMap(15, "G728", 8000),
        RtpMap(16, "DVI4", 11025),
        RtpMap(17, "DVI4", 22050),
        RtpMap(18, "G729", 8000),
        RtpMap(25, "CelB", 90000),
        RtpMap(26, "JPEG", 90000),
        RtpMap(28, "nv", 90000),
        RtpMap(31, "H261", 90000),
        RtpMap(32, "MPV", 90000),
        RtpMap(33, "MP2T", 90000),
        RtpMap(34, "H263", 90000),
    )
}
_FIRST_DYNAMIC_PT = 96

# --------------------------------------------------------------------------------------------
# Attribute lists, shared by both levels
# --------------------------------------------------------------------------------------------


class _AttributeList:
    """Lookup and in-place editing of an ordered ``attributes`` list."""

    __slots__ = ()
    attributes: list[Attribute]

    def attribute(self, name: str) -> Attribute | None:
        """The first attribute called ``name`` (names are case-sensitive)."""
        for attr in self.attributes:
            if attr.name == name:
                return attr
        return None

    def attribute_value(self, name: str) -> str | None:
        """The value of the first ``name`` attribute; ``None`` if absent or a flag."""
        attr = self.attribute(name)
        return None if attr is None else attr.value

    def attributes_named(self, name: str) -> list[Attribute]:
        return [attr for attr in self.attributes if attr.name == name]

    def has_attribute(self, name: str) -> bool:
        return any(attr.name == name for attr in self.attributes)

    def add_attribute(self, name: str, value: str | None = None) -> None:
        """Append ``a=name[:value]`` after the existing attributes."""
        self.attributes.append(Attribute(name, value))

    def set_attribute(self, name: str, value: str | None = None) -> None:
        """Make ``a=name[:value]`` the only ``name`` attribute, in the place of the first one."""
        self.replace_attributes(name, [Attribute(name, value)])

    def replace_attributes(self, name: str, new: Iterable[Attribute]) -> None:
        """Replace every ``name`` attribute by ``new``, placed where the first one was.

        With no ``name`` attribute present, ``new`` is appended.
        """
        self._replace_where(lambda attr: attr.name == name, list(new))

    def remove_attributes(self, name: str, where: Callable[[Attribute], bool] | None = None) -> int:
        """Remove the ``name`` attributes (those ``where`` accepts); return how many went."""
        before = len(self.attributes)
        self.attributes[:] = [
            attr
            for attr in self.attributes
            if not (attr.name == name and (where is None or where(attr)))
        ]
        return before - len(self.attributes)

    def _replace_where(self, match: Callable[[Attribute], bool], new: list[Attribute]) -> None:
        result: list[Attribute] = []
        inserted = False
        for attr in self.attributes:
            if match(attr):
                if not inserted:
                    result.extend(new)
                    inserted = True
            else:
                result.append(attr)
        if not inserted:
            result.extend(new)
        self.attributes[:] = result

    def _values(self, name: str) -> list[str]:
        values: list[str] = []
        for attr in self.attributes:
            if attr.name == name:
                if attr.value is None:
                    raise _bad(f"a={name} has no value")
                values.append(attr.value)
        return values

    def _single(self, name: str) -> str | None:
        values = self._values(name)
        return values[0] if values else None

    @property
    def direction(self) -> Direction | None:
        """The direction attribute at this level, ``None`` if there is none.

        Two different direction attributes at one level are a peer error.
        """
        found: Direction | None = None
        for attr in self.attributes:
            direction = _DIRECTIONS.get(attr.name)
            if direction is not None:
                if found is not None and found is not direction:
                    raise _bad(f"conflicting direction attributes {found} and {direction}")
                found = direction
        return found

    def set_direction(self, direction: Direction | str) -> None:
        """Replace any direction attribute by ``direction``, in place of the first one."""
        value = Direction(direction)
        self._replace_where(lambda attr: attr.name in _DIRECTIONS, [Attribute(value.value)])

    @property
    def ice_ufrag(self) -> str | None:
        return self._single("ice-ufrag")

    @property
    def ice_pwd(self) -> str | None:
        return self._single("ice-pwd")

    @property
    def rtcp_mux(self) -> bool:
        """``a=rtcp-mux`` (RFC 5761): RTP and RTCP share one port."""
        return self.has_attribute("rtcp-mux")


# --------------------------------------------------------------------------------------------
# Serialization plumbing: raw spellings and original line order
# --------------------------------------------------------------------------------------------

_SESSION_RANK: Mapping[str, int] = {
    kind: rank
    for rank, kind in enumerate(
        ("v", "o", "s", "i", "u", "e", "p", "c", "b", "t", "z", "k", "a", "x")
    )
}
_MEDIA_RANK: Mapping[str, int] = {
    kind: rank for rank, kind in enumerate(("i", "c", "b", "k", "a", "x"))
}
# A key of the raw-spelling table: line type and the parsed value it was read as.
_RawKey = tuple[str, object]
_RawTable = dict[_RawKey, list[str | None]]


def _remember(table: _RawTable, kind: str, value: object, raw: str, canonical: str) -> None:
    """Note how a structured line was spelled, ``None`` when it is the canonical spelling."""
    table.setdefault((kind, value), []).append(None if raw == canonical else raw)


class _Spelling:
    """Hands out remembered spellings in reading order while a section is rendered."""

    __slots__ = ("_next", "_table")

    def __init__(self, table: _RawTable) -> None:
        self._table = table
        self._next: dict[_RawKey, int] = {}

    def pick(self, kind: str, value: object, canonical: str) -> str:
        if not self._table:
            return canonical
        key = (kind, value)
        spellings = self._table.get(key)
        if spellings is None:
            return canonical
        index = self._next.get(key, 0)
        if index >= len(spellings):
            return canonical
        self._next[key] = index + 1
        raw = spellings[index]
        return canonical if raw is None else raw


def _merge(
    layout: Sequence[str],
    items: dict[str, list[list[str]]],
    rank: Mapping[str, int],
    out: list[str],
) -> None:
    """Emit ``items`` (line groups per line kind, built in RFC order) following ``layout``.

    ``layout`` is the sequence of line kinds as read.  Existing kinds keep their positions; a
    kind that now has more items than were read emits the extra ones at its last position; a
    kind that was not read at all goes before the first read line that RFC 4566 puts after it.
    """
    if not layout:
        for every in items.values():
            for group in every:
                out.extend(group)
        return
    last = {kind: index for index, kind in enumerate(layout)}
    absent = [kind for kind in items if kind not in last]
    taken = dict.fromkeys(items, 0)
    pending = 0
    for index, kind in enumerate(layout):
        kind_rank = rank[kind]
        while pending < len(absent) and rank[absent[pending]] < kind_rank:
            for group in items[absent[pending]]:
                out.extend(group)
            pending += 1
        groups = items.get(kind)
        if groups is None:
            continue
        start = taken[kind]
        stop = len(groups) if last[kind] == index else min(start + 1, len(groups))
        for group in groups[start:stop]:
            out.extend(group)
        taken[kind] = stop
    for kind in absent[pending:]:
        for group in items[kind]:
            out.extend(group)


# --------------------------------------------------------------------------------------------
# Media sections
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class MediaDescription(_AttributeList):
    """One ``m=`` section and the lines under it."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    information: str | None = None
    connections: list[Connection] = field(default_factory=list)
    bandwidths: list[Bandwidth] = field(default_factory=list)
    encryption_key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    unknown_lines: list[Line] = field(default_factory=list)
    _layout: list[str] = field(default_factory=list, init=False, repr=False, compare=False)
    _raw: _RawTable = field(default_factory=dict, init=False, repr=False, compare=False)

    # -- connection and port ----------------------------------------------------------------

    @property
    def connection(self) -> Connection | None:
        """The first media-level ``c=`` (see :meth:`SessionDescription.effective_connection`)."""
        return self.connections[0] if self.connections else None

    @connection.setter
    def connection(self, value: Connection | None) -> None:
        self.connections[:] = [] if value is None else [value]

    def set_connection_address(self, address: str, addrtype: str | None = None) -> None:
        """Point every media-level ``c=`` at ``address`` (adding one if there is none)."""
        if not self.connections:
            self.connections.append(Connection.for_address(address, addrtype))
            return
        kind = addrtype or ("IP6" if ":" in address else "IP4")
        self.connections[:] = [
            replace(conn, addrtype=kind, address=address) for conn in self.connections
        ]

    def set_port(self, port: int, port_count: int | None = None) -> None:
        """Set the transport port (0 rejects or disables the stream, RFC 3264 §6)."""
        if not 0 <= port <= 65535 or (port_count is not None and not 1 <= port_count <= 65535):
            raise LocalProtocolError(f"invalid media port {port}/{port_count}")
        self.port = port
        self.port_count = port_count

    # -- RTP formats ------------------------------------------------------------------------

    @property
    def is_rtp(self) -> bool:
        return "RTP/" in self.proto

    @property
    def rtpmaps(self) -> list[RtpMap]:
        return [RtpMap.parse(value) for value in self._values(RtpMap.NAME)]

    def rtpmap_for(self, payload_type: int | str) -> RtpMap | None:
        """The ``a=rtpmap`` of ``payload_type``, without the static-table fallback."""
        number = int(payload_type)
        for rtpmap in self.rtpmaps:
            if rtpmap.payload_type == number:
                return rtpmap
        return None

    @property
    def fmtps(self) -> list[Fmtp]:
        return [Fmtp.parse(value) for value in self._values(Fmtp.NAME)]

    def fmtp_for(self, fmt: int | str) -> Fmtp | None:
        wanted = str(fmt)
        for fmtp in self.fmtps:
            if fmtp.format == wanted:
                return fmtp
        return None

    @property
    def codecs(self) -> list[RtpMap]:
        """The RTP payload formats in ``m=`` order: the rtpmap, else the RFC 3551 static entry.

        A dynamic payload type without an rtpmap says nothing usable and is left out.
        """
        if not self.is_rtp:
            return []
        rtpmaps = {rtpmap.payload_type: rtpmap for rtpmap in self.rtpmaps}
        result: list[RtpMap] = []
        for fmt in self.formats:
            if not (fmt.isascii() and fmt.isdigit()):
                continue
            number = int(fmt)
            codec = rtpmaps.get(number) or STATIC_PAYLOAD_TYPES.get(number)
            if codec is not None:
                result.append(codec)
        return result

    def restrict_formats(self, keep: Iterable[int | str]) -> list[str]:
        """Drop every format not in ``keep`` (``m=`` order stays) with its rtpmap/fmtp/rtcp-fb.

        Returns the removed formats.  Leaving no format is refused: a rejected stream keeps
        its formats and gets port 0 instead (RFC 3264 §6).
        """
        wanted = {str(fmt) for fmt in keep}
        kept = [fmt for fmt in self.formats if fmt in wanted]
        removed = [fmt for fmt in self.formats if fmt not in wanted]
        if not kept:
            raise LocalProtocolError("restrict_formats would leave the m= line without formats")
        if removed:
            gone = set(removed)

            def obsolete(attr: Attribute) -> bool:
                if attr.name not in ("rtpmap", "fmtp", "rtcp-fb") or attr.value is None:
                    return False
                return attr.value.partition(" ")[0] in gone

            self.formats[:] = kept
            self.attributes[:] = [attr for attr in self.attributes if not obsolete(attr)]
        return removed

    # -- other typed attributes -------------------------------------------------------------

    @property
    def ptime(self) -> int | None:
        value = self._single("ptime")
        return None if value is None else _int(value, "a=ptime")

    @property
    def maxptime(self) -> int | None:
        value = self._single("maxptime")
        return None if value is None else _int(value, "a=maxptime")

    @property
    def cryptos(self) -> list[Crypto]:
        return [Crypto.parse(value) for value in self._values(Crypto.NAME)]

    @property
    def candidates(self) -> list[Candidate]:
        return [Candidate.parse(value) for value in self._values(Candidate.NAME)]

    @property
    def rtcp(self) -> RtcpAddress | None:
        value = self._single(RtcpAddress.NAME)
        return None if value is None else RtcpAddress.parse(value)

    @property
    def label(self) -> str | None:
        """``a=label`` (RFC 4574); Teams names its main audio stream ``main-audio``."""
        return self._single("label")

    @property
    def mid(self) -> str | None:
        """``a=mid`` (RFC 5888)."""
        return self._single("mid")

    def validate(self) -> None:
        """Interpret every attribute with a typed view; raise on the first malformed one."""
        _ = (self.direction, self.ice_ufrag, self.ice_pwd, self.ptime, self.maxptime)
        _ = (self.rtpmaps, self.fmtps, self.cryptos, self.candidates, self.rtcp, self.label)
        _ = (self.mid, self.codecs)

    def copy(self) -> MediaDescription:
        """An independent copy (lists are copied, values are frozen and shared)."""
        clone = MediaDescription(
            self.media,
            self.port,
            self.proto,
            list(self.formats),
            self.port_count,
            self.information,
            list(self.connections),
            list(self.bandwidths),
            self.encryption_key,
            list(self.attributes),
            list(self.unknown_lines),
        )
        clone._layout = list(self._layout)
        clone._raw = {key: list(spellings) for key, spellings in self._raw.items()}
        return clone

    # -- serialization ----------------------------------------------------------------------

    def _m_value(self) -> tuple[tuple[object, ...], str]:
        port = str(self.port) if self.port_count is None else f"{self.port}/{self.port_count}"
        key = (self.media, self.port, self.port_count, self.proto, tuple(self.formats))
        return key, " ".join([self.media, port, self.proto, *self.formats])

    def _render(self, out: list[str]) -> None:
        if not self.formats:
            raise LocalProtocolError(f"m={self.media} section has no formats")
        spelling = _Spelling(self._raw)
        key, canonical = self._m_value()
        out.append("m=" + spelling.pick("m", key, canonical))
        items: dict[str, list[list[str]]] = {}
        if self.information is not None:
            items["i"] = [["i=" + self.information]]
        if self.connections:
            items["c"] = [["c=" + spelling.pick("c", c, str(c))] for c in self.connections]
        if self.bandwidths:
            items["b"] = [["b=" + spelling.pick("b", b, str(b))] for b in self.bandwidths]
        if self.encryption_key is not None:
            items["k"] = [["k=" + self.encryption_key]]
        if self.attributes:
            items["a"] = [[f"a={attr}"] for attr in self.attributes]
        if self.unknown_lines:
            items["x"] = [[str(line)] for line in self.unknown_lines]
        _merge(self._layout, items, _MEDIA_RANK, out)


# --------------------------------------------------------------------------------------------
# Session descriptions
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class SessionDescription(_AttributeList):
    """A whole SDP body.

    ``line_ending`` is what :meth:`to_bytes` writes between lines: the ending of the first
    line read, CRLF for a description built in code.  A parsed body with mixed endings is
    reproduced byte for byte while it is unchanged, and written with ``line_ending``
    throughout once changed.
    """

    origin: Origin
    session_name: str = "-"
    information: str | None = None
    uri: str | None = None
    emails: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = field(default_factory=list)
    times: list[Timing] = field(default_factory=lambda: [Timing()])
    time_zones: str | None = None
    encryption_key: str | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[MediaDescription] = field(default_factory=list)
    unknown_lines: list[Line] = field(default_factory=list)
    version: int = 0
    line_ending: str = field(default=_CRLF, compare=False)
    _layout: list[str] = field(default_factory=list, init=False, repr=False, compare=False)
    _raw: _RawTable = field(default_factory=dict, init=False, repr=False, compare=False)
    _final_line_ending: bool = field(default=True, init=False, repr=False, compare=False)
    _blank_lines_after: int = field(default=0, init=False, repr=False, compare=False)
    _verbatim: tuple[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    # -- parsing and serialization ----------------------------------------------------------

    @classmethod
    def parse(cls, data: bytes | bytearray | memoryview | str) -> SessionDescription:
        """Parse an SDP body; any defect raises :class:`RemoteProtocolError` (status 400).

        Bytes are decoded as UTF-8 with ``surrogateescape`` so that any byte survives the
        round trip through :meth:`to_bytes`.
        """
        text = data if isinstance(data, str) else bytes(data).decode("utf-8", "surrogateescape")
        return _parse(text)

    def to_bytes(self) -> bytes:
        text = self.to_text()
        try:
            return text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError as exc:
            raise LocalProtocolError(f"SDP text cannot be encoded: {exc}") from None

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def to_text(self) -> str:
        """The body as text (bytes that were not UTF-8 appear as lone surrogates)."""
        eol = self.line_ending
        if eol not in (_CRLF, "\n"):
            raise LocalProtocolError(f"line_ending must be CRLF or LF, not {eol!r}")
        lines = self._lines()
        body = eol.join(lines)
        if body.count("\n") != len(lines) - 1 or body.count("\r") != body.count("\r\n"):
            raise LocalProtocolError("an SDP value contains a line break")
        if "\x00" in body:
            raise LocalProtocolError("an SDP value contains a NUL character")
        if self._verbatim is not None and body == self._verbatim[0]:
            return self._verbatim[1]
        if self._final_line_ending:
            body += eol * (1 + self._blank_lines_after)
        return body

    def _lines(self) -> list[str]:
        spelling = _Spelling(self._raw)
        items: dict[str, list[list[str]]] = {
            "v": [[f"v={self.version}"]],
            "o": [["o=" + spelling.pick("o", self.origin, str(self.origin))]],
            "s": [["s=" + self.session_name]],
        }
        if self.information is not None:
            items["i"] = [["i=" + self.information]]
        if self.uri is not None:
            items["u"] = [["u=" + self.uri]]
        if self.emails:
            items["e"] = [["e=" + email] for email in self.emails]
        if self.phones:
            items["p"] = [["p=" + phone] for phone in self.phones]
        if self.connection is not None:
            conn = self.connection
            items["c"] = [["c=" + spelling.pick("c", conn, str(conn))]]
        if self.bandwidths:
            items["b"] = [["b=" + spelling.pick("b", b, str(b))] for b in self.bandwidths]
        if self.times:
            items["t"] = [
                [
                    "t=" + spelling.pick("t", (t.start, t.stop), f"{t.start} {t.stop}"),
                    *("r=" + repeat for repeat in t.repeats),
                ]
                for t in self.times
            ]
        if self.time_zones is not None:
            items["z"] = [["z=" + self.time_zones]]
        if self.encryption_key is not None:
            items["k"] = [["k=" + self.encryption_key]]
        if self.attributes:
            items["a"] = [[f"a={attr}"] for attr in self.attributes]
        if self.unknown_lines:
            items["x"] = [[str(line)] for line in self.unknown_lines]
        out: list[str] = []
        _merge(self._layout, items, _SESSION_RANK, out)
        for media in self.media:
            media._render(out)
        return out

    def copy(self) -> SessionDescription:
        """An independent copy that still serializes like the original."""
        clone = SessionDescription(
            self.origin,
            self.session_name,
            self.information,
            self.uri,
            list(self.emails),
            list(self.phones),
            self.connection,
            list(self.bandwidths),
            list(self.times),
            self.time_zones,
            self.encryption_key,
            list(self.attributes),
            [media.copy() for media in self.media],
            list(self.unknown_lines),
            self.version,
            self.line_ending,
        )
        clone._layout = list(self._layout)
        clone._raw = {key: list(spellings) for key, spellings in self._raw.items()}
        clone._final_line_ending = self._final_line_ending
        clone._blank_lines_after = self._blank_lines_after
        clone._verbatim = self._verbatim
        return clone

    def validate(self) -> None:
        """Interpret every attribute with a typed view, raising on the first malformed one."""
        _ = (self.direction, self.ice_ufrag, self.ice_pwd)
        for media in self.media:
            media.validate()

    # -- session-level views ----------------------------------------------------------------

    @property
    def ice_lite(self) -> bool:
        """``a=ice-lite`` (session level, RFC 8839 §5.3)."""
        return self.has_attribute("ice-lite")

    def effective_direction(self, media: MediaDescription) -> Direction:
        """Media-level direction, else session-level, else sendrecv (RFC 3264 §5.1)."""
        return media.direction or self.direction or Direction.SENDRECV

    def effective_connection(self, media: MediaDescription) -> Connection | None:
        """The media-level ``c=``, else the session-level one."""
        return media.connection or self.connection

    def effective_ice_ufrag(self, media: MediaDescription) -> str | None:
        return media.ice_ufrag or self.ice_ufrag

    def effective_ice_pwd(self, media: MediaDescription) -> str | None:
        return media.ice_pwd or self.ice_pwd

    def set_connection_address(self, address: str, addrtype: str | None = None) -> None:
        """Send every stream to ``address``.

        The session-level ``c=`` and all media-level ones are rewritten; a session-level one is
        added when some stream would otherwise be left without a connection.
        """
        if self.connection is not None:
            kind = addrtype or ("IP6" if ":" in address else "IP4")
            self.connection = replace(self.connection, addrtype=kind, address=address)
        elif any(not media.connections for media in self.media):
            self.connection = Connection.for_address(address, addrtype)
        for media in self.media:
            if media.connections:
                media.set_connection_address(address, addrtype)


# --------------------------------------------------------------------------------------------
# The parser
# --------------------------------------------------------------------------------------------

# Line types that exist only above the first m= line.
_SESSION_ONLY = frozenset("vosueptrz")


def _split_lines(text: str) -> tuple[list[str], str, bool, int, bool]:
    """Lines without endings, the first ending, final-ending flag, trailing blanks, mixed."""
    if "\x00" in text:
        raise _bad("SDP contains a NUL byte")
    newlines = text.count("\n")
    crlfs = text.count("\r\n")
    if text.count("\r") != crlfs:
        raise _bad("SDP contains a CR that does not end a line")
    mixed = False
    if crlfs == newlines:
        eol = _CRLF
        lines = text.split(_CRLF)
    elif crlfs == 0:
        eol = "\n"
        lines = text.split("\n")
    else:
        mixed = True
        first = text.find("\n")
        eol = _CRLF if first > 0 and text[first - 1] == "\r" else "\n"
        lines = [line.removesuffix("\r") for line in text.split("\n")]
    final = lines[-1] == ""
    if final:
        lines.pop()
    blanks = 0
    while lines and lines[-1] == "":
        lines.pop()
        blanks += 1
    if not lines:
        raise _bad("empty SDP")
    return lines, eol, final, blanks, mixed


def _parse(text: str) -> SessionDescription:
    lines, eol, final, blanks, mixed = _split_lines(text)
    if lines[0][:2] != "v=":
        raise _bad(f"SDP must start with v=, not {_show(lines[0])}")
    if lines[0] != "v=0":
        raise _bad(f"unsupported SDP version {_show(lines[0][2:])}")

    origin: Origin | None = None
    session_name: str | None = None
    information: str | None = None
    uri: str | None = None
    emails: list[str] = []
    phones: list[str] = []
    connection: Connection | None = None
    bandwidths: list[Bandwidth] = []
    times: list[tuple[int, int, list[str]]] = []
    time_zones: str | None = None
    key: str | None = None
    attributes: list[Attribute] = []
    unknown: list[Line] = []
    layout = ["v"]
    raw: _RawTable = {}
    media_list: list[MediaDescription] = []
    media: MediaDescription | None = None
    previous = "v"

    number = 1
    try:
        for number in range(2, len(lines) + 1):
            line = lines[number - 1]
            if len(line) < 2 or line[1] != "=":
                raise _bad(f"line is not <type>=<value>: {_show(line)}")
            kind = line[0]
            value = line[2:]
            if not "a" <= kind <= "z":
                raise _bad(f"line has an invalid type {_show(kind)}")

            if kind == "a":
                name, sep, attr_value = value.partition(":")
                if not name:
                    raise _bad("attribute without a name")
                attr = Attribute(name, attr_value if sep else None)
                if media is None:
                    attributes.append(attr)
                    layout.append("a")
                else:
                    media.attributes.append(attr)
                    media._layout.append("a")
            elif kind == "m":
                media = _parse_m(value)
                media_list.append(media)
            elif media is not None:
                if kind == "c":
                    conn = Connection.parse(value)
                    _remember(media._raw, "c", conn, value, str(conn))
                    media.connections.append(conn)
                elif kind == "b":
                    bandwidth = Bandwidth.parse(value)
                    _remember(media._raw, "b", bandwidth, value, str(bandwidth))
                    media.bandwidths.append(bandwidth)
                elif kind == "i":
                    if media.information is not None:
                        raise _bad("second i= in a media section")
                    media.information = value
                elif kind == "k":
                    if media.encryption_key is not None:
                        raise _bad("second k= in a media section")
                    media.encryption_key = value
                elif kind in _SESSION_ONLY:
                    raise _bad(f"{kind}= is not allowed in a media section")
                else:
                    media.unknown_lines.append(Line(kind, value))
                    kind = "x"
                media._layout.append(kind)
            else:
                if kind == "o":
                    if origin is not None:
                        raise _bad("second o= line")
                    origin = Origin.parse(value)
                    _remember(raw, "o", origin, value, str(origin))
                elif kind == "s":
                    if session_name is not None:
                        raise _bad("second s= line")
                    session_name = value
                elif kind == "c":
                    if connection is not None:
                        raise _bad("second session-level c= line")
                    connection = Connection.parse(value)
                    _remember(raw, "c", connection, value, str(connection))
                elif kind == "b":
                    bandwidth = Bandwidth.parse(value)
                    _remember(raw, "b", bandwidth, value, str(bandwidth))
                    bandwidths.append(bandwidth)
                elif kind == "t":
                    parts = _tokens(value)
                    if len(parts) != 2:
                        raise _bad(f"t= needs start and stop: {_show(value)}")
                    start, stop = _int(parts[0], "t= start"), _int(parts[1], "t= stop")
                    _remember(raw, "t", (start, stop), value, f"{start} {stop}")
                    times.append((start, stop, []))
                elif kind == "r":
                    if previous not in ("t", "r"):
                        raise _bad("r= does not follow t=")
                    times[-1][2].append(value)
                elif kind == "i":
                    if information is not None:
                        raise _bad("second session-level i= line")
                    information = value
                elif kind == "u":
                    if uri is not None:
                        raise _bad("second u= line")
                    uri = value
                elif kind == "e":
                    emails.append(value)
                elif kind == "p":
                    phones.append(value)
                elif kind == "z":
                    if time_zones is not None:
                        raise _bad("second z= line")
                    time_zones = value
                elif kind == "k":
                    if key is not None:
                        raise _bad("second session-level k= line")
                    key = value
                elif kind == "v":
                    raise _bad("second v= line")
                else:
                    unknown.append(Line(kind, value))
                    kind = "x"
                if kind != "r":
                    layout.append(kind)
            previous = line[0]
    except RemoteProtocolError as exc:
        # Values parse themselves without knowing where they are; say where.
        raise _bad(f"SDP line {number}: {exc.msg}") from None

    if origin is None:
        raise _bad("SDP has no o= line")
    if session_name is None:
        raise _bad("SDP has no s= line")
    if not times:
        raise _bad("SDP has no t= line")

    session = SessionDescription(
        origin=origin,
        session_name=session_name,
        information=information,
        uri=uri,
        emails=emails,
        phones=phones,
        connection=connection,
        bandwidths=bandwidths,
        times=[Timing(start, stop, tuple(repeats)) for start, stop, repeats in times],
        time_zones=time_zones,
        encryption_key=key,
        attributes=attributes,
        media=media_list,
        unknown_lines=unknown,
        line_ending=eol,
    )
    session._layout = layout
    session._raw = raw
    session._final_line_ending = final
    session._blank_lines_after = blanks
    if mixed:
        session._verbatim = (eol.join(lines), text)
    return session


def _parse_m(value: str) -> MediaDescription:
    tokens = _tokens(value)
    if len(tokens) < 4:
        raise _bad(f"m= needs media, port, proto and formats: {_show(value)}")
    media_type, port_text, proto, *formats = tokens
    port_part, slash, count_part = port_text.partition("/")
    port = _int(port_part, "m= port", 65535)
    count = _int(count_part, "m= port count", 65535) if slash else None
    if "RTP/" in proto:
        for fmt in formats:
            _int(fmt, "m= payload type", 127)
    media = MediaDescription(media_type, port, proto, formats, port_count=count)
    key, canonical = media._m_value()
    _remember(media._raw, "m", key, value, canonical)
    return media


# --------------------------------------------------------------------------------------------
# Offer/answer (RFC 3264)
# --------------------------------------------------------------------------------------------

_SENDS = frozenset({Direction.SENDRECV, Direction.SENDONLY})
_RECEIVES = frozenset({Direction.SENDRECV, Direction.RECVONLY})
_BY_CAPABILITY: Mapping[tuple[bool, bool], Direction] = {
    (True, True): Direction.SENDRECV,
    (True, False): Direction.SENDONLY,
    (False, True): Direction.RECVONLY,
    (False, False): Direction.INACTIVE,
}


def answer_direction(
    offer_direction: Direction | str, local: Direction | str = Direction.SENDRECV
) -> Direction:
    """The direction to answer with (RFC 3264 §6.1).

    We may send only what the offerer is willing to receive and receive only what it will send;
    ``local`` further limits that to what we want (sendonly -> recvonly, inactive -> inactive).
    """
    offer = Direction(offer_direction)
    mine = Direction(local)
    return _BY_CAPABILITY[
        (offer in _RECEIVES and mine in _SENDS, offer in _SENDS and mine in _RECEIVES)
    ]


# Formats that only make sense next to a real codec of the same clock rate (RFC 4733 §2.1,
# RFC 3389 §5).
_AUXILIARY_ENCODINGS = frozenset({"telephone-event", "cn"})


def intersect_formats(offer_media: MediaDescription, supported: Iterable[RtpMap]) -> list[RtpMap]:
    """The offered codecs we support, in the offer's order and with the offer's numbering.

    Static payload types (below 96) match by number; dynamic ones match by encoding name
    (case-insensitive), clock rate and channel count, so our own numbering does not matter.
    telephone-event and comfort noise are kept only for the clock rate of a kept codec, and
    alone they make no usable stream: the result is then empty.
    """
    ours = list(supported)
    static_numbers = {
        codec.payload_type for codec in ours if codec.payload_type < _FIRST_DYNAMIC_PT
    }
    matched: list[RtpMap] = []
    for offered in offer_media.codecs:
        if offered.payload_type < _FIRST_DYNAMIC_PT:
            if offered.payload_type in static_numbers:
                matched.append(offered)
        elif any(offered.matches(codec) for codec in ours):
            matched.append(offered)
    rates = {c.clock_rate for c in matched if c.encoding.lower() not in _AUXILIARY_ENCODINGS}
    return [
        codec
        for codec in matched
        if codec.encoding.lower() not in _AUXILIARY_ENCODINGS or codec.clock_rate in rates
    ]


_HOLD_ADDRESSES = frozenset({"0.0.0.0"})


def is_hold(session: SessionDescription, media: MediaDescription | None = None) -> bool:
    """Whether ``media`` (or, without it, every active stream) is put on hold.

    Hold is sendonly or inactive (RFC 3264 §8.4) or the RFC 2543 connection address 0.0.0.0.
    A stream with port 0 is rejected, not held, and does not count.
    """
    if media is None:
        active = [m for m in session.media if m.port != 0]
        return bool(active) and all(is_hold(session, m) for m in active)
    if session.effective_direction(media) in (Direction.SENDONLY, Direction.INACTIVE):
        return True
    conn = session.effective_connection(media)
    return conn is not None and conn.host in _HOLD_ADDRESSES
