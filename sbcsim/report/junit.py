"""JUnit XML for CI systems: one ``<testsuite>`` per plan, one ``<testcase>`` per scenario.

CI servers (Jenkins, GitLab, GitHub annotations) only understand pass/failure/error/skipped per
test case, so a scenario is the test case and its failed checks travel inside ``<failure>``: the
``message`` attribute lists every failed check (id, requirement, message) for the one-line view,
the element text adds expected/seen values, and ``<system-out>`` carries the ladder excerpt
around each failing message.  Nothing here reads a clock: the times are the result's wall
seconds, so the same result always gives the same bytes.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from sbcsim.report.ladder import Ladder
from sbcsim.testplan.results import CheckResult, PlanResult, ScenarioResult

__all__ = ["junit_text", "write_junit"]

_PROBLEMS = ("fail", "error")
#: Characters XML 1.0 cannot carry at all (even escaped).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LADDER_WINDOW = 4
_LADDER_WIDTH = 120


def _clean(text: str) -> str:
    return _NOT_XML.sub("\ufffd", text)


def _seconds(value: float) -> str:
    return f"{value:.3f}"


def _check_line(check: CheckResult) -> str:
    return f"{check.id} [{check.requirement}]: {check.message}"


def _check_detail(check: CheckResult) -> str:
    lines = [_check_line(check)]
    if check.expected is not None:
        lines.append(f"  expected: {check.expected}")
    if check.seen is not None:
        lines.append(f"  seen: {check.seen}")
    if check.trace_index is not None:
        lines.append(f"  message: #{check.trace_index}")
    return "\n".join(lines)


def _ladders(scenario: ScenarioResult, problems: list[CheckResult]) -> str:
    ladder = Ladder.from_trace(scenario.trace)
    parts = []
    for check in problems:
        if ladder.position(check.trace_index) is None:
            continue
        parts.append(f"{check.id} at message #{check.trace_index}:")
        parts.append(
            ladder.render_text(
                around=check.trace_index,
                window=_LADDER_WINDOW,
                failing=check.trace_index,
                width=_LADDER_WIDTH,
            )
        )
    return "\n".join(parts)


def _testcase(parent: ET.Element, plan: str, scenario: ScenarioResult) -> None:
    case = ET.SubElement(
        parent,
        "testcase",
        {
            "classname": _clean(plan),
            "name": _clean(scenario.id),
            "time": _seconds(scenario.wall_seconds),
        },
    )
    problems = [c for c in scenario.checks if c.verdict in _PROBLEMS]
    details = "\n".join(_check_detail(c) for c in problems)
    if scenario.verdict == "fail":
        message = "; ".join(_check_line(c) for c in problems) or (
            scenario.error or "scenario failed"
        )
        failure = ET.SubElement(case, "failure", {"message": _clean(message), "type": "check"})
        failure.text = _clean(details or message)
    elif scenario.verdict == "error":
        message = scenario.error or "internal error"
        error = ET.SubElement(
            case,
            "error",
            {"message": _clean(message.splitlines()[0] if message else message), "type": "error"},
        )
        error.text = _clean("\n".join(part for part in (message, details) if part))
    elif scenario.verdict == "skip":
        skipped_checks = [c.message for c in scenario.checks if c.verdict == "skip"]
        reason = scenario.error or "; ".join(skipped_checks) or "skipped"
        ET.SubElement(case, "skipped", {"message": _clean(reason)})
    if problems:
        ladders = _ladders(scenario, problems)
        if ladders:
            ET.SubElement(case, "system-out").text = _clean(ladders)


def _testsuite(parent: ET.Element, result: PlanResult) -> None:
    suite = ET.SubElement(
        parent,
        "testsuite",
        {
            "name": _clean(result.plan),
            "tests": str(len(result.scenarios)),
            "failures": str(result.count("fail")),
            "errors": str(result.count("error")),
            "skipped": str(result.count("skip")),
            "time": _seconds(result.wall_seconds),
        },
    )
    properties = ET.SubElement(suite, "properties")
    for name, value in (("seed", str(result.seed)), ("target", result.target)):
        ET.SubElement(properties, "property", {"name": name, "value": _clean(value)})
    for scenario in result.scenarios:
        _testcase(suite, result.plan, scenario)


def junit_text(results: PlanResult | Sequence[PlanResult]) -> str:
    """The JUnit XML document (``<testsuites>`` root) for one plan or several."""
    plans = [results] if isinstance(results, PlanResult) else list(results)
    root = ET.Element(
        "testsuites",
        {
            "name": "sbcsim",
            "tests": str(sum(len(p.scenarios) for p in plans)),
            "failures": str(sum(p.count("fail") for p in plans)),
            "errors": str(sum(p.count("error") for p in plans)),
            "skipped": str(sum(p.count("skip") for p in plans)),
            "time": _seconds(sum(p.wall_seconds for p in plans)),
        },
    )
    for plan in plans:
        _testsuite(root, plan)
    ET.indent(root, space="  ")
    body = ET.tostring(root, encoding="unicode")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n"


def write_junit(path: str | Path, results: PlanResult | Sequence[PlanResult]) -> None:
    """Write the JUnit XML of ``results`` to ``path`` (UTF-8)."""
    Path(path).write_text(junit_text(results), encoding="utf-8", newline="\n")
