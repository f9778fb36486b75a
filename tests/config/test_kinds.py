"""The registry of YAML file kinds, and the JSON Schemas generated from their models."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict

from sbcsim.config import (
    ConfigValidationError,
    detect_kind,
    kind_named,
    load_any,
    register_kind,
    registered_kinds,
    schema_text,
    unregister_kind,
    write_schemas,
)
from sbcsim.config.kinds import registered_kinds as _registered_kinds
from sbcsim.topology import Topology

KINDS = ", ".join(k.name for k in _registered_kinds())

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"


class Greeting(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["greeting"] = "greeting"
    hello: str


@pytest.fixture
def greeting_kind() -> Iterator[None]:
    register_kind("greeting", Greeting, lambda data: isinstance(data, dict) and "hello" in data)
    yield
    unregister_kind("greeting")


def test_topology_is_registered_first() -> None:
    kinds = registered_kinds()
    assert kinds[0].name == "topology"
    assert kinds[0].model is Topology
    assert kind_named("topology") is kinds[0]
    assert kind_named("nothing") is None


def test_detection_by_kind_key_then_by_detector(greeting_kind: None) -> None:
    assert detect_kind({"kind": "greeting", "carrier": {}, "tenants": []}) == kind_named("greeting")
    assert detect_kind({"carrier": {}, "tenants": []}) == kind_named("topology")
    assert detect_kind({"hello": "x"}) == kind_named("greeting")
    assert detect_kind({"kind": "unheard-of"}) is None
    assert detect_kind(["a list"]) is None


def test_registering_another_model_under_a_taken_name_fails() -> None:
    with pytest.raises(ValueError, match="already registered for Topology"):
        register_kind("topology", Greeting, lambda data: False)
    # Registering the same model again is harmless.
    kind = kind_named("topology")
    assert kind is not None
    register_kind("topology", Topology, kind.detector)


def test_load_any(tmp_path: Path, greeting_kind: None) -> None:
    path = tmp_path / "g.yaml"
    path.write_text("hello: world\n", encoding="utf-8")
    kind, model = load_any(path)
    assert kind.name == "greeting"
    assert model == Greeting(hello="world")


def test_load_any_unknown_kind(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("# what is this\nkind: frobnicator\n", encoding="utf-8")
    with pytest.raises(ConfigValidationError) as info:
        load_any(path)
    assert (
        str(info.value)
        == f"{path}:2:7: kind: unknown kind 'frobnicator' (expected one of: topology, plan, scenario, target)"
    )


def test_load_any_undetectable(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("\nsomething: else\n", encoding="utf-8")
    with pytest.raises(ConfigValidationError) as info:
        load_any(path)
    assert str(info.value) == (
        f"{path}:2:1: cannot tell what kind of file this is; add a 'kind:' key (one of: topology, plan, scenario, target)"
    )


def test_schema_text_is_the_model_schema() -> None:
    kind = kind_named("topology")
    assert kind is not None
    schema = json.loads(schema_text(kind))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] == "Topology"
    assert schema["required"] == ["carrier", "tenants"]
    assert schema["additionalProperties"] is False
    assert schema["$defs"]["TeamsUser"]["properties"]["number"]["anyOf"][0] == {
        "pattern": r"^\+[1-9][0-9]{6,14}$",
        "type": "string",
    }


def test_write_schemas(tmp_path: Path) -> None:
    written = write_schemas(tmp_path / "out")
    assert [p.name for p in written] == [f"{k.name}.schema.json" for k in registered_kinds()]
    topology = tmp_path / "out" / "topology.schema.json"
    assert topology in written
    kind = kind_named("topology")
    assert kind is not None
    assert topology.read_text(encoding="utf-8") == schema_text(kind)


@pytest.mark.parametrize("kind", registered_kinds(), ids=lambda k: k.name)
def test_committed_schema_is_up_to_date(kind: object) -> None:
    from sbcsim.config import Kind

    assert isinstance(kind, Kind)
    committed = SCHEMAS / f"{kind.name}.schema.json"
    regenerate = (
        ".venv/bin/python -c \"from sbcsim.config import write_schemas; write_schemas('schemas')\""
    )
    assert committed.is_file(), f"{committed} is missing; run {regenerate}"
    assert committed.read_text(encoding="utf-8") == schema_text(kind), (
        f"{committed} is stale; run {regenerate}"
    )
