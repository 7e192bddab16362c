"""Never commit past a record that did not reach Kafka: each agent batch awaits what it produced.

Faust flushes its producer before it commits offsets, but the flush does not raise when a record
failed (the broker was away longer than ``producer_request_timeout``): the failure is only set on
the record's future and logged. Table changelog writes (``send_soon``) and ``topic.send`` alike.
So an event whose PaymentDB write or ``payment.completed`` was lost could be committed past, and
the money would be in the ledger but not in Kafka.

``Deliveries`` collects the futures of every record produced while a batch is handled (tables of
``DeliveringTable`` and topics wrapped in ``DeliveringTopic``), in a context variable that the
batch's tasks share. ``settle`` awaits them all, once per batch, and sends failed records again
(a changelog entry with the key's *current* value, so an older value never lands after a newer
one; an output record as it was: its consumers are idempotent) until they are delivered. Only
then does the agent take the next batch, so the batch's offsets are acked (and committed) after
its records are in Kafka. While the broker is away the agent waits here: ``/health`` shows it.

A record the broker refuses for good (too large, not authorized, invalid topic: the dead-letter
sender's ``is_retriable``) is given up, not retried: no retry can succeed, and waiting on it would
stall every partition of the agent for ever. It is logged with its coordinates and sizes (never its
bytes) and counted in ``UNDELIVERABLE`` (``/health``); a changelog key given up stays failed in
the ledger, so no clean-stop marker is written and the next start rebuilds from the changelog.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.streams import current_event

from orderflow.agents.dead_letters import is_retriable
from orderflow.domain.backoff import Backoff
from orderflow.faust_glue import bind_event

__all__ = [
    "CHANGELOG",
    "UNDELIVERABLE",
    "ChangelogLedger",
    "Deliveries",
    "DeliveringTable",
    "DeliveringTopic",
    "run_batch",
    "run_delivered",
    "sequentially",
]

log = logging.getLogger(__name__)

_current: ContextVar[Deliveries | None] = ContextVar("orderflow_deliveries", default=None)


@dataclass
class _Record:
    """One produced record: its delivery future and how to send it again."""

    future: Awaitable[Any]
    partition: int | None
    resend: Callable[[], Awaitable[None]]
    # Coordinates and sizes for the logs (never the bytes: payment tokens). Built only when a
    # record fails: formatting it for each of the ~7 records of every order cost ~3 us a record.
    where: Callable[[], str] = lambda: "?"


class _Undeliverable:
    """Records given up in this process because the broker refuses them for good."""

    def __init__(self) -> None:
        self.count = 0


#: This process's count of given-up records (``/health``: ``undeliverable_records``).
UNDELIVERABLE = _Undeliverable()


def _failed(exc: BaseException) -> asyncio.Future[Any]:
    """A delivery that already failed: a resend that raised is a record still to deliver."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    future.set_exception(exc)
    return future


def _size(data: Any) -> int:
    return len(data) if isinstance(data, bytes | str) else 0


def _source(event: Any) -> str:
    if event is None:
        return "no event"
    message = event.message
    return f"{message.topic}[{message.partition}]@{message.offset}"


@dataclass
class Deliveries:
    """The records one batch produced, until each is delivered."""

    pending: list[_Record] = field(default_factory=list)
    failures: int = 0  # records that had to be sent again (for logs and tests)
    undeliverable: int = 0  # records given up: the broker refuses them for good

    def add(self, record: _Record) -> None:
        self.pending.append(record)

    async def settle(
        self, keep: Callable[[int | None], bool], backoff: float = 0.2, cap: float = 5.0
    ) -> None:
        """Await every record; send failed ones again until delivered.

        ``keep(partition)`` says whether this worker still owns the partition: a record of a
        partition that moved is not sent again (the new owner re-runs the events, whose offsets
        were never committed here, and a stale changelog value must not land after its writes).
        """
        policy = Backoff(base=backoff, cap=cap)
        rounds = 0
        while self.pending:
            pending, self.pending = self.pending, []
            results = await asyncio.gather(*(r.future for r in pending), return_exceptions=True)
            failed = [
                (r, res)
                for r, res in zip(pending, results, strict=True)
                if isinstance(res, BaseException)
            ]
            if not failed:
                return
            errors = {repr(res) for _, res in failed}
            self.failures += len(failed)
            retry = self._to_retry(failed, keep)
            log.error(
                "%d record(s) not delivered (%s); sending %d again in %.1fs",
                len(failed),
                ", ".join(sorted(errors)[:3]),
                len(retry),
                policy.delay(rounds),
            )
            if not retry:
                return
            await asyncio.sleep(policy.delay(rounds))
            rounds += 1
            await self._resend(retry)

    def _to_retry(
        self, failed: list[tuple[_Record, BaseException]], keep: Callable[[int | None], bool]
    ) -> list[_Record]:
        """The failed records to send again: retriable, of a partition still ours."""
        retry = []
        kept: dict[int | None, bool] = {}  # one ownership check per partition, not per record
        for record, exc in failed:
            if not is_retriable(exc):
                self._give_up(record, exc)
                continue
            if record.partition not in kept:
                kept[record.partition] = keep(record.partition)
            if kept[record.partition]:
                retry.append(record)
        return retry

    async def _resend(self, retry: list[_Record]) -> None:
        token = _current.set(self)  # the new sends are awaited in the next round
        try:
            for record in retry:
                try:
                    await record.resend()
                except Exception as exc:
                    # Still a failed record: the next round classifies it (retry or give up).
                    self.add(_Record(_failed(exc), record.partition, record.resend, record.where))
        finally:
            _current.reset(token)

    def _give_up(self, record: _Record, exc: BaseException) -> None:
        self.undeliverable += 1
        UNDELIVERABLE.count += 1
        log.error("record given up, the broker refuses it for good (%r): %s", exc, record.where())


class ChangelogLedger:
    """Every changelog record this process sent: those not known delivered, and failed keys.

    A key whose record failed stays failed until a record sent after it, for the same key,
    is delivered (``Deliveries.settle`` resends the key's current value). ``unsettled`` is None
    only when the local stores hold nothing the changelogs lack: the clean-stop test of
    ``orderflow.tables.local_state``.
    """

    def __init__(self) -> None:
        self.pending = 0
        self._seq = 0
        self._failed: dict[tuple[str, Any], int] = {}  # (table, key) -> seq of its last failure

    def sent(self, table: str, key: Any, future: asyncio.Future[Any]) -> None:
        self._seq += 1
        seq, self.pending = self._seq, self.pending + 1
        future.add_done_callback(lambda done: self._done(table, key, seq, done))

    def _done(self, table: str, key: Any, seq: int, future: asyncio.Future[Any]) -> None:
        self.pending -= 1
        if future.cancelled() or future.exception() is not None:
            self._failed[table, key] = max(seq, self._failed.get((table, key), 0))
        elif self._failed.get((table, key), seq) < seq:
            del self._failed[table, key]  # a later record of the key made it

    @property
    def failed(self) -> int:
        return len(self._failed)

    def unsettled(self) -> str | None:
        """Why the changelogs may lack a local write, or None."""
        if not self.pending and not self._failed:
            return None
        return (
            f"{self.pending} changelog record(s) not known delivered, {self.failed} key(s) failed"
        )


#: This process's ledger (one worker per process).
CHANGELOG = ChangelogLedger()


def _track(record: _Record) -> None:
    deliveries = _current.get()
    if deliveries is not None:
        deliveries.add(record)


class DeliveringTable(faust.Table[Any, Any]):
    """A Faust table whose changelog writes are awaited by the batch that made them."""

    #: The delivery of the last changelog record sent (``JsonTable.put_durable`` awaits it).
    last_changelog: Any = None

    def send_changelog(
        self,
        partition: int | None,
        key: Any,
        value: Any,
        key_serializer: Any = None,
        value_serializer: Any = None,
    ) -> Any:
        future = super().send_changelog(partition, key, value, key_serializer, value_serializer)
        CHANGELOG.sent(self.name, key, future)
        self.last_changelog = future
        final_partition = future.message.partition
        event = current_event()

        async def resend() -> None:
            if event is not None:  # the store reads the current event's partition
                bind_event(event)
            # The key's current value: a later write of the same key may have been delivered.
            current = self.data.get(key)
            if current is not None:
                self.send_changelog(final_partition, key, current, key_serializer, value_serializer)

        def where() -> str:
            return (
                f"changelog {self.name}[{final_partition}] of {_source(event)}, key {_size(key)} "
                f"bytes, value {_size(value)} bytes"
            )

        _track(_Record(future, final_partition, resend, where))
        return future


class DeliveringTopic:
    """Wraps a Faust topic: ``send`` returns at once, and the batch awaits the delivery."""

    def __init__(self, topic: Any) -> None:
        self.topic = topic

    async def send(self, *, key: bytes, value: bytes, headers: Any = None) -> Any:
        future = await self.topic.send(key=key, value=value, headers=headers)
        event = current_event()
        partition = event.message.partition if event is not None else None

        async def resend() -> None:
            await self.send(key=key, value=value, headers=headers)

        def where() -> str:
            topic = ",".join(getattr(self.topic, "topics", None) or ("?",))
            return (
                f"{topic} for {_source(event)}, key {_size(key)} bytes, value {_size(value)} "
                f"bytes, headers {len(headers or ())}"
            )

        _track(_Record(future, partition, resend, where))
        return future

    def __getattr__(self, name: str) -> Any:
        return getattr(self.topic, name)


async def run_batch(
    events: Sequence[Any],
    handle: Callable[[Sequence[Any]], Awaitable[None]],
    still_assigned: Callable[[Any], bool],
) -> Deliveries:
    """Handle ``events``, then wait until everything they produced is in Kafka."""
    deliveries = Deliveries()
    token = _current.set(deliveries)
    try:
        await handle(events)
    finally:
        _current.reset(token)

    def keep(partition: int | None) -> bool:
        return partition is None or any(
            e.message.partition == partition and still_assigned(e) for e in events
        )

    await deliveries.settle(keep)
    return deliveries


async def run_delivered(
    handle: Callable[[], Awaitable[None]], keep: Callable[[int | None], bool]
) -> Deliveries:
    """Run one handler outside an agent batch (a fenced event handled again later) and wait, as a
    batch would, until what it produced is in Kafka."""
    deliveries = Deliveries()
    token = _current.set(deliveries)
    try:
        await handle()
    finally:
        _current.reset(token)
    await deliveries.settle(keep)
    return deliveries


def sequentially(
    handle: Callable[[Any], Awaitable[None]],
) -> Callable[[Sequence[Any]], Awaitable[None]]:
    """Handle a batch one event after the other, each bound as the current event (table writes)."""

    async def run(events: Sequence[Any]) -> None:
        for event in events:
            bind_event(event)
            await handle(event)

    return run
