"""The Microsoft side of Direct Routing: three SIP proxies and the service behind them.

Each :class:`TeamsProxy` is one of ``sip``/``sip2``/``sip3.pstnhub.microsoft.com``: its own node,
UA and TLS listener (Part 6.1 [DOC]: three FQDNs on distinct addresses; Part 7.2 [DOC]: TLS on
5061 only).  What they share — tenants, trunk health, calls, Teams users — lives in one
:class:`DirectRoutingService`, as it does in Microsoft's cloud where any datacenter may carry any
leg of a call.

Every rule below cites its part of direct-routing-sip.md and its grade; where the doc leaves a
choice the behaviour reads :class:`~sbcsim.endpoints.microsoft.MicrosoftSettings`.  Everything a
check might judge is recorded: :attr:`DirectRoutingService.records` (one :class:`CallRecord` per
SIP call leg with the SBC: what arrived, which tenant matched and how, which rules failed, which
responses went out), :attr:`DirectRoutingService.options` (every OPTIONS exchange) and
:meth:`DirectRoutingService.trunk_health`.

Scenarios make a proxy misbehave on purpose through :meth:`TeamsProxy.force_response` (busy
datacenter: 503 + Retry-After) and :meth:`TeamsProxy.go_silent` (a datacenter that does not answer).
"""

from __future__ import annotations

import base64
import contextlib
import re
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import structlog

from sbcsim.dialog import (
    CallCancelled,
    CallEnded,
    CallEstablished,
    CallFailed,
    CallProgress,
    CallRef,
    IncomingCall,
    IncomingRequest,
    ReferProgress,
    ReinviteReceived,
    RequestCompleted,
    RequestRef,
    SessionTimerConfig,
    StandaloneCompleted,
    UserAgent,
)
from sbcsim.endpoints.microsoft import MICROSOFT_ALLOW, MicrosoftSettings
from sbcsim.endpoints.teams_users import Alert, TeamsUserAgent, mri_of
from sbcsim.errors import LocalProtocolError, ProtocolError, TransportError
from sbcsim.ids import IdGenerator
from sbcsim.net.base import Address, PeerInfo, TransportLayer, TransportName
from sbcsim.net.names import name_matches
from sbcsim.node import Cancellable, Node
from sbcsim.presence.model import PresenceService
from sbcsim.sip.message import Request, Response
from sbcsim.sip.policy import UasPolicy
from sbcsim.sip.sdp import Direction, SessionDescription
from sbcsim.sip.uri import SipUri
from sbcsim.topology import CallQueue, Tenant, Topology
from sbcsim.transaction.timers import TimerConfig

__all__ = [
    "CallRecord",
    "DirectRoutingService",
    "MsCall",
    "OptionsExchange",
    "SbcLeg",
    "TeamsProxy",
    "TransferRecord",
    "TrunkAttempt",
    "TrunkHealth",
    "media_processor_sdp",
    "teams_offer_sdp",
]

log = structlog.get_logger("sbcsim.microsoft")

Scheduler = Callable[[float, Callable[[], None]], Cancellable]
Resolver = Callable[[str], Address | None]

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_TAG = re.compile(rb";\s*tag=[^;>,\s]*", re.IGNORECASE)
# Part 8.2 [DOC]: codecs between the SBC and the Media Processor.
_MP_CODECS = {"0": "PCMU/8000", "8": "PCMA/8000", "9": "G722/8000", "18": "G729/8000"}


# ==============================================================================================
# records: what checks judge
# ==============================================================================================
@dataclass(eq=False)
class TransferRecord:
    """One transfer a Teams user started (Part 5)."""

    method: Literal["refer", "internal", "replaces"]
    transferor: str
    target: str
    started_at: float
    refer_to: str | None = None
    referred_by: str | None = None
    x_ti: str | None = None
    refer_status: int | None = None
    notifies: list[tuple[float, int, str]] = field(default_factory=list)
    new_invite_at: float | None = None
    referred_by_ok: bool | None = None
    outcome: Literal["pending", "completed", "failed"] = "pending"
    old_leg_bye_at: float | None = None


@dataclass(eq=False)
class TrunkAttempt:
    """One INVITE of an outbound hunt: which trunk, from which proxy, and how it ended."""

    trunk_fqdn: str
    proxy: str
    started_at: float
    status: int | None = None
    reason: str = ""
    ended_at: float | None = None
    failover: Literal["code", "timer", "network", ""] = ""


@dataclass(eq=False)
class CallRecord:
    """One SIP call leg between a proxy and the SBC, as a check sees it."""

    id: int
    direction: Literal["inbound", "outbound"]
    proxy: str
    started_at: float
    call_id: str = ""
    request: Request | None = None
    peer: PeerInfo | None = None
    contact_fqdn: str | None = None
    certificate_names: tuple[str, ...] = ()
    tenant: str | None = None
    tenant_matched_by: Literal["fqdn", "parent-domain"] | None = None
    trunk_fqdn: str | None = None
    number: str | None = None
    target: str | None = None
    purpose: str = "call"
    failed_rules: list[str] = field(default_factory=list)
    sent: list[tuple[float, int, str | None]] = field(default_factory=list)
    received: list[tuple[float, int]] = field(default_factory=list)
    final_status: int | None = None
    refer_allowed: bool | None = None
    established_at: float | None = None
    ended_at: float | None = None
    end_reason: str | None = None
    history_info: tuple[str, ...] = ()
    attempts: list[TrunkAttempt] = field(default_factory=list)
    notes: list[tuple[float, str]] = field(default_factory=list)

    @property
    def to_tags(self) -> list[str]:
        """The distinct To-tags of the responses sent, in order (one per fork)."""
        return list(dict.fromkeys(tag for _, _, tag in self.sent if tag))


@dataclass(frozen=True, slots=True)
class OptionsExchange:
    """One OPTIONS: ``inbound`` from the SBC (with our answer) or ``outbound`` (with its)."""

    time: float
    proxy: str
    direction: Literal["inbound", "outbound"]
    fqdn: str | None
    status: int | None
    connection_id: int | None = None
    failed_rule: str | None = None


@dataclass(frozen=True, slots=True)
class TrunkHealth:
    """The health of a trunk as Direct Routing computes it (Part 1.3 [DOC]).

    ``state`` follows the Health Dashboard (Part 1.1 S9): ``Active`` (OPTIONS flowing),
    ``Warning, no SIP options`` (never seen, or not lately).
    """

    trunk_fqdn: str
    health_of: str
    last_options: float | None
    healthy: bool
    demoted: bool
    regions: tuple[str, ...]

    @property
    def state(self) -> str:
        return "Active" if self.healthy else "Warning, no SIP options"


# ==============================================================================================
# SDP of the Media Processor (Parts 3.1, 8.1)
# ==============================================================================================
def _key(seed: int) -> str:
    raw = bytes((seed * 7 + i * 31) % 256 for i in range(30))
    return base64.b64encode(raw).decode()


def teams_offer_sdp(address: str, port: int, session: int, version: int = 1) -> bytes:
    """Microsoft's SDES offer toward the SBC: RTP/SAVP, two crypto lines (``_32`` then
    ``_80``, Part 8.1 [INF] from S3), ``a=rtcp`` and ``a=rtcp-mux``."""
    return (
        f"v=0\r\no=- {session} {version} IN IP4 {address}\r\ns=session\r\nc=IN IP4 {address}\r\n"
        f"t=0 0\r\nm=audio {port} RTP/SAVP 9 0 8 13 101\r\n"
        f"a=crypto:0 AES_CM_128_HMAC_SHA1_32 inline:{_key(session)}|2^31\r\n"
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{_key(session + 1)}|2^31\r\n"
        f"a=rtcp:{port}\r\na=rtcp-mux\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:8 PCMA/8000\r\na=rtpmap:13 CN/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
    ).encode()


def media_processor_sdp(
    offer: SessionDescription | None,
    address: str,
    port: int,
    session: int,
    *,
    version: int = 1,
    direction: Direction = Direction.SENDRECV,
) -> bytes:
    """The Media Processor's answer to the SBC's offer (Part 2.3 [DOC]: "the SDP from the client
    replaced by the SDP from the Media Processor"; Part 8.1 [DOC]: SDES, rtcp-mux).

    It keeps the first offered codec the Media Processor supports, telephone-event and CN when
    offered, and echoes the tag of the offered ``AES_CM_128_HMAC_SHA1_80`` crypto line (else the
    first one) with its own key.
    """
    codec, extra, tag, suite = "0", [], 1, "AES_CM_128_HMAC_SHA1_80"
    if offer is not None and offer.media:
        media = offer.media[0]
        codec = next((f for f in media.formats if f in _MP_CODECS), "0")
        for fmt in media.formats:
            rtpmap = media.rtpmap_for(fmt)
            name = rtpmap.encoding.lower() if rtpmap is not None else ""
            if name in ("telephone-event", "cn") or (rtpmap is None and fmt == "13"):
                extra.append((fmt, rtpmap))
        cryptos = media.cryptos
        chosen = next((c for c in cryptos if c.suite == suite), cryptos[0] if cryptos else None)
        if chosen is not None:
            tag, suite = chosen.tag, chosen.suite
    formats = " ".join([codec, *(f for f, _ in extra)])
    lines = [
        "v=0",
        f"o=- {session} {version} IN IP4 {address}",
        "s=session",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/SAVP {formats}",
        f"a=crypto:{tag} {suite} inline:{_key(session)}|2^31",
        f"a=rtcp:{port}",
        "a=rtcp-mux",
        f"a=rtpmap:{codec} {_MP_CODECS[codec]}",
    ]
    for fmt, rtpmap in extra:
        if rtpmap is not None:
            lines.append(f"a=rtpmap:{fmt} {rtpmap.encoding}/{rtpmap.clock_rate}")
            if rtpmap.encoding.lower() == "telephone-event":
                lines.append(f"a=fmtp:{fmt} 0-16")
    lines += ["a=ptime:20", f"a={direction.value}"]
    return ("\r\n".join(lines) + "\r\n").encode()


def _offer_problem(body: bytes, bypass: bool) -> tuple[int, str, str] | None:
    """Why an SBC offer is refused: (status, rule, Microsoft diagnostic), or None."""
    try:
        sdp = SessionDescription.parse(body)
        audio = [m for m in sdp.media if m.media == "audio" and m.port != 0]
    except ProtocolError:
        return 488, "sdp-unparsable", "531000 SdpParsingFailure"
    if not audio:
        return 488, "no-audio", "531000 CannotSupportAnyMedia"
    media = audio[0]
    conn = sdp.effective_connection(media)
    if conn is not None and conn.host in ("0.0.0.0", "::"):
        # Part 8.4 [DOC] + [SUP] 531052: "Cannot negotiate a new modality with blackhole media".
        return 488, "blackhole-media", "531052 Cannot negotiate a new modality with blackhole media"
    if "SAVP" not in media.proto.upper() or not media.cryptos:
        # Part 8.1 [SUP]: 531000 / 488 SrtpEncryptionRequired.
        return 488, "srtp-required", "531000 SrtpEncryptionRequired"
    if not any(f in _MP_CODECS for f in media.formats):
        return 488, "no-common-codec", "531000 CannotSupportAnyMedia"
    if bypass and not media.candidates:
        # Part 2.5 [SUP]: 531027 no ICE candidates in a bypass offer.
        return 488, "no-ice-candidates", "531027 There are no ICE candidates in the SDP"
    return None


def _one_way(body: bytes | None) -> bool:
    if not body:
        return False
    try:
        sdp = SessionDescription.parse(body)
    except ProtocolError:
        return False
    return any(
        sdp.effective_direction(m) in (Direction.SENDONLY, Direction.RECVONLY) for m in sdp.media
    )


def _blackhole(body: bytes | None) -> bool:
    if not body:
        return False
    try:
        sdp = SessionDescription.parse(body)
    except ProtocolError:
        return False
    for m in sdp.media:
        conn = sdp.effective_connection(m)
        if conn is not None and conn.host in ("0.0.0.0", "::"):
            return True
    return False


# ==============================================================================================
# the wire: Microsoft's spelling, silence, and closing a refused connection
# ==============================================================================================
class _Closable(Protocol):
    def close_connection(self, connection_id: int) -> bool: ...


def microsoft_wire_style(data: bytes, *, uppercase: bool, strip_options_tag: bool) -> bytes:
    """Rewrite one outgoing message the way Microsoft's proxy writes it (Part 1.2 [OBS]): header
    names in upper case, and no To-tag on a 2xx to OPTIONS."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    options_2xx = strip_options_tag and lines[0].startswith(b"SIP/2.0 2")
    if options_2xx:
        options_2xx = any(
            ln.partition(b":")[0].strip().lower() == b"cseq" and ln.rstrip().endswith(b"OPTIONS")
            for ln in lines[1:]
        )
    out = [lines[0]]
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            if options_2xx and name.strip().lower() in (b"to", b"t"):
                value = _TAG.sub(b"", value)
            if uppercase:
                name = name.upper()
        out.append(name + colon + value)
    return b"\r\n".join(out) + sep + body


class _Wire:
    """The proxy's transport: Microsoft's wire style, plus the fault switches."""

    def __init__(self, proxy: TeamsProxy) -> None:
        self.proxy = proxy
        self.inner: TransportLayer | None = None

    def send(
        self,
        data: bytes,
        remote: Address,
        transport: TransportName,
        *,
        server_name: str | None = None,
        connection_id: int | None = None,
    ) -> None:
        if self.proxy.silent or self.inner is None:
            return
        if connection_id is not None and self.proxy.refused(connection_id):
            # Part 1.1 [SUP] step 2: a refused connection is closed and its messages are not
            # processed; nothing goes back for them (the UA core's automatic 100 Trying would
            # otherwise take another connection to the Via address).
            return
        settings = self.proxy.service.settings
        data = microsoft_wire_style(
            data,
            uppercase=settings.uppercase_headers,
            strip_options_tag=not settings.options_200_to_tag,
        )
        if settings.in_dialog_from_other_proxy and _in_dialog_request(data):
            sibling = self.proxy.service.sibling(self.proxy)
            if sibling is not None and sibling.wire.inner is not None:
                # Part 2.4 [SUP]: a new in-dialog request "can come from any of the IP
                # addresses by using new TLS connection"; the answer comes back to the
                # sibling, which hands it over by the Via address (see _FrontDoor).
                sibling.wire.inner.send(data, remote, transport, server_name=server_name)
                return
        self.inner.send(
            data, remote, transport, server_name=server_name, connection_id=connection_id
        )

    def close_connection(self, connection_id: int) -> bool:
        inner: Any = self.inner
        closer: _Closable | None = inner if hasattr(inner, "close_connection") else None
        return closer.close_connection(connection_id) if closer is not None else False

    def close(self) -> None:
        if self.inner is not None:
            self.inner.close()


def _in_dialog_request(data: bytes) -> bool:
    """A request with a To-tag (inside a dialog), judged on the raw bytes."""
    if data.startswith(b"SIP/2.0 "):
        return False
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() in (b"to", b"t"):
            return b";tag=" in value.lower()
    return False


class _FrontDoor:
    """The stack a proxy's node drives: the UA, behind Microsoft's first checks.

    Part 2.1 [DOC]: "Direct Routing will reject SIP requests that have Replaces headers".  The
    UA core would judge the Replaces itself (481 for an unknown dialog) before the proxy sees the
    INVITE, so the header is taken off here and the proxy rejects the call with
    ``replaces_rejection_status``.  A silent proxy reads nothing.
    """

    def __init__(self, proxy: TeamsProxy, ua: UserAgent) -> None:
        self.proxy = proxy
        self.ua = ua
        self.replaces_seen: dict[tuple[str, str, int], str] = {}

    def receive(self, message: Request | Response, peer: PeerInfo, now: float) -> None:
        if self.proxy.silent:
            return
        if isinstance(message, Response):
            owner = self.proxy.service.proxy_by_via(message, self.proxy)
            if owner is not None:
                # A response to a request a sibling sent from this proxy's address.
                owner.front.ua.receive(message, peer, now)
                owner.node.flush()
                return
        if (
            isinstance(message, Request)
            and message.method == "INVITE"
            and "replaces" in message.headers
        ):
            try:
                key = (message.call_id, message.from_.tag or "", message.cseq.seq)
                in_dialog = message.to.tag is not None
            except ProtocolError:
                key, in_dialog = ("", "", 0), True
            if not in_dialog:
                value = message.headers.get("Replaces") or ""
                message = message.copy()
                message.headers.remove("Replaces")
                self.replaces_seen[key] = value
        self.ua.receive(message, peer, now)

    def transport_error(
        self, remote: Address, transport: TransportName, exc: TransportError, now: float
    ) -> None:
        self.ua.transport_error(remote, transport, exc, now)

    def handle_timer(self, now: float) -> None:
        self.ua.handle_timer(now)

    def get_timer(self) -> float | None:
        return self.ua.get_timer()

    def messages_to_send(self) -> list[Any]:
        return self.ua.messages_to_send()

    def next_events(self) -> list[Any]:
        return self.ua.next_events()


# ==============================================================================================
# calls
# ==============================================================================================
@dataclass(eq=False)
class SbcLeg:
    """One SIP dialog between a proxy and the SBC, as part of a :class:`MsCall`."""

    proxy: TeamsProxy
    ref: CallRef
    direction: Literal["inbound", "outbound"]
    record: CallRecord
    tenant: Tenant
    trunk_fqdn: str
    remote_number: str
    call: MsCall | None = None
    state: Literal["setup", "early", "answered", "connected", "ended", "failed"] = "setup"
    refer_allowed: bool = False
    on_hold: bool = False
    sdp_version: int = 1
    session: int = 0
    offer: SessionDescription | None = None
    early_sent: bool = False
    abandoned: bool = False
    dial: Dial | None = None
    timer: Cancellable | None = None
    #: Where the leg's media goes when not the default Media Processor (the conference
    #: instance after an escalation); later re-INVITEs (hold, resume) keep it.
    media_address: str | None = None

    def sdp(
        self, direction: Direction = Direction.SENDRECV, *, address: str | None = None
    ) -> bytes:
        """This leg's Media Processor SDP (the same session, a new version each change)."""
        settings = self.proxy.service.settings
        return media_processor_sdp(
            self.offer,
            address or self.media_address or settings.media_processor_address,
            settings.media_processor_port + 2 * (self.session % 2000),
            self.session,
            version=self.sdp_version,
            direction=direction,
        )


@dataclass(eq=False)
class MsCall:
    """A call inside Microsoft: the SBC legs and Teams users it joins, and who still rings."""

    id: int
    tenant: Tenant
    caller: str
    called: str
    legs: list[SbcLeg] = field(default_factory=list)
    users: list[TeamsUserAgent] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dials: list[Dial] = field(default_factory=list)
    state: Literal["ringing", "connected", "ended", "failed"] = "ringing"
    primary: TeamsUserAgent | None = None
    queue: CallQueue | None = None
    conference: bool = False
    history: list[str] = field(default_factory=list)
    rejection: int | None = None
    forward_timer: Cancellable | None = None
    transfer: TransferRecord | None = None
    placed_by: TeamsUserAgent | None = None

    @property
    def inbound(self) -> SbcLeg | None:
        """The SBC leg that brought the call in, when it came from the SBC."""
        return next((leg for leg in self.legs if leg.direction == "inbound"), None)

    def live_legs(self) -> list[SbcLeg]:
        return [leg for leg in self.legs if leg.state not in ("ended", "failed")]


class Dial:
    """Microsoft calling a number through the SBC: trunk hunting (Parts 3.1, 3.3, 6.3 [DOC]).

    Trunks are tried in the service's order (healthy ones shuffled, demoted ones last); a
    network failure retries the same trunk from the next datacenter, a code in
    ``FailoverResponseCodes`` or the ``FailoverTimeSeconds`` timer moves on to the next trunk,
    any other 4xx/6xx ends the hunt ("the call is considered completed").
    """

    def __init__(
        self,
        service: DirectRoutingService,
        call: MsCall,
        number: str,
        caller: str,
        *,
        purpose: str,
        headers: Sequence[tuple[str, str]] = (),
        anonymous: bool = False,
        on_progress: Callable[[Dial, int], None] | None = None,
        on_answer: Callable[[Dial, SbcLeg], None] | None = None,
        on_failure: Callable[[Dial, int], None] | None = None,
    ) -> None:
        self.service = service
        self.call = call
        self.number = number
        self.caller = caller
        self.purpose = purpose
        self.headers = tuple(headers)
        self.anonymous = anonymous
        self.on_progress = on_progress
        self.on_answer = on_answer
        self.on_failure = on_failure
        self.trunks = service.hunt_order(call.tenant)
        self.trunk_index = 0
        self.proxy_index = 0
        self.leg: SbcLeg | None = None
        self.attempt: TrunkAttempt | None = None
        self.record: CallRecord | None = None
        self.state: Literal["dialing", "answered", "failed", "cancelled"] = "dialing"
        self.final_status: int | None = None

    def start(self) -> None:
        if not self.trunks:
            self._fail(480)
            return
        self._send()

    def cancel(self) -> None:
        """Stop hunting; CANCEL (or BYE) whatever is in progress."""
        if self.state != "dialing":
            return
        self.state = "cancelled"
        self._stop_timer()
        leg = self.leg
        if leg is not None and not leg.abandoned:
            leg.abandoned = True
            self.service.end_leg(leg, "cancelled")

    def _send(self) -> None:
        trunk = self.trunks[self.trunk_index]
        proxies = self.service.proxy_order(trunk)
        proxy = proxies[self.proxy_index % len(proxies)]
        leg = proxy.dial(self, trunk)
        self.leg = leg
        self.attempt = TrunkAttempt(trunk, proxy.fqdn, self.service.now())
        if self.record is None:
            self.record = leg.record
        elif leg.record is not self.record:
            leg.record.attempts = self.record.attempts
        self.record.attempts.append(self.attempt)
        timeout = self.service.topology.trunk_settings(self.call.tenant).failover_time_seconds
        leg.timer = self.service.schedule(float(timeout), self._timer_expired)

    def _stop_timer(self) -> None:
        if self.leg is not None and self.leg.timer is not None:
            self.leg.timer.cancel()
            self.leg.timer = None

    def _timer_expired(self) -> None:
        # Part 3.1 [DOC] FailoverTimeSeconds; [SUP] 500001 / 408 failover timer expired.
        leg = self.leg
        if self.state != "dialing" or leg is None:
            return
        leg.timer = None
        if self.attempt is not None:
            self.attempt.failover = "timer"
            self.attempt.status = 408
            self.attempt.reason = "500001 Gateway (SBC) failover timer expired"
            self.attempt.ended_at = self.service.now()
        leg.abandoned = True
        self.service.end_leg(leg, "failover-timer")
        self._next_trunk(408)

    def progress(self, leg: SbcLeg, status: int) -> None:
        if leg is not self.leg or self.state != "dialing":
            return
        if self.service.settings.failover_timer_stops_on == "provisional" and status > 100:
            self._stop_timer()
        if self.on_progress is not None:
            self.on_progress(self, status)

    def answered(self, leg: SbcLeg) -> None:
        if leg is not self.leg:
            return
        self._stop_timer()
        if self.state != "dialing":
            self.service.end_leg(leg, "late-answer")
            return
        self.state = "answered"
        if self.attempt is not None:
            self.attempt.status = 200
            self.attempt.ended_at = self.service.now()
        if self.on_answer is not None:
            self.on_answer(self, leg)

    def failed(self, leg: SbcLeg, status: int, network: bool) -> None:
        if leg is not self.leg or self.state != "dialing" or leg.abandoned:
            return
        self._stop_timer()
        attempt = self.attempt
        if attempt is not None:
            attempt.status = status
            attempt.ended_at = self.service.now()
        codes = self.service.topology.trunk_settings(self.call.tenant).failover_response_codes
        if network:
            # Part 3.3 [DOC]: a trunk that cannot be connected is tried from another datacenter.
            if attempt is not None:
                attempt.failover = "network"
            self.proxy_index += 1
            if self.proxy_index < len(self.service.proxy_order(self.trunks[self.trunk_index])):
                self._send()
                return
            self._next_trunk(504)
            return
        redirect = 300 <= status < 400 and self.service.settings.redirect_handling == "failover"
        if status in codes or redirect:
            if attempt is not None:
                attempt.failover = "code"
            self._next_trunk(status)
            return
        self._fail(status)  # Part 3.3 [DOC]: any other 4xx/6xx completes the call

    def _next_trunk(self, status: int) -> None:
        self.trunk_index += 1
        self.proxy_index = 0
        if self.trunk_index < len(self.trunks):
            self._send()
        else:
            self._fail(status)

    def _fail(self, status: int) -> None:
        self.state = "failed"
        self.final_status = status
        if self.on_failure is not None:
            self.on_failure(self, status)


# ==============================================================================================
# a proxy
# ==============================================================================================
class TeamsProxy:
    """One of Microsoft's Direct Routing SIP proxies (one FQDN, one address, TLS 5061)."""

    def __init__(
        self,
        service: DirectRoutingService,
        index: int,
        fqdn: str,
        address: str,
        port: int,
        *,
        clock_now: Callable[[], float],
        call_at: Callable[[float, Callable[[], None]], Cancellable],
        ids: IdGenerator,
        rand: Callable[[], float],
    ) -> None:
        self.service = service
        self.index = index
        self.fqdn = fqdn
        self.address = address
        self.port = port
        self.silent = False
        self.forced: tuple[int, int | None, frozenset[str]] | None = None
        self.legs: dict[int, SbcLeg] = {}
        self.pingers: dict[str, Cancellable | None] = {}
        self.pingers_pending: dict[int, str] = {}
        self.closed_connections: list[tuple[float, int, str]] = []
        settings = service.settings
        bypass = service.topology.carrier.settings.media_bypass
        methods = ["INVITE", "ACK", "OPTIONS", "CANCEL", "BYE", "NOTIFY"]
        if settings.update_rejection_status is None:
            methods.append("UPDATE")
        host = f"[{address}]" if ":" in address else address
        self.ua = UserAgent(
            ids=ids,
            random=rand,
            contact=SipUri(host=fqdn, port=port, params=(("transport", "tls"),)),
            sent_by=f"{host}:{port}",
            transport="tls",
            timers=TimerConfig(),
            policy=UasPolicy(allowed_methods=tuple(methods), answer_types={}),
            # Part 3.1/6.4 [DOC]: the session timer is offered on non-bypass calls only.
            session_timer=SessionTimerConfig(
                enabled=not bypass,
                session_expires=settings.session_expires,
                min_se=settings.min_se,
                refresher="uac",
            ),
            user_agent=settings.server_header(index),
            allow=(MICROSOFT_ALLOW,),
            supported=("timer",),
            name=fqdn,
            app_answers=("OPTIONS", "INVITE"),
            resolve=self._resolve,
        )
        self.front = _FrontDoor(self, self.ua)
        self.wire = _Wire(self)
        self.node = Node(fqdn, self.front, _ClockAdapter(clock_now), call_at, on_event=self._event)
        self.node.attach(self.wire)

    def attach_transport(self, transport: TransportLayer) -> None:
        """Connect the proxy to its (memory or live) transport."""
        self.wire.inner = transport

    # -- fault modes ---------------------------------------------------------------------------
    def force_response(
        self,
        status: int,
        *,
        retry_after: int | None = None,
        methods: Sequence[str] = ("INVITE",),
    ) -> None:
        """Answer every new request of ``methods`` with ``status`` (and ``Retry-After``)."""
        self.forced = (status, retry_after, frozenset(m.upper() for m in methods))

    def busy_mode(self) -> None:
        """Part 6.2 [DOC]: a busy datacenter answers INVITEs with 503 and ``Retry-After: 1``."""
        self.force_response(503, retry_after=self.service.settings.busy_retry_after)

    def go_silent(self) -> None:
        """Read and send nothing (a datacenter that does not answer: the SBC times out)."""
        self.silent = True

    def recover(self) -> None:
        """Back to normal service."""
        self.silent = False
        self.forced = None

    # -- plumbing ---------------------------------------------------------------------------------
    def _resolve(self, uri: SipUri, transport: TransportName) -> Address | None:
        if uri.host_is_ip:
            return None
        found = self.service.resolve(uri.host)
        if found is None:
            return None
        return (found[0], uri.port or found[1])

    def _event(self, event: object) -> None:
        self.service.on_event(self, event)
        # What this event made other proxies send (a hunt moving to the next datacenter, a
        # transfer's leg on another proxy) goes out now; this proxy's node flushes itself.
        self.service.flush()

    def poke(self) -> None:
        self.node.poke()

    def close_connection(self, peer: PeerInfo, why: str) -> None:
        """Drop the TLS connection a refused message came on (Part 12.1 [SUP]: "close or reset")."""
        if peer.connection_id is not None and self.wire.close_connection(peer.connection_id):
            self.closed_connections.append((self.service.now(), peer.connection_id, why))

    def refused(self, connection_id: int) -> bool:
        """Whether this proxy closed ``connection_id`` on a peer it refused."""
        return any(conn == connection_id for _, conn, _ in self.closed_connections)

    def dial(self, dial: Dial, trunk: str) -> SbcLeg:
        """Send one outbound INVITE of a hunt to ``trunk`` (Part 3.1 [DOC])."""
        service = self.service
        now = service.now()
        settings = service.settings
        tenant = dial.call.tenant
        trunk_settings = service.topology.trunk_settings(tenant)
        address = service.resolve(trunk) or ("0.0.0.0", 5061)
        port = address[1]
        # Part 3.1 [DOC]: Request-URI host = trunk FQDN; [INF] E.164 user part with user=phone.
        ruri = f"sip:{dial.number}@{trunk}:{port};user=phone;transport=tls"
        caller = dial.caller
        anonymous = dial.anonymous or (
            trunk_settings.forward_pai and settings.forward_pai_anonymous_from
        )
        if anonymous:
            from_ = "<sip:anonymous@anonymous.invalid>"
        else:
            from_ = f"<sip:{caller}@{self.fqdn}:{self.port};user=phone>"
        to = f"<sip:{dial.number}@{trunk}:{port};user=phone>"
        headers: list[tuple[str, str]] = []
        if trunk_settings.forward_pai:
            # Part 3.1 [DOC]: PAI with Privacy: id when ForwardPai is on.
            headers.append(
                ("P-Asserted-Identity", f"<sip:{caller}@{self.fqdn}:{self.port};user=phone>")
            )
            headers.append(("Privacy", "id"))
        headers += dial.headers
        session = service.next_session()
        sdp = teams_offer_sdp(
            settings.media_processor_address,
            settings.media_processor_port + 2 * (session % 2000),
            session,
        )
        ref = self.ua.invite(
            ruri,
            from_=from_,
            to=to,
            remote=address,
            transport="tls",
            sdp=sdp,
            headers=headers,
            server_name=trunk,
            now=now,
        )
        record = service.new_record("outbound", self, call_id=ref.call_id)
        record.tenant = tenant.id
        record.trunk_fqdn = trunk
        record.number = dial.number
        record.purpose = dial.purpose
        record.history_info = tuple(v for k, v in headers if k == "History-Info")
        leg = SbcLeg(
            self,
            ref,
            "outbound",
            record,
            tenant,
            trunk,
            dial.number,
            call=dial.call,
            session=session,
            dial=dial,
        )
        self.legs[ref.id] = leg
        dial.call.legs.append(leg)
        return leg

    def __repr__(self) -> str:
        state = " silent" if self.silent else (f" forced={self.forced[0]}" if self.forced else "")
        return f"<TeamsProxy {self.fqdn} {self.address}:{self.port}{state}>"


class _ClockAdapter:
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


# ==============================================================================================
# the service
# ==============================================================================================
class DirectRoutingService:
    """Microsoft's Direct Routing behind the three proxies: tenants, trunks, users, calls."""

    def __init__(
        self,
        topology: Topology,
        settings: MicrosoftSettings,
        presence: PresenceService,
        *,
        now: Callable[[], float],
        schedule: Scheduler,
        resolve: Resolver,
        rng_seed: Callable[[str], Any],
    ) -> None:
        self.topology = topology
        self.settings = settings
        self.presence = presence
        self._now = now
        self._schedule = schedule
        self.resolve = resolve
        self._rng = rng_seed("microsoft:hunting")
        self._ids = IdGenerator(rng_seed("microsoft:tags"))
        self.proxies: list[TeamsProxy] = []
        self.records: list[CallRecord] = []
        self.options: list[OptionsExchange] = []
        self.calls: list[MsCall] = []
        self.transfers: list[TransferRecord] = []
        self.users: dict[str, TeamsUserAgent] = {}
        self._by_number: dict[str, TeamsUserAgent] = {}
        self._by_mri: dict[str, TeamsUserAgent] = {}
        self._options_seen: dict[str, dict[str, float]] = {}
        self._started = now()
        self._session = 1000
        self._pending_transfers: dict[str, tuple[TransferRecord, MsCall]] = {}
        self._refer_refs: dict[int, TransferRecord] = {}
        for tenant in topology.tenants:
            for user in tenant.users:
                agent = TeamsUserAgent(user, tenant, self, presence_of=self._availability)
                self.users[user.upn] = agent
                if user.number:
                    self._by_number[user.number] = agent
                self._by_mri[mri_of(user)] = agent

    # -- clock -----------------------------------------------------------------------------
    def now(self) -> float:
        return self._now()

    def schedule(self, delay: float, fn: Callable[[], None]) -> Cancellable:
        """Run ``fn`` after ``delay`` seconds, then send what it queued on every proxy."""

        def run() -> None:
            fn()
            self.flush()

        return self._schedule(delay, run)

    def flush(self) -> None:
        for proxy in self.proxies:
            proxy.poke()

    def next_session(self) -> int:
        self._session += 1
        return self._session

    def new_tag(self) -> str:
        return self._ids.tag()

    def _availability(self, graph_id: str) -> str:
        try:
            return self.presence.presence(graph_id).availability
        except LookupError:
            return "Available"

    # -- lookups ------------------------------------------------------------------------------
    def proxy(self, fqdn: str) -> TeamsProxy:
        for proxy in self.proxies:
            if proxy.fqdn == fqdn:
                return proxy
        raise KeyError(fqdn)

    def sibling(self, proxy: TeamsProxy) -> TeamsProxy | None:
        """The next answering proxy after ``proxy`` (another datacenter)."""
        count = len(self.proxies)
        start = self.proxies.index(proxy) if proxy in self.proxies else 0
        for step in range(1, count):
            other = self.proxies[(start + step) % count]
            if not other.silent:
                return other
        return None

    def proxy_by_via(self, response: Response, receiver: TeamsProxy) -> TeamsProxy | None:
        """The proxy whose address a response's top Via names, when it is not ``receiver``."""
        try:
            host = response.top_via.host
        except ProtocolError:
            return None
        if host == receiver.address:
            return None
        return next((p for p in self.proxies if p.address == host), None)

    def user(self, upn: str) -> TeamsUserAgent:
        return self.users[upn.lower()]

    def new_record(
        self, direction: Literal["inbound", "outbound"], proxy: TeamsProxy, *, call_id: str = ""
    ) -> CallRecord:
        record = CallRecord(len(self.records) + 1, direction, proxy.fqdn, self.now(), call_id)
        self.records.append(record)
        return record

    def _new_call(self, tenant: Tenant, caller: str, called: str) -> MsCall:
        call = MsCall(len(self.calls) + 1, tenant, caller, called)
        self.calls.append(call)
        return call

    # -- health (Part 1.3 [DOC]) --------------------------------------------------------------
    def _health_key(self, fqdn: str) -> str:
        """Derived trunks take the carrier trunk's health (Part 1.1 [DOC], S7/S22)."""
        name = fqdn.lower()
        if any(t.trunk_fqdn == name for t in self.topology.tenants):
            return self.topology.carrier.trunk_fqdn
        return name

    def options_seen(self, fqdn: str, proxy: TeamsProxy) -> None:
        self._options_seen.setdefault(self._health_key(fqdn), {})[proxy.fqdn] = self.now()

    def trunk_health(self, fqdn: str, now: float | None = None) -> TrunkHealth:
        """Healthy with OPTIONS in the last 3 minutes; demoted after 5 minutes without
        (Part 1.3 [DOC]); the regions are the proxies that got OPTIONS lately."""
        at = self.now() if now is None else now
        key = self._health_key(fqdn)
        seen = self._options_seen.get(key, {})
        last = max(seen.values()) if seen else None
        reference = last if last is not None else self._started
        window = self.settings.healthy_window
        return TrunkHealth(
            trunk_fqdn=fqdn.lower(),
            health_of=key,
            last_options=last,
            healthy=last is not None and at - last <= window,
            demoted=at - reference > self.settings.demote_after,
            regions=tuple(p for p, t in seen.items() if at - t <= window),
        )

    def hunt_order(self, tenant: Tenant) -> list[str]:
        """The tenant's trunks in the order an outbound call tries them (Part 6.3 [DOC]):
        drained trunks skipped, healthy ones shuffled (Fisher-Yates), demoted ones last."""
        routes = self.settings.voice_routes.get(tenant.id) or (tenant.trunk_fqdn,)
        if not self.topology.trunk_settings(tenant).enabled:
            return []
        healthy: list[str] = []
        others: list[str] = []
        demoted: list[str] = []
        for trunk in routes:
            health = self.trunk_health(trunk)
            (healthy if health.healthy else demoted if health.demoted else others).append(trunk)
        if self.settings.shuffle_trunks:
            for group in (healthy, others):
                for i in range(len(group) - 1, 0, -1):
                    j = self._rng.randint(0, i)
                    group[i], group[j] = group[j], group[i]
        return healthy + others + demoted

    def proxy_order(self, trunk: str) -> list[TeamsProxy]:
        """Datacenters to reach ``trunk`` from: those it pings first (Part 1.3 [DOC])."""
        regions = set(self.trunk_health(trunk).regions)
        live = [p for p in self.proxies if not p.silent]
        pool = live or self.proxies
        return [p for p in pool if p.fqdn in regions] + [p for p in pool if p.fqdn not in regions]

    # -- events -----------------------------------------------------------------------------------
    def on_event(self, proxy: TeamsProxy, event: object) -> None:
        match event:
            case IncomingRequest(call=None, handle=handle, request=request, peer=peer) if (
                handle is not None and request.method == "OPTIONS"
            ):
                self._on_options(proxy, handle, request, peer)
            case IncomingCall():
                self._on_invite(proxy, event)
            case CallProgress(call=ref, status=status, response=response):
                leg = proxy.legs.get(ref.id)
                if leg is not None:
                    leg.record.received.append((self.now(), status))
                    if leg.dial is not None:
                        leg.dial.progress(leg, status)
            case CallEstablished(call=ref, message=message):
                leg = proxy.legs.get(ref.id)
                if leg is not None:
                    self._on_established(leg, message)
            case CallFailed(call=ref, status=status, response=response):
                leg = proxy.legs.pop(ref.id, None)
                if leg is not None:
                    leg.state = "failed"
                    leg.record.received.append((self.now(), status))
                    leg.record.final_status = status
                    leg.record.ended_at = self.now()
                    if leg.dial is not None:
                        leg.dial.failed(leg, status, network=response is None and status == 503)
            case CallCancelled(call=ref):
                leg = proxy.legs.pop(ref.id, None)
                if leg is not None:
                    leg.state = "ended"
                    leg.record.final_status = 487
                    leg.record.end_reason = "cancelled"
                    leg.record.ended_at = self.now()
                    if leg.call is not None:
                        self._call_gone(leg.call, "caller-cancelled")
            case CallEnded(call=ref, reason=reason):
                leg = proxy.legs.pop(ref.id, None)
                if leg is not None and leg.state != "ended":
                    leg.state = "ended"
                    leg.record.ended_at = self.now()
                    leg.record.end_reason = reason
                    if leg.call is not None and reason != "local-bye":
                        self._leg_ended(leg, reason)
            case ReinviteReceived(call=ref, handle=handle, request=request, sdp=sdp):
                leg = proxy.legs.get(ref.id)
                if handle is not None:
                    self._on_reinvite(proxy, leg, handle, request, sdp)
            case RequestCompleted(call=ref, ref=req, status=status):
                leg = proxy.legs.get(ref.id)
                if leg is not None and req.method == "REFER":
                    self._refer_answered(leg, req, status)
            case ReferProgress(call=ref, status=status, reason=reason, final=final):
                leg = proxy.legs.get(ref.id)
                if leg is not None:
                    self._refer_progress(leg, status, reason, final)
            case StandaloneCompleted(ref=req, status=status):
                fqdn = proxy.pingers_pending.pop(req.id, None)
                self.options.append(
                    OptionsExchange(self.now(), proxy.fqdn, "outbound", fqdn, status)
                )
            case _:
                pass

    # -- OPTIONS (Part 1) -------------------------------------------------------------------
    def _identify(
        self, proxy: TeamsProxy, request: Request, peer: PeerInfo
    ) -> tuple[str | None, str | None]:
        """The FQDN a request names (top Record-Route, else first Contact) and the rule it
        breaks, if any: Part 2.4 [DOC] (RR priority 1, Contact 2; no IP), Part 2.2 [DOC] step 1
        (certificate names must cover it, single-label wildcard)."""
        uri: object = None
        rr = request.headers.get_all("Record-Route")
        try:
            if rr:
                uri = request.record_route[0].uri
            elif request.contact:
                uri = request.contact[0].uri
        except ProtocolError:
            return None, "malformed-contact"
        if not isinstance(uri, SipUri):
            return None, "missing-contact"
        if uri.host_is_ip:
            return uri.host, "ip-in-contact"
        identity = peer.peer_identity
        if peer.transport == "tls" and self.require_certificate:
            if identity is None:
                return uri.host, "no-client-certificate"
            if not any(name_matches(name, uri.host) for name in identity.names):
                return uri.host, "certificate-mismatch"
        elif peer.transport != "tls":
            return uri.host, "not-tls"
        return uri.host.lower(), None

    #: Mutual TLS (Part 7.3 [DOC]); a live lab may relax it for clients that cannot present one.
    require_certificate = True

    def _known_fqdn(self, fqdn: str) -> bool:
        return (
            self.topology.is_carrier_fqdn(fqdn) or self.topology.tenant_for_fqdn(fqdn) is not None
        )

    def _on_options(self, proxy: TeamsProxy, handle: Any, request: Request, peer: PeerInfo) -> None:
        now = self.now()
        ua = proxy.ua
        forced = proxy.forced
        if forced is not None and "OPTIONS" in forced[2]:
            extra = [("Retry-After", str(forced[1]))] if forced[1] is not None else []
            ua.respond_request(handle, forced[0], headers=extra, now=now)
            self.options.append(
                OptionsExchange(
                    now, proxy.fqdn, "inbound", None, forced[0], peer.connection_id, "forced"
                )
            )
            return
        fqdn, problem = self._identify(proxy, request, peer)
        if problem in ("certificate-mismatch", "no-client-certificate", "not-tls"):
            # Part 1.1 [SUP] step 2, Part 12.1: the TLS connection is closed, no answer.
            proxy.close_connection(peer, problem)
            self.options.append(
                OptionsExchange(now, proxy.fqdn, "inbound", fqdn, None, peer.connection_id, problem)
            )
            return
        if problem is not None:
            # Part 1.2 [DOC]: an IP in Contact is refused with 403 (a missing Contact: [GAP] 400).
            status = 403 if problem == "ip-in-contact" else 400
            ua.respond_request(handle, status, headers=self._reason(status, problem), now=now)
            self.options.append(
                OptionsExchange(
                    now, proxy.fqdn, "inbound", fqdn, status, peer.connection_id, problem
                )
            )
            return
        assert fqdn is not None
        if not self._known_fqdn(fqdn):
            # Part 12.2 [INF]: 403 or a silent drop (settings.unknown_fqdn_options).
            if self.settings.unknown_fqdn_options == "403":
                ua.respond_request(
                    handle,
                    403,
                    headers=self._reason(403, "510532 No trunk config was found"),
                    now=now,
                )
                answered: int | None = 403
            else:
                answered = None
            self.options.append(
                OptionsExchange(
                    now, proxy.fqdn, "inbound", fqdn, answered, peer.connection_id, "unknown-fqdn"
                )
            )
            return
        # Part 1.1 [SUP] step 4 / Part 1.2 [OBS]: 200 on the same connection, with ALLOW and
        # SERVER (the UA adds Server; the wire writes names in upper case).
        ua.respond_request(handle, 200, headers=(("Allow", MICROSOFT_ALLOW),), now=now)
        self.options.append(
            OptionsExchange(now, proxy.fqdn, "inbound", fqdn, 200, peer.connection_id)
        )
        self.options_seen(fqdn, proxy)
        # Part 1.1 [DOC] (S6) step 5: then the proxy pings the SBC back.
        target = self._options_target(request, fqdn)
        if self.settings.send_options and target is not None and target[0] not in proxy.pingers:
            proxy.pingers[target[0]] = None
            self._ping(proxy, target[0], target[1])

    def _options_target(self, request: Request, fqdn: str) -> tuple[str, int] | None:
        """Where Microsoft's own OPTIONS go: the Contact FQDN, or the top Record-Route first
        (Part 1.1, settings.options_next_hop)."""
        uri: object = None
        try:
            if self.settings.options_next_hop == "record-route-first" and request.record_route:
                uri = request.record_route[0].uri
            elif request.contact:
                uri = request.contact[0].uri
        except ProtocolError:
            return None
        if not isinstance(uri, SipUri) or uri.host_is_ip:
            return None
        return uri.host.lower(), uri.port or 5061

    def _ping(self, proxy: TeamsProxy, fqdn: str, port: int) -> None:
        """Send one OPTIONS to the SBC FQDN on a connection of our own, and re-arm."""
        if not proxy.silent:
            found = self.resolve(fqdn)
            if found is not None:
                remote = (found[0], port)
                ref = proxy.ua.send_request(
                    "OPTIONS",
                    f"sip:{fqdn}:{port};transport=tls",
                    from_=f"<sip:{proxy.fqdn}:{proxy.port}>",
                    to=f"<sip:{fqdn}:{port}>",
                    remote=remote,
                    transport="tls",
                    server_name=fqdn,
                    headers=(("Allow", MICROSOFT_ALLOW),),
                    now=self.now(),
                )
                proxy.pingers_pending[ref.id] = fqdn
                proxy.poke()
        proxy.pingers[fqdn] = self.schedule(
            self.settings.options_interval, lambda: self._ping(proxy, fqdn, port)
        )

    # -- inbound INVITE (Part 2) ------------------------------------------------------------------
    def _reason(self, status: int, text: str | None = None) -> list[tuple[str, str]]:
        """Part 2.3 [SUP]: a Q.850 Reason after NICC ND1017 on every failure Microsoft sends."""
        cause = self.settings.cause(status)
        value = f"Q.850;cause={cause}"
        if text:
            value += f';text="{text}"'
        return [("Reason", value)]

    def _reject(
        self,
        leg_or_proxy: SbcLeg,
        status: int,
        rule: str,
        text: str,
        extra: Sequence[tuple[str, str]] = (),
    ) -> None:
        leg = leg_or_proxy
        record = leg.record
        if rule:
            record.failed_rules.append(rule)
        record.final_status = status
        record.ended_at = self.now()
        record.sent.append((self.now(), status, None))
        leg.state = "failed"
        leg.proxy.legs.pop(leg.ref.id, None)
        with contextlib.suppress(LocalProtocolError):
            leg.proxy.ua.respond(
                leg.ref, status, headers=[*extra, *self._reason(status, text)], now=self.now()
            )

    def _on_invite(self, proxy: TeamsProxy, event: IncomingCall) -> None:
        now = self.now()
        request = event.request
        peer = event.peer
        record = self.new_record("inbound", proxy, call_id=request.call_id)
        record.request = request
        record.peer = peer
        record.refer_allowed = "REFER" in {m.upper() for m in request.allow}
        record.certificate_names = peer.peer_identity.names if peer.peer_identity else ()
        leg = SbcLeg(proxy, event.call, "inbound", record, self.topology.tenants[0], "", "")
        leg.refer_allowed = bool(record.refer_allowed)
        leg.session = self.next_session()
        proxy.legs[event.call.id] = leg
        forced = proxy.forced
        if forced is not None and "INVITE" in forced[2]:
            extra = [("Retry-After", str(forced[1]))] if forced[1] is not None else []
            self._reject(leg, forced[0], "", "datacenter busy", extra)
            record.notes.append((now, "forced response"))
            return
        fqdn, problem = self._identify(proxy, request, peer)
        record.contact_fqdn = fqdn
        if problem in ("certificate-mismatch", "no-client-certificate", "not-tls"):
            record.failed_rules.append(problem)
            record.ended_at = now
            proxy.legs.pop(event.call.id, None)
            proxy.close_connection(peer, problem)
            return
        if problem is not None:
            # Part 2.1 [DOC]: "the connection will be refused with 403 Forbidden".
            self._reject(leg, 403 if problem == "ip-in-contact" else 400, problem, problem)
            return
        replaced = proxy.front.replaces_seen.pop(
            (request.call_id, request.from_.tag or "", request.cseq.seq), None
        )
        if replaced is not None:
            # Part 2.1 [DOC] reject; [GAP] status -> settings.replaces_rejection_status.
            status = self.settings.replaces_rejection_status
            self._reject(leg, status, "replaces-from-sbc", "Replaces is not supported from the SBC")
            return
        assert fqdn is not None
        # Part 2.2 [DOC] steps 2-3: the full FQDN, then the parent domain.
        tenant, matched = self._tenant_for(fqdn)
        if tenant is None:
            self._reject(leg, 403, "no-trunk-config", "510532 No trunk config was found")
            return
        record.tenant = tenant.id
        record.tenant_matched_by = matched
        record.trunk_fqdn = tenant.trunk_fqdn
        leg.tenant = tenant
        leg.trunk_fqdn = tenant.trunk_fqdn
        try:
            caller = request.from_.uri
            leg.remote_number = caller.user if isinstance(caller, SipUri) and caller.user else ""
        except ProtocolError:
            leg.remote_number = ""
        transfer = self._transfer_for(request)
        if transfer is not None and transfer[0] is not None:
            self._on_transfer_invite(leg, request, *transfer)
            return
        # Part 2.1 [DOC]/[SUP]: the E.164 number in the Request-URI finds the user in the tenant.
        uri = request.uri
        number = uri.user if isinstance(uri, SipUri) else None
        record.number = number
        target_user = self._by_number.get(number or "")
        target_queue = next((q for q in tenant.call_queues if q.number == number), None)
        mri = _param(uri, "x-m") if isinstance(uri, SipUri) else None
        if target_user is None and mri is not None:
            target_user = self._by_mri.get(mri)
        if target_user is not None and target_user.tenant.id != tenant.id:
            target_user = None
        if target_user is None and target_queue is None:
            self._reject(
                leg,
                404,
                "unknown-number",
                "511404 Getting user info by number from RuntimeAPI failed",
            )
            return
        if not request.body:
            # Part 2.1 [DOC] no Delayed Offer; [INF] 415 (S21 540415).
            self._reject(leg, 415, "no-sdp", "540415 Unsupported Media Type")
            return
        bypass = self.topology.trunk_settings(tenant).media_bypass
        offer_problem = _offer_problem(request.body, bypass)
        if offer_problem is not None:
            status, rule, text = offer_problem
            self._reject(leg, status, rule, text)
            return
        leg.offer = SessionDescription.parse(request.body)
        # Part 2.3 [DOC]: "the SIP proxy sends ... 100 Trying".
        proxy.ua.respond(event.call, 100, now=now)
        record.sent.append((now, 100, None))
        call = self._new_call(tenant, leg.remote_number, number or "")
        call.legs.append(leg)
        leg.call = call
        leg.state = "early"
        if target_queue is not None:
            record.target = f"queue:{target_queue.id}"
            self._queue_call(call, target_queue)
            return
        assert target_user is not None
        record.target = target_user.upn
        call.primary = target_user
        if self.settings.ringback_bot and not bypass:
            # Part 2.3 [DOC] (S35) Ringback bot; [INF] one 183 with MP SDP before any 180.
            self._send_early(leg, 183, self.new_tag(), sdp=True)
        self._route_to_user(call, target_user, first=True)

    def _tenant_for(
        self, fqdn: str
    ) -> tuple[Tenant | None, Literal["fqdn", "parent-domain"] | None]:
        for tenant in self.topology.tenants:
            if fqdn in tenant.registered_names:
                return tenant, "fqdn"
        parent = fqdn.partition(".")[2]
        for tenant in self.topology.tenants:
            if parent in tenant.registered_names:
                return tenant, "parent-domain"
        return None, None

    def _send_early(
        self,
        leg: SbcLeg,
        status: int,
        tag: str,
        *,
        sdp: bool = False,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        if leg.state != "early":
            return
        body = None
        if sdp:
            if leg.early_sent:
                status, body = (180 if status == 183 else status), None
            else:
                body = leg.sdp()
                leg.early_sent = True
        leg.proxy.ua.respond(leg.ref, status, sdp=body, headers=headers, to_tag=tag, now=self.now())
        leg.record.sent.append((self.now(), status, tag))

    # -- ringing users ----------------------------------------------------------------------------
    def _route_to_user(self, call: MsCall, user: TeamsUserAgent, *, first: bool) -> None:
        """Ring a user with everything that rings with them: forwarding (immediate), simultaneous
        ring, call group members (Part 5.5/5.6 [DOC])."""
        forwarding = user.user.forwarding
        if first and forwarding.immediate is not None:
            self._forward(call, user, forwarding.immediate, cause=302, text="Moved Temporarily")
            return
        group = next((g for g in user.tenant.call_groups if g.owner == user.upn), None)
        rang = self._alert_user(call, user)
        for target in user.user.simultaneous_ring:
            if target.startswith("+") and target not in self._by_number:
                self._dial_fork(call, user, target, cause=None)
                rang = True
            else:
                other = (
                    self._by_number.get(target)
                    if target.startswith("+")
                    else self.users.get(target)
                )
                if other is not None:
                    rang = self._alert_user(call, other) or rang
        if group is not None:
            members = [self.users[m] for m in group.members if m in self.users]
            if group.ring == "simultaneous":
                for member in members:
                    rang = self._alert_user(call, member) or rang
            else:
                self._ring_serially(call, members, float(group.member_alert_seconds))
                rang = True
        if forwarding.unanswered is not None:
            target = forwarding.unanswered
            call.forward_timer = self.schedule(
                float(forwarding.unanswered_after_seconds),
                lambda: self._unanswered(call, user, target),
            )
            rang = True
        if not rang:
            # Part 2.2 [SUP]: 10037 / 480 No callee endpoints were found.
            self._fail_call(call, 480, "10037 No callee endpoints were found")

    def _alert_user(self, call: MsCall, user: TeamsUserAgent) -> bool:
        """Ring every endpoint of ``user``: one 180 per endpoint with its own To-tag (Part 2.3
        [DOC]); the one 183 follows the first 180 when the Ringback bot is off."""
        if not user.can_ring() or call.state != "ringing":
            return False
        leg = call.inbound
        for endpoint in range(user.endpoints):
            tag = self.new_tag()
            alert = Alert(call, user, endpoint, self.now(), tag)
            call.alerts.append(alert)
            if leg is not None and leg.state == "early":
                self._send_early(leg, 180, tag)
                if self.settings.early_media_183 and not leg.early_sent:
                    self._send_early(leg, 183, tag, sdp=True)
            user.alerted(alert)
        return True

    def _ring_serially(self, call: MsCall, members: list[TeamsUserAgent], seconds: float) -> None:
        def ring(index: int) -> None:
            if call.state != "ringing":
                return
            for alert in call.alerts:
                if alert.user is not call.primary and alert.state == "ringing":
                    alert.cancel()
            while index < len(members) and not self._alert_user(call, members[index]):
                index += 1
            if index < len(members):
                self.schedule(seconds, lambda: ring(index + 1))

        ring(0)

    def _queue_call(self, call: MsCall, queue: CallQueue) -> None:
        """A call queue is a server endpoint: it answers at once with 200 (Part 2.3 [DOC] S3),
        then rings its agents (presence-based routing skips those not Available)."""
        call.queue = queue
        leg = call.inbound
        assert leg is not None
        self._answer_leg(leg, self.new_tag())
        agents = [self.users[m] for m in queue.members if m in self.users]
        if queue.presence_based_routing:
            agents = [a for a in agents if a.availability in ("Available", "AvailableIdle")]
        if queue.ring == "simultaneous":
            for agent in agents:
                self._alert_user(call, agent)
        else:
            self._ring_serially(call, agents, float(queue.agent_alert_seconds))
        if queue.timeout_seconds:
            self.schedule(float(queue.timeout_seconds), lambda: self._queue_timeout(call))

    def _queue_timeout(self, call: MsCall) -> None:
        if call.state == "ringing":
            self._call_gone(call, "queue-timeout")

    def _unanswered(self, call: MsCall, user: TeamsUserAgent, target: str) -> None:
        if call.state != "ringing":
            return
        for alert in call.alerts:
            alert.cancel()
        for dial in call.dials:
            dial.cancel()
        self._forward(call, user, target, cause=408, text="Request Timeout")

    def _history_entry(self, number: str, index: str, cause: int | None, text: str | None) -> str:
        """One History-Info entry (Part 5.5 [DOC]): the number at the Direct Routing FQDN with
        user=phone, and the Reason the call left it."""
        uri = f"sip:{number}@{MICROSOFT_FQDN}:5061;user=phone"
        if cause is not None:
            if self.settings.history_info_escaped:
                reason = f"SIP%3Bcause%3D{cause}%3Btext%3D%22{(text or '').replace(' ', '%20')}%22"
            else:
                reason = f'SIP;cause={cause};text="{text}"'
            uri += f"?Reason={reason}"
        return f"<{uri}>;index={index}"

    def _forward(
        self, call: MsCall, user: TeamsUserAgent, target: str, *, cause: int, text: str
    ) -> None:
        """Call forwarding (Part 5.5 [DOC]): to voicemail, another user or a number."""
        call.history.append(f"forward {user.upn} -> {target} ({cause})")
        leg = call.inbound
        if leg is not None and leg.state == "early" and self.settings.send_181_on_forward:
            self._send_early(leg, 181, self.new_tag())  # Part 5.5 [INF] (ACS)
        if target == "voicemail":
            # A server endpoint answers directly with 200 (Part 2.3 [DOC] S3).
            if leg is not None and leg.state == "early":
                self._answer_leg(leg, self.new_tag())
                call.state = "connected"
            return
        if target.startswith("+") and target not in self._by_number:
            self._dial_fork(call, user, target, cause=cause, text=text)
            return
        other = self._by_number.get(target) if target.startswith("+") else self.users.get(target)
        if other is None or not self._alert_user(call, other):
            self._fail_call(call, 480, "10037 No callee endpoints were found")

    def _dial_fork(
        self,
        call: MsCall,
        user: TeamsUserAgent,
        number: str,
        *,
        cause: int | None,
        text: str | None = None,
    ) -> None:
        """Ring a PSTN number for a Teams user's call (simultaneous ring or forward), with
        History-Info when ForwardCallHistory is on (Part 5.5 [DOC])."""
        headers: list[tuple[str, str]] = []
        if self.topology.trunk_settings(call.tenant).forward_call_history and user.number:
            entries = [
                self._history_entry(
                    user.number,
                    "1",
                    cause if cause is not None else 480,
                    text or "Temporarily Unavailable",
                ),
                self._history_entry(number, "1.1", None, None),
            ]
            headers.append(("History-Info", ",".join(entries)))
        caller = call.caller or (user.number or "")
        dial = Dial(
            self,
            call,
            number,
            caller,
            purpose="forward" if cause is not None else "simultaneous-ring",
            headers=headers,
            on_progress=self._fork_progress,
            on_answer=self._fork_answered,
            on_failure=self._fork_failed,
        )
        call.dials.append(dial)
        dial.start()

    def _fork_progress(self, dial: Dial, status: int) -> None:
        leg = dial.call.inbound
        if leg is not None and leg.state == "early" and status in (180, 183):
            self._send_early(leg, status, self.new_tag(), sdp=status == 183)

    def _fork_answered(self, dial: Dial, out: SbcLeg) -> None:
        call = dial.call
        if call.state != "ringing":
            self.end_leg(out, "late-answer")
            return
        for alert in call.alerts:
            alert.cancel()
        for other in call.dials:
            if other is not dial:
                other.cancel()
        leg = call.inbound
        if leg is not None and leg.state == "early":
            self._answer_leg(leg, self.new_tag())
        call.state = "connected"

    def _fork_failed(self, dial: Dial, status: int) -> None:
        self._maybe_fail(dial.call, status)

    def _maybe_fail(self, call: MsCall, status: int) -> None:
        if call.state != "ringing":
            return
        ringing = any(a.state == "ringing" for a in call.alerts)
        dialing = any(d.state == "dialing" for d in call.dials)
        if not ringing and not dialing and call.forward_timer is None:
            self._fail_call(call, status, None)

    def _fail_call(self, call: MsCall, status: int, text: str | None) -> None:
        call.state = "failed"
        call.rejection = status
        if call.forward_timer is not None:
            call.forward_timer.cancel()
            call.forward_timer = None
        for alert in call.alerts:
            alert.cancel()
        for dial in call.dials:
            dial.cancel()
        leg = call.inbound
        if leg is not None and leg.state == "early":
            self._reject(leg, status, "", text or f"{status}")

    # -- answering ----------------------------------------------------------------------------------
    def _answer_leg(self, leg: SbcLeg, tag: str) -> None:
        """200 with Media Processor SDP on the answering endpoint's fork (Part 2.3 [DOC])."""
        now = self.now()
        leg.proxy.ua.respond(leg.ref, 200, sdp=leg.sdp(), to_tag=tag, now=now)
        leg.record.sent.append((now, 200, tag))
        leg.record.final_status = 200
        leg.state = "answered"
        timeout = self.settings.ack_timeout
        if timeout is not None:
            leg.timer = self.schedule(timeout, lambda: self._ack_missing(leg))

    def _ack_missing(self, leg: SbcLeg) -> None:
        # Part 2.3 [SUP] 1106 / 408: the SBC did not acknowledge the 200 OK.
        leg.timer = None
        if leg.state == "answered":
            leg.record.failed_rules.append("no-ack")
            self.end_leg(leg, "no-ack")
            if leg.call is not None:
                self._call_gone(leg.call, "no-ack")

    def answer_alert(self, alert: Alert) -> None:
        call = alert.call
        if alert.state != "ringing" or call.state not in ("ringing", "connected"):
            return
        if call.state == "connected" and call.queue is None and not call.conference:
            return
        alert.state = "answered"
        if alert.timer is not None:
            alert.timer.cancel()
            alert.timer = None
        for other in call.alerts:
            if other is not alert:
                other.cancel()
        for dial in call.dials:
            dial.cancel()
        if call.forward_timer is not None:
            call.forward_timer.cancel()
            call.forward_timer = None
        leg = call.inbound
        if leg is not None and leg.state == "early":
            self._answer_leg(leg, alert.to_tag or self.new_tag())
        call.state = "connected"
        self._join(call, alert.user)
        if call.placed_by is not None and call.placed_by not in call.users:
            self._join(call, call.placed_by)
        self.flush()

    def _join(self, call: MsCall, user: TeamsUserAgent) -> None:
        call.users.append(user)
        user.calls.append(call)
        user._log(f"in call {call.id}")
        with contextlib.suppress(LookupError):
            self.presence.call_started(user.user.graph_id, self.now(), conference=call.conference)

    def _leave(self, call: MsCall, user: TeamsUserAgent) -> None:
        if user in call.users:
            call.users.remove(user)
        if call in user.calls:
            user.calls.remove(call)
            user._log(f"left call {call.id}")
            with contextlib.suppress(LookupError):
                self.presence.call_ended(user.user.graph_id, self.now())

    def reject_alert(self, alert: Alert, status: int) -> None:
        call = alert.call
        if alert.state != "ringing":
            return
        alert.state = "declined" if status == 603 else "busy"
        if alert.timer is not None:
            alert.timer.cancel()
            alert.timer = None
        user = alert.user
        for other in call.alerts:
            if other.user is user:
                other.cancel()
                other.state = alert.state
        user._log(f"rejected call {call.id} with {status}")
        if call.state != "ringing":
            return
        if user is call.primary and status == 603:
            # Part 2.3 [DOC]: a declined call ends with 603 (the SBC must not retry it).
            self._fail_call(call, 603, "Decline")
        else:
            self._maybe_fail(call, status)
        self.flush()

    # -- established / ended ---------------------------------------------------------------------
    def _on_established(self, leg: SbcLeg, message: Request | Response) -> None:
        now = self.now()
        leg.record.established_at = now
        if leg.timer is not None and leg.direction == "inbound":
            leg.timer.cancel()
            leg.timer = None
        leg.state = "connected"
        if isinstance(message, Response):
            # Part 5.1 [SUP]: for outbound calls REFER support is read from the SBC's 200 OK.
            leg.refer_allowed = "REFER" in {m.upper() for m in message.allow}
            leg.record.refer_allowed = leg.refer_allowed
            leg.record.received.append((now, message.status))
            leg.record.final_status = message.status
            if leg.dial is not None:
                leg.dial.answered(leg)

    def end_leg(self, leg: SbcLeg, why: str) -> None:
        """End one SBC leg from Microsoft's side: CANCEL before, BYE after the answer."""
        now = self.now()
        ua = leg.proxy.ua
        if leg.timer is not None:
            leg.timer.cancel()
            leg.timer = None
        leg.record.notes.append((now, f"ending: {why}"))
        if leg.state in ("ended", "failed"):
            return
        try:
            if leg.direction == "outbound" and leg.state in ("setup", "early"):
                ua.cancel(leg.ref, now)
                leg.record.end_reason = why
                return
            if leg.direction == "inbound" and leg.state == "early":
                self._reject(leg, 480, "", why)
                return
            leg.proxy.legs.pop(leg.ref.id, None)
            leg.state = "ended"
            leg.record.ended_at = now
            leg.record.end_reason = why
            ua.bye(leg.ref, now)
        except LocalProtocolError:
            pass

    def _leg_ended(self, leg: SbcLeg, reason: str) -> None:
        call = leg.call
        if call is None:
            return
        if call.transfer is not None and call.transfer.outcome == "pending":
            # Part 5.3 [SUP]: a BYE that arrives before the final NOTIFY ends the transfer.
            call.transfer.outcome = "failed"
        if call.conference and (call.users or call.live_legs()):
            # A group call (Part 8.5 [DOC]: the conference Media Processor mixes it) goes on
            # without the party that left; it ends when its last Teams user hangs up.
            call.history.append(f"{leg.remote_number or 'a party'} left the group call")
            return
        self._call_gone(call, reason)

    def _call_gone(self, call: MsCall, reason: str) -> None:
        """The call is over for everybody: stop ringing, release users, end the other legs."""
        if call.state in ("ended",):
            return
        was_ringing = call.state == "ringing"
        call.state = "ended"
        call.history.append(f"ended: {reason}")
        if call.forward_timer is not None:
            call.forward_timer.cancel()
            call.forward_timer = None
        for alert in call.alerts:
            alert.cancel()
        for dial in call.dials:
            dial.cancel()
        for user in list(call.users):
            self._leave(call, user)
        for leg in call.live_legs():
            if was_ringing and leg.direction == "inbound" and leg.state == "early":
                self._reject(leg, 480, "", reason)
            else:
                self.end_leg(leg, reason)
        self.flush()

    def hang_up(self, user: TeamsUserAgent, call: Any) -> None:
        assert isinstance(call, MsCall)
        self._leave(call, user)
        if not call.users or call.placed_by is user:
            self._call_gone(call, f"hang-up by {user.upn}")
        self.flush()

    # -- in-dialog from the SBC ------------------------------------------------------------------
    def _on_reinvite(
        self,
        proxy: TeamsProxy,
        leg: SbcLeg | None,
        handle: Any,
        request: Request,
        sdp: bytes | None,
    ) -> None:
        now = self.now()
        ua = proxy.ua
        if leg is None:
            ua.respond_request(handle, 481, now=now)
            return
        if sdp is not None and _blackhole(sdp):
            # Part 8.4 [DOC]/[SUP] 531052: c=0.0.0.0 is not supported.
            leg.record.failed_rules.append("blackhole-hold")
            ua.respond_request(
                handle,
                488,
                headers=self._reason(
                    488, "531052 Cannot negotiate a new modality with blackhole media"
                ),
                now=now,
            )
            return
        status = self.settings.one_way_hold_status
        if sdp is not None and status is not None and _one_way(sdp):
            # Part 8.4 [DOC]: only a=inactive is understood for hold.
            leg.record.failed_rules.append("one-way-hold")
            ua.respond_request(
                handle,
                status,
                headers=self._reason(status, "only a=inactive is supported for hold"),
                now=now,
            )
            return
        direction = Direction.SENDRECV
        if sdp is not None:
            try:
                offer = SessionDescription.parse(sdp)
                if offer.media and offer.effective_direction(offer.media[0]) is Direction.INACTIVE:
                    direction = Direction.INACTIVE
                leg.offer = offer
            except ProtocolError:
                pass
            leg.sdp_version += 1
            leg.on_hold = direction is Direction.INACTIVE
            ua.respond_request(handle, 200, sdp=leg.sdp(direction), now=now)
        else:
            ua.respond_request(handle, 200, sdp=leg.sdp(), now=now)

    # -- user verbs ------------------------------------------------------------------------------
    def _sbc_leg(self, call: Any) -> SbcLeg:
        assert isinstance(call, MsCall)
        legs = [leg for leg in call.live_legs() if leg.state == "connected"]
        if not legs:
            raise RuntimeError(f"call {call.id} has no connected SBC leg")
        return legs[0]

    def hold(self, user: TeamsUserAgent, call: Any, on_hold: bool) -> None:
        """Part 8.4 [DOC]: Microsoft holds with a=inactive (and resumes with sendrecv)."""
        leg = self._sbc_leg(call)
        leg.sdp_version += 1
        leg.on_hold = on_hold
        direction = Direction.INACTIVE if on_hold else Direction.SENDRECV
        leg.proxy.ua.reinvite(leg.ref, leg.sdp(direction), now=self.now())
        self.flush()

    def place_call(self, user: TeamsUserAgent, number: str, *, anonymous: bool = False) -> MsCall:
        """A Teams user dials: another user internally, or a number through the SBC (Part 3)."""
        call = self._new_call(user.tenant, user.number or "", number)
        call.placed_by = user
        callee = self._by_number.get(number)
        if callee is not None:
            call.primary = callee
            if not self._alert_user(call, callee):
                call.state = "failed"
            return call
        self._join(call, user)

        def answered(dial: Dial, leg: SbcLeg) -> None:
            call.state = "connected"

        def failed(dial: Dial, status: int) -> None:
            call.state = "failed"
            call.rejection = status
            self._leave(call, user)

        dial = Dial(
            self,
            call,
            number,
            user.number or "",
            purpose="call",
            anonymous=anonymous,
            on_answer=answered,
            on_failure=failed,
        )
        call.dials.append(dial)
        dial.start()
        self.flush()
        return call

    def _refer_target(self, target: str, tenant: Tenant) -> tuple[str, TeamsUserAgent | None]:
        """Part 5.2 [DOC]: Refer-To on the proxy FQDN with x-m/x-t for a Teams user, or the
        E.164 number in the user part for a phone number."""
        user = self.users.get(target.lower()) or self._by_number.get(target)
        if user is not None:
            uri = f"sip:{MICROSOFT_FQDN}:5061;transport=tls;x-m={user.mri};x-t={user.tenant_id}"
            return f"<{uri}>", user
        return f"<sip:{target}@{MICROSOFT_FQDN}:5061;user=phone;transport=tls>", None

    def _referred_by(self, user: TeamsUserAgent, x_ti: str, x_tt: str) -> str:
        """Part 5.2 [DOC]: Referred-By with the transferor's MRI, tenant, correlation id and the
        encoded call replacement URI."""
        return (
            f"<sip:{MICROSOFT_FQDN}:5061;x-m={user.mri};x-t={user.tenant_id};x-ti={x_ti};"
            f"x-tt={x_tt}>"
        )

    def transfer(self, user: TeamsUserAgent, call: Any, target: str) -> TransferRecord:
        """Blind transfer (Part 5.1 [DOC]): REFER when the SBC listed REFER in Allow, else the
        Microsoft-internal transfer (a re-INVITE toward the SBC, the target rung internally)."""
        assert isinstance(call, MsCall)
        leg = self._sbc_leg(call)
        now = self.now()
        x_ti = str(uuid.UUID(int=self._rng.getrandbits(128)))
        if leg.refer_allowed:
            refer_to, _target_user = self._refer_target(target, call.tenant)
            token = base64.urlsafe_b64encode(
                f"https://{MICROSOFT_FQDN}/calls/{x_ti}".encode()
            ).decode()
            x_tt = token.lower().replace("=", "%3d")
            referred_by = self._referred_by(user, x_ti, x_tt)
            record = TransferRecord("refer", user.upn, target, now, refer_to, referred_by, x_ti)
            call.transfer = record
            self.transfers.append(record)
            self._pending_transfers[x_ti] = (record, call)
            ref = leg.proxy.ua.refer(
                leg.ref, refer_to.strip("<>"), referred_by=referred_by, now=now
            )
            leg.record.notes.append((now, f"REFER to {target}"))
            self._refer_refs[ref.id] = record
            self.schedule(self.settings.transfer_timeout, lambda: self._transfer_timeout(record))
            self.flush()
            return record
        record = TransferRecord("internal", user.upn, target, now)
        call.transfer = record
        self.transfers.append(record)
        self._internal_transfer(call, user, leg, target, record)
        self.flush()
        return record

    def _internal_transfer(
        self, call: MsCall, user: TeamsUserAgent, leg: SbcLeg, target: str, record: TransferRecord
    ) -> None:
        """Part 5.1 [DOC] Option 1: Microsoft keeps the SBC leg and moves the media (re-INVITE to
        the new Media Processor session) while it reaches the target itself."""
        leg.sdp_version += 1
        leg.proxy.ua.reinvite(leg.ref, leg.sdp(), now=self.now())
        self._leave(call, user)
        other = self.users.get(target.lower()) or self._by_number.get(target)
        if other is not None:
            call.state = "ringing"
            call.primary = other
            if self._alert_user(call, other):
                record.outcome = "completed"
                return
            record.outcome = "failed"
            self._call_gone(call, "transfer target unavailable")
            return

        def answered(dial: Dial, out: SbcLeg) -> None:
            record.outcome = "completed"
            call.state = "connected"

        def failed(dial: Dial, status: int) -> None:
            record.outcome = "failed"
            self._call_gone(call, f"transfer failed {status}")

        call.state = "connected"
        dial = Dial(
            self,
            call,
            target,
            call.caller,
            purpose="transfer",
            on_answer=answered,
            on_failure=failed,
        )
        call.dials.append(dial)
        dial.start()

    def _refer_answered(self, leg: SbcLeg, req: RequestRef, status: int) -> None:
        record = self._refer_refs.get(req.id)
        if record is None:
            return
        record.refer_status = status
        if status >= 300:
            record.outcome = "failed"

    def _refer_progress(self, leg: SbcLeg, status: int, reason: str, final: bool) -> None:
        call = leg.call
        record = call.transfer if call is not None else None
        if record is None or record.method != "refer":
            return
        record.notifies.append((self.now(), status, reason))
        if not final:
            return
        if 200 <= status < 300:
            # Part 5.3 [SUP]: on NOTIFY 200 the proxy "will safely end the original call by
            # sending the SIP Bye".
            record.outcome = "completed"
            record.old_leg_bye_at = self.now()
            assert call is not None
            for user in list(call.users):
                self._leave(call, user)
            call.state = "ended"
            self.end_leg(leg, "transferred")
        else:
            record.outcome = "failed"

    def _transfer_timeout(self, record: TransferRecord) -> None:
        if record.outcome == "pending":
            record.outcome = "failed"

    def _transfer_for(
        self, request: Request
    ) -> tuple[TransferRecord | None, MsCall | None, str | None] | None:
        """Whether an INVITE from the SBC is the new call of a REFER we sent, matched by the
        ``x-ti`` of its Referred-By, or by its Request-URI when Referred-By is missing."""
        value = request.headers.get("Referred-By")
        if value is not None:
            match = re.search(r"x-ti=([^;>]+)", value)
            if match and match.group(1) in self._pending_transfers:
                record, call = self._pending_transfers[match.group(1)]
                return record, call, value
        uri = str(request.uri)
        for record, call in self._pending_transfers.values():
            if record.outcome != "pending" or record.new_invite_at is not None:
                continue
            if (
                record.refer_to
                and record.refer_to.strip("<>").split(";")[0] in uri.split(";")[0]
                and (
                    "x-m" not in record.refer_to
                    or ("x-m=" in uri and record.refer_to.split("x-m=")[1].split(";")[0] in uri)
                )
            ):
                return record, call, value
        return None

    def _on_transfer_invite(
        self,
        leg: SbcLeg,
        request: Request,
        record: TransferRecord | None,
        old: MsCall | None,
        value: str | None,
    ) -> None:
        """The SBC's INVITE after our REFER (Part 5.3 [SUP]): Referred-By must be exactly ours
        ([OBS] S29: 400 otherwise); a Teams target rings, a number is called through the SBC."""
        assert record is not None and old is not None
        now = self.now()
        record.new_invite_at = now
        leg.record.purpose = "transfer"
        ok = value is not None and value.strip() == (record.referred_by or "").strip()
        record.referred_by_ok = ok
        if not ok:
            self._reject(
                leg,
                self.settings.referred_by_mismatch_status,
                "referred-by-altered" if value else "referred-by-missing",
                "Referred-By missing or altered",
            )
            return
        if not request.body:
            self._reject(leg, 415, "no-sdp", "540415 Unsupported Media Type")
            return
        problem = _offer_problem(request.body, False)
        if problem is not None:
            self._reject(leg, problem[0], problem[1], problem[2])
            return
        leg.offer = SessionDescription.parse(request.body)
        leg.proxy.ua.respond(leg.ref, 100, now=now)
        call = self._new_call(leg.tenant, leg.remote_number, record.target)
        call.legs.append(leg)
        leg.call = call
        leg.state = "early"
        target = self.users.get(record.target.lower()) or self._by_number.get(record.target)
        if target is not None:
            call.primary = target
            leg.record.target = target.upn
            if not self._alert_user(call, target):
                self._fail_call(call, 480, "10037 No callee endpoints were found")
            return
        # Part 5.3 [SUP]: a PSTN target is forwarded by the proxy as a new INVITE to the SBC.
        headers: list[tuple[str, str]] = []
        if self.topology.trunk_settings(leg.tenant).forward_call_history and value:
            headers.append(("Referred-By", value))
        dial = Dial(
            self,
            call,
            record.target,
            leg.remote_number,
            purpose="transfer",
            headers=headers,
            on_progress=self._fork_progress,
            on_answer=self._fork_answered,
            on_failure=self._fork_failed,
        )
        call.dials.append(dial)
        dial.start()

    def consult_transfer(self, user: TeamsUserAgent, call: Any, consult: Any) -> TransferRecord:
        """Consultative transfer (Part 5.4): the held call's party is joined with the consulted
        party.  Toward a PSTN party Microsoft sends an INVITE with Replaces to the SBC (Part 5.1
        [SUP] method 2); a Teams party is joined internally."""
        assert isinstance(call, MsCall) and isinstance(consult, MsCall)
        now = self.now()
        record = TransferRecord("replaces", user.upn, consult.called, now)
        self.transfers.append(record)
        call.transfer = record
        held = self._sbc_leg(call)
        consult_legs = [leg for leg in consult.live_legs() if leg.state == "connected"]
        self._leave(call, user)
        self._leave(consult, user)
        if not consult_legs:
            others = list(consult.users)
            for other in others:
                self._leave(consult, other)
                self._join(call, other)
            consult.state = "ended"
            held.sdp_version += 1
            held.proxy.ua.reinvite(held.ref, held.sdp(), now=now)
            record.outcome = "completed"
            self.flush()
            return record
        target = consult_legs[0]
        dialog = target.proxy.ua.dialog_id(target.ref)
        assert dialog is not None
        replaces = f"{dialog.call_id};to-tag={dialog.remote_tag};from-tag={dialog.local_tag}"

        def answered(dial: Dial, out: SbcLeg) -> None:
            record.outcome = "completed"
            target.state = "ended"
            target.proxy.legs.pop(target.ref.id, None)
            consult.state = "ended"

        def failed(dial: Dial, status: int) -> None:
            record.outcome = "failed"

        dial = Dial(
            self,
            call,
            target.remote_number,
            call.caller,
            purpose="replaces",
            headers=[("Replaces", replaces)],
            on_answer=answered,
            on_failure=failed,
        )
        call.dials.append(dial)
        dial.start()
        self.flush()
        return record

    def escalate(self, user: TeamsUserAgent, call: Any) -> MsCall:
        """Escalation of a 1:1 call to a group call (Part 8.5 [DOC]: "Media Processors are always
        inserted for escalation from 1:1 to a group call"): a re-INVITE moves the SBC leg to the
        conference Media Processor (settings.conference_processor_address, [INF]); the members
        show ``InAConferenceCall`` (Part 11).  There is no way back (Part 8.4 [DOC] S12:
        "De-escalation ... never happens as per design"), so a second escalation does nothing."""
        assert isinstance(call, MsCall)
        if call.conference:
            return call
        leg = self._sbc_leg(call)
        call.conference = True
        leg.sdp_version += 1
        leg.media_address = self.settings.conference_processor_address
        leg.proxy.ua.reinvite(leg.ref, leg.sdp(), now=self.now())
        for member in list(call.users):
            try:
                self.presence.call_ended(member.user.graph_id, self.now())
                self.presence.call_started(member.user.graph_id, self.now(), conference=True)
            except LookupError:
                pass
        call.history.append(f"escalated to a group call by {user.upn}")
        self.flush()
        return call

    def add_participant(self, user: TeamsUserAgent, call: Any, number: str) -> MsCall:
        """Add a party to a call: it is escalated to a group call first (:meth:`escalate`),
        then the new party is dialled in (a PSTN number through the SBC, Part 3)."""
        assert isinstance(call, MsCall)
        self.escalate(user, call)
        other = self._by_number.get(number)
        if other is not None:
            call.state = "ringing"
            self._alert_user(call, other)
            call.state = "connected"
            return call
        dial = Dial(self, call, number, user.number or "", purpose="conference")
        call.dials.append(dial)
        dial.start()
        self.flush()
        return call


#: The global Direct Routing FQDN: hosts of Refer-To, Referred-By and History-Info (Part 5).
MICROSOFT_FQDN = "sip.pstnhub.microsoft.com"


def _param(uri: SipUri, name: str) -> str | None:
    for key, value in uri.params:
        if key.lower() == name:
            return value
    return None
