"""A raw-UA "SBC" on the lab's memory network, for testing the emulated Microsoft side rule by
rule without the reference SBC.

``raw_sbc`` is a plain UserAgent at the topology's SBC address with the carrier's wildcard
certificate; each test sends exactly the request it needs (OPTIONS, INVITE with a chosen Contact,
SDP and headers) and reads the events the UA reported and the packets the lab captured.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sbcsim.dialog import (
    CallEstablished,
    CallFailed,
    CallProgress,
    CallRef,
    IncomingCall,
    RequestRef,
    SessionTimerConfig,
    StandaloneCompleted,
    UserAgent,
)
from sbcsim.lab import Lab
from sbcsim.net.base import TlsIdentity
from sbcsim.node import Node
from sbcsim.sip.message import Response
from sbcsim.stack import UaOptions, sim_node

SDES_SDP = (
    b"v=0\r\no=sbc 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 30000 RTP/SAVP 0 8 101\r\n"
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:V/Lr6Lsvhad/crSB9kCQ28jrYDxR2Yfk5bXryH5V|2^31\r\n"
    b"a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\na=rtcp-mux\r\na=sendrecv\r\n"
)
PLAIN_RTP_SDP = SDES_SDP.replace(b"RTP/SAVP", b"RTP/AVP").replace(
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:V/Lr6Lsvhad/crSB9kCQ28jrYDxR2Yfk5bXryH5V|2^31\r\n",
    b"",
)
BLACKHOLE_SDP = SDES_SDP.replace(b"c=IN IP4 127.0.0.2", b"c=IN IP4 0.0.0.0")
SBC_ALLOW_WITH_REFER = (
    "INVITE, OPTIONS, INFO, BYE, CANCEL, ACK, PRACK, UPDATE, REFER, SUBSCRIBE, NOTIFY"
)
SBC_ALLOW_WITHOUT_REFER = "INVITE, ACK, CANCEL, BYE, INFO, NOTIFY, PRACK, UPDATE, OPTIONS"

PROXY1 = ("127.0.1.1", 5061)
PROXY2 = ("127.0.1.2", 5061)
SIP1 = "sip.pstnhub.microsoft.com"
CARRIER = "sbc.customers.example.com"
TENANT_A = "tenant-a.customers.example.com"


@dataclass(eq=False)
class RawSbc:
    """A bare UA at the SBC's Microsoft-side address (TLS 5061)."""

    lab: Lab
    node: Node
    events: list[tuple[float, Any]] = field(default_factory=list)
    on_invite: Callable[[IncomingCall], None] | None = None

    @property
    def ua(self) -> UserAgent:
        stack: Any = self.node.stack
        return stack  # type: ignore[no-any-return]

    def record(self, event: Any) -> None:
        self.events.append((self.lab.now(), event))
        if isinstance(event, IncomingCall) and self.on_invite is not None:
            self.on_invite(event)

    def options(
        self,
        contact: str = f"<sip:{CARRIER}:5061;transport=tls>",
        *,
        remote: tuple[str, int] = PROXY1,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> RequestRef:
        ref = self.ua.send_request(
            "OPTIONS",
            f"sip:{SIP1}:5061",
            from_=f"<sip:{CARRIER}:5061>",
            to=f"<sip:{SIP1}:5061>",
            remote=remote,
            transport="tls",
            server_name=SIP1,
            contact=contact,
            headers=headers,
            now=self.lab.now(),
        )
        self.node.poke()
        return ref

    def invite(
        self,
        number: str = "+14255550101",
        *,
        contact: str = f"<sip:+13125550101@{TENANT_A}:5061;transport=tls>",
        sdp: bytes | None = SDES_SDP,
        headers: tuple[tuple[str, str], ...] = (("Allow", SBC_ALLOW_WITH_REFER),),
        remote: tuple[str, int] = PROXY1,
        request_uri: str | None = None,
        caller: str = "+13125550101",
    ) -> CallRef:
        ref = self.ua.invite(
            request_uri or f"sip:{number}@{SIP1}:5061;user=phone;transport=tls",
            from_=f"<sip:{caller}@{TENANT_A};user=phone>",
            to=f"<sip:{number}@{SIP1};user=phone>",
            remote=remote,
            transport="tls",
            server_name=SIP1,
            sdp=sdp,
            headers=headers,
            contact=contact,
            now=self.lab.now(),
        )
        self.node.poke()
        return ref

    # -- reading -------------------------------------------------------------------------------
    def of(self, kind: type) -> list[Any]:
        return [e for _, e in self.events if isinstance(e, kind)]

    def completed(self, ref: RequestRef) -> StandaloneCompleted | None:
        return next((e for e in self.of(StandaloneCompleted) if e.ref == ref), None)

    def progress(self, ref: CallRef) -> list[CallProgress]:
        return [e for e in self.of(CallProgress) if e.call == ref]

    def failure(self, ref: CallRef) -> CallFailed | None:
        return next((e for e in self.of(CallFailed) if e.call == ref), None)

    def established(self, ref: CallRef) -> CallEstablished | None:
        return next((e for e in self.of(CallEstablished) if e.call == ref), None)

    def final_response(self, ref: CallRef) -> Response | None:
        failed = self.failure(ref)
        if failed is not None:
            return failed.response
        est = self.established(ref)
        return est.message if est is not None and isinstance(est.message, Response) else None


def make_raw_sbc(
    lab: Lab,
    *,
    names: tuple[str, ...] = ("*.customers.example.com",),
    host: str = "127.0.0.2",
    allow: tuple[str, ...] | None = None,
) -> RawSbc:
    holder: list[RawSbc] = []
    extra: dict[str, Any] = {}
    if allow is not None:
        extra["allow"] = allow
    node = sim_node(
        lab.sim,
        lab.net,
        "sbc",
        host,
        transport="tls",
        port=5061,
        tls_identity=TlsIdentity(names),
        on_event=lambda e: holder[0].record(e),
        options=UaOptions(
            contact_host=CARRIER,
            session_timer=SessionTimerConfig(enabled=False),
            user_agent="raw-sbc",
            extra=extra,
        ),
    )
    raw = RawSbc(lab, node)
    holder.append(raw)
    return raw
