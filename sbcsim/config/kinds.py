"""The kinds of YAML file sbcsim reads, so ``sbcsim validate`` can tell them apart.

Each kind (topology, scenario, plan, target ...) registers its pydantic model and a detector
with :func:`register_kind`.  A file names its kind with a top-level ``kind:`` key, or is
recognised by its detector (a topology has ``carrier`` and ``tenants``).  The modules that
define kinds register themselves when imported; :data:`BUILTIN_KIND_MODULES` lists them so
the registry can import them on first use without import cycles (those modules import this
package for :func:`~sbcsim.config.yamlload.load_model`).

The registry also writes the JSON Schema of every kind (:func:`write_schemas`), which editors
use to complete and check the files while they are typed.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from sbcsim.config.yamlload import (
    ConfigValidationError,
    Document,
    load_document,
    validate_document,
)

__all__ = [
    "BUILTIN_KIND_MODULES",
    "JSON_SCHEMA_DIALECT",
    "Kind",
    "detect_kind",
    "kind_named",
    "load_any",
    "register_kind",
    "registered_kinds",
    "schema_text",
    "unregister_kind",
    "write_schemas",
]

#: Modules that call :func:`register_kind` at import time.  Add yours here.
BUILTIN_KIND_MODULES: tuple[str, ...] = ("sbcsim.topology", "sbcsim.testplan.plan", "sbcsim.target")

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

Detector = Callable[[object], bool]


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of YAML file: its name (the value of ``kind:``), model and detector."""

    name: str
    model: type[BaseModel]
    detector: Detector

    def validate(self, document: Document) -> BaseModel:
        """Validate a parsed document as this kind (errors carry file:line:col)."""
        return validate_document(document, self.model)


_KINDS: dict[str, Kind] = {}
_builtins_loaded = False


def register_kind(name: str, model: type[BaseModel], detector: Detector) -> Kind:
    """Make ``sbcsim validate`` (and :func:`load_any`) know a kind of file.

    ``detector`` gets the parsed data of a file without a ``kind:`` key and says whether it
    looks like this kind.  The model should accept an optional ``kind: Literal[name]`` field so
    that files may name their kind explicitly.  Registering the same name twice with the same
    model is harmless (modules may be reloaded); with another model it is a programming error.
    """
    existing = _KINDS.get(name)
    if existing is not None and existing.model is not model:
        raise ValueError(f"kind {name!r} is already registered for {existing.model.__name__}")
    kind = Kind(name, model, detector)
    _KINDS[name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Forget a kind (tests register throw-away kinds)."""
    _KINDS.pop(name, None)


def registered_kinds() -> tuple[Kind, ...]:
    """Every known kind, built-in ones first, in registration order."""
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for module in BUILTIN_KIND_MODULES:
            importlib.import_module(module)
    return tuple(_KINDS.values())


def kind_named(name: str) -> Kind | None:
    """The kind registered under ``name``."""
    return {kind.name: kind for kind in registered_kinds()}.get(name)


def detect_kind(data: object) -> Kind | None:
    """The kind a file's data declares with ``kind:``, else the first detector that accepts it."""
    kinds = registered_kinds()
    if isinstance(data, dict) and isinstance(data.get("kind"), str):
        return kind_named(data["kind"])
    for kind in kinds:
        if kind.detector(data):
            return kind
    return None


def load_any(path: str | Path) -> tuple[Kind, BaseModel]:
    """Read any registered kind of file, detecting which it is.

    Raises :class:`~sbcsim.errors.ConfigError` (with file:line:col) for unreadable files, YAML
    errors, files of no known kind and invalid content.
    """
    document = load_document(path)
    kind = detect_kind(document.data)
    if kind is None:
        names = ", ".join(k.name for k in registered_kinds())
        data = document.data
        if isinstance(data, dict) and "kind" in data:
            raise ConfigValidationError(
                [
                    document.error_at(
                        ("kind",), f"unknown kind {data['kind']!r} (expected one of: {names})"
                    )
                ]
            )
        raise ConfigValidationError(
            [
                document.error_at(
                    (),
                    f"cannot tell what kind of file this is; add a 'kind:' key (one of: {names})",
                )
            ]
        )
    return kind, kind.validate(document)


def schema_text(kind: Kind) -> str:
    """The JSON Schema of a kind as written to ``schemas/<name>.schema.json``."""
    schema: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT}
    schema.update(kind.model.model_json_schema())
    schema.setdefault("title", kind.model.__name__)
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


def write_schemas(directory: str | Path) -> list[Path]:
    """Write ``<name>.schema.json`` for every registered kind into ``directory``."""
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in registered_kinds():
        path = target / f"{kind.name}.schema.json"
        path.write_text(schema_text(kind), encoding="utf-8")
        written.append(path)
    return written
