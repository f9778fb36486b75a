"""Running one scenario on a fresh simulated world and judging it.

The engine walks the steps in order.  Actions go to the world through :class:`World` (the Lab in
simulation; the live adapter later).  Judgements read the trace — every message that crossed
the network — from the position of the last action (or a named mark) onward:

* ``expect`` runs the simulation until a matching message appears or ``within`` virtual seconds
  pass; on failure the evidence is the closest candidate (the message that matched the most
  identity predicates: actors, method/status, call) and what it lacked;
* ``expect_none`` runs the full ``within`` window and fails on the first match;
* ``check`` asks the world a question (trunk health, presence, call state).

An exception inside an action is a scenario *error* (a bug or an impossible step); a failed
judgement is a *fail*.  Either way the remaining judgements still appear in the result, marked
as not reached, so the report always lists every check of the scenario.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from sbcsim.scenario.matchers import Match, addr_spec, match_entry, substitute
from sbcsim.scenario.models import (
    CheckWrap,
    ExpectNoneStep,
    ExpectNoneWrap,
    ExpectStep,
    ExpectWrap,
    MarkStep,
    Scenario,
    WaitStep,
)
from sbcsim.sip.message import Request
from sbcsim.testplan.results import CheckResult, ScenarioResult, TraceEntry

__all__ = [
    "CheckSkipped",
    "ScenarioError",
    "ScenarioRun",
    "ScenarioSkipped",
    "StepImpossible",
    "World",
    "run_scenario",
]


class ScenarioError(Exception):
    """The scenario itself is wrong (unknown actor, an action the world cannot perform): an
    *error* verdict."""


class CheckSkipped(Exception):
    """The world cannot answer one check's probe (the internals of an external SBC): that
    check is *skipped* with the reason and the scenario goes on."""


class ScenarioSkipped(Exception):
    """The world cannot run this scenario at all (one that needs the virtual clock, against a
    live SBC); raised by a world factory, it gives a *skip* verdict with the reason."""


class StepImpossible(Exception):
    """An action could not be carried out because of the state the target left the world in
    (hang up a call the SBC never connected ...): the scenario *fails*, and the checks after
    the step are reported as not reached."""


class World(Protocol):
    """What the engine needs from a world (the simulated Lab, or live sockets)."""

    def now(self) -> float: ...
    def run_until(self, predicate: Callable[[], bool], timeout: float) -> bool: ...
    def run_for(self, seconds: float) -> None: ...
    def trace(self) -> list[TraceEntry]: ...
    def is_actor(self, name: str, address: tuple[str, int], entry: TraceEntry) -> bool: ...
    def act(self, kind: str, args: Mapping[str, Any], variables: dict[str, str]) -> None: ...
    def probe(
        self, condition: Mapping[str, Any], variables: Mapping[str, str]
    ) -> tuple[bool, str, str]: ...
    def close(self) -> None: ...
    def warm_up(self, seconds: float) -> None:
        """Before the first step: let the SBC's OPTIONS flow (``seconds`` from the scenario)."""
        ...


@dataclass(slots=True)
class ScenarioRun:
    scenario: Scenario
    world: World
    seed: int
    variables: dict[str, str] = field(default_factory=dict)
    marks: dict[str, int] = field(default_factory=dict)
    cursor: int = 0
    checks: list[CheckResult] = field(default_factory=list)


def _capture(
    entry: TraceEntry, match: Match, names: Mapping[str, str], variables: dict[str, str]
) -> None:
    msg = match.message
    if msg is None:
        return
    for var, what in names.items():
        key = what.lower()
        value: str | None
        if key == "call-id":
            value = msg.call_id
        elif key == "to-tag":
            value = msg.to.tag
        elif key == "from-tag":
            value = msg.from_.tag
        elif key == "request-uri":
            value = str(msg.uri) if isinstance(msg, Request) else None
        elif key == "time":
            value = repr(entry.time)
        elif key.startswith("uri:"):
            header = msg.headers.get(what[4:].strip())
            value = None if header is None else addr_spec(header)
        else:
            value = msg.headers.get(what)
        if value is not None:
            variables[var] = value


def _judge_expect(
    run: ScenarioRun, step: ExpectStep | ExpectNoneStep, negative: bool
) -> CheckResult:
    world = run.world
    start = run.marks[step.since] if step.since else run.cursor
    deadline = world.now() + step.within
    best: Match | None = None
    scanned = start
    found: Match | None = None

    def scan() -> bool:
        nonlocal scanned, best, found
        trace = world.trace()
        while scanned < len(trace):
            entry = trace[scanned]
            scanned += 1
            m = match_entry(entry, step, run.variables, world.is_actor)
            if m.ok:
                found = m
                return True
            if best is None or m.identity > best.identity:
                best = m
        return False

    if not scan():
        remaining = deadline - world.now()
        if remaining > 0:
            world.run_until(scan, remaining)
    title = step.title or step.id
    if negative:
        if found is not None:
            return CheckResult(
                step.id,
                step.requirement,
                "fail",
                f"{title}: a forbidden message was seen: {found.entry.summary}",
                expected=f"no such message within {step.within:g} s",
                seen=found.entry.summary,
                trace_index=found.entry.index,
            )
        if world.now() < deadline:
            world.run_for(deadline - world.now())
            if scan() and found is not None:
                return CheckResult(
                    step.id,
                    step.requirement,
                    "fail",
                    f"{title}: a forbidden message was seen: {found.entry.summary}",
                    expected=f"no such message within {step.within:g} s",
                    seen=found.entry.summary,
                    trace_index=found.entry.index,
                )
        return CheckResult(
            step.id, step.requirement, "pass", f"{title}: none within {step.within:g} s"
        )
    if found is not None:
        if isinstance(step, ExpectStep) and step.capture:
            _capture(found.entry, found, step.capture, run.variables)
        return CheckResult(
            step.id,
            step.requirement,
            "pass",
            f"{title}: {found.entry.summary}",
            seen=found.entry.summary,
            trace_index=found.entry.index,
        )
    expected = _describe(step, run.variables)
    # the closest message is evidence only if it is of the kind expected (method or status)
    needed = 2 if (step.request is not None or step.status is not None) else 1
    if best is not None and best.identity >= needed:
        seen = f"{best.entry.summary} — " + "; ".join(best.failures)
        return CheckResult(
            step.id,
            step.requirement,
            "fail",
            f"{title}: {'; '.join(best.failures)}",
            expected=expected,
            seen=seen,
            trace_index=best.entry.index,
        )
    return CheckResult(
        step.id,
        step.requirement,
        "fail",
        f"{title}: no matching message within {step.within:g} virtual seconds",
        expected=expected,
        seen="nothing matching was sent",
    )


def _describe(step: ExpectStep | ExpectNoneStep, variables: Mapping[str, str]) -> str:
    parts: list[str] = []
    if step.request:
        parts.append(step.request)
    if step.status is not None:
        parts.append(f"status {step.status}")
    if step.from_:
        parts.append(f"from {step.from_}")
    if step.to:
        parts.append(f"to {step.to}")
    if step.uri:
        parts.append(f"Request-URI /{substitute(step.uri, variables)}/")
    parts += [f"{k}: /{substitute(v, variables)}/" for k, v in step.headers.items()]
    parts += [f"no {h}" for h in step.absent]
    if step.body is not None:
        parts.append(f"body /{substitute(step.body, variables)}/")
    if step.elapsed is not None:
        upper = "" if step.elapsed.max is None else f"..{step.elapsed.max:g}"
        parts.append(f"sent {step.elapsed.min:g}{upper} s after {step.elapsed.since}")
    if step.sdp is not None:
        parts.append(
            "SDP "
            + ", ".join(f"{k}={v}" for k, v in step.sdp.model_dump(exclude_defaults=True).items())
        )
    return ", ".join(parts) + f" within {step.within:g} s"


def run_scenario(
    scenario: Scenario, world_factory: Callable[[Scenario, int], World], seed: int
) -> ScenarioResult:
    """Build a fresh world, run every step, and return the judged result (never raises)."""
    wall0 = time.perf_counter()
    result = ScenarioResult(
        scenario.id, scenario.title, "pass", 0.0, 0.0, seed, tags=tuple(scenario.tags)
    )
    world: World | None = None
    run: ScenarioRun | None = None
    reached = 0
    try:
        world = world_factory(scenario, seed)
        run = ScenarioRun(scenario, world, seed)
        t0 = world.now()
        if scenario.warmup:
            world.warm_up(scenario.warmup)
        run.cursor = len(world.trace())
        for step in scenario.steps:
            reached += 1
            match step:
                case WaitStep(wait=seconds):
                    world.run_for(seconds)
                case MarkStep(mark=name):
                    run.marks[name] = len(world.trace())
                case ExpectWrap(expect=expect):
                    run.checks.append(_judge_expect(run, expect, negative=False))
                case ExpectNoneWrap(expect_none=expect):
                    run.checks.append(_judge_expect(run, expect, negative=True))
                case CheckWrap(check=check):
                    try:
                        ok, expected, seen = world.probe(check.condition, run.variables)
                    except CheckSkipped as exc:
                        title = check.title or check.id
                        run.checks.append(
                            CheckResult(check.id, check.requirement, "skip", f"{title}: {exc}")
                        )
                        continue
                    run.checks.append(
                        CheckResult(
                            check.id,
                            check.requirement,
                            "pass" if ok else "fail",
                            f"{check.title or check.id}: {seen}",
                            expected=expected,
                            seen=seen,
                        )
                    )
                case _:
                    kind, args = _action_of(step)
                    run.cursor = len(world.trace())
                    world.act(kind, args, run.variables)
        result.sim_seconds = world.now() - t0
    except ScenarioSkipped as exc:
        result.verdict = "skip"
        result.error = str(exc)
        judged = run.checks if run is not None else result.checks
        judged.extend(
            CheckResult(check_id, requirement, "skip", f"skipped: {exc}")
            for check_id, requirement in scenario.checks()[len(judged) :]
        )
    except StepImpossible as exc:
        result.verdict = "fail"
        if run is not None:
            for check_id, requirement in scenario.checks()[len(run.checks) :]:
                run.checks.append(
                    CheckResult(
                        check_id,
                        requirement,
                        "fail",
                        f"not reached: step {reached} could not be performed: {exc}",
                    )
                )
    except Exception as exc:  # a scenario must never take the run down with it
        result.verdict = "error"
        result.error = "".join(traceback.format_exception(exc))
        if run is not None:
            for check_id, requirement in scenario.checks()[len(run.checks) :]:
                run.checks.append(
                    CheckResult(
                        check_id,
                        requirement,
                        "fail",
                        f"not reached: the scenario stopped at step {reached}: {exc}",
                    )
                )
    finally:
        if world is not None:
            result.trace = world.trace()
            if result.sim_seconds == 0.0:
                result.sim_seconds = world.now()
            world.close()
    if run is not None:
        result.checks = run.checks
    if result.verdict != "error" and any(c.verdict == "fail" for c in result.checks):
        result.verdict = "fail"
    if (
        result.verdict == "pass"
        and result.checks
        and all(c.verdict == "skip" for c in result.checks)
    ):
        result.verdict = "skip"
        result.error = "every check was skipped"
    if result.verdict == "pass" and not result.checks:
        result.verdict = "error"
        result.error = "the scenario has no checks: nothing was judged"
    result.wall_seconds = time.perf_counter() - wall0
    return result


def _action_of(step: object) -> tuple[str, Mapping[str, Any]]:
    """(action name, its arguments as a plain mapping with YAML key names)."""
    from pydantic import BaseModel

    assert isinstance(step, BaseModel)
    data = step.model_dump(by_alias=True, exclude_none=True)
    if len(data) != 1:
        raise ScenarioError(f"malformed step {data!r}")
    kind, args = next(iter(data.items()))
    return kind, args if isinstance(args, dict) else {"value": args}
