"""The Connected Contact Center plan (``testplans/contact-center-connect.yaml``): every scenario
passes against the reference contact center and fails, on the named checks, against the
contact-center mutants it is there to catch; the plan targets the ``ccaas`` mutant family."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from sbcsim.config import load_model_text
from sbcsim.endpoints.ccaas import CCAAS_MUTANTS
from sbcsim.endpoints.sbc_live import mutants as mutants_command
from sbcsim.errors import ConfigError
from sbcsim.scenario.engine import ScenarioError, run_scenario
from sbcsim.scenario.labworld import LabWorld, factory_for
from sbcsim.scenario.models import Scenario
from sbcsim.testplan import mutation
from sbcsim.testplan.plan import LoadedPlan, derive_seed, load_plan
from sbcsim.testplan.results import ScenarioResult
from sbcsim.topology import Topology, default_topology_text, load_topology

REPO = Path(__file__).resolve().parents[2]
PLAN = REPO / "testplans" / "contact-center-connect.yaml"
IDS = (
    "cc-agent-sign-in",
    "cc-blind-transfer",
    "cc-conference-sme",
    "cc-consult-transfer",
    "cc-presence-follows-calls",
    "cc-sme-first-available",
    "cc-sme-none-free-voicemail",
    "cc-sme-notification-escalates",
    "cc-sme-skips-busy-dnd",
    "cc-throttled-presence",
    "cc-two-tenants",
)

#: (scenario, mutant) -> the checks that fail, in order.
KILLS: dict[tuple[str, str], tuple[str, ...]] = {
    ("cc-agent-sign-in", "no-agent-sign-in"): (
        "cc.sign-in.password-grant",
        "cc.sign-in.second-tenant",
        "cc.sign-in.own-presence",
        "cc.sign-in.new-token",
    ),
    ("cc-agent-sign-in", "bad-webhook-validation"): (
        "cc.sign-in.webhook-validation",
        "cc.sign-in.sme-subscription",
    ),
    ("cc-blind-transfer", "blind-keeps-agent"): ("cc.blind.agent-released-at-once",),
    ("cc-conference-sme", "conference-ends-with-agent"): (
        "cc.conf.caller-stays",
        "cc.conf.sme-stays",
        "cc.conf.caller-with-sme",
    ),
    ("cc-consult-transfer", "consult-skips-consultation"): (
        "cc.consult.agent-stays-for-consultation",
        "cc.consult.consulting",
        "cc.consult.agent-released-on-completion",
        "cc.consult.caller-with-sme",
        "cc.consult.caller-kept",
    ),
    ("cc-presence-follows-calls", "wrong-tenant-contact"): (
        "cc.agent.rung-on-tenant-trunk",
        "cc.agent.invite-to-microsoft",
        "cc.agent.answers",
        "cc.agent.answer-reaches-platform",
        "cc.agent.bridged",
        "cc.presence.busy-in-a-call",
        "cc.agent-leg-ended",
        "cc.agent-bye-to-microsoft",
    ),
    ("cc-sme-first-available", "ignores-presence"): ("cc.first.presence-read",),
    ("cc-sme-first-available", "other-tenant-token"): (
        "cc.first.presence-read",
        "cc.first.rings-first-available",
        "cc.first.sme-invite-to-microsoft",
        "cc.first.sme-answers",
        "cc.first.caller-with-sme",
        "cc.first.sme-leg-ended",
    ),
    ("cc-sme-first-available", "other-tenant-smes"): (
        "cc.first.presence-read",
        "cc.first.rings-first-available",
        "cc.first.sme-invite-to-microsoft",
        "cc.first.sme-answers",
        "cc.first.caller-with-sme",
        "cc.first.sme-leg-ended",
    ),
    ("cc-sme-first-available", "no-agent-sign-in"): ("cc.first.presence-read",),
    ("cc-sme-none-free-voicemail", "no-fallback"): ("cc.none.voicemail", "cc.none.caller-kept"),
    ("cc-sme-none-free-voicemail", "escalates-to-dnd"): ("cc.none.no-sme-rings",),
    ("cc-sme-none-free-voicemail", "escalates-to-busy"): ("cc.none.no-sme-rings",),
    ("cc-sme-notification-escalates", "ignores-notifications"): (
        "cc.notify.rings-sme-who-became-free",
        "cc.notify.presence-read-again",
        "cc.notify.sme-answers",
        "cc.notify.group-call",
    ),
    ("cc-sme-notification-escalates", "no-fallback"): (
        "cc.notify.waiting-in-sme-queue",
        "cc.notify.rings-sme-who-became-free",
        "cc.notify.presence-read-again",
        "cc.notify.sme-answers",
        "cc.notify.group-call",
    ),
    ("cc-sme-notification-escalates", "bad-webhook-validation"): (
        "cc.notify.rings-sme-who-became-free",
        "cc.notify.notification-delivered",
        "cc.notify.presence-read-again",
        "cc.notify.sme-answers",
        "cc.notify.group-call",
    ),
    ("cc-sme-skips-busy-dnd", "ignores-presence"): (
        "cc.skip.presence-read",
        "cc.skip.rings-available-idle",
        "cc.skip.no-busy-dnd-away-sme",
        "cc.skip.group-call",
    ),
    ("cc-sme-skips-busy-dnd", "escalates-to-dnd"): (
        "cc.skip.no-busy-dnd-away-sme",
        "cc.skip.group-call",
    ),
    ("cc-sme-skips-busy-dnd", "escalates-to-busy"): (
        "cc.skip.no-busy-dnd-away-sme",
        "cc.skip.group-call",
    ),
    ("cc-sme-skips-busy-dnd", "skips-available-idle"): (
        "cc.skip.rings-available-idle",
        "cc.skip.group-call",
    ),
    ("cc-throttled-presence", "ignores-retry-after"): (
        "cc.throttle.sme-after-retry-after",
        "cc.throttle.retry-after-honoured",
        "cc.throttle.retry-succeeds",
    ),
    ("cc-two-tenants", "other-tenant-token"): (
        "cc.tenants.b-reads-own-smes",
        "cc.tenants.b-sme-contact",
        "cc.tenants.a-reads-own-smes",
        "cc.tenants.a-sme-contact",
        "cc.tenants.every-read-allowed",
        "cc.tenants.b-with-own-sme",
        "cc.tenants.a-with-own-sme",
    ),
    ("cc-two-tenants", "other-tenant-smes"): (
        "cc.tenants.b-reads-own-smes",
        "cc.tenants.b-sme-contact",
        "cc.tenants.a-reads-own-smes",
        "cc.tenants.a-sme-contact",
        "cc.tenants.every-read-allowed",
        "cc.tenants.b-with-own-sme",
        "cc.tenants.a-with-own-sme",
    ),
    ("cc-two-tenants", "wrong-tenant-contact"): (
        "cc.tenants.agent-a-on-trunk-a",
        "cc.tenants.agent-b-on-trunk-b",
        "cc.tenants.agent-b-contact",
        "cc.tenants.agent-b-answers",
        "cc.tenants.agent-a-answers",
        "cc.tenants.b-reads-own-smes",
        "cc.tenants.b-sme-contact",
        "cc.tenants.a-reads-own-smes",
        "cc.tenants.a-sme-contact",
        "cc.tenants.every-read-allowed",
        "cc.tenants.presence-is-per-tenant",
        "cc.tenants.b-with-own-sme",
        "cc.tenants.a-with-own-sme",
    ),
}


@functools.cache
def _plan() -> LoadedPlan:
    return load_plan(PLAN)


def _scenario(scenario_id: str) -> Scenario:
    return next(s for s in _plan().scenarios if s.id == scenario_id)


@functools.cache
def run(scenario_id: str, mutant: str | None = None) -> ScenarioResult:
    """The scenario as the plan runs it (its derived seed, the shipped topology)."""
    plan = _plan().plan
    topology = load_topology(None)

    def world(s: Scenario, seed: int) -> LabWorld:
        return LabWorld(s, seed, topology, plan.settings, plan.sbc_settings, mutant)

    return run_scenario(_scenario(scenario_id), world, derive_seed(plan.seed, scenario_id))


def test_the_plan_targets_the_contact_center_mutants() -> None:
    loaded = _plan()
    assert (loaded.plan.id, loaded.plan.mutants) == ("contact-center-connect", "ccaas")
    assert tuple(sorted(s.id for s in loaded.scenarios)) == IDS
    for scenario in loaded.scenarios:
        ids = [check_id for check_id, _ in scenario.checks()]
        assert len(ids) == len(set(ids)), scenario.id
        for check_id, requirement in scenario.checks():
            assert check_id.startswith("cc."), check_id
            assert requirement.startswith(("DR Part", "RFC ")), (check_id, requirement)


@pytest.mark.parametrize("scenario_id", IDS)
def test_the_reference_passes_every_check(scenario_id: str) -> None:
    result = run(scenario_id)
    failed = [(c.id, c.message) for c in result.checks if c.verdict != "pass"]
    assert (result.verdict, failed, result.error) == ("pass", [], None)


@pytest.mark.parametrize(("scenario_id", "mutant"), sorted(KILLS))
def test_the_mutant_fails_the_named_checks(scenario_id: str, mutant: str) -> None:
    result = run(scenario_id, mutant)
    assert result.verdict == "fail"
    assert tuple(c.id for c in result.checks if c.verdict != "pass") == KILLS[scenario_id, mutant]


def test_every_contact_center_mutant_is_meant_to_be_caught() -> None:
    assert {mutant for _, mutant in KILLS} == set(CCAAS_MUTANTS)


def test_a_failed_api_check_says_what_it_saw() -> None:
    result = run("cc-sme-first-available", "no-agent-sign-in")
    check = next(c for c in result.checks if c.id == "cc.first.presence-read")
    assert check.expected is not None and "token_user='alice.archer@contoso.example'" in (
        check.expected
    )
    assert check.seen is not None
    assert "token of None, expected alice.archer@contoso.example" in check.seen


def test_mutant_targets_name_either_family() -> None:
    loaded = _plan()
    assert callable(factory_for(loaded, "mutant:no-fallback"))
    assert callable(factory_for(loaded, "mutant:contact-ip"))
    with pytest.raises(ConfigError, match="unknown mutant 'nope'"):
        factory_for(loaded, "mutant:nope")


def test_a_partners_own_platform_turns_the_reference_off() -> None:
    text = default_topology_text().replace("emulated: true ", "emulated: false", 1)
    topology = load_model_text(text, Topology, "t.yaml")
    assert topology.contact_center is not None and not topology.contact_center.emulated
    scenario = _scenario("cc-agent-sign-in")
    world = LabWorld(scenario, 1, topology, {}, {}, None)
    try:
        assert world.lab.ccaas is None
        assert world.lab.graph is not None  # the presence API is still there for the partner
        with pytest.raises(ScenarioError, match="runs no contact center"):
            world.act("sign_in", {"agent": "agent"}, {})
    finally:
        world.close()


def test_the_mutation_report_runs_the_plans_family(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    def fake_outcome(args: tuple[Any, str]) -> mutation.MutantOutcome:
        ran.append(args[1])
        return mutation.MutantOutcome(args[1], "rule", ("x/y",), ())

    monkeypatch.setattr(mutation, "_outcome", fake_outcome)
    monkeypatch.setattr(mutation, "_run_all", lambda plans, target: [])
    report = mutation.mutation_report([_plan()])
    assert ran == list(CCAAS_MUTANTS)
    assert report.score == 1.0


def test_sbcsim_mutants_scores_a_contact_center_plan(tmp_path: Path) -> None:
    plan = tmp_path / "plan.yaml"
    plan.write_text(
        "kind: plan\nid: one\ntitle: one\nmutants: ccaas\nscenarios:\n"
        f"  - {REPO / 'scenarios' / 'contact-center' / 'sme-skips-busy-dnd.yaml'}\n"
    )
    console = Console(width=200, record=True)
    result = CliRunner().invoke(mutants_command, ["--score", str(plan)], obj=console)
    text = console.export_text()
    assert result.exit_code == 1  # one scenario does not catch every mutant
    assert "reference (ccaas) passes every plan; mutants killed 7/15" in text
    for name in ("ignores-presence", "escalates-to-dnd", "skips-available-idle"):
        assert f"  {name:<24} killed" in text
    assert f"  {'ignores-retry-after':<24} SURVIVED" in text
