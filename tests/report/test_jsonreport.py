from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from sbcsim.report.jsonreport import (
    REPORT_JSON_SCHEMA,
    json_text,
    schema_text,
    validate_report,
    write_json,
    write_schema,
)
from sbcsim.testplan.results import PlanResult

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "report.schema.json"
REGENERATE = (
    '.venv/bin/python -c "from sbcsim.report.jsonreport import write_schema; '
    "write_schema('schemas/report.schema.json')\""
)
KNOWN_KEYWORDS = {
    "$schema", "$defs", "$ref", "title", "description", "type", "const", "enum", "required",
    "properties", "additionalProperties", "items", "minimum",
}  # fmt: skip


def committed_schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return loaded


def test_committed_schema_is_up_to_date() -> None:
    assert SCHEMA_FILE.read_text(encoding="utf-8") == schema_text(), f"regenerate: {REGENERATE}"


def test_schema_uses_only_keywords_the_validator_knows() -> None:
    seen: set[str] = set()

    def walk(schema: dict[str, Any]) -> None:
        seen.update(schema)
        for key in ("properties", "$defs"):
            for sub in schema.get(key, {}).values():
                walk(sub)
        if isinstance(schema.get("items"), dict):
            walk(schema["items"])

    walk(REPORT_JSON_SCHEMA)
    assert seen <= KNOWN_KEYWORDS


def test_report_text_is_the_contract(plan: PlanResult, tmp_path: Path) -> None:
    text = json_text(plan)
    assert json.loads(text) == plan.to_json()
    assert text.startswith('{\n  "schema": "sbcsim.report/1",\n  "plan": "direct-routing-sbc",\n')
    assert '"requirement": "Direct Routing: SIP signaling — Contact header"' in text
    assert text.endswith("}\n")
    write_json(tmp_path / "r.json", plan)
    assert (tmp_path / "r.json").read_bytes() == text.encode("utf-8")


def test_produced_report_validates_against_the_committed_schema(plan: PlanResult) -> None:
    document = json.loads(json_text(plan))
    assert validate_report(document, committed_schema()) == []
    assert validate_report(document) == []
    empty = PlanResult(plan="p", target="mutant:ip-in-contact", seed=0)
    assert validate_report(json.loads(json_text(empty)), committed_schema()) == []


def test_same_result_same_bytes(plan: PlanResult) -> None:
    assert json_text(plan) == json_text(copy.deepcopy(plan))


@pytest.mark.parametrize(
    ("mutate", "errors"),
    [
        (lambda d: d.pop("seed"), ["/: missing required property 'seed'"]),
        (lambda d: d.update(schema="sbcsim.report/2"), ['/schema: must be "sbcsim.report/1"']),
        (lambda d: d.update(seed=True), ["/seed: expected integer, got boolean"]),
        (lambda d: d.update(seed=4.5), ["/seed: expected integer, got number"]),
        (lambda d: d.update(extra=1), ["/extra: property not allowed"]),
        (lambda d: d["summary"].update(passed=-1), ["/summary/passed: must be >= 0"]),
        (
            lambda d: d["scenarios"][1].update(verdict="flaky"),
            ['/scenarios/1/verdict: must be one of "pass", "fail", "skip", "error"'],
        ),
        (
            lambda d: d["scenarios"][1]["checks"][0].pop("requirement"),
            ["/scenarios/1/checks/0: missing required property 'requirement'"],
        ),
        (lambda d: d.update(scenarios={}), ["/scenarios: expected array, got object"]),
        (lambda d: d.update(wall_seconds="0.1"), ["/wall_seconds: expected number, got string"]),
        (
            lambda d: d["scenarios"][0].update({"a/b": 1}),
            ["/scenarios/0/a~1b: property not allowed"],
        ),
    ],
)
def test_validator_reports_each_problem_with_its_pointer(
    plan: PlanResult, mutate: Any, errors: list[str]
) -> None:
    document = json.loads(json_text(plan))
    mutate(document)
    assert validate_report(document, committed_schema()) == errors


def test_write_schema(tmp_path: Path) -> None:
    write_schema(tmp_path / "s.json")
    assert (tmp_path / "s.json").read_text(encoding="utf-8") == schema_text()
    assert json.loads(schema_text()) == REPORT_JSON_SCHEMA
