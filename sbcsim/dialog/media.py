"""The little SDP the UA core needs: is an offer a hold, and what does an automatic answer say.

Media handling belongs to the application (the endpoints build and read their SDP with
:mod:`sbcsim.sip.sdp`).  The core only answers re-INVITEs and UPDATEs on its own in auto-answer
mode — session refreshes, hold and resume — and for that it reuses the application's last SDP
with each stream's direction set as RFC 3264 §6.1 requires, bumping the origin version only when
the body actually changes (§8: an unchanged answer keeps its version).
"""

from __future__ import annotations

from sbcsim.errors import ProtocolError
from sbcsim.sip.sdp import SessionDescription, answer_direction, is_hold

__all__ = ["auto_answer", "offer_is_hold"]


def offer_is_hold(sdp: bytes | None) -> bool:
    """Whether ``sdp`` puts every active stream on hold; a body that does not parse is not."""
    if not sdp:
        return False
    try:
        return is_hold(SessionDescription.parse(sdp))
    except ProtocolError:
        return False


def auto_answer(offer: bytes | None, preferred: bytes, last: bytes | None) -> bytes:
    """Our answer to ``offer`` (or our offer, when ``offer`` is ``None``).

    ``preferred`` is the application's own SDP (its wished directions); ``last`` what we last
    sent in this session.  Streams are matched by position; when the offer's streams do not line
    up with ours the last body is repeated unchanged and the application has to step in.
    """
    previous = last if last is not None else preferred
    if offer is None:
        return previous
    try:
        theirs = SessionDescription.parse(offer)
        ours = SessionDescription.parse(preferred)
        before = SessionDescription.parse(previous)
    except ProtocolError:
        return previous
    if len(theirs.media) != len(ours.media):
        return previous
    for mine, offered in zip(ours.media, theirs.media, strict=True):
        wanted = ours.effective_direction(mine)
        direction = answer_direction(theirs.effective_direction(offered), wanted)
        if direction is not wanted:
            mine.set_direction(direction)
    ours.origin = before.origin
    body = ours.to_bytes()
    if body == previous:
        return previous
    ours.origin = before.origin.next_version()
    return ours.to_bytes()
