"""A batch is done only when what it produced is delivered; failed records are sent again."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import faust
import pytest
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from faust.exceptions import ProducerSendError
from faust.streams import current_event

from orderflow import delivery
from orderflow.delivery import (
    UNDELIVERABLE,
    ChangelogLedger,
    DeliveringTable,
    DeliveringTopic,
    run_batch,
    run_delivered,
)
from orderflow.faust_glue import bind_event


class Message:
    def __init__(self, partition: int) -> None:
        self.topic, self.partition, self.offset = "order.created", partition, 0


class Event:
    def __init__(self, partition: int) -> None:
        self.message = Message(partition)


class FlakyTopic:
    """Fails the delivery of the first ``failures`` records, then delivers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[bytes] = []

    async def send(self, *, key: bytes, value: bytes, headers: Any = None) -> Any:
        self.sent.append(value)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.failures > 0:
            self.failures -= 1
            future.set_exception(KafkaTimeoutError())
        else:
            future.set_result(None)
        return future


def _publisher(topic: DeliveringTopic, value: bytes) -> Any:
    async def handle(events: Sequence[Any]) -> None:
        for event in events:
            bind_event(event)
            await topic.send(key=b"o1", value=value)

    return handle


async def test_a_record_that_failed_is_sent_again_until_delivered_before_the_batch_ends() -> None:
    raw = FlakyTopic(failures=2)
    deliveries = await run_batch([Event(3)], _publisher(DeliveringTopic(raw), b"v"), lambda e: True)
    assert raw.sent == [b"v", b"v", b"v"]
    assert deliveries.failures == 2 and deliveries.pending == []


async def test_a_delivered_batch_sends_nothing_again() -> None:
    raw = FlakyTopic(failures=0)
    deliveries = await run_batch([Event(3)], _publisher(DeliveringTopic(raw), b"v"), lambda e: True)
    assert raw.sent == [b"v"] and deliveries.failures == 0


async def test_a_record_of_a_partition_that_moved_away_is_not_sent_again() -> None:
    raw = FlakyTopic(failures=1)
    deliveries = await run_batch(
        [Event(3)], _publisher(DeliveringTopic(raw), b"v"), lambda e: False
    )
    assert raw.sent == [b"v"]  # the new owner handles the event again
    assert deliveries.failures == 1


class CountedTopic(FlakyTopic):
    """Counts reads of ``topics``, which only a failed record's log line needs."""

    def __init__(self) -> None:
        super().__init__(failures=0)
        self.described = 0

    @property
    def topics(self) -> tuple[str, ...]:
        self.described += 1
        return ("payment.completed",)


async def test_a_delivered_record_is_never_described_for_the_logs() -> None:
    # Issue 11: formatting each record's coordinates for a log line that only a failure writes
    # cost ~3 us a record, 7 records an order.
    raw = CountedTopic()
    deliveries = await run_batch(
        [Event(3), Event(4)], _publisher(DeliveringTopic(raw), b"v"), lambda e: True
    )
    assert raw.sent == [b"v", b"v"] and deliveries.failures == 0
    assert raw.described == 0


async def test_sends_outside_a_batch_are_not_awaited_by_anyone() -> None:
    raw = FlakyTopic(failures=1)
    future = await DeliveringTopic(raw).send(key=b"o1", value=b"timer")
    assert raw.sent == [b"timer"] and future.exception() is not None


class ScriptedTopic:
    """Each send follows the script: "ok" delivers, "fail" fails the delivery, an exception
    is raised by ``send`` itself (Faust's producer refusing to enqueue)."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.sent: list[bytes] = []

    async def send(self, *, key: bytes, value: bytes, headers: Any = None) -> Any:
        step = self.script.pop(0) if self.script else "ok"
        if isinstance(step, BaseException):
            raise step
        self.sent.append(value)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if step == "fail":
            future.set_exception(KafkaTimeoutError())
        else:
            future.set_result(None)
        return future


async def test_a_resend_that_raises_is_a_failed_record_tried_again_never_an_escape() -> None:
    # Escaping settle, the exception would make Faust ack the whole batch, undelivered records
    # and all (finding 3).
    raw = ScriptedTopic("fail", ProducerSendError("producer away"), "ok")
    deliveries = await asyncio.wait_for(
        run_batch([Event(3)], _publisher(DeliveringTopic(raw), b"v"), lambda e: True), 10
    )
    assert raw.sent == [b"v", b"v"]
    assert deliveries.failures == 2 and deliveries.pending == []


async def test_a_record_the_broker_refuses_for_good_is_given_up_logged_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    raw = FlakyTopic(failures=0)

    async def too_large(*, key: bytes, value: bytes, headers: Any = None) -> Any:
        raw.sent.append(value)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_exception(MessageSizeTooLargeError())
        return future

    raw.send = too_large  # type: ignore[method-assign]
    before = UNDELIVERABLE.count
    deliveries = await asyncio.wait_for(
        run_batch([Event(3)], _publisher(DeliveringTopic(raw), b"v" * 10), lambda e: True), 10
    )
    assert raw.sent == [b"v" * 10]  # never sent again: it cannot succeed
    assert deliveries.undeliverable == 1 and UNDELIVERABLE.count == before + 1
    assert "order.created[3]" in caplog.text and "value 10 bytes" in caplog.text


async def test_a_resend_refused_for_good_is_given_up_too() -> None:
    refused = ProducerSendError("enqueue")
    refused.__cause__ = MessageSizeTooLargeError()
    raw = ScriptedTopic("fail", refused, "ok")
    deliveries = await asyncio.wait_for(
        run_batch([Event(3)], _publisher(DeliveringTopic(raw), b"v"), lambda e: True), 10
    )
    assert raw.sent == [b"v"] and deliveries.undeliverable == 1


async def test_run_delivered_sends_a_failed_record_again_until_delivered() -> None:
    raw = FlakyTopic(failures=1)
    topic = DeliveringTopic(raw)

    async def handle() -> None:
        await topic.send(key=b"o1", value=b"redo")

    deliveries = await run_delivered(handle, lambda partition: True)
    assert raw.sent == [b"redo", b"redo"] and deliveries.failures == 1


async def test_run_delivered_leaves_a_partition_that_moved_away() -> None:
    raw = FlakyTopic(failures=1)
    topic = DeliveringTopic(raw)
    event = Event(5)

    async def handle() -> None:
        bind_event(event)
        await topic.send(key=b"o1", value=b"redo")

    kept: list[int | None] = []

    def keep(partition: int | None) -> bool:
        kept.append(partition)
        return False

    deliveries = await run_delivered(handle, keep)
    assert raw.sent == [b"redo"] and kept == [5] and deliveries.failures == 1


class FakeChangelog:
    """Stands in for Faust's ``Collection.send_changelog``: records sends, fails some."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.sent: list[tuple[int | None, bytes, bytes]] = []
        self.bound: list[Any] = []

    def __call__(
        self,
        table: Any,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> Any:
        self.sent.append((partition, key, value))
        self.bound.append(current_event())
        future: Any = asyncio.get_running_loop().create_future()
        future.message = type("Msg", (), {"partition": partition})()
        if self.fail > 0:
            self.fail -= 1
            future.set_exception(KafkaTimeoutError())
        else:
            future.set_result(None)
        return future


@pytest.fixture
def ledger(monkeypatch: pytest.MonkeyPatch) -> ChangelogLedger:
    fresh = ChangelogLedger()
    monkeypatch.setattr(delivery, "CHANGELOG", fresh)
    return fresh


def _table(monkeypatch: pytest.MonkeyPatch, changelog: FakeChangelog) -> DeliveringTable:
    monkeypatch.setattr(faust.Table, "send_changelog", lambda self, *args: changelog(self, *args))
    app = faust.App("delivery-unit", store="memory://")
    return DeliveringTable(app, name="T", key_type=bytes, value_type=bytes, partitions=8)


async def test_a_failed_changelog_record_is_resent_with_the_keys_current_value(
    monkeypatch: pytest.MonkeyPatch, ledger: ChangelogLedger
) -> None:
    changelog = FakeChangelog(fail=1)
    table = _table(monkeypatch, changelog)
    event = Event(2)

    async def handle(events: Sequence[Any]) -> None:
        bind_event(event)
        table.data[b"o1"] = b"old"
        table.send_changelog(2, b"o1", b"old")
        table.data[b"o1"] = b"new"  # a later write of the key, its own record delivered
        table.send_changelog(2, b"o1", b"new")

    deliveries = await run_batch([event], handle, lambda e: True)
    # The resend carries the current value, so "old" never lands after "new".
    assert changelog.sent == [(2, b"o1", b"old"), (2, b"o1", b"new"), (2, b"o1", b"new")]
    assert changelog.bound[-1] is event  # the resend writes to the event's partition
    assert deliveries.failures == 1
    assert ledger.unsettled() is None  # the key's later record made it
    assert table.last_changelog is not None and table.last_changelog.done()


async def test_the_ledger_keeps_a_key_failed_while_its_record_is_not_resent(
    monkeypatch: pytest.MonkeyPatch, ledger: ChangelogLedger
) -> None:
    changelog = FakeChangelog(fail=1)
    table = _table(monkeypatch, changelog)

    async def handle(events: Sequence[Any]) -> None:
        bind_event(events[0])
        table.data[b"o1"] = b"v"
        table.send_changelog(4, b"o1", b"v")

    await run_batch([Event(4)], handle, lambda e: False)  # the partition moved away
    assert changelog.sent == [(4, b"o1", b"v")]
    assert ledger.failed == 1 and ledger.unsettled() is not None  # no clean-stop marker
