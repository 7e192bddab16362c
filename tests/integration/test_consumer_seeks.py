"""Seeks of the read-again checks on a real consumer and broker (regressions of chaos run s4).

- A partition revoked meanwhile is let go: ``read_undelivered_again``, on a timer, chose its
  partitions on the app's loop, then the consumer thread sought them after a revocation had
  taken one away; aiokafka raised ``IllegalStateError: No current assignment for partition
  payment.failed[1]`` and the timer's exception crashed the worker.
- A seek back brings the hole's records to the agent although it lands while Faust delivers a
  batch fetched before it (``order-commands[2]`` was sought back to 353 three times in vain).
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.consumer import Consumer as FaustConsumer
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from faust.types import TP

from orderflow.consumer import CommitGuardThread
from tests.kafka_helpers import stop_consumer, topic_with_records
from tests.unit.builders import unstarted_flow


def _alternate(i: int) -> int:
    return i % 2


def _thread(faust_consumer: Any) -> Any:
    # The thread's seek reads only these attributes (no Faust app or group needed).
    thread: Any = object.__new__(CommitGuardThread)
    thread.consumer = faust_consumer
    thread.app = SimpleNamespace(conf=SimpleNamespace(broker_request_timeout=30.0))
    thread.log = SimpleNamespace(dev=logging.getLogger("test").debug)  # (mode's logger)
    return thread


def test_a_seek_of_a_partition_revoked_meanwhile_seeks_only_what_is_still_assigned(
    kafka_bootstrap: str,
) -> None:
    async def run() -> None:
        topic = await topic_with_records(kafka_bootstrap, "seeks", 20, _alternate)
        kept = TopicPartition(topic, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([kept])  # partition 1 was revoked after the partitions were chosen
            faust_consumer = SimpleNamespace(_read_offset=defaultdict(lambda: None))
            thread = _thread(faust_consumer)
            await thread._seek_wait(consumer, {TP(topic, 0): 4, TP(topic, 1): 3})
            assert await consumer.position(kept) == 4
            assert faust_consumer._read_offset[TP(topic, 0)] == 4
            assert TP(topic, 1) not in faust_consumer._read_offset
            records = await consumer.getmany(kept, timeout_ms=5000)
            assert [r.offset for r in records[kept]][:1] == [4]
        finally:
            await stop_consumer(consumer)

    asyncio.run(run())


def test_a_seek_back_during_a_batch_fetched_before_it_brings_the_hole_to_the_agent(
    kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Faust's delivery loop and getmany on our consumer (built by Faust as in a worker), fed
    # by a real aiokafka consumer (assigned, no group); the seek back goes through our thread's
    # seek on that consumer. Records 0..19 were "lost on the way"; reading starts at 20.
    async def run() -> list[int]:
        topic = await topic_with_records(
            kafka_bootstrap, "seeks", 120, _alternate
        )  # 60 per partition
        tp, kafka_tp = TP(topic, 0), TopicPartition(topic, 0)
        kafka = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, enable_auto_commit=False)
        await kafka.start()
        try:
            kafka.assign([kafka_tp])
            kafka.seek(kafka_tp, 20)
            consumer: Any = unstarted_flow(tmp_path).app.consumer
            thread = _thread(consumer)
            delivered: list[int] = []
            fetcher: Any = SimpleNamespace(_stopped=asyncio.Event())

            async def fetch(self: Any, active_partitions: Any, timeout: float) -> Any:
                if 20 in delivered and 59 in delivered[delivered.index(20) + 1 :]:
                    fetcher._stopped.set()  # read to the end after the seek back: done
                    return {}
                records = await kafka.getmany(kafka_tp, timeout_ms=5000, max_records=15)
                return {tp: records.get(kafka_tp, [])}

            async def seek_wait(positions: dict[Any, int]) -> None:
                await thread._seek_wait(kafka, positions)

            async def callback(message: Any) -> None:
                delivered.append(message.offset)
                if delivered == [20]:  # the hole check's seek back lands in this batch
                    await consumer._seek_back(tp, 0)

            monkeypatch.setattr(AIOKafkaDriverConsumer, "_getmany", fetch)
            monkeypatch.setattr(consumer, "seek_wait", seek_wait)
            monkeypatch.setattr(consumer, "assignment", lambda: {tp})
            monkeypatch.setattr(consumer, "highwater", lambda tp: 60)
            consumer._set_active_tps({tp})
            consumer.resume_flow()
            consumer.callback = callback
            consumer._read_offset[tp] = 19
            await asyncio.wait_for(FaustConsumer._drain_messages(consumer, fetcher), 60)
            return delivered
        finally:
            await asyncio.sleep(0.05)
            await kafka.stop()

    delivered = asyncio.run(run())
    assert delivered[:15] == list(range(20, 35))  # the batch fetched before the seek back
    # Then everything from the seek's offset: the hole 0..19 first.
    assert delivered[15:] == list(range(0, 60))
