"""CommandProgress: a worker says "no such order" only once it has read every command before."""

from __future__ import annotations

import asyncio
from typing import Any

from orderflow.agents.progress import CommandProgress
from orderflow.tables.scan import order_partition

_ORDER = "ord_" + "a" * 32
_PARTITIONS = 4
_PARTITION = order_partition(_ORDER, _PARTITIONS)


class _Log:
    """The command log: ``end`` answers with ``end_offset`` (a coroutine function)."""

    def __init__(self, end_offset: Any) -> None:
        self.end = end_offset

    async def read(self, partition: int, start: int, stop: int) -> list[Any]:
        raise AssertionError("not read here")


def _progress(committed: int = 0, end: int = 10, broker_fails: bool = False) -> CommandProgress:
    async def end_offset(partition: int) -> int:
        assert partition == _PARTITION
        if broker_fails:
            raise ConnectionError("broker away")
        return end

    return CommandProgress(_PARTITIONS, lambda partition: committed, _Log(end_offset))


async def test_caught_up_at_once_when_the_committed_offset_reaches_the_end() -> None:
    assert await _progress(committed=10, end=10).caught_up(_ORDER, timeout=1)


async def test_not_caught_up_while_a_command_before_the_end_is_unhandled() -> None:
    progress = _progress(committed=3, end=10)
    for offset in range(3, 9):  # offset 9 never handled
        progress.handled(_PARTITION, offset)
    assert progress.read_through(_PARTITION) == 9
    assert not await progress.caught_up(_ORDER, timeout=0.3)


async def test_caught_up_wakes_when_the_last_command_is_handled() -> None:
    progress = _progress(committed=0, end=5)
    waiting = asyncio.ensure_future(progress.caught_up(_ORDER, timeout=5))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    progress.handled(_PARTITION, 4)
    assert await asyncio.wait_for(waiting, timeout=2)


async def test_a_broker_that_does_not_answer_is_not_caught_up() -> None:
    assert not await _progress(broker_fails=True).caught_up(_ORDER, timeout=1)


async def test_handled_offsets_only_grow() -> None:
    progress = _progress()
    progress.handled(1, 7)
    progress.handled(1, 2)  # a record read again after a rewind
    assert progress.snapshot() == {1: 8}


async def test_a_flood_of_questions_shares_a_few_offset_requests() -> None:
    calls = 0

    async def end_offset(partition: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)  # a broker round trip
        return 0

    progress = CommandProgress(_PARTITIONS, lambda partition: 0, _Log(end_offset))
    answers = await asyncio.gather(*(progress.caught_up(_ORDER, timeout=5) for _ in range(200)))
    assert all(answers)
    assert calls <= 2  # the first request, and one sent after the questions asked meanwhile


async def test_a_question_asked_after_a_request_was_sent_waits_for_a_fresh_one() -> None:
    ends = iter([3, 5])
    calls = 0

    async def end_offset(partition: int) -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return next(ends)

    progress = CommandProgress(_PARTITIONS, lambda partition: 3, _Log(end_offset))
    early = asyncio.ensure_future(progress.caught_up(_ORDER, timeout=5))
    await asyncio.sleep(0.01)  # the first request is in flight: a write may land meanwhile
    late = asyncio.ensure_future(progress.caught_up(_ORDER, timeout=0.5))
    assert await early
    assert not await late  # it saw end 5, from the request sent after it asked
    assert calls == 2
