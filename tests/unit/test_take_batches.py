"""``faust_glue.take_batches``: Faust's ``take_events`` without its clock, on a real Faust stream
(an in-memory channel; the app is never started, so no broker is needed)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import faust
import pytest

from orderflow import faust_glue


class Batches:
    """A Faust stream over a channel, its batches collected by a task that may be held."""

    def __init__(self, max_events: int, linger: float = 0.0) -> None:
        self.app = faust.App("take-batches", broker="kafka://127.0.0.1:9", autodiscover=False)
        self.app.flow_control.resume()  # (a started app resumes it; this one never starts)
        self.channel: Any = self.app.channel()
        self.stream: Any = self.app.stream(self.channel)
        self.max_events = max_events
        self.linger = linger
        self.batches: list[list[Any]] = []  # the events of each batch
        self.release = asyncio.Event()  # set: each batch is handled at once
        self.release.set()
        self.fail_on: int | None = None  # the batch (0-based) whose handling raises
        self.task: asyncio.Task[None] | None = None

    def values(self) -> list[list[Any]]:
        return [[event.value for event in batch] for batch in self.batches]

    async def _consume(self) -> None:
        async for batch in faust_glue.take_batches(self.stream, self.max_events, self.linger):
            self.batches.append(batch)
            await self.release.wait()
            if self.fail_on == len(self.batches) - 1:
                raise RuntimeError("handling failed")

    async def __aenter__(self) -> Batches:
        self.task = asyncio.create_task(self._consume())
        await until(lambda: self.stream._passive)  # the drainer reads the channel
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.stream.stop()

    async def send(self, *values: Any) -> None:
        for value in values:
            await self.channel.send(value=value)


async def until(check: Callable[[], Any], deadline_s: float = 5.0) -> None:
    """Polls ``check`` until it is true, failing after the deadline."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not check():
        assert loop.time() < end, "condition not reached before the deadline"
        await asyncio.sleep(0.005)


@pytest.fixture
async def batches() -> AsyncIterator[Callable[..., Awaitable[Batches]]]:
    opened: list[Batches] = []

    async def open_(max_events: int, linger: float = 0.0) -> Batches:
        opened.append(await Batches(max_events, linger).__aenter__())
        return opened[-1]

    yield open_
    for each in opened:
        await each.__aexit__()


async def test_a_lone_event_is_a_batch_at_once_without_lingering(batches: Any) -> None:
    taken = await batches(max_events=10)
    await taken.send("a")
    await until(lambda: taken.values() == [["a"]])


async def test_an_idle_stream_arms_no_timer(batches: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # Faust's take_events(n, within=t) re-arms a t-second timer forever, events or not (at the
    # 2 ms we used: 500 wake-ups a second of an idle worker). Waiting here needs no timer.
    taken = await batches(max_events=10)
    await taken.send("a")
    await until(lambda: taken.values() == [["a"]])
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    call_at = loop.call_at

    def counting_call_at(when: float, *args: Any, **kwargs: Any) -> Any:
        armed.append(when)
        return call_at(when, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting_call_at)
    await asyncio.sleep(0.05)  # idle a while: the only timer armed is this sleep's own
    monkeypatch.undo()
    assert len(armed) == 1


async def test_events_arriving_while_a_batch_is_handled_gather_for_the_next_one(
    batches: Any,
) -> None:
    taken = await batches(max_events=10)
    taken.release.clear()  # the first batch is being handled...
    await taken.send("a")
    await until(lambda: len(taken.batches) == 1)
    await taken.send("b", "c", "d")  # ...while these arrive
    await asyncio.sleep(0.02)
    assert taken.values() == [["a"]]
    taken.release.set()
    await until(lambda: taken.values() == [["a"], ["b", "c", "d"]])


async def test_a_batch_never_holds_more_than_max_events(batches: Any) -> None:
    taken = await batches(max_events=3)
    taken.release.clear()
    await taken.send(0)
    await until(lambda: len(taken.batches) == 1)
    sending = asyncio.create_task(taken.send(*range(1, 9)))  # the drainer waits for room
    await asyncio.sleep(0.02)
    taken.release.set()
    await sending
    await until(lambda: sum(map(len, taken.batches)) == 9)
    assert [len(b) for b in taken.batches] == [1, 3, 3, 2]
    assert [v for batch in taken.values() for v in batch] == list(range(9))  # in order


async def test_linger_waits_for_more_events_up_to_its_time(batches: Any) -> None:
    taken = await batches(max_events=10, linger=0.2)
    await taken.send("a")
    await asyncio.sleep(0.02)
    await taken.send("b")
    await until(lambda: taken.values() == [["a", "b"]])


async def test_a_batch_is_acked_once_the_next_one_is_asked_for(batches: Any) -> None:
    taken = await batches(max_events=10)
    taken.release.clear()
    await taken.send("a")
    await until(lambda: len(taken.batches) == 1)
    (event,) = taken.batches[0]
    await asyncio.sleep(0.02)
    assert not event.message.acked  # still being handled
    taken.release.set()
    await until(lambda: event.message.acked)


async def test_a_batch_whose_handling_raised_is_not_acked(batches: Any) -> None:
    # Faust's take_events acks it anyway, in a finally: the offset would be committed past
    # events never handled. Unacked, the consumer reads them again (RewindingConsumer).
    taken = await batches(max_events=10)
    taken.fail_on = 0
    await taken.send("a")
    await until(lambda: taken.task is not None and taken.task.done())
    (event,) = taken.batches[0]
    assert isinstance(taken.task.exception(), RuntimeError) if taken.task else False
    assert not event.message.acked


async def test_max_events_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_events"):
        await faust_glue.take_batches(object(), 0).__anext__()
