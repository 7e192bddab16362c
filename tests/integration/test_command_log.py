"""CommandLog reads a range of a partition straight from the broker, in order, and its end."""

from __future__ import annotations

import asyncio
import dataclasses

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.agents.progress import CommandLog, CommandRecord
from orderflow.tables.scan import order_partition
from orderflow.watch import OrderWatch
from orderflow.wire import encode_event
from tests.fakes import FakeOrderStore, FakePublisher, PassingDeadLetters
from tests.kafka_helpers import topic_with_records
from tests.unit.builders import pending_order, place_command


async def _delete_records_before(bootstrap: str, topic: str, partition: int, offset: int) -> None:
    """Move the partition's log start to ``offset``, as retention does."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_records({TopicPartition(topic, partition): RecordsToDelete(offset)})
    finally:
        await admin.close()


def test_a_range_is_read_in_order_and_the_end_is_known(kafka_bootstrap: str) -> None:
    async def run() -> None:
        topic = await topic_with_records(kafka_bootstrap, "command-log", 30, lambda _: 1, key=b"k")
        log = CommandLog([kafka_bootstrap], topic)
        try:
            assert await log.end(1) == 30
            assert await log.end(0) == 0
            records = await log.read(1, 12, 20)
            assert [r.offset for r in records] == list(range(12, 20))
            assert [r.value for r in records] == [f"v{i}".encode() for i in range(12, 20)]
            # Twice in a row (the consumer is assigned per read): the same answer.
            assert [r.offset for r in await log.read(1, 0, 3)] == [0, 1, 2]
        finally:
            await log.close()

    asyncio.run(run())


def test_the_nudge_knows_a_command_below_the_log_start_is_gone_without_reading_it(
    kafka_bootstrap: str,
) -> None:
    """Retention (here deleteRecords) moved the log start past one order's command: that order
    is nudged without a token at once, the other with the token read from its command."""

    async def run() -> None:
        topic = await topic_with_records(kafka_bootstrap, "command-log", 0, lambda _: 1, key=b"k")
        old, new = (
            next(
                f"ord-{name}-{i}" for i in range(100) if order_partition(f"ord-{name}-{i}", 2) == 1
            )
            for name in ("a", "b")
        )
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for offset in range(30):
                order_id = {5: old, 25: new}.get(offset)
                value = (
                    encode_event(place_command(order_id=order_id, payment_token=f"tok-{offset}"))
                    if order_id
                    else b"filler"
                )
                await producer.send_and_wait(topic, value, key=b"k", partition=1)
        finally:
            await producer.stop()
        await _delete_records_before(kafka_bootstrap, topic, 1, 20)

        log = CommandLog([kafka_bootstrap], topic)
        recorded = _RecordedLog(log)
        rows, sent = FakeOrderStore(), FakePublisher()
        service = OrderService(
            rows,
            sent,
            PassingDeadLetters(),
            OrderWatch(),
            StalledOrders(1.0, partitions=2),
            commands=recorded,
        )
        try:
            assert await log.beginning(1) == 20
            for order_id, offset in ((old, 5), (new, 25)):
                order = dataclasses.replace(
                    pending_order(), order_id=order_id, command_offset=offset
                )
                rows.put(order)
                service.stalled.track(order, 1e10)

            assert await service.nudge_stalled(lambda order_id: True) == 2

            assert recorded.reads == [(25, 26)]  # never a seek below the log start
            tokens = {e.order_id: e.payment_token for e in sent.created()}
            assert tokens == {old: "", new: "tok-25"}
        finally:
            await log.close()

    asyncio.run(run())


class _RecordedLog:
    """A ``CommandLog`` whose range reads are noted (start, stop)."""

    def __init__(self, log: CommandLog) -> None:
        self.log = log
        self.reads: list[tuple[int, int]] = []

    async def beginning(self, partition: int) -> int:
        return await self.log.beginning(partition)

    async def end(self, partition: int) -> int:
        return await self.log.end(partition)

    async def read(self, partition: int, start: int, stop: int) -> list[CommandRecord]:
        self.reads.append((start, stop))
        return await self.log.read(partition, start, stop)


def test_a_range_below_the_log_start_is_read_as_gone_at_once(kafka_bootstrap: str) -> None:
    """A hole the order service reads (``missing_before``) may lie wholly below the log start
    (commands past their retention): a seek there resets to the earliest record, which the range
    never matches, and the read used to wait for its timeout holding the reader's lock."""

    async def scenario() -> None:
        topic = await topic_with_records(kafka_bootstrap, "command-log", 30, lambda _: 1, key=b"k")
        await _delete_records_before(kafka_bootstrap, topic, 1, 20)
        log = CommandLog([kafka_bootstrap], topic)
        log.read_timeout_s = 60.0  # a wait for the timeout would fail the bound below
        try:
            gone = await asyncio.wait_for(log.read(1, 5, 10), timeout=20)
            straddling = await asyncio.wait_for(log.read(1, 15, 25), timeout=20)
        finally:
            await log.close()
        assert gone == []
        assert [r.offset for r in straddling] == [20, 21, 22, 23, 24]

    asyncio.run(scenario())
