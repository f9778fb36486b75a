"""YAML loading: positions of values, exact file:line:col error lines, YAML pitfalls avoided."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Self

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sbcsim.config import (
    ConfigValidationError,
    Issue,
    LocatedError,
    Span,
    format_path,
    issues_error,
    load_document_text,
    load_model,
    load_model_text,
)
from sbcsim.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Port(_Strict):
    name: str
    number: int


class Server(_Strict):
    host: str
    ports: list[Port] = []
    enabled: bool = True
    labels: dict[str, str] = {}
    note: str | None = None


class Ping(_Strict):
    type: Literal["ping"]
    target: str


class Wait(_Strict):
    type: Literal["wait"]
    seconds: float


class Plan(_Strict):
    steps: list[Annotated[Ping | Wait, Field(discriminator="type")]]


class Pair(_Strict):
    low: int
    high: int

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.low > self.high:
            raise issues_error([Issue(("high",), f"must not be below low ({self.low})")])
        return self


class Pairs(_Strict):
    pairs: list[Pair]


class Names(_Strict):
    names: dict[str, int]

    @model_validator(mode="after")
    def _no_zero(self) -> Self:
        zeros = [
            Issue(("names", k), "zero is reserved", at_key=True)
            for k, v in self.names.items()
            if v == 0
        ]
        if zeros:
            raise issues_error(zeros)
        return self


def _errors(text: str, model: type[BaseModel] = Server) -> str:
    with pytest.raises(ConfigValidationError) as info:
        load_model_text(text, model, "s.yaml")
    return str(info.value)


# ---------------------------------------------------------------------- valid input


def test_valid_document_builds_the_model() -> None:
    server = load_model_text(
        "host: a.example\nports:\n  - {name: sip, number: 5060}\nlabels: {site: lab}\n",
        Server,
        "s.yaml",
    )
    assert server == Server(
        host="a.example", ports=[Port(name="sip", number=5060)], labels={"site": "lab"}
    )


def test_spans_record_key_and_value_positions() -> None:
    doc = load_document_text("host: a\nports:\n  - name: sip\n    number: 5060\n", "s.yaml")
    assert doc.source == "s.yaml"
    assert doc.data == {"host": "a", "ports": [{"name": "sip", "number": 5060}]}
    assert doc.spans[()] == Span(1, 1, 1, 1)
    assert doc.spans[("host",)] == Span(1, 1, 1, 7)
    assert doc.spans[("ports",)] == Span(2, 1, 3, 3)
    assert doc.spans[("ports", 0)] == Span(3, 5, 3, 5)
    assert doc.spans[("ports", 0, "number")] == Span(4, 5, 4, 13)


def test_yaml_1_1_surprises_stay_text() -> None:
    doc = load_document_text(
        "a: +14255550100\nb: yes\nc: no\nd: on\ne: 0123\nf: 1:30\n"
        "g: true\nh: False\ni: -7\nj: 0x1F\nk: 1.5\nl: ~\nm: 42\n"
    )
    assert doc.data == {
        "a": "+14255550100",
        "b": "yes",
        "c": "no",
        "d": "on",
        "e": "0123",
        "f": "1:30",
        "g": True,
        "h": False,
        "i": -7,
        "j": 31,
        "k": 1.5,
        "l": None,
        "m": 42,
    }


def test_merge_keys_explicit_keys_win() -> None:
    doc = load_document_text(
        "base: &b {name: x, number: 1}\nother: &o {number: 3, extra: 4}\n"
        "port:\n  <<: [*b, *o]\n  name: y\n"
    )
    assert isinstance(doc.data, dict)
    assert doc.data["port"] == {"number": 1, "extra": 4, "name": "y"}
    # A merged value is located where it was written (the anchor).
    assert doc.spans[("port", "number")] == Span(1, 20, 1, 28)
    assert doc.spans[("port", "name")] == Span(5, 3, 5, 9)


def test_load_model_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("host: a.example\n", encoding="utf-8")
    assert load_model(path, Server) == Server(host="a.example")


def test_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_bytes(b"\xef\xbb\xbfhost: a.example\n")
    assert load_model(path, Server).host == "a.example"


# ---------------------------------------------------------------------- validation errors


def test_missing_field_points_at_the_parent_key() -> None:
    text = "host: a\nports:\n  - name: sip\n  - number: 5\n"
    assert _errors(text) == (
        "s.yaml:3:5: ports[0].number: required field missing\n"
        "s.yaml:4:5: ports[1].name: required field missing"
    )


def test_missing_top_level_field_points_at_the_document_start() -> None:
    assert _errors("\n\nports: []\n") == "s.yaml:3:1: host: required field missing"


def test_missing_field_of_a_nested_mapping_points_at_its_key() -> None:
    text = "pairs:\n  - low: 1\n    high: 2\n  - low: 1\n"
    assert _errors(text, Pairs) == "s.yaml:4:5: pairs[1].high: required field missing"


def test_wrong_type_points_at_the_value() -> None:
    text = "host: a\nenabled: maybe\nports:\n  - {name: sip, number: five}\n"
    assert _errors(text) == (
        "s.yaml:2:10: enabled: Input should be a valid boolean, unable to interpret input "
        "(got 'maybe')\n"
        "s.yaml:4:25: ports[0].number: Input should be a valid integer, unable to parse string "
        "as an integer (got 'five')"
    )


def test_wrong_container_type() -> None:
    assert _errors("host: a\nports: {name: sip}\n") == (
        "s.yaml:2:8: ports: Input should be a valid list"
    )


def test_document_that_is_not_a_mapping() -> None:
    assert _errors("- a\n- b\n") == (
        "s.yaml:1:1: Input should be a valid dictionary or instance of Server"
    )


def test_unknown_key_points_at_the_key_and_lists_the_expected_ones() -> None:
    text = "host: a\nports:\n  - name: sip\n    numbr: 5060\n"
    assert _errors(text) == (
        "s.yaml:3:5: ports[0].number: required field missing\n"
        "s.yaml:4:5: ports[0].numbr: unknown key (expected one of: name, number)"
    )


def test_unknown_top_level_key() -> None:
    assert _errors("host: a\nhots: b\n") == (
        "s.yaml:2:1: hots: unknown key (expected one of: host, ports, enabled, labels, note)"
    )


def test_discriminated_union_tags_are_skipped_in_paths() -> None:
    text = "steps:\n  - {type: ping, target: x}\n  - {type: wait, seconds: soon}\n"
    assert _errors(text, Plan) == (
        "s.yaml:3:27: steps[1].seconds: Input should be a valid number, unable to parse string "
        "as a number (got 'soon')"
    )
    text = "steps:\n  - {type: ping, target: x, colour: red}\n"
    assert _errors(text, Plan) == (
        "s.yaml:2:29: steps[0].colour: unknown key (expected one of: type, target)"
    )


def test_cross_field_issue_points_at_its_value() -> None:
    text = "pairs:\n  - {low: 1, high: 2}\n  - {low: 5, high: 3}\n"
    assert _errors(text, Pairs) == "s.yaml:3:20: pairs[1].high: must not be below low (5)"


def test_cross_field_issue_at_key() -> None:
    text = "names:\n  a: 1\n  b:   0\n"
    assert _errors(text, Names) == "s.yaml:3:3: names.b: zero is reserved"


def test_cross_field_issue_in_python_names_the_path() -> None:
    with pytest.raises(ValidationError) as info:
        Pairs.model_validate({"pairs": [{"low": 5, "high": 3}]})
    assert info.value.errors()[0]["msg"] == "high: must not be below low (5)"


def test_all_errors_are_listed_in_file_order() -> None:
    text = "note: [x]\nhost: 5\nports:\n  - {name: 1, number: x}\nbogus: 1\n"
    error = _errors(text)
    assert error.splitlines() == [
        "s.yaml:1:7: note: Input should be a valid string",
        "s.yaml:2:7: host: Input should be a valid string (got 5)",
        "s.yaml:4:12: ports[0].name: Input should be a valid string (got 1)",
        "s.yaml:4:23: ports[0].number: Input should be a valid integer, unable to parse string "
        "as an integer (got 'x')",
        "s.yaml:5:1: bogus: unknown key (expected one of: host, ports, enabled, labels, note)",
    ]


def test_error_objects_carry_their_parts() -> None:
    with pytest.raises(ConfigValidationError) as info:
        load_model_text("host: a\nenabled: [1]\n", Server, "s.yaml")
    assert info.value.errors == (
        LocatedError("s.yaml", 2, 10, "enabled", "Input should be a valid boolean"),
    )
    assert info.value.location == "s.yaml:2:10"
    assert isinstance(info.value, ConfigError)


# ---------------------------------------------------------------------- YAML-level errors


def test_duplicate_key_is_an_error() -> None:
    text = "host: a\nports:\n  - name: sip\n    number: 1\n    name: tls\nhost: b\n"
    assert _errors(text) == (
        "s.yaml:5:5: ports[0].name: duplicate key (first defined at line 3, column 5)\n"
        "s.yaml:6:1: host: duplicate key (first defined at line 1, column 1)"
    )


def test_yaml_syntax_error_has_its_position() -> None:
    assert _errors("host: a\nports: [1, 2\nnote: x\n") == (
        "s.yaml:3:5: YAML syntax error: while parsing a flow sequence (line 2, column 8): "
        "expected ',' or ']', but got ':'"
    )
    assert _errors("host: a\n  ports: 1\n") == (
        "s.yaml:2:8: YAML syntax error: mapping values are not allowed here"
    )


def test_unclosed_quote() -> None:
    assert _errors("host: 'a\n") == (
        "s.yaml:2:1: YAML syntax error: while scanning a quoted scalar (line 1, column 7): "
        "found unexpected end of stream"
    )


def test_control_character_is_a_syntax_error() -> None:
    assert _errors("host: a\nnote: \x07\n") == (
        "s.yaml:2:7: YAML syntax error: special characters are not allowed"
    )


def test_two_documents_are_an_error() -> None:
    assert _errors("host: a\n---\nhost: b\n") == (
        "s.yaml:2:1: YAML syntax error: expected a single document in the stream "
        "(line 1, column 1): but found another document"
    )


def test_empty_document() -> None:
    assert _errors("# nothing here\n") == "s.yaml:1:1: the file is empty (expected a mapping)"


def test_unknown_tag() -> None:
    assert _errors("host: !secret a\n") == (
        "s.yaml:1:7: host: could not determine a constructor for the tag '!secret'"
    )
    assert _errors("host: a\nlabels: !!omap [a: b]\n") == (
        "s.yaml:2:9: labels: unsupported tag 'tag:yaml.org,2002:omap' on a sequence"
    )


def test_keys_must_be_text_or_integers() -> None:
    assert _errors("host: a\n[1, 2]: x\n") == "s.yaml:2:1: a mapping key must be a plain value"
    assert _errors("host: a\ntrue: x\n") == (
        "s.yaml:2:1: a mapping key must be text or an integer, not True"
    )


def test_recursive_alias_is_an_error() -> None:
    # Reported where the anchored collection starts: the composed tree has no alias positions.
    assert _errors("host: a\nlabels: &l\n  self: *l\n") == (
        "s.yaml:2:9: labels.self: an alias refers to a collection that contains it"
    )


def test_bad_merge_value() -> None:
    assert _errors("host: a\nlabels:\n  <<: 5\n") == (
        "s.yaml:3:7: labels: '<<' must merge a mapping or a list of mappings"
    )


# ---------------------------------------------------------------------- files


def test_missing_file_names_it(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_model(path, Server)
    assert str(info.value) == f"{path}: no such file"
    assert info.value.location == str(path)


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_model(tmp_path, Server)
    assert str(info.value) == f"{tmp_path}: is a directory, not a YAML file"


def test_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"host: a\nnote: caf\xe9\n")
    with pytest.raises(ConfigValidationError) as info:
        load_model(path, Server)
    assert str(info.value) == f"{path}:2:10: not UTF-8 text"


def test_errors_from_a_file_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "server.yaml"
    path.write_text("host: a\nenabled: maybe\n", encoding="utf-8")
    with pytest.raises(ConfigValidationError) as info:
        load_model(path, Server)
    assert str(info.value) == (
        f"{path}:2:10: enabled: Input should be a valid boolean, unable to interpret input "
        "(got 'maybe')"
    )


def test_format_path() -> None:
    assert format_path(("tenants", 0, "users", 12, "number")) == "tenants[0].users[12].number"
    assert format_path((0, "a")) == "[0].a"
    assert format_path(()) == ""
