"""The fence: in-flight work stops writing once its assignment ended, or the process was frozen."""

from __future__ import annotations

import asyncio

import pytest

from orderflow.fencing import Fence, Fenced


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fence(clock: FakeClock, freeze_after: float = 5.0) -> Fence:
    return Fence(freeze_after=freeze_after, clock=clock)


async def _in_task(fence: Fence, between: list[object]) -> None:
    """Bind, let the test act (revoke, freeze), then write: the handler's shape."""
    fence.bind()
    for step in between:
        assert callable(step)
        step()
    fence.check()


def test_work_bound_before_a_revocation_cannot_write_after_it() -> None:
    clock = FakeClock()
    fence = _fence(clock)
    with pytest.raises(Fenced):
        asyncio.run(_in_task(fence, [fence.revoked]))
    assert fence.refused == 1


def test_work_bound_after_the_revocation_writes() -> None:
    clock = FakeClock()
    fence = _fence(clock)
    fence.revoked()
    fence.settled({0})
    asyncio.run(_in_task(fence, []))  # no Fenced


def test_unbound_writes_are_never_fenced() -> None:
    # Timers (nudges, reconcile requests) and web views are not tied to one partition's batch.
    clock = FakeClock()
    fence = _fence(clock)
    fence.revoked()
    clock.now += 60  # even after a freeze
    fence.check()


def test_a_write_after_a_freeze_longer_than_the_limit_is_refused_even_before_the_ticker_ran() -> (
    None
):
    clock = FakeClock()
    fence = _fence(clock, freeze_after=5)

    def freeze() -> None:
        clock.now += 6  # SIGSTOP ... SIGCONT: no tick in between

    with pytest.raises(Fenced):
        asyncio.run(_in_task(fence, [freeze]))
    assert fence.frozen and fence.freezes == 1


def test_a_freeze_seen_by_the_ticker_first_still_fences_the_in_flight_write() -> None:
    clock = FakeClock()
    fence = _fence(clock, freeze_after=5)

    def freeze_then_tick() -> None:
        clock.now += 6
        fence.tick()  # the ticker thread ran first after SIGCONT: the gap is seen there

    with pytest.raises(Fenced):
        asyncio.run(_in_task(fence, [freeze_then_tick]))


def test_a_short_pause_is_not_a_freeze() -> None:
    clock = FakeClock()
    fence = _fence(clock, freeze_after=5)

    def pause() -> None:
        clock.now += 4
        fence.tick()
        clock.now += 4  # two ticks 4 s apart: never 5 s without a tick

    asyncio.run(_in_task(fence, [pause]))
    assert fence.freezes == 0


def test_new_work_waits_after_a_freeze_until_the_next_assignment() -> None:
    clock = FakeClock()
    fence = _fence(clock, freeze_after=5)
    clock.now += 10
    fence.tick()
    fence.revoked()  # the rebalance that the freeze caused has started

    async def scenario() -> bool:
        waiter = asyncio.ensure_future(fence.wait_ready(poll=0.001))
        await asyncio.sleep(0.01)
        blocked = not waiter.done()
        fence.settled({0})
        await asyncio.wait_for(waiter, 5)
        return blocked

    assert asyncio.run(scenario())
    asyncio.run(_in_task(fence, []))  # bound after the new assignment: writes


def test_a_freeze_without_any_rebalance_is_released_after_a_while() -> None:
    # The broker did not throw us out after all: no revocation comes, work must not stall forever.
    clock = FakeClock()
    fence = _fence(clock, freeze_after=5)
    clock.now += 6
    fence.tick()
    assert fence.frozen
    for _ in range(int(fence.release_after) + 2):  # the ticker keeps ticking meanwhile
        clock.now += 1
        fence.tick()
    asyncio.run(asyncio.wait_for(fence.wait_ready(poll=0.001), 5))
    assert not fence.frozen


def test_a_blocked_loop_is_not_a_freeze_while_the_ticker_ticks() -> None:
    # The ticker is a thread: it keeps ticking while the event loop is blocked (a slow handler),
    # so the loop's next write sees a recent tick, not a freeze. Its ticks driven by hand here.
    clock = FakeClock()
    fence = _fence(clock, freeze_after=0.5)
    fence.tick_interval = 0.02
    fence.settled({0})
    fence.bind()
    for _ in range(50):  # the loop is blocked for 1 s; the thread ticks every 20 ms
        clock.now += fence.tick_interval
        fence.tick()
    fence.check()
    assert fence.freezes == 0


def _run_with_rebalance(fence: Fence, clock: FakeClock, after: set[int], freeze: bool) -> list[str]:
    """A handler fenced mid-flight by a rebalance that leaves ``after`` here; returns its steps."""
    steps: list[str] = []

    async def handle() -> None:
        steps.append("start")
        if len(steps) == 1:  # the first run: the rebalance happens while it awaits the gateway
            if freeze:
                clock.now += 10
            fence.revoked()
            asyncio.get_running_loop().call_later(0.01, fence.settled, after)
        fence.check()
        steps.append("wrote")

    async def scenario() -> None:
        done = await fence.run(3, handle)
        steps.append("done" if done else "refused")  # the agent goes on at once
        await asyncio.wait_for(asyncio.gather(*fence.redoing), 5)

    asyncio.run(scenario())
    return steps


def test_a_fenced_event_is_handled_again_when_its_partition_stayed_here() -> None:
    # Faust acks the batch's events when it ends: dropping it would lose the event.
    clock = FakeClock()
    steps = _run_with_rebalance(Fence(freeze_after=5, clock=clock), clock, {3}, freeze=False)
    assert steps == ["start", "refused", "start", "wrote"]


def test_a_fenced_event_is_left_to_the_new_owner_when_its_partition_moved() -> None:
    clock = FakeClock()
    steps = _run_with_rebalance(Fence(freeze_after=5, clock=clock), clock, {0, 1}, freeze=False)
    assert steps == ["start", "refused"]


def test_after_a_freeze_in_flight_work_is_never_redone_even_if_the_partition_comes_back() -> None:
    # Another worker owned it meanwhile: what this one had in flight is stale.
    clock = FakeClock()
    steps = _run_with_rebalance(Fence(freeze_after=5, clock=clock), clock, {3}, freeze=True)
    assert steps == ["start", "refused"]


def test_after_a_false_alarm_freeze_the_event_is_handled_again() -> None:
    # Frozen a bit longer than the limit, but the broker did not throw us out: no revocation.
    clock = FakeClock()
    fence = Fence(freeze_after=5, clock=clock)
    fence.settled({3})
    steps: list[str] = []

    async def handle() -> None:
        steps.append("start")
        if len(steps) == 1:
            clock.now += 6
            fence.tick()  # seen as a freeze...
            for _ in range(int(fence.release_after) + 2):  # ...then no rebalance comes
                clock.now += 1
                fence.tick()
        fence.check()
        steps.append("wrote")

    async def scenario() -> bool:
        done = await fence.run(3, handle)
        await asyncio.wait_for(asyncio.gather(*fence.redoing), 5)
        return done

    assert asyncio.run(scenario()) is False
    assert steps == ["start", "start", "wrote"]


def test_while_an_order_waits_for_its_redo_its_other_events_run_after_it() -> None:
    # Two handlers of one order at once (the redo and a redelivered copy) would both write.
    clock = FakeClock()
    fence = Fence(freeze_after=5, clock=clock)
    fence.settled({3})
    runs: list[str] = []

    async def first() -> None:
        runs.append("first")
        if len(runs) == 1:
            fence.revoked()
            fence.check()

    async def second() -> None:
        runs.append("second")

    async def scenario() -> None:
        assert await fence.run(3, first, b"o1") is False
        assert await fence.run(3, second, b"o1") is False  # the redo is pending: queued after it
        fence.settled({3})
        await asyncio.wait_for(asyncio.gather(*fence.redoing), 5)

    asyncio.run(scenario())
    assert runs == ["first", "first", "second"]
