"""What a run produces: the data every report (terminal, JSON, JUnit, HTML, pcap) is drawn from.

The JSON form (``PlanResult.to_json()``) is the ``sbcsim.report/1`` contract of PRODUCT.md.
A trace is the ordered list of every SIP message that crossed the (memory or live) network during
one scenario, with virtual times; ladders and pcaps are rendered from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "REPORT_SCHEMA",
    "CheckResult",
    "PlanResult",
    "ScenarioResult",
    "TraceEntry",
    "Verdict",
]

REPORT_SCHEMA = "sbcsim.report/1"
Verdict = Literal["pass", "fail", "skip", "error"]


@dataclass(frozen=True, slots=True)
class TraceEntry:
    """One message on the wire.

    ``src``/``dst`` are ``(ip, port)``; ``src_name``/``dst_name`` the actor names a ladder shows
    (``"sip.pstnhub.microsoft.com"``, ``"sbc"``, ``"pstn"`` ...); ``transport`` is udp/tcp/tls (TLS
    legs hold the decrypted SIP); ``dropped`` marks a packet the network lost.
    """

    index: int
    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    transport: str
    data: bytes
    src_name: str = ""
    dst_name: str = ""
    connection_id: int | None = None
    dropped: bool = False

    @property
    def summary(self) -> str:
        """``INVITE sip:...`` or ``200 OK`` — the first line."""
        return self.data.split(b"\r\n", 1)[0].decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """One check of a scenario.

    ``expected``/``seen`` are short human texts; ``trace_index`` points at the message the check
    judged (the failing arrow on a ladder), when there is one.
    """

    id: str
    requirement: str
    verdict: Verdict
    message: str
    expected: str | None = None
    seen: str | None = None
    trace_index: int | None = None


@dataclass(slots=True)
class ScenarioResult:
    id: str
    title: str
    verdict: Verdict
    sim_seconds: float
    wall_seconds: float
    seed: int
    checks: list[CheckResult] = field(default_factory=list)
    trace: list[TraceEntry] = field(default_factory=list)
    tags: tuple[str, ...] = ()
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "verdict": self.verdict,
            "sim_seconds": round(self.sim_seconds, 6),
            "wall_seconds": round(self.wall_seconds, 6),
            "seed": self.seed,
            "checks": [
                {
                    "id": c.id,
                    "requirement": c.requirement,
                    "verdict": c.verdict,
                    "message": c.message,
                }
                for c in self.checks
            ],
        }


@dataclass(slots=True)
class PlanResult:
    plan: str
    target: str
    seed: int
    scenarios: list[ScenarioResult] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def sim_seconds(self) -> float:
        return sum(s.sim_seconds for s in self.scenarios)

    def count(self, verdict: Verdict) -> int:
        return sum(1 for s in self.scenarios if s.verdict == verdict)

    @property
    def checks_passed(self) -> int:
        return sum(1 for s in self.scenarios for c in s.checks if c.verdict == "pass")

    @property
    def checks_failed(self) -> int:
        return sum(1 for s in self.scenarios for c in s.checks if c.verdict == "fail")

    @property
    def exit_code(self) -> int:
        """0 every check passed; 1 a scenario failed; 3 an internal error (PRODUCT.md)."""
        if self.count("error"):
            return 3
        if self.count("fail"):
            return 1
        return 0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": REPORT_SCHEMA,
            "plan": self.plan,
            "target": self.target,
            "seed": self.seed,
            "summary": {
                "passed": self.count("pass"),
                "failed": self.count("fail"),
                "skipped": self.count("skip"),
                "errors": self.count("error"),
                "checks_passed": self.checks_passed,
                "checks_failed": self.checks_failed,
            },
            "sim_seconds": round(self.sim_seconds, 6),
            "wall_seconds": round(self.wall_seconds, 6),
            "scenarios": [s.to_json() for s in self.scenarios],
        }
