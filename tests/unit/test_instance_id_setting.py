"""ORDERFLOW_INSTANCE_ID: empty means dynamic membership; anything Kafka would refuse is refused."""

from __future__ import annotations

import pytest

from orderflow.config import ConfigError, Settings


def test_instance_id_is_empty_by_default_meaning_dynamic_membership() -> None:
    assert Settings.from_env({}).instance_id == ""
    assert Settings.from_env({"ORDERFLOW_INSTANCE_ID": ""}).instance_id == ""


@pytest.mark.parametrize("value", ["worker-1", "orderflow-0.eu_west", "a" * 249])
def test_instance_id_is_read_from_the_environment(value: str) -> None:
    assert Settings.from_env({"ORDERFLOW_INSTANCE_ID": value}).instance_id == value


@pytest.mark.parametrize(
    "value",
    ["worker 1", "wörker", "w\t1", "w\n1", "w/1", ".", "..", "a" * 250, " worker-1"],
    ids=["space", "non-ascii", "tab", "newline", "slash", "dot", "dotdot", "too-long", "padded"],
)
def test_an_instance_id_kafka_would_refuse_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="ORDERFLOW_INSTANCE_ID"):
        Settings.from_env({"ORDERFLOW_INSTANCE_ID": value})
