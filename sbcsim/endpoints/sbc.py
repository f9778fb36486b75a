"""The reference multi-tenant SBC: a B2BUA between a PSTN carrier and Microsoft's proxies.

It does what a certified carrier-hosting SBC must do (direct-routing-sip.md Parts 1, 2, 4, 5, 6,
7, 8 and the "Reference multi-tenant SBC emulator" list of Part 12), so that the lab can run a
whole test plan against a known-good SBC, and — with one of the named faults of
:mod:`sbcsim.endpoints.mutants` switched on — against a known-bad one.

Two user agents, one per side, with every call bridged between them:

* **Microsoft side** (TLS, mutual): one wildcard certificate ``*.<base domain>`` for every
  tenant; every request and response of a call carries the customer tenant's derived trunk FQDN
  in its Contact; OPTIONS from the carrier trunk FQDN to each proxy by name once a minute;
  X-MS-SBC on everything; SDES-SRTP with rtcp-mux; hold as ``a=inactive``; REFER handled by the
  SBC itself (202, sipfrag NOTIFYs, a new INVITE to the Refer-To URI with Referred-By unchanged,
  local ringback, the PSTN leg re-bridged); INVITE with Replaces accepted; failover
  sip -> sip2 -> sip3 on a 503 with Retry-After or a timeout, never after a 603.
* **PSTN side** (UDP or TCP): plain RTP/AVP; numbers in E.164 with ``user=phone``; the carrier
  gets each 18x once and the first early-media answer only.
* **Contact center** (Connect model, Part 10.2 [DOC]) on the PSTN side too: the carrier's calls
  to an IVR entry number of the topology's ``contact_center`` are relayed to the platform, and
  the platform's own calls go to Microsoft on the derived trunk its Request-URI names (the
  customer tenant's FQDN, Part 4.3 [DOC]), like any carrier call.

Media is anchored: the SBC puts its own address and ports in the SDP it sends each way, so a
leg can be re-bridged (transfer, Replaces) without touching the other one.  No RTP flows in the
lab; the SDP is what is checked.

Each behaviour carries a comment ``# Part N.M [GRADE]`` naming the rule of direct-routing-sip.md
it implements.  The mutant switches are consulted through :meth:`ReferenceSbc._faulty` at the
point where each behaviour happens.
"""

from __future__ import annotations

import base64
import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

import structlog

from sbcsim.dialog import (
    CallCancelled,
    CallEnded,
    CallEstablished,
    CallFailed,
    CallProgress,
    CallRef,
    CallState,
    IncomingCall,
    IncomingRequest,
    ReferReceived,
    ReinviteReceived,
    RequestCompleted,
    RequestHandle,
    SessionTimerConfig,
    StandaloneCompleted,
    UserAgent,
    refer_target,
    replaces_value,
)
from sbcsim.dialog.useragent import DEFAULT_ALLOW, DEFAULT_SUPPORTED
from sbcsim.endpoints.mutants import MUTANTS, Mutant, get_mutant
from sbcsim.errors import ConfigError, LocalProtocolError, ProtocolError, TransportError
from sbcsim.ids import IdGenerator
from sbcsim.net.base import Address, PeerInfo, TlsIdentity, TransportName
from sbcsim.net.memory import MemoryNetwork, identity_matches
from sbcsim.node import Cancellable, Node
from sbcsim.sim import Simulator
from sbcsim.sip.headers import NameAddr
from sbcsim.sip.message import Request, Response
from sbcsim.sip.sdp import (
    Connection,
    Crypto,
    CryptoKey,
    Direction,
    MediaDescription,
    Origin,
    RtpMap,
    SessionDescription,
    answer_direction,
    intersect_formats,
)
from sbcsim.sip.uri import SipUri, TelUri, Uri
from sbcsim.stack import UaOptions, make_ua
from sbcsim.topology import Tenant, Topology
from sbcsim.transaction.events import Outgoing

if TYPE_CHECKING:
    from sbcsim.dialog import UaEvent

__all__ = [
    "SBC_CODECS",
    "SRTP_SUITE",
    "MicrosoftSideStack",
    "ReferenceSbc",
    "Resolve",
    "SbcEvent",
    "SbcSettings",
    "microsoft_side_options",
    "normalise_number",
    "pstn_side_options",
    "sbc_identity",
    "trusts_microsoft",
]

log = structlog.get_logger("sbcsim.sbc")

Side = Literal["teams", "pstn"]
Resolve = Callable[[str], Address | None]

#: The SDES suite the SBC offers and accepts toward Microsoft.  # Part 8.1 [DOC]
SRTP_SUITE = "AES_CM_128_HMAC_SHA1_80"

#: The codecs the SBC supports on both sides.  # Part 8.2 [DOC] (G.711, G.722, G.729), Part 8.3
#: [INF] (telephone-event 101, comfort noise 13)
SBC_CODECS: tuple[RtpMap, ...] = (
    RtpMap(0, "PCMU", 8000),
    RtpMap(8, "PCMA", 8000),
    RtpMap(9, "G722", 8000),
    RtpMap(18, "G729", 8000),
    RtpMap(101, "telephone-event", 8000),
    RtpMap(13, "CN", 8000),
)

_AUXILIARY = frozenset({"telephone-event", "cn"})
_DEFAULT_FMTPS: Mapping[str, str] = {"telephone-event": "0-16"}
_HOLD_ADDRESS = "0.0.0.0"
_INBOUND_HISTORY = ("History-Info",)
_PASS_TOWARD_PSTN = ("P-Asserted-Identity", "Privacy")


# ------------------------------------------------------------------------------ settings


@dataclass(frozen=True, slots=True)
class SbcSettings:
    """The reference SBC's knobs; durations are seconds on the lab clock."""

    #: How often OPTIONS go to every proxy.  # Part 1.3 [DOC]: "every minute" by default
    options_interval: float = 60.0
    #: When the first OPTIONS cycle starts, after :meth:`ReferenceSbc.start`.
    options_start_delay: float = 0.0
    #: The country code and national number length used to bring carrier numbers to E.164.
    country_code: str = "1"
    national_number_length: int = 10
    #: Codecs the SBC supports; offers are intersected with them.  # Part 8.2 [DOC]
    codecs: tuple[RtpMap, ...] = SBC_CODECS
    #: Packetization of offers the SBC makes up itself.
    ptime: int = 20
    #: Session timer (RFC 4028) asked for on the SBC's own INVITEs.  # Part 6.4 [DOC]: honoured
    #: as refresher or refreshee
    session_expires: int = 1800
    min_se: int = 90
    session_refresher: Literal["uac", "uas"] = "uac"
    #: Media port ranges (even ports, inclusive) on the Microsoft and PSTN sides.
    teams_media_ports: tuple[int, int] = (40000, 49998)
    pstn_media_ports: tuple[int, int] = (30000, 39998)
    #: ``User-Agent``/``Server`` value; ``None`` uses ``vendor model/version`` of the topology.
    user_agent: str | None = None

    def __post_init__(self) -> None:
        if not (self.options_interval > 0 and math.isfinite(self.options_interval)):
            raise ConfigError(f"options_interval must be positive, got {self.options_interval!r}")
        if not self.options_start_delay >= 0:
            raise ConfigError("options_start_delay must be >= 0")
        if not self.country_code.isdigit() or self.national_number_length < 4:
            raise ConfigError("country_code must be digits and national_number_length >= 4")
        if not any(c.encoding.lower() not in _AUXILIARY for c in self.codecs):
            raise ConfigError("the SBC needs at least one real codec")
        for name in ("teams_media_ports", "pstn_media_ports"):
            low, high = getattr(self, name)
            if not 0 < low < high <= 65535:
                raise ConfigError(f"{name} must be a (low, high) port range, got {(low, high)}")
        SessionTimerConfig(
            session_expires=self.session_expires,
            min_se=self.min_se,
            refresher=self.session_refresher,
        )

    @classmethod
    def from_overrides(cls, overrides: Mapping[str, Any]) -> SbcSettings:
        """Settings from keyword overrides; an unknown key is a :class:`ConfigError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"unknown SBC setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**overrides)


# ------------------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class SbcEvent:
    """Something the SBC did that is not a SIP message: a failover, ringback, a transfer step.

    ``kind`` is one of ``options_sent``, ``options_answered``, ``call_routed``,
    ``call_rejected``, ``failover``, ``ringback_started``, ``ringback_stopped``,
    ``transfer_started``, ``transfer_completed``, ``transfer_failed``, ``call_replaced``.
    """

    time: float
    kind: str
    call_id: str = ""
    detail: str = ""


# ------------------------------------------------------------------------------ numbers

_VISUAL_SEPARATORS = str.maketrans("", "", " -.()")


def normalise_number(raw: str, country_code: str = "1", national_length: int = 10) -> str | None:
    """A carrier-side number in E.164 (``+`` and 7 to 15 digits), or ``None``.

    Microsoft matches users by the E.164 number in the Request-URI.  # Part 2.1 [DOC]/[SUP]
    Accepted forms: ``+E164``; ``00`` + international number; ``011`` + international number in
    the North American plan; a national number of ``national_length`` digits; the country code
    followed by a national number.  Visual separators are ignored.
    """
    text = raw.strip().translate(_VISUAL_SEPARATORS)
    plus = text.startswith("+")
    digits = text[1:] if plus else text
    if not digits.isascii() or not digits.isdigit():
        return None
    if plus:
        number = digits
    elif digits.startswith("00"):
        number = digits[2:]
    elif country_code == "1" and digits.startswith("011"):
        number = digits[3:]
    elif len(digits) == national_length:
        number = country_code + digits
    elif digits.startswith(country_code) and len(digits) == len(country_code) + national_length:
        number = digits
    else:
        return None
    if not 7 <= len(number) <= 15 or number.startswith("0"):
        return None
    return "+" + number


def _uri_user(uri: Uri) -> str | None:
    if isinstance(uri, SipUri):
        user = uri.user
        return None if user is None else user.split(";", 1)[0]
    if isinstance(uri, TelUri):
        return uri.number
    return None


# ------------------------------------------------------------------------------ media


@dataclass(slots=True, eq=False)
class _MediaLeg:
    """The SBC's end of one call leg's media: its address and port, and what it negotiated."""

    side: Side
    address: str
    port: int
    session_id: int
    key: str = ""  # SDES inline key||salt, base64 (Microsoft side)
    version: int = 1
    core: bytes | None = None  # last body sent, with origin version 0: to see a change
    direction: Direction = Direction.SENDRECV  # the direction we last sent
    remote_sdp: bytes | None = None  # the last body the peer sent
    codecs: list[RtpMap] = field(default_factory=list)  # negotiated, in this leg's numbering
    fmtps: dict[int, str] = field(default_factory=dict)
    ptime: int | None = None

    def stamp(self, session: SessionDescription) -> bytes:
        """The body of ``session`` with this leg's origin; the version grows only when the body
        changed since the last one sent (RFC 3264 §8)."""
        addrtype = "IP6" if ":" in self.address else "IP4"
        session.origin = Origin("sbcsim", str(self.session_id), 0, "IN", addrtype, self.address)
        core = session.to_bytes()
        if core != self.core:
            if self.core is not None:
                self.version += 1
            self.core = core
        session.origin = Origin(
            "sbcsim", str(self.session_id), self.version, "IN", addrtype, self.address
        )
        return session.to_bytes()


@dataclass(slots=True, eq=False)
class _Offer:
    """An SDP offer the SBC received: what its answer has to match."""

    side: Side
    session: SessionDescription
    audio_index: int
    codecs: list[RtpMap]  # the offered codecs the SBC supports, in the offer's numbering
    fmtps: dict[int, str]
    ptime: int | None
    direction: Direction
    proto: str
    crypto: Crypto | None  # the offered crypto the SBC accepts (Microsoft side)
    rtcp_mux: bool


class _PortPool:
    """Even media ports handed out in turn over a range (wrapping around)."""

    def __init__(self, low: int, high: int) -> None:
        self.low = low + (low % 2)
        self.high = high
        self.next = self.low

    def take(self) -> int:
        port = self.next
        self.next = self.low if port + 2 > self.high else port + 2
        return port


# ------------------------------------------------------------------------------ call records


@dataclass(slots=True, eq=False)
class _Relay:
    """A re-INVITE waiting for the other side's answer."""

    handle: RequestHandle | None  # the peer's re-INVITE to answer; None for our own
    offer: _Offer | None


@dataclass(slots=True, eq=False)
class _Transfer:
    """A REFER from Microsoft being carried out."""

    handle: RequestHandle
    old: CallRef
    new: CallRef
    leg: _MediaLeg
    ringback: bool = False


@dataclass(slots=True, eq=False)
class _TrunkHop:
    """A carrier call relayed to the contact-center platform: two PSTN-side calls.

    Both ends speak plain RTP on the SBC's trunk side, so the SDP is passed through as it is
    [INF]; only the signalling is relayed (progress, answer, re-INVITEs, the end of the call).
    """

    carrier: CallRef
    platform: CallRef
    relays: dict[int, RequestHandle] = field(default_factory=dict)


@dataclass(slots=True, eq=False)
class _Bridge:
    """One call through the SBC: a PSTN leg and a Microsoft leg."""

    direction: Literal["inbound", "outbound"]
    tenant: Tenant
    pstn_number: str
    teams_number: str
    pstn_leg: _MediaLeg
    teams_leg: _MediaLeg
    pstn: CallRef | None = None
    teams: CallRef | None = None
    offer: _Offer | None = None  # the offer of the call-creating INVITE
    late_offer: bool = False  # the carrier's INVITE had no SDP: it gets an offer in our 200
    hunt: list[str] = field(default_factory=list)
    attempt: int = 0
    teams_headers: tuple[tuple[str, str], ...] = ()
    teams_sdp: bytes | None = None
    sent_18x: set[int] = field(default_factory=set)
    early_sdp_sent: bool = False
    ended: bool = False
    relays: dict[int, _Relay] = field(default_factory=dict)
    transfer: _Transfer | None = None

    def leg(self, side: Side) -> _MediaLeg:
        return self.teams_leg if side == "teams" else self.pstn_leg

    def call(self, side: Side) -> CallRef | None:
        return self.teams if side == "teams" else self.pstn


def _other(side: Side) -> Side:
    return "pstn" if side == "teams" else "teams"


# ------------------------------------------------------------------------------ the stack seam


class MicrosoftSideStack:
    """The Microsoft-side UA as its node sees it: every outgoing message passes ``hook``.

    The SBC adds X-MS-SBC there (Part 12 [OBS/INF]) — on every request and response, those the
    UA core makes by itself included — and some mutants drop messages there (``no-ack``).
    """

    def __init__(self, ua: UserAgent) -> None:
        self.ua = ua
        self.hook: Callable[[Outgoing], bool] | None = None

    def receive(self, message: Request | Response, peer: PeerInfo, now: float) -> None:
        self.ua.receive(message, peer, now)

    def transport_error(
        self, remote: Address, transport: TransportName, exc: TransportError, now: float
    ) -> None:
        self.ua.transport_error(remote, transport, exc, now)

    def handle_timer(self, now: float) -> None:
        self.ua.handle_timer(now)

    def get_timer(self) -> float | None:
        return self.ua.get_timer()

    def messages_to_send(self) -> list[Outgoing]:
        out = self.ua.messages_to_send()
        hook = self.hook
        return out if hook is None else [o for o in out if hook(o)]

    def next_events(self) -> list[UaEvent]:
        return self.ua.next_events()


def microsoft_side_options(
    topology: Topology,
    settings: SbcSettings,
    mutant: Mutant | None,
    resolve: Resolve,
    port: int,
) -> UaOptions:
    """How the Microsoft-side UA is built: carrier FQDN in Via/Contact, the Allow list, DNS."""
    allow = DEFAULT_ALLOW
    if mutant is not None and mutant.name == "no-refer-in-allow":
        allow = tuple(m for m in DEFAULT_ALLOW if m != "REFER")
    # else: Part 5.1 [DOC]: Allow lists REFER (and NOTIFY), so Microsoft hands transfers over

    def ua_resolve(uri: SipUri, transport: TransportName) -> Address | None:
        # In-dialog requests go to Microsoft's Contact by name.  # Part 6.1 [DOC]
        if uri.host_is_ip:
            return None
        found = resolve(uri.host)
        return None if found is None else (found[0], uri.port or found[1])

    return UaOptions(
        user_agent=_user_agent(topology, settings),
        session_timer=_session_timer(settings),
        contact_host=topology.carrier.trunk_fqdn,
        app_answers=("INVITE", "OPTIONS"),
        extra={"allow": allow, "supported": DEFAULT_SUPPORTED, "resolve": ua_resolve},
    )


def pstn_side_options(topology: Topology, settings: SbcSettings) -> UaOptions:
    """How the PSTN-side UA is built."""
    return UaOptions(
        user_agent=_user_agent(topology, settings),
        session_timer=_session_timer(settings),
        app_answers=("INVITE",),
    )


def sbc_identity(topology: Topology, mutant: Mutant | None) -> TlsIdentity:
    """The certificate the SBC shows Microsoft: one wildcard for every tenant.  # Part 4.1 [DOC]"""
    if mutant is not None and mutant.name == "tls-wrong-cert":
        return TlsIdentity((topology.carrier.trunk_fqdn,))
    return TlsIdentity((f"*.{topology.carrier.base_domain}",))


def trusts_microsoft(topology: Topology) -> Callable[[TlsIdentity], bool]:
    """Accept a peer certificate only if it names one of the Microsoft proxies.  # Part 7.3 [DOC]"""
    fqdns = tuple(p.fqdn for p in topology.microsoft.proxies)

    def trusted(identity: TlsIdentity) -> bool:
        return identity.valid and any(identity_matches(identity, fqdn) for fqdn in fqdns)

    return trusted


def _user_agent(topology: Topology, settings: SbcSettings) -> str:
    sbc = topology.sbc
    return settings.user_agent or f"{sbc.vendor} {sbc.model}/{sbc.version}"


def _session_timer(settings: SbcSettings) -> SessionTimerConfig:
    return SessionTimerConfig(
        session_expires=settings.session_expires,
        min_se=settings.min_se,
        refresher=settings.session_refresher,
    )


# ------------------------------------------------------------------------------ the SBC


class ReferenceSbc:
    """The reference carrier-hosting SBC (see the module docstring).

    Build it with :meth:`build` (memory network), :meth:`factory` (for ``Lab.build``) or
    :func:`sbcsim.endpoints.sbc_live.start_live_sbc` (real sockets).
    """

    def __init__(
        self,
        topology: Topology,
        *,
        ms_node: Node,
        ms_stack: MicrosoftSideStack,
        pstn_node: Node,
        resolve: Resolve,
        ms_address: Address,
        pstn_address: Address,
        settings: SbcSettings | None = None,
        mutant: Mutant | str | None = None,
        random_bytes: Callable[[int], bytes] | None = None,
    ) -> None:
        self.topology = topology
        self.settings = settings or SbcSettings()
        self.mutant: Mutant | None = get_mutant(mutant) if isinstance(mutant, str) else mutant
        self.ms_node = ms_node
        self.pstn_node = pstn_node
        self.ms_ua: UserAgent = ms_stack.ua
        pstn_stack = pstn_node.stack
        if not isinstance(pstn_stack, UserAgent):
            raise TypeError("the PSTN-side node must run a UserAgent")
        self.pstn_ua: UserAgent = pstn_stack
        self._resolve = resolve
        self.ms_address = ms_address
        self.pstn_address = pstn_address
        self._random_bytes = random_bytes or random.Random(0).randbytes
        self.x_ms_sbc = topology.sbc.x_ms_sbc
        self.events: list[SbcEvent] = []
        #: The last OPTIONS outcome per proxy FQDN: (time, status).
        self.options_results: dict[str, tuple[float, int]] = {}
        self._options_pending: dict[int, str] = {}
        self._options_timer: Cancellable | None = None
        self._pinned: dict[str, Address] = {}
        self._busy_until: dict[str, float] = {}
        self._teams_calls: dict[int, _Bridge] = {}
        self._pstn_calls: dict[int, _Bridge] = {}
        self._bye_on_ack: set[tuple[Side, int]] = set()
        self._invite_branches: dict[str, None] = {}
        self._hops: dict[int, _TrunkHop] = {}
        self._teams_ports = _PortPool(*self.settings.teams_media_ports)
        self._pstn_ports = _PortPool(*self.settings.pstn_media_ports)
        self._next_session = 1000
        self._started = False
        self.log = log.bind(node="sbc")
        ms_stack.hook = self._leaving_for_microsoft
        ms_node.on_event = self._on_ms_event
        pstn_node.on_event = self._on_pstn_event

    # -------------------------------------------------------------------- construction

    @classmethod
    def build(
        cls,
        sim: Simulator,
        net: MemoryNetwork,
        topology: Topology,
        *,
        resolve: Resolve | None = None,
        mutant: Mutant | str | None = None,
        settings: SbcSettings | None = None,
        start: bool = True,
        **overrides: Any,
    ) -> ReferenceSbc:
        """The SBC on a memory network at the topology's SBC addresses.

        The Microsoft side listens on TLS with the carrier wildcard certificate and requires the
        proxies' certificates; the PSTN side on the topology's PSTN-side transport.  ``resolve``
        is the lab's DNS (default: the topology's).  ``overrides`` change :class:`SbcSettings`.
        """
        if settings is None:
            settings = SbcSettings.from_overrides(overrides)
        elif overrides:
            raise ConfigError("give either settings or keyword overrides, not both")
        found = get_mutant(mutant) if isinstance(mutant, str) else mutant
        resolver = resolve or topology.resolve
        ms = topology.sbc.microsoft_side
        if ms.transport != "tls":
            raise ConfigError("the SBC's Microsoft side must be TLS (Part 7.2)")
        ms_ua = make_ua(
            "sbc-microsoft",
            ms.address,
            ms.port,
            "tls",
            ids=IdGenerator(sim.derive_rng("ids:sbc-microsoft")),
            rand=sim.derive_rng("rand:sbc-microsoft").random,
            options=microsoft_side_options(topology, settings, found, resolver, ms.port),
        )
        ms_stack = MicrosoftSideStack(ms_ua)
        ms_node = Node("sbc-microsoft", ms_stack, sim.clock, sim.call_at)
        ms_node.attach(
            net.attach(
                ms.address,
                ms_node,
                udp_ports=(),
                tls_ports=(ms.port,),
                tls_identity=sbc_identity(topology, found),
                require_client_cert=True,  # Part 7.3 [DOC]: mutual TLS
                trusted=trusts_microsoft(topology),
            )
        )
        ps = topology.sbc.pstn_side
        pstn_ua = make_ua(
            "sbc-pstn",
            ps.address,
            ps.port,
            ps.transport,
            ids=IdGenerator(sim.derive_rng("ids:sbc-pstn")),
            rand=sim.derive_rng("rand:sbc-pstn").random,
            options=pstn_side_options(topology, settings),
        )
        pstn_node = Node("sbc-pstn", pstn_ua, sim.clock, sim.call_at)
        pstn_node.attach(
            net.attach(
                ps.address,
                pstn_node,
                udp_ports=(ps.port,) if ps.transport == "udp" else (),
                tcp_ports=(ps.port,) if ps.transport == "tcp" else (),
                tls_ports=(ps.port,) if ps.transport == "tls" else (),
                tls_identity=sbc_identity(topology, None) if ps.transport == "tls" else None,
            )
        )
        srtp = sim.derive_rng("sbc:srtp")
        sbc = cls(
            topology,
            ms_node=ms_node,
            ms_stack=ms_stack,
            pstn_node=pstn_node,
            resolve=resolver,
            ms_address=(ms.address, ms.port),
            pstn_address=(ps.address, ps.port),
            settings=settings,
            mutant=found,
            random_bytes=srtp.randbytes,
        )
        if start:
            sbc.start()
        return sbc

    @classmethod
    def factory(cls, mutant: str | None = None, **settings: Any) -> Callable[[Any], ReferenceSbc]:
        """A ``sbc_factory`` for ``Lab.build``: the SBC on ``lab.net`` at the topology's
        addresses, with ``lab.resolve`` as its DNS, ``mutant`` (a name of
        :data:`~sbcsim.endpoints.mutants.MUTANTS`) switched on, and ``settings`` applied."""
        found = get_mutant(mutant) if mutant is not None else None
        parsed = SbcSettings.from_overrides(settings)

        def build(lab: Any) -> ReferenceSbc:
            return cls.build(
                lab.sim, lab.net, lab.topology, resolve=lab.resolve, mutant=found, settings=parsed
            )

        return build

    # -------------------------------------------------------------------- life cycle

    def start(self) -> None:
        """Start the OPTIONS keep-alive cycle (once)."""
        if self._started:
            return
        self._started = True
        for proxy in self.topology.microsoft.proxies:
            address = self._resolve(proxy.fqdn)
            if address is not None:
                self._pinned[proxy.fqdn] = address
        if self._faulty("no-options"):
            return
        # Part 1.1 [DOC]: the SBC starts the OPTIONS exchange; Part 1.3 [DOC]: every minute
        self._options_timer = self._later(self.settings.options_start_delay, self._options_cycle)

    def stop(self) -> None:
        """Stop the keep-alive cycle (calls in progress are left as they are)."""
        if self._options_timer is not None:
            self._options_timer.cancel()
            self._options_timer = None

    def close(self) -> None:
        """Stop the keep-alive cycle and close both transports."""
        self.stop()
        for node in (self.ms_node, self.pstn_node):
            if node.transport is not None:
                node.transport.close()

    @property
    def active_calls(self) -> int:
        """Calls currently bridged (or being set up) through the SBC."""
        bridges = {id(b) for b in (*self._teams_calls.values(), *self._pstn_calls.values())}
        return len(bridges) + len({id(h) for h in self._hops.values()})

    # -------------------------------------------------------------------- helpers

    def _faulty(self, name: str) -> bool:
        """Whether the mutant ``name`` is switched on (a typo in a name is a bug, not a no)."""
        if name not in MUTANTS:
            raise KeyError(name)
        return self.mutant is not None and self.mutant.name == name

    def _now(self) -> float:
        return self.ms_node.now()

    def _later(self, delay: float, fn: Callable[[], None]) -> Cancellable:
        def run() -> None:
            fn()
            self._poke()

        return self.ms_node.call_later(delay, run)

    def _poke(self) -> None:
        self.ms_node.poke()
        self.pstn_node.poke()

    def _event(self, kind: str, call_id: str = "", detail: str = "") -> None:
        self.events.append(SbcEvent(self._now(), kind, call_id, detail))
        if kind.startswith("options_"):
            self.log.debug(kind, detail=detail)  # once a minute per proxy: not worth a line
        else:
            self.log.info(kind, call_id=call_id, detail=detail)

    def _new_leg(self, side: Side) -> _MediaLeg:
        self._next_session += 1
        if side == "teams":
            key = base64.b64encode(self._random_bytes(30)).decode("ascii")
            return _MediaLeg(
                "teams", self.ms_address[0], self._teams_ports.take(), self._next_session, key
            )
        return _MediaLeg("pstn", self.pstn_address[0], self._pstn_ports.take(), self._next_session)

    def _number(self, raw: str | None) -> str | None:
        if raw is None:
            return None
        s = self.settings
        return normalise_number(raw, s.country_code, s.national_number_length)

    def _teams_contact(self, tenant: Tenant, user: str) -> str:
        """The Contact of every message of a call toward Microsoft."""
        host = tenant.trunk_fqdn  # Part 4.3 [DOC], Part 2.1 [DOC]: the tenant's derived trunk
        if self._faulty("contact-ip"):
            host = self.ms_address[0]
        elif self._faulty("contact-wrong-tenant"):
            others = [t for t in self.topology.tenants if t.id != tenant.id]
            base = self.topology.carrier.base_domain
            host = others[0].trunk_fqdn if others else f"other-tenant.{base}"
        elif self._faulty("contact-carrier-fqdn"):
            host = self.topology.carrier.trunk_fqdn
        # Part 2.1 [DOC]: `<sip:+E164@FQDN:port;transport=tls>`; Part 1.2 [DOC]: no sips:
        userinfo = f"{user}@" if user else ""
        return f"<sip:{userinfo}{host}:{self.ms_address[1]};transport=tls>"

    def _carrier_contact(self) -> str:
        host = self.topology.carrier.trunk_fqdn  # Part 1.2 [DOC], Part 4.3 [DOC]
        if self._faulty("options-contact-ip"):
            host = self.ms_address[0]
        return f"<sip:{host}:{self.ms_address[1]};transport=tls>"

    # -------------------------------------------------------------------- outgoing filter

    def _leaving_for_microsoft(self, out: Outgoing) -> bool:
        """Every message toward Microsoft passes here; False drops it."""
        message = out.message
        if isinstance(message, Request):
            if message.method == "INVITE" and self._faulty("no-ack"):
                self._remember_branch(message)
            elif message.method == "ACK" and self._faulty("no-ack"):
                branch = message.top_via.branch or ""
                if branch not in self._invite_branches:
                    return False  # an ACK for a 2xx (a new branch): never sent
            elif message.method == "NOTIFY" and self._faulty("no-sipfrag-notify"):
                event = message.event
                if event is not None and event.package.lower() == "refer":
                    return False
        if not self._faulty("no-x-ms-sbc") and "X-MS-SBC" not in message.headers:
            # Part 12 SBC 5 [OBS/INF] (S31): X-MS-SBC: Vendor/Model/Firmware on everything
            message.headers.append("X-MS-SBC", self.x_ms_sbc)
        return True

    def _remember_branch(self, invite: Request) -> None:
        branch = invite.top_via.branch
        if branch:
            self._invite_branches[branch] = None
            if len(self._invite_branches) > 4096:
                del self._invite_branches[next(iter(self._invite_branches))]

    # -------------------------------------------------------------------- OPTIONS

    def _options_cycle(self) -> None:
        # Part 1.2 [SUP]: all three proxy FQDNs, every cycle
        for proxy in self.topology.microsoft.proxies:
            self._send_options(proxy.fqdn)
        self._options_timer = self._later(self.settings.options_interval, self._options_cycle)

    def _send_options(self, fqdn: str) -> None:
        server_name: str | None = fqdn
        host = fqdn
        if self._faulty("options-to-ip"):
            address = self._pinned.get(fqdn)
            if address is None:
                return
            host, server_name = address[0], None
        else:
            # Part 1.2 [SUP]: to the FQDN, resolved each time (the IP may change)
            address = self._resolve(fqdn)
            if address is None:
                self.options_results[fqdn] = (self._now(), 503)
                return
        carrier = self.topology.carrier.trunk_fqdn
        port = self.ms_address[1]
        ref = self.ms_ua.send_request(
            "OPTIONS",
            f"sip:{host}:{address[1]}",
            from_=f"<sip:{carrier}:{port};transport=tls>",  # Part 1.1 [DOC]: from the carrier
            to=f"<sip:{host}:{address[1]}>",
            remote=address,
            transport="tls",
            server_name=server_name,
            contact=self._carrier_contact(),  # Part 1.2 [DOC]: Contact required, FQDN only
            now=self._now(),
        )
        self._options_pending[ref.id] = fqdn
        self._event("options_sent", detail=fqdn)

    def _options_done(self, ev: StandaloneCompleted) -> None:
        fqdn = self._options_pending.pop(ev.ref.id, None)
        if fqdn is not None:
            self.options_results[fqdn] = (self._now(), ev.status)
            self._event("options_answered", detail=f"{fqdn} {ev.status}")

    def _answer_options(self, handle: RequestHandle) -> None:
        # Part 1.1 [DOC]: the SBC answers Microsoft's OPTIONS with 200 OK
        allow = DEFAULT_ALLOW
        if self._faulty("no-refer-in-allow"):
            allow = tuple(m for m in DEFAULT_ALLOW if m != "REFER")
        self.ms_ua.respond_request(
            handle,
            200,
            headers=(
                ("Contact", self._carrier_contact()),
                ("Allow", ", ".join(allow)),
                ("Accept", "application/sdp"),
                ("Supported", ", ".join(DEFAULT_SUPPORTED)),
            ),
            now=self._now(),
        )

    # -------------------------------------------------------------------- event dispatch

    def _on_ms_event(self, ev: object) -> None:
        match ev:
            case IncomingCall(call=call, request=request, replaces=replaces):
                if replaces is not None:
                    self._teams_replaces(call, request, replaces)
                else:
                    self._outbound_call(call, request)
            case CallProgress(call=call, status=status, reason=reason, sdp=sdp):
                self._teams_progress(call, status, reason, sdp)
            case CallEstablished(call=call, sdp=sdp):
                self._established("teams", call, sdp)
            case CallFailed(call=call, status=status, reason=reason, response=response):
                self._teams_failed(call, status, reason, response)
            case CallCancelled(call=call):
                self._cancelled("teams", call)
            case CallEnded(call=call):
                self._leg_ended("teams", call)
            case ReinviteReceived(call=call, handle=handle, sdp=sdp) if handle is not None:
                self._reinvite("teams", call, handle, sdp)
            case ReferReceived() as refer:
                self._refer(refer)
            case RequestCompleted(call=call, ref=ref, status=status, response=response):
                self._relay_done("teams", call, ref.id, status, response)
            case IncomingRequest(handle=handle, request=request) if handle is not None:
                if request.method == "OPTIONS":
                    self._answer_options(handle)
                else:
                    self.ms_ua.respond_request(handle, 501, now=self._now())
            case StandaloneCompleted() as done:
                self._options_done(done)
            case _:
                pass
        self._poke()

    def _on_pstn_event(self, ev: object) -> None:
        if self._hop_event(ev):
            self._poke()
            return
        match ev:
            case IncomingCall(call=call, request=request, replaces=replaces, peer=peer):
                if replaces is not None:
                    self._pstn_replaces(call, request, replaces)
                elif self._from_contact_center(peer):
                    self._contact_center_call(call, request)
                elif not self._to_contact_center(call, request):
                    self._inbound_call(call, request)
            case CallProgress(call=call, status=status, reason=reason, sdp=sdp):
                self._pstn_progress(call, status, reason, sdp)
            case CallEstablished(call=call, sdp=sdp):
                self._established("pstn", call, sdp)
            case CallFailed(call=call, status=status, reason=reason):
                self._pstn_failed(call, status, reason)
            case CallCancelled(call=call):
                self._cancelled("pstn", call)
            case CallEnded(call=call):
                self._leg_ended("pstn", call)
            case ReinviteReceived(call=call, handle=handle, sdp=sdp) if handle is not None:
                self._reinvite("pstn", call, handle, sdp)
            case RequestCompleted(call=call, ref=ref, status=status, response=response):
                self._relay_done("pstn", call, ref.id, status, response)
            case IncomingRequest(handle=handle) if handle is not None:
                self.pstn_ua.respond_request(handle, 501, now=self._now())
            case _:
                pass
        self._poke()

    def _ua(self, side: Side) -> UserAgent:
        return self.ms_ua if side == "teams" else self.pstn_ua

    def _index(self, side: Side) -> dict[int, _Bridge]:
        return self._teams_calls if side == "teams" else self._pstn_calls

    # -------------------------------------------------------------------- SDP

    def _read_offer(self, side: Side, body: bytes) -> _Offer | None:
        """The parts of an offer the SBC needs, or None when it cannot answer it (488)."""
        try:
            session = SessionDescription.parse(body)
            found = next(
                (
                    (i, m)
                    for i, m in enumerate(session.media)
                    if m.media == "audio" and m.port != 0 and m.is_rtp
                ),
                None,
            )
            if found is None:
                return None
            index, media = found
            codecs = intersect_formats(media, self.settings.codecs)  # Part 8.2 [DOC]
            if not codecs:
                return None
            fmtps = {int(f.format): f.parameters for f in media.fmtps if f.format.isdigit()}
            crypto: Crypto | None = None
            if side == "teams" and "SAVP" in media.proto:
                # Part 8.1 [DOC]/[INF]: choose AES_CM_128_HMAC_SHA1_80 among Microsoft's offers
                crypto = next(
                    (
                        c
                        for c in media.cryptos
                        if c.suite == SRTP_SUITE and c.has_valid_key_lengths()
                    ),
                    None,
                )
                if crypto is None:
                    return None
            return _Offer(
                side,
                session,
                index,
                codecs,
                fmtps,
                media.ptime,
                _direction(session, media),
                media.proto,
                crypto,
                media.rtcp_mux,
            )
        except ProtocolError:
            return None

    def _toward_teams(self, direction: Direction) -> Direction:
        if direction in (Direction.SENDONLY, Direction.RECVONLY) and not self._faulty(
            "hold-sendonly"
        ):
            # Part 8.4 [DOC]: the proxy only understands a=inactive for hold
            return Direction.INACTIVE
        return direction

    def _render(
        self,
        leg: _MediaLeg,
        codecs: Sequence[RtpMap],
        fmtps: Mapping[int, str],
        ptime: int | None,
        direction: Direction,
        *,
        answer_to: _Offer | None = None,
    ) -> bytes:
        """Our SDP for ``leg``: an offer, or the answer to ``answer_to``."""
        teams = leg.side == "teams"
        crypto: Crypto | None = None
        rtcp_mux = False
        if teams:
            direction = self._toward_teams(direction)
            plain = self._faulty("plain-rtp-to-teams")
            if answer_to is not None:
                proto = "RTP/AVP" if plain else answer_to.proto
                tag = answer_to.crypto.tag if answer_to.crypto is not None else None
            else:
                proto = "RTP/AVP" if plain else "RTP/SAVP"  # Part 8.1 [DOC]: SRTP toward Teams
                tag = 1
            if not plain and tag is not None:
                # Part 8.1 [DOC]: `inline:<key||salt>|2^31`, no MKI
                crypto = Crypto(tag, SRTP_SUITE, (CryptoKey("inline", leg.key, "2^31"),))
            # Part 8.3 [DOC]: RTP/RTCP multiplexing (RFC 8035) toward Microsoft
            rtcp_mux = not self._faulty("no-rtcp-mux") and (answer_to is None or answer_to.rtcp_mux)
        else:
            proto = "RTP/AVP" if answer_to is None else answer_to.proto
        audio = MediaDescription("audio", leg.port, proto, [str(c.payload_type) for c in codecs])
        for codec in codecs:
            audio.add_attribute("rtpmap", str(codec))
        for codec in codecs:
            params = fmtps.get(codec.payload_type)
            if params is not None:
                audio.add_attribute("fmtp", f"{codec.payload_type} {params}")
        if ptime is not None:
            audio.add_attribute("ptime", str(ptime))
        if crypto is not None:
            audio.add_attribute("crypto", str(crypto))
        if rtcp_mux:
            audio.add_attribute("rtcp-mux")
        audio.add_attribute(direction.value)
        media = [audio]
        if answer_to is not None:
            # RFC 3264 §6: as many m= lines as offered; the streams the SBC does not carry get 0
            media = [
                audio
                if i == answer_to.audio_index
                else MediaDescription(m.media, 0, m.proto, list(m.formats))
                for i, m in enumerate(answer_to.session.media)
            ]
        session = SessionDescription(
            Origin("sbcsim", "0", 0),
            session_name="sbcsim",
            connection=Connection.for_address(leg.address),
            media=media,
        )
        leg.direction = direction
        leg.codecs = list(codecs)
        leg.fmtps = dict(fmtps)
        leg.ptime = ptime
        return leg.stamp(session)

    def _relay_offer(self, bridge: _Bridge, offer: _Offer) -> bytes:
        """The offer the other side gets for ``offer`` (codecs intersected, media rewritten)."""
        target = bridge.leg(_other(offer.side))
        bridge.leg(offer.side).remote_sdp = offer.session.to_bytes()
        fmtps = {
            c.payload_type: offer.fmtps[c.payload_type]
            for c in offer.codecs
            if c.payload_type in offer.fmtps
        }
        return self._render(target, offer.codecs, fmtps, offer.ptime, offer.direction)

    def _fresh_offer(self, leg: _MediaLeg, codecs: Sequence[RtpMap] = ()) -> bytes:
        """An offer the SBC makes up (no offer to relay): its codecs, sendrecv."""
        chosen = list(codecs) or list(self.settings.codecs)
        fmtps = {
            c.payload_type: _DEFAULT_FMTPS[c.encoding.lower()]
            for c in chosen
            if c.encoding.lower() in _DEFAULT_FMTPS
        }
        fmtps.update(
            {pt: v for pt, v in leg.fmtps.items() if any(c.payload_type == pt for c in chosen)}
        )
        return self._render(
            leg, chosen, fmtps, leg.ptime or self.settings.ptime, Direction.SENDRECV
        )

    def _relay_answer(self, bridge: _Bridge, offer: _Offer, body: bytes | None) -> bytes | None:
        """Our answer to ``offer`` from the other side's answer ``body``; None if unusable."""
        if body is None:
            return None
        answerer = bridge.leg(_other(offer.side))
        try:
            session = SessionDescription.parse(body)
            media = next(
                (m for m in session.media if m.media == "audio" and m.port != 0 and m.is_rtp),
                None,
            )
            if media is None:
                return None
            their_codecs = media.codecs
            direction = _direction(session, media)
            ptime = media.ptime or offer.ptime
        except ProtocolError:
            return None
        codecs: list[RtpMap] = []
        for codec in their_codecs:
            match = next((o for o in offer.codecs if o.matches(codec)), None)
            if match is not None and match not in codecs:
                codecs.append(match)
        if not any(c.encoding.lower() not in _AUXILIARY for c in codecs):
            return None
        answerer.remote_sdp = body
        answerer.codecs = list(their_codecs)
        fmtps = {
            c.payload_type: offer.fmtps[c.payload_type]
            for c in codecs
            if c.payload_type in offer.fmtps
        }
        return self._render(
            bridge.leg(offer.side),
            codecs,
            fmtps,
            ptime,
            answer_direction(offer.direction, direction),
            answer_to=offer,
        )

    def _answer_locally(self, leg: _MediaLeg, offer: _Offer) -> bytes:
        """Answer an offer without asking the other side (Replaces, re-INVITE refreshes)."""
        leg.remote_sdp = offer.session.to_bytes()
        fmtps = {
            c.payload_type: offer.fmtps[c.payload_type]
            for c in offer.codecs
            if c.payload_type in offer.fmtps
        }
        return self._render(
            leg,
            offer.codecs,
            fmtps,
            offer.ptime,
            answer_direction(offer.direction, Direction.SENDRECV),
            answer_to=offer,
        )

    # -------------------------------------------------------------------- inbound: PSTN -> Teams

    def _inbound_call(
        self,
        call: CallRef,
        request: Request,
        headers: tuple[tuple[str, str], ...] = (),
        route: tuple[Tenant, str] | None = None,
    ) -> None:
        """A carrier call toward Microsoft; ``route`` (tenant, number) skips the routing table."""
        now = self._now()
        number = route[1] if route is not None else self._number(_uri_user(request.uri))
        if number is None:
            self.pstn_ua.respond(call, 484, now=now)
            self._event("call_rejected", request.call_id, "484 not an E.164 number")
            return
        # routing table: the tenant whose number ranges hold the called number (Part 4.3)
        tenant = route[0] if route is not None else self.topology.tenant_for_number(number)
        if tenant is None:
            self.pstn_ua.respond(call, 404, now=now)
            self._event("call_rejected", request.call_id, f"404 no tenant for {number}")
            return
        caller = self._caller_number(request)
        bridge = _Bridge(
            "inbound", tenant, caller, number, self._new_leg("pstn"), self._new_leg("teams")
        )
        bridge.pstn = call
        bridge.teams_headers = headers
        if request.body:
            offer = self._read_offer("pstn", request.body)
            if offer is None:
                self.pstn_ua.respond(call, 488, now=now)
                self._event("call_rejected", request.call_id, "488 no common codec")
                return
            bridge.offer = offer
            sdp = self._relay_offer(bridge, offer)
        else:
            # Part 2.1 [DOC]: no Delayed Offer toward Microsoft; the SBC offers itself and the
            # carrier gets an offer in the 200 OK
            bridge.late_offer = True
            sdp = self._fresh_offer(bridge.teams_leg)
        bridge.teams_sdp = sdp
        self._pstn_calls[call.id] = bridge
        self._event("call_routed", request.call_id, f"{number} -> {tenant.id}")
        bridge.hunt = self._hunt_order()
        self._send_teams_invite(bridge)

    def _caller_number(self, request: Request) -> str:
        """The caller's number for Microsoft: PAI first, then From, in E.164 when possible."""
        # Part 2.1 [SUP]: the caller ID shown comes from From; rewrite it from PAI
        candidates: list[Uri | None] = [na.uri for na in request.p_asserted_identity]
        candidates.append(request.from_.uri)
        for uri in candidates:
            if uri is None:
                continue
            number = self._number(_uri_user(uri))
            if number is not None:
                return number
        user = _uri_user(request.from_.uri) if request.from_.uri is not None else None
        return user or "anonymous"

    def _hunt_order(self) -> list[str]:
        fqdns = [p.fqdn for p in self.topology.microsoft.proxies]
        if self._faulty("no-failover"):
            return fqdns[:1]
        # Part 6.1 [DOC]: sip first, then sip2, then sip3; Part 6.2 [DOC]/[INF]: a datacenter
        # that answered 503 with Retry-After is not used again before that time
        now = self._now()
        free = [f for f in fqdns if self._busy_until.get(f, -math.inf) <= now]
        return free + [f for f in fqdns if f not in free]

    def _send_teams_invite(self, bridge: _Bridge) -> None:
        assert bridge.pstn is not None
        while bridge.attempt < len(bridge.hunt):
            fqdn = bridge.hunt[bridge.attempt]
            address = self._resolve(fqdn)
            if address is not None:
                break
            bridge.attempt += 1
        else:
            self._fail_inbound(bridge, 503, "Service Unavailable")
            return
        number, caller, tenant = bridge.teams_number, bridge.pstn_number, bridge.tenant
        sdp = bridge.teams_sdp
        ack_sdp: bytes | None = None
        if self._faulty("delayed-offer"):
            sdp, ack_sdp = None, sdp
        # Part 2.1 [DOC]: Request-URI `+E.164` with user=phone; the Contact names the tenant
        call = self.ms_ua.invite(
            f"sip:{number}@{fqdn}:{address[1]};user=phone",
            from_=f"<sip:{caller}@{tenant.trunk_fqdn};user=phone>",
            to=f"<sip:{number}@{fqdn};user=phone>",
            remote=address,
            transport="tls",
            sdp=sdp,
            ack_sdp=ack_sdp,
            server_name=fqdn,
            contact=self._teams_contact(tenant, caller),
            headers=bridge.teams_headers,
            now=self._now(),
        )
        if bridge.teams is not None:
            self._teams_calls.pop(bridge.teams.id, None)
        bridge.teams = call
        self._teams_calls[call.id] = bridge

    def _teams_progress(self, call: CallRef, status: int, reason: str, sdp: bytes | None) -> None:
        bridge = self._teams_calls.get(call.id)
        if bridge is None or status <= 100:
            return
        transfer = bridge.transfer
        if transfer is not None and call.id == transfer.new.id:
            self._transfer_progress(bridge, transfer, status, reason)
            return
        if call != bridge.teams or bridge.pstn is None:
            return
        if sdp is not None and not bridge.early_sdp_sent and not bridge.late_offer:
            assert bridge.offer is not None
            answer = self._relay_answer(bridge, bridge.offer, sdp)
            if answer is not None:
                # [SUP] (S19) via Part 2.3: the carrier gets the first 183-with-SDP only
                bridge.early_sdp_sent = True
                bridge.sent_18x.add(status)
                self._respond(bridge.pstn, "pstn", status, reason, answer)
                return
        if status in bridge.sent_18x:
            return  # forked 18x: the carrier hears one
        bridge.sent_18x.add(status)
        self._respond(bridge.pstn, "pstn", status, reason, None)

    def _teams_failed(
        self, call: CallRef, status: int, reason: str, response: Response | None
    ) -> None:
        bridge = self._teams_calls.pop(call.id, None)
        if bridge is None:
            return
        transfer = bridge.transfer
        if transfer is not None and call.id == transfer.new.id:
            self._transfer_failed(bridge, transfer, status, reason)
            return
        if call != bridge.teams or bridge.ended:
            return
        retry_after = _retry_after(response)
        busy = status == 503 and retry_after is not None
        timed_out = response is None  # 408 timeout, or 503 when the connection failed
        fqdn = bridge.hunt[bridge.attempt]
        if busy and retry_after is not None:
            # Part 6.2 [DOC]: terminate that connection and try the next datacenter
            self._busy_until[fqdn] = self._now() + retry_after
            self._close_connection(fqdn)
        retry = busy or timed_out
        if status == 603:
            # Part 2.3 [DOC]: "stop the retry efforts on the 603 response"
            retry = self._faulty("retry-after-603")
        if retry and bridge.attempt + 1 < len(bridge.hunt):
            bridge.attempt += 1
            nxt = bridge.hunt[bridge.attempt]
            self._event("failover", call.call_id, f"{fqdn} {status} -> {nxt}")
            self._send_teams_invite(bridge)
            return
        bridge.teams = None
        self._fail_inbound(bridge, status, reason)

    def _fail_inbound(self, bridge: _Bridge, status: int, reason: str) -> None:
        bridge.ended = True
        if bridge.pstn is not None:
            self._pstn_calls.pop(bridge.pstn.id, None)
            state = self.pstn_ua.call_state(bridge.pstn)
            if state in (CallState.INCOMING, CallState.EARLY):
                self.pstn_ua.respond(bridge.pstn, status, reason=reason, now=self._now())

    def _close_connection(self, fqdn: str) -> None:
        address = self._resolve(fqdn)
        transport = self.ms_node.transport
        if address is None or transport is None:
            return
        connections: Callable[[], list[PeerInfo]] | None = getattr(transport, "connections", None)
        close: Callable[[int], bool] | None = getattr(transport, "close_connection", None)
        if connections is None or close is None:
            return
        for peer in connections():
            if peer.remote == address and peer.connection_id is not None:
                close(peer.connection_id)

    # -------------------------------------------------------------------- contact center

    def _from_contact_center(self, peer: PeerInfo) -> bool:
        cc = self.topology.contact_center
        return cc is not None and peer.remote[0] == cc.address

    def _contact_center_call(self, call: CallRef, request: Request) -> None:
        """A call of the contact-center platform toward an agent or SME in Teams."""
        number = self._number(_uri_user(request.uri))
        if number is None:
            self.pstn_ua.respond(call, 484, now=self._now())
            self._event("call_rejected", request.call_id, "484 not an E.164 number")
            return
        # Part 4.3 [DOC]: the derived trunk of the customer tenant, named by the platform in the
        # Request-URI host; a platform that names none is routed by the number's tenant
        uri = request.uri
        tenant = None
        if isinstance(uri, SipUri) and not uri.host_is_ip:
            tenant = self.topology.tenant_for_fqdn(uri.host)
        tenant = tenant or self.topology.tenant_for_number(number)
        if tenant is None:
            self.pstn_ua.respond(call, 404, now=self._now())
            self._event("call_rejected", request.call_id, f"404 no tenant for {number}")
            return
        self._inbound_call(call, request, route=(tenant, number))

    def _to_contact_center(self, call: CallRef, request: Request) -> bool:
        """Relay a carrier call to an IVR entry number to the platform; False if it is not one."""
        cc = self.topology.contact_center
        number = self._number(_uri_user(request.uri))
        if cc is None or number is None or cc.route(number) is None:
            return False
        host = f"[{cc.address}]" if ":" in cc.address else cc.address
        caller = self._caller_number(request)
        headers = [(n, v) for n in _PASS_TOWARD_PSTN for v in request.headers.get_all(n)]
        platform = self.pstn_ua.invite(
            f"sip:{number}@{host}:{cc.port};user=phone",
            from_=f"<sip:{caller}@{self.pstn_address[0]};user=phone>",
            to=f"<sip:{number}@{host};user=phone>",
            remote=(cc.address, cc.port),
            transport=self.topology.sbc.pstn_side.transport,
            sdp=request.body or None,
            headers=headers,
            now=self._now(),
        )
        hop = _TrunkHop(call, platform)
        self._hops[call.id] = hop
        self._hops[platform.id] = hop
        self._event("call_routed", request.call_id, f"{number} -> contact center")
        return True

    def _hop_event(self, ev: object) -> bool:
        """Events of carrier <-> contact-center calls; False for every other event."""
        ref = getattr(ev, "call", None)
        hop = self._hops.get(ref.id) if isinstance(ref, CallRef) else None
        if hop is None or ref is None:
            return False
        ua = self.pstn_ua
        now = self._now()
        other = hop.platform if ref == hop.carrier else hop.carrier
        ringing = (CallState.INCOMING, CallState.EARLY)
        match ev:
            case CallProgress(status=status, reason=reason, sdp=sdp) if ref == hop.platform:
                if status > 100 and ua.call_state(hop.carrier) in ringing:
                    ua.respond(hop.carrier, status, reason=reason or None, sdp=sdp, now=now)
            case CallEstablished(sdp=sdp) if ref == hop.platform:
                if ua.call_state(hop.carrier) in ringing:
                    ua.respond(hop.carrier, 200, sdp=sdp or ua.remote_sdp(ref), now=now)
            case CallEstablished():
                if ("pstn", ref.id) in self._bye_on_ack:
                    self._bye_on_ack.discard(("pstn", ref.id))
                    self._end_hop(hop, ref)
            case CallFailed(status=status, reason=reason) if ref == hop.platform:
                self._forget_hop(hop)
                if ua.call_state(hop.carrier) in ringing:
                    ua.respond(hop.carrier, status, reason=reason or None, now=now)
            case CallFailed() | CallCancelled() | CallEnded():
                self._end_hop(hop, ref)
            case ReinviteReceived(handle=handle, sdp=sdp) if handle is not None:
                if sdp is None or ua.call_state(other) != CallState.CONFIRMED:
                    ua.respond_request(handle, 200, sdp=ua.local_sdp(ref), now=now)
                else:
                    try:
                        relay = ua.reinvite(other, sdp, now=now)
                    except LocalProtocolError:
                        ua.respond_request(handle, 491, now=now)
                    else:
                        hop.relays[relay.id] = handle
            case RequestCompleted(ref=done, status=status, response=response):
                handle = hop.relays.pop(done.id, None)
                if handle is not None:
                    body = response.body if response is not None and response.body else None
                    try:
                        ua.respond_request(handle, status, sdp=body, now=now)
                    except LocalProtocolError as exc:
                        self.log.info("relay_refused", side="pstn", error=exc.msg)
            case _:
                pass
        return True

    def _forget_hop(self, hop: _TrunkHop) -> None:
        for leg in (hop.carrier, hop.platform):
            self._hops.pop(leg.id, None)

    def _end_hop(self, hop: _TrunkHop, gone: CallRef) -> None:
        """One end of a carrier <-> contact-center call is gone: end the other."""
        self._forget_hop(hop)
        other = hop.platform if gone == hop.carrier else hop.carrier
        self._hangup("pstn", other)

    # -------------------------------------------------------------------- outbound: Teams -> PSTN

    def _outbound_call(self, call: CallRef, request: Request) -> None:
        now = self._now()
        tenant = self._tenant_of(request)
        if tenant is None:
            self.ms_ua.respond(call, 404, now=now)
            self._event("call_rejected", request.call_id, "404 unknown trunk FQDN")
            return
        number = self._number(_uri_user(request.uri))
        caller = self._number(_uri_user(request.from_.uri) if request.from_.uri else None)
        contact = self._teams_contact(tenant, number or "")
        if number is None:
            self.ms_ua.respond(call, 484, contact=contact, now=now)
            self._event("call_rejected", request.call_id, "484 not an E.164 number")
            return
        caller = caller or "anonymous"
        bridge = _Bridge(
            "outbound", tenant, number, caller, self._new_leg("pstn"), self._new_leg("teams")
        )
        bridge.teams = call
        if request.body:
            offer = self._read_offer("teams", request.body)
            if offer is None:
                self.ms_ua.respond(call, 488, contact=contact, now=now)
                self._event("call_rejected", request.call_id, "488 offer not acceptable")
                return
            bridge.offer = offer
            sdp = self._relay_offer(bridge, offer)
        else:
            bridge.late_offer = True
            sdp = self._fresh_offer(bridge.pstn_leg)
        headers: list[tuple[str, str]] = []
        for name in _PASS_TOWARD_PSTN:
            headers += [(name, v) for v in request.headers.get_all(name)]
        if not self._faulty("drops-history-info"):
            # Part 5.5 [DOC]: History-Info for forwarding and simultaneous ring goes on to the
            # carrier (a trusted peer)
            headers += [("History-Info", v) for v in request.headers.get_all("History-Info")]
        pstn = self.topology.pstn
        sbc_host = self.pstn_address[0]
        pstn_call = self.pstn_ua.invite(
            f"sip:{number}@{pstn.address}:{pstn.port};user=phone",
            from_=f"<sip:{caller}@{sbc_host};user=phone>",
            to=f"<sip:{number}@{pstn.address};user=phone>",
            remote=(pstn.address, pstn.port),
            transport=pstn.transport,
            sdp=sdp,
            headers=headers,
            now=now,
        )
        bridge.pstn = pstn_call
        self._teams_calls[call.id] = bridge
        self._pstn_calls[pstn_call.id] = bridge
        self._event("call_routed", request.call_id, f"{tenant.id} -> {number}")

    def _tenant_of(self, request: Request) -> Tenant | None:
        """The tenant of a Microsoft INVITE: its Request-URI host, else its To host."""
        # Part 4.3 [DOC]/[INF]: the Request-URI host is the tenant's derived trunk FQDN
        for uri in (request.uri, request.to.uri):
            if isinstance(uri, SipUri):
                tenant = self.topology.tenant_for_fqdn(uri.host)
                if tenant is not None:
                    return tenant
        return None

    def _pstn_progress(self, call: CallRef, status: int, reason: str, sdp: bytes | None) -> None:
        bridge = self._pstn_calls.get(call.id)
        if bridge is None or status <= 100 or bridge.teams is None or call != bridge.pstn:
            return
        if sdp is not None and not bridge.early_sdp_sent and not bridge.late_offer:
            assert bridge.offer is not None
            answer = self._relay_answer(bridge, bridge.offer, sdp)
            if answer is not None:
                bridge.early_sdp_sent = True
                bridge.sent_18x.add(status)
                self._respond(bridge.teams, "teams", status, reason, answer)
                return
        if status in bridge.sent_18x:
            return
        bridge.sent_18x.add(status)
        self._respond(bridge.teams, "teams", status, reason, None)

    def _pstn_failed(self, call: CallRef, status: int, reason: str) -> None:
        bridge = self._pstn_calls.pop(call.id, None)
        if bridge is None or call != bridge.pstn:
            return
        bridge.ended = True
        teams = bridge.teams
        if teams is None:
            return
        self._teams_calls.pop(teams.id, None)
        if self.ms_ua.call_state(teams) in (CallState.INCOMING, CallState.EARLY):
            self._respond(teams, "teams", status, reason, None)

    # -------------------------------------------------------------------- answers, endings

    def _respond(
        self, call: CallRef, side: Side, status: int, reason: str | None, sdp: bytes | None
    ) -> None:
        bridge = self._index(side).get(call.id)
        contact: str | None = None
        if side == "teams" and bridge is not None:
            contact = self._teams_contact(bridge.tenant, bridge.pstn_number)
        try:
            self._ua(side).respond(
                call, status, reason=reason or None, sdp=sdp, contact=contact, now=self._now()
            )
        except LocalProtocolError as exc:
            self.log.info("respond_refused", side=side, status=status, error=exc.msg)

    def _established(self, side: Side, call: CallRef, sdp: bytes | None) -> None:
        if (side, call.id) in self._bye_on_ack:
            self._bye_on_ack.discard((side, call.id))
            self._hangup(side, call)
            return
        bridge = self._index(side).get(call.id)
        if bridge is None:
            return
        if side == "teams":
            transfer = bridge.transfer
            if transfer is not None and call.id == transfer.new.id:
                self._transfer_answered(bridge, transfer, sdp)
                return
        if call != bridge.call(side):
            return
        ua = self._ua(side)
        if ua.dialog_id(call) is None or ua.call_state(call) != CallState.CONFIRMED:
            return
        other_side = _other(side)
        other = bridge.call(other_side)
        if other is None:
            return
        if self._ua(other_side).call_state(other) not in (CallState.INCOMING, CallState.EARLY):
            if bridge.late_offer and sdp is not None:
                bridge.leg(side).remote_sdp = sdp  # the carrier's answer, in its ACK
            return
        # the callee side answered: answer the caller side
        body = sdp or ua.remote_sdp(call)
        if bridge.late_offer:
            answer = self._late_offer_answer(bridge, side, body)
        else:
            assert bridge.offer is not None
            answer = self._relay_answer(bridge, bridge.offer, body)
        if answer is None:
            self._respond(other, other_side, 488, None, None)
            self._hangup(side, call)
            self._forget(bridge)
            return
        self._respond(other, other_side, 200, None, answer)

    def _late_offer_answer(self, bridge: _Bridge, side: Side, body: bytes | None) -> bytes | None:
        """The caller sent no offer: our 200 carries an offer built from the callee's answer."""
        codecs: list[RtpMap] = []
        if body is not None:
            try:
                session = SessionDescription.parse(body)
                media = next((m for m in session.media if m.media == "audio" and m.port), None)
                codecs = [] if media is None else intersect_formats(media, self.settings.codecs)
                bridge.leg(side).remote_sdp = body
            except ProtocolError:
                codecs = []
        return self._fresh_offer(bridge.leg(_other(side)), codecs)

    def _cancelled(self, side: Side, call: CallRef) -> None:
        bridge = self._index(side).pop(call.id, None)
        if bridge is None:
            return
        self._tear_down(bridge, side)

    def _leg_ended(self, side: Side, call: CallRef) -> None:
        self._bye_on_ack.discard((side, call.id))
        bridge = self._index(side).pop(call.id, None)
        if bridge is None:
            return
        if side == "teams":
            transfer = bridge.transfer
            if transfer is not None and bridge.teams == call:
                bridge.teams = None  # the transferor left early: the transfer decides
                return
            if transfer is not None and transfer.new == call:
                return
            if call != bridge.teams:
                return
        elif call != bridge.pstn:
            return
        self._tear_down(bridge, side)

    def _tear_down(self, bridge: _Bridge, gone: Side) -> None:
        """One side is gone: end the rest of the call."""
        bridge.ended = True
        transfer = bridge.transfer
        if transfer is not None:
            bridge.transfer = None
            self._stop_ringback(bridge, transfer)
            self._teams_calls.pop(transfer.new.id, None)
            self._hangup("teams", transfer.new)
        for side in ("teams", "pstn"):
            call = bridge.call(side)
            if call is None:
                continue
            self._index(side).pop(call.id, None)
            if side != gone:
                self._hangup(side, call)
        self._forget(bridge)

    def _forget(self, bridge: _Bridge) -> None:
        bridge.ended = True
        for side in ("teams", "pstn"):
            call = bridge.call(side)
            if call is not None and self._index(side).get(call.id) is bridge:
                del self._index(side)[call.id]

    def _hangup(self, side: Side, call: CallRef) -> None:
        ua = self._ua(side)
        state = ua.call_state(call)
        now = self._now()
        try:
            if state == CallState.CONFIRMED:
                ua.bye(call, now)
            elif state in (CallState.CALLING, CallState.PROCEEDING):
                ua.cancel(call, now)
            elif state in (CallState.INCOMING, CallState.EARLY):
                ua.respond(call, 487, now=now)
            elif state == CallState.ANSWERED:
                self._bye_on_ack.add((side, call.id))  # no BYE before the ACK (§15)
        except LocalProtocolError as exc:
            self.log.info("hangup_refused", side=side, error=exc.msg)

    # -------------------------------------------------------------------- re-INVITE relay

    def _reinvite(
        self, side: Side, call: CallRef, handle: RequestHandle, sdp: bytes | None
    ) -> None:
        ua = self._ua(side)
        now = self._now()
        bridge = self._index(side).get(call.id)
        leg = None if bridge is None else bridge.leg(side)
        if bridge is not None and side == "teams" and bridge.teams != call:
            leg = None
        if bridge is None or leg is None or sdp is None or _same_session(leg.remote_sdp, sdp):
            # a session refresh, or no offer: our last SDP again, no relay  # Part 6.4 [DOC]
            ua.respond_request(handle, 200, sdp=ua.local_sdp(call), now=now)
            return
        offer = self._read_offer(side, sdp)
        other_side = _other(side)
        other = bridge.call(other_side)
        if offer is None:
            ua.respond_request(handle, 488, now=now)
            return
        if other is None or self._ua(other_side).call_state(other) != CallState.CONFIRMED:
            ua.respond_request(handle, 200, sdp=self._answer_locally(leg, offer), now=now)
            return
        relayed = self._relay_offer(bridge, offer)
        try:
            ref = self._ua(other_side).reinvite(other, relayed, now=now)
        except LocalProtocolError:
            ua.respond_request(handle, 491, now=now)  # RFC 3261 §14.1: one at a time
            return
        bridge.relays[ref.id] = _Relay(handle, offer)

    def _relay_done(
        self, side: Side, call: CallRef, ref_id: int, status: int, response: Response | None
    ) -> None:
        bridge = self._index(side).get(call.id)
        if bridge is None:
            return
        relay = bridge.relays.pop(ref_id, None)
        if relay is None:
            return
        body = response.body if response is not None and response.body else None
        if relay.handle is None or relay.offer is None:
            if body is not None and 200 <= status < 300:
                bridge.leg(side).remote_sdp = body
            return
        offerer = _other(side)
        offerer_call = bridge.call(offerer)
        ua = self._ua(offerer)
        now = self._now()
        if offerer_call is None:
            return
        try:
            if 200 <= status < 300:
                answer = self._relay_answer(bridge, relay.offer, body)
                if answer is None:
                    answer = self._answer_locally(bridge.leg(offerer), relay.offer)
                ua.respond_request(relay.handle, 200, sdp=answer, now=now)
            else:
                ua.respond_request(relay.handle, status, now=now)
        except LocalProtocolError as exc:
            self.log.info("relay_refused", side=offerer, error=exc.msg)

    def _resume(self, bridge: _Bridge, side: Side) -> None:
        """After a re-bridge, take ``side`` off hold if it was put on hold for the old leg."""
        call = bridge.call(side)
        leg = bridge.leg(side)
        if call is None or leg.direction == Direction.SENDRECV:
            return
        ua = self._ua(side)
        if ua.call_state(call) != CallState.CONFIRMED:
            return
        sdp = self._fresh_offer(leg, leg.codecs)
        try:
            ref = ua.reinvite(call, sdp, now=self._now())
        except LocalProtocolError as exc:
            self.log.info("resume_refused", side=side, error=exc.msg)
            return
        bridge.relays[ref.id] = _Relay(None, None)

    # -------------------------------------------------------------------- REFER (Part 5.3)

    def _refer(self, refer: ReferReceived) -> None:
        now = self._now()
        bridge = self._teams_calls.get(refer.call.id)
        if self._faulty("refer-rejected"):
            self.ms_ua.respond_request(refer.handle, 603, now=now)
            return
        if bridge is None or bridge.teams != refer.call or bridge.pstn is None:
            self.ms_ua.respond_request(refer.handle, 481, now=now)
            return
        if bridge.transfer is not None:
            self.ms_ua.respond_request(refer.handle, 491, now=now)
            return
        try:
            target, uri_headers = refer_target(refer.refer_to)
        except ProtocolError:
            self.ms_ua.respond_request(refer.handle, 400, now=now)
            return
        address: Address | None = None
        server_name: str | None = None
        if isinstance(target, SipUri) and not target.host_is_ip:
            server_name = target.host
            found = self._resolve(target.host)
            address = None if found is None else (found[0], target.port or found[1])
        elif isinstance(target, SipUri):
            address = (target.host.strip("[]"), target.port or 5061)
        if address is None:
            self.ms_ua.respond_request(refer.handle, 400, now=now)
            return
        # Part 5.3 [SUP]: accept with 202; the first NOTIFY (100 Trying) follows from the core
        self.ms_ua.respond_request(refer.handle, 202, now=now)
        headers: list[tuple[str, str]] = []
        if refer.referred_by is not None and not self._faulty("referred-by-dropped"):
            value = refer.referred_by
            if self._faulty("referred-by-altered"):
                value = _without_x_params(value)
            # Part 5.3 [SUP]: "include the Referred-By header from the SIP Refer message ...
            # the strings ... are not changed"
            headers.append(("Referred-By", value))
        for name, value in uri_headers:
            if name.lower() == "replaces" and not self._faulty("replaces-to-teams"):
                continue  # Part 5.4 [DOC]: never Replaces toward Microsoft
            headers.append((name, value))
        leg = self._new_leg("teams")
        # Part 12 SBC 3 [SUP/OBS]: the new leg is offered a=sendrecv (the old one may be held)
        sdp = self._fresh_offer(leg, bridge.pstn_leg.codecs)
        tenant = bridge.tenant
        pstn_party = bridge.pstn_number
        # Part 5.3 [SUP]: the INVITE goes back to Microsoft, Request-URI = the Refer-To URI
        new = self.ms_ua.invite(
            target,
            from_=f"<sip:{pstn_party}@{tenant.trunk_fqdn};user=phone>",
            to=NameAddr(target),
            remote=address,
            transport="tls",
            sdp=sdp,
            server_name=server_name,
            contact=self._teams_contact(tenant, pstn_party),
            headers=headers,
            now=now,
        )
        bridge.transfer = _Transfer(refer.handle, refer.call, new, leg)
        self._teams_calls[new.id] = bridge
        self._event("transfer_started", refer.call.call_id, str(target))

    def _notify(self, transfer: _Transfer, status: int, reason: str | None) -> None:
        if self._faulty("no-sipfrag-notify"):
            return
        # Part 5.3 [SUP]: NOTIFY sipfrag for each provisional and the final response
        self.ms_ua.notify_refer(transfer.handle, status, reason or None, now=self._now())

    def _transfer_progress(
        self, bridge: _Bridge, transfer: _Transfer, status: int, reason: str
    ) -> None:
        self._notify(transfer, status, reason)
        if status in (180, 183) and not transfer.ringback:
            # Part 5.3 [SUP]: ring tone toward the transferee while the target rings;
            # Part 2.3 [DOC]: on 180 the SBC must generate local ringing
            transfer.ringback = True
            self._event("ringback_started", transfer.new.call_id)

    def _stop_ringback(self, bridge: _Bridge, transfer: _Transfer) -> None:
        if transfer.ringback:
            transfer.ringback = False
            self._event("ringback_stopped", transfer.new.call_id)

    def _transfer_answered(self, bridge: _Bridge, transfer: _Transfer, sdp: bytes | None) -> None:
        self._stop_ringback(bridge, transfer)
        self._notify(transfer, 200, "OK")
        bridge.transfer = None
        body = sdp or self.ms_ua.remote_sdp(transfer.new)
        transfer.leg.remote_sdp = body
        # re-bridge: the PSTN leg stays, the new Microsoft leg replaces the old one; Microsoft
        # ends the old one itself after NOTIFY 200 (Part 5.3 [SUP])
        if bridge.teams is not None:
            self._teams_calls.pop(bridge.teams.id, None)
        bridge.teams = transfer.new
        bridge.teams_leg = transfer.leg
        self._teams_calls[transfer.new.id] = bridge
        self._event("transfer_completed", transfer.new.call_id)
        self._resume(bridge, "pstn")

    def _transfer_failed(
        self, bridge: _Bridge, transfer: _Transfer, status: int, reason: str
    ) -> None:
        self._stop_ringback(bridge, transfer)
        self._notify(transfer, status, reason)
        bridge.transfer = None
        self._event("transfer_failed", transfer.new.call_id, str(status))
        if bridge.teams is None:  # the transferor is gone too: nothing left to bridge to
            self._tear_down(bridge, "teams")
        else:
            self._teams_calls[bridge.teams.id] = bridge

    # -------------------------------------------------------------------- Replaces (Part 5.4)

    def _teams_replaces(self, call: CallRef, request: Request, old: CallRef) -> None:
        """Part 5.4 [DOC]: "The SBC must support Invite with Replaces" from Microsoft."""
        now = self._now()
        bridge = self._teams_calls.get(old.id)
        contact = None if bridge is None else self._teams_contact(bridge.tenant, bridge.pstn_number)
        if bridge is None or bridge.teams != old or bridge.pstn is None:
            self.ms_ua.respond(call, 481, now=now)
            return
        leg = self._new_leg("teams")
        if request.body:
            offer = self._read_offer("teams", request.body)
            if offer is None:
                self.ms_ua.respond(call, 488, contact=contact, now=now)
                return
            answer = self._answer_locally(leg, offer)
        else:
            answer = self._fresh_offer(leg, bridge.pstn_leg.codecs)
        self._teams_calls.pop(old.id, None)
        bridge.teams = call
        bridge.teams_leg = leg
        self._teams_calls[call.id] = bridge
        self.ms_ua.respond(call, 200, sdp=answer, contact=contact, now=now)
        self._hangup("teams", old)  # RFC 3891 §3: the replaced dialog ends
        self._event("call_replaced", old.call_id, call.call_id)
        self._resume(bridge, "pstn")

    def _pstn_replaces(self, call: CallRef, request: Request, old: CallRef) -> None:
        """The carrier replaces its leg (an attended transfer on its side)."""
        now = self._now()
        bridge = self._pstn_calls.get(old.id)
        if bridge is None or bridge.pstn != old or bridge.teams is None:
            self.pstn_ua.respond(call, 481, now=now)
            return
        if self._faulty("replaces-to-teams"):
            dialog = self.ms_ua.dialog_id(bridge.teams)
            if dialog is not None:
                # the fault: a new INVITE toward Microsoft naming the Microsoft dialog
                replaces = (("Replaces", replaces_value(dialog)),)
                self._inbound_call(call, request, replaces, (bridge.tenant, bridge.teams_number))
                return
        # Part 5.4 [DOC]: the SBC never sends Replaces to Microsoft; it swaps its own leg
        leg = self._new_leg("pstn")
        if request.body:
            offer = self._read_offer("pstn", request.body)
            if offer is None:
                self.pstn_ua.respond(call, 488, now=now)
                return
            answer = self._answer_locally(leg, offer)
        else:
            answer = self._fresh_offer(leg, bridge.teams_leg.codecs)
        self._pstn_calls.pop(old.id, None)
        bridge.pstn = call
        bridge.pstn_leg = leg
        self._pstn_calls[call.id] = bridge
        self.pstn_ua.respond(call, 200, sdp=answer, now=now)
        self._hangup("pstn", old)
        self._event("call_replaced", old.call_id, call.call_id)
        self._resume(bridge, "teams")


# ------------------------------------------------------------------------------ small helpers


def _direction(session: SessionDescription, media: MediaDescription) -> Direction:
    """The stream's direction; the RFC 2543 hold address 0.0.0.0 counts as inactive."""
    direction = session.effective_direction(media)
    connection = session.effective_connection(media)
    if connection is not None and connection.host == _HOLD_ADDRESS:
        return Direction.INACTIVE
    return direction


def _same_session(previous: bytes | None, body: bytes) -> bool:
    """Whether ``body`` repeats the last SDP (same origin line): a refresh, not a change."""
    if previous is None:
        return False
    if previous == body:
        return True
    try:
        return SessionDescription.parse(previous).origin == SessionDescription.parse(body).origin
    except ProtocolError:
        return False


def _retry_after(response: Response | None) -> int | None:
    if response is None:
        return None
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    head = value.split(";", 1)[0].split("(", 1)[0].strip()
    return int(head) if head.isdigit() else None


def _without_x_params(referred_by: str) -> str:
    """Referred-By rebuilt the way a careless SBC does: the x-* URI parameters gone."""
    start, end = referred_by.find("<"), referred_by.find(">")
    if start < 0 or end < start:
        return referred_by
    uri = referred_by[start + 1 : end]
    parts = uri.split(";")
    kept = [parts[0], *(p for p in parts[1:] if not p.lower().startswith("x-"))]
    return f"{referred_by[:start]}<{';'.join(kept)}>{referred_by[end + 1 :]}"
