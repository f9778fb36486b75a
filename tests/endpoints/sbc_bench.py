"""A bench for the reference SBC: raw user agents on the memory network play Microsoft's three
proxies and the PSTN carrier, and every test scripts them step by step.

The tests import it as a plain module (the suite runs with ``--import-mode=importlib``, which puts
no test directory on ``sys.path``; each test module adds this directory first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sbcsim.dialog import (
    CallRef,
    IncomingCall,
    SessionTimerConfig,
    UaEvent,
    UserAgent,
)
from sbcsim.endpoints.sbc import ReferenceSbc
from sbcsim.net.base import TlsIdentity, TransportName
from sbcsim.net.memory import MemoryNetwork
from sbcsim.node import Node
from sbcsim.sim import Simulator
from sbcsim.sip import parse_message
from sbcsim.sip.message import Request, Response
from sbcsim.stack import UaOptions, sim_node
from sbcsim.topology import Topology, load_topology

#: Link latency: a power of two, so virtual times add up exactly.
LATENCY = 1 / 128
SBC_HOST = "127.0.0.2"
PSTN_HOST = "127.0.2.1"
SIP, SIP2, SIP3 = (
    "sip.pstnhub.microsoft.com",
    "sip2.pstnhub.microsoft.com",
    "sip3.pstnhub.microsoft.com",
)
X_MS_SBC = "sbcsim/reference-sbc/0.1.0"
ALICE = "+14255550101"  # tenant-a (Contoso)
JULIA = "+12065550101"  # tenant-b (Fabrikam)
CHICAGO = "+13125550101"  # a PSTN phone

#: What Microsoft's REFER carries (Part 5.2 [OBS] S29 shape).
REFER_TO = (
    "<sip:sip.pstnhub.microsoft.com:5061;transport=tls;"
    "x-m=8:orgid:fce2158f-0e99-4ff7-a0b3-5b6b87d16689>"
)
REFERRED_BY = (
    "<sip:sip.pstnhub.microsoft.com:5061;x-m=8:orgid:bdc0511a-4a8d-48aa-bf1d-5ea6ef316e2a;"
    "x-t=2d88cb42-f810-417a-a0fc-80244a7fdd61;x-ti=9cfa2ad6-c73e-402d-b621-90d9af6ffea2;"
    "x-tt=ahr0chm6ly9hcGkuZXhhbXBsZQ%3d>"
)


def pstn_sdp(
    port: int = 20000, direction: str = "sendrecv", version: int = 1, host: str = PSTN_HOST
) -> bytes:
    """A carrier's plain RTP/AVP G.711 body."""
    return (
        f"v=0\r\no=carrier 77 {version} IN IP4 {host}\r\ns=call\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
        f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na={direction}\r\n"
    ).encode()


#: Two SDES keys (30 bytes each, base64) as a Teams media processor offers them.
KEY_32 = "WnD7c1ksDGs+dIefCEo8omPg4uO8DYIinNGL5yxQ"
KEY_80 = "Ws4/t3ROcbSNcO8xXuv6AaGypVWuJ+0OlUhvqr1L"


def teams_sdp(
    port: int = 52000,
    direction: str = "sendrecv",
    version: int = 1,
    host: str = "127.0.1.100",
    offer: bool = True,
) -> bytes:
    """A Microsoft media processor body: SRTP with two crypto lines (an offer) or the _80 one
    (an answer), rtcp-mux, SILK first then G.711."""
    cryptos = (
        f"a=crypto:1 AES_CM_128_HMAC_SHA1_32 inline:{KEY_32}|2^31\r\n"
        f"a=crypto:2 AES_CM_128_HMAC_SHA1_80 inline:{KEY_80}|2^31\r\n"
        if offer
        else f"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:{KEY_80}|2^31\r\n"
    )
    formats = "104 0 8 101" if offer else "0 101"
    silk = "a=rtpmap:104 SILK/16000\r\n" if offer else ""
    g711 = (
        "a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n" if offer else "a=rtpmap:0 PCMU/8000\r\n"
    )
    return (
        f"v=0\r\no=- 5 {version} IN IP4 {host}\r\ns=session\r\nc=IN IP4 {host}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/SAVP {formats}\r\n{silk}{g711}"
        f"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n{cryptos}"
        f"a=rtcp-mux\r\na={direction}\r\n"
    ).encode()


@dataclass(frozen=True)
class Wire:
    """One SIP message seen on the memory network."""

    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    message: Request | Response

    @property
    def is_request(self) -> bool:
        return isinstance(self.message, Request)

    @property
    def method(self) -> str:
        m = self.message
        return m.method if isinstance(m, Request) else f"{m.status} ({m.cseq.method})"

    def header(self, name: str) -> str | None:
        return self.message.headers.get(name)

    def body_lines(self) -> list[str]:
        return self.message.body.decode().split("\r\n")[:-1]


class Peer:
    """A raw UA playing a proxy or the carrier; it only does what the test tells it."""

    def __init__(
        self,
        sim: Simulator,
        net: MemoryNetwork,
        name: str,
        host: str,
        port: int,
        transport: TransportName,
        *,
        identity: TlsIdentity | None = None,
        contact_host: str | None = None,
        session_timer: SessionTimerConfig | None = None,
        app_answers: tuple[str, ...] = (),
    ) -> None:
        self.sim = sim
        self.name = name
        self.node: Node = sim_node(
            sim,
            net,
            name,
            host,
            transport=transport,
            port=port,
            tls_identity=identity,
            require_client_cert=identity is not None,
            options=UaOptions(
                user_agent=name,
                contact_host=contact_host,
                session_timer=session_timer or SessionTimerConfig(enabled=False),
                app_answers=app_answers,
            ),
        )
        stack = self.node.stack
        assert isinstance(stack, UserAgent)
        self.ua: UserAgent = stack
        self.events: list[tuple[float, UaEvent]] = []
        self.on_call: Callable[[IncomingCall], None] | None = None
        self.node.on_event = self._on_event

    def _on_event(self, event: Any) -> None:
        self.events.append((self.sim.now(), event))
        if isinstance(event, IncomingCall) and self.on_call is not None:
            self.on_call(event)

    def act(self, fn: Callable[[UserAgent, float], Any]) -> Any:
        """Run one API call on the UA now, and send what it queued."""
        result = fn(self.ua, self.sim.now())
        self.node.poke()
        return result

    def seen(self, kind: type) -> list[Any]:
        return [ev for _, ev in self.events if isinstance(ev, kind)]

    def last(self, kind: type) -> Any:
        found = self.seen(kind)
        assert found, f"{self.name} saw no {kind.__name__}"
        return found[-1]


class Bench:
    """Simulator, memory network, the three proxies, the carrier and the SBC."""

    def __init__(
        self,
        mutant: str | None = None,
        *,
        seed: int = 0,
        topology: Topology | None = None,
        proxy_timers: bool = False,
        **settings: Any,
    ) -> None:
        self.sim = Simulator(seed)
        self.net = MemoryNetwork(self.sim, default_latency=LATENCY)
        self.topology = topology or load_topology(None)
        timer = SessionTimerConfig(session_expires=1800, min_se=90) if proxy_timers else None
        self.proxies: dict[str, Peer] = {}
        for proxy in self.topology.microsoft.proxies:
            self.proxies[proxy.fqdn] = Peer(
                self.sim,
                self.net,
                proxy.fqdn,
                proxy.address,
                proxy.port,
                "tls",
                identity=TlsIdentity((proxy.fqdn,)),
                contact_host=proxy.fqdn,
                session_timer=timer,
            )
        self.pstn = Peer(self.sim, self.net, "pstn", PSTN_HOST, 5060, "udp")
        settings.setdefault("options_start_delay", 3600.0)
        self.sbc = ReferenceSbc.build(self.sim, self.net, self.topology, mutant=mutant, **settings)

    # -- driving ---------------------------------------------------------------------------

    def run(self, seconds: float) -> None:
        self.sim.run_for(seconds)

    def until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
        assert self.sim.run_until(predicate, timeout), "condition not reached in time"

    def proxy(self, fqdn: str = SIP) -> Peer:
        return self.proxies[fqdn]

    def call_from_pstn(
        self, to: str = ALICE, caller: str = CHICAGO, sdp: bytes | None = None
    ) -> CallRef:
        """The carrier calls ``to`` through the SBC."""
        body = pstn_sdp() if sdp is None else sdp
        return self.pstn.act(
            lambda ua, now: ua.invite(
                f"sip:{to}@{SBC_HOST};user=phone",
                from_=f"<sip:{caller}@{PSTN_HOST};user=phone>",
                to=f"<sip:{to}@{SBC_HOST};user=phone>",
                remote=(SBC_HOST, 5060),
                sdp=body or None,
                now=now,
            )
        )

    def call_from_teams(
        self,
        to: str = CHICAGO,
        caller: str = ALICE,
        trunk: str = "tenant-a.customers.example.com",
        fqdn: str = SIP,
        headers: tuple[tuple[str, str], ...] = (),
        sdp: bytes | None = None,
    ) -> CallRef:
        """Microsoft sends a Teams user's call to the SBC's derived trunk."""
        body = teams_sdp() if sdp is None else sdp
        return self.proxy(fqdn).act(
            lambda ua, now: ua.invite(
                f"sip:{to}@{trunk}:5061;user=phone;transport=tls",
                from_=f"<sip:{caller}@{fqdn};user=phone>",
                to=f"<sip:{to}@{trunk};user=phone>",
                remote=(SBC_HOST, 5061),
                transport="tls",
                server_name=trunk,
                sdp=body,
                headers=headers,
                now=now,
            )
        )

    def answer(self, peer: Peer, call: CallRef, sdp: bytes, *, ring: bool = True) -> None:
        if ring:
            peer.act(lambda ua, now: ua.respond(call, 180, now=now))
        peer.act(lambda ua, now: ua.respond(call, 200, sdp=sdp, now=now))

    def established_inbound(self) -> tuple[CallRef, CallRef]:
        """A PSTN -> Teams call up and confirmed on both legs: (PSTN call, Teams call)."""
        pstn_call = self.call_from_pstn()
        self.until(lambda: bool(self.proxy().seen(IncomingCall)))
        teams_call = self.proxy().last(IncomingCall).call
        self.answer(self.proxy(), teams_call, teams_sdp(offer=False))
        self.until(lambda: self.pstn.ua.dialog_id(pstn_call) is not None)
        self.run(1.0)
        return pstn_call, teams_call

    # -- reading the wire ------------------------------------------------------------------

    def wire(
        self,
        *,
        src: str | None = None,
        dst: str | None = None,
        method: str | None = None,
        dropped: bool = False,
    ) -> list[Wire]:
        """The SIP messages sent so far (CRLF keep-alives left out), filtered by host/method;
        ``dropped`` includes those the network lost."""
        out: list[Wire] = []
        for packet in self.net.capture:
            if (packet.dropped and not dropped) or not packet.data.strip():
                continue
            if src is not None and packet.src[0] != src:
                continue
            if dst is not None and packet.dst[0] != dst:
                continue
            message = parse_message(packet.data, transport=packet.transport)
            item = Wire(packet.time, packet.src, packet.dst, message)
            if method is not None and item.method.split(" ")[0] != method:
                continue
            out.append(item)
        return out

    def to_microsoft(self, method: str | None = None) -> list[Wire]:
        """Everything the SBC sent toward the proxies."""
        hosts = {p.address for p in self.topology.microsoft.proxies}
        return [
            w
            for w in self.wire(src=SBC_HOST, method=method)
            if w.dst[0] in hosts and w.src[1] != 5060
        ]

    def to_pstn(self, method: str | None = None) -> list[Wire]:
        return self.wire(src=SBC_HOST, dst=PSTN_HOST, method=method)

    def address_of(self, fqdn: str) -> str:
        found = self.topology.resolve(fqdn)
        assert found is not None
        return found[0]
