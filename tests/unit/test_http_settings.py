"""The long-poll caps are settings with sane defaults, read from ORDERFLOW_* variables only."""

from __future__ import annotations

import pytest

from orderflow.config import ConfigError, Settings


def test_long_poll_caps_have_defaults() -> None:
    settings = Settings.from_env({}, worker=False)
    assert (settings.max_long_polls, settings.max_long_polls_per_client) == (256, 32)


def test_long_poll_caps_are_read_from_the_environment() -> None:
    settings = Settings.from_env(
        {"ORDERFLOW_MAX_LONG_POLLS": "10", "ORDERFLOW_MAX_LONG_POLLS_PER_CLIENT": "3"}, worker=False
    )
    assert (settings.max_long_polls, settings.max_long_polls_per_client) == (10, 3)


@pytest.mark.parametrize(
    "name", ["ORDERFLOW_MAX_LONG_POLLS", "ORDERFLOW_MAX_LONG_POLLS_PER_CLIENT"]
)
def test_a_cap_below_one_is_refused_naming_the_variable(name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: "0"}, worker=False)
