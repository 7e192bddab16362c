"""The checked-in JSON Schemas are exactly what the wire shapes generate (the CI drift check)."""

from __future__ import annotations

from jsonschema import Draft202012Validator

from orderflow.wire.schema import SCHEMA_DIR, SCHEMA_SUFFIX, generate_schemas, load_schema


def test_checked_in_schemas_match_the_wire_definitions() -> None:
    generated = generate_schemas()
    checked_in = {
        p.name: p.read_text(encoding="utf-8") for p in SCHEMA_DIR.glob(f"*{SCHEMA_SUFFIX}")
    }

    # On failure: python -m orderflow.wire.schema, then review and commit the diff.
    assert sorted(checked_in) == sorted(generated)
    for name, text in generated.items():
        assert checked_in[name] == text, f"{name} drifted from its definition"


def test_every_schema_is_valid_draft_2020_12_and_allows_unknown_fields() -> None:
    for name in generate_schemas():
        schema = load_schema(name.removesuffix(SCHEMA_SUFFIX))
        Draft202012Validator.check_schema(schema)
        assert schema.get("additionalProperties", True) is not False
