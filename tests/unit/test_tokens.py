"""Payment tokens are secrets: masking, the keyed fingerprint, and PaymentDB dropping the token."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from orderflow.domain.order import place_order
from orderflow.domain.payment import Approved, Declined, PaymentStatus, decline_for
from orderflow.domain.tokens import (
    fingerprint_key,
    mask_secrets,
    mask_text,
    mask_token,
    token_digest,
)
from orderflow.domain.validation import OrderRequest, validate_order_request
from orderflow.tools.replay.model import TopicRecord, describe, record_to_json
from orderflow.topics import ORDER_CREATED
from orderflow.web.orders import _fingerprint
from orderflow.wire import (
    encode_event,
    order_from_bytes,
    order_to_bytes,
    payment_from_bytes,
    payment_to_bytes,
)
from tests.unit.builders import payment_record, place_command, unstarted_flow, valid_body


@pytest.mark.parametrize(
    ("token", "masked"),
    [
        ("tok_visa", "tok_…isa"),
        ("tok_chargeDeclined", "tok_…ned"),
        ("pm_1NqkZ2LkdIwHu7ix", "pm_…7ix"),
        ("abcdefghijk", "…ijk"),  # no type prefix: the tail only
        ("averylongprefix_abcdef", "…def"),  # a long "prefix" is part of the secret
        ("tok_abc", "…"),  # short tokens: nothing shown
        ("tok_abcd", "tok_…bcd"),
        ("tok_", "…"),
        ("", ""),  # nothing to hide ("no token" is worth seeing)
    ],
)
def test_mask_token_shows_the_prefix_an_ellipsis_and_the_last_three(
    token: str, masked: str
) -> None:
    assert mask_token(token) == masked


@pytest.mark.parametrize("token", ["tok_visa", "tok_chargeDeclined", "abcdefghijk", "x" * 128])
def test_a_masked_token_never_shows_the_token_and_masking_again_changes_nothing(token: str) -> None:
    masked = mask_token(token)
    assert token not in masked
    assert mask_token(masked) == masked
    assert mask_text(f"token={masked}") == f"token={masked}"


def test_mask_text_masks_json_repr_and_assigned_tokens_even_truncated() -> None:
    text = (
        '{"payment": {"token": "tok_chargeDeclined"}, "source": "tok_visa"} '
        "{'payment_token': 'tok_secret_4242'} token=tok_visa "
        '{"event_type": "order.created", "payment": {"token": "tok_chargeDecl'
    )
    masked = mask_text(text)
    for raw in ("tok_chargeDeclined", "tok_visa", "tok_secret_4242", "tok_chargeDecl"):
        assert raw not in masked, masked
    assert '"token": "tok_…ned"' in masked
    assert "token=tok_…isa" in masked


def test_mask_secrets_masks_token_fields_at_any_depth_and_keeps_the_rest() -> None:
    value = {
        "order_id": "o1",
        "payment": {"token": "tok_visa"},
        "rows": [{"source": "tok_chargeDeclined", "params": '{"source":"tok_visa"}'}],
        "payment_token": "tok_visa",
        "amount": 5,
    }
    masked = mask_secrets(value)
    assert "tok_visa" not in orjson.dumps(masked).decode()
    assert "tok_chargeDeclined" not in orjson.dumps(masked).decode()
    assert masked["payment"] == {"token": "tok_…isa"}
    assert (masked["order_id"], masked["amount"]) == ("o1", 5)


def _request(token: str) -> OrderRequest:
    request = validate_order_request(valid_body(payment={"token": token}))
    assert isinstance(request, OrderRequest)
    return request


def test_fingerprint_holds_no_plain_hash_of_the_token() -> None:
    # A stored fingerprint (kept forever in OrderDB) must not let anyone find a low-entropy token
    # back by hashing candidates: with a key the token enters only through an HMAC.
    key = b"k" * 32
    visa, declined = _request("tok_visa"), _request("tok_chargeDeclined")
    assert _fingerprint(visa, key) != _fingerprint(declined, key)  # another card: a conflict
    assert _fingerprint(visa, key) != _fingerprint(visa, b"another key")
    assert _fingerprint(visa, key) == _fingerprint(_request("tok_visa"), key)
    assert token_digest("tok_visa", key) != token_digest("tok_visa", b"another key")
    # Without a key the token is left out entirely (nothing to try candidates against).
    assert _fingerprint(visa) == _fingerprint(declined)


@pytest.mark.parametrize(
    "outcome",
    [Approved("ch_1"), Declined(decline_for("card_declined"), "ch_2")],
    ids=["COMPLETED", "FAILED"],
)
def test_a_settled_payment_drops_its_token(outcome: Approved | Declined) -> None:
    record = payment_record(payment_token="tok_visa").attempt(1.0)

    settled = record.settle(outcome, 2.0)

    assert settled.status.is_settled
    assert settled.payment_token == ""
    assert b"tok_visa" not in payment_to_bytes(settled)  # the changelog's latest value


def test_an_inconsistent_payment_drops_its_token_it_is_never_charged_again() -> None:
    record = payment_record(payment_token="tok_visa").attempt(1.0).unknown(2.0)
    assert record.inconsistent("foreign charge", 3.0).payment_token == ""


def test_attempting_and_unknown_payments_keep_the_token_for_the_next_charge() -> None:
    attempting = payment_record(payment_token="tok_visa").attempt(1.0)
    unknown = attempting.unknown(2.0).unknown(5.0)  # a failed lookup: still UNKNOWN
    assert attempting.payment_token == unknown.payment_token == "tok_visa"
    assert unknown.status is PaymentStatus.UNKNOWN
    assert payment_from_bytes(payment_to_bytes(unknown)).payment_token == "tok_visa"


def test_a_settled_record_written_before_the_change_still_decodes() -> None:
    old = orjson.loads(
        payment_to_bytes(payment_record(status=PaymentStatus.COMPLETED, charge_id="ch_1"))
    )
    old["payment_token"] = "tok_visa"  # as the old code wrote it
    assert payment_from_bytes(orjson.dumps(old)).status is PaymentStatus.COMPLETED


def test_replay_output_of_an_order_created_masks_the_token() -> None:
    command = place_command(payment_token="tok_chargeDeclined")
    created = place_order(None, command).publish
    assert created is not None
    record = TopicRecord(ORDER_CREATED, 0, 0, 0, b"ord-1", encode_event(created), ())
    shown = describe(record) + orjson.dumps(record_to_json(record)).decode()
    assert "tok_chargeDeclined" not in shown
    assert "token=tok_…ned" in describe(record)


def test_an_orderdb_row_written_before_the_change_still_decodes_without_its_token() -> None:
    order = place_order(None, place_command()).order
    old = orjson.loads(order_to_bytes(order))
    del old["command_offset"]
    old["payment_token"] = "tok_visa"  # as the old code wrote it

    decoded = order_from_bytes(orjson.dumps(old))

    assert decoded == order and decoded.command_offset is None
    assert b"tok_visa" not in order_to_bytes(decoded)  # its next write drops the token


def test_a_worker_fingerprints_the_token_with_a_key_from_its_cluster_secret(tmp_path: Path) -> None:
    # The key once came from an optional variable of its own, empty by default: the token was
    # left out of fingerprints (the same Idempotency-Key with another card replayed the first
    # order), and two workers with different keys answered each other's honest retries 422.
    secret = "c" * 40
    flow = unstarted_flow(tmp_path, ORDERFLOW_CLUSTER_SECRET=secret)
    assert flow.api is not None
    assert flow.api.token_hash_key == fingerprint_key(secret.encode())
    assert flow.api.token_hash_key not in (b"", secret.encode())


def test_mask_text_masks_bare_token_shaped_values_and_keeps_decline_codes() -> None:
    # Regression: a gateway's "No such token: 'tok_…'" reply kept the whole token.
    masked = mask_text("No such token: 'tok_secret4242'; pm_1NqkZ2LkdIwHu7ix (card_declined)")
    assert "tok_secret4242" not in masked and "pm_1NqkZ2LkdIwHu7ix" not in masked
    assert "tok_…242" in masked and "card_declined" in masked
    assert mask_text(masked) == masked
