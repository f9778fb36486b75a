"""Bytes from the wire -> :class:`Request` / :class:`Response`, strictly and without crashing.

Two entry points:

* :func:`parse_message` parses one whole message (a UDP datagram, or one frame from a stream).
* :class:`StreamFramer` cuts a TCP/TLS byte stream into whole messages (Content-Length framing,
  any chunking, RFC 5626 CRLF keep-alives); :class:`StreamParser` does both.

Whatever the input, the only exception that leaves this module is
:class:`~sbcsim.errors.RemoteProtocolError`.  Its ``status_hint`` is the response a UAS should
send (400, 505, 513 ...) or ``None`` for "discard silently" (malformed responses, RFC 3261
§18.1.2 / RFC 4475 §3.1.2.19); ``close_connection`` is set for framing errors on a stream.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sbcsim.errors import RemoteProtocolError
from sbcsim.sip.headers import HeaderField, Headers, canonical_name, is_token
from sbcsim.sip.message import Message, Request, Response
from sbcsim.sip.uri import SipUri, parse_uri

__all__ = [
    "KNOWN_METHODS",
    "KeepAlive",
    "ParserLimits",
    "StreamFramer",
    "StreamParser",
    "parse_message",
    "validate_message",
]

KNOWN_METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "UPDATE",
        "PRACK",
        "REFER",
        "NOTIFY",
        "SUBSCRIBE",
        "MESSAGE",
        "PUBLISH",
    }
)


@dataclass(frozen=True, slots=True)
class ParserLimits:
    """Bounds that protect a node from hostile input; the defaults fit any real SIP message."""

    max_message_size: int = 65535
    max_headers: int = 256
    max_line_length: int = 8192
    #: Reject a Date header that is not RFC 1123 with "GMT" (RFC 3261 §20.17, RFC 4475 §3.1.2.12).
    strict_date: bool = True


DEFAULT_LIMITS = ParserLimits()


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """RFC 5626 §3.5.1 keep-alive on a stream: ``CRLFCRLF`` is a ping (answer ``CRLF``), a lone
    ``CRLF`` is a pong."""

    pong_required: bool


_VERSION_RE = re.compile(r"SIP/(\d+)\.(\d+)\Z", re.I)
_STATUS_RE = re.compile(r"\d{3}\Z")
_CL_RE = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I | re.M)
_DATE_RE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} "
    r"\d{2}:\d{2}:\d{2} GMT\Z"
)


# Header name as spelled -> canonical key, for names already checked to be tokens: one look-up
# per header line instead of a token check and a name normalisation.
_name_keys: dict[str, str] = {}
_NAME_KEYS_LIMIT = 2048


def _discard_or(status: int | None, is_request: bool) -> int | None:
    return status if is_request else None


def _split_head(data: bytes) -> tuple[bytes, bytes, str]:
    """-> (header block without the blank line, rest, line ending)."""
    idx = data.find(b"\r\n\r\n")
    lf = data.find(b"\n\n")
    if idx >= 0 and (lf < 0 or lf > idx):
        return data[:idx], data[idx + 4 :], "\r\n"
    if lf >= 0:
        if b"\r\n" in data[:lf]:
            raise RemoteProtocolError("mixed line endings in the header section")
        return data[:lf], data[lf + 2 :], "\n"
    # No blank line: a datagram that ends inside the header section (RFC 4475 baddn.dat).
    head = data
    eol = "\r\n" if b"\r\n" in head else "\n"
    if head.endswith(eol.encode()):
        head = head[: -len(eol)]
    return head, b"", eol


def parse_message(
    data: bytes,
    *,
    transport: str = "udp",
    limits: ParserLimits = DEFAULT_LIMITS,
    validate: bool = True,
) -> Request | Response:
    """Parse one whole message.

    Over UDP (RFC 3261 §18.3) a Content-Length shorter than the rest of the datagram truncates
    the body (the extra octets are ignored), a longer one is an error (400), and without
    Content-Length the body is the rest of the datagram.  Over a stream, ``data`` must be exactly
    one frame (see :class:`StreamFramer`) and Content-Length is mandatory.
    """
    try:
        return _parse(data, transport, limits, validate)
    except RemoteProtocolError:
        raise
    except (ValueError, IndexError, UnicodeError, OverflowError, TypeError, AttributeError) as exc:
        # Defence in depth: a parser bug must still look like a rejected message, not a crash.
        raise RemoteProtocolError(f"unparseable message ({type(exc).__name__}: {exc})") from exc


def _parse(data: bytes, transport: str, limits: ParserLimits, validate: bool) -> Request | Response:
    if len(data) > limits.max_message_size:
        raise RemoteProtocolError(
            f"message of {len(data)} octets exceeds {limits.max_message_size}", 513
        )
    # RFC 3261 §7.5: ignore CRLFs before the start line.
    start = 0
    while data.startswith(b"\r\n", start) or data.startswith(b"\n", start):
        start += 2 if data.startswith(b"\r\n", start) else 1
    if start:
        data = data[start:]
    if not data:
        raise RemoteProtocolError("empty message", None)
    head, rest, eol = _split_head(data)
    text = head.decode("utf-8", "surrogateescape")
    lines = text.split(eol)
    first = lines[0]
    is_request = not first.startswith("SIP/")
    if len(first) > limits.max_line_length:
        raise RemoteProtocolError(
            "start line too long", _discard_or(414 if is_request else 400, is_request)
        )
    # A CR or LF that is not part of a line ending (counted, not copied: this runs per message).
    if eol == "\r\n":
        crlf = text.count("\r\n")
        stray = text.count("\r") != crlf or text.count("\n") != crlf
    else:
        stray = "\r" in text
    if stray:
        raise RemoteProtocolError(
            "bare CR or LF in the header section", _discard_or(400, is_request)
        )

    msg: Message
    if is_request:
        parts = first.split(" ")
        if len(parts) != 3 or not all(parts):
            raise RemoteProtocolError(
                "malformed Request-Line (need exactly METHOD SP Request-URI SP SIP-Version)", 400
            )
        method, uri_text, version = parts
        if not is_token(method):
            raise RemoteProtocolError(f"invalid method {method[:30]!r}", 400)
        if version != "SIP/2.0":  # the one spelling nearly every message uses
            vm = _VERSION_RE.match(version)
            if vm is None:
                raise RemoteProtocolError(f"malformed SIP-Version {version[:20]!r}", 400)
            if (vm.group(1), vm.group(2)) != ("2", "0"):
                raise RemoteProtocolError(f"unsupported version {version}", 505)
        if uri_text.startswith("<"):
            raise RemoteProtocolError("Request-URI must not be enclosed in <>", 400)
        uri = parse_uri(uri_text)
        if isinstance(uri, SipUri) and uri.headers:
            raise RemoteProtocolError(
                "headers are not allowed in a Request-URI (RFC 3261 §19.1.1)", 400
            )
        start_version = version
    else:
        ver, sp, rest_line = first.partition(" ")
        code, _sp2, reason = rest_line.partition(" ")
        if ver != "SIP/2.0" or not sp:
            vm = _VERSION_RE.match(ver)
            if vm is None or not sp:
                raise RemoteProtocolError(f"malformed Status-Line {first[:40]!r}", None)
            if (vm.group(1), vm.group(2)) != ("2", "0"):
                raise RemoteProtocolError(f"unsupported version {ver}", None)
        if not _STATUS_RE.match(code) or not 100 <= int(code) <= 699:
            raise RemoteProtocolError(f"invalid status code {code[:20]!r}", None)
        start_version = ver

    # Header fields, unfolding continuation lines (RFC 3261 §7.3.1).  The name -> values index
    # is built on the way, unless a folded line changed a value after it was indexed.
    fields: list[HeaderField] = []
    append = fields.append
    index: dict[str, list[str]] = {}
    folded = False
    max_line = limits.max_line_length
    # No line can be longer than the whole section: then the per-line check is skipped.
    check_length = len(text) > max_line
    for line in lines[1:]:
        if not line:
            raise RemoteProtocolError(
                "empty line inside the header section", _discard_or(400, is_request)
            )
        if line[0] in " \t":
            if not fields:
                raise RemoteProtocolError(
                    "continuation line before the first header", _discard_or(400, is_request)
                )
            prev = fields[-1]
            prev.raw = f"{prev.raw}{eol}{line}"
            prev.value = (prev.value + " " + line.strip(" \t")).strip(" \t")
            folded = True
            continue
        if check_length and len(line) > max_line:
            raise RemoteProtocolError("header line too long", _discard_or(400, is_request))
        colon = line.find(":")
        if colon <= 0:
            raise RemoteProtocolError(
                f"header line without a name and ':': {line[:40]!r}", _discard_or(400, is_request)
            )
        name = line[:colon].rstrip(" \t")
        key = _name_keys.get(name)
        if key is None:
            if not is_token(name):
                raise RemoteProtocolError(
                    f"invalid header name {name[:40]!r}", _discard_or(400, is_request)
                )
            key = canonical_name(name)
            if len(_name_keys) < _NAME_KEYS_LIMIT:
                _name_keys[name] = key
        value = line[colon + 1 :].strip(" \t")
        append(HeaderField(name, value, key, line))
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    if len(fields) > limits.max_headers:
        raise RemoteProtocolError(
            f"{len(fields)} header fields exceed {limits.max_headers}", _discard_or(400, is_request)
        )
    headers = Headers.from_parsed(fields, None if folded else index)
    if is_request:
        msg = Request(method, uri, headers, version=start_version)
    else:
        msg = Response(int(code), reason, headers, version=start_version)
    msg._raw_start = first
    msg.line_ending = eol

    # Body framing.
    cl_values = headers.index.get("content-length", ())
    if len(cl_values) > 1 and len({v.strip() for v in cl_values}) > 1:
        raise RemoteProtocolError(
            "conflicting Content-Length values", _discard_or(400, is_request), close_connection=True
        )
    if cl_values:
        cl_text = cl_values[0].strip()
        if not cl_text.isdigit() or not cl_text.isascii():
            raise RemoteProtocolError(
                f"invalid Content-Length {cl_text[:20]!r}",
                _discard_or(400, is_request),
                close_connection=True,
            )
        length = int(cl_text)
        if length > len(rest):
            raise RemoteProtocolError(
                f"Content-Length {length} exceeds the {len(rest)} octets that follow the headers",
                _discard_or(400, is_request),
            )
        body = rest[:length]
        # Extra octets in a UDP datagram are ignored (RFC 3261 §18.3, RFC 4475 §3.1.1.8).
        consumed = len(data) - len(rest) + length
    else:
        if transport != "udp" and rest:
            raise RemoteProtocolError(
                "Content-Length is mandatory on a stream transport",
                _discard_or(400, is_request),
                close_connection=True,
            )
        body = rest
        consumed = len(data)
    msg.body = body
    msg._raw = data[:consumed]
    if validate:
        validate_message(msg, limits)
    assert isinstance(msg, Request | Response)
    return msg


_REQUIRED_ONCE = (("call-id", "Call-ID"), ("cseq", "CSeq"), ("from", "From"), ("to", "To"))


def validate_message(msg: Message, limits: ParserLimits = DEFAULT_LIMITS) -> None:
    """RFC 3261 §8.1.1 / §8.2 mandatory header checks and the syntax of the core headers.

    Everything the transaction and dialog layers rely on is parsed here (and cached), so a
    message that passes can be handled without further syntax errors.
    """
    is_request = isinstance(msg, Request)
    status = 400 if is_request else None
    try:
        index = msg.headers.index
        for key, name in _REQUIRED_ONCE:
            values = index.get(key)
            if not values:
                raise RemoteProtocolError(f"missing {name} header")
            if len(values) > 1:
                raise RemoteProtocolError(f"more than one {name} header")
        if not index.get("via"):
            raise RemoteProtocolError("missing Via header")
        _ = msg.via
        _ = msg.call_id
        cseq = msg.cseq
        _ = msg.from_
        _ = msg.to
        # The optional ones are parsed (and cached) when present; absent, their views are
        # None or [] and cannot fail.
        if "max-forwards" in index:
            _ = msg.max_forwards
        if "content-length" in index:
            _ = msg.content_length
        if "content-type" in index:
            _ = msg.content_type
        if "contact" in index:
            _ = msg.contact
        if "expires" in index:
            _ = msg.expires
        if "route" in index:
            _ = msg.route
        if "record-route" in index:
            _ = msg.record_route
        if limits.strict_date:
            dates = index.get("date")
            date = dates[0] if dates else None
            if date is not None and not _DATE_RE.match(date.strip()):
                raise RemoteProtocolError(f"Date is not an RFC 1123 GMT date: {date[:40]!r}")
    except RemoteProtocolError as exc:
        raise RemoteProtocolError(
            exc.msg, status if exc.status_hint is not None else None
        ) from None
    if isinstance(msg, Request):
        if cseq.method != msg.method:
            # RFC 4475 §3.1.2.18: for an unknown method, 501 is the better answer.
            code = 501 if msg.method not in KNOWN_METHODS else 400
            raise RemoteProtocolError(
                f"CSeq method {cseq.method} does not match {msg.method}", code
            )


class StreamFramer:
    """Cuts a byte stream into whole SIP messages (RFC 3261 §18.3) and keep-alives.

    ``feed()`` may be given the bytes in any chunking; it returns every message completed so far.
    A framing error (missing, negative or conflicting Content-Length, a header section or body
    over the limits) raises :class:`RemoteProtocolError` with ``close_connection=True``: the
    stream cannot be resynchronised and the connection must be closed.
    """

    __slots__ = ("_buf", "_limits", "_need")

    def __init__(self, limits: ParserLimits | None = None) -> None:
        self._buf = bytearray()
        self._limits = limits or DEFAULT_LIMITS
        self._need = 0  # total frame size once the header section is known

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        """Add ``data``; return every frame completed so far (see :meth:`next_frame`)."""
        self._buf += data
        out: list[bytes | KeepAlive] = []
        while (item := self.next_frame()) is not None:
            out.append(item)
        return out

    def receive(self, data: bytes) -> None:
        """Add ``data`` without framing it yet (pull frames with :meth:`next_frame`)."""
        self._buf += data

    def next_frame(self) -> bytes | KeepAlive | None:
        """The next whole message or keep-alive, or ``None`` when more bytes are needed."""
        buf = self._buf
        while buf:
            if self._need:
                if len(buf) < self._need:
                    return None
                frame = bytes(buf[: self._need])
                del buf[: self._need]
                self._need = 0
                return frame
            # Keep-alives and stray CRLFs between messages.
            if buf[0] in (0x0D, 0x0A):
                if buf.startswith(b"\r\n\r\n"):
                    del buf[:4]
                    return KeepAlive(pong_required=True)
                if buf.startswith(b"\r\n"):
                    if len(buf) == 2 or buf[2] not in (0x0D, 0x0A):
                        del buf[:2]
                        return KeepAlive(pong_required=False)
                    if len(buf) < 4:
                        return None  # "\r\n\r" may still become a ping
                    del buf[:2]
                    continue
                if buf[0] == 0x0D and len(buf) == 1:
                    return None
                del buf[:1]
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self._limits.max_message_size:
                    raise RemoteProtocolError(
                        "header section exceeds the size limit", 400, close_connection=True
                    )
                return None
            head = bytes(buf[:end])
            matches = _CL_RE.findall(head)
            if not matches:
                raise RemoteProtocolError(
                    "Content-Length is mandatory on a stream transport", 400, close_connection=True
                )
            values = {m.strip().decode("latin-1") for m in matches}
            if len(values) > 1:
                raise RemoteProtocolError(
                    "conflicting Content-Length values", 400, close_connection=True
                )
            value = values.pop()
            if not value.isdigit() or not value.isascii():
                raise RemoteProtocolError(
                    f"invalid Content-Length {value[:20]!r}", 400, close_connection=True
                )
            total = end + 4 + int(value)
            if total > self._limits.max_message_size:
                raise RemoteProtocolError(
                    f"message of {total} octets exceeds the size limit", 513, close_connection=True
                )
            self._need = total
        return None


class StreamParser:
    """:class:`StreamFramer` + :func:`parse_message`: feed bytes, get messages, keep-alives and
    per-message errors (a frame that is well delimited but malformed does not close the stream)."""

    __slots__ = ("_framer", "_limits")

    def __init__(self, limits: ParserLimits | None = None) -> None:
        self._limits = limits or DEFAULT_LIMITS
        self._framer = StreamFramer(self._limits)

    def feed(self, data: bytes) -> list[Request | Response | KeepAlive | RemoteProtocolError]:
        out: list[Request | Response | KeepAlive | RemoteProtocolError] = []
        for item in self._framer.feed(data):
            if isinstance(item, KeepAlive):
                out.append(item)
                continue
            try:
                out.append(parse_message(item, transport="tcp", limits=self._limits))
            except RemoteProtocolError as exc:
                out.append(exc)
        return out
