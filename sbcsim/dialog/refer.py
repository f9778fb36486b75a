"""REFER helpers (RFC 3515, 3891, 3892, 4488): sipfrag bodies, Refer-To targets, Replaces.

A transfer runs on three small pieces of text, and each has a rule that SBCs get wrong:

* the NOTIFY body is a ``message/sipfrag`` whose first line is a SIP status line (RFC 3420);
* the Refer-To URI may carry header fields to put into the triggered INVITE, escaped as URI
  headers (``?Replaces=...``), and they must be unescaped exactly once;
* Replaces names a dialog by Call-ID and tags *as seen by the party receiving the INVITE*: its
  ``to-tag`` is that party's local tag (RFC 3891 §3).
"""

from __future__ import annotations

from dataclasses import dataclass

from sbcsim.dialog.events import DialogId
from sbcsim.errors import RemoteProtocolError
from sbcsim.sip.headers import NameAddr, Replaces, parse_replaces
from sbcsim.sip.message import REASON_PHRASES
from sbcsim.sip.uri import SipUri, Uri, escape, unescape

__all__ = [
    "SIPFRAG_TYPE",
    "Sipfrag",
    "parse_sipfrag",
    "refer_target",
    "refer_to_with_replaces",
    "replaces_in",
    "replaces_value",
    "sipfrag",
]

SIPFRAG_TYPE = "message/sipfrag;version=2.0"

# URI header values: RFC 3261 hnv-unreserved plus unreserved; everything else is escaped.
_HVALUE_SAFE = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!~*'()[]/?:+$"
)


@dataclass(frozen=True, slots=True)
class Sipfrag:
    """The status line of a sipfrag body."""

    status: int
    reason: str


def sipfrag(status: int, reason: str | None = None) -> bytes:
    """A sipfrag body holding only a status line: ``SIP/2.0 180 Ringing``."""
    phrase = REASON_PHRASES.get(status, "") if reason is None else reason
    return f"SIP/2.0 {status} {phrase}\r\n".encode()


def parse_sipfrag(body: bytes) -> Sipfrag:
    """Read the status line of a NOTIFY's sipfrag; anything else there is the peer's error."""
    first = body.split(b"\n", 1)[0].rstrip(b"\r").decode("utf-8", "replace")
    parts = first.split(" ", 2)
    if len(parts) < 2 or not parts[0].upper().startswith("SIP/") or not parts[1].isdigit():
        raise RemoteProtocolError(f"sipfrag does not start with a status line: {first[:60]!r}", 400)
    status = int(parts[1])
    if not 100 <= status <= 699:
        raise RemoteProtocolError(f"sipfrag status {status} out of range", 400)
    return Sipfrag(status, parts[2] if len(parts) > 2 else "")


def refer_target(refer_to: NameAddr) -> tuple[Uri, tuple[tuple[str, str], ...]]:
    """The URI to send the triggered INVITE to, and the header fields its ``?...`` part asks
    to include (unescaped once), e.g. ``(("Replaces", "abc@h;to-tag=1;from-tag=2"),)``."""
    uri = refer_to.uri
    if uri is None:
        raise RemoteProtocolError("Refer-To without a URI", 400)
    if not isinstance(uri, SipUri) or not uri.headers:
        return uri, ()
    headers = tuple((unescape(k), unescape(v)) for k, v in uri.headers)
    return uri.replace(headers=()), headers


def replaces_in(refer_to: NameAddr) -> Replaces | None:
    """The Replaces embedded in a Refer-To URI, if any."""
    _, headers = refer_target(refer_to)
    for name, value in headers:
        if name.lower() == "replaces":
            return parse_replaces(value)
    return None


def replaces_value(dialog: DialogId) -> str:
    """The Replaces value naming ``dialog`` for the peer of that dialog: the peer's local tag
    (our remote tag) is the ``to-tag``."""
    return f"{dialog.call_id};to-tag={dialog.remote_tag};from-tag={dialog.local_tag}"


def refer_to_with_replaces(target: SipUri, dialog: DialogId) -> NameAddr:
    """A Refer-To for an attended transfer: ``target`` with the escaped Replaces of ``dialog``
    (our dialog with ``target``)."""
    value = escape(replaces_value(dialog), _HVALUE_SAFE)
    return NameAddr(target.replace(headers=(("Replaces", value),)))
