"""Header fields: the ordered container and the typed values read from it.

The container keeps every field as it arrived — order, duplicates, the raw line with its folding
and spelling — so an untouched message serializes to the same bytes.  Look-ups are
case-insensitive and understand the compact forms (RFC 3261 §7.3.3).  Typed values are parsed on
demand by the ``parse_*`` functions here and cached by :class:`~sbcsim.sip.message.Message`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from sbcsim.errors import RemoteProtocolError
from sbcsim.sip.uri import SipUri, Uri, parse_uri

__all__ = [
    "COMPACT_FORMS",
    "MAX_UINT32",
    "CSeq",
    "Event",
    "HeaderField",
    "Headers",
    "HistoryInfoEntry",
    "MediaType",
    "NameAddr",
    "RAck",
    "Reason",
    "Replaces",
    "SessionExpires",
    "SubscriptionState",
    "Via",
    "canonical_name",
    "format_params",
    "parse_cseq",
    "parse_delta_seconds",
    "parse_event",
    "parse_history_info",
    "parse_media_type",
    "parse_name_addr",
    "parse_name_addrs",
    "parse_params",
    "parse_rack",
    "parse_reason",
    "parse_replaces",
    "parse_session_expires",
    "parse_subscription_state",
    "parse_token_list",
    "parse_uint",
    "parse_via",
    "parse_vias",
    "quote",
    "split_commas",
]

MAX_UINT32 = 2**32 - 1

#: compact form -> canonical (lower-case) long name, RFC 3261 §7.3.3 and the extensions' RFCs.
COMPACT_FORMS: dict[str, str] = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "k": "supported",
    "s": "subject",
    "e": "content-encoding",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "u": "allow-events",
    "x": "session-expires",
    "y": "identity",
    "a": "accept-contact",
    "d": "request-disposition",
    "j": "reject-contact",
    "n": "identity-info",
}

_canonical_cache: dict[str, str] = {}


def canonical_name(name: str) -> str:
    """Lower-case long form of a header name (``"V"`` -> ``"via"``)."""
    key = _canonical_cache.get(name)
    if key is None:
        low = name.lower()
        key = COMPACT_FORMS.get(low, low)
        if len(_canonical_cache) < 2048:
            _canonical_cache[name] = key
    return key


TOKEN_CHARS = "A-Za-z0-9\\-.!%*_+`'~"
_TOKEN_RE = re.compile(f"[{TOKEN_CHARS}]+\\Z")
_PARAM_RE = re.compile(
    f'[ \\t]*([{TOKEN_CHARS}]+)[ \\t]*(?:=[ \\t]*("(?:[^"\\\\]|\\\\.)*"|[{TOKEN_CHARS}:\\[\\]/]+)[ \\t]*)?'
)
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"', re.S)
_UNQUOTE_RE = re.compile(r"\\(.)", re.S)
_DIGITS_RE = re.compile(r"\d+\Z")


_token_cache: dict[str, bool] = {}


def is_token(text: str) -> bool:
    known = _token_cache.get(text)
    if known is None:
        known = bool(_TOKEN_RE.match(text))
        if len(_token_cache) < 4096:
            _token_cache[text] = known
    return known


def quote(text: str) -> str:
    """Quote a display name or parameter value (RFC 3261 quoted-string)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _unquote(text: str) -> str:
    return _UNQUOTE_RE.sub(r"\1", text)


Params = tuple[tuple[str, str | None], ...]
_SIMPLE_PARAMS_RE = re.compile(f"(?:;[{TOKEN_CHARS}]+(?:=[{TOKEN_CHARS}:\\[\\]/]+)?)+\\Z")


def parse_params(text: str, what: str) -> Params:
    """``;a=b ; c ;d="x y"`` -> ordered pairs.  Quoted values keep their quotes (raw form).

    LWS is allowed around ``;`` and ``=`` (RFC 3261 §7.3.1).  An empty parameter (``;;``) or a
    stray character is malformed.
    """
    if not text:
        return ()
    if _SIMPLE_PARAMS_RE.match(text):
        # the common case: ";a=b;c" with no LWS and no quoted values
        out: list[tuple[str, str | None]] = []
        for part in text[1:].split(";"):
            name, eq, value = part.partition("=")
            out.append((name, value if eq else None))
        return tuple(out)
    params: list[tuple[str, str | None]] = []
    pos = 0
    n = len(text)
    while pos < n:
        # skip LWS, expect ';'
        while pos < n and text[pos] in " \t":
            pos += 1
        if pos >= n:
            break
        if text[pos] != ";":
            raise RemoteProtocolError(
                f"unexpected {text[pos : pos + 10]!r} in parameters of {what}"
            )
        m = _PARAM_RE.match(text, pos + 1)
        if m is None or not m.group(1):
            raise RemoteProtocolError(f"empty or invalid parameter in {what}")
        params.append((m.group(1), m.group(2)))
        pos = m.end()
    return tuple(params)


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params)


def _param(params: Params, name: str) -> str | None:
    """Value of a parameter: unquoted; ``""`` for a flag; ``None`` when absent."""
    for k, v in params:
        if k.lower() == name:
            if v is None:
                return ""
            if v.startswith('"'):
                return _unquote(v[1:-1])
            return v
    return None


class _HasParams:
    params: Params

    def param(self, name: str) -> str | None:
        """Parameter value (unquoted), ``""`` for a flag parameter, ``None`` when absent."""
        return _param(self.params, name.lower())

    def has_param(self, name: str) -> bool:
        lname = name.lower()
        return any(k.lower() == lname for k, _ in self.params)


_LIST_ITEM_RE = re.compile(r'(?:"(?:[^"\\]|\\.)*"|<[^>]*>|[^,"<])*')


def split_commas(value: str) -> list[str]:
    """Split a header value at commas outside quoted strings and ``<...>``; items stripped.

    An empty item (``a,,b`` or a trailing comma) is malformed.
    """
    if "," not in value:
        item = value.strip(" \t")
        if not item:
            raise RemoteProtocolError("empty header value where a list element was expected")
        return [item]
    if '"' not in value and "<" not in value:
        parts = value.split(",")
    else:
        parts = []
        pos = 0
        n = len(value)
        while True:
            m = _LIST_ITEM_RE.match(value, pos)
            end = m.end() if m else pos
            parts.append(value[pos:end])
            if end >= n:
                break
            if value[end] != ",":
                raise RemoteProtocolError(f"unterminated quoted string or <...> in {value[:40]!r}")
            pos = end + 1
            if pos == n:
                parts.append("")
                break
    out = [p.strip(" \t") for p in parts]
    if any(not p for p in out):
        raise RemoteProtocolError(f"empty element in comma-separated list {value[:60]!r}")
    return out


# --------------------------------------------------------------------------------------------
# Via
# --------------------------------------------------------------------------------------------
_VIA_RE = re.compile(
    f"[ \\t]*([{TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{TOKEN_CHARS}]+)"
    r"[ \t]+(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)(?:[ \t]*:[ \t]*(\d{1,5}))?[ \t]*"
)


@dataclass(frozen=True, slots=True)
class Via(_HasParams):
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;received=...;rport``."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    @property
    def received(self) -> str | None:
        return self.param("received")

    @property
    def rport(self) -> int | None:
        """The rport value; ``None`` when absent or present without a value (a request for it)."""
        v = self.param("rport")
        return int(v) if v else None

    @property
    def has_rport(self) -> bool:
        return self.has_param("rport")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return (self.host.lower(), self.port)

    @property
    def sent_by_str(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    @property
    def rfc3261(self) -> bool:
        """The branch starts with the magic cookie (RFC 3261 §8.1.1.7)."""
        b = self.branch
        return b is not None and b.startswith("z9hG4bK") and len(b) > 7

    def __str__(self) -> str:
        return f"{self.protocol}/{self.transport} {self.sent_by_str}{format_params(self.params)}"


def parse_via(text: str) -> Via:
    m = _VIA_RE.match(text)
    if m is None:
        raise RemoteProtocolError(f"malformed Via {text[:60]!r}")
    name, version, transport, host, port_text = m.groups()
    params = parse_params(text[m.end() :], "Via")
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            raise RemoteProtocolError(f"Via port out of range in {text[:60]!r}")
    for k, v in params:
        if k.lower() == "branch" and not v:
            raise RemoteProtocolError("Via branch without a value")
    return Via(transport.upper(), host, port, params, f"{name.upper()}/{version}")


def parse_vias(values: Iterable[str]) -> list[Via]:
    return [parse_via(item) for value in values for item in split_commas(value)]


# --------------------------------------------------------------------------------------------
# name-addr / addr-spec (From, To, Contact, Route, Record-Route, Refer-To, Referred-By, PAI ...)
# --------------------------------------------------------------------------------------------
_SIMPLE_NAME_ADDR_RE = re.compile(
    f'[ \\t]*((?:[{TOKEN_CHARS}]+(?:[ \\t]+[{TOKEN_CHARS}]+)*)?)[ \\t]*<([^<>\\s"]+)>([^\\s"]*)\\Z'
)
_DISPLAY_TOKENS_RE = re.compile(f"[{TOKEN_CHARS}]+(?:[ \\t]+[{TOKEN_CHARS}]+)*\\Z")


@dataclass(frozen=True, slots=True)
class NameAddr(_HasParams):
    """``"Display" <uri>;params`` (or the addr-spec form); ``star`` for ``Contact: *``."""

    uri: Uri | None
    display_name: str | None = None
    params: Params = ()
    star: bool = False
    angle: bool = True

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    @property
    def sip_uri(self) -> SipUri:
        """The URI as a SIP URI; a non-SIP URI here is the peer's protocol error."""
        if not isinstance(self.uri, SipUri):
            raise RemoteProtocolError(f"expected a sip: or sips: URI, got {self.uri}", 416)
        return self.uri

    def with_tag(self, tag: str) -> NameAddr:
        kept = tuple((k, v) for k, v in self.params if k.lower() != "tag")
        return NameAddr(self.uri, self.display_name, (*kept, ("tag", tag)), self.star, True)

    def with_params(self, params: Params) -> NameAddr:
        return NameAddr(self.uri, self.display_name, params, self.star, True)

    def __str__(self) -> str:
        if self.star:
            return "*"
        disp = ""
        if self.display_name is not None:
            disp = (
                self.display_name
                if is_token(self.display_name.replace(" ", ""))
                else quote(self.display_name)
            ) + " "
        return f"{disp}<{self.uri}>{format_params(self.params)}"


# Name-addrs repeat on the wire: a call's From and To (tags included) come back in its ACK,
# BYE and every response, and a peer's Contact in all of its requests.  NameAddr is immutable,
# so one parse can serve them all; only successes are kept, and the cache is bounded.
_NAME_ADDR_CACHE_LIMIT = 4096
_name_addrs: dict[str, NameAddr] = {}
_name_addrs_star: dict[str, NameAddr] = {}


def parse_name_addr(text: str, *, allow_star: bool = False) -> NameAddr:
    """``[display] <uri>;params`` or the addr-spec form (``Contact: *`` with ``allow_star``)."""
    cache = _name_addrs_star if allow_star else _name_addrs
    hit = cache.get(text)
    if hit is not None:
        return hit
    value = _parse_name_addr(text, allow_star)
    if len(cache) >= _NAME_ADDR_CACHE_LIMIT:
        cache.clear()
    cache[text] = value
    return value


def _parse_name_addr(text: str, allow_star: bool) -> NameAddr:
    m = _SIMPLE_NAME_ADDR_RE.match(text)
    if m is not None:
        # the common case: [token display] <uri> params, nothing quoted
        disp_text, uri_text, param_text = m.groups()
        return NameAddr(
            parse_uri(uri_text),
            disp_text or None,
            parse_params(param_text, "name-addr"),
            angle=True,
        )
    s = text.strip(" \t")
    if allow_star and s == "*":
        return NameAddr(None, star=True)
    display: str | None = None
    rest: str
    if s.startswith('"'):
        m = _QUOTED_RE.match(s)
        if m is None:
            raise RemoteProtocolError(f"unterminated quoted display name in {s[:60]!r}")
        display = _unquote(m.group(1))
        rest = s[m.end() :].lstrip(" \t")
        if not rest.startswith("<"):
            raise RemoteProtocolError(f"expected <uri> after display name in {s[:60]!r}")
    else:
        lt = s.find("<")
        if lt >= 0:
            disp_text = s[:lt].strip(" \t")
            if disp_text:
                if not _DISPLAY_TOKENS_RE.match(disp_text):
                    raise RemoteProtocolError(
                        f"display name must be tokens or quoted: {disp_text[:40]!r}"
                    )
                display = disp_text
            rest = s[lt:]
        else:
            rest = s
    if rest.startswith("<"):
        gt = rest.find(">")
        if gt < 0:
            raise RemoteProtocolError(f"missing '>' in {s[:60]!r}")
        uri_text = rest[1:gt]
        if not uri_text or any(c in uri_text for c in " \t<"):
            raise RemoteProtocolError(f"invalid addr-spec <{uri_text[:60]}>")
        uri = parse_uri(uri_text)
        params = parse_params(rest[gt + 1 :], "name-addr")
        return NameAddr(uri, display, params, angle=True)
    # addr-spec form: the URI ends at the first ';' or LWS; what follows are header params.
    end = len(rest)
    for stop in ";", " ", "\t":
        i = rest.find(stop, 0, end)
        if i >= 0:
            end = i
    uri_text = rest[:end]
    if not uri_text:
        raise RemoteProtocolError(f"missing URI in {s[:60]!r}")
    if "," in uri_text or "?" in uri_text:
        raise RemoteProtocolError(
            f"a URI with ',' '?' or ';' must be enclosed in <>: {uri_text[:60]!r}"
        )
    uri = parse_uri(uri_text)
    params = parse_params(rest[end:], "addr-spec")
    return NameAddr(uri, display, params, angle=False)


def parse_name_addrs(values: Iterable[str], *, allow_star: bool = False) -> list[NameAddr]:
    out = [
        parse_name_addr(item, allow_star=allow_star)
        for value in values
        for item in split_commas(value)
    ]
    if allow_star and any(na.star for na in out) and len(out) > 1:
        raise RemoteProtocolError("Contact: * must be the only Contact value")
    return out


# --------------------------------------------------------------------------------------------
# Scalars
# --------------------------------------------------------------------------------------------
def parse_uint(text: str, what: str, maximum: int = MAX_UINT32) -> int:
    s = text.strip(" \t")
    if not s.isdecimal():  # what r"\d+\Z" accepts, without the regex
        raise RemoteProtocolError(f"{what} is not a number: {s[:20]!r}")
    if len(s) > 12 or int(s) > maximum:
        raise RemoteProtocolError(f"{what} {s[:20]} exceeds {maximum}")
    return int(s)


def parse_delta_seconds(text: str, what: str) -> int:
    """delta-seconds; RFC 3261 §20.19 says overlarge values mean 2**32-1 (not an error)."""
    s = text.strip(" \t")
    if not _DIGITS_RE.match(s):
        raise RemoteProtocolError(f"{what} is not a number: {s[:20]!r}")
    return min(int(s[-40:]) if len(s) > 40 else int(s), MAX_UINT32)


@dataclass(frozen=True, slots=True)
class CSeq:
    seq: int
    method: str

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


_cseqs: dict[str, CSeq] = {}


def parse_cseq(text: str) -> CSeq:
    hit = _cseqs.get(text)
    if hit is not None:
        return hit
    value = _parse_cseq(text)
    if len(_cseqs) >= _NAME_ADDR_CACHE_LIMIT:
        _cseqs.clear()
    _cseqs[text] = value
    return value


def _parse_cseq(text: str) -> CSeq:
    parts = text.split()
    if len(parts) != 2 or not is_token(parts[1]):
        raise RemoteProtocolError(f"malformed CSeq {text[:40]!r}")
    return CSeq(parse_uint(parts[0], "CSeq number"), parts[1])


@dataclass(frozen=True, slots=True)
class MediaType(_HasParams):
    type: str
    subtype: str
    params: Params = ()

    @property
    def mime(self) -> str:
        """``type/subtype`` in lower case."""
        return f"{self.type}/{self.subtype}".lower()

    def __str__(self) -> str:
        return f"{self.type}/{self.subtype}{format_params(self.params)}"


_MEDIA_RE = re.compile(f"[ \\t]*([{TOKEN_CHARS}]+)[ \\t]*/[ \\t]*([{TOKEN_CHARS}]+)")


_media_types: dict[str, MediaType] = {}


def parse_media_type(text: str) -> MediaType:
    hit = _media_types.get(text)
    if hit is not None:
        return hit
    value = _parse_media_type(text)
    if len(_media_types) >= _NAME_ADDR_CACHE_LIMIT:
        _media_types.clear()
    _media_types[text] = value
    return value


def _parse_media_type(text: str) -> MediaType:
    m = _MEDIA_RE.match(text)
    if m is None:
        raise RemoteProtocolError(f"malformed media type {text[:40]!r}")
    return MediaType(m.group(1), m.group(2), parse_params(text[m.end() :], "media type"))


def parse_token_list(values: Iterable[str]) -> list[str]:
    """``Allow``/``Supported``/``Require``: comma-separated tokens (an empty header is allowed)."""
    out: list[str] = []
    for value in values:
        if not value.strip(" \t"):
            continue
        for item in split_commas(value):
            if not is_token(item):
                raise RemoteProtocolError(f"not a token: {item[:30]!r}")
            out.append(item)
    return out


@dataclass(frozen=True, slots=True)
class SessionExpires(_HasParams):
    """Session-Expires (RFC 4028): interval and ``refresher=uac|uas``."""

    delta: int
    params: Params = ()

    @property
    def refresher(self) -> str | None:
        r = self.param("refresher")
        return r.lower() if r else None

    def __str__(self) -> str:
        return f"{self.delta}{format_params(self.params)}"


def _value_and_params(text: str, what: str) -> tuple[str, Params]:
    head, semi, tail = text.partition(";")
    return head.strip(" \t"), parse_params(semi + tail, what) if semi else ()


def parse_session_expires(text: str) -> SessionExpires:
    head, params = _value_and_params(text, "Session-Expires")
    se = SessionExpires(parse_delta_seconds(head, "Session-Expires"), params)
    if se.refresher not in (None, "uac", "uas"):
        raise RemoteProtocolError(f"invalid refresher {se.refresher!r}")
    return se


@dataclass(frozen=True, slots=True)
class Reason(_HasParams):
    """Reason (RFC 3326): ``Q.850;cause=16;text="Normal call clearing"``."""

    protocol: str
    params: Params = ()

    @property
    def cause(self) -> int | None:
        c = self.param("cause")
        return int(c) if c and c.isdigit() else None

    @property
    def text(self) -> str | None:
        return self.param("text")

    def __str__(self) -> str:
        return f"{self.protocol}{format_params(self.params)}"


def parse_reason(text: str) -> Reason:
    head, params = _value_and_params(text, "Reason")
    if not is_token(head):
        raise RemoteProtocolError(f"malformed Reason {text[:40]!r}")
    return Reason(head, params)


@dataclass(frozen=True, slots=True)
class HistoryInfoEntry:
    """One History-Info entry (RFC 7044): the targeted-to URI (whose headers may carry a
    ``Reason``), ``index`` and the ``rc``/``mp``/``np`` tags."""

    name_addr: NameAddr

    @property
    def uri(self) -> Uri | None:
        return self.name_addr.uri

    @property
    def index(self) -> str | None:
        return self.name_addr.param("index")

    @property
    def tag(self) -> str | None:
        """Which of ``rc``, ``mp``, ``np`` is present (or ``None``)."""
        for t in ("rc", "mp", "np"):
            if self.name_addr.has_param(t):
                return t
        return None

    @property
    def reason(self) -> str | None:
        """The escaped Reason header carried in the URI's headers, unescaped."""
        uri = self.name_addr.uri
        if isinstance(uri, SipUri):
            from sbcsim.sip.uri import unescape

            for k, v in uri.headers:
                if k.lower() == "reason":
                    return unescape(v)
        return None

    def __str__(self) -> str:
        return str(self.name_addr)


def parse_history_info(values: Iterable[str]) -> list[HistoryInfoEntry]:
    entries = [HistoryInfoEntry(na) for na in parse_name_addrs(values)]
    for e in entries:
        if not e.name_addr.angle:
            raise RemoteProtocolError("History-Info entries must use <...>")
        idx = e.index
        if idx is None or not re.fullmatch(r"\d+(?:\.\d+)*", idx):
            raise RemoteProtocolError(f"History-Info entry without a valid index: {e}")
    return entries


@dataclass(frozen=True, slots=True)
class Replaces(_HasParams):
    """Replaces (RFC 3891): ``call-id;to-tag=..;from-tag=..[;early-only]``."""

    call_id: str
    params: Params = ()

    @property
    def to_tag(self) -> str | None:
        return self.param("to-tag")

    @property
    def from_tag(self) -> str | None:
        return self.param("from-tag")

    @property
    def early_only(self) -> bool:
        return self.has_param("early-only")

    def __str__(self) -> str:
        return f"{self.call_id}{format_params(self.params)}"


def parse_replaces(text: str) -> Replaces:
    head, params = _value_and_params(text, "Replaces")
    r = Replaces(head, params)
    if not head or r.to_tag is None or r.from_tag is None:
        raise RemoteProtocolError(f"Replaces needs a Call-ID, to-tag and from-tag: {text[:60]!r}")
    return r


@dataclass(frozen=True, slots=True)
class Event(_HasParams):
    """Event (RFC 6665): package and ``id``."""

    package: str
    params: Params = ()

    @property
    def id(self) -> str | None:
        return self.param("id")

    def __str__(self) -> str:
        return f"{self.package}{format_params(self.params)}"


def parse_event(text: str) -> Event:
    head, params = _value_and_params(text, "Event")
    if not is_token(head):
        raise RemoteProtocolError(f"malformed Event {text[:40]!r}")
    return Event(head, params)


@dataclass(frozen=True, slots=True)
class SubscriptionState(_HasParams):
    """Subscription-State (RFC 6665): ``active|pending|terminated`` with expires/reason."""

    state: str
    params: Params = ()

    @property
    def expires(self) -> int | None:
        v = self.param("expires")
        return int(v) if v and v.isdigit() else None

    @property
    def reason(self) -> str | None:
        return self.param("reason")

    def __str__(self) -> str:
        return f"{self.state}{format_params(self.params)}"


def parse_subscription_state(text: str) -> SubscriptionState:
    head, params = _value_and_params(text, "Subscription-State")
    if not is_token(head):
        raise RemoteProtocolError(f"malformed Subscription-State {text[:40]!r}")
    return SubscriptionState(head.lower(), params)


@dataclass(frozen=True, slots=True)
class RAck:
    """RAck (RFC 3262): ``rseq cseq method``."""

    rseq: int
    cseq: int
    method: str

    def __str__(self) -> str:
        return f"{self.rseq} {self.cseq} {self.method}"


def parse_rack(text: str) -> RAck:
    parts = text.split()
    if len(parts) != 3 or not is_token(parts[2]):
        raise RemoteProtocolError(f"malformed RAck {text[:40]!r}")
    return RAck(parse_uint(parts[0], "RAck rseq"), parse_uint(parts[1], "RAck cseq"), parts[2])


# --------------------------------------------------------------------------------------------
# The container
# --------------------------------------------------------------------------------------------
@dataclass(slots=True, init=False)
class HeaderField:
    """One header line: ``name`` as spelled, unfolded ``value``, and the ``raw`` line if parsed."""

    name: str
    value: str
    key: str = ""
    raw: str | None = field(default=None, repr=False)

    # Written out (not generated with a __post_init__): the parser makes one per header line.
    def __init__(self, name: str, value: str, key: str = "", raw: str | None = None) -> None:
        self.name = name
        self.value = value
        self.key = key or canonical_name(name)
        self.raw = raw

    def line(self) -> str:
        return self.raw if self.raw is not None else f"{self.name}: {self.value}"


class Headers:
    """Ordered header fields with case-insensitive, compact-form-aware look-up.

    Mutations clear ``cache`` (typed values parsed from the fields) and the owner's raw bytes.
    """

    __slots__ = ("_fields", "_index", "cache", "dirty")

    def __init__(self, fields: Iterable[HeaderField | tuple[str, str]] = ()) -> None:
        self._fields: list[HeaderField] = [
            f if isinstance(f, HeaderField) else HeaderField(f[0], f[1]) for f in fields
        ]
        self._index: dict[str, list[str]] | None = None
        self.cache: dict[str, object] = {}
        self.dirty = False

    @classmethod
    def from_parsed(
        cls, fields: list[HeaderField], index: dict[str, list[str]] | None = None
    ) -> Headers:
        """Adopt ``fields`` (and, when the caller built it, their name -> values ``index``)
        without copying: the parser's constructor."""
        headers = cls.__new__(cls)
        headers._fields = fields
        headers._index = index
        headers.cache = {}
        headers.dirty = False
        return headers

    def _changed(self) -> None:
        self.cache.clear()
        self._index = None
        self.dirty = True

    @property
    def index(self) -> dict[str, list[str]]:
        """canonical name -> values; read-only (mutate through the methods)."""
        return self._index or self._build_index()

    def _build_index(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for f in self._fields:
            values = index.get(f.key)
            if values is None:
                index[f.key] = [f.value]
            else:
                values.append(f.value)
        self._index = index
        return index

    # -- reading -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._fields)

    def __iter__(self) -> Iterator[HeaderField]:
        return iter(self._fields)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        return canonical_name(name) in (self._index or self._build_index())

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first field's value."""
        values = (self._index or self._build_index()).get(canonical_name(name))
        return values[0] if values else default

    def get_all(self, name: str) -> list[str]:
        """Every field's value, in order (values are not split at commas)."""
        return list((self._index or self._build_index()).get(canonical_name(name), ()))

    def values(self, name: str) -> list[str]:
        """Every comma-separated element of every field (for list-valued headers)."""
        return [item for v in self.get_all(name) for item in split_commas(v)]

    def fields(self, name: str | None = None) -> list[HeaderField]:
        if name is None:
            return list(self._fields)
        key = canonical_name(name)
        return [f for f in self._fields if f.key == key]

    def items(self) -> list[tuple[str, str]]:
        return [(f.name, f.value) for f in self._fields]

    # -- writing -------------------------------------------------------------------------------
    def append(self, name: str, value: object) -> None:
        self._fields.append(HeaderField(name, str(value)))
        self._changed()

    def prepend(self, name: str, value: object) -> None:
        """Insert before the first field of the same name (e.g. a new top Via), else first."""
        key = canonical_name(name)
        for i, f in enumerate(self._fields):
            if f.key == key:
                self._fields.insert(i, HeaderField(name, str(value)))
                break
        else:
            self._fields.insert(0, HeaderField(name, str(value)))
        self._changed()

    def set(self, name: str, value: object) -> None:
        """Replace every field of this name by one (kept at the first one's position)."""
        key = canonical_name(name)
        new = HeaderField(name, str(value))
        out: list[HeaderField] = []
        placed = False
        for f in self._fields:
            if f.key == key:
                if not placed:
                    out.append(new)
                    placed = True
            else:
                out.append(f)
        if not placed:
            out.append(new)
        self._fields = out
        self._changed()

    def remove(self, name: str) -> int:
        """Remove every field of this name; returns how many were removed."""
        key = canonical_name(name)
        before = len(self._fields)
        self._fields = [f for f in self._fields if f.key != key]
        removed = before - len(self._fields)
        if removed:
            self._changed()
        return removed

    def remove_first_value(self, name: str) -> str | None:
        """Pop the first comma-separated element of ``name`` (e.g. the top Via or Route)."""
        key = canonical_name(name)
        for i, f in enumerate(self._fields):
            if f.key == key:
                items = split_commas(f.value)
                first = items.pop(0)
                if items:
                    self._fields[i] = HeaderField(f.name, ", ".join(items))
                else:
                    del self._fields[i]
                self._changed()
                return first
        return None

    def copy(self) -> Headers:
        h = Headers()
        h._fields = [HeaderField(f.name, f.value, f.key, f.raw) for f in self._fields]
        return h

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(f.key, f.value) for f in self._fields] == [(f.key, f.value) for f in other._fields]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"
