"""The scenario engine's semantics on a scripted world: windows, captures, marks, verdicts."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sbcsim.config import load_model_text
from sbcsim.scenario.engine import StepImpossible, run_scenario
from sbcsim.scenario.models import Scenario
from sbcsim.testplan.results import TraceEntry

INVITE = (
    b"INVITE sip:+14255550101@sip.pstnhub.microsoft.com;user=phone SIP/2.0\r\n"
    b"Via: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bKa\r\nFrom: <sip:+1312@t.example.com>;tag=f\r\n"
    b"To: <sip:+1425@sip.pstnhub.microsoft.com>\r\nCall-ID: call-1\r\nCSeq: 1 INVITE\r\n"
    b"Contact: <sip:+1312@tenant-a.example.com:5061;transport=tls>\r\nContent-Length: 0\r\n\r\n"
)
RINGING = (
    b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/TLS 10.0.0.1:5061;branch=z9hG4bKa\r\n"
    b"From: <sip:+1312@t.example.com>;tag=f\r\nTo: <sip:+1425@sip.pstnhub.microsoft.com>;tag=t\r\n"
    b"Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
)
SBC, MS = ("10.0.0.1", 5061), ("10.0.1.1", 5061)


class ScriptedWorld:
    """Messages appear at scripted virtual times after an action; nothing else happens."""

    def __init__(
        self, script: Mapping[str, list[tuple[float, tuple[str, int], tuple[str, int], bytes]]]
    ) -> None:
        self.t = 0.0
        self.script = script
        self.pending: list[tuple[float, tuple[str, int], tuple[str, int], bytes]] = []
        self.entries: list[TraceEntry] = []
        self.acted: list[str] = []

    def now(self) -> float:
        return self.t

    def _deliver_until(self, t: float) -> None:
        for item in sorted(self.pending):
            if item[0] <= t:
                self.pending.remove(item)
                self.entries.append(
                    TraceEntry(len(self.entries), item[0], item[1], item[2], "tls", item[3])
                )

    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool:
        end = self.t + timeout
        for when, *_ in sorted(self.pending):
            if when > end:
                break
            self.t = when
            self._deliver_until(when)
            if predicate():
                return True
        self.t = end
        return predicate()

    def run_for(self, seconds: float) -> None:
        self.t += seconds
        self._deliver_until(self.t)

    def trace(self) -> list[TraceEntry]:
        return self.entries

    def is_actor(self, name: str, address: tuple[str, int], entry: TraceEntry) -> bool:
        return {"sbc": SBC, "microsoft": MS}[name] == address

    def act(self, kind: str, args: Mapping[str, Any], variables: dict[str, str]) -> None:
        self.acted.append(kind)
        if kind == "hang_up":
            raise StepImpossible("hang_up: no call in progress")
        self.pending += [
            (self.t + dt, src, dst, data) for dt, src, dst, data in self.script.get(kind, [])
        ]

    def probe(
        self, condition: Mapping[str, Any], variables: Mapping[str, str]
    ) -> tuple[bool, str, str]:
        return bool(condition["flag"]), "flag set", f"flag is {condition['flag']}"

    def close(self) -> None:
        pass


def scenario(steps: str) -> Scenario:
    text = "kind: scenario\nid: s\ntitle: t\nwarmup: 0\nsteps:\n" + steps
    return load_model_text(text, Scenario, "s.yaml")


def test_expect_waits_within_the_window_and_captures() -> None:
    world = ScriptedWorld({"call": [(0.25, SBC, MS, INVITE), (1.5, MS, SBC, RINGING)]})
    sc = scenario(
        "  - call: {from: a, to: b}\n"
        "  - expect: {id: e1, requirement: r1, from: sbc, to: microsoft, request: INVITE, within: 1, capture: {cid: Call-ID}}\n"
        "  - expect: {id: e2, requirement: r2, from: microsoft, status: 180, call: cid, within: 1}\n"
        "  - expect: {id: e3, requirement: r3, status: 180, call: cid, within: 1}\n"
    )
    result = run_scenario(sc, lambda s, seed: world, seed=7)
    assert [(c.id, c.verdict) for c in result.checks] == [
        ("e1", "pass"),
        ("e2", "fail"),
        ("e3", "pass"),
    ]
    # e2 waited its full window (0.25 + 1 = 1.25) before the 180 came at 1.5; e3 then found it
    assert "no matching message within 1 virtual seconds" in result.checks[1].message
    assert result.checks[2].trace_index == 1
    assert result.verdict == "fail" and result.seed == 7


def test_failure_evidence_names_the_closest_message_and_what_it_lacked() -> None:
    world = ScriptedWorld({"call": [(0.1, SBC, MS, INVITE)]})
    sc = scenario(
        "  - call: {from: a, to: b}\n"
        "  - expect: {id: contact, requirement: DR 2.1, request: INVITE, headers: {Contact: 'tenant-b'}}\n"
    )
    (check,) = run_scenario(sc, lambda s, seed: world, seed=1).checks
    assert check.verdict == "fail" and check.trace_index == 0
    assert check.seen is not None and check.seen.startswith(
        "INVITE sip:+14255550101@sip.pstnhub.microsoft.com;user=phone SIP/2.0"
    )
    assert "does not match /tenant-b/" in check.message
    assert check.expected == "INVITE, Contact: /tenant-b/ within 5 s"


def test_expect_none_runs_the_whole_window() -> None:
    world = ScriptedWorld({"call": [(3.0, SBC, MS, INVITE)]})
    sc = scenario(
        "  - call: {from: a, to: b}\n"
        "  - expect_none: {id: quiet, requirement: r, request: INVITE, within: 2}\n"
        "  - expect_none: {id: loud, requirement: r, request: INVITE, within: 2}\n"
    )
    result = run_scenario(sc, lambda s, seed: world, seed=1)
    assert [(c.id, c.verdict) for c in result.checks] == [("quiet", "pass"), ("loud", "fail")]
    assert world.t == 3.0  # a forbidden message fails the check as soon as it is seen


def test_impossible_step_fails_and_lists_unreached_checks() -> None:
    world = ScriptedWorld({})
    sc = scenario(
        "  - check: {id: c1, requirement: r, condition: {flag: true}}\n"
        "  - hang_up: {who: a}\n"
        "  - check: {id: c2, requirement: r, condition: {flag: true}}\n"
    )
    result = run_scenario(sc, lambda s, seed: world, seed=1)
    assert result.verdict == "fail"
    assert [(c.id, c.verdict) for c in result.checks] == [("c1", "pass"), ("c2", "fail")]
    assert (
        result.checks[1].message
        == "not reached: step 2 could not be performed: hang_up: no call in progress"
    )


def test_a_bug_in_the_world_is_an_error_not_a_crash() -> None:
    def broken(s: Scenario, seed: int) -> ScriptedWorld:
        raise ZeroDivisionError("boom")

    sc = scenario("  - check: {id: c1, requirement: r, condition: {flag: true}}\n")
    result = run_scenario(sc, broken, seed=1)
    assert (
        result.verdict == "error"
        and result.error is not None
        and "ZeroDivisionError: boom" in result.error
    )


def test_marks_scope_a_search() -> None:
    world = ScriptedWorld({"call": [(0.1, SBC, MS, INVITE)], "answer": [(0.1, MS, SBC, RINGING)]})
    sc = scenario(
        "  - mark: before\n"
        "  - call: {from: a, to: b}\n"
        "  - wait: 1\n"
        "  - answer: {who: b}\n"
        "  - expect: {id: since-mark, requirement: r, request: INVITE, since: before}\n"
        "  - expect: {id: since-action, requirement: r, request: INVITE, within: 0.5}\n"
    )
    result = run_scenario(sc, lambda s, seed: world, seed=1)
    assert [(c.id, c.verdict) for c in result.checks] == [
        ("since-mark", "pass"),
        ("since-action", "fail"),
    ]
