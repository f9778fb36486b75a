"""The terminal report: a summary table, then for each failure why it failed and where.

Everything is a rich renderable (``__rich_console__``) and prints through the console the caller
injects, so the CLI, the tests (``Console(file=StringIO())``) and rich's own HTML/SVG export
all render the same objects.  A failure shows the check id, the requirement it enforces, the
expected and seen values, and a ladder excerpt around the message the check judged, because the
first question after "what failed" is always "which message".
"""

from __future__ import annotations

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.padding import Padding
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from sbcsim.report.ladder import Ladder, LadderView
from sbcsim.testplan.results import CheckResult, PlanResult, ScenarioResult, Verdict

__all__ = [
    "LADDER_WINDOW",
    "VERDICT_STYLES",
    "FailureReport",
    "PlanReport",
    "PlanSummary",
    "render",
    "summary_line",
]

VERDICT_STYLES: dict[str, str] = {
    "pass": "bold green",
    "fail": "bold red",
    "skip": "yellow",
    "error": "bold magenta",
}
_PROBLEM_VERDICTS: tuple[Verdict, ...] = ("fail", "error")
#: Arrows shown either side of the failing one.
LADDER_WINDOW = 4


def _verdict(verdict: str) -> Text:
    return Text(verdict.upper(), style=VERDICT_STYLES.get(verdict, ""))


def summary_line(result: PlanResult) -> str:
    """One line with the counts, the target and the seed (the seed reproduces the run)."""
    return (
        f"{result.plan} on {result.target}, seed {result.seed}: "
        f"{result.count('pass')} passed, {result.count('fail')} failed, "
        f"{result.count('skip')} skipped, {result.count('error')} errors; "
        f"checks {result.checks_passed} passed, {result.checks_failed} failed; "
        f"exit code {result.exit_code}"
    )


class PlanSummary:
    """The summary table: one row per scenario."""

    def __init__(self, result: PlanResult) -> None:
        self.result = result

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        table = Table(title=f"sbcsim: {self.result.plan}", box=box.SIMPLE_HEAD, expand=False)
        table.add_column("Scenario", overflow="fold")
        table.add_column("Title", overflow="fold")
        table.add_column("Verdict")
        table.add_column("Checks", justify="right")
        table.add_column("Sim s", justify="right")
        table.add_column("Wall s", justify="right")
        for scenario in self.result.scenarios:
            passed = sum(1 for c in scenario.checks if c.verdict == "pass")
            table.add_row(
                scenario.id,
                scenario.title,
                _verdict(scenario.verdict),
                f"{passed}/{len(scenario.checks)}",
                f"{scenario.sim_seconds:.3f}",
                f"{scenario.wall_seconds:.3f}",
            )
        yield table
        style = "bold red" if self.result.exit_code else "bold green"
        yield Text(summary_line(self.result), style=style)


class FailureReport:
    """Why one scenario failed: its error, and each failed check with a ladder excerpt."""

    def __init__(self, scenario: ScenarioResult, *, window: int = LADDER_WINDOW) -> None:
        self.scenario = scenario
        self.window = window

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        scenario = self.scenario
        title = Text.assemble(
            (f"{scenario.id}", "bold"),
            f" — {scenario.title} " if scenario.title else " ",
            _verdict(scenario.verdict),
            f"  (seed {scenario.seed})",
        )
        yield Text("")
        yield Rule(title, align="left")
        if scenario.error:
            yield Text(f"error: {scenario.error}", style=VERDICT_STYLES["error"])
        ladder = Ladder.from_trace(scenario.trace)
        for check in scenario.checks:
            if check.verdict in _PROBLEM_VERDICTS:
                yield self._check(check, ladder)

    def _check(self, check: CheckResult, ladder: Ladder) -> RenderableType:
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row("check", Text.assemble((check.id, "bold"), " ", _verdict(check.verdict)))
        grid.add_row("requirement", check.requirement)
        grid.add_row("message", check.message)
        if check.expected is not None:
            grid.add_row("expected", check.expected)
        if check.seen is not None:
            grid.add_row("seen", check.seen)
        parts: list[RenderableType] = [grid]
        if ladder.arrows:
            if ladder.position(check.trace_index) is not None:
                caption = f"ladder around message #{check.trace_index}:"
                view = LadderView(
                    ladder, around=check.trace_index, window=self.window, failing=check.trace_index
                )
            else:
                # Nothing to point at (an expected message never came): show how the call ended.
                last = ladder.arrows[-1].index
                caption = "ladder (last messages; no message to point at):"
                view = LadderView(ladder, around=last, window=self.window)
            parts += [Text(caption, style="dim"), view]
        return Padding(Group(*parts), (1, 0, 0, 2))


class PlanReport:
    """Summary table followed by a :class:`FailureReport` for every failed or errored scenario."""

    def __init__(self, result: PlanResult, *, window: int = LADDER_WINDOW) -> None:
        self.result = result
        self.window = window

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield PlanSummary(self.result)
        for scenario in self.result.scenarios:
            if scenario.verdict in _PROBLEM_VERDICTS:
                yield FailureReport(scenario, window=self.window)


def render(console: Console, result: PlanResult | ScenarioResult) -> None:
    """Print a plan report (or one scenario's failures) on ``console``."""
    if isinstance(result, PlanResult):
        console.print(PlanReport(result))
        return
    console.print(
        Text.assemble(_verdict(result.verdict), f" {result.id} — {result.title}"),
    )
    if result.verdict in _PROBLEM_VERDICTS:
        console.print(FailureReport(result))
