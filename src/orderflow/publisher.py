"""The services' ``Publisher`` over Kafka: each event to the topic its type goes to."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from orderflow.ports import OutboundEvent
from orderflow.topics import EVENT_TOPICS, PAYMENT_RECONCILE
from orderflow.wire import encode_event, encode_reconcile

__all__ = ["TopicPublisher"]


class _Sender(Protocol):
    async def send(self, *, key: bytes, value: bytes) -> Any: ...


def _allow() -> None:
    return None


class TopicPublisher:
    """Sends through ``topics`` (topic name -> sender); ``before_send`` may refuse (the fence)."""

    def __init__(
        self, topics: Mapping[str, _Sender], before_send: Callable[[], None] = _allow
    ) -> None:
        self.topics = topics
        self.before_send = before_send

    async def publish(self, event: OutboundEvent) -> None:
        self.before_send()
        topic = self.topics[EVENT_TOPICS[event.event_type]]  # unknown type: a bug (KeyError)
        await topic.send(key=event.order_id.encode(), value=encode_event(event))

    async def request_reconciliation(self, order_id: str) -> None:
        self.before_send()
        await self.topics[PAYMENT_RECONCILE].send(
            key=order_id.encode(), value=encode_reconcile(order_id)
        )
