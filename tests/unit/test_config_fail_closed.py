"""Configuration fails closed: a worker refuses to start on settings that cannot work (issue 9 §1).

Each refusal is a ``ConfigError`` naming the variables, and never echoes a secret.
"""

from __future__ import annotations

import pytest

from orderflow.config import ConfigError, Settings, cluster_problems

_HTTP = {
    "ORDERFLOW_GATEWAY": "http",
    "ORDERFLOW_GATEWAY_URL": "https://gw.example:8443/base",
    "ORDERFLOW_GATEWAY_API_KEY": "sk_live_secret",
}


def test_a_worker_without_a_gateway_choice_refuses_to_start() -> None:
    # Today this silently embeds the sandbox, which approves tok_visa without taking money.
    with pytest.raises(ConfigError, match="ORDERFLOW_GATEWAY"):
        Settings.from_env({})


@pytest.mark.parametrize("value", ["Sandbox", "stripe", " ", "https://gw.example"])
def test_an_unknown_gateway_choice_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="ORDERFLOW_GATEWAY"):
        Settings.from_env({"ORDERFLOW_GATEWAY": value})


def test_the_sandbox_is_used_only_when_asked_for() -> None:
    settings = Settings.from_env({"ORDERFLOW_GATEWAY": "sandbox"})
    assert settings.gateway == "sandbox"
    assert settings.gateway_description == {"gateway": "sandbox"}


def test_the_sandbox_choice_with_a_gateway_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="ORDERFLOW_GATEWAY_URL"):
        Settings.from_env({"ORDERFLOW_GATEWAY": "sandbox", "ORDERFLOW_GATEWAY_URL": "http://x:1"})


def test_http_gateway_needs_a_url_and_an_api_key() -> None:
    with pytest.raises(ConfigError, match="ORDERFLOW_GATEWAY_URL"):
        Settings.from_env({**_HTTP, "ORDERFLOW_GATEWAY_URL": ""})
    with pytest.raises(ConfigError, match="ORDERFLOW_GATEWAY_API_KEY"):
        Settings.from_env({**_HTTP, "ORDERFLOW_GATEWAY_API_KEY": ""})
    settings = Settings.from_env(_HTTP)
    assert (settings.gateway, settings.gateway_api_key) == ("http", "sk_live_secret")


def test_the_gateway_description_shows_scheme_host_and_port_only() -> None:
    settings = Settings.from_env(_HTTP)
    assert settings.gateway_description == {
        "gateway": "http",
        "gateway_url": "https://gw.example:8443",
    }
    assert "sk_live_secret" not in repr(settings)


@pytest.mark.parametrize(
    ("url", "secret"),
    [
        ("https://user:pw-secret@gw.example/", "pw-secret"),
        ("https://sk_secret@gw.example/", "sk_secret"),
        ("https://gw.example/?api_key=sk_secret", "sk_secret"),
        ("https://gw.example/#sk_secret", "sk_secret"),
    ],
)
def test_a_gateway_url_carrying_credentials_is_refused_without_echoing_them(
    url: str, secret: str
) -> None:
    with pytest.raises(ConfigError, match="ORDERFLOW_GATEWAY_URL") as info:
        Settings.from_env({**_HTTP, "ORDERFLOW_GATEWAY_URL": url})
    assert secret not in str(info.value)


@pytest.mark.parametrize("url", ["ftp://gw.example", "gw.example:443", "https://", "http://h:x"])
def test_a_malformed_gateway_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="ORDERFLOW_GATEWAY_URL"):
        Settings.from_env({**_HTTP, "ORDERFLOW_GATEWAY_URL": url})


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_a_wildcard_web_host_without_a_canonical_url_is_refused(host: str) -> None:
    # Today it silently becomes http://127.0.0.1:PORT: every worker believes it owns every order.
    env = {"ORDERFLOW_GATEWAY": "sandbox", "ORDERFLOW_WEB_HOST": host}
    with pytest.raises(ConfigError, match="ORDERFLOW_CANONICAL_URL") as info:
        Settings.from_env(env)
    assert "ORDERFLOW_WEB_HOST" in str(info.value)
    canonical = "http://w1.internal:6066"
    assert Settings.from_env({**env, "ORDERFLOW_CANONICAL_URL": canonical}).canonical_url == (
        canonical
    )


def test_debugging_commands_need_no_gateway_choice() -> None:
    # replay / trace / leave-group read Kafka only.
    assert Settings.from_env({}, worker=False).kafka_bootstrap == "127.0.0.1:9092"


def test_log_format_is_text_or_json() -> None:
    base = {"ORDERFLOW_GATEWAY": "sandbox"}
    assert Settings.from_env(base).log_format == "text"
    assert Settings.from_env({**base, "ORDERFLOW_LOG_FORMAT": "json"}).log_format == "json"
    with pytest.raises(ConfigError, match="ORDERFLOW_LOG_FORMAT"):
        Settings.from_env({**base, "ORDERFLOW_LOG_FORMAT": "xml"})


def test_replication_factor_above_the_broker_count_is_a_problem() -> None:
    problems = cluster_problems(3, [1], {1: 1})
    assert len(problems) == 1 and "ORDERFLOW_REPLICATION_FACTOR=3" in problems[0]
    assert cluster_problems(3, [1, 2, 3], {1: 2, 2: 2, 3: 2}) == []


def test_min_insync_replicas_above_the_replication_factor_is_a_problem() -> None:
    problems = cluster_problems(1, [1, 2, 3], {1: 1, 2: 2, 3: 1})
    assert len(problems) == 1
    assert "min.insync.replicas" in problems[0] and "broker 2: 2" in problems[0]


@pytest.mark.parametrize(
    "url", ["http://gw.example:8080", "http://10.0.0.5", "http://[fe80::1]:80", "http://127.x"]
)
def test_a_plain_http_gateway_url_to_another_host_is_refused(url: str) -> None:
    # Regression: http:// to any host sent the API key and the card tokens in clear.
    with pytest.raises(ConfigError, match=r"ORDERFLOW_GATEWAY_URL.*https://"):
        Settings.from_env({**_HTTP, "ORDERFLOW_GATEWAY_URL": url})


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8099", "http://127.3.4.5", "http://[::1]:8099", "http://localhost:1"]
)
def test_a_plain_http_gateway_url_on_loopback_is_accepted(url: str) -> None:
    assert Settings.from_env({**_HTTP, "ORDERFLOW_GATEWAY_URL": url}).gateway_url == url


@pytest.mark.parametrize("host", ["0", "::0", "0:0:0:0:0:0:0:0", "[::]", "0.0", "0x0", "000.0.0.0"])
def test_every_spelling_of_a_wildcard_web_host_needs_a_canonical_url(host: str) -> None:
    # Regression: only "0.0.0.0", "::" and "[::]" were recognised.
    with pytest.raises(ConfigError, match="ORDERFLOW_CANONICAL_URL"):
        Settings.from_env({"ORDERFLOW_GATEWAY": "sandbox", "ORDERFLOW_WEB_HOST": host})


@pytest.mark.parametrize("host", ["localhost", "w1.internal", "10.0.0.7", "::1"])
def test_a_web_host_that_is_not_a_wildcard_needs_no_canonical_url(host: str) -> None:
    settings = Settings.from_env({"ORDERFLOW_GATEWAY": "sandbox", "ORDERFLOW_WEB_HOST": host})
    assert settings.canonical_url.endswith(":6066")


_DAY = 86400


@pytest.mark.parametrize(
    "name", ["ORDERFLOW_TOKEN_TOPIC_RETENTION", "ORDERFLOW_DEAD_LETTER_RETENTION"]
)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "0.001", "3600", str(_DAY - 1)])
def test_a_retention_below_a_day_or_not_finite_is_refused(name: str, value: str) -> None:
    # Regression: nan/inf crashed topic creation; retention.ms=0 deleted commands before they
    # were read (orders answered 202, lost).
    with pytest.raises(ConfigError, match=name) as info:
        Settings.from_env({"ORDERFLOW_GATEWAY": "sandbox", name: value})
    assert "86400" in str(info.value)


def test_the_dead_letters_have_their_own_retention_of_30_days_by_default() -> None:
    base = {"ORDERFLOW_GATEWAY": "sandbox"}
    settings = Settings.from_env(base)
    assert (settings.token_retention_s, settings.dead_letter_retention_s) == (7 * _DAY, 30 * _DAY)
    settings = Settings.from_env(
        {
            **base,
            "ORDERFLOW_TOKEN_TOPIC_RETENTION": str(_DAY),
            "ORDERFLOW_DEAD_LETTER_RETENTION": str(2 * _DAY),
        }
    )
    assert (settings.token_retention_s, settings.dead_letter_retention_s) == (_DAY, 2 * _DAY)


def test_a_broker_down_does_not_refuse_a_restart_when_the_topics_exist() -> None:
    # Regression: RF=3 with one of three brokers down refused every restarting worker (Kafka's
    # metadata lists live brokers only): a rolling restart in a broker outage stopped service.
    existing = {"orders.commands": 3, "order.created": 3}
    assert cluster_problems(3, [1, 2], {1: 2, 2: 2}, existing) == []
    # Not created yet: creation would fail, so it is refused.
    problems = cluster_problems(3, [1, 2], {1: 2, 2: 2}, {})
    assert len(problems) == 1 and "ORDERFLOW_REPLICATION_FACTOR=3" in problems[0]


def test_existing_topics_with_fewer_replicas_than_configured_are_a_problem() -> None:
    problems = cluster_problems(3, [1, 2, 3], {1: 2, 2: 2, 3: 2}, {"order.created": 1})
    assert len(problems) == 1
    assert "order.created" in problems[0] and "ORDERFLOW_REPLICATION_FACTOR=3" in problems[0]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999"])
def test_a_duration_that_is_not_a_finite_number_is_refused(value: str) -> None:
    # float() takes them: a nan timeout compares false with everything (never times out), an
    # infinite one never ends.
    with pytest.raises(ConfigError, match="ORDERFLOW_GATEWAY_TIMEOUT"):
        Settings.from_env({"ORDERFLOW_GATEWAY": "sandbox", "ORDERFLOW_GATEWAY_TIMEOUT": value})


def test_the_event_loop_is_uvloop_unless_asyncio_is_asked_for() -> None:
    assert Settings.from_env({"ORDERFLOW_GATEWAY": "sandbox"}).event_loop == "uvloop"
    chosen = {"ORDERFLOW_GATEWAY": "sandbox", "ORDERFLOW_EVENT_LOOP": "asyncio"}
    assert Settings.from_env(chosen).event_loop == "asyncio"


@pytest.mark.parametrize("value", ["UVLOOP", "tokio", " "])
def test_an_unknown_event_loop_is_refused(value: str) -> None:
    with pytest.raises(ConfigError, match="ORDERFLOW_EVENT_LOOP"):
        Settings.from_env({"ORDERFLOW_GATEWAY": "sandbox", "ORDERFLOW_EVENT_LOOP": value})
