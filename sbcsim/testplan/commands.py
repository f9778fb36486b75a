"""``sbcsim run`` and ``sbcsim list`` (a contract: PRODUCT.md)."""

from __future__ import annotations

import traceback
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from sbcsim.errors import ConfigError, SbcsimError
from sbcsim.testplan.plan import LoadedPlan, load_plan, select
from sbcsim.testplan.results import PlanResult, ScenarioResult
from sbcsim.testplan.runner import RunOptions, run_plan

__all__ = ["default_plan", "list_cmd", "run"]

EXIT_USAGE = 2
EXIT_INTERNAL = 3
DEFAULT_PLAN = "testplans/direct-routing-sbc.yaml"


def _console(ctx: click.Context) -> Console:
    obj = ctx.find_root().obj
    if isinstance(obj, Console):
        return obj
    console = Console(highlight=False, soft_wrap=True)
    ctx.find_root().obj = console
    return console


def default_plan() -> Path:
    """The Direct Routing SBC plan: from the working directory, else from the source tree."""
    here = Path.cwd() / DEFAULT_PLAN
    if here.exists():
        return here
    return Path(__file__).resolve().parent.parent.parent / DEFAULT_PLAN


def _load(console: Console, ctx: click.Context, plans: tuple[Path, ...]) -> list[LoadedPlan]:
    paths = list(plans) or [default_plan()]
    loaded: list[LoadedPlan] = []
    for path in paths:
        try:
            loaded.append(load_plan(path))
        except ConfigError as exc:
            console.print(f"[red]invalid input[/red]: {exc}", markup=True, highlight=False)
            ctx.exit(EXIT_USAGE)
    return loaded


@click.command("list")
@click.argument("plans", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def list_cmd(ctx: click.Context, plans: tuple[Path, ...]) -> None:
    """List the scenarios of PLAN(s): id, title, tags and the requirements they check."""
    console = _console(ctx)
    for lp in _load(console, ctx, plans):
        table = Table(title=f"{lp.plan.id}: {lp.plan.title}", show_lines=False)
        for col in ("id", "title", "tags", "requirements", "checks"):
            table.add_column(col, overflow="fold")
        for s in lp.scenarios:
            reqs = sorted({r for _, r in s.checks()} | set(s.requirements))
            table.add_row(s.id, s.title, ", ".join(s.tags), "; ".join(reqs), str(len(s.checks())))
        console.print(table)


def _write_reports(
    console: Console,
    result: PlanResult,
    junit: Path | None,
    json_path: Path | None,
    html: Path | None,
    out: Path | None,
) -> None:
    from sbcsim.report import write_html, write_json, write_junit, write_scenario_traces

    for path in (junit, json_path, html):
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    if json_path:
        write_json(json_path, result)
    if junit:
        write_junit(junit, result)
    if html:
        write_html(html, result)
    if out:
        out.mkdir(parents=True, exist_ok=True)
        write_scenario_traces(out, result)
        for name, path in (("json", json_path), ("junit", junit), ("html", html)):
            if path is None:
                {"json": write_json, "junit": write_junit, "html": write_html}[name](
                    out
                    / {"json": "report.json", "junit": "junit.xml", "html": "report.html"}[name],
                    result,
                )
    for label, path in (("JSON", json_path), ("JUnit", junit), ("HTML", html), ("traces", out)):
        if path is not None:
            console.print(f"{label}: {path}", highlight=False)


@click.command()
@click.argument("plans", nargs=-1, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--target",
    default="embedded",
    show_default=True,
    help="embedded | mutant:NAME | TARGET.yaml (a live SBC)",
)
@click.option(
    "-k",
    "expression",
    default=None,
    help="select scenarios: words matched in id/title/tags, with and/or/not",
)
@click.option(
    "--seed", type=int, default=None, help="plan seed (default: the plan's); replays a run exactly"
)
@click.option(
    "--jobs",
    "-j",
    type=int,
    default=1,
    show_default=True,
    help="scenarios run in parallel processes",
)
@click.option("--junit", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option("--html", type=click.Path(dir_okay=False, path_type=Path), default=None)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="directory for a pcap and a JSON-lines trace per scenario (and the reports)",
)
@click.pass_context
def run(
    ctx: click.Context,
    plans: tuple[Path, ...],
    target: str,
    expression: str | None,
    seed: int | None,
    jobs: int,
    junit: Path | None,
    json_path: Path | None,
    html: Path | None,
    out: Path | None,
) -> None:
    """Run test PLAN(s) (default: the Direct Routing SBC plan) against the target SBC.

    Exit 0: every check passed; 1: a scenario failed; 2: bad usage or invalid input;
    3: an internal error (traceback saved to the output directory).
    """
    from sbcsim.report import render
    from sbcsim.scenario.labworld import factory_for

    console = _console(ctx)
    loaded_plans = _load(console, ctx, plans)
    exit_code = 0
    for lp in loaded_plans:
        try:
            chosen = select(lp.scenarios, expression)
            make_factory = factory_for(lp, target)
        except ConfigError as exc:
            console.print(f"[red]invalid input[/red]: {exc}")
            ctx.exit(EXIT_USAGE)
        if jobs > 1 and target not in ("embedded",) and not target.startswith("mutant:"):
            # live worlds bind the target's fixed addresses: two at once would collide
            console.print("live target: scenarios run one at a time (--jobs ignored)")
            jobs = 1
        if not chosen:
            console.print(f"[yellow]no scenario of {lp.plan.id} matches -k {expression!r}[/yellow]")
            ctx.exit(EXIT_USAGE)
        try:
            with Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[last]}"),
                console=console,
                transient=True,
            ) as progress:
                task = progress.add_task(lp.plan.id, total=len(chosen), last="")

                def advance(r: ScenarioResult, task: TaskID = task) -> None:
                    progress.update(task, advance=1, last=f"{r.id}: {r.verdict}")

                result = run_plan(
                    lp, chosen, make_factory, RunOptions(target, seed, jobs), on_result=advance
                )
        except SbcsimError as exc:
            console.print(f"[red]cannot run {lp.plan.id}[/red]: {exc}")
            ctx.exit(EXIT_USAGE)
        except Exception as exc:  # an internal error: a bug, reported, never a bare traceback
            where = (out or Path(".")) / "sbcsim-internal-error.txt"
            where.parent.mkdir(parents=True, exist_ok=True)
            where.write_text("".join(traceback.format_exception(exc)))
            console.print(f"[red]internal error[/red]: {exc!r} (traceback saved to {where})")
            ctx.exit(EXIT_INTERNAL)
        render(console, result)
        for s in result.scenarios:
            if s.verdict in ("fail", "error"):
                console.print(
                    f"replay {s.id}: sbcsim run {lp.path} -k {s.id} --seed {result.seed} --target {target}"
                    f"  (scenario seed {s.seed})",
                    highlight=False,
                )
            if s.verdict == "error" and s.error:
                where = (out or Path(".")) / f"{s.id}.error.txt"
                where.parent.mkdir(parents=True, exist_ok=True)
                where.write_text(s.error)
                console.print(f"{s.id}: internal error, traceback saved to {where}")
        _write_reports(console, result, junit, json_path, html, out)
        exit_code = max(exit_code, result.exit_code)
    ctx.exit(exit_code)
