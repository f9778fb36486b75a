"""Configuration files: YAML loading with file:line:col errors, and the registry of file kinds.

``load_model(path, Model)`` is the one way sbcsim reads a YAML file; ``register_kind`` makes a
kind of file known to ``sbcsim validate``; ``write_schemas(dir)`` regenerates the JSON Schemas
under ``schemas/`` from the models.
"""

from __future__ import annotations

from sbcsim.config.kinds import (
    Kind,
    detect_kind,
    kind_named,
    load_any,
    register_kind,
    registered_kinds,
    schema_text,
    unregister_kind,
    write_schemas,
)
from sbcsim.config.yamlload import (
    ConfigValidationError,
    Document,
    Issue,
    LocatedError,
    Span,
    format_path,
    issues_error,
    load_document,
    load_document_text,
    load_model,
    load_model_text,
    validate_document,
)

__all__ = [
    "ConfigValidationError",
    "Document",
    "Issue",
    "Kind",
    "LocatedError",
    "Span",
    "detect_kind",
    "format_path",
    "issues_error",
    "kind_named",
    "load_any",
    "load_document",
    "load_document_text",
    "load_model",
    "load_model_text",
    "register_kind",
    "registered_kinds",
    "schema_text",
    "unregister_kind",
    "validate_document",
    "write_schemas",
]
