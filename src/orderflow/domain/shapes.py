"""A small declarative description of JSON shapes: one definition both validates and documents.

A shape checks a decoded JSON value and reports *every* problem with its field path
(``items[0].quantity``) and a stable code; the same shape renders the JSON Schema (2020-12, as
OpenAPI 3.1 uses) that ``/openapi.json`` publishes. Response shapes only render. Stdlib only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "Array",
    "Boolean",
    "Field",
    "Integer",
    "Number",
    "Object",
    "Problem",
    "Shape",
    "String",
    "check",
]

JsonSchema = dict[str, Any]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: where (``items[0].quantity``), a code, and a message."""

    field: str
    code: str
    message: str


def _child(path: str, name: str) -> str:
    return name if path == "$" else f"{path}.{name}"


def _is_int(value: Any) -> bool:
    # bool is an int subclass in Python; `true` is not a quantity.
    return isinstance(value, int) and not isinstance(value, bool)


def _described(schema: JsonSchema, description: str) -> JsonSchema:
    if description:
        schema["description"] = description
    return schema


def _nullable(schema: JsonSchema, nullable: bool) -> JsonSchema:
    if nullable:
        schema["type"] = [schema["type"], "null"]
    return schema


def _portable(pattern: str) -> str:
    """The pattern for JSON Schema users in any regex dialect: a final ``$`` is the end of the
    string in ECMA-262 but may also match before a final newline (Python's ``re.search``, which
    schema validators and fuzzers written in Python use); ``(?![\\s\\S])`` is the end in both."""
    return pattern[:-1] + r"(?![\s\S])" if pattern.endswith("$") else pattern


class Shape:
    """A JSON value's shape: ``check`` validates it, ``json_schema`` describes it."""

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        """Append every problem of ``value`` (at ``path``) to ``problems``."""
        raise NotImplementedError

    def json_schema(self) -> JsonSchema:
        raise NotImplementedError


@dataclass(frozen=True)
class String(Shape):
    """A string, optionally matching ``pattern`` (whole string) or one of ``allowed``."""

    pattern: str | None = None
    allowed: frozenset[str] | None = None
    # (code, message) when a string is not in ``allowed``
    not_allowed: tuple[str, str] = ("unknown", "is not an allowed value")
    description: str = ""
    nullable: bool = False

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        if not isinstance(value, str):
            problems.append(Problem(path, "type", "must be a string"))
        # fullmatch, not match: with match, `$` also matches before a trailing newline ("c1\n").
        elif self.pattern is not None and not re.fullmatch(self.pattern, value):
            problems.append(Problem(path, "format", f"must match {self.pattern}"))
        elif self.allowed is not None and value not in self.allowed:
            problems.append(Problem(path, *self.not_allowed))

    def json_schema(self) -> JsonSchema:
        schema: JsonSchema = {"type": "string"}
        if self.pattern is not None:
            schema["pattern"] = _portable(self.pattern)
        if self.allowed is not None:
            schema["enum"] = sorted(self.allowed) + ([None] if self.nullable else [])
        return _described(_nullable(schema, self.nullable), self.description)


@dataclass(frozen=True)
class Integer(Shape):
    """An integer (never a float or a boolean) within ``minimum`` .. ``maximum``."""

    minimum: int | None = None
    maximum: int | None = None
    type_message: str = "must be an integer"
    description: str = ""
    nullable: bool = False

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        if not _is_int(value):
            problems.append(Problem(path, "type", self.type_message))
        elif self.minimum is not None and value < self.minimum:
            message = (
                "must be positive" if self.minimum == 1 else f"must be at least {self.minimum}"
            )
            problems.append(Problem(path, "range", message))
        elif self.maximum is not None and value > self.maximum:
            problems.append(Problem(path, "range", f"must be at most {self.maximum}"))

    def json_schema(self) -> JsonSchema:
        schema: JsonSchema = {"type": "integer"}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        return _described(_nullable(schema, self.nullable), self.description)


@dataclass(frozen=True)
class Number(Shape):
    """A number (responses only)."""

    minimum: float | None = None
    description: str = ""

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            problems.append(Problem(path, "type", "must be a number"))

    def json_schema(self) -> JsonSchema:
        schema: JsonSchema = {"type": "number"}
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        return _described(schema, self.description)


@dataclass(frozen=True)
class Boolean(Shape):
    """``true`` or ``false`` (responses only)."""

    description: str = ""

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        if not isinstance(value, bool):
            problems.append(Problem(path, "type", "must be a boolean"))

    def json_schema(self) -> JsonSchema:
        return _described({"type": "boolean"}, self.description)


@dataclass(frozen=True)
class Array(Shape):
    """A list of ``items``; too few or too many stops the check of its elements."""

    items: Shape
    min_items: int = 0
    max_items: int | None = None
    description: str = ""

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        if not isinstance(value, list):
            problems.append(Problem(path, "type", "must be an array"))
        elif len(value) < self.min_items:
            what = (
                "at least one item" if self.min_items == 1 else f"at least {self.min_items} items"
            )
            problems.append(Problem(path, "empty", f"must hold {what}"))
        elif self.max_items is not None and len(value) > self.max_items:
            problems.append(Problem(path, "too_many", f"must hold at most {self.max_items} items"))
        else:
            for index, element in enumerate(value):
                self.items.check(element, f"{path}[{index}]", problems)

    def json_schema(self) -> JsonSchema:
        schema: JsonSchema = {"type": "array", "items": self.items.json_schema()}
        if self.min_items:
            schema["minItems"] = self.min_items
        if self.max_items is not None:
            schema["maxItems"] = self.max_items
        return _described(schema, self.description)


@dataclass(frozen=True)
class Field:
    """One member of an object."""

    name: str
    shape: Shape
    required: bool = True


@dataclass(frozen=True)
class Object(Shape):
    """A JSON object with known ``fields``; ``closed`` refuses members not listed."""

    fields: tuple[Field, ...]
    closed: bool = True
    description: str = ""
    # the message when the value is not an object ("$": the whole body)
    type_message: str = "must be an object"
    nullable: bool = False
    # any other members' shape (e.g. counters of a health report); only when not closed
    extra: Shape | None = None
    examples: tuple[Any, ...] = field(default=())

    def check(self, value: Any, path: str, problems: list[Problem]) -> None:
        if not isinstance(value, dict):
            problems.append(Problem(path, "type", self.type_message))
            return
        for member in self.fields:
            where = _child(path, member.name)
            if member.name not in value:
                if member.required:
                    problems.append(Problem(where, "missing", "is required"))
                continue
            member.shape.check(value[member.name], where, problems)
        if self.closed:
            unknown = sorted(set(value) - {member.name for member in self.fields})
            problems.extend(
                Problem(_child(path, key), "unknown_field", "is not a known field")
                for key in unknown
            )

    def json_schema(self) -> JsonSchema:
        schema: JsonSchema = {
            "type": "object",
            "properties": {member.name: member.shape.json_schema() for member in self.fields},
        }
        required = [member.name for member in self.fields if member.required]
        if required:
            schema["required"] = required
        if self.closed:
            schema["additionalProperties"] = False
        elif self.extra is not None:
            schema["additionalProperties"] = self.extra.json_schema()
        if self.examples:
            schema["examples"] = list(self.examples)
        return _described(_nullable(schema, self.nullable), self.description)


def check(shape: Shape, value: Any) -> list[Problem]:
    """Every problem of ``value`` against ``shape``, the value itself at path ``$``."""
    problems: list[Problem] = []
    shape.check(value, "$", problems)
    return problems
