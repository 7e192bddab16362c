"""API keys (hashed, constant-time) and the signature of forwarded requests."""

from __future__ import annotations

from pathlib import Path

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
    keys = ApiKeys.parse(
        [
            "# clients",
            f"shop-a {hash_key(key_a)}  # web shop",
            "",
            f"shop-b {hash_key(key_b)}",
        ]
    )
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


def test_settings_read_auth_retention_and_open_endpoints() -> None:
    from orderflow.config import ConfigError, Settings

    base = {"ORDERFLOW_GATEWAY": "sandbox"}  # the gateway must be named (fail closed)
    settings = Settings.from_env(
        {
            **base,
            "ORDERFLOW_IDEMPOTENCY_RETENTION": "30m",
            "ORDERFLOW_OPEN_ENDPOINTS": "health, metrics",
            "ORDERFLOW_CLUSTER_SECRET": "s" * 40,
        }
    )
    assert settings.idempotency_retention_s == 1800.0
    assert settings.open_endpoints == ("health", "metrics")
    assert "s" * 40 not in repr(settings)  # the secret never reaches a log line via repr
    assert Settings.from_env(base).idempotency_retention_s == 86400.0
    assert Settings.from_env(base).api_auth == "keys"
    with pytest.raises(ConfigError, match="ORDERFLOW_IDEMPOTENCY_RETENTION"):
        Settings.from_env({**base, "ORDERFLOW_IDEMPOTENCY_RETENTION": "forever"})


def test_authenticator_fails_closed_and_names_what_is_missing(tmp_path: Path) -> None:
    from orderflow.config import ConfigError, Settings
    from orderflow.web.auth import Authenticator

    with pytest.raises(ConfigError, match=r"ORDERFLOW_API_KEYS_FILE.*ORDERFLOW_CLUSTER_SECRET"):
        Authenticator.from_settings(Settings()).check()
    keys = tmp_path / "keys"
    keys.write_text("shop-a sha256:" + "0" * 64 + "\n")
    good = Settings(api_keys_file=keys, cluster_secret="x" * 32)
    Authenticator.from_settings(good).check()
    assert Authenticator.from_settings(good).is_open("health")
    assert not Authenticator.from_settings(good).is_open("orders")
    keys.write_text("shop-a 0000\n")
    with pytest.raises(ConfigError, match="line 1"):
        Authenticator.from_settings(good).check()
    # The development opt-out: open, but only when asked for.
    opened = Authenticator.from_settings(Settings(api_auth="none"))
    opened.check()
    assert not opened.enabled and opened.is_open("orders")
