"""The mutation score: run plans against every mutant of the family they target.

A plan is only as good as the faults it catches.  Each mutant switches on one named fault of
the reference SBC (family ``sbc``) or of the reference contact center (family ``ccaas``); a plan
says which family it targets (``mutants:`` in the plan file).  The plan *kills* a mutant when at
least one of its checks fails (or a scenario errors) against it.  The score is the share of
mutants killed; the reference itself must pass every check, or the score means nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from sbcsim.endpoints.ccaas import CCAAS_MUTANTS
from sbcsim.endpoints.mutants import MUTANTS
from sbcsim.scenario.labworld import factory_for
from sbcsim.testplan.plan import LoadedPlan
from sbcsim.testplan.results import PlanResult
from sbcsim.testplan.runner import RunOptions, run_plan

__all__ = ["MutantOutcome", "MutationReport", "family_mutants", "mutation_report"]


def family_mutants(family: str) -> dict[str, str]:
    """The mutants of a family (``sbc`` or ``ccaas``): name -> the rule each breaks."""
    if family == "ccaas":
        return {name: m.rule for name, m in CCAAS_MUTANTS.items()}
    return {name: m.rule for name, m in MUTANTS.items()}


@dataclass(frozen=True, slots=True)
class MutantOutcome:
    mutant: str
    rule: str
    failed_checks: tuple[str, ...]
    errors: tuple[str, ...]

    @property
    def killed(self) -> bool:
        return bool(self.failed_checks or self.errors)


@dataclass(frozen=True, slots=True)
class MutationReport:
    reference: tuple[PlanResult, ...]
    outcomes: tuple[MutantOutcome, ...]

    @property
    def reference_passes(self) -> bool:
        return all(r.exit_code == 0 for r in self.reference)

    @property
    def score(self) -> float:
        if not self.outcomes:
            return 0.0
        return sum(o.killed for o in self.outcomes) / len(self.outcomes)


def _run_all(plans: Sequence[LoadedPlan], target: str) -> list[PlanResult]:
    return [
        run_plan(lp, list(lp.scenarios), factory_for(lp, target), RunOptions(target))
        for lp in plans
    ]


def _outcome(args: tuple[Sequence[LoadedPlan], str]) -> MutantOutcome:
    plans, name = args
    results = _run_all(plans, f"mutant:{name}")
    failed = tuple(
        f"{s.id}/{c.id}"
        for r in results
        for s in r.scenarios
        for c in s.checks
        if c.verdict == "fail"
    )
    errors = tuple(f"{s.id}" for r in results for s in r.scenarios if s.verdict == "error")
    rule = MUTANTS[name].rule if name in MUTANTS else CCAAS_MUTANTS[name].rule
    return MutantOutcome(name, rule, failed, errors)


def mutation_report(
    plans: Sequence[LoadedPlan],
    *,
    mutants: Sequence[str] | None = None,
    jobs: int = 1,
    on_outcome: Callable[[MutantOutcome], None] | None = None,
) -> MutationReport:
    """Run ``plans`` against the reference and every mutant of the families the plans target
    (``jobs`` processes)."""
    reference = tuple(_run_all(plans, "embedded"))
    families = dict.fromkeys(lp.plan.mutants for lp in plans)
    names = list(mutants or [n for family in families for n in family_mutants(family)])
    outcomes: list[MutantOutcome] = []
    work = [(plans, name) for name in names]
    if jobs <= 1:
        for item in work:
            outcome = _outcome(item)
            outcomes.append(outcome)
            if on_outcome:
                on_outcome(outcome)
    else:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for outcome in pool.map(_outcome, work):
                outcomes.append(outcome)
                if on_outcome:
                    on_outcome(outcome)
    return MutationReport(reference, tuple(outcomes))
