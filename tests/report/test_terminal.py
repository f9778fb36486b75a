from __future__ import annotations

import io

from rich.console import Console
from rich.style import Style

from sbcsim.report.terminal import FailureReport, PlanReport, PlanSummary, render, summary_line
from sbcsim.testplan.results import PlanResult, ScenarioResult


def console(width: int = 100) -> Console:
    return Console(file=io.StringIO(), width=width, color_system=None, _environ={})


def output(con: Console) -> list[str]:
    text: str = con.file.getvalue()  # type: ignore[attr-defined]
    return [line.rstrip() for line in text.splitlines()]


def test_summary_line(plan: PlanResult) -> None:
    assert summary_line(plan) == (
        "direct-routing-sbc on embedded, seed 42: 1 passed, 1 failed, 1 skipped, 1 errors; "
        "checks 2 passed, 2 failed; exit code 3"
    )


def test_summary_table_rows(plan: PlanResult) -> None:
    con = console()
    con.print(PlanSummary(plan))
    lines = output(con)
    assert (
        lines[2]
        == "  Scenario            Title                            Verdict   Checks   Sim s   Wall s"
    )
    assert lines[4:8] == [
        "  dr-inbound-basic    PSTN calls a Teams user          PASS         1/1   1.300    0.013",
        "  dr-contact-fqdn     Contact carries the SBC FQDN     FAIL         1/3   1.300    0.020",
        "  cc-sme-escalation   Escalate to the first free SME   SKIP         0/1   0.000    0.000",
        "  dr-refer            Transfer by REFER                ERROR        0/0   0.500    0.001",
    ]


def test_failure_shows_check_requirement_expected_seen_and_ladder(plan: PlanResult) -> None:
    con = console()
    render(con, plan)
    lines = output(con)
    start = lines.index("  check       dr.contact.fqdn FAIL")
    assert lines[start : start + 14] == [
        "  check       dr.contact.fqdn FAIL",
        "  requirement Direct Routing: SIP signaling — Contact header",
        "  message     Contact host is an IP address, Microsoft answers 403",
        "  expected    sbc.example.com",
        "  seen        192.0.2.20",
        "  ladder around message #1:",
        "                          pstn                         sbc              sip.pstnhub.microsoft.com",
        "     #0 0.000               |- INVITE ----------------->|                           |",
        "  >> #1 0.020               |                           |- INVITE ----------------->|",
        "     #2 0.050               |                           |<- 100 Trying (INVITE) ----|",
        "     #3 1.250               |                           |<- 200 OK (INVITE) --------|",
        "     #4 1.270               |<- 200 OK (INVITE) --------|                           |",
        "     #5 1.300               |- ACK -------------------->|                           |",
        "",
    ]
    # A check with nothing to point at (the BYE never came) shows how the call ended.
    bye = lines.index("  check       dr.bye.sent FAIL")
    assert lines[bye + 5 : bye + 8] == [
        "  ladder (last messages; no message to point at):",
        "                          pstn                         sbc              sip.pstnhub.microsoft.com",
        "              … 1 earlier message",
    ]
    assert (
        lines[bye + 12]
        == "     #5 1.300               |- ACK -------------------->|                           |"
    )
    assert ">>" not in "".join(lines[bye:])
    # Headings for failed and errored scenarios, and the error text.
    heading = [line for line in lines if line.startswith("dr-contact-fqdn — ")]
    assert len(heading) == 1
    assert heading[0].startswith(
        "dr-contact-fqdn — Contact carries the SBC FQDN FAIL  (seed 8) ───"
    )
    assert lines[lines.index(heading[0]) - 1] == ""
    error = [
        line for line in lines if line.startswith("dr-refer — Transfer by REFER ERROR  (seed 10) ─")
    ]
    assert len(error) == 1
    at = lines.index(error[0])
    assert lines[at + 1 : at + 3] == [
        "error: KeyError: 'Refer-To'",
        "Traceback saved to out/dr-refer.traceback",
    ]
    # Passing and skipped scenarios get no failure section.
    assert not any(line.startswith(("dr-inbound-basic —", "cc-sme-escalation —")) for line in lines)


def test_passing_plan_prints_only_the_summary() -> None:
    result = PlanResult("p", "embedded", 1, [ScenarioResult("a", "A", "pass", 1.0, 0.5, 1)], 0.5)
    con = console(width=140)
    render(con, result)
    lines = output(con)
    assert (
        lines[-1]
        == "p on embedded, seed 1: 1 passed, 0 failed, 0 skipped, 0 errors; checks 0 passed, 0 failed; exit code 0"
    )
    assert lines == [
        "                       sbcsim: p",
        "",
        "  Scenario   Title   Verdict   Checks   Sim s   Wall s",
        " ──────────────────────────────────────────────────────",
        "  a          A       PASS         0/0   1.000    0.500",
        "",
        "p on embedded, seed 1: 1 passed, 0 failed, 0 skipped, 0 errors; checks 0 passed, 0 failed; "
        "exit code 0",
    ]


def test_render_one_scenario(plan: PlanResult) -> None:
    con = console()
    render(con, plan.scenarios[0])
    assert output(con) == ["PASS dr-inbound-basic — PSTN calls a Teams user"]
    con = console()
    render(con, plan.scenarios[1])
    lines = output(con)
    assert lines[0] == "FAIL dr-contact-fqdn — Contact carries the SBC FQDN"
    assert (
        "  >> #1 0.020               |                           |- INVITE ----------------->|"
        in lines
    )


def test_styles_are_data(plan: PlanResult) -> None:
    con = Console(file=io.StringIO(), width=100, color_system="truecolor", _environ={})
    segments = list(con.render(PlanReport(plan)))
    words = ("PASS", "FAIL", "SKIP", "ERROR")
    styles = {s.text.strip(): s.style for s in segments if s.text.strip() in words}
    assert styles == {
        "PASS": Style.parse("bold green"),
        "FAIL": Style.parse("bold red"),
        "SKIP": Style.parse("yellow"),
        "ERROR": Style.parse("bold magenta"),
    }
    failing = [s for s in segments if s.text.startswith(">> #1")]
    assert [s.style for s in failing] == [Style.parse("bold red")]


def test_failure_report_window(plan: PlanResult) -> None:
    con = console()
    con.print(FailureReport(plan.scenarios[1], window=1))
    lines = output(con)
    at = lines.index("  ladder around message #1:")
    assert lines[at + 2 : at + 6] == [
        "     #0 0.000               |- INVITE ----------------->|                           |",
        "  >> #1 0.020               |                           |- INVITE ----------------->|",
        "     #2 0.050               |                           |<- 100 Trying (INVITE) ----|",
        "              … 3 later messages",
    ]
