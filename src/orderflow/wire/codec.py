"""What every wire shape shares: the field types, and decode errors that name the field.

msgspec validates while it parses; its messages (``Expected `int`, got `str` - at `$.amount```)
are rewritten here into the reasons dead letters have always carried (``amount: expected an
integer``), so operators and tests read one format.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from orderflow.domain.errors import EventDecodeError

__all__ = ["Amount", "Currency", "NonEmpty", "Timestamp", "decode_error", "parse_json"]

# Required strings are never empty (an empty id or currency is a writer's bug).
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
# Readers check structure, not the domain's limits (amount ranges, item counts, currency lists):
# a newer writer may widen a limit in a minor version, and an old reader must not refuse it.
Amount = Annotated[
    int, msgspec.Meta(description="Minor units of the currency (cents, yen); never a float.")
]
Currency = Annotated[str, msgspec.Meta(min_length=1, description="ISO 4217 code, e.g. EUR.")]
Timestamp = Annotated[
    str,
    msgspec.Meta(min_length=1, description="RFC 3339 time, UTC, e.g. 2024-05-01T12:00:00.000Z."),
]

_KINDS = {
    "str": "a string",
    "int": "an integer",
    "bool": "a boolean",
    "object": "an object",
    "array": "an array",
    "str | null": "a string or null",
    "int | null": "an integer or null",
    "float": "a number",
}
_AT = re.compile(r"^(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.DOTALL)
_MISSING = re.compile(r"^Object missing required field `(?P<field>[^`]+)`$")
_EXPECTED = re.compile(r"^Expected `(?P<kind>[^`]+)`(?:, got `[^`]+`)?$")


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def decode_error(exc: msgspec.ValidationError) -> EventDecodeError:
    """The reason for a failed validation, as ``<field path>: <problem>``."""
    match = _AT.match(str(exc))
    assert match is not None  # the pattern matches any text
    what, path = match["what"], (match["path"] or "").removeprefix(".")
    if missing := _MISSING.match(what):
        return EventDecodeError(f"{_join(path, missing['field'])}: missing")
    where = path or "value"
    if what.startswith("Expected `str` of length >= 1"):
        return EventDecodeError(f"{where}: empty")
    if (expected := _EXPECTED.match(what)) and expected["kind"] in _KINDS:
        return EventDecodeError(f"{where}: expected {_KINDS[expected['kind']]}")
    return EventDecodeError(f"{where}: {what}")


def parse_json(raw: bytes | None) -> Any:
    """Any JSON value; EventDecodeError for a tombstone or bytes that are not JSON."""
    if raw is None:
        raise EventDecodeError("value: empty (tombstone)")
    try:
        return msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        raise EventDecodeError(f"value: not JSON ({exc})") from None
