"""The per-call records the UA core keeps: the call itself and the transactions in flight.

These are the UA core's working state, kept apart from its logic in
:mod:`sbcsim.dialog.useragent`.  They are mutable, slotted and small on purpose: a load run holds
thousands of calls, and an established one keeps no message at all (the INVITE and the last 2xx
are dropped as soon as the ACK makes them useless).  Applications never see them; they hold the
frozen handles of :mod:`sbcsim.dialog.events` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sbcsim.dialog.dialog import Dialog
from sbcsim.dialog.events import CallRef, RequestHandle, RequestRef
from sbcsim.dialog.states import CallState
from sbcsim.dialog.timers import SessionTimer
from sbcsim.net.base import Address, PeerInfo, TransportName
from sbcsim.sip.headers import NameAddr
from sbcsim.sip.message import Request, Response
from sbcsim.transaction.events import Outgoing, TransactionKey

__all__ = [
    "Call",
    "ClientOp",
    "GlareRetry",
    "Kind",
    "Purpose",
    "ReferSubscription",
    "Reliable",
    "ServerOp",
    "Timer",
]

Kind = Literal["invite", "reinvite", "update", "bye", "prack", "cancel", "refer", "notify", "other"]
"""What a request we sent is for; decides how its final response is handled."""
Purpose = Literal["app", "auto", "refresh", "fork"]
"""Who asked for it: the application (gets a RequestCompleted), the core itself, a session
refresh, or the BYE that ends a discarded forked dialog."""


@dataclass(slots=True, eq=False)
class Timer:
    """One of the core's own deadlines (2xx and reliable-1xx retransmission, ACK wait, glare
    back-off, session refresh and expiry, forgetting a stored ACK)."""

    when: float
    call: Call | None
    kind: str
    data: tuple[str, str, str, int] | None = None
    cancelled: bool = False


@dataclass(slots=True, eq=False)
class ClientOp:
    """One request we sent, waiting for its outcome."""

    kind: Kind
    call: Call
    request: Request
    ref: RequestRef | None
    purpose: Purpose = "app"
    dialog: Dialog | None = None
    sdp: bytes | None = None
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True, eq=False)
class ServerOp:
    """One request from the peer that is not answered yet."""

    key: TransactionKey
    request: Request
    peer: PeerInfo
    call: Call | None
    handle: RequestHandle | None = None


@dataclass(slots=True, eq=False)
class Reliable:
    """Reliable provisionals of one INVITE (callee side, RFC 3262 §3)."""

    rseq: int
    unacked: Response | None = None
    has_sdp: bool = False
    interval: float = 0.0
    deadline: float = 0.0
    queue: list[tuple[int, str | None, bytes | None, tuple[tuple[str, str], ...]]] = field(
        default_factory=list
    )


@dataclass(slots=True, eq=False)
class ReferSubscription:
    """The implicit subscription an accepted REFER created (RFC 3515 §2.4.4)."""

    call: Call
    event_id: int
    expires_at: float


@dataclass(slots=True, eq=False)
class GlareRetry:
    """A re-INVITE or UPDATE waiting out its 491 back-off."""

    kind: Kind
    ref: RequestRef | None
    purpose: Purpose
    sdp: bytes | None
    headers: tuple[tuple[str, str], ...]


@dataclass(slots=True, eq=False)
class Call:
    """Everything one call needs, and nothing it does not (see the memory budget in the tests)."""

    ref: CallRef
    role: Literal["uac", "uas"]
    state: CallState
    local_tag: str
    remote: Address
    transport: TransportName
    server_name: str | None = None
    connection_id: int | None = None
    invite: Request | None = None
    invite_key: TransactionKey | None = None
    invite_cseq: int = 0
    dialog: Dialog | None = None
    early: dict[str, Dialog] | None = None
    peer: PeerInfo | None = None
    merge_key: tuple[str, str, int] | None = None
    # the Contact this call presents, when not the UA's own (a carrier-hosting SBC names the
    # customer tenant's trunk FQDN in each call's Contact)
    contact: NameAddr | None = None
    # caller side
    provisional_seen: bool = False
    cancel_requested: bool = False
    cancel_sent: bool = False
    ack_sdp: bytes | None = None
    se_requested: int = 0
    # callee side
    retx: Outgoing | None = None
    retx_interval: float = 0.0
    ack_cseq: int | None = None
    rel: Reliable | None = None
    pending_final: tuple[int, str | None, bytes | None, tuple[tuple[str, str], ...]] | None = None
    # offer/answer (RFC 3264) bookkeeping
    base_sdp: bytes | None = None
    local_sdp: bytes | None = None
    remote_sdp: bytes | None = None
    local_invite: ClientOp | None = None
    local_offer: bool = False
    remote_invite: ServerOp | None = None
    remote_offer: bool = False
    glare: GlareRetry | None = None
    # session timer (RFC 4028)
    session: SessionTimer | None = None
    # REFERs we sent, by CSeq (the implicit subscription's event id)
    refers: dict[int, RequestRef] | None = None
    timers: dict[str, Timer] = field(default_factory=dict)

    @property
    def owns_call_id(self) -> bool:
        """RFC 3261 §14.1: the side that generated the Call-ID waits longer after a 491."""
        return self.role == "uac"
