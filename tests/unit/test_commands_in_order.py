"""The order service handles a partition's commands in offset order, whatever Faust delivers.

A chaos run saw records 45.. of a command partition reach the order agent before 36..44 after a
rebalance (36..44 came back only with the read-again of the hole, 16 s later). With POSTs
accepted durably by any worker, two PlaceOrders of one Idempotency-Key can both be in Kafka
before the owner reads either: the one at 45 (another body, 202'd during the move) was stored,
and the first, at 36, was refused as a reused key. The client of the first had its order placed
with the other body.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.agents.progress import CommandProgress
from orderflow.domain.order import Order
from orderflow.records import encode_event
from orderflow.topics import ORDER_COMMANDS
from orderflow.watch import OrderWatch
from tests.unit.builders import place_command


@dataclass
class _Message:
    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes


@dataclass
class _Event:
    message: _Message


class _Orders:
    def __init__(self) -> None:
        self.rows: dict[str, Order] = {}

    def get(self, order_id: str) -> Order | None:
        return self.rows.get(order_id)

    def put(self, order: Order) -> None:
        self.rows[order.order_id] = order


class _Topic:
    async def send(self, key: bytes, value: bytes) -> None:
        return None


class _DeadLetters:
    async def guard(self, event: Any, handle: Any) -> None:
        await handle(event)


def _command_event(offset: int, fingerprint: str) -> _Event:
    command = place_command(order_id="ord-1", fingerprint=fingerprint, request_id=f"r-{offset}")
    return _Event(_Message(ORDER_COMMANDS, 5, offset, b"ord-1", encode_event(command)))


def _service(committed: int | None) -> tuple[OrderService, _Orders, list[tuple[int, int, int]]]:
    handed_back: list[tuple[int, int, int]] = []

    async def no_end(partition: int) -> int:
        raise AssertionError("not asked here")

    progress = CommandProgress(
        8, lambda partition: committed, no_end,
        lambda partition, offset, resume: handed_back.append((partition, offset, resume)),
    )  # fmt: skip
    orders = _Orders()
    service = OrderService(orders, _Topic(), _DeadLetters(), OrderWatch(),  # type: ignore[arg-type]
                           StalledOrders(30.0), progress=progress)  # fmt: skip
    return service, orders, handed_back


async def test_a_command_ahead_of_a_hole_is_handed_back_and_the_first_one_wins() -> None:
    service, orders, handed_back = _service(committed=36)
    await service.handle(_command_event(45, "fp-other-body"))  # delivered first, out of order
    assert orders.get("ord-1") is None
    assert handed_back == [(5, 45, 36)]  # read again from 36
    for offset in range(36, 46):  # the partition read again, in order
        fingerprint = "fp-first-body" if offset == 36 else "fp-other-body"
        await service.handle(_command_event(offset, fingerprint))
    stored = orders.get("ord-1")
    assert stored is not None and stored.fingerprint == "fp-first-body"
    assert handed_back == [(5, 45, 36)]  # nothing else handed back


async def test_commands_read_again_after_a_rewind_are_handled_as_duplicates() -> None:
    service, orders, handed_back = _service(committed=36)
    for offset in (36, 37, 38):
        await service.handle(_command_event(offset, "fp-first-body"))
    await service.handle(_command_event(37, "fp-other-body"))  # re-read: below what was handled
    assert handed_back == []
    stored = orders.get("ord-1")
    assert stored is not None and stored.fingerprint == "fp-first-body"


async def test_with_nothing_known_of_the_partition_every_command_is_handled() -> None:
    service, orders, handed_back = _service(committed=None)
    await service.handle(_command_event(45, "fp-other-body"))
    assert handed_back == [] and orders.get("ord-1") is not None
