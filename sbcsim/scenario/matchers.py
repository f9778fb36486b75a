"""Judging one message against a :class:`~sbcsim.scenario.models.MessagePattern`.

A match gives back every predicate that failed, in words, so a failed ``expect`` can say what
it expected and what the closest message actually carried (the evidence a partner reads).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache

from sbcsim.errors import RemoteProtocolError
from sbcsim.scenario.models import MessagePattern, SdpPattern, TimingPattern
from sbcsim.sip.message import Request, Response
from sbcsim.sip.parser import parse_message
from sbcsim.sip.sdp import SessionDescription
from sbcsim.testplan.results import TraceEntry

__all__ = ["Match", "addr_spec", "match_entry", "parse_entry", "raw_request_uri", "substitute"]

_VAR_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def substitute(text: str, variables: Mapping[str, str]) -> str:
    """Replace ``{name}`` by captured variables; unknown names stay as written."""
    return _VAR_RE.sub(lambda m: variables.get(m.group(1), m.group(0)), text)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _literal(pattern: str) -> str | None:
    """The text of a ``=text`` literal pattern, or None for a regex."""
    return pattern[1:] if pattern.startswith("=") else None


def addr_spec(value: str) -> str:
    """The URI inside one header value (``<uri>;params`` or a bare ``uri;params``), without its
    ``?headers`` part: what a Refer-To names as the new Request-URI (RFC 3515 §2.4.2)."""
    start = value.find("<")
    if start >= 0:
        end = value.find(">", start)
        uri = value[start + 1 : end if end >= 0 else len(value)]
    else:
        uri = value.split(";", 1)[0]
    return uri.split("?", 1)[0].strip()


def raw_request_uri(data: bytes) -> str | None:
    """The Request-URI exactly as written on the wire (None for a response)."""
    line = data.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    parts = line.split(" ")
    if len(parts) != 3 or line.startswith("SIP/"):
        return None
    return parts[1]


@dataclass(slots=True)
class Match:
    """The result of judging one message: ``ok`` and, when not, what failed."""

    entry: TraceEntry
    message: Request | Response | None
    failures: list[str] = field(default_factory=list)
    #: how many of the "identity" predicates (actors, method/status, call) held — ranks candidates
    identity: int = 0

    @property
    def ok(self) -> bool:
        return not self.failures and self.message is not None


_parsed: dict[tuple[bytes, bool], Request | Response | None] = {}


def parse_entry(entry: TraceEntry) -> Request | Response | None:
    """The message of a trace entry (``None`` when it does not parse).

    Cached by content (parsing is a pure function of the bytes): a judgement scans the same
    messages many times while it waits.
    """
    key = (entry.data, entry.transport == "udp")
    if key in _parsed:
        return _parsed[key]
    try:
        msg: Request | Response | None = parse_message(
            entry.data, transport="udp" if key[1] else "tcp"
        )
    except RemoteProtocolError:
        msg = None
    if len(_parsed) > 20_000:
        _parsed.clear()
    _parsed[key] = msg
    return msg


def match_entry(
    entry: TraceEntry,
    pattern: MessagePattern,
    variables: Mapping[str, str],
    is_actor: Callable[[str, tuple[str, int], TraceEntry], bool],
) -> Match:
    """Judge ``entry`` against ``pattern``.  ``is_actor(name, address, entry)`` says whether an
    address belongs to a named actor (the engine knows the topology)."""
    msg = parse_entry(entry)
    result = Match(entry, msg)
    fails = result.failures
    if entry.dropped:
        fails.append("the message was lost by the network")
    # identity predicates first: they rank the candidates for "closest message" evidence
    if pattern.from_ is not None:
        if is_actor(pattern.from_, entry.src, entry):
            result.identity += 1
        else:
            fails.append(f"sent by {entry.src_name or entry.src}, expected {pattern.from_}")
    if pattern.to is not None:
        if is_actor(pattern.to, entry.dst, entry):
            result.identity += 1
        else:
            fails.append(f"sent to {entry.dst_name or entry.dst}, expected {pattern.to}")
    if msg is None:
        fails.append("not a well-formed SIP message")
        return result
    if pattern.request is not None:
        if isinstance(msg, Request) and msg.method == pattern.request:
            result.identity += 2
        else:
            fails.append(f"expected a {pattern.request} request, saw {entry.summary!r}")
    if pattern.status is not None:
        wanted = [pattern.status] if isinstance(pattern.status, int) else pattern.status
        if isinstance(msg, Response) and msg.status in wanted:
            result.identity += 2
        else:
            fails.append(f"expected status {'/'.join(map(str, wanted))}, saw {entry.summary!r}")
    if pattern.cseq is not None and not _regex(substitute(pattern.cseq, variables)).search(
        msg.cseq.method
    ):
        fails.append(f"CSeq method {msg.cseq.method} does not match /{pattern.cseq}/")
    if pattern.call is not None:
        call_id = variables.get(pattern.call)
        if call_id is None:
            fails.append(f"no call named {pattern.call!r} was captured")
        elif msg.call_id != call_id:
            fails.append(f"Call-ID {msg.call_id} is not {pattern.call}'s ({call_id})")
        else:
            result.identity += 1
    if pattern.uri is not None:
        wanted_uri = substitute(pattern.uri, variables)
        exact = _literal(wanted_uri)
        if not isinstance(msg, Request):
            fails.append("a Request-URI was expected, this is a response")
        elif exact is not None:
            written = raw_request_uri(entry.data) or str(msg.uri)
            if written != exact:
                fails.append(f"Request-URI {written} is not exactly {exact}")
        elif not _regex(wanted_uri).search(str(msg.uri)):
            fails.append(f"Request-URI {msg.uri} does not match /{wanted_uri}/")
    for name, regex in pattern.headers.items():
        values = msg.headers.get_all(name)
        text = substitute(regex, variables)
        exact = _literal(text)
        if exact is not None:
            if not values:
                fails.append(f"no {name} header (expected exactly {exact!r})")
            elif not any(v.strip() == exact.strip() for v in values):
                shown = " | ".join(values)
                fails.append(f"{name}: {shown[:300]!r} is not exactly {exact[:300]!r}")
            continue
        rx = _regex(text)
        if not values:
            fails.append(f"no {name} header (expected one matching /{rx.pattern}/)")
        elif not any(rx.search(v) for v in values):
            shown = " | ".join(values)
            fails.append(f"{name}: {shown[:200]!r} does not match /{rx.pattern}/")
    for name in pattern.absent:
        if name in msg.headers:
            fails.append(f"{name} must be absent, saw {msg.headers.get(name)!r}")
    for name, n in pattern.count.items():
        try:
            got = len(msg.headers.values(name))
        except RemoteProtocolError:
            got = len(msg.headers.get_all(name))
        if got != n:
            fails.append(f"{name} has {got} value(s), expected {n}")
    if pattern.sdp is not None:
        fails.extend(_sdp_failures(msg, pattern.sdp))
    if pattern.body is not None:
        text = msg.body.decode("utf-8", "replace")
        body_rx = _regex(substitute(pattern.body, variables))
        if not body_rx.search(text):
            fails.append(f"body {text[:120]!r} does not match /{body_rx.pattern}/")
    if pattern.elapsed is not None:
        fails.extend(_timing_failures(entry, pattern.elapsed, variables))
    return result


def _timing_failures(
    entry: TraceEntry, timing: TimingPattern, variables: Mapping[str, str]
) -> list[str]:
    since = variables.get(timing.since)
    if since is None:
        return [f"no instant named {timing.since!r} was captured"]
    try:
        start = float(since)
    except ValueError:
        return [f"{timing.since} = {since!r} is not an instant (capture it as 'time')"]
    delta = round(entry.time - start, 6)
    if delta < timing.min or (timing.max is not None and delta > timing.max):
        upper = "" if timing.max is None else f" and {timing.max:g}"
        return [f"sent {delta:g} s after {timing.since}, expected between {timing.min:g}{upper}"]
    return []


def _sdp_failures(msg: Request | Response, pattern: SdpPattern) -> list[str]:
    has_sdp = bool(msg.body) and (
        msg.content_type is None or msg.content_type.mime == "application/sdp"
    )
    if not pattern.present:
        return ["an SDP body was not expected"] if has_sdp else []
    if not has_sdp:
        return ["no SDP body"]
    try:
        sdp = SessionDescription.parse(msg.body)
    except RemoteProtocolError as exc:
        return [f"SDP does not parse: {exc.msg}"]
    out: list[str] = []
    audio = [m for m in sdp.media if m.media == "audio"]
    if not audio:
        return ["no audio m= line"]
    for m in audio:
        if pattern.proto is not None and not _regex(pattern.proto).search(m.proto):
            out.append(f"m=audio proto {m.proto} does not match /{pattern.proto}/")
        for attr in pattern.attributes:
            if not (m.has_attribute(attr) or sdp.has_attribute(attr)):
                out.append(f"a={attr} missing")
        for attr in pattern.no_attributes:
            if m.has_attribute(attr) or sdp.has_attribute(attr):
                out.append(f"a={attr} must not be present")
        if pattern.direction is not None:
            d = str(sdp.effective_direction(m))
            if d != pattern.direction:
                out.append(f"direction is {d}, expected {pattern.direction}")
        if pattern.crypto_suite is not None and not any(
            c.suite == pattern.crypto_suite for c in m.cryptos
        ):
            suites = [c.suite for c in m.cryptos] or ["none"]
            out.append(f"no a=crypto with {pattern.crypto_suite} (saw {', '.join(suites)})")
        if pattern.codecs:
            names = {c.encoding.lower() for c in m.codecs}
            missing = [c for c in pattern.codecs if c.lower() not in names]
            if missing:
                out.append(f"codecs {missing} not offered (saw {sorted(names)})")
        if pattern.connection_not is not None:
            conn = sdp.effective_connection(m)
            if conn is not None and conn.address == pattern.connection_not:
                out.append(f"c= is {conn.address}")
    return out
