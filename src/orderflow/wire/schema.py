"""JSON Schemas (draft 2020-12) generated from the wire shapes, checked in under ``schemas/``.

The files say what the decoders accept: required fields, types, non-empty strings, the MAJOR
``schema_version``; unknown properties are allowed, because readers ignore them. Regenerate
after changing a shape with ``python -m orderflow.wire.schema`` (a unit test fails on drift).
"""

from __future__ import annotations

import functools
import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from orderflow.wire.events import EVENT_SHAPES
from orderflow.wire.reconcile import ReconcileRequestV1
from orderflow.wire.tables import OrderValueV1, PaymentValueV1

__all__ = [
    "SCHEMA_DIR",
    "SCHEMA_SUFFIX",
    "ValidationError",
    "generate_schemas",
    "load_schema",
    "validate_event_dict",
    "write_schemas",
]

SCHEMA_SUFFIX = ".schema.json"
SCHEMA_DIR = Path(__file__).parent / "schemas"
# name -> shape; events are named by their event_type, table values by their table.
SHAPES: dict[str, type[msgspec.Struct]] = {
    **EVENT_SHAPES,
    "payment.reconcile-request": ReconcileRequestV1,
    "OrderDB": OrderValueV1,
    "PaymentDB": PaymentValueV1,
}


def _document(name: str, shape: type[msgspec.Struct]) -> dict[str, Any]:
    generated = msgspec.json.schema(shape)
    defs: dict[str, Any] = generated["$defs"]
    root: dict[str, Any] = defs.pop(generated["$ref"].rsplit("/", 1)[1])
    doc: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:orderflow:schema:{name}:1",
        **root,
    }
    if defs:
        doc["$defs"] = defs
    return doc


def generate_schemas() -> dict[str, str]:
    """File name -> text of every schema, as generated from the shapes now."""
    return {
        f"{name}{SCHEMA_SUFFIX}": json.dumps(_document(name, shape), indent=2) + "\n"
        for name, shape in SHAPES.items()
    }


def write_schemas(directory: Path = SCHEMA_DIR) -> list[str]:
    """Write the generated schemas; returns the names of the files that changed."""
    changed = []
    for file_name, text in generate_schemas().items():
        path = directory / file_name
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(file_name)
    return changed


def _is_strict_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 1.0 as an integer; our decoder does not, and money is never a float.
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer),
)


@functools.cache
def _schema_texts() -> dict[str, str]:
    # Only files actually shipped in this package, so a name can never point at another path.
    texts = {}
    for entry in (resources.files(__package__ or "orderflow.wire") / "schemas").iterdir():
        if entry.name.endswith(SCHEMA_SUFFIX):
            texts[entry.name.removesuffix(SCHEMA_SUFFIX)] = entry.read_text(encoding="utf-8")
    return texts


def load_schema(name: str) -> dict[str, Any]:
    """The checked-in schema ``name`` (e.g. ``"order.created"``) as a new dict; KeyError if none."""
    text = _schema_texts().get(name)
    if text is None:
        raise KeyError(f"no schema named {name!r}")
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(event_type: str) -> Any:
    schema = load_schema(event_type)
    Draft202012Validator.check_schema(schema)
    return _StrictValidator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def validate_event_dict(data: Any) -> None:
    """Check a wire-form event against the schema its ``event_type`` names.

    Raises ``jsonschema.ValidationError`` for a non-object, an unknown or missing ``event_type``,
    or any mismatch with the schema (the first error found; ``.path`` says where).
    """
    if not isinstance(data, dict):
        raise ValidationError(f"{data!r} is not of type 'object'")
    event_type = data.get("event_type")
    if not isinstance(event_type, str) or event_type not in EVENT_SHAPES:
        raise ValidationError(f"event_type: unknown or missing ({event_type!r})")
    _validator(event_type).validate(data)


if __name__ == "__main__":
    for name in write_schemas():
        print(f"wrote {SCHEMA_DIR / name}", file=sys.stderr)
