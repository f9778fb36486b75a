"""The stateless part of a UAS core's request inspection (RFC 3261 §8.2, §16.3 for a proxy).

:func:`inspect_request` answers: would this well-formed request be rejected before any
dialog or application logic sees it, and with which response?  The checks run in the RFC's
order — method (§8.2.1), Request-URI scheme (§8.2.2.1), extensions (§8.2.2.3), content
(§8.2.3), Accept (§8.2.6 / RFC 4475 §3.3.15) — plus the registrar's AOR rule (§10.3) and, in
the proxy role, Max-Forwards (§16.3) and Proxy-Require.  Dialog state (481 for an unknown
dialog) is not judged here: that belongs to the dialog layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sbcsim.sip.message import Request
from sbcsim.sip.parser import KNOWN_METHODS
from sbcsim.sip.uri import SipUri

__all__ = ["Rejection", "UasPolicy", "inspect_request"]


@dataclass(frozen=True, slots=True)
class Rejection:
    """The response a UAS sends instead of processing the request."""

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class UasPolicy:
    """What this UAS implements.  The defaults describe sbcsim's own endpoints."""

    role: Literal["uas", "proxy"] = "uas"
    allowed_methods: tuple[str, ...] = (
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "INFO",
        "UPDATE",
        "PRACK",
        "REFER",
        "NOTIFY",
        "SUBSCRIBE",
        "MESSAGE",
        "REGISTER",
    )
    supported: tuple[str, ...] = ("100rel", "timer", "replaces", "norefersub", "path", "outbound")
    uri_schemes: tuple[str, ...] = ("sip", "sips", "tel")
    content_types: tuple[str, ...] = (
        "application/sdp",
        "message/sipfrag",
        "text/plain",
        "application/dtmf-relay",
        "application/pidf+xml",
        "multipart/mixed",
        "multipart/alternative",
        "multipart/signed",
    )
    content_encodings: tuple[str, ...] = ("identity",)
    #: the body types this UAS answers with (checked against the request's Accept, §8.2.6)
    answer_types: dict[str, str] = field(
        # OPTIONS is answered without a body, so its Accept never makes us answer 406
        default_factory=lambda: {"INVITE": "application/sdp"}
    )


DEFAULT_POLICY = UasPolicy()


def inspect_request(request: Request, policy: UasPolicy = DEFAULT_POLICY) -> Rejection | None:
    """The rejection this request gets, or ``None`` when it would be processed normally.

    Raises :class:`RemoteProtocolError` only for a header that is malformed in a way the parser's
    validation does not look at (e.g. a Require list with a non-token) — callers answer 400.
    """
    method = request.method
    # §16.3 step 3 (proxy): Max-Forwards 0 must not be forwarded -> 483 (RFC 4475 §3.3.11).
    if policy.role == "proxy" and request.max_forwards == 0:
        return Rejection(483, "Too Many Hops")
    # §8.2.1 method inspection
    if method not in policy.allowed_methods:
        allow = ("Allow", ", ".join(policy.allowed_methods))
        if method in KNOWN_METHODS:
            return Rejection(405, "Method Not Allowed", (allow,))
        return Rejection(501, "Not Implemented", (allow,))
    # §8.2.2.1 Request-URI scheme
    scheme = request.uri.scheme.lower()
    if scheme not in policy.uri_schemes:
        return Rejection(416, "Unsupported URI Scheme")
    # §8.2.2.3 extensions: Require (ignored on ACK and CANCEL), Proxy-Require for a proxy
    if method not in ("ACK", "CANCEL"):
        header = "proxy-require" if policy.role == "proxy" else "require"
        unsupported = [t for t in request.tokens(header) if t.lower() not in policy.supported]
        if unsupported:
            return Rejection(420, "Bad Extension", (("Unsupported", ", ".join(unsupported)),))
    # §8.2.3 content processing
    if request.body or request.content_type is not None:
        ctype = request.content_type
        if ctype is None:
            return Rejection(
                415, "Unsupported Media Type", (("Accept", ", ".join(policy.content_types)),)
            )
        if ctype.mime not in policy.content_types:
            return Rejection(
                415, "Unsupported Media Type", (("Accept", ", ".join(policy.content_types)),)
            )
        for enc in request.tokens("content-encoding"):
            if enc.lower() not in policy.content_encodings:
                return Rejection(
                    415,
                    "Unsupported Media Type",
                    (("Accept-Encoding", ", ".join(policy.content_encodings)),),
                )
    # §8.2.6 / RFC 4475 §3.3.15: the body we would answer with must be acceptable
    answer = policy.answer_types.get(method)
    accept = request.headers.get_all("accept")
    if answer is not None and accept:
        acceptable = [
            a.split(";")[0].strip().lower() for v in accept for a in v.split(",") if a.strip()
        ]
        major = answer.split("/")[0]
        if acceptable and not any(a in (answer, f"{major}/*", "*/*") for a in acceptable):
            return Rejection(
                406, "Not Acceptable", (("Warning", f'399 sbcsim "cannot answer with {answer}"'),)
            )
    # §10.3 registrar: the To header must carry a SIP or SIPS AOR
    if method == "REGISTER":
        to_uri = request.to.uri
        if not isinstance(to_uri, SipUri):
            return Rejection(400, "Bad Request: To is not a SIP or SIPS AOR")
    return None
