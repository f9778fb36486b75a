"""Test plans (``testplans/*.yaml``): which scenarios, with which topology, settings and seed."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sbcsim.config import load_model
from sbcsim.config.kinds import register_kind
from sbcsim.errors import ConfigError
from sbcsim.scenario.models import Scenario

__all__ = ["LoadedPlan", "Plan", "derive_seed", "load_plan", "select"]


class Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["plan"] = "plan"
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    title: str
    description: str | None = None
    seed: int = Field(1, ge=0, description="scenario seeds are derived from it and the scenario id")
    topology: str | None = Field(
        None, description="topology file, relative to the plan; default: the shipped one"
    )
    settings: dict[str, Any] = Field(
        default_factory=dict, description="Microsoft-side settings for every scenario"
    )
    sbc_settings: dict[str, Any] = Field(
        default_factory=dict, description="reference-SBC settings for every scenario"
    )
    tags: list[str] = Field(default_factory=list)
    mutants: Literal["sbc", "ccaas"] = Field(
        "sbc",
        description="the mutant family `sbcsim mutants --score` runs this plan against: the "
        "reference SBC's (sbc) or the reference contact center's (ccaas)",
    )
    scenarios: list[str] = Field(
        min_length=1, description="scenario files or globs, relative to the plan file"
    )


register_kind(
    "plan",
    Plan,
    lambda data: isinstance(data, dict) and "scenarios" in data and "steps" not in data,
)
register_kind("scenario", Scenario, lambda data: isinstance(data, dict) and "steps" in data)


@dataclass(frozen=True, slots=True)
class LoadedPlan:
    plan: Plan
    path: Path
    scenarios: tuple[Scenario, ...]
    scenario_paths: tuple[Path, ...]

    def topology_path(self) -> Path | None:
        return (self.path.parent / self.plan.topology).resolve() if self.plan.topology else None


def load_plan(path: Path) -> LoadedPlan:
    """Load a plan and every scenario it names (each error with file:line:col)."""
    plan = load_model(path, Plan)
    paths: list[Path] = []
    for pattern in plan.scenarios:
        matches = (
            sorted(path.parent.glob(pattern))
            if any(c in pattern for c in "*?[")
            else [path.parent / pattern]
        )
        if not matches:
            raise ConfigError(f"scenario pattern {pattern!r} matches no file", location=str(path))
        for m in matches:
            if not m.exists():
                raise ConfigError(f"scenario file {m} does not exist", location=str(path))
            if m.resolve() not in paths:
                paths.append(m.resolve())
    scenarios = [load_model(p, Scenario) for p in paths]
    seen: dict[str, Path] = {}
    for s, p in zip(scenarios, paths, strict=True):
        if s.id in seen:
            raise ConfigError(
                f"scenario id {s.id!r} is used by {seen[s.id]} and {p}", location=str(path)
            )
        seen[s.id] = p
    return LoadedPlan(plan, path, tuple(scenarios), tuple(paths))


def derive_seed(plan_seed: int, scenario_id: str) -> int:
    """A scenario's seed: stable across runs, processes and Python versions."""
    digest = hashlib.sha256(f"{plan_seed}:{scenario_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


_TOKEN_RE = re.compile(r"\s*(\(|\)|and\b|or\b|not\b|[^\s()]+)")


def select(scenarios: tuple[Scenario, ...], expression: str | None) -> list[Scenario]:
    """Scenarios whose id, title or tags match a ``-k`` expression: words matched as
    case-insensitive substrings, combined with ``and``, ``or``, ``not`` and parentheses."""
    if not expression:
        return list(scenarios)
    tokens = _TOKEN_RE.findall(expression)
    if "".join(tokens).replace(" ", "") != expression.replace(" ", ""):
        raise ConfigError(f"cannot read the -k expression {expression!r}")

    def matches(s: Scenario) -> bool:
        text = " ".join([s.id, s.title, *s.tags]).lower()
        pos = 0

        def parse_or() -> bool:
            nonlocal pos
            value = parse_and()
            while pos < len(tokens) and tokens[pos] == "or":
                pos += 1
                rhs = parse_and()
                value = value or rhs
            return value

        def parse_and() -> bool:
            nonlocal pos
            value = parse_not()
            while pos < len(tokens) and tokens[pos] == "and":
                pos += 1
                rhs = parse_not()
                value = value and rhs
            return value

        def parse_not() -> bool:
            nonlocal pos
            if pos < len(tokens) and tokens[pos] == "not":
                pos += 1
                return not parse_not()
            return parse_atom()

        def parse_atom() -> bool:
            nonlocal pos
            if pos >= len(tokens):
                raise ConfigError(f"the -k expression {expression!r} ends too early")
            tok = tokens[pos]
            pos += 1
            if tok == "(":
                value = parse_or()
                if pos >= len(tokens) or tokens[pos] != ")":
                    raise ConfigError(f"unbalanced parentheses in -k {expression!r}")
                pos += 1
                return value
            if tok in (")", "and", "or"):
                raise ConfigError(f"unexpected {tok!r} in -k {expression!r}")
            return tok.lower() in text

        value = parse_or()
        if pos != len(tokens):
            raise ConfigError(f"unexpected {tokens[pos]!r} in -k {expression!r}")
        return value

    return [s for s in scenarios if matches(s)]
