"""The PSTN carrier on the SBC's other side, and the phones behind it.

The carrier is one SIP node (UDP by default, the topology's ``pstn`` listener) that sends its
calls to the SBC's PSTN-side address and takes the SBC's calls for its phones.  It speaks what
a plain carrier trunk speaks: RTP/AVP G.711 SDP with telephone-event (the SBC must turn it into
SDES-SRTP toward Microsoft, Part 8.1 [DOC]), one-way ``a=sendonly`` hold (the SBC must turn it into
``a=inactive`` toward Microsoft, Part 8.4 [DOC]), and no TLS.

Each phone (:class:`PstnPhoneAgent`) answers, rejects or lets ring per the topology's behaviour,
with its delay on the lab's clock, or when a scenario calls a verb.  Everything it saw is kept in
:class:`PstnCall` records for checks (the INVITE the SBC sent, with its History-Info and
P-Asserted-Identity, every response, how the call ended).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from sbcsim.dialog import (
    CallCancelled,
    CallEnded,
    CallEstablished,
    CallFailed,
    CallProgress,
    CallRef,
    IncomingCall,
    ReinviteReceived,
    UserAgent,
    replaces_value,
)
from sbcsim.endpoints.basic import g711_sdp
from sbcsim.errors import LocalProtocolError
from sbcsim.net.base import Address, TransportName
from sbcsim.node import Cancellable, Node
from sbcsim.sip.message import Request
from sbcsim.sip.sdp import Direction, SessionDescription
from sbcsim.sip.uri import SipUri
from sbcsim.topology import AnswerBehaviour, AnswerMode, PstnPhone, Topology

__all__ = ["PstnCall", "PstnCallState", "PstnCarrier", "PstnPhoneAgent", "pstn_sdp"]

PstnCallState = Literal["calling", "ringing", "connected", "ended", "failed"]


def pstn_sdp(
    host: str,
    port: int,
    session: int,
    *,
    direction: Direction = Direction.SENDRECV,
    version: int = 1,
) -> bytes:
    """A carrier's G.711 offer/answer (RTP/AVP, PCMU/PCMA, telephone-event) with a direction.

    ``version`` is the o= line's session version: RFC 3264 §8 has it grow by one with every
    changed offer, which is how the other side tells a hold from a session refresh."""
    body = g711_sdp(host, port, session)
    if version != 1:
        body = body.replace(
            f"o=sbcsim {session} 1 ".encode(), f"o=sbcsim {session} {version} ".encode(), 1
        )
    if direction is Direction.SENDRECV:
        return body
    return body.replace(b"a=sendrecv", f"a={direction.value}".encode())


@dataclass(eq=False)
class PstnCall:
    """One call of a PSTN phone through the SBC, with everything a check may read."""

    phone: str
    direction: Literal["outbound", "inbound"]
    ref: CallRef
    remote_number: str
    started_at: float
    state: PstnCallState = "calling"
    request: Request | None = None
    responses: list[tuple[float, int, str | None]] = field(default_factory=list)
    final_status: int | None = None
    established_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    remote_sdp: bytes | None = None
    on_hold: bool = False
    reinvites: list[tuple[float, bool]] = field(default_factory=list)
    timer: Cancellable | None = field(default=None, repr=False)
    session: int = 0
    sdp_version: int = 1

    @property
    def ringing_seen(self) -> bool:
        """Whether a 180 or 183 reached the caller."""
        return any(status in (180, 183) for _, status, _ in self.responses)


class PstnPhoneAgent:
    """One phone on the PSTN: its number, its behaviour, its calls and its verbs."""

    def __init__(self, phone: PstnPhone, carrier: PstnCarrier) -> None:
        self.phone = phone
        self.carrier = carrier
        self.behaviour: AnswerBehaviour = phone.answer
        self.calls: list[PstnCall] = []

    @property
    def number(self) -> str:
        return self.phone.number

    def set_behaviour(self, mode: AnswerMode, delay_seconds: float = 0.0) -> None:
        self.behaviour = AnswerBehaviour(mode=mode, delay_seconds=delay_seconds)

    # -- verbs ------------------------------------------------------------------------------------
    def call(self, to_number: str, *, headers: tuple[tuple[str, str], ...] = ()) -> PstnCall:
        """Call ``to_number`` through the SBC (a Teams user's number, normally)."""
        return self.carrier.place(self, to_number, headers)

    def take_over(self, other: PstnPhoneAgent) -> PstnCall:
        """Take over ``other``'s current call: what the carrier sends when ``other`` completes
        an attended transfer to this phone on its side — a new INVITE from this phone carrying
        ``Replaces`` for ``other``'s dialog with the SBC (RFC 3891)."""
        return self.carrier.replace(self, other.current())

    def answer(self) -> None:
        """Answer the oldest ringing incoming call."""
        self.carrier.answer(self._ringing())

    def reject(self, status: int = 486) -> None:
        """Reject the oldest ringing incoming call (486 Busy Here unless told otherwise)."""
        self.carrier.reject(self._ringing(), status)

    def hang_up(self) -> None:
        """End the current call (CANCEL while it rings, BYE once answered)."""
        self.carrier.hang_up(self.current())

    def hold(self) -> None:
        """Hold the current call the carrier way: a re-INVITE with ``a=sendonly``."""
        self.carrier.hold(self.current(), True)

    def resume(self) -> None:
        """Take the current call off hold (``a=sendrecv``)."""
        self.carrier.hold(self.current(), False)

    def current(self) -> PstnCall:
        """The latest call not yet over."""
        for call in reversed(self.calls):
            if call.state in ("calling", "ringing", "connected"):
                return call
        raise RuntimeError(f"{self.number} has no call in progress")

    def _ringing(self) -> PstnCall:
        for call in self.calls:
            if call.direction == "inbound" and call.state == "ringing":
                return call
        raise RuntimeError(f"no call is ringing on {self.number}")

    def __repr__(self) -> str:
        return f"<PstnPhoneAgent {self.number} {self.behaviour.mode}>"


class PstnCarrier:
    """The carrier node: phones call out through it and the SBC's calls come in to it."""

    def __init__(
        self,
        topology: Topology,
        node: Node,
        sbc_address: Address,
        *,
        transport: TransportName = "udp",
        media_host: str | None = None,
    ) -> None:
        self.topology = topology
        self.node = node
        self.ua: UserAgent = node.stack  # type: ignore[assignment]
        self.sbc_address = sbc_address
        self.transport: TransportName = transport
        self.host = topology.pstn.address
        self.media_host = media_host or self.host
        self.phones: dict[str, PstnPhoneAgent] = {
            p.number: PstnPhoneAgent(p, self) for p in topology.pstn.phones
        }
        self.calls: list[PstnCall] = []
        self.unknown: list[Request] = []
        self._by_ref: dict[int, PstnCall] = {}
        self._session = 5000
        node.on_event = self.on_event

    def phone(self, number: str) -> PstnPhoneAgent:
        """The phone with this number (KeyError when the topology has none)."""
        return self.phones[number]

    def now(self) -> float:
        return self.node.now()

    def _later(self, delay: float, fn: Callable[[], None]) -> Cancellable:
        return self.node.call_later(delay, fn)

    def _sdp(self, call: PstnCall, direction: Direction = Direction.SENDRECV) -> bytes:
        return pstn_sdp(
            self.media_host,
            40000 + 2 * (call.session % 10000),
            call.session,
            direction=direction,
            version=call.sdp_version,
        )

    # -- outbound -----------------------------------------------------------------------------------
    def place(
        self, phone: PstnPhoneAgent, to_number: str, headers: tuple[tuple[str, str], ...] = ()
    ) -> PstnCall:
        self._session += 1
        sbc_host, sbc_port = self.sbc_address
        host = f"[{sbc_host}]" if ":" in sbc_host else sbc_host
        ruri = f"sip:{to_number}@{host}:{sbc_port};user=phone"
        ref = self.ua.invite(
            ruri,
            from_=f"<sip:{phone.number}@{self.host};user=phone>",
            to=f"<sip:{to_number}@{host};user=phone>",
            remote=self.sbc_address,
            transport=self.transport,
            sdp=pstn_sdp(self.media_host, 40000 + 2 * (self._session % 10000), self._session),
            headers=headers,
            now=self.now(),
        )
        call = PstnCall(phone.number, "outbound", ref, to_number, self.now(), session=self._session)
        self._track(phone, call)
        self.node.poke()
        return call

    def replace(self, phone: PstnPhoneAgent, old: PstnCall) -> PstnCall:
        """Call the party of ``old`` again from ``phone`` with ``Replaces`` naming ``old``'s
        dialog (RFC 3891 §3: the recipient's local tag is the ``to-tag``); the SBC answers the
        new call and ends ``old``."""
        dialog = self.ua.dialog_id(old.ref)
        if dialog is None or old.state != "connected":
            raise RuntimeError(f"the call of {old.phone} is not connected: nothing to replace")
        return self.place(phone, old.remote_number, (("Replaces", replaces_value(dialog)),))

    def _track(self, phone: PstnPhoneAgent, call: PstnCall) -> None:
        phone.calls.append(call)
        self.calls.append(call)
        self._by_ref[call.ref.id] = call

    # -- verbs ---------------------------------------------------------------------------------------
    def answer(self, call: PstnCall) -> None:
        if call.state != "ringing":
            return
        self._cancel_timer(call)
        self.ua.respond(call.ref, 200, sdp=self._sdp(call), now=self.now())
        call.responses.append((self.now(), 200, None))
        call.final_status = 200
        call.state = "connected"
        self.node.poke()

    def reject(self, call: PstnCall, status: int) -> None:
        if call.state != "ringing":
            return
        self._cancel_timer(call)
        self.ua.respond(call.ref, status, now=self.now())
        call.responses.append((self.now(), status, None))
        call.final_status = status
        call.state = "failed"
        call.ended_at = self.now()
        self.node.poke()

    def hang_up(self, call: PstnCall) -> None:
        self._cancel_timer(call)
        now = self.now()
        try:
            if call.state in ("calling", "ringing") and call.direction == "outbound":
                self.ua.cancel(call.ref, now)
            elif call.state == "ringing":
                self.ua.respond(call.ref, 480, now=now)
                call.state = "failed"
            else:
                self.ua.bye(call.ref, now)
                call.state = "ended"
                call.end_reason = "local-bye"
                call.ended_at = now
        except LocalProtocolError:
            pass
        self.node.poke()

    def hold(self, call: PstnCall, on_hold: bool) -> None:
        call.on_hold = on_hold
        direction = Direction.SENDONLY if on_hold else Direction.SENDRECV
        call.sdp_version += 1  # RFC 3264 §8: a changed offer has a new version
        self.ua.reinvite(call.ref, self._sdp(call, direction), now=self.now())
        self.node.poke()

    def _cancel_timer(self, call: PstnCall) -> None:
        if call.timer is not None:
            call.timer.cancel()
            call.timer = None

    # -- events -----------------------------------------------------------------------------------------
    def on_event(self, event: object) -> None:
        now = self.now()
        match event:
            case IncomingCall(call=ref, request=request):
                self._incoming(ref, request)
            case CallProgress(call=ref, status=status, response=response, sdp=sdp):
                call = self._by_ref.get(ref.id)
                if call is not None:
                    call.responses.append((now, status, response.to.tag))
                    if status > 100 and call.state == "calling":
                        call.state = "ringing"
                    if sdp:
                        call.remote_sdp = sdp
            case CallEstablished(call=ref, sdp=sdp, message=message):
                call = self._by_ref.get(ref.id)
                if call is not None:
                    if call.direction == "outbound":
                        call.responses.append((now, 200, message.to.tag))
                        call.final_status = 200
                    if sdp:
                        call.remote_sdp = sdp
                    call.state = "connected"
                    call.established_at = now
            case CallFailed(call=ref, status=status, response=response):
                call = self._by_ref.pop(ref.id, None)
                if call is not None:
                    call.responses.append((now, status, response.to.tag if response else None))
                    call.final_status = status
                    call.state = "failed"
                    call.ended_at = now
            case CallCancelled(call=ref):
                call = self._by_ref.pop(ref.id, None)
                if call is not None:
                    self._cancel_timer(call)
                    call.state = "ended"
                    call.end_reason = "cancelled"
                    call.ended_at = now
            case CallEnded(call=ref, reason=reason):
                call = self._by_ref.pop(ref.id, None)
                if call is not None and call.state != "ended":
                    call.state = "ended"
                    call.end_reason = reason
                    call.ended_at = now
            case ReinviteReceived(call=ref, sdp=sdp, hold=hold):
                call = self._by_ref.get(ref.id)
                if call is not None:
                    call.reinvites.append((now, hold))
                    if sdp:
                        call.remote_sdp = sdp
            case _:
                pass

    def _incoming(self, ref: CallRef, request: Request) -> None:
        now = self.now()
        uri = request.uri
        number = uri.user if isinstance(uri, SipUri) else None
        phone = self.phones.get(number or "")
        if phone is None:
            self.unknown.append(request)
            self.ua.respond(ref, 404, now=now)
            return
        try:
            caller_uri = request.from_.uri
            caller = caller_uri.user if isinstance(caller_uri, SipUri) and caller_uri.user else ""
        except LocalProtocolError:
            caller = ""
        self._session += 1
        call = PstnCall(
            phone.number,
            "inbound",
            ref,
            caller,
            now,
            state="ringing",
            request=request,
            session=self._session,
        )
        if request.body:
            call.remote_sdp = request.body
        self._track(phone, call)
        self.ua.respond(ref, 180, now=now)
        call.responses.append((now, 180, None))
        mode = phone.behaviour.mode
        delay = phone.behaviour.delay_seconds
        if mode == "answer":
            call.timer = self._later(delay, lambda: self.answer(call))
        elif mode == "busy":
            call.timer = self._later(delay, lambda: self.reject(call, 486))
        elif mode == "decline":
            call.timer = self._later(delay, lambda: self.reject(call, 603))
        elif mode == "dnd":
            call.timer = self._later(0.0, lambda: self.reject(call, 480))

    @staticmethod
    def sdp_direction(body: bytes | None) -> Direction | None:
        """The direction of the first stream of an SDP body (for checks)."""
        if not body:
            return None
        sdp = SessionDescription.parse(body)
        return sdp.effective_direction(sdp.media[0]) if sdp.media else None
