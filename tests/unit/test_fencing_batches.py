"""The fence binds a whole batch, refuses while rebalancing, and never loses a re-fetched event.

Review findings 1, 10, 11, 13 (docs: /work/briefs/review-findings.md): driven with a fake clock and
explicit ticks, no threads or sleeps for synchronisation.
"""

from __future__ import annotations

import asyncio

import pytest

from orderflow.fencing import Fence, Fenced


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_events_after_a_revocation_in_the_same_batch_are_refused() -> None:
    # Finding 1: event 3 of a batch awaits a send, the revocation happens meanwhile; events 4.. of
    # the batch must not bind to the new epoch and write a partition that goes to another worker.
    fence = Fence(freeze_after=5, clock=FakeClock())
    fence.settled({3})
    wrote: list[str] = []

    async def revoked_meanwhile() -> None:
        fence.revoked()

    async def later_event() -> None:
        fence.check()
        wrote.append("later")

    async def scenario() -> bool:
        fence.bind()  # the agent binds the batch
        assert await fence.run(3, revoked_meanwhile, b"o1")
        done = await fence.run(3, later_event, b"o2")
        fence.settled({0})  # partition 3 moved away
        await asyncio.wait_for(asyncio.gather(*fence.redoing), 5)
        return done

    assert asyncio.run(scenario()) is False
    assert wrote == []


def test_no_write_while_a_rebalance_is_in_progress() -> None:
    # Finding 1: a batch yielded from Faust's buffer during a rebalance is bound to the new epoch,
    # but the partition may be recovered by another worker before this one settles.
    fence = Fence(freeze_after=5, clock=FakeClock())
    fence.revoked()
    fence.bind()
    with pytest.raises(Fenced):
        fence.check()
    fence.settled({3})
    fence.bind()
    fence.check()


def test_a_batch_bound_during_a_rebalance_is_handled_once_it_settles_with_the_partition() -> None:
    fence = Fence(freeze_after=5, clock=FakeClock())
    fence.revoked()
    wrote: list[str] = []

    async def handle() -> None:
        fence.check()
        wrote.append("wrote")

    async def scenario() -> bool:
        fence.bind()
        done = await fence.run(3, handle, b"o1")
        fence.settled({3})
        await asyncio.wait_for(asyncio.gather(*fence.redoing), 5)
        return done

    assert asyncio.run(scenario()) is False
    assert wrote == ["wrote"]


def test_a_refetched_event_is_not_dropped_while_a_stale_redo_is_pending() -> None:
    # Finding 11: frozen and revoked mid-handler; the partition comes back to this worker and the
    # event is fetched again while the old redo still polls. The old redo decides "moved" (another
    # worker had the partition meanwhile); the re-fetched copy must still be handled.
    clock = FakeClock()
    fence = Fence(freeze_after=5, clock=clock)
    fence.settled({3})
    runs: list[str] = []

    async def first() -> None:
        runs.append("first")
        clock.now += 10  # SIGSTOP ... SIGCONT
        fence.revoked()
        fence.check()

    async def refetched() -> None:
        fence.check()
        runs.append("refetched")

    async def scenario() -> None:
        fence.bind()
        assert await fence.run(3, first, b"o1") is False
        fence.settled({3})  # the partition came back
        fence.bind()  # the next batch, under the new assignment
        await fence.run(3, refetched, b"o1")
        await asyncio.wait_for(asyncio.gather(*fence.redoing), 5)

    asyncio.run(scenario())
    assert runs == ["first", "refetched"]


def test_a_record_of_a_batch_bound_before_a_freeze_and_revocation_is_not_resent() -> None:
    # Finding 10: the consumer of a resumed zombie still lists its partitions; the fence knows the
    # batch's binding is stale and that another worker had the partition meanwhile.
    clock = FakeClock()
    fence = Fence(freeze_after=5, clock=clock)
    fence.settled({3})
    fence.bind()
    assert fence.keeps(3)
    clock.now += 10  # frozen...
    assert not fence.keeps(3)  # ...and until the next assignment, nothing is kept
    fence.revoked()
    assert not fence.keeps(3)
    fence.settled({3})
    assert not fence.keeps(3)  # came back, but B wrote meanwhile: the local value is stale
    fence.bind()
    assert fence.keeps(3)  # a batch of the new assignment


def test_a_record_of_a_batch_that_outlived_a_plain_rebalance_is_resent_if_the_partition_stayed() -> (
    None
):
    fence = Fence(freeze_after=5, clock=FakeClock())
    fence.settled({3, 4})
    fence.bind()
    fence.revoked()
    assert not fence.keeps(3)  # not while rebalancing
    fence.settled({3})
    assert fence.keeps(3)
    assert not fence.keeps(4)


def test_shutdown_cancels_pending_redos() -> None:
    # Finding 13: a redo writing after the local-state guard checked the changelogs would leave a
    # local write the changelog lacks under a clean-stop marker.
    fence = Fence(freeze_after=5, clock=FakeClock())
    fence.settled({3})
    runs: list[str] = []

    async def handle() -> None:
        runs.append("run")
        fence.revoked()
        fence.check()

    async def scenario() -> None:
        fence.bind()
        assert await fence.run(3, handle, b"o1") is False
        assert fence.redoing
        await fence.shutdown()
        assert not fence.redoing
        fence.settled({3})  # would have let the redo run
        await asyncio.sleep(0.3)

    asyncio.run(scenario())
    assert runs == ["run"]
