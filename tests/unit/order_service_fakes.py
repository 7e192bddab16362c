"""Stand-ins for what the order service is given (Kafka events, OrderDB, a topic), for unit tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orderflow.agents.progress import CommandRecord
from orderflow.domain.order import Order


@dataclass
class FakeMessage:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass
class FakeEvent:
    message: FakeMessage


class FakeOrders:
    """OrderDB as a dict."""

    def __init__(self) -> None:
        self.rows: dict[str, Order] = {}

    def get(self, order_id: str) -> Order | None:
        return self.rows.get(order_id)

    def put(self, order: Order) -> None:
        self.rows[order.order_id] = order


class SilentTopic:
    """A topic whose sends go nowhere."""

    async def send(self, key: bytes, value: bytes) -> None:
        return None


class PassingDeadLetters:
    """A dead-letter guard that lets every handler run (and raise)."""

    async def guard(self, event: Any, handle: Any) -> None:
        await handle(event)


def event_of(record: CommandRecord) -> FakeEvent:
    """The Faust event that would carry ``record``."""
    return FakeEvent(
        FakeMessage(
            record.topic, record.partition, record.offset, record.key or b"", record.value or b""
        )
    )


class CommandPartition:
    """Partition 5 of the command topic as Kafka holds it; ``reads``: the ranges read."""

    def __init__(self, records: list[CommandRecord]) -> None:
        self.records = {r.offset: r for r in records}
        self.reads: list[tuple[int, int, int]] = []

    async def beginning(self, partition: int) -> int:
        return min(self.records, default=0)

    async def end(self, partition: int) -> int:
        return max(self.records, default=-1) + 1

    async def read(self, partition: int, start: int, stop: int) -> list[CommandRecord]:
        self.reads.append((partition, start, stop))
        return [self.records[o] for o in range(start, stop)]
