"""A commit still in flight at a revocation does not tell the next assignment where reading starts.

Chaos run f2 (seed 4): worker w2's commit of ``order-commands[2]`` at 31 took 1.1 s ("Timer commit
is overlapping") and returned after the revocation at 12:33:20.418. Faust records the committed
offsets once the commit returns, so it re-set the offset (31) that the revocation had just made
it forget, and the rule "no commit between an assignment and the seek that tells where reading
starts" did not apply: at 21.532, before any assignment, w2 already knew a start for its revoked
partitions ("order.created[2]: not committing past offset 22"), and at 22.203 it committed 33
over records acked after the revocation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers.aiokafka import Consumer as FaustConsumer
from faust.types import TP

from tests.unit.builders import bare_consumer

COMMANDS = TP("orderflow.order-commands", 2)


async def test_a_commit_returning_after_a_revocation_leaves_the_start_unknown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consumer = bare_consumer({COMMANDS: 25})
    answered = asyncio.Event()

    async def faust_commit_offsets(self: Any, offsets: Any, start_new_transaction: bool) -> bool:
        await answered.wait()  # the broker's answer takes its time
        self._committed_offset.update(offsets)  # as Faust does once the commit returns
        return True

    async def faust_revoked(self: Any, revoked: set[Any]) -> None:
        for tp in revoked:  # as Faust does at a revocation
            self._acked.pop(tp, None)
            self._committed_offset.pop(tp, None)

    monkeypatch.setattr(FaustConsumer, "_commit_offsets", faust_commit_offsets)
    monkeypatch.setattr(FaustConsumer, "on_partitions_revoked", faust_revoked)
    commit = asyncio.ensure_future(consumer._commit_offsets({COMMANDS: 31}, True))
    await asyncio.sleep(0)
    await consumer.on_partitions_revoked({COMMANDS})
    answered.set()
    assert await commit
    # Records of the old assignment acked after the revocation (32 never reached OrderDB), then
    # the partition comes back: nothing is committed before the seek says where reading starts.
    consumer._acked[COMMANDS].extend([31, 32])
    assert consumer._new_offset(COMMANDS) is None
    assert consumer.commits_unplaced == 1


async def test_a_commit_between_revocations_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    consumer = bare_consumer({COMMANDS: 25})

    async def faust_commit_offsets(self: Any, offsets: Any, start_new_transaction: bool) -> bool:
        self._committed_offset.update(offsets)
        return True

    monkeypatch.setattr(FaustConsumer, "_commit_offsets", faust_commit_offsets)
    assert await consumer._commit_offsets({COMMANDS: 31}, True)
    assert consumer._committed_offset[COMMANDS] == 31


async def test_offsets_acked_before_the_seek_are_not_committed_before_they_are_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Records of the old assignment, acked after the revocation without being handled (a batch
    # that began while the partition was away drops its events), must not let the commit pass
    # them once the seek has said where reading starts: it reads them again, to be acked again.
    consumer = bare_consumer({COMMANDS: 25})
    consumer._committed_offset.clear()  # forgotten at the revocation
    consumer.app = SimpleNamespace(
        consumer_generation_id=2, topics=SimpleNamespace(acking_topics={COMMANDS.topic})
    )
    consumer.assignment = lambda: {COMMANDS}
    consumer._acked[COMMANDS].extend([31, 32])
    consumer._acked_index[COMMANDS].update([31, 32])

    async def seek_to_committed(self: Any) -> dict[TP, int | None]:
        return {COMMANDS: 31}

    monkeypatch.setattr(FaustConsumer, "seek_to_committed", seek_to_committed)
    await consumer.perform_seek()
    assert consumer._new_offset(COMMANDS) is None  # 31 and 32 are read again first
    consumer._acked[COMMANDS].extend([31, 32])  # read again and handled
    consumer._acked_index[COMMANDS].update([31, 32])
    assert consumer._new_offset(COMMANDS) == 33


@dataclass(eq=False)
class Fetched:
    """What Faust's ack reads of a fetched record (``faust.types.Message``)."""

    offset: int
    generation_id: int
    acked: bool = False
    tp: TP = COMMANDS
    topic: str = COMMANDS.topic


def test_a_record_of_an_earlier_generation_acked_now_is_not_counted() -> None:
    # Its batch began while the partition was away (its events dropped unhandled) and ended
    # after the next assignment: the ack must not count, the seek reads the record again.
    consumer = bare_consumer({COMMANDS: 25})
    consumer.app = SimpleNamespace(
        consumer_generation_id=3, topics=SimpleNamespace(acks_enabled_for=lambda topic: True)
    )
    stale, fresh = Fetched(offset=32, generation_id=2), Fetched(offset=31, generation_id=3)
    consumer._unacked_messages, consumer._n_acked, consumer._waiting_for_ack = set(), 0, None
    consumer._unacked_messages.update([stale, fresh])
    assert consumer.ack(fresh)
    assert not consumer.ack(stale)
    assert stale.acked  # (not acked twice)
    assert consumer._acked[COMMANDS] == [31]
    assert not consumer._unacked_messages
