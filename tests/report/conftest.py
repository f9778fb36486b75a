"""A small, realistic plan result and SIP message builders shared by the report tests.

One passing call (PSTN -> SBC -> Microsoft, UDP then TLS), one failing scenario whose check
points at the SBC's INVITE, one skipped and one errored scenario.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from sbcsim.testplan.results import CheckResult, PlanResult, ScenarioResult, TraceEntry

PSTN = ("192.0.2.10", 5060)
SBC_UDP = ("192.0.2.20", 5060)
SBC_TLS = ("192.0.2.20", 40001)
MS = ("52.114.148.0", 5061)


def request(
    method: str,
    uri: str,
    *,
    cseq: int = 1,
    via: str = "SIP/2.0/UDP 192.0.2.10:5060",
    body: bytes = b"",
    extra: bytes = b"",
) -> bytes:
    head = (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: {via};branch=z9hG4bK-{method.lower()}-{cseq}\r\n"
        "Max-Forwards: 70\r\n"
        "From: <sip:+15550100@carrier.example.net>;tag=f1\r\n"
        "To: <sip:+15550200@sbc.example.com>\r\n"
        f"Call-ID: call-{method.lower()}@192.0.2.10\r\n"
        f"CSeq: {cseq} {method}\r\n"
    ).encode()
    if body:
        head += b"Content-Type: application/sdp\r\n"
    return head + extra + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


def response(
    status: int,
    reason: str,
    method: str,
    *,
    cseq: int = 1,
    via: str = "SIP/2.0/UDP 192.0.2.10:5060",
) -> bytes:
    return (
        f"SIP/2.0 {status} {reason}\r\n"
        f"Via: {via};branch=z9hG4bK-{method.lower()}-{cseq}\r\n"
        "From: <sip:+15550100@carrier.example.net>;tag=f1\r\n"
        "To: <sip:+15550200@sbc.example.com>;tag=t2\r\n"
        f"Call-ID: call-{method.lower()}@192.0.2.10\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def call_trace() -> list[TraceEntry]:
    """PSTN INVITE (UDP) -> SBC INVITE (TLS) -> 100 -> 200 (TLS) -> 200 (UDP) -> ACK."""
    tls_via = "SIP/2.0/TLS sbc.example.com:5061"
    return [
        TraceEntry(
            0,
            0.0,
            PSTN,
            SBC_UDP,
            "udp",
            request("INVITE", "sip:+15550200@sbc.example.com", body=SDP),
            "pstn",
            "sbc",
        ),
        TraceEntry(
            1,
            0.02,
            SBC_TLS,
            MS,
            "tls",
            request("INVITE", "sip:+15550200@sip.pstnhub.microsoft.com", via=tls_via, body=SDP),
            "sbc",
            "sip.pstnhub.microsoft.com",
            connection_id=7,
        ),
        TraceEntry(
            2,
            0.05,
            MS,
            SBC_TLS,
            "tls",
            response(100, "Trying", "INVITE", via=tls_via),
            "sip.pstnhub.microsoft.com",
            "sbc",
            connection_id=7,
        ),
        TraceEntry(
            3,
            1.25,
            MS,
            SBC_TLS,
            "tls",
            response(200, "OK", "INVITE", via=tls_via),
            "sip.pstnhub.microsoft.com",
            "sbc",
            connection_id=7,
        ),
        TraceEntry(4, 1.27, SBC_UDP, PSTN, "udp", response(200, "OK", "INVITE"), "sbc", "pstn"),
        TraceEntry(
            5,
            1.3,
            PSTN,
            SBC_UDP,
            "udp",
            request("ACK", "sip:+15550200@sbc.example.com"),
            "pstn",
            "sbc",
        ),
    ]


def build_plan() -> PlanResult:
    passing = ScenarioResult(
        id="dr-inbound-basic",
        title="PSTN calls a Teams user",
        verdict="pass",
        sim_seconds=1.3,
        wall_seconds=0.0125,
        seed=7,
        checks=[
            CheckResult(
                "dr.invite.answered", "RFC 3261 §13.2.2.4", "pass", "call answered", trace_index=3
            )
        ],
        trace=call_trace(),
        tags=("inbound", "smoke"),
    )
    failing = ScenarioResult(
        id="dr-contact-fqdn",
        title="Contact carries the SBC FQDN",
        verdict="fail",
        sim_seconds=1.3,
        wall_seconds=0.02,
        seed=8,
        checks=[
            CheckResult(
                "dr.options.sent", "Direct Routing: SBC health (OPTIONS)", "pass", "OPTIONS seen"
            ),
            CheckResult(
                "dr.contact.fqdn",
                "Direct Routing: SIP signaling — Contact header",
                "fail",
                "Contact host is an IP address, Microsoft answers 403",
                expected="sbc.example.com",
                seen="192.0.2.20",
                trace_index=1,
            ),
            CheckResult(
                "dr.bye.sent",
                "RFC 3261 §15.1.1",
                "fail",
                "no BYE within 32 s",
                expected="BYE",
                seen="nothing",
            ),
        ],
        trace=call_trace(),
    )
    skipped = ScenarioResult(
        id="cc-sme-escalation",
        title="Escalate to the first free SME",
        verdict="skip",
        sim_seconds=0.0,
        wall_seconds=0.0,
        seed=9,
        checks=[
            CheckResult("cc.sme.first", "Connect model §3", "skip", "target has no contact-center")
        ],
    )
    errored = ScenarioResult(
        id="dr-refer",
        title="Transfer by REFER",
        verdict="error",
        sim_seconds=0.5,
        wall_seconds=0.001,
        seed=10,
        error="KeyError: 'Refer-To'\nTraceback saved to out/dr-refer.traceback",
    )
    return PlanResult(
        plan="direct-routing-sbc",
        target="embedded",
        seed=42,
        scenarios=[passing, failing, skipped, errored],
        wall_seconds=0.25,
    )


@pytest.fixture
def plan() -> PlanResult:
    """A fresh four-scenario plan result (pass, fail, skip, error)."""
    return build_plan()


@pytest.fixture
def trace() -> list[TraceEntry]:
    """The six-message call of :func:`call_trace`."""
    return call_trace()


@pytest.fixture
def sip() -> SimpleNamespace:
    """Message builders and the addresses the sample trace uses."""
    return SimpleNamespace(
        request=request,
        response=response,
        SDP=SDP,
        PSTN=PSTN,
        SBC_UDP=SBC_UDP,
        SBC_TLS=SBC_TLS,
        MS=MS,
    )
