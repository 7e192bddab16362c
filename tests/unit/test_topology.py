"""The topology read in topics.py is the one the worker runs: who consumes what, where outcomes go,
and the app built only when Faust asks for it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orderflow.app import Orderflow
from orderflow.domain.events import (
    OrderCancelled,
    OrderCreated,
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    RefundFailed,
    RefundRequested,
)
from orderflow.domain.payment import Decline
from orderflow.fencing import Fence, Fenced
from orderflow.publisher import TopicPublisher
from orderflow.topics import (
    EVENT_TOPICS,
    INPUT_TOPICS,
    ORDER_AGENT,
    ORDER_CANCELLED,
    ORDER_CREATED,
    PAYMENT_AGENT,
    PAYMENT_COMPLETED,
    PAYMENT_FAILED,
    PAYMENT_RECONCILE,
    PAYMENT_REFUNDED,
    REFUND_FAILED,
    REFUND_REQUESTED,
    TOKEN_TOPICS,
    TOPICS,
    all_topic_names,
    sources,
)


def test_every_input_topic_has_one_consuming_agent_and_the_token_topics_are_marked() -> None:
    agents = (ORDER_AGENT, PAYMENT_AGENT)
    assert sorted(t for a in agents for t in sources(a)) == sorted(INPUT_TOPICS)
    assert {t.name for t in TOPICS if t.carries_tokens} == TOKEN_TOPICS
    assert len(set(all_topic_names())) == len(TOPICS)


def test_each_published_event_type_maps_to_its_topic() -> None:
    assert {
        OrderCreated.event_type: ORDER_CREATED,
        PaymentCompleted.event_type: PAYMENT_COMPLETED,
        PaymentFailed.event_type: PAYMENT_FAILED,
        OrderCancelled.event_type: ORDER_CANCELLED,
        RefundRequested.event_type: REFUND_REQUESTED,
        PaymentRefunded.event_type: PAYMENT_REFUNDED,
        RefundFailed.event_type: REFUND_FAILED,
    } == EVENT_TOPICS


def test_the_worker_s_agents_subscribe_to_what_topics_py_says(flow: Orderflow) -> None:
    subscribed = {name: tuple(agent.channel.topics) for name, agent in flow.app.agents.items()}
    assert subscribed == {ORDER_AGENT: sources(ORDER_AGENT), PAYMENT_AGENT: sources(PAYMENT_AGENT)}


class _Topic:
    def __init__(self, name: str, sent: list[tuple[str, bytes]]) -> None:
        self.name, self.sent = name, sent

    async def send(self, *, key: bytes, value: bytes) -> None:
        self.sent.append((self.name, key))


def test_the_publisher_sends_each_event_to_its_topic_and_nothing_the_fence_refuses() -> None:
    sent: list[tuple[str, bytes]] = []
    names = (PAYMENT_COMPLETED, PAYMENT_FAILED, PAYMENT_RECONCILE)
    outputs: dict[str, Any] = {name: _Topic(name, sent) for name in names}
    fence = Fence(freeze_after=60.0)
    publisher = TopicPublisher(outputs, before_send=fence.check)
    at = "2026-11-30T08:00:00Z"

    async def run() -> None:
        fence.bind()  # as an agent's batch does
        await publisher.publish(PaymentCompleted("o-1", 100, "USD", "ch_1", at))
        await publisher.publish(
            PaymentFailed("o-2", 100, "USD", Decline("card_declined", "", False), at)
        )
        await publisher.request_reconciliation("o-3")
        fence.revoked()  # the partitions are gone: nothing more may be written
        with pytest.raises(Fenced):
            await publisher.publish(PaymentCompleted("o-4", 100, "USD", "ch_4", at))

    asyncio.run(run())
    assert sent == [
        (PAYMENT_COMPLETED, b"o-1"),
        (PAYMENT_FAILED, b"o-2"),
        (PAYMENT_RECONCILE, b"o-3"),
    ]


def test_importing_the_app_module_builds_nothing_until_app_is_asked_for(tmp_path: Path) -> None:
    code = (
        "import orderflow.app as m\n"
        "assert 'app' not in vars(m) and 'orderflow' not in vars(m), 'built at import'\n"
        "assert m.app is m.orderflow.app\n"
        "print('lazy', type(m.app).__name__)\n"
    )
    env = {
        "ORDERFLOW_GATEWAY": "sandbox",
        "ORDERFLOW_DATA_DIR": str(tmp_path),
        "ORDERFLOW_STORE": "memory",
        "PATH": "/usr/bin:/bin",
    }
    child = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert "lazy FencedApp" in child.stdout
