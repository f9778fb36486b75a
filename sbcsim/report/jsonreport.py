"""The ``sbcsim.report/1`` JSON report, its JSON Schema, and a validator for that schema.

The JSON report is a contract (PRODUCT.md): CI jobs and dashboards parse it.  The schema is
written here, next to the writer, and committed as ``schemas/report.schema.json`` so consumers
can validate without installing sbcsim; a test keeps the committed file equal to
:func:`schema_text` and validates produced reports against it.

The validator understands exactly the keywords the schema uses (``type``, ``const``, ``enum``,
``required``, ``properties``, ``additionalProperties: false``, ``items``, ``minimum``, local
``$ref``), which keeps the package free of a JSON Schema dependency.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sbcsim.testplan.results import REPORT_SCHEMA, PlanResult

__all__ = [
    "REPORT_JSON_SCHEMA",
    "json_text",
    "schema_text",
    "validate_report",
    "write_json",
    "write_schema",
]

_VERDICT = {"enum": ["pass", "fail", "skip", "error"]}
_COUNT = {"type": "integer", "minimum": 0}
_SECONDS = {"type": "number", "minimum": 0}


def _object(properties: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "required": list(properties),
        "additionalProperties": False,
        "properties": properties,
    }


#: JSON Schema (draft 2020-12) of ``PlanResult.to_json()``.
REPORT_JSON_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "sbcsim run report",
    **_object(
        {
            "schema": {"const": REPORT_SCHEMA},
            "plan": {"type": "string"},
            "target": {"type": "string"},
            "seed": {"type": "integer"},
            "summary": _object(
                {
                    "passed": _COUNT,
                    "failed": _COUNT,
                    "skipped": _COUNT,
                    "errors": _COUNT,
                    "checks_passed": _COUNT,
                    "checks_failed": _COUNT,
                },
                "Scenario counts by verdict and check counts.",
            ),
            "sim_seconds": _SECONDS,
            "wall_seconds": _SECONDS,
            "scenarios": {"type": "array", "items": {"$ref": "#/$defs/scenario"}},
        },
        "The result of one test plan run (`sbcsim run --json`).",
    ),
    "$defs": {
        "verdict": _VERDICT,
        "scenario": _object(
            {
                "id": {"type": "string"},
                "title": {"type": "string"},
                "verdict": {"$ref": "#/$defs/verdict"},
                "sim_seconds": _SECONDS,
                "wall_seconds": _SECONDS,
                "seed": {"type": "integer"},
                "checks": {"type": "array", "items": {"$ref": "#/$defs/check"}},
            },
            "One scenario: its verdict and every check.",
        ),
        "check": _object(
            {
                "id": {"type": "string"},
                "requirement": {"type": "string"},
                "verdict": {"$ref": "#/$defs/verdict"},
                "message": {"type": "string"},
            },
            "One check with the requirement (Direct Routing section or RFC clause) it enforces.",
        ),
    },
}


def schema_text() -> str:
    """The schema as committed in ``schemas/report.schema.json``."""
    return json.dumps(REPORT_JSON_SCHEMA, indent=2, ensure_ascii=False) + "\n"


def write_schema(path: str | Path) -> None:
    """Regenerate the committed schema file."""
    Path(path).write_text(schema_text(), encoding="utf-8", newline="\n")


def json_text(result: PlanResult) -> str:
    """The report text: two-space indented, UTF-8, key order as in the contract."""
    return json.dumps(result.to_json(), indent=2, ensure_ascii=False) + "\n"


def write_json(path: str | Path, result: PlanResult) -> None:
    """Write the ``sbcsim.report/1`` report of ``result`` to ``path``."""
    Path(path).write_text(json_text(result), encoding="utf-8", newline="\n")


_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def validate_report(document: Any, schema: Mapping[str, Any] | None = None) -> list[str]:
    """Every way ``document`` breaks ``schema`` (default: the report schema), as
    ``"/json/pointer: problem"`` strings; empty when it is valid."""
    root = REPORT_JSON_SCHEMA if schema is None else schema
    errors: list[str] = []
    _validate(document, root, root, "", errors)
    return errors


def _resolve(root: Mapping[str, Any], ref: str) -> Mapping[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $ref is supported, not {ref!r}")
    node: Any = root
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    if not isinstance(node, Mapping):
        raise ValueError(f"$ref {ref!r} does not name a schema")
    return node


def _is_type(value: Any, name: str) -> bool:
    # bool is an int in Python but not an integer/number in JSON.
    if isinstance(value, bool) and name in ("integer", "number"):
        return False
    if name == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _TYPES[name])


def _validate(
    value: Any, schema: Mapping[str, Any], root: Mapping[str, Any], path: str, errors: list[str]
) -> None:
    where = path or "/"
    if "$ref" in schema:
        _validate(value, _resolve(root, schema["$ref"]), root, path, errors)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, name) for name in names):
            errors.append(f"{where}: expected {' or '.join(names)}, got {_json_type(value)}")
            return
    if "const" in schema and not _same(value, schema["const"]):
        errors.append(f"{where}: must be {json.dumps(schema['const'])}")
    if "enum" in schema and not any(_same(value, option) for option in schema["enum"]):
        options = ", ".join(json.dumps(option) for option in schema["enum"])
        errors.append(f"{where}: must be one of {options}")
    if "minimum" in schema and _is_type(value, "number") and value < schema["minimum"]:
        errors.append(f"{where}: must be >= {schema['minimum']}")
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties", {})
        for name in schema.get("required", []):
            if name not in value:
                errors.append(f"{where}: missing required property {name!r}")
        for name, item in value.items():
            pointer = f"{path}/{_escape(name)}"
            if name in properties:
                _validate(item, properties[name], root, pointer, errors)
            elif schema.get("additionalProperties") is False:
                errors.append(f"{pointer}: property not allowed")
    if isinstance(value, list) and "items" in schema:
        for position, item in enumerate(value):
            _validate(item, schema["items"], root, f"{path}/{position}", errors)


def _same(value: Any, expected: Any) -> bool:
    return type(value) is type(expected) and bool(value == expected)


def _escape(name: str) -> str:
    return name.replace("~", "~0").replace("/", "~1")


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is_type(value, name):
            return name
    return type(value).__name__
