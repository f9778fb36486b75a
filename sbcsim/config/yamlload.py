"""YAML in, a validated pydantic model out, and every mistake reported as ``FILE:LINE:COL``.

A person edits topology, scenario and plan files by hand, so an error has to point at the line
to fix.  PyYAML throws positions away once it builds Python objects, and pydantic only knows
paths such as ``("tenants", 0, "users", 2, "number")``.  This module joins the two: it composes
the YAML node tree itself, builds plain dicts and lists from it while recording where every
mapping key and every value starts (:class:`Document`), validates with a model, and translates
each pydantic error path back to a position (:func:`validate_document`).

Rules a file must follow, beyond YAML itself:

- duplicate keys are errors (PyYAML silently keeps the last one);
- keys are text or integers; collections carry no custom tags;
- one document per file;
- ``yes``/``no``/``on``/``off`` are text, not booleans (the YAML 1.2 rule), and a plain scalar
  with a leading ``+`` stays text, so E.164 numbers such as ``+14255550100`` need no quotes;
  likewise ``0123`` and ``1:30`` stay text instead of becoming octal or base-60 integers.

Models state their own shape with ``extra="forbid"``, so an unknown key is an error too.
Rules that span several fields (unique numbers, references) are raised from a model validator
with :func:`issues_error`; each :class:`Issue` carries the path of the offending value, so it is
reported at that value's line like any other error.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from sbcsim.errors import ConfigError

__all__ = [
    "ISSUES_ERROR_TYPE",
    "ConfigValidationError",
    "Document",
    "Issue",
    "LocatedError",
    "PathItem",
    "Span",
    "format_path",
    "issues_error",
    "load_document",
    "load_document_text",
    "load_model",
    "load_model_text",
    "validate_document",
]

T = TypeVar("T", bound=BaseModel)

PathItem = str | int
"""One step of a path into a document: a mapping key or a sequence index."""

#: The pydantic error type of :func:`issues_error`; its ``ctx["issues"]`` holds the issues.
ISSUES_ERROR_TYPE = "sbcsim_issues"

_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
_BOOL_TAG = "tag:yaml.org,2002:bool"
_INT_TAG = "tag:yaml.org,2002:int"

# Messages of pydantic's own value errors start with this; the rest is ours.
_VALUE_ERROR_PREFIX = "Value error, "


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and integers that do not swallow phone numbers."""


# Drop YAML 1.1's yes/no/on/off booleans and its octal, base-60 and '+'-signed integers.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_BOOL_TAG, _INT_TAG)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL_TAG, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Loader.add_implicit_resolver(
    _INT_TAG, re.compile(r"^(?:-?(?:0|[1-9][0-9]*)|0x[0-9a-fA-F]+)$"), list("-0123456789")
)


@dataclass(frozen=True, slots=True)
class Span:
    """Where a value sits in its file (1-based), and where its key (or list item) starts."""

    key_line: int
    key_column: int
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Issue:
    """A rule broken across fields, found after the fields themselves validated.

    ``path`` is relative to the model that raised it; ``at_key`` points the report at the key
    rather than at the value (for a whole entry that is wrong, such as a duplicate id).
    """

    path: tuple[PathItem, ...]
    message: str
    at_key: bool = False


@dataclass(frozen=True, slots=True)
class LocatedError:
    """One error of one file, printed as ``FILE:LINE:COL: path.to.field: message``."""

    source: str
    line: int
    column: int
    path: str
    message: str

    @property
    def location(self) -> str:
        return f"{self.source}:{self.line}:{self.column}"

    def __str__(self) -> str:
        if self.path:
            return f"{self.location}: {self.path}: {self.message}"
        return f"{self.location}: {self.message}"


class ConfigValidationError(ConfigError):
    """A file failed to parse or validate; ``errors`` lists every problem with its position.

    ``str()`` is one line per error, sorted by position, ready to print.
    """

    def __init__(self, errors: Sequence[LocatedError]) -> None:
        ordered = tuple(sorted(dict.fromkeys(errors), key=lambda e: (e.line, e.column)))
        super().__init__("\n".join(str(e) for e in ordered))
        self.errors = ordered
        self.location = ordered[0].location if ordered else None


@dataclass(frozen=True, slots=True)
class Document:
    """Plain data built from one YAML file, with the position of everything in it."""

    source: str
    data: object
    spans: Mapping[tuple[PathItem, ...], Span]

    def locate(
        self, loc: Sequence[Any], *, missing: bool = False
    ) -> tuple[tuple[PathItem, ...], Span]:
        """The deepest path of ``loc`` that exists in the file, and its span.

        Steps of ``loc`` that are not in the data (pydantic's union member tags) are skipped.
        """
        current: tuple[PathItem, ...] = ()
        steps = list(loc[:-1] if missing and loc else loc)
        for step in steps:
            candidate = (*current, step)
            if candidate in self.spans:
                current = candidate
        return current, self.spans.get(current, Span(1, 1, 1, 1))

    def error_at(
        self,
        loc: Sequence[Any],
        message: str,
        *,
        missing: bool = False,
        at_key: bool = False,
        full_path: bool = False,
    ) -> LocatedError:
        """A :class:`LocatedError` for a pydantic-style location in this document.

        A missing field is reported at its parent's key; an unknown key (``at_key``) at the key
        itself; anything else at the value.  The path shown is the part of ``loc`` found in the
        file (plus the missing field), or all of ``loc`` with ``full_path`` (a value that took
        its default is still named).
        """
        found, span = self.locate(loc, missing=missing)
        if full_path:
            shown: tuple[Any, ...] = tuple(loc)
        else:
            shown = (*found, loc[-1]) if missing and loc else found
        if missing or at_key:
            line, column = span.key_line, span.key_column
        else:
            line, column = span.line, span.column
        return LocatedError(self.source, line, column, format_path(shown), message)


def format_path(path: Iterable[Any]) -> str:
    """``("tenants", 0, "users", 2, "number")`` -> ``tenants[0].users[2].number``."""
    out = ""
    for step in path:
        if isinstance(step, int) and not isinstance(step, bool):
            out += f"[{step}]"
        else:
            out += f".{step}" if out else str(step)
    return out


def issues_error(issues: Sequence[Issue]) -> PydanticCustomError:
    """Wrap cross-field issues for raising from a pydantic ``model_validator``.

    Programmatic callers see every issue with its dotted path in the ``ValidationError`` text;
    :func:`validate_document` unpacks them and reports each at its own line.
    """
    summary = "\n".join(
        f"{format_path(i.path)}: {i.message}" if i.path else i.message for i in issues
    )
    return PydanticCustomError(
        ISSUES_ERROR_TYPE, "{summary}", {"summary": summary, "issues": tuple(issues)}
    )


# ----------------------------------------------------------------------------------- loading


def load_model(path: str | Path, model: type[T]) -> T:
    """Read, parse and validate one YAML file; raise :class:`ConfigError` on any problem."""
    return validate_document(load_document(path), model)


def load_model_text(text: str, model: type[T], source_name: str = "<string>") -> T:
    """As :func:`load_model`, for text already in memory (``source_name`` names it in errors)."""
    return validate_document(load_document_text(text, source_name), model)


def load_document(path: str | Path) -> Document:
    """Parse one YAML file into a :class:`Document` (no model validation yet)."""
    path = Path(path)
    source = str(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError("no such file", location=source) from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a YAML file", location=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror or exc}", location=source) from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigValidationError(
            [LocatedError(source, line, column, "", "not UTF-8 text")]
        ) from None
    return load_document_text(text, source)


def load_document_text(text: str, source_name: str = "<string>") -> Document:
    """Parse YAML text into a :class:`Document`; syntax errors carry their position."""
    try:
        # The reader checks for unprintable characters as soon as it is created.
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        raise ConfigValidationError([_reader_error(exc, text, source_name)]) from None
    try:
        try:
            root = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            raise ConfigValidationError([_syntax_error(exc, source_name)]) from None
        except yaml.reader.ReaderError as exc:
            raise ConfigValidationError([_reader_error(exc, text, source_name)]) from None
        if root is None:
            raise ConfigValidationError(
                [LocatedError(source_name, 1, 1, "", "the file is empty (expected a mapping)")]
            )
        builder = _Builder(loader, source_name)
        data = builder.build(root, (), root.start_mark)
    finally:
        loader.dispose()
    if builder.errors:
        raise ConfigValidationError(builder.errors)
    return Document(source_name, data, builder.spans)


def validate_document(document: Document, model: type[T]) -> T:
    """Validate a parsed document against ``model``; every error names its line and column."""
    try:
        return model.model_validate(document.data)
    except ValidationError as exc:
        raise ConfigValidationError(_translate(exc, document, model)) from exc


# ----------------------------------------------------------------------------------- internals


def _position(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _reader_error(exc: yaml.reader.ReaderError, text: str, source: str) -> LocatedError:
    line, column = _position(text, exc.position)
    return LocatedError(source, line, column, "", f"YAML syntax error: {exc.reason}")


def _syntax_error(exc: yaml.MarkedYAMLError, source: str) -> LocatedError:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    problem = exc.problem or "invalid YAML"
    if exc.context:
        where = ""
        if exc.context_mark is not None:
            where = f" (line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
        problem = f"{exc.context}{where}: {problem}"
    return LocatedError(source, line, column, "", f"YAML syntax error: {problem}")


class _Invalid:
    """Marks a key that could not be used (already reported)."""


_INVALID = _Invalid()


class _Builder:
    """Turns a composed node tree into dicts/lists/scalars and records every position."""

    def __init__(self, loader: _Loader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.spans: dict[tuple[PathItem, ...], Span] = {}
        self.errors: list[LocatedError] = []
        self._open: set[int] = set()  # collection nodes being built (alias cycle guard)

    def error(self, mark: yaml.Mark, path: tuple[PathItem, ...], message: str) -> None:
        self.errors.append(
            LocatedError(self.source, mark.line + 1, mark.column + 1, format_path(path), message)
        )

    def build(self, node: Node, path: tuple[PathItem, ...], key_mark: yaml.Mark) -> object:
        start = node.start_mark
        self.spans[path] = Span(
            key_mark.line + 1, key_mark.column + 1, start.line + 1, start.column + 1
        )
        if isinstance(node, ScalarNode):
            try:
                return self.loader.construct_object(node)
            except yaml.MarkedYAMLError as exc:
                self.error(start, path, exc.problem or "cannot read this value")
                return None
        if id(node) in self._open:
            self.error(start, path, "an alias refers to a collection that contains it")
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ_TAG:
                    self.error(start, path, f"unsupported tag {node.tag!r} on a sequence")
                return [
                    self.build(item, (*path, index), item.start_mark)
                    for index, item in enumerate(node.value)
                ]
            if isinstance(node, MappingNode):
                if node.tag != _MAP_TAG:
                    self.error(start, path, f"unsupported tag {node.tag!r} on a mapping")
                return self._mapping(node, path)
        finally:
            self._open.discard(id(node))
        self.error(start, path, "unsupported YAML node")  # pragma: no cover - composer invariant
        return None

    def _mapping(self, node: MappingNode, path: tuple[PathItem, ...]) -> dict[PathItem, object]:
        out: dict[PathItem, object] = {}
        explicit: list[tuple[Node, Node]] = []
        sources: list[MappingNode] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                sources.extend(self._merge_sources(value_node, path))
            else:
                explicit.append((key_node, value_node))
        # '<<' merges: keys of earlier sources win over later ones, explicit keys over all.
        for source in reversed(sources):
            self._open.add(id(source))
            try:
                out.update(self._mapping(source, path))
            finally:
                self._open.discard(id(source))
        seen: dict[PathItem, yaml.Mark] = {}
        for key_node, value_node in explicit:
            key = self._key(key_node, path)
            if isinstance(key, _Invalid):
                continue
            if key in seen:
                first = seen[key]
                self.error(
                    key_node.start_mark,
                    (*path, key),
                    f"duplicate key (first defined at line {first.line + 1}, "
                    f"column {first.column + 1})",
                )
                continue
            seen[key] = key_node.start_mark
            out[key] = self.build(value_node, (*path, key), key_node.start_mark)
        return out

    def _merge_sources(self, node: Node, path: tuple[PathItem, ...]) -> list[MappingNode]:
        if isinstance(node, MappingNode) and id(node) not in self._open:
            return [node]
        if isinstance(node, SequenceNode) and all(
            isinstance(item, MappingNode) and id(item) not in self._open for item in node.value
        ):
            return [item for item in node.value if isinstance(item, MappingNode)]
        self.error(node.start_mark, path, "'<<' must merge a mapping or a list of mappings")
        return []

    def _key(self, node: Node, path: tuple[PathItem, ...]) -> PathItem | _Invalid:
        if not isinstance(node, ScalarNode):
            self.error(node.start_mark, path, "a mapping key must be a plain value")
            return _INVALID
        try:
            key = self.loader.construct_object(node)
        except yaml.MarkedYAMLError as exc:
            self.error(node.start_mark, path, exc.problem or "cannot read this key")
            return _INVALID
        if isinstance(key, bool) or not isinstance(key, str | int):
            self.error(
                node.start_mark, path, f"a mapping key must be text or an integer, not {key!r}"
            )
            return _INVALID
        return key


def _translate(
    exc: ValidationError, document: Document, model: type[BaseModel]
) -> list[LocatedError]:
    located: list[LocatedError] = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        kind = err["type"]
        ctx = err.get("ctx") or {}
        issues = ctx.get("issues")
        if kind == ISSUES_ERROR_TYPE and isinstance(issues, tuple):
            for issue in issues:
                if isinstance(issue, Issue):
                    located.append(
                        document.error_at(
                            (*loc, *issue.path),
                            issue.message,
                            at_key=issue.at_key,
                            full_path=True,
                        )
                    )
            continue
        if kind == "missing":
            located.append(document.error_at(loc, "required field missing", missing=True))
        elif kind == "extra_forbidden":
            allowed = _allowed_keys(model, loc[:-1])
            hint = f" (expected one of: {', '.join(allowed)})" if allowed else ""
            located.append(document.error_at(loc, f"unknown key{hint}", at_key=True))
        else:
            located.append(document.error_at(loc, _describe(err)))
    return located


def _describe(err: Mapping[str, Any]) -> str:
    message = str(err["msg"])
    if err["type"] == "value_error":
        # Our validators name the offending value themselves.
        return message.removeprefix(_VALUE_ERROR_PREFIX)
    value = err.get("input")
    if value is None or isinstance(value, str | int | float):
        return f"{message} (got {value!r})"
    return message


def _allowed_keys(model: type[BaseModel], loc: Sequence[Any]) -> list[str] | None:
    """The keys the model accepts at ``loc``, for the hint on an unknown key (best effort)."""
    current: object = model
    for step in loc:
        current = _descend(current, step)
        if current is None:
            return None
    target = _single_model(current)
    if target is None:
        return None
    return [field.alias or name for name, field in target.model_fields.items()]


def _strip(tp: object) -> object:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _members(tp: object) -> list[object]:
    tp = _strip(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return [_strip(arg) for arg in typing.get_args(tp) if arg is not type(None)]
    return [tp]


def _single_model(tp: object) -> type[BaseModel] | None:
    models = [m for m in _members(tp) if isinstance(m, type) and issubclass(m, BaseModel)]
    return models[0] if len(models) == 1 else None


def _descend(tp: object, step: object) -> object | None:
    members = _members(tp)
    models = [m for m in members if isinstance(m, type) and issubclass(m, BaseModel)]
    # A union member tag (class name or discriminator value) selects that member.
    for candidate in models:
        if step == candidate.__name__:
            return candidate
        for field in candidate.model_fields.values():
            if typing.get_origin(field.annotation) is typing.Literal and step in typing.get_args(
                field.annotation
            ):
                if len(models) > 1:
                    return candidate
    if len(members) != 1:
        return None
    only = members[0]
    if isinstance(only, type) and issubclass(only, BaseModel):
        for name, field in only.model_fields.items():
            if step in (name, field.alias):
                return field.annotation
        return None
    origin = typing.get_origin(only)
    args: tuple[object, ...] = typing.get_args(only)
    if origin in (list, tuple, Sequence, set, frozenset) and isinstance(step, int) and args:
        return args[0]
    if origin in (dict, Mapping) and len(args) == 2:
        return args[1]
    return None
