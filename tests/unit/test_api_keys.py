"""API keys (hashed, constant-time) and the signature of forwarded requests."""

from __future__ import annotations

import pytest

from orderflow.domain.auth import (
    ApiKeys,
    KeysFileError,
    bearer_token,
    hash_key,
    new_api_key,
    sign_forward,
    verify_forward,
)

SECRET = b"x" * 32


def test_a_configured_key_names_its_client_and_nothing_else_does() -> None:
    key_a, key_b = new_api_key(), new_api_key()
    assert key_a.startswith("ofk_") and len(key_a) >= 4 + 43 and key_a != key_b
    keys = ApiKeys.parse([
        "# clients", f"shop-a {hash_key(key_a)}  # web shop", "", f"shop-b {hash_key(key_b)}",
    ])  # fmt: skip
    assert keys.client_for(key_a) == "shop-a"
    assert keys.client_for(key_b) == "shop-b"
    assert keys.client_for(key_a + "x") is None
    assert keys.client_for(None) is None
    assert keys.client_for(hash_key(key_a)) is None  # the stored hash is not a key


@pytest.mark.parametrize(
    "line", ["shop-a", "shop-a sha256:abc", "shop a sha256:" + "0" * 64, "shop-a md5:" + "0" * 64]
)
def test_a_bad_keys_file_line_is_refused_without_echoing_it(line: str) -> None:
    with pytest.raises(KeysFileError, match="line 1") as info:
        ApiKeys.parse([line])
    assert "0" * 64 not in str(info.value)


def test_bearer_token_parsing() -> None:
    assert bearer_token("Bearer ofk_abc") == "ofk_abc"
    assert bearer_token("bearer  ofk_abc ") == "ofk_abc"
    assert bearer_token("Basic ofk_abc") is None
    assert bearer_token("Bearer") is None
    assert bearer_token(None) is None


def test_a_forward_signature_binds_every_part_and_expires() -> None:
    ts, sig = sign_forward(SECRET, "POST", "/orders", "shop-a", b"{}", now=1000.0)
    ok = ("POST", "/orders", "shop-a", b"{}", ts, sig)
    assert verify_forward(SECRET, *ok, now=1010.0)
    assert not verify_forward(SECRET, *ok, now=1031.0)  # too old
    assert not verify_forward(b"y" * 32, *ok, now=1000.0)  # another cluster
    assert not verify_forward(SECRET, "POST", "/orders", "shop-b", b"{}", ts, sig, now=1000.0)
    assert not verify_forward(SECRET, "POST", "/orders", "shop-a", b"{ }", ts, sig, now=1000.0)
    assert not verify_forward(SECRET, "GET", "/orders", "shop-a", b"{}", ts, sig, now=1000.0)
    assert not verify_forward(SECRET, "POST", "/orders?x", "shop-a", b"{}", ts, sig, now=1000.0)
    assert not verify_forward(SECRET, "POST", "/orders", "shop-a", b"{}", "nan", sig, now=1000.0)
