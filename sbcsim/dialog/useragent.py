"""The UA core (RFC 3261 §8, §12-15 and the extensions a Teams trunk uses), sans-I/O.

:class:`UserAgent` is the transaction user above one
:class:`~sbcsim.transaction.layer.TransactionLayer`, in the same push-in / pull-out style:

* inputs — :meth:`UserAgent.receive`, :meth:`UserAgent.transport_error`,
  :meth:`UserAgent.handle_timer` and the API calls (:meth:`UserAgent.invite`,
  :meth:`UserAgent.respond`, :meth:`UserAgent.bye` ...), each with ``now``;
* outputs — :meth:`UserAgent.messages_to_send` (its own ACKs and 2xx retransmissions, merged in
  order with the transaction layer's messages), :meth:`UserAgent.next_events` (the frozen values
  of :mod:`sbcsim.dialog.events`) and :meth:`UserAgent.get_timer`.

What it does on its own so that a simple endpoint needs no code: ACKs every 2xx and re-sends the
ACK for each retransmitted 2xx; retransmits its own 2xx until the ACK and gives up with BYE after
64*T1 (RFC 6026 leaves both to the core); PRACKs reliable provisionals and retransmits its own
(RFC 3262); answers OPTIONS, INFO, NOTIFY and BYE; rejects what :func:`inspect_request` rejects,
unknown dialogs (481), out-of-order CSeqs (500), glare (491) and too-short session intervals
(422); retries after 491 and 422; refreshes the session or ends it when the peer stopped
refreshing (RFC 4028); answers re-INVITEs and UPDATEs (refreshes, hold, resume) with the
application's SDP unless told to leave them to the application.

Nothing here reads the clock, draws random numbers or mints identifiers by itself: ``ids`` and
``random`` are injected, so a seeded simulation puts the same bytes on the wire every run.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Literal, Protocol

from sbcsim.dialog.dialog import Dialog, dialog_as_uac, dialog_as_uas, route_set_uac
from sbcsim.dialog.events import (
    CallCancelled,
    CallEnded,
    CallEstablished,
    CallFailed,
    CallProgress,
    CallRef,
    DialogId,
    EndReason,
    ForkDiscarded,
    GlareBackoff,
    IncomingCall,
    IncomingRequest,
    ProvisionalAcknowledged,
    ReferProgress,
    ReferReceived,
    ReinviteReceived,
    RequestCompleted,
    RequestHandle,
    RequestRef,
    SessionRefreshed,
    StandaloneCompleted,
    UaEvent,
    UpdateReceived,
)
from sbcsim.dialog.media import auto_answer, offer_is_hold
from sbcsim.dialog.refer import SIPFRAG_TYPE, parse_sipfrag, replaces_in, sipfrag
from sbcsim.dialog.session import (
    Call,
    ClientOp,
    GlareRetry,
    Kind,
    Purpose,
    ReferSubscription,
    Reliable,
    ServerOp,
    Timer,
)
from sbcsim.dialog.states import CallInput, CallState, can, transition
from sbcsim.dialog.timers import (
    SessionTimer,
    SessionTimerConfig,
    expiry_delay,
    negotiate_as_uas,
    refresh_delay,
    result_as_uac,
    session_headers,
    too_small,
)
from sbcsim.errors import LocalProtocolError, RemoteProtocolError, TransportError
from sbcsim.net.base import Address, PeerInfo, TransportName
from sbcsim.sip.headers import NameAddr, parse_name_addr
from sbcsim.sip.message import REASON_PHRASES, Request, Response, build_request, make_response
from sbcsim.sip.policy import Rejection, UasPolicy, inspect_request
from sbcsim.sip.uri import SipUri, Uri, parse_uri
from sbcsim.transaction.events import (
    AckReceived,
    Outgoing,
    RequestReceived,
    ResponseReceived,
    StrayResponse,
    TransactionEvent,
    TransactionKey,
    TransactionTerminated,
    TransactionTimedOut,
    TransportFailed,
)
from sbcsim.transaction.layer import TransactionLayer, make_cancel
from sbcsim.transaction.timers import TimerConfig

__all__ = [
    "DEFAULT_ALLOW",
    "DEFAULT_SUPPORTED",
    "IdSource",
    "Resolver",
    "UserAgent",
]

_log = logging.getLogger("sbcsim.dialog")

DEFAULT_ALLOW: tuple[str, ...] = (
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "PRACK", "REFER", "NOTIFY",
)  # fmt: skip
DEFAULT_SUPPORTED: tuple[str, ...] = ("100rel", "timer", "replaces", "norefersub")

SDP = "application/sdp"
# Requests that must carry a Contact (RFC 3261 §8.1.1.8, RFC 3311, RFC 3515, RFC 6665).
_CONTACT_METHODS = frozenset({"INVITE", "UPDATE", "REFER", "NOTIFY", "SUBSCRIBE"})
# Requests whose 481/408 ends the whole call (RFC 3261 §12.2.1.2; RFC 5057 keeps a REFER
# subscription's failure to the subscription).
_DIALOG_FATAL_KINDS = frozenset({"reinvite", "update", "other"})
#: Timer heaps smaller than this are never compacted (not worth the pass).
_COMPACT_MIN = 1024

Resolver = Callable[[SipUri, TransportName], Address | None]
"""Maps a next-hop URI with a host name to an address (the DNS step of RFC 3263).  Returning
``None`` falls back to the address the call was set up with."""


class IdSource(Protocol):
    """Where the UA gets Via branches, tags and Call-IDs (``sbcsim.ids.IdGenerator`` fits)."""

    def branch(self) -> str: ...

    def tag(self) -> str: ...

    def call_id(self, host: str) -> str: ...


class UserAgent:
    """A SIP user agent core: calls as caller and callee, and the requests inside them."""

    def __init__(
        self,
        *,
        ids: IdSource,
        random: Callable[[], float],
        contact: SipUri,
        sent_by: str,
        transport: TransportName = "udp",
        timers: TimerConfig | None = None,
        policy: UasPolicy | None = None,
        session_timer: SessionTimerConfig | None = None,
        user_agent: str = "sbcsim",
        allow: Sequence[str] = DEFAULT_ALLOW,
        supported: Sequence[str] = DEFAULT_SUPPORTED,
        name: str = "ua",
        app_answers: Collection[str] = (),
        refer_expires: int = 60,
        resolve: Resolver | None = None,
    ) -> None:
        """``sent_by`` is the Via ``host:port``; ``app_answers`` lists methods (``INVITE`` for
        re-INVITEs, ``UPDATE``, ``INFO``, ``NOTIFY``, ``OPTIONS``) the application answers
        itself instead of the core; ``refer_expires`` is the lifetime of a REFER subscription."""
        self.name = name
        self._ids = ids
        self._random = random
        self._contact = NameAddr(contact)
        self._contact_text = str(self._contact)  # in every dialog-creating response
        self._host = contact.host
        self._sent_by = sent_by
        self._transport: TransportName = transport
        self._tconf = timers or TimerConfig()
        self._policy = policy or UasPolicy()
        self._st = session_timer or SessionTimerConfig()
        self._user_agent = user_agent
        self._allow = ", ".join(allow)
        self._supported = tuple(s for s in supported if self._st.enabled or s.lower() != "timer")
        self._capability_headers: tuple[tuple[str, str], ...] = (
            ("Allow", self._allow),
            *((("Supported", ", ".join(self._supported)),) if self._supported else ()),
        )
        self._app_answers = frozenset(m.upper() for m in app_answers)
        self._refer_expires = refer_expires
        self._resolve = resolve
        self._tl = TransactionLayer(self._tconf)
        self._ids_used = 0
        self._calls: dict[int, Call] = {}
        self._by_dialog: dict[tuple[str, str, str], Call] = {}
        self._uas_by_key: dict[TransactionKey, Call] = {}
        self._merging: dict[tuple[str, str, int], Call] = {}
        self._client: dict[TransactionKey, ClientOp] = {}
        self._standalone: dict[TransactionKey, RequestRef] = {}
        self._server: dict[TransactionKey, ServerOp] = {}
        self._handles: dict[int, ServerOp] = {}
        self._subs: dict[int, ReferSubscription] = {}
        self._acks: dict[tuple[str, str, str, int], Outgoing] = {}
        self._heap: list[tuple[float, int, Timer]] = []
        self._live_timers = 0
        self._seq = 0
        self._out: list[Outgoing] = []
        self._events: list[UaEvent] = []

    # ------------------------------------------------------------------------------------------
    # sans-I/O plumbing
    # ------------------------------------------------------------------------------------------
    def receive(self, message: Request | Response, peer: PeerInfo, now: float) -> None:
        """A parsed message from the transport.  One too broken to match a transaction is
        dropped (there is no transaction to answer it through)."""
        try:
            self._tl.receive(message, peer, now)
        except RemoteProtocolError as exc:
            _log.debug("message_dropped", extra={"node": self.name, "error": exc.msg})
        self._drain(now)

    def transport_error(
        self, remote: Address, transport: TransportName, exc: TransportError, now: float
    ) -> None:
        """The transport could not reach ``remote``."""
        self._tl.transport_error(remote, transport, exc, now)
        self._drain(now)

    def get_timer(self) -> float | None:
        """The next instant :meth:`handle_timer` must be called, or ``None``."""
        heap = self._heap
        while heap and heap[0][2].cancelled:
            heapq.heappop(heap)
        mine = heap[0][0] if heap else None
        theirs = self._tl.get_timer()
        if mine is None:
            return theirs
        if theirs is None:
            return mine
        return min(mine, theirs)

    def handle_timer(self, now: float) -> None:
        """Fire every timer due at ``now`` (ours, then the transaction layer's)."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, timer = heapq.heappop(heap)
            if timer.cancelled:
                continue
            timer.cancelled = True
            self._live_timers -= 1
            call = timer.call
            if call is not None and call.timers.get(timer.kind) is timer:
                del call.timers[timer.kind]
            self._fire(timer, now)
        self._tl.handle_timer(now)
        self._drain(now)

    def messages_to_send(self) -> list[Outgoing]:
        """Everything to put on the wire, in the order it was produced."""
        out = self._out
        out.extend(self._tl.messages_to_send())
        self._out = []
        return out

    def next_events(self) -> list[UaEvent]:
        """The events since the last call."""
        events = self._events
        self._events = []
        return events

    # ------------------------------------------------------------------------------------------
    # read-only views
    # ------------------------------------------------------------------------------------------
    def call_state(self, call: CallRef) -> CallState:
        """Where the call stands (ENDED once it is forgotten)."""
        c = self._calls.get(call.id)
        return CallState.ENDED if c is None else c.state

    def dialog_id(self, call: CallRef) -> DialogId | None:
        """The call's confirmed (or, for a callee, early) dialog."""
        c = self._calls.get(call.id)
        return None if c is None or c.dialog is None else c.dialog.id

    def local_sdp(self, call: CallRef) -> bytes | None:
        """The SDP we last sent in this call."""
        c = self._calls.get(call.id)
        return None if c is None else c.local_sdp

    def remote_sdp(self, call: CallRef) -> bytes | None:
        """The SDP the peer last sent in this call."""
        c = self._calls.get(call.id)
        return None if c is None else c.remote_sdp

    def session_timer(self, call: CallRef) -> SessionTimer | None:
        """The negotiated session timer, if any."""
        c = self._calls.get(call.id)
        return None if c is None else c.session

    @property
    def active_calls(self) -> int:
        """Calls not yet forgotten (a leak check for long runs)."""
        return len(self._calls)

    # ------------------------------------------------------------------------------------------
    # caller API
    # ------------------------------------------------------------------------------------------
    def invite(
        self,
        request_uri: Uri | str,
        *,
        from_: NameAddr | str,
        to: NameAddr | str,
        remote: Address,
        transport: TransportName | None = None,
        sdp: bytes | None = None,
        headers: Sequence[tuple[str, str]] = (),
        server_name: str | None = None,
        ack_sdp: bytes | None = None,
        contact: NameAddr | str | None = None,
        now: float,
    ) -> CallRef:
        """Start a call: send an INVITE to ``remote`` (the first hop).

        ``sdp`` is the offer; without one, the 2xx carries the peer's offer and ``ack_sdp`` is
        the answer sent in the ACK.  ``headers`` are appended as given (P-Asserted-Identity,
        Referred-By, Replaces ...).  ``contact`` replaces this UA's Contact for the whole call
        (every request and response of its dialog).
        """
        tp = transport or self._transport
        uri = parse_uri(request_uri) if isinstance(request_uri, str) else request_uri
        local = (parse_name_addr(from_) if isinstance(from_, str) else from_).with_tag(
            self._ids.tag()
        )
        remote_na = parse_name_addr(to) if isinstance(to, str) else to
        call_id = self._ids.call_id(self._host)
        own_contact = self._parse_contact(contact)
        extra = self._capabilities()
        if self._st.enabled:
            extra += session_headers(self._st.session_expires, self._st.refresher, self._st.min_se)
        extra += self._ua_header()
        extra += list(headers)
        request = build_request(
            "INVITE",
            uri,
            from_=local,
            to=remote_na,
            call_id=call_id,
            cseq=1,
            via=self._via(tp),
            contact=own_contact or self._contact,
            headers=extra,
            body=sdp or b"",
            content_type=SDP if sdp is not None else None,
        )
        call = Call(
            ref=CallRef(self._new_id(), call_id),
            role="uac",
            state=CallState.CALLING,
            local_tag=local.tag or "",
            remote=remote,
            transport=tp,
            server_name=server_name,
            invite=request,
            invite_cseq=1,
            early={},
            ack_sdp=ack_sdp,
            se_requested=self._st.session_expires if self._st.enabled else 0,
            base_sdp=sdp,
            local_sdp=sdp,
            local_offer=sdp is not None,
            contact=own_contact,
        )
        self._calls[call.ref.id] = call
        key = self._tl.send_request(request, remote, tp, now, server_name=server_name)
        op = ClientOp("invite", call, request, None, "auto", sdp=sdp)
        self._client[key] = op
        call.local_invite = op
        return call.ref

    def cancel(self, call: CallRef, now: float) -> None:
        """Cancel our unanswered INVITE (RFC 3261 §9.1).  Sent once a provisional has arrived;
        until then it is only remembered.  The outcome is the INVITE's final response."""
        c = self._get(call)
        if c.role != "uac":
            raise LocalProtocolError("only the caller can CANCEL", None)
        c.state = transition(c.state, CallInput.SEND_CANCEL)
        if c.cancel_requested:
            return
        c.cancel_requested = True
        if c.provisional_seen:
            self._send_cancel(c, now)

    # ------------------------------------------------------------------------------------------
    # callee API
    # ------------------------------------------------------------------------------------------
    def respond(
        self,
        call: CallRef,
        status: int,
        *,
        reason: str | None = None,
        sdp: bytes | None = None,
        headers: Sequence[tuple[str, str]] = (),
        reliable: bool = False,
        to_tag: str | None = None,
        contact: NameAddr | str | None = None,
        now: float,
    ) -> None:
        """Answer an incoming INVITE: 1xx (``reliable=True`` for 100rel), 2xx or 3xx-6xx.

        ``to_tag`` answers as another fork of the call, the way a forking proxy relays each
        endpoint's responses (RFC 3261 §16.7): a provisional carries that To-tag, and a final
        response switches the call to it, so the dialog is the answering fork's.
        ``contact`` replaces this UA's Contact for the whole call, from this response on.
        """
        c = self._get(call)
        if c.role != "uas" or c.invite is None or c.invite_key is None:
            raise LocalProtocolError("respond() answers an incoming INVITE", None)
        if not 100 <= status <= 699:
            raise LocalProtocolError(f"status {status} is not a SIP status code", None)
        if c.pending_final is not None:
            raise LocalProtocolError("a final response is already waiting for a PRACK", None)
        hdrs = tuple(headers)
        if contact is not None:
            c.contact = self._parse_contact(contact)
        if status == 100:
            self._tl.send_response(c.invite_key, self._make(c.invite, 100), now)
            return
        if status < 200:
            transition(c.state, CallInput.SEND_PROVISIONAL)
            if reliable:
                if not c.invite.supports("100rel"):
                    raise LocalProtocolError("the caller does not support 100rel", None)
                if c.rel is not None and c.rel.unacked is not None:
                    c.rel.queue.append((status, reason, sdp, hdrs))
                    return
            self._send_provisional(c, status, reason, sdp, hdrs, reliable, now, to_tag)
            return
        transition(c.state, CallInput.SEND_SUCCESS if status < 300 else CallInput.SEND_FAILURE)
        if to_tag is not None and to_tag != c.local_tag:
            self._retag(c, to_tag)
        if status < 300 and c.rel is not None and c.rel.unacked is not None and c.rel.has_sdp:
            # RFC 3262 §3: no 2xx before the PRACK of a reliable provisional with an answer.
            c.pending_final = (status, reason, sdp, hdrs)
            return
        self._send_final(c, status, reason, sdp, hdrs, now)

    # ------------------------------------------------------------------------------------------
    # in-dialog API
    # ------------------------------------------------------------------------------------------
    def bye(
        self, call: CallRef, now: float, *, headers: Sequence[tuple[str, str]] = ()
    ) -> RequestRef:
        """End an established call.  :class:`CallEnded` is emitted at once."""
        c = self._get(call)
        transition(c.state, CallInput.SEND_BYE)
        ref = RequestRef(self._new_id(), "BYE")
        self._send_bye(c, "local-bye", ref, tuple(headers), now)
        return ref

    def reinvite(
        self,
        call: CallRef,
        sdp: bytes | None,
        *,
        headers: Sequence[tuple[str, str]] = (),
        now: float,
    ) -> RequestRef:
        """Send a re-INVITE with ``sdp`` as the offer (``None`` asks the peer for one)."""
        c = self._confirmed(call)
        if self._invite_busy(c):
            raise LocalProtocolError("an INVITE transaction is already in progress", None)
        if sdp is not None and (c.local_offer or c.remote_offer):
            raise LocalProtocolError("an offer is already outstanding (RFC 3264 §4)", None)
        ref = RequestRef(self._new_id(), "INVITE")
        self._send_offer(c, "reinvite", sdp, tuple(headers), ref, "app", now)
        return ref

    def update(
        self,
        call: CallRef,
        sdp: bytes | None,
        *,
        headers: Sequence[tuple[str, str]] = (),
        now: float,
    ) -> RequestRef:
        """Send an UPDATE (RFC 3311), with ``sdp`` as a new offer or ``None`` for a refresh."""
        c = self._get(call)
        if c.dialog is None or c.state not in (
            CallState.CONFIRMED,
            CallState.EARLY,
            CallState.ANSWERED,
        ):
            raise LocalProtocolError(f"cannot UPDATE in call state {c.state.name}", None)
        if sdp is not None and (c.local_offer or c.remote_offer):
            raise LocalProtocolError("an offer is already outstanding (RFC 3311 §5.1)", None)
        if c.glare is not None:
            raise LocalProtocolError("a request is waiting out a 491 back-off", None)
        ref = RequestRef(self._new_id(), "UPDATE")
        self._send_offer(c, "update", sdp, tuple(headers), ref, "app", now)
        return ref

    def info(
        self,
        call: CallRef,
        body: bytes,
        content_type: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        now: float,
    ) -> RequestRef:
        """Send INFO (RFC 6086) — DTMF relay and the like."""
        return self.request(
            call, "INFO", body=body, content_type=content_type, headers=headers, now=now
        )

    def request(
        self,
        call: CallRef,
        method: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        now: float,
    ) -> RequestRef:
        """Send any other request inside the call (OPTIONS, MESSAGE, INFO ...)."""
        c = self._confirmed(call)
        if method in ("INVITE", "UPDATE", "BYE", "ACK", "CANCEL", "PRACK", "REFER"):
            raise LocalProtocolError(f"use the dedicated method to send {method}", None)
        assert c.dialog is not None
        ref = RequestRef(self._new_id(), method)
        self._send_in_dialog(
            c,
            c.dialog,
            method,
            kind="other",
            ref=ref,
            purpose="app",
            headers=tuple(headers),
            body=body,
            content_type=content_type,
            now=now,
        )
        return ref

    def send_request(
        self,
        method: str,
        request_uri: Uri | str,
        *,
        from_: NameAddr | str,
        to: NameAddr | str,
        remote: Address,
        transport: TransportName | None = None,
        server_name: str | None = None,
        connection_id: int | None = None,
        contact: NameAddr | str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        now: float,
    ) -> RequestRef:
        """Send a request outside any dialog (OPTIONS keep-alive, MESSAGE ...).

        The outcome arrives as :class:`StandaloneCompleted` (a timeout as 408 and a transport
        failure as 503, RFC 3261 §8.1.3.1).  ``contact`` defaults to this UA's Contact.
        """
        if method in ("INVITE", "ACK", "CANCEL", "BYE", "PRACK", "UPDATE"):
            raise LocalProtocolError(
                f"{method} is not sent outside a dialog through send_request", None
            )
        tp = transport or self._transport
        uri = parse_uri(request_uri) if isinstance(request_uri, str) else request_uri
        local = (parse_name_addr(from_) if isinstance(from_, str) else from_).with_tag(
            self._ids.tag()
        )
        remote_na = parse_name_addr(to) if isinstance(to, str) else to
        extra = [*self._ua_header(), *headers]
        request = build_request(
            method,
            uri,
            from_=local,
            to=remote_na,
            call_id=self._ids.call_id(self._host),
            cseq=1,
            via=self._via(tp),
            contact=self._contact if contact is None else contact,
            headers=extra,
            body=body,
            content_type=content_type,
        )
        ref = RequestRef(self._new_id(), method)
        key = self._tl.send_request(
            request, remote, tp, now, server_name=server_name, connection_id=connection_id
        )
        self._standalone[key] = ref
        return ref

    def refer(
        self,
        call: CallRef,
        refer_to: NameAddr | Uri | str,
        *,
        referred_by: NameAddr | str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        now: float,
    ) -> RequestRef:
        """Send REFER (RFC 3515).  Its NOTIFYs arrive as :class:`ReferProgress` events."""
        c = self._confirmed(call)
        assert c.dialog is not None
        if isinstance(refer_to, NameAddr):
            target = str(refer_to)
        elif isinstance(refer_to, str):
            target = refer_to if refer_to.lstrip().startswith(("<", '"')) else f"<{refer_to}>"
        else:
            target = f"<{refer_to}>"
        extra: list[tuple[str, str]] = [("Refer-To", target)]
        if referred_by is not None:
            extra.append(("Referred-By", str(referred_by)))
        extra += list(headers)
        ref = RequestRef(self._new_id(), "REFER")
        op = self._send_in_dialog(
            c,
            c.dialog,
            "REFER",
            kind="refer",
            ref=ref,
            purpose="app",
            headers=tuple(extra),
            now=now,
        )
        if c.refers is None:
            c.refers = {}
        c.refers[op.request.cseq.seq] = ref
        return ref

    def notify(
        self,
        call: CallRef,
        *,
        event: str,
        subscription_state: str,
        body: bytes = b"",
        content_type: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        now: float,
    ) -> RequestRef:
        """Send a NOTIFY of any package inside the call."""
        c = self._confirmed(call)
        assert c.dialog is not None
        extra = (("Event", event), ("Subscription-State", subscription_state), *headers)
        ref = RequestRef(self._new_id(), "NOTIFY")
        self._send_in_dialog(
            c,
            c.dialog,
            "NOTIFY",
            kind="notify",
            ref=ref,
            purpose="app",
            headers=extra,
            body=body,
            content_type=content_type,
            now=now,
        )
        return ref

    def notify_refer(
        self,
        handle: RequestHandle,
        status: int,
        reason: str | None = None,
        *,
        now: float,
    ) -> RequestRef | None:
        """Report the progress of an accepted REFER: a NOTIFY whose sipfrag is ``SIP/2.0
        <status> <reason>``; a final status (>= 200) terminates the subscription.

        Returns ``None`` when there is nothing to notify: the subscription was never created
        (REFER rejected, or ``Refer-Sub: false``), is already terminated, or the call is over
        (the referrer often hangs up as soon as the transfer is accepted).
        """
        sub = self._subs.get(handle.id)
        if sub is None:
            return None
        c = sub.call
        if status >= 200:
            del self._subs[handle.id]
        if c.dialog is None or c.state not in (CallState.CONFIRMED, CallState.ANSWERED):
            return None
        ref = RequestRef(self._new_id(), "NOTIFY")
        self._send_refer_notify(c, sub, status, reason, ref, now)
        return ref

    def respond_request(
        self,
        handle: RequestHandle,
        status: int,
        *,
        reason: str | None = None,
        body: bytes = b"",
        content_type: str | None = None,
        sdp: bytes | None = None,
        headers: Sequence[tuple[str, str]] = (),
        now: float,
    ) -> None:
        """Answer a request delivered with a handle (re-INVITE, UPDATE, REFER, INFO ...).

        A provisional keeps the handle valid; a final response uses it up.  ``sdp`` is the
        answer (or offer) for a re-INVITE / UPDATE.
        """
        op = self._handles.get(handle.id)
        if op is None:
            raise LocalProtocolError(f"{handle} is unknown or already answered", None)
        if not 100 <= status <= 699:
            raise LocalProtocolError(f"status {status} is not a SIP status code", None)
        if status >= 200:
            del self._handles[handle.id]
        hdrs = tuple(headers)
        method = op.request.method
        c = op.call
        if method == "INVITE" and c is not None:
            self._answer_reinvite(c, op, status, reason, sdp, hdrs, now)
        elif method == "UPDATE" and c is not None:
            self._answer_update(c, op, status, reason, sdp, hdrs, now)
        elif method == "REFER" and c is not None:
            self._answer_refer(c, op, status, reason, hdrs, now)
        else:
            if sdp is not None:
                body, content_type = sdp, SDP
            self._reply_op(
                op, status, reason, headers=hdrs, body=body, content_type=content_type, now=now
            )

    # ------------------------------------------------------------------------------------------
    # transaction events
    # ------------------------------------------------------------------------------------------
    def _drain(self, now: float) -> None:
        while True:
            events = self._tl.next_events()
            if not events:
                return
            for ev in events:
                self._on_transaction_event(ev, now)

    def _on_transaction_event(self, ev: TransactionEvent, now: float) -> None:
        match ev:
            case RequestReceived(key=key, request=request, peer=peer, cancels=cancels):
                if request.method == "CANCEL":
                    self._on_cancel(key, request, cancels, now)
                else:
                    self._on_request(key, request, peer, now)
            case AckReceived(request=request):
                try:
                    self._on_ack(request, now)
                except RemoteProtocolError as exc:
                    _log.debug("ack_dropped", extra={"node": self.name, "error": exc.msg})
            case ResponseReceived(key=key, response=response):
                try:
                    self._on_response(key, response, now)
                except RemoteProtocolError as exc:
                    _log.debug("response_dropped", extra={"node": self.name, "error": exc.msg})
            case StrayResponse(response=response):
                try:
                    self._on_stray(response)
                except RemoteProtocolError as exc:
                    _log.debug("stray_dropped", extra={"node": self.name, "error": exc.msg})
            case TransactionTimedOut(key=key):
                if key.client:
                    self._on_client_failure(key, 408, "Request Timeout", now)
                else:
                    self._drop_server(key)
            case TransportFailed(key=key):
                if key.client:
                    self._on_client_failure(key, 503, "Service Unavailable", now)
                else:
                    unanswered = self._uas_by_key.get(key)
                    self._drop_server(key)
                    if (
                        unanswered is not None
                        and unanswered.role == "uas"
                        and unanswered.state in (CallState.INCOMING, CallState.EARLY)
                    ):
                        # The INVITE server transaction died with its connection before a final
                        # response: no answer can reach the caller any more, so the call ends
                        # here rather than failing later when the application answers.
                        self._forget(unanswered)
                        self._events.append(CallEnded(unanswered.ref, "transport-error", None))
            case TransactionTerminated(key=key):
                self._standalone.pop(key, None)
                op = self._client.pop(key, None)
                if op is not None and op.call.local_invite is op:
                    op.call.local_invite = None
                self._drop_server(key)

    def _drop_server(self, key: TransactionKey) -> None:
        op = self._server.pop(key, None)
        if op is not None and op.handle is not None:
            self._handles.pop(op.handle.id, None)
        self._uas_by_key.pop(key, None)

    # -- requests ------------------------------------------------------------------------------
    def _on_request(
        self, key: TransactionKey, request: Request, peer: PeerInfo, now: float
    ) -> None:
        try:
            to_tag = request.to.tag
            if to_tag is None:
                self._out_of_dialog(key, request, peer, now)
            else:
                self._in_dialog(key, request, peer, to_tag, now)
        except RemoteProtocolError as exc:
            _log.debug("request_rejected", extra={"node": self.name, "error": exc.msg})
            # Handlers read every header they need before answering, so a malformed one is
            # found before any response went out and the request is answered exactly once.
            if exc.status_hint is not None:
                self._reply(key, request, exc.status_hint, headers=exc.extra_headers, now=now)

    def _out_of_dialog(
        self, key: TransactionKey, request: Request, peer: PeerInfo, now: float
    ) -> None:
        method = request.method
        if self._rejected(key, request, now):
            return
        if method == "INVITE":
            self._on_new_invite(key, request, peer, now)
        elif method == "OPTIONS" and "OPTIONS" not in self._app_answers:
            self._reply(key, request, 200, headers=self._options_headers(), now=now)
            self._events.append(IncomingRequest(None, None, request, peer))
        elif method in ("BYE", "PRACK", "UPDATE", "INFO", "NOTIFY"):
            self._reply(key, request, 481, now=now)
        else:
            op = self._server_op(key, request, peer, None, with_handle=True)
            self._events.append(IncomingRequest(None, op.handle, request, peer))

    def _on_new_invite(
        self, key: TransactionKey, request: Request, peer: PeerInfo, now: float
    ) -> None:
        contacts = request.contact
        if not contacts or contacts[0].star or contacts[0].uri is None:
            self._reply(key, request, 400, "Missing Contact", now=now)
            return
        from_tag = request.from_.tag or ""
        merge_key = (request.call_id, from_tag, request.cseq.seq)
        if merge_key in self._merging:
            self._reply(key, request, 482, now=now)  # §8.2.2.2 merged request
            return
        replaced: CallRef | None = None
        replaces = request.replaces
        if replaces is not None:
            target = self._by_dialog.get(
                (replaces.call_id, replaces.to_tag or "", replaces.from_tag or "")
            )
            dlg = None if target is None else self._dialog_of(target, replaces.from_tag or "")
            if (
                target is None
                or dlg is None
                or target.state in (CallState.ENDING, CallState.ENDED)
                or (dlg.state == "early" and target.role == "uas")
            ):
                self._reply(key, request, 481, now=now)
                return
            if dlg.state == "confirmed" and replaces.early_only:
                self._reply(key, request, 486, now=now)
                return
            replaced = target.ref
        if too_small(request, self._st):
            self._reply(key, request, 422, headers=(("Min-SE", str(self._st.min_se)),), now=now)
            return
        offer = request.body if request.body else None
        call = Call(
            ref=CallRef(self._new_id(), request.call_id),
            role="uas",
            state=CallState.INCOMING,
            local_tag=self._ids.tag(),
            remote=peer.remote,
            transport=peer.transport,
            connection_id=peer.connection_id,
            invite=request,
            invite_key=key,
            invite_cseq=request.cseq.seq,
            peer=peer,
            merge_key=merge_key,
            remote_sdp=offer,
            remote_offer=offer is not None,
        )
        self._calls[call.ref.id] = call
        self._uas_by_key[key] = call
        self._merging[merge_key] = call
        self._events.append(IncomingCall(call.ref, request, peer, replaced))

    def _in_dialog(
        self, key: TransactionKey, request: Request, peer: PeerInfo, to_tag: str, now: float
    ) -> None:
        from_tag = request.from_.tag or ""
        c = self._by_dialog.get((request.call_id, to_tag, from_tag))
        d = None if c is None else self._dialog_of(c, from_tag)
        if c is None or d is None:
            self._reply(key, request, 481, now=now)
            return
        if self._rejected(key, request, now):
            return
        seq = request.cseq.seq
        if d.remote_seq is not None and seq < d.remote_seq:
            self._reply(key, request, 500, "CSeq Out of Order", now=now)  # §12.2.2
            return
        d.remote_seq = seq
        method = request.method
        if method == "BYE":
            self._on_bye(c, key, request, now)
        elif c.state in (CallState.ENDING, CallState.ENDED):
            self._reply(key, request, 481, now=now)
        elif method == "INVITE":
            self._on_reinvite(c, d, key, request, peer, now)
        elif method == "UPDATE":
            self._on_update(c, d, key, request, peer, now)
        elif method == "PRACK":
            self._on_prack(c, key, request, now)
        elif method == "REFER":
            self._on_refer(c, key, request, peer, now)
        elif method == "NOTIFY":
            self._on_notify(c, key, request, peer, now)
        elif method == "OPTIONS" and "OPTIONS" not in self._app_answers:
            self._reply(key, request, 200, headers=self._options_headers(), now=now)
            self._events.append(IncomingRequest(c.ref, None, request, peer))
        elif method == "INFO" and "INFO" not in self._app_answers:
            self._reply(key, request, 200, now=now)
            self._events.append(IncomingRequest(c.ref, None, request, peer))
        else:
            op = self._server_op(key, request, peer, c, with_handle=True)
            self._events.append(IncomingRequest(c.ref, op.handle, request, peer))

    def _on_bye(self, c: Call, key: TransactionKey, request: Request, now: float) -> None:
        if not can(c.state, CallInput.RECV_BYE):
            self._reply(key, request, 481, now=now)
            return
        self._reply(key, request, 200, now=now)
        before = c.state
        c.state = transition(c.state, CallInput.RECV_BYE)
        if before == CallState.EARLY and c.invite is not None and c.invite_key is not None:
            # the caller gave up an early dialog: the INVITE still needs its final response
            resp = self._make(c.invite, 487, to_tag=c.local_tag)
            self._tl.send_response(c.invite_key, resp, now)
        self._abort_remote_invite(c, now)
        if before != CallState.ENDING:
            self._events.append(CallEnded(c.ref, "remote-bye", request))
        if c.state == CallState.ENDED:
            self._forget(c)

    def _on_reinvite(
        self,
        c: Call,
        d: Dialog,
        key: TransactionKey,
        request: Request,
        peer: PeerInfo,
        now: float,
    ) -> None:
        if c.state != CallState.CONFIRMED:
            self._reply(key, request, 491, now=now)
            return
        if c.remote_invite is not None or c.ack_cseq is not None:
            # §14.2: a second INVITE before the first one is done
            retry = ("Retry-After", str(int(self._random() * 10)))
            self._reply(key, request, 500, headers=(retry,), now=now)
            return
        if c.local_invite is not None or c.local_offer:
            self._reply(key, request, 491, now=now)  # §14.2 glare
            return
        if too_small(request, self._st):
            self._reply(key, request, 422, headers=(("Min-SE", str(self._st.min_se)),), now=now)
            return
        d.refresh_target(request)
        offer = request.body if request.body else None
        auto = "INVITE" not in self._app_answers
        op = self._server_op(key, request, peer, c, with_handle=not auto)
        c.remote_invite = op
        if offer is not None:
            c.remote_offer = True
            c.remote_sdp = offer
        self._events.append(
            ReinviteReceived(c.ref, op.handle, request, offer, offer_is_hold(offer))
        )
        if auto:
            self._answer_reinvite(c, op, 200, None, self._auto_sdp(c, offer), (), now)

    def _on_update(
        self,
        c: Call,
        d: Dialog,
        key: TransactionKey,
        request: Request,
        peer: PeerInfo,
        now: float,
    ) -> None:
        offer = request.body if request.body else None
        if offer is not None and c.local_offer:
            self._reply(key, request, 491, now=now)  # RFC 3311 §5.2
            return
        if offer is not None and c.remote_offer:
            retry = ("Retry-After", str(int(self._random() * 10)))
            self._reply(key, request, 500, headers=(retry,), now=now)
            return
        if too_small(request, self._st):
            self._reply(key, request, 422, headers=(("Min-SE", str(self._st.min_se)),), now=now)
            return
        d.refresh_target(request)
        auto = "UPDATE" not in self._app_answers
        op = self._server_op(key, request, peer, c, with_handle=not auto)
        if offer is not None:
            c.remote_offer = True
            c.remote_sdp = offer
        self._events.append(UpdateReceived(c.ref, op.handle, request, offer, offer_is_hold(offer)))
        if auto:
            answer = self._auto_sdp(c, offer) if offer is not None else None
            self._answer_update(c, op, 200, None, answer, (), now)

    def _on_prack(self, c: Call, key: TransactionKey, request: Request, now: float) -> None:
        rack = request.rack
        r = c.rel
        if (
            rack is None
            or r is None
            or r.unacked is None
            or (rack.rseq, rack.cseq, rack.method.upper()) != (r.rseq, c.invite_cseq, "INVITE")
        ):
            self._reply(key, request, 481, now=now)  # RFC 3262 §3
            return
        self._reply(key, request, 200, now=now)
        r.unacked = None
        self._cancel_timer(c, "rel")
        if request.body:
            c.remote_sdp = request.body
            c.local_offer = False
        self._events.append(ProvisionalAcknowledged(c.ref, rack.rseq, request))
        if r.queue:
            status, reason, sdp, hdrs = r.queue.pop(0)
            self._send_provisional(c, status, reason, sdp, hdrs, True, now)
        elif c.pending_final is not None:
            status, reason, sdp, hdrs = c.pending_final
            c.pending_final = None
            self._send_final(c, status, reason, sdp, hdrs, now)

    def _on_refer(
        self, c: Call, key: TransactionKey, request: Request, peer: PeerInfo, now: float
    ) -> None:
        refer_to = request.refer_to
        if refer_to is None:
            self._reply(key, request, 400, "Missing Refer-To", now=now)
            return
        replaces = replaces_in(refer_to)
        op = self._server_op(key, request, peer, c, with_handle=True)
        assert op.handle is not None
        referred_by = request.headers.get("Referred-By")
        self._events.append(
            ReferReceived(c.ref, op.handle, request, refer_to, referred_by, replaces)
        )

    def _on_notify(
        self, c: Call, key: TransactionKey, request: Request, peer: PeerInfo, now: float
    ) -> None:
        event = request.event
        if event is not None and event.package.lower() == "refer":
            refers = c.refers or {}
            ident = event.id
            seq: int | None = None
            if ident is None and refers:
                seq = min(refers)
            elif ident is not None and ident.isdigit() and int(ident) in refers:
                seq = int(ident)
            if seq is None:
                self._reply(key, request, 481, now=now)
                return
            frag = parse_sipfrag(request.body)
            sub_state = request.subscription_state
            state = sub_state.state if sub_state is not None else "active"
            final = state == "terminated"
            self._reply(key, request, 200, now=now)
            ref = refers[seq]
            if final:
                del refers[seq]
            self._events.append(ReferProgress(c.ref, ref, frag.status, frag.reason, state, final))
            return
        if "NOTIFY" in self._app_answers:
            op = self._server_op(key, request, peer, c, with_handle=True)
            self._events.append(IncomingRequest(c.ref, op.handle, request, peer))
            return
        self._reply(key, request, 200, now=now)
        self._events.append(IncomingRequest(c.ref, None, request, peer))

    def _on_cancel(
        self,
        key: TransactionKey,
        request: Request,
        cancels: TransactionKey | None,
        now: float,
    ) -> None:
        if cancels is None:
            return  # no matching INVITE: the transaction layer answered 481
        c = self._uas_by_key.get(cancels)
        to_tag = c.local_tag if c is not None else None
        self._reply(key, request, 200, to_tag=to_tag, now=now)
        if c is not None:
            if not can(c.state, CallInput.RECV_CANCEL):
                return
            c.state = transition(c.state, CallInput.RECV_CANCEL)
            if c.state == CallState.ENDED and c.invite is not None and c.invite_key is not None:
                resp = self._make(c.invite, 487, to_tag=c.local_tag)
                self._tl.send_response(c.invite_key, resp, now)
                self._events.append(CallCancelled(c.ref, request))
                self._forget(c)
            return
        op = self._server.get(cancels)
        if op is not None and op.call is not None and op.call.remote_invite is op:
            self._abort_remote_invite(op.call, now)

    def _on_ack(self, request: Request, now: float) -> None:
        key = (request.call_id, request.to.tag or "", request.from_.tag or "")
        c = self._by_dialog.get(key)
        if c is None or c.ack_cseq is None or c.ack_cseq != request.cseq.seq:
            return  # a retransmitted or stray ACK
        c.ack_cseq = None
        c.retx = None
        self._cancel_timer(c, "retx")
        self._cancel_timer(c, "noack")
        if request.body:
            c.remote_sdp = request.body
            c.local_offer = False
        if c.state == CallState.ANSWERED and c.dialog is not None:
            c.state = transition(c.state, CallInput.RECV_ACK)
            c.invite = None  # the INVITE is no longer needed: free it
            self._events.append(CallEstablished(c.ref, c.dialog.id, request.body or None, request))

    # -- responses -----------------------------------------------------------------------------
    def _on_response(self, key: TransactionKey, response: Response, now: float) -> None:
        if key in self._standalone:
            if response.status >= 200:
                ref = self._standalone.pop(key)
                self._events.append(
                    StandaloneCompleted(ref, response.status, response.reason_phrase, response)
                )
            return
        op = self._client.get(key)
        if op is None:
            self._on_stray(response)
            return
        if op.kind == "invite":
            self._on_invite_response(op, response, now)
        elif op.kind == "reinvite":
            self._on_reinvite_response(op, response, now)
        elif response.status >= 200:
            del self._client[key]
            self._on_final(op, response.status, response.reason_phrase, response, now)

    def _on_stray(self, response: Response) -> None:
        if not response.success or response.cseq.method != "INVITE":
            return
        ack = self._acks.get(
            (response.call_id, response.from_.tag or "", response.to.tag or "", response.cseq.seq)
        )
        if ack is not None:
            self._emit(ack)

    def _on_client_failure(self, key: TransactionKey, status: int, reason: str, now: float) -> None:
        ref = self._standalone.pop(key, None)
        if ref is not None:
            self._events.append(StandaloneCompleted(ref, status, reason, None))
            return
        op = self._client.pop(key, None)
        if op is None:
            return
        c = op.call
        if op.kind == "invite":
            if c.local_invite is not op:
                return  # an INVITE already replaced by its 422 retry
            c.local_invite = None
            if can(c.state, CallInput.RECV_FAILURE):
                c.state = transition(c.state, CallInput.RECV_FAILURE)
                self._events.append(CallFailed(c.ref, status, reason, None))
                self._forget(c)
            return
        if op.kind == "reinvite":
            if c.local_invite is op:
                c.local_invite = None
            if op.sdp is not None:
                c.local_offer = False
            if op.ref is not None:
                self._events.append(RequestCompleted(c.ref, op.ref, status, reason, None))
            self._in_dialog_failure(c, op, status, now)
            return
        self._on_final(op, status, reason, None, now)

    def _on_invite_response(self, op: ClientOp, response: Response, now: float) -> None:
        c = op.call
        status = response.status
        if status < 200:
            if c.local_invite is not op or not can(c.state, CallInput.RECV_PROVISIONAL):
                return
            c.provisional_seen = True
            c.state = transition(c.state, CallInput.RECV_PROVISIONAL)
            dialog: Dialog | None = None
            reliable = False
            tag = response.to.tag
            if tag is not None and status > 100:
                dialog = self._early_dialog(c, op.request, response)
                rseq = response.rseq
                if rseq is not None and any(t.lower() == "100rel" for t in response.require):
                    if dialog.last_rseq is not None and rseq != dialog.last_rseq + 1:
                        return  # a retransmission (or out of order): PRACKed already
                    dialog.last_rseq = rseq
                    reliable = True
                    self._send_in_dialog(
                        c,
                        dialog,
                        "PRACK",
                        kind="prack",
                        ref=None,
                        purpose="auto",
                        headers=(("RAck", f"{rseq} {response.cseq.seq} INVITE"),),
                        now=now,
                    )
                    if response.body and c.local_offer:
                        c.remote_sdp = response.body
                        c.local_offer = False
            if status > 100:
                self._events.append(
                    CallProgress(
                        c.ref,
                        status,
                        response.reason_phrase,
                        response,
                        None if dialog is None else dialog.id,
                        reliable,
                        response.body or None,
                    )
                )
            if c.cancel_requested and not c.cancel_sent:
                self._send_cancel(c, now)
            return
        if status < 300:
            self._on_invite_success(c, op, response, now)
            return
        if c.local_invite is not op:
            return
        c.local_invite = None
        if (
            status == 422
            and self._st.enabled
            and not c.cancel_requested
            and response.min_se is not None
            and response.min_se > c.se_requested
        ):
            self._retry_after_422(c, op, response.min_se, now)
            return
        if can(c.state, CallInput.RECV_FAILURE):
            c.state = transition(c.state, CallInput.RECV_FAILURE)
            self._events.append(CallFailed(c.ref, status, response.reason_phrase, response))
            self._forget(c)

    def _on_invite_success(self, c: Call, op: ClientOp, response: Response, now: float) -> None:
        tag = response.to.tag or ""
        cseq = response.cseq.seq
        ack = self._acks.get((c.ref.call_id, c.local_tag, tag, cseq))
        if ack is not None:
            self._emit(ack)  # a retransmitted 2xx: the same ACK again (§13.2.2.4)
            return
        if c.dialog is not None and c.dialog.remote_tag == tag:
            return  # a retransmission arriving after its ACK was forgotten
        if (c.dialog is not None and c.dialog.remote_tag != tag) or not can(
            c.state, CallInput.RECV_SUCCESS
        ):
            # Another fork answered too, or the call is already over: ACK it, then BYE it.
            extra = dialog_as_uac(op.request, response, "confirmed")
            self._send_ack(c, extra, cseq, None, now)
            self._send_in_dialog(c, extra, "BYE", kind="bye", ref=None, purpose="fork", now=now)
            if c.state != CallState.ENDED:
                self._events.append(ForkDiscarded(c.ref, extra.id, response))
            return
        early = c.early or {}
        d = early.pop(tag, None)
        if d is None:
            d = dialog_as_uac(op.request, response, "confirmed")
        else:
            d.state = "confirmed"
            d.route_set = route_set_uac(response)  # §13.2.2.4: recomputed from the 2xx
            d.refresh_target(response)
        for other in early.values():
            self._by_dialog.pop(other.key, None)
        c.early = None
        c.dialog = d
        self._by_dialog[d.key] = c
        c.state = transition(c.state, CallInput.RECV_SUCCESS)
        if c.local_invite is op:
            c.local_invite = None
        ack_body: bytes | None = None
        if response.body:
            c.remote_sdp = response.body
            if c.local_offer:
                c.local_offer = False
            else:  # late offer: the answer goes into the ACK
                ack_body = c.ack_sdp
                if ack_body is None and c.base_sdp is not None:
                    ack_body = auto_answer(response.body, c.base_sdp, None)
                if ack_body is not None:
                    c.local_sdp = ack_body
                    if c.base_sdp is None:
                        c.base_sdp = ack_body
        self._send_ack(c, d, cseq, ack_body, now)
        c.invite = None
        c.ack_sdp = None
        if self._st.enabled:
            c.session = result_as_uac(response, op.request.min_se or self._st.min_se)
            self._arm_session(c, now)
        self._events.append(CallEstablished(c.ref, d.id, response.body or None, response))
        if c.cancel_requested:
            # The CANCEL lost the race against the 2xx (§9.1): the call exists, so end it.
            self._send_bye(c, "local-bye", None, (), now)

    def _on_reinvite_response(self, op: ClientOp, response: Response, now: float) -> None:
        c = op.call
        status = response.status
        if status < 200:
            return
        if status < 300:
            tag = response.to.tag or ""
            cseq = response.cseq.seq
            ack = self._acks.get((c.ref.call_id, c.local_tag, tag, cseq))
            if ack is not None:
                self._emit(ack)
                return
            d = c.dialog
            if d is None:
                return
            if c.local_invite is not op:
                # A 2xx already handled, whose stored ACK is forgotten: ACK it once more but
                # do not report it twice.
                self._send_ack(c, d, cseq, None, now)
                return
            ack_body: bytes | None = None
            c.local_invite = None
            d.refresh_target(response)
            if op.sdp is not None:
                c.local_sdp = op.sdp
                c.local_offer = False
                if response.body:
                    c.remote_sdp = response.body
            elif response.body:
                c.remote_sdp = response.body
                ack_body = self._auto_sdp(c, response.body)
                c.local_sdp = ack_body
            self._send_ack(c, d, cseq, ack_body, now)
            if c.state == CallState.CONFIRMED:
                self._session_after_uac(c, op, response, now)
                if op.ref is not None:
                    self._events.append(
                        RequestCompleted(c.ref, op.ref, status, response.reason_phrase, response)
                    )
            return
        if c.local_invite is not op:
            return
        c.local_invite = None
        if op.sdp is not None:
            c.local_offer = False
        if status == 491 and c.state == CallState.CONFIRMED:
            self._start_glare(c, op, now)
            return
        if op.ref is not None:
            self._events.append(
                RequestCompleted(c.ref, op.ref, status, response.reason_phrase, response)
            )
        self._in_dialog_failure(c, op, status, now)

    def _on_final(
        self, op: ClientOp, status: int, reason: str, response: Response | None, now: float
    ) -> None:
        """The final outcome of a non-INVITE request we sent."""
        c = op.call
        kind = op.kind
        if kind == "bye":
            if op.purpose != "fork" and can(c.state, CallInput.BYE_DONE):
                c.state = transition(c.state, CallInput.BYE_DONE)
                self._forget(c)
        elif kind == "update":
            if op.sdp is not None:
                c.local_offer = False
            if 200 <= status < 300 and response is not None:
                if c.dialog is not None:
                    c.dialog.refresh_target(response)
                if op.sdp is not None:
                    c.local_sdp = op.sdp
                    if response.body:
                        c.remote_sdp = response.body
                if c.state == CallState.CONFIRMED:
                    self._session_after_uac(c, op, response, now)
            elif status == 491 and c.state == CallState.CONFIRMED:
                self._start_glare(c, op, now)
                return
        elif kind == "refer" and status >= 300 and c.refers is not None:
            c.refers.pop(op.request.cseq.seq, None)
        if op.ref is not None and op.purpose == "app":
            self._events.append(RequestCompleted(c.ref, op.ref, status, reason, response))
        if kind in _DIALOG_FATAL_KINDS:
            self._in_dialog_failure(c, op, status, now)

    def _in_dialog_failure(self, c: Call, op: ClientOp, status: int, now: float) -> None:
        """RFC 3261 §12.2.1.2: a 481 or 408 to a request inside the dialog ends the call."""
        if c.state != CallState.CONFIRMED:
            return
        if status == 481:
            c.state = CallState.ENDED
            self._events.append(CallEnded(c.ref, "dialog-gone"))
            self._forget(c)
        elif status == 408:
            self._send_bye(c, "timeout", None, (), now)

    # ------------------------------------------------------------------------------------------
    # timers
    # ------------------------------------------------------------------------------------------
    def _schedule(
        self,
        call: Call | None,
        kind: str,
        when: float,
        data: tuple[str, str, str, int] | None = None,
    ) -> None:
        timer = Timer(when, call, kind, data)
        if call is not None:
            old = call.timers.get(kind)
            if old is not None:
                self._kill(old)
            call.timers[kind] = timer
        self._seq += 1
        self._live_timers += 1
        heap = self._heap
        heapq.heappush(heap, (when, self._seq, timer))
        if len(heap) > _COMPACT_MIN and len(heap) > 2 * self._live_timers:
            # Cancelled entries wait in the heap for their deadline (lazy cancellation); a
            # session timer's can wait half an hour, so drop them once they dominate.
            self._heap = [entry for entry in heap if not entry[2].cancelled]
            heapq.heapify(self._heap)

    def _kill(self, timer: Timer) -> None:
        """Cancel ``timer`` and let go of its call, so an ended call is not kept alive by a
        cancelled entry still waiting in the heap."""
        if not timer.cancelled:
            timer.cancelled = True
            self._live_timers -= 1
        timer.call = None

    def _cancel_timer(self, call: Call, kind: str) -> None:
        timer = call.timers.pop(kind, None)
        if timer is not None:
            self._kill(timer)

    def _fire(self, timer: Timer, now: float) -> None:
        c = timer.call
        kind = timer.kind
        if c is None:
            if kind == "ack-forget" and timer.data is not None:
                self._acks.pop(timer.data, None)
            return
        if kind == "retx":
            if c.retx is not None:
                self._emit(c.retx)
                c.retx_interval = min(2 * c.retx_interval, self._tconf.t2)
                self._schedule(c, "retx", now + c.retx_interval)
        elif kind == "noack":
            self._no_ack(c, now)
        elif kind == "rel":
            self._retransmit_reliable(c, now)
        elif kind == "cancel":
            if can(c.state, CallInput.RECV_FAILURE):
                # §9.1: no final response 64*T1 after our CANCEL; give the INVITE up.  (The
                # transaction layer ends the INVITE transaction at the same deadline; a final
                # response arriving later is a stray.)
                op = c.local_invite
                c.local_invite = None
                for key in [k for k, v in self._client.items() if v is op]:
                    del self._client[key]
                c.state = transition(c.state, CallInput.RECV_FAILURE)
                self._events.append(CallFailed(c.ref, 408, "Request Timeout", None))
                self._forget(c)
        elif kind == "glare":
            self._retry_glare(c, now)
        elif kind == "refresh":
            self._refresh(c, now)
        elif kind == "expire":
            if c.state == CallState.CONFIRMED:
                self._send_bye(c, "session-expired", None, (), now)

    def _no_ack(self, c: Call, now: float) -> None:
        """64*T1 without an ACK for our 2xx (§13.3.1.4): stop and end the call with BYE."""
        c.retx = None
        c.ack_cseq = None
        self._cancel_timer(c, "retx")
        if c.state == CallState.ANSWERED:
            c.state = transition(c.state, CallInput.ACK_TIMEOUT)
            c.invite = None
            self._send_bye(c, "no-ack", None, (), now, already_ending=True)
        elif c.state == CallState.CONFIRMED:
            self._send_bye(c, "no-ack", None, (), now)

    def _retransmit_reliable(self, c: Call, now: float) -> None:
        r = c.rel
        if r is None or r.unacked is None or c.invite_key is None:
            return
        if now >= r.deadline:
            # RFC 3262 §3: no PRACK within 64*T1 -> reject the INVITE with a 5xx.
            r.unacked = None
            r.queue.clear()
            if can(c.state, CallInput.SEND_FAILURE) and c.invite is not None:
                c.pending_final = None
                self._send_final(c, 500, "Reliable Provisional Not Acknowledged", None, (), now)
                self._events.append(CallEnded(c.ref, "prack-timeout"))
            return
        self._tl.send_response(c.invite_key, r.unacked, now)
        r.interval *= 2
        self._schedule(c, "rel", min(now + r.interval, r.deadline))

    def _arm_session(self, c: Call, now: float) -> None:
        self._cancel_timer(c, "refresh")
        self._cancel_timer(c, "expire")
        s = c.session
        if s is None:
            return
        if s.local_refresher:
            self._schedule(c, "refresh", now + refresh_delay(s.interval))
        else:
            self._schedule(c, "expire", now + expiry_delay(s.interval))

    def _refresh(self, c: Call, now: float) -> None:
        s = c.session
        if c.state != CallState.CONFIRMED or s is None or not s.local_refresher:
            return
        kind: Kind = "reinvite" if self._st.method == "INVITE" else "update"
        if self._invite_busy(c) or c.local_offer or c.remote_offer:
            self._schedule(c, "refresh", now + self._tconf.t2)  # try again once it settles
            return
        sdp = c.local_sdp if kind == "reinvite" else None
        self._send_offer(c, kind, sdp, (), None, "refresh", now)

    def _session_after_uac(self, c: Call, op: ClientOp, response: Response, now: float) -> None:
        """A 2xx to our re-INVITE/UPDATE refreshed (or switched off) the session timer."""
        if not self._st.enabled:
            return
        floor = c.session.min_se if c.session is not None else self._st.min_se
        c.session = result_as_uac(response, floor)
        self._arm_session(c, now)
        if c.session is not None:
            refresher: Literal["local", "remote"] = (
                "local" if c.session.local_refresher else "remote"
            )
            self._events.append(SessionRefreshed(c.ref, c.session.interval, refresher, "local"))

    def _session_as_uas(self, c: Call, request: Request) -> list[tuple[str, str]]:
        """Negotiate the timer for our 2xx to ``request`` and return its header fields."""
        if not self._st.enabled:
            return []
        if c.state == CallState.CONFIRMED and c.session is None and request.session_expires is None:
            return []  # a re-INVITE/UPDATE in a call without a timer does not start one
        negotiated = negotiate_as_uas(request, self._st, c.session)
        if negotiated is None:
            return []
        interval, refresher, min_se = negotiated
        c.session = SessionTimer(interval, refresher == "uas", min_se)
        out: list[tuple[str, str]] = []
        if request.supports("timer"):
            out.append(("Require", "timer"))
        out.append(("Session-Expires", f"{interval};refresher={refresher}"))
        return out

    # ------------------------------------------------------------------------------------------
    # sending
    # ------------------------------------------------------------------------------------------
    def _new_id(self) -> int:
        self._ids_used += 1
        return self._ids_used

    def _emit(self, out: Outgoing) -> None:
        """Queue one of our own messages behind what the transaction layer already queued."""
        self._out.extend(self._tl.messages_to_send())
        self._out.append(out)

    def _via(self, transport: TransportName) -> str:
        return f"SIP/2.0/{transport.upper()} {self._sent_by};branch={self._ids.branch()};rport"

    def _ua_header(self) -> list[tuple[str, str]]:
        return [("User-Agent", self._user_agent)] if self._user_agent else []

    def _capabilities(self) -> list[tuple[str, str]]:
        return list(self._capability_headers)

    def _options_headers(self) -> tuple[tuple[str, str], ...]:
        return (
            ("Allow", self._allow),
            ("Accept", SDP),
            *((("Supported", ", ".join(self._supported)),) if self._supported else ()),
        )

    def _get(self, call: CallRef) -> Call:
        c = self._calls.get(call.id)
        if c is None:
            raise LocalProtocolError(f"{call} is over or unknown", None)
        return c

    def _confirmed(self, call: CallRef) -> Call:
        c = self._get(call)
        if c.state != CallState.CONFIRMED or c.dialog is None:
            raise LocalProtocolError(f"call is {c.state.name}, not CONFIRMED", None)
        return c

    def _invite_busy(self, c: Call) -> bool:
        """§14.1: no new INVITE while another one is in progress in either direction."""
        return (
            c.local_invite is not None
            or c.remote_invite is not None
            or c.ack_cseq is not None
            or c.glare is not None
        )

    def _dialog_of(self, c: Call, remote_tag: str) -> Dialog | None:
        if c.dialog is not None and c.dialog.remote_tag == remote_tag:
            return c.dialog
        if c.early is not None:
            return c.early.get(remote_tag)
        return None

    def _early_dialog(self, c: Call, request: Request, response: Response) -> Dialog:
        tag = response.to.tag or ""
        if c.early is None:
            c.early = {}
        d = c.early.get(tag)
        if d is None:
            d = dialog_as_uac(request, response, "early")
            c.early[tag] = d
            self._by_dialog[d.key] = c
        return d

    def _uas_dialog(self, c: Call) -> Dialog:
        if c.dialog is None:
            assert c.invite is not None
            c.dialog = dialog_as_uas(c.invite, c.local_tag, "early")
            self._by_dialog[c.dialog.key] = c
        return c.dialog

    def _next_hop(
        self, c: Call, d: Dialog
    ) -> tuple[Address, TransportName, str | None, int | None]:
        """Where a request inside ``d`` goes (RFC 3261 §12.2.1.1 then RFC 3263, simplified)."""
        uri = d.next_hop_uri()
        transport: TransportName = c.transport
        address: Address | None = None
        server_name: str | None = None
        if isinstance(uri, SipUri):
            tparam = uri.transport
            if uri.secure:
                transport = "tls"
            elif tparam == "udp":
                transport = "udp"
            elif tparam == "tcp":
                transport = "tcp"
            elif tparam == "tls":
                transport = "tls"
            if self._resolve is not None:
                address = self._resolve(uri, transport)
            if address is None and uri.host_is_ip:
                port = uri.port or (5061 if transport == "tls" else 5060)
                address = (uri.host.strip("[]"), port)
            if transport == "tls" and not uri.host_is_ip:
                server_name = uri.host
        if address is None:
            address = c.remote
            server_name = server_name or c.server_name
        same = address == c.remote and transport == c.transport
        return address, transport, server_name, c.connection_id if same else None

    def _send_in_dialog(
        self,
        c: Call,
        d: Dialog,
        method: str,
        *,
        kind: Kind,
        ref: RequestRef | None,
        purpose: Purpose,
        headers: tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        content_type: str | None = None,
        sdp: bytes | None = None,
        now: float,
    ) -> ClientOp:
        address, transport, server_name, connection_id = self._next_hop(c, d)
        extra: list[tuple[str, str]] = []
        if method in ("INVITE", "UPDATE"):
            extra += self._capabilities()
            if c.session is not None:
                s = c.session
                extra += session_headers(s.interval, s.refresher_param("uac"), s.min_se)
        extra += self._ua_header()
        extra += headers
        request = d.request(
            method,
            via=self._via(transport),
            cseq=d.next_seq(),
            contact=self._contact_of(c) if method in _CONTACT_METHODS else None,
            headers=extra,
            body=body,
            content_type=content_type,
        )
        key = self._tl.send_request(
            request, address, transport, now, server_name=server_name, connection_id=connection_id
        )
        op = ClientOp(kind, c, request, ref, purpose, d, sdp, headers)
        self._client[key] = op
        return op

    def _send_offer(
        self,
        c: Call,
        kind: Kind,
        sdp: bytes | None,
        headers: tuple[tuple[str, str], ...],
        ref: RequestRef | None,
        purpose: Purpose,
        now: float,
    ) -> None:
        assert c.dialog is not None
        op = self._send_in_dialog(
            c,
            c.dialog,
            "INVITE" if kind == "reinvite" else "UPDATE",
            kind=kind,
            ref=ref,
            purpose=purpose,
            headers=headers,
            body=sdp or b"",
            content_type=SDP if sdp is not None else None,
            sdp=sdp,
            now=now,
        )
        if kind == "reinvite":
            c.local_invite = op
        if sdp is not None:
            c.local_offer = True

    def _send_ack(self, c: Call, d: Dialog, cseq: int, body: bytes | None, now: float) -> None:
        """The ACK for a 2xx (§13.2.2.4): new branch, the INVITE's CSeq number, the route set.
        Kept for 64*T1 so each retransmitted 2xx gets the very same ACK."""
        address, transport, server_name, connection_id = self._next_hop(c, d)
        ack = d.request(
            "ACK",
            via=self._via(transport),
            cseq=cseq,
            body=body or b"",
            content_type=SDP if body else None,
        )
        out = Outgoing(ack, address, transport, connection_id, server_name)
        self._emit(out)
        key = (d.call_id, d.local_tag, d.remote_tag, cseq)
        self._acks[key] = out
        self._schedule(None, "ack-forget", now + 64 * self._tconf.t1, key)

    def _send_cancel(self, c: Call, now: float) -> None:
        assert c.invite is not None
        cancel = make_cancel(c.invite)
        key = self._tl.send_request(cancel, c.remote, c.transport, now, server_name=c.server_name)
        self._client[key] = ClientOp("cancel", c, cancel, None, "auto")
        c.cancel_sent = True
        self._schedule(c, "cancel", now + 64 * self._tconf.t1)

    def _send_bye(
        self,
        c: Call,
        reason: EndReason,
        ref: RequestRef | None,
        headers: tuple[tuple[str, str], ...],
        now: float,
        *,
        already_ending: bool = False,
    ) -> None:
        if not already_ending:
            c.state = transition(c.state, CallInput.SEND_BYE)
        for kind in ("retx", "noack", "refresh", "expire", "glare", "rel"):
            self._cancel_timer(c, kind)
        c.retx = None
        c.ack_cseq = None
        c.glare = None
        self._abort_remote_invite(c, now)
        assert c.dialog is not None
        self._send_in_dialog(
            c,
            c.dialog,
            "BYE",
            kind="bye",
            ref=ref,
            purpose="app" if ref is not None else "auto",
            headers=headers,
            now=now,
        )
        self._events.append(CallEnded(c.ref, reason))

    def _abort_remote_invite(self, c: Call, now: float) -> None:
        """A re-INVITE from the peer still unanswered when the call ends gets 487."""
        op = c.remote_invite
        if op is None:
            return
        c.remote_invite = None
        c.remote_offer = False
        if op.handle is not None:
            self._handles.pop(op.handle.id, None)
        self._reply_op(op, 487, None, now=now)

    def _start_glare(self, c: Call, op: ClientOp, now: float) -> None:
        """§14.1: after a 491, wait 2.1-4 s if we chose the Call-ID, else 0-2 s, and retry."""
        r = self._random()
        delay = 2.1 + 1.9 * r if c.owns_call_id else 2.0 * r
        c.glare = GlareRetry(op.kind, op.ref, op.purpose, op.sdp, op.headers)
        self._schedule(c, "glare", now + delay)
        if op.ref is not None:
            self._events.append(GlareBackoff(c.ref, op.ref, now + delay))

    def _retry_glare(self, c: Call, now: float) -> None:
        g = c.glare
        if g is None or c.state != CallState.CONFIRMED:
            c.glare = None
            return
        c.glare = None
        busy = c.local_invite is not None or c.remote_invite is not None or c.ack_cseq is not None
        if (g.kind == "reinvite" and busy) or (
            g.sdp is not None and (c.local_offer or c.remote_offer)
        ):
            c.glare = g
            self._schedule(c, "glare", now + self._tconf.t1)
            return
        sdp = g.sdp
        if g.purpose == "refresh" and g.kind == "reinvite":
            sdp = c.local_sdp
        self._send_offer(c, g.kind, sdp, g.headers, g.ref, g.purpose, now)

    def _retry_after_422(self, c: Call, op: ClientOp, min_se: int, now: float) -> None:
        """RFC 4028 §7.4: the same INVITE again, new branch and CSeq, with the larger interval."""
        old = op.request
        request = old.copy()
        request.headers.set("Via", self._via(c.transport))
        request.headers.set("CSeq", f"{old.cseq.seq + 1} INVITE")
        interval = max(min_se, c.se_requested)
        request.headers.set("Session-Expires", f"{interval};refresher={self._st.refresher}")
        request.headers.set("Min-SE", str(min_se))
        c.invite = request
        c.invite_cseq = old.cseq.seq + 1
        c.se_requested = interval
        c.provisional_seen = False
        key = self._tl.send_request(request, c.remote, c.transport, now, server_name=c.server_name)
        new = ClientOp("invite", c, request, None, "auto", sdp=op.sdp)
        self._client[key] = new
        c.local_invite = new

    # -- callee side --------------------------------------------------------------------------
    def _dialog_response_headers(self, c: Call, request: Request) -> list[tuple[str, str]]:
        """Record-Route copied (§12.1.1) and our Contact, for dialog-creating responses."""
        out = [("Record-Route", v) for v in request.headers.get_all("Record-Route")]
        out.append(("Contact", self._contact_text if c.contact is None else str(c.contact)))
        return out

    def _contact_of(self, c: Call) -> NameAddr:
        """The Contact of one call: its own when the application set one, else the UA's."""
        return self._contact if c.contact is None else c.contact

    @staticmethod
    def _parse_contact(contact: NameAddr | str | None) -> NameAddr | None:
        return parse_name_addr(contact) if isinstance(contact, str) else contact

    def _retag(self, c: Call, to_tag: str) -> None:
        """The final response comes from another fork: its To-tag names the dialog."""
        if c.dialog is not None:
            self._by_dialog.pop(c.dialog.key, None)
            c.dialog = None
        c.local_tag = to_tag

    def _send_provisional(
        self,
        c: Call,
        status: int,
        reason: str | None,
        sdp: bytes | None,
        headers: tuple[tuple[str, str], ...],
        reliable: bool,
        now: float,
        to_tag: str | None = None,
    ) -> None:
        assert c.invite is not None and c.invite_key is not None
        self._uas_dialog(c)
        extra = self._dialog_response_headers(c, c.invite)
        if reliable:
            if c.rel is None:
                # RFC 3262 §3: the first RSeq is random in 1 .. 2**31 - 1.
                c.rel = Reliable(rseq=1 + int(self._random() * (2**31 - 2)))
            else:
                c.rel.rseq += 1
            extra += [("Require", "100rel"), ("RSeq", str(c.rel.rseq))]
        response = self._make(
            c.invite,
            status,
            reason,
            to_tag=to_tag or c.local_tag,
            extra=extra,
            headers=headers,
            body=sdp or b"",
            content_type=SDP if sdp is not None else None,
        )
        self._tl.send_response(c.invite_key, response, now)
        c.state = transition(c.state, CallInput.SEND_PROVISIONAL)
        if sdp is not None:
            c.local_sdp = sdp
            if c.base_sdp is None:
                c.base_sdp = sdp
            if reliable and c.remote_offer:
                c.remote_offer = False
        if reliable and c.rel is not None:
            r = c.rel
            r.unacked = response
            r.has_sdp = sdp is not None
            r.interval = self._tconf.t1
            r.deadline = now + 64 * self._tconf.t1
            self._schedule(c, "rel", now + r.interval)

    def _send_final(
        self,
        c: Call,
        status: int,
        reason: str | None,
        sdp: bytes | None,
        headers: tuple[tuple[str, str], ...],
        now: float,
    ) -> None:
        assert c.invite is not None and c.invite_key is not None
        request = c.invite
        key = c.invite_key
        self._uas_by_key.pop(key, None)
        if c.merge_key is not None:
            self._merging.pop(c.merge_key, None)
        if c.rel is not None:
            c.rel.unacked = None
            c.rel.queue.clear()
        self._cancel_timer(c, "rel")
        if status >= 300:
            response = self._make(request, status, reason, to_tag=c.local_tag, headers=headers)
            self._tl.send_response(key, response, now)
            c.state = transition(c.state, CallInput.SEND_FAILURE)
            self._forget(c)
            return
        d = self._uas_dialog(c)
        d.state = "confirmed"
        extra = self._dialog_response_headers(c, request) + self._capabilities()
        extra += self._session_as_uas(c, request)
        response = self._make(
            request,
            status,
            reason,
            to_tag=c.local_tag,
            extra=extra,
            headers=headers,
            body=sdp or b"",
            content_type=SDP if sdp is not None else None,
        )
        self._tl.send_response(key, response, now)
        c.state = transition(c.state, CallInput.SEND_SUCCESS)
        if sdp is not None:
            c.local_sdp = sdp
            if c.base_sdp is None:
                c.base_sdp = sdp
            if c.remote_offer:
                c.remote_offer = False
            else:
                c.local_offer = True  # offer in the 2xx, answer in the ACK
        self._start_2xx_retransmission(c, response, request.cseq.seq, now)
        self._arm_session(c, now)

    def _start_2xx_retransmission(self, c: Call, response: Response, cseq: int, now: float) -> None:
        """§13.3.1.4: the core resends its 2xx at T1, 2T1 ... T2 until the ACK; 64*T1 at most."""
        # Resend exactly where the transaction layer sent the first copy (§18.2.2 routing).
        sent = self._tl.messages_to_send()
        self._out.extend(sent)
        first = next((o for o in reversed(sent) if o.message is response), None)
        if first is None:
            peer = c.peer
            assert peer is not None
            first = Outgoing(response, peer.remote, peer.transport, peer.connection_id)
        c.retx = first
        c.retx_interval = self._tconf.t1
        c.ack_cseq = cseq
        self._schedule(c, "retx", now + c.retx_interval)
        self._schedule(c, "noack", now + 64 * self._tconf.t1)

    def _answer_reinvite(
        self,
        c: Call,
        op: ServerOp,
        status: int,
        reason: str | None,
        sdp: bytes | None,
        headers: tuple[tuple[str, str], ...],
        now: float,
    ) -> None:
        request = op.request
        if status < 200:
            self._reply_op(op, status, reason, headers=headers, now=now)
            return
        if c.remote_invite is op:
            c.remote_invite = None
        if status >= 300:
            c.remote_offer = False
            self._reply_op(op, status, reason, headers=headers, now=now)
            return
        extra = [("Contact", str(self._contact_of(c))), *self._capabilities()]
        extra += self._session_as_uas(c, request)
        response = self._make(
            request,
            status,
            reason,
            extra=extra,
            headers=headers,
            body=sdp or b"",
            content_type=SDP if sdp is not None else None,
        )
        self._tl.send_response(op.key, response, now)
        self._server.pop(op.key, None)
        if sdp is not None:
            c.local_sdp = sdp
            if c.remote_offer:
                c.remote_offer = False
            else:
                c.local_offer = True
        c.peer = op.peer
        self._start_2xx_retransmission(c, response, request.cseq.seq, now)
        self._refreshed_by_remote(c, now)

    def _answer_update(
        self,
        c: Call,
        op: ServerOp,
        status: int,
        reason: str | None,
        sdp: bytes | None,
        headers: tuple[tuple[str, str], ...],
        now: float,
    ) -> None:
        request = op.request
        if status < 200:
            self._reply_op(op, status, reason, headers=headers, now=now)
            return
        if status >= 300:
            c.remote_offer = False
            self._reply_op(op, status, reason, headers=headers, now=now)
            return
        extra = [("Contact", str(self._contact_of(c)))]
        confirmed = c.state == CallState.CONFIRMED
        if confirmed:
            extra += self._session_as_uas(c, request)
        self._reply_op(
            op,
            status,
            reason,
            extra=extra,
            headers=headers,
            body=sdp or b"",
            content_type=SDP if sdp is not None else None,
            now=now,
        )
        if sdp is not None:
            c.local_sdp = sdp
        if request.body:
            c.remote_offer = False
        if confirmed:
            self._refreshed_by_remote(c, now)

    def _refreshed_by_remote(self, c: Call, now: float) -> None:
        self._arm_session(c, now)
        s = c.session
        if s is not None:
            refresher: Literal["local", "remote"] = "local" if s.local_refresher else "remote"
            self._events.append(SessionRefreshed(c.ref, s.interval, refresher, "remote"))

    def _answer_refer(
        self,
        c: Call,
        op: ServerOp,
        status: int,
        reason: str | None,
        headers: tuple[tuple[str, str], ...],
        now: float,
    ) -> None:
        request = op.request
        if status < 200 or status >= 300:
            self._reply_op(op, status, reason, headers=headers, now=now)
            return
        no_sub = (request.headers.get("Refer-Sub") or "").strip().lower() == "false" and any(
            s.lower() == "norefersub" for s in self._supported
        )
        extra = [("Contact", str(self._contact_of(c)))]
        if no_sub:
            extra.append(("Refer-Sub", "false"))  # RFC 4488: no implicit subscription
        self._reply_op(op, status, reason, extra=extra, headers=headers, now=now)
        if no_sub or op.handle is None:
            return
        sub = ReferSubscription(c, request.cseq.seq, now + self._refer_expires)
        self._subs[op.handle.id] = sub
        if c.dialog is not None and c.state == CallState.CONFIRMED:
            self._send_refer_notify(c, sub, 100, None, None, now)

    def _send_refer_notify(
        self,
        c: Call,
        sub: ReferSubscription,
        status: int,
        reason: str | None,
        ref: RequestRef | None,
        now: float,
    ) -> None:
        assert c.dialog is not None
        if status >= 200:
            state = "terminated;reason=noresource"
        else:
            state = f"active;expires={max(0, int(sub.expires_at - now))}"
        self._send_in_dialog(
            c,
            c.dialog,
            "NOTIFY",
            kind="notify",
            ref=ref,
            purpose="app" if ref is not None else "auto",
            headers=(("Event", f"refer;id={sub.event_id}"), ("Subscription-State", state)),
            body=sipfrag(status, reason),
            content_type=SIPFRAG_TYPE,
            now=now,
        )

    def _auto_sdp(self, c: Call, offer: bytes | None) -> bytes | None:
        if c.base_sdp is None:
            return c.local_sdp
        return auto_answer(offer, c.base_sdp, c.local_sdp)

    # -- responses ------------------------------------------------------------------------------
    def _make(
        self,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> Response:
        """A response with our fields first, then Server, then the application's."""
        if to_tag is None and status != 100 and request.to.tag is None:
            to_tag = self._ids.tag()  # §8.2.6.2: every response but 100 carries a To-tag
        fields = list(extra)
        if self._user_agent:
            fields.append(("Server", self._user_agent))
        fields += headers
        return make_response(
            request,
            status,
            reason,
            to_tag=to_tag,
            headers=fields,
            body=body,
            content_type=content_type,
        )

    def _reply(
        self,
        key: TransactionKey,
        request: Request,
        status: int,
        reason: str | None = None,
        *,
        to_tag: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        now: float,
    ) -> None:
        self._tl.send_response(
            key, self._make(request, status, reason, to_tag=to_tag, extra=headers), now
        )

    def _reply_op(
        self,
        op: ServerOp,
        status: int,
        reason: str | None,
        *,
        extra: Sequence[tuple[str, str]] = (),
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        now: float,
    ) -> None:
        response = self._make(
            op.request,
            status,
            reason,
            extra=extra,
            headers=headers,
            body=body,
            content_type=content_type,
        )
        self._tl.send_response(op.key, response, now)
        if status >= 200:
            self._server.pop(op.key, None)

    def _rejected(self, key: TransactionKey, request: Request, now: float) -> bool:
        """Answer what :func:`inspect_request` rejects (405/501/416/420/415/406)."""
        try:
            rejection = inspect_request(request, self._policy)
        except RemoteProtocolError as exc:
            status = exc.status_hint or 400
            rejection = Rejection(status, REASON_PHRASES.get(status, ""))
        if rejection is None:
            return False
        self._reply(
            key, request, rejection.status, rejection.reason, headers=rejection.headers, now=now
        )
        return True

    def _server_op(
        self,
        key: TransactionKey,
        request: Request,
        peer: PeerInfo,
        c: Call | None,
        *,
        with_handle: bool,
    ) -> ServerOp:
        op = ServerOp(key, request, peer, c)
        self._server[key] = op
        if with_handle:
            op.handle = RequestHandle(self._new_id(), request.method)
            self._handles[op.handle.id] = op
        return op

    def _forget(self, c: Call) -> None:
        """The call is over: drop every index entry and timer (ops in flight keep a reference
        until their transactions end)."""
        c.state = CallState.ENDED
        for timer in c.timers.values():
            self._kill(timer)
        c.timers.clear()
        if c.dialog is not None:
            self._by_dialog.pop(c.dialog.key, None)
        if c.early:
            for d in c.early.values():
                self._by_dialog.pop(d.key, None)
        c.early = None
        if c.invite_key is not None:
            self._uas_by_key.pop(c.invite_key, None)
        if c.merge_key is not None:
            self._merging.pop(c.merge_key, None)
        for handle_id in [h for h, s in self._subs.items() if s.call is c]:
            del self._subs[handle_id]
        c.retx = None
        c.invite = None
        self._calls.pop(c.ref.id, None)
