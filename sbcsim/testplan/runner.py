"""Running a plan: a fresh world per scenario, seeds derived from the plan seed, scoring.

Scenarios are independent, so ``jobs > 1`` runs them in worker processes; results come back in
plan order whatever the completion order, so reports are identical for any ``jobs``.  An
interrupt (Ctrl-C) stops the run between scenarios: finished results are kept and the rest are
marked ``skip`` so the reports are still written.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from sbcsim.scenario.engine import World, run_scenario
from sbcsim.scenario.models import Scenario
from sbcsim.testplan.plan import LoadedPlan, derive_seed
from sbcsim.testplan.results import PlanResult, ScenarioResult

__all__ = ["RunOptions", "run_plan"]

WorldFactory = Callable[[Scenario, int], World]


@dataclass(frozen=True, slots=True)
class RunOptions:
    target: str = "embedded"
    seed: int | None = None
    jobs: int = 1


def _run_one(args: tuple[Scenario, int, Callable[[], WorldFactory]]) -> ScenarioResult:
    scenario, seed, make_factory = args
    return run_scenario(scenario, make_factory(), seed)


def run_plan(
    loaded: LoadedPlan,
    scenarios: list[Scenario],
    make_factory: Callable[[], WorldFactory],
    options: RunOptions,
    *,
    on_result: Callable[[ScenarioResult], None] | None = None,
) -> PlanResult:
    """Run ``scenarios`` (already selected from ``loaded``).  ``make_factory`` must be picklable
    (a module-level function or a ``functools.partial`` of one) when ``jobs > 1``."""
    plan_seed = loaded.plan.seed if options.seed is None else options.seed
    result = PlanResult(loaded.plan.id, options.target, plan_seed)
    wall0 = time.perf_counter()
    work = [(s, derive_seed(plan_seed, s.id), make_factory) for s in scenarios]
    done: dict[str, ScenarioResult] = {}
    try:
        if options.jobs <= 1 or len(work) <= 1:
            for item in work:
                r = _run_one(item)
                done[r.id] = r
                if on_result:
                    on_result(r)
        else:
            with ProcessPoolExecutor(max_workers=options.jobs) as pool:
                for r in pool.map(_run_one, work):
                    done[r.id] = r
                    if on_result:
                        on_result(r)
    except KeyboardInterrupt:
        pass
    for scenario, seed, _ in work:
        finished = done.get(scenario.id)
        if finished is None:
            finished = ScenarioResult(
                scenario.id, scenario.title, "skip", 0.0, 0.0, seed, tags=tuple(scenario.tags)
            )
            finished.error = "not run: the run was interrupted"
        result.scenarios.append(finished)
    result.wall_seconds = time.perf_counter() - wall0
    return result
