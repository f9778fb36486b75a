"""SIP requests and responses, and the RFC 3261 rules for building them.

A parsed message remembers its bytes: until something changes, :meth:`Message.to_bytes` returns
exactly what arrived (so captures, ladders and a proxy's forwarding are faithful).  Typed views
(``via``, ``from_``, ``cseq`` ...) are parsed once and cached; a malformed value raises
:class:`~sbcsim.errors.RemoteProtocolError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from sbcsim.errors import LocalProtocolError, RemoteProtocolError
from sbcsim.sip.headers import (
    CSeq,
    Event,
    HeaderField,
    Headers,
    HistoryInfoEntry,
    MediaType,
    NameAddr,
    RAck,
    Reason,
    Replaces,
    SessionExpires,
    SubscriptionState,
    Via,
    parse_cseq,
    parse_delta_seconds,
    parse_event,
    parse_history_info,
    parse_media_type,
    parse_name_addr,
    parse_name_addrs,
    parse_rack,
    parse_reason,
    parse_replaces,
    parse_session_expires,
    parse_subscription_state,
    parse_token_list,
    parse_uint,
    parse_vias,
    split_commas,
)
from sbcsim.sip.uri import Uri, parse_uri

__all__ = [
    "REASON_PHRASES",
    "Message",
    "Request",
    "Response",
    "build_request",
    "make_response",
]

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

_T = TypeVar("_T")
_V = TypeVar("_V")
_MISSING = object()


class Message:
    """What requests and responses share: headers, body, version and the typed views."""

    __slots__ = ("_raw", "_raw_start", "_start_dirty", "body", "headers", "line_ending", "version")

    def __init__(
        self,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self.body = body
        self.version = version
        self.line_ending = "\r\n"
        self._raw: bytes | None = None
        self._raw_start: str | None = None
        self._start_dirty = False

    # -- typed views (cached per Headers mutation) ----------------------------------------------
    def _cached(self, key: str, build: Callable[[], _V]) -> _V:
        cache = self.headers.cache
        # A sentinel rather than KeyError: every typed view misses once per message, and
        # raising costs more than the look-up (validation reads a dozen views per message).
        value = cache.get(key, _MISSING)
        if value is _MISSING:
            value = cache[key] = build()
        return value  # type: ignore[return-value]

    def _single(self, name: str) -> str | None:
        """The value of a header that must appear at most once."""
        values = self.headers.index.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise RemoteProtocolError(f"{name} appears {len(values)} times")
        return values[0]

    def _required(self, name: str) -> str:
        v = self._single(name)
        if v is None:
            raise RemoteProtocolError(f"missing {name} header")
        return v

    # The hot views (every message reads them several times) look in the cache first, without
    # building a closure for _cached.

    @property
    def via(self) -> list[Via]:
        value = self.headers.cache.get("via")
        if value is None:
            value = self._cached("via", lambda: parse_vias(self.headers.get_all("via")))
        return value  # type: ignore[return-value]

    @property
    def top_via(self) -> Via:
        vias = self.via
        if not vias:
            raise RemoteProtocolError("missing Via header")
        return vias[0]

    def _name_addr(self, name: str) -> NameAddr:
        value = self.headers.cache.get(name)
        if value is not None:
            return value  # type: ignore[return-value]

        def build() -> NameAddr:
            value = self._required(name)
            # split_commas only when it can find something: a comma, or nothing at all
            if ("," in value or not value.strip(" \t")) and len(split_commas(value)) > 1:
                raise RemoteProtocolError(f"{name} has more than one value")
            return parse_name_addr(value)

        return self._cached(name, build)

    @property
    def from_(self) -> NameAddr:
        return self._name_addr("from")

    @property
    def to(self) -> NameAddr:
        return self._name_addr("to")

    @property
    def call_id(self) -> str:
        value = self.headers.cache.get("call-id")
        if value is not None:
            return value  # type: ignore[return-value]

        def build() -> str:
            v = self._required("call-id").strip(" \t")
            if not v or " " in v or "\t" in v or "," in v:
                raise RemoteProtocolError(f"malformed Call-ID {v[:40]!r}")
            return v

        return self._cached("call-id", build)

    @property
    def cseq(self) -> CSeq:
        value = self.headers.cache.get("cseq")
        if value is None:
            value = self._cached("cseq", lambda: parse_cseq(self._required("cseq")))
        return value  # type: ignore[return-value]

    @property
    def contact(self) -> list[NameAddr]:
        value = self.headers.cache.get("contact")
        if value is None:
            value = self._cached(
                "contact",
                lambda: parse_name_addrs(self.headers.get_all("contact"), allow_star=True),
            )
        return value  # type: ignore[return-value]

    def _list(self, name: str) -> list[NameAddr]:
        value = self.headers.cache.get(name)
        if value is None:
            value = self._cached(name, lambda: parse_name_addrs(self.headers.get_all(name)))
        return value  # type: ignore[return-value]

    @property
    def route(self) -> list[NameAddr]:
        return self._list("route")

    @property
    def record_route(self) -> list[NameAddr]:
        return self._list("record-route")

    @property
    def p_asserted_identity(self) -> list[NameAddr]:
        return self._list("p-asserted-identity")

    def _optional_name_addr(self, name: str) -> NameAddr | None:
        if self._single(name) is None:
            return None
        return self._name_addr(name)

    @property
    def refer_to(self) -> NameAddr | None:
        return self._optional_name_addr("refer-to")

    @property
    def referred_by(self) -> NameAddr | None:
        return self._optional_name_addr("referred-by")

    def _optional_uint(self, name: str, maximum: int) -> int | None:
        value = self.headers.cache.get(name, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[return-value]

        def build() -> int | None:
            v = self._single(name)
            return None if v is None else parse_uint(v, name, maximum)

        return self._cached(name, build)

    @property
    def max_forwards(self) -> int | None:
        return self._optional_uint("max-forwards", 255)

    @property
    def content_length(self) -> int | None:
        return self._optional_uint("content-length", 2**31 - 1)

    @property
    def rseq(self) -> int | None:
        return self._optional_uint("rseq", 2**32 - 1)

    @property
    def min_se(self) -> int | None:
        def build() -> int | None:
            v = self._single("min-se")
            return None if v is None else parse_delta_seconds(v.split(";")[0], "Min-SE")

        return self._cached("min-se", build)

    @property
    def expires(self) -> int | None:
        def build() -> int | None:
            v = self._single("expires")
            return None if v is None else parse_delta_seconds(v, "Expires")

        return self._cached("expires", build)

    def _optional(self, name: str, parse: Callable[[str], _V]) -> _V | None:
        def build() -> _V | None:
            v = self._single(name)
            return None if v is None else parse(v)

        return self._cached(name, build)

    @property
    def content_type(self) -> MediaType | None:
        return self._optional("content-type", parse_media_type)

    @property
    def session_expires(self) -> SessionExpires | None:
        return self._optional("session-expires", parse_session_expires)

    @property
    def replaces(self) -> Replaces | None:
        return self._optional("replaces", parse_replaces)

    @property
    def event(self) -> Event | None:
        return self._optional("event", parse_event)

    @property
    def subscription_state(self) -> SubscriptionState | None:
        return self._optional("subscription-state", parse_subscription_state)

    @property
    def rack(self) -> RAck | None:
        return self._optional("rack", parse_rack)

    @property
    def reason(self) -> list[Reason]:
        return self._cached(
            "reason", lambda: [parse_reason(v) for v in self.headers.values("reason")]
        )

    @property
    def history_info(self) -> list[HistoryInfoEntry]:
        return self._cached(
            "history-info", lambda: parse_history_info(self.headers.get_all("history-info"))
        )

    def tokens(self, name: str) -> list[str]:
        """A token-list header (Allow, Supported, Require, Proxy-Require, Unsupported ...)."""
        key = "tokens:" + name.lower()
        return self._cached(key, lambda: parse_token_list(self.headers.get_all(name)))

    @property
    def allow(self) -> list[str]:
        return self.tokens("allow")

    @property
    def supported(self) -> list[str]:
        return self.tokens("supported")

    @property
    def require(self) -> list[str]:
        return self.tokens("require")

    def supports(self, option: str) -> bool:
        low = option.lower()
        return any(t.lower() == low for t in self.supported) or any(
            t.lower() == low for t in self.require
        )

    # -- serialization --------------------------------------------------------------------------
    def start_line(self) -> str:
        raise NotImplementedError

    def _mark_dirty(self) -> None:
        self._raw = None
        self._start_dirty = True

    def to_bytes(self) -> bytes:
        """The wire form.  Unchanged parsed messages give back their exact bytes.

        Content-Length is written (or corrected) for messages built or changed here.
        """
        if self._raw is not None and not self.headers.dirty:
            return self._raw
        eol = self.line_ending
        start = (
            self._raw_start
            if (self._raw_start is not None and not self._start_dirty)
            else self.start_line()
        )
        body_len = str(len(self.body))
        cl = self.headers.index.get("content-length")
        if not cl:
            self.headers.append("Content-Length", body_len)
        elif len(cl) > 1 or cl[0].strip() != body_len:
            self.headers.set("Content-Length", body_len)
        lines = [start]
        lines += [f.line() for f in self.headers]
        text = eol.join(lines) + eol + eol
        data = text.encode("utf-8", "surrogateescape") + self.body
        self._raw = data
        self.headers.dirty = False
        return data

    def __bytes__(self) -> bytes:
        return self.to_bytes()

    def __str__(self) -> str:
        return self.to_bytes().decode("utf-8", "replace")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Message):
            return NotImplemented
        return type(self) is type(other) and self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def copy(self: _T) -> _T:
        raise NotImplementedError


class Request(Message):
    """A SIP request.  ``uri`` is the parsed Request-URI (SIP, SIPS, TEL or opaque)."""

    __slots__ = ("_method", "_uri")

    def __init__(
        self,
        method: str,
        uri: Uri | str,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body, version)
        self._method = method
        self._uri: Uri = parse_uri(uri) if isinstance(uri, str) else uri

    @property
    def method(self) -> str:
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        self._method = value
        self._mark_dirty()

    @property
    def uri(self) -> Uri:
        return self._uri

    @uri.setter
    def uri(self, value: Uri | str) -> None:
        self._uri = parse_uri(value) if isinstance(value, str) else value
        self._mark_dirty()

    def start_line(self) -> str:
        return f"{self._method} {self._uri} {self.version}"

    def copy(self) -> Request:
        r = Request(self._method, self._uri, self.headers.copy(), self.body, self.version)
        r.line_ending = self.line_ending
        return r

    def __repr__(self) -> str:
        return f"<Request {self._method} {self._uri}>"


class Response(Message):
    """A SIP response."""

    __slots__ = ("_reason", "_status")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body, version)
        self._status = status
        self._reason = REASON_PHRASES.get(status, "") if reason is None else reason

    @property
    def status(self) -> int:
        return self._status

    @status.setter
    def status(self, value: int) -> None:
        self._status = value
        self._mark_dirty()

    @property
    def reason_phrase(self) -> str:
        return self._reason

    @reason_phrase.setter
    def reason_phrase(self, value: str) -> None:
        self._reason = value
        self._mark_dirty()

    @property
    def provisional(self) -> bool:
        return self._status < 200

    @property
    def success(self) -> bool:
        return 200 <= self._status < 300

    @property
    def final(self) -> bool:
        return self._status >= 200

    def start_line(self) -> str:
        return f"{self.version} {self._status} {self._reason}"

    def copy(self) -> Response:
        r = Response(self._status, self._reason, self.headers.copy(), self.body, self.version)
        r.line_ending = self.line_ending
        return r

    def __repr__(self) -> str:
        return f"<Response {self._status} {self._reason}>"


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Response:
    """A response to ``request`` per RFC 3261 §8.2.6.

    Copies every Via (in order), From, Call-ID and CSeq; copies To and adds ``to_tag`` when the To
    has no tag yet (never for 100 Trying, §8.2.6.2); a 100 Trying copies Timestamp (§8.2.6.1).
    """
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status {status} is not a SIP status code")
    fields: list[HeaderField] = []
    append = fields.append
    for f in request.headers:
        key = f.key
        if key in _COPIED_TO_RESPONSES:
            append(HeaderField(f.name, f.value, key))
        elif key == "to":
            value = f.value
            if to_tag is not None and status != 100 and request.to.tag is None:
                value = _to_with_tag(request, to_tag)
            append(HeaderField(f.name, value, key))
        elif key == "timestamp" and status == 100:
            append(HeaderField(f.name, f.value, key))
    for name, extra in headers:
        append(HeaderField(name, str(extra)))
    if content_type is not None:
        append(HeaderField("Content-Type", content_type, "content-type"))
    return Response(status, reason, Headers.from_parsed(fields), body)


_COPIED_TO_RESPONSES = frozenset(("via", "from", "call-id", "cseq"))


def _to_with_tag(request: Request, to_tag: str) -> str:
    """The request's To with our tag, as text; kept with the request's typed views, as a UAS
    sends it in every response (180, 200 ...) to the same INVITE."""
    cache = request.headers.cache
    key = "to;tag=" + to_tag
    value = cache.get(key)
    if value is None:
        value = cache[key] = str(request.to.with_tag(to_tag))
    return value  # type: ignore[return-value]


def build_request(
    method: str,
    uri: Uri | str,
    *,
    from_: NameAddr | str,
    to: NameAddr | str,
    call_id: str,
    cseq: int,
    via: Via | str,
    contact: NameAddr | str | None = None,
    route: Sequence[NameAddr | str] = (),
    max_forwards: int | None = 70,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> Request:
    """A new request (RFC 3261 §8.1.1), or one within a dialog when given the dialog's remote
    target as ``uri``, its local/remote URIs and tags in ``from_``/``to``, its next CSeq and its
    route set as ``route`` (§12.2.1.1).  Header order is the conventional one."""
    fields: list[tuple[str, str]] = [("Via", str(via))]
    fields += [("Route", str(r)) for r in route]
    if max_forwards is not None:
        fields.append(("Max-Forwards", str(max_forwards)))
    fields += [
        ("From", str(from_)),
        ("To", str(to)),
        ("Call-ID", call_id),
        ("CSeq", f"{cseq} {method}"),
    ]
    if contact is not None:
        fields.append(("Contact", str(contact)))
    fields += list(headers)
    if content_type is not None:
        fields.append(("Content-Type", content_type))
    return Request(method, uri, fields, body)
