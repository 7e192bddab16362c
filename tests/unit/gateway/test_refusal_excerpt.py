"""A refused charge's reply is logged as an excerpt that never shows a payment token."""

from __future__ import annotations

from orderflow.gateway.http import _excerpt


def test_a_refusal_excerpt_masks_a_card_token_echoed_by_the_gateway() -> None:
    # Regression: "No such token: 'tok_…'" was logged at WARNING with the whole token.
    excerpt = _excerpt(b"No such token: 'tok_secretVisa4242'; bearer sk_live_x")
    assert "tok_secretVisa4242" not in excerpt and "sk_live_x" not in excerpt
    assert "No such token: 'tok_" in excerpt
