"""JSON Schemas (draft 2020-12) of the events on the wire, one file per event type.

``<event_type>.schema.json`` describes exactly what ``orderflow.domain.events.event_to_dict``
produces for that type; services we do not own validate against these files, and the unit tests
check that our own output does. Adding an event type means adding its schema file here.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

__all__ = ["SCHEMA_SUFFIX", "ValidationError", "load_schema", "validate_event_dict"]

SCHEMA_SUFFIX = ".schema.json"


def _is_strict_integer(checker: Any, instance: Any) -> bool:
    # JSON Schema counts 1.0 as an integer; our decoder does not, and money is never a float.
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine("integer", _is_strict_integer),
)


@functools.cache
def _schema_texts() -> dict[str, str]:
    # Only files actually shipped in this package, so an event_type can never name another path.
    texts = {}
    for entry in resources.files(__name__).iterdir():
        if entry.name.endswith(SCHEMA_SUFFIX):
            texts[entry.name.removesuffix(SCHEMA_SUFFIX)] = entry.read_text(encoding="utf-8")
    return texts


def load_schema(event_type: str) -> dict[str, Any]:
    """The schema of ``event_type`` (e.g. ``"order.created"``) as a new dict; KeyError if none."""
    text = _schema_texts().get(event_type)
    if text is None:
        raise KeyError(f"no schema for event type {event_type!r}")
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
    if not isinstance(event_type, str):
        raise ValidationError("event_type: missing or not a string")
    try:
        validator = _validator(event_type)
    except KeyError:
        raise ValidationError(f"event_type: unknown type {event_type!r}") from None
    validator.validate(data)
