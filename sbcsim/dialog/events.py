"""What the UA core (:class:`~sbcsim.dialog.useragent.UserAgent`) tells the application.

The UA core turns transaction events into call-level ones, the way the transaction layer turns
bytes into transaction events.  Everything here is a frozen value: the application drains them
with ``UserAgent.next_events()`` and dispatches with ``match``; the core never calls back.

Three small handles name things across calls into the core:

* :class:`CallRef` — one INVITE usage (a call), as caller or callee;
* :class:`RequestRef` — a request *we* sent inside a call (re-INVITE, UPDATE, REFER, INFO ...),
  whose outcome arrives as :class:`RequestCompleted`;
* :class:`RequestHandle` — a request the *peer* sent that the application answers with
  ``UserAgent.respond_request(handle, ...)``.  Requests the core answered by itself carry
  ``handle=None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sbcsim.net.base import PeerInfo
from sbcsim.sip.headers import NameAddr, Replaces
from sbcsim.sip.message import Request, Response

__all__ = [
    "CallCancelled",
    "CallEnded",
    "CallEstablished",
    "CallFailed",
    "CallProgress",
    "CallRef",
    "DialogId",
    "EndReason",
    "ForkDiscarded",
    "GlareBackoff",
    "IncomingCall",
    "IncomingRequest",
    "ProvisionalAcknowledged",
    "ReferProgress",
    "ReferReceived",
    "ReinviteReceived",
    "RequestCompleted",
    "RequestHandle",
    "RequestRef",
    "SessionRefreshed",
    "StandaloneCompleted",
    "UaEvent",
    "UpdateReceived",
]


@dataclass(frozen=True, slots=True)
class CallRef:
    """One call (an INVITE usage).  ``id`` is unique within its UserAgent; ``call_id`` is the
    SIP Call-ID, carried for logs and for matching against captures."""

    id: int
    call_id: str


@dataclass(frozen=True, slots=True)
class DialogId:
    """RFC 3261 §12: Call-ID plus local and remote tag, from this UA's point of view."""

    call_id: str
    local_tag: str
    remote_tag: str


@dataclass(frozen=True, slots=True)
class RequestRef:
    """A request this UA sent inside a call; its outcome is a :class:`RequestCompleted`."""

    id: int
    method: str


@dataclass(frozen=True, slots=True)
class RequestHandle:
    """A request from the peer that waits for ``UserAgent.respond_request``."""

    id: int
    method: str


EndReason = Literal[
    "local-bye",
    "remote-bye",
    "no-ack",
    "session-expired",
    "timeout",
    "dialog-gone",
    "prack-timeout",
    "transport-error",
]
"""Why an established (or answered) call ended.  ``transport-error``: the connection of a
callee's unanswered INVITE failed, so the transaction that would carry the answer is gone."""


# -- calls ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class IncomingCall:
    """A new INVITE passed every automatic check; answer it with ``UserAgent.respond``.

    ``replaces`` is the call this INVITE replaces (RFC 3891), already checked to be a confirmed
    dialog (or an early one this UA initiated); ending that call is the application's choice.
    """

    call: CallRef
    request: Request
    peer: PeerInfo
    replaces: CallRef | None = None


@dataclass(frozen=True, slots=True)
class CallProgress:
    """A provisional response (101-199) to our INVITE.  ``dialog`` is the early dialog it made
    (``None`` without a To-tag); ``reliable`` says it carried RSeq and was PRACKed."""

    call: CallRef
    status: int
    reason: str
    response: Response
    dialog: DialogId | None
    reliable: bool = False
    sdp: bytes | None = None


@dataclass(frozen=True, slots=True)
class CallEstablished:
    """The call is up: for the caller when the first 2xx arrived (and was ACKed), for the
    callee when the ACK arrived.  ``sdp`` is the body that completed the offer/answer exchange
    at that step (the 2xx's, or the ACK's for a late offer), if any."""

    call: CallRef
    dialog: DialogId
    sdp: bytes | None
    message: Request | Response


@dataclass(frozen=True, slots=True)
class CallFailed:
    """Our INVITE ended without a call: a final non-2xx (487 after a CANCEL included), a
    timeout (408) or a transport failure (503)."""

    call: CallRef
    status: int
    reason: str
    response: Response | None = None


@dataclass(frozen=True, slots=True)
class CallCancelled:
    """The caller cancelled an INVITE we had not answered; 200 and 487 are already sent."""

    call: CallRef
    request: Request


@dataclass(frozen=True, slots=True)
class CallEnded:
    """An answered call is over.  ``request`` is the peer's BYE for ``remote-bye``."""

    call: CallRef
    reason: EndReason
    request: Request | None = None


@dataclass(frozen=True, slots=True)
class ForkDiscarded:
    """A second forked 2xx (RFC 3261 §13.2.2.4): it was ACKed and a BYE sent on its dialog."""

    call: CallRef
    dialog: DialogId
    response: Response


@dataclass(frozen=True, slots=True)
class ProvisionalAcknowledged:
    """The caller PRACKed our reliable provisional with this RSeq (RFC 3262)."""

    call: CallRef
    rseq: int
    request: Request


# -- requests inside a call -----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ReinviteReceived:
    """The peer sent a re-INVITE.  ``sdp`` is its offer (``None`` asks us for one); ``hold``
    says the offer puts every stream on hold (sendonly, inactive or 0.0.0.0).  With
    ``handle=None`` the core already answered it (auto-answer mode)."""

    call: CallRef
    handle: RequestHandle | None
    request: Request
    sdp: bytes | None
    hold: bool


@dataclass(frozen=True, slots=True)
class UpdateReceived:
    """The peer sent an UPDATE (RFC 3311); fields as in :class:`ReinviteReceived`."""

    call: CallRef
    handle: RequestHandle | None
    request: Request
    sdp: bytes | None
    hold: bool


@dataclass(frozen=True, slots=True)
class IncomingRequest:
    """Any other request: INFO, OPTIONS, MESSAGE, a NOTIFY of another package ... inside a call
    (``call`` set) or outside one.  ``handle=None`` when the core answered it already."""

    call: CallRef | None
    handle: RequestHandle | None
    request: Request
    peer: PeerInfo


@dataclass(frozen=True, slots=True)
class ReferReceived:
    """An in-dialog REFER (RFC 3515).  Accept it with ``respond_request(handle, 202)`` (the
    core then sends the first NOTIFY, ``100 Trying``) and report with ``notify_refer``.

    ``referred_by`` is the Referred-By header exactly as received (RFC 3892: carry it unchanged
    into the triggered INVITE); ``replaces`` is the Replaces embedded in the Refer-To URI."""

    call: CallRef
    handle: RequestHandle
    request: Request
    refer_to: NameAddr
    referred_by: str | None
    replaces: Replaces | None


@dataclass(frozen=True, slots=True)
class ReferProgress:
    """A NOTIFY of the implicit subscription our REFER created: the sipfrag status line.
    ``final`` is True when the subscription is terminated."""

    call: CallRef
    refer: RequestRef
    status: int
    reason: str
    state: str
    final: bool


@dataclass(frozen=True, slots=True)
class RequestCompleted:
    """The final response (or its stand-in: 408 for a timeout, 503 for a transport failure) to
    a request the application sent inside a call."""

    call: CallRef
    ref: RequestRef
    status: int
    reason: str
    response: Response | None = None


@dataclass(frozen=True, slots=True)
class GlareBackoff:
    """Our re-INVITE or UPDATE got 491; it is sent again at ``retry_at`` (RFC 3261 §14.1)."""

    call: CallRef
    ref: RequestRef
    retry_at: float


@dataclass(frozen=True, slots=True)
class SessionRefreshed:
    """A 2xx to a re-INVITE or UPDATE renewed the session timer (RFC 4028).  ``refresher`` says
    which side must refresh next; ``by`` who sent the refreshing request."""

    call: CallRef
    interval: int
    refresher: Literal["local", "remote"]
    by: Literal["local", "remote"]


@dataclass(frozen=True, slots=True)
class StandaloneCompleted:
    """The final outcome of a request sent outside a dialog with ``UserAgent.send_request``
    (``response`` is ``None`` for a timeout, 408, or a transport failure, 503)."""

    ref: RequestRef
    status: int
    reason: str
    response: Response | None = None


UaEvent = (
    IncomingCall
    | CallProgress
    | CallEstablished
    | CallFailed
    | CallCancelled
    | CallEnded
    | ForkDiscarded
    | ProvisionalAcknowledged
    | ReinviteReceived
    | UpdateReceived
    | IncomingRequest
    | ReferReceived
    | ReferProgress
    | RequestCompleted
    | GlareBackoff
    | SessionRefreshed
    | StandaloneCompleted
)
