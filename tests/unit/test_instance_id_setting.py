"""ORDERFLOW_INSTANCE_ID: empty means dynamic membership; anything Kafka would refuse is refused."""

from __future__ import annotations

import pytest

from orderflow.config import ConfigError, Settings


def test_instance_id_is_empty_by_default_meaning_dynamic_membership() -> None:
    assert Settings.from_env({}, worker=False).instance_id == ""
    assert Settings.from_env({"ORDERFLOW_INSTANCE_ID": ""}, worker=False).instance_id == ""


@pytest.mark.parametrize("value", ["worker-1", "orderflow-0.eu_west", "a" * 240])
def test_instance_id_is_read_from_the_environment(value: str) -> None:
    assert Settings.from_env({"ORDERFLOW_INSTANCE_ID": value}, worker=False).instance_id == value


@pytest.mark.parametrize(
    "value",
    ["worker 1", "wörker", "w\t1", "w\n1", "w/1", ".", "..", "a" * 241, " worker-1"],
    ids=["space", "non-ascii", "tab", "newline", "slash", "dot", "dotdot", "too-long", "padded"],
)
def test_an_instance_id_kafka_would_refuse_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(ConfigError, match="ORDERFLOW_INSTANCE_ID"):
        Settings.from_env({"ORDERFLOW_INSTANCE_ID": value}, worker=False)


def test_the_group_instance_id_is_the_instance_id_and_a_fingerprint_of_the_url() -> None:
    def group_id(env: dict[str, str]) -> str | None:
        return Settings.from_env(env, worker=False).group_instance_id

    one = {"ORDERFLOW_INSTANCE_ID": "w1", "ORDERFLOW_CANONICAL_URL": "http://w1.svc:6066"}
    assert group_id({}) is None  # dynamic membership
    assert group_id(one) == group_id(dict(one))  # stable across restarts
    assert str(group_id(one)).startswith("w1.")
    # Moved to another URL: another member (Faust's assignment names the URL).
    assert group_id(one | {"ORDERFLOW_CANONICAL_URL": "http://w1.svc:6067"}) != group_id(one)
    longest = Settings.from_env(
        {"ORDERFLOW_INSTANCE_ID": "a" * 240}, worker=False
    ).group_instance_id
    assert longest is not None and len(longest) <= 249  # Kafka's limit


def test_leave_group_finds_the_members_of_one_instance_id_only() -> None:
    from orderflow.membership import static_members

    members = [
        "w1.0a1b2c3d-5517cafb-9bc5-4882-bcb3-b1e1c9d6da26",  # w1 at one URL
        "w1.ffff0000-8d7b298b-1e0d-46ab-9f41-0844e7482bac",  # w1 at another (session not over)
        "w10.0a1b2c3d-44709041-0520-492d-855b-a1693276f3c9",  # another worker
        "w1-6c10dc11-f1b5-43d6-96f3-f3c4fbcca84e",  # not ours (no URL fingerprint)
        "faust-0.15.3-2b0ba0d5-0f0e-4c8a-9d7e-37e58f6f6a8c",  # a dynamic member
    ]
    assert static_members(members, "w1") == sorted(members[:2])
    assert static_members(members, "w") == []
