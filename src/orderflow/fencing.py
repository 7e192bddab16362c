"""Fencing: work started under a partition assignment stops writing once that assignment ends.

Revocation does not wait for in-flight work (``stream_wait_empty=False``: a slow gateway call must
not stall a rebalance), so a batch can still be awaiting the gateway when its partition moves. If
it then wrote PaymentDB or published, its writes would land after the new owner's: two writers of
one order. Every write of a handler therefore checks, right before it happens, that no revocation
happened since its batch started (the *epoch* the agent bound the batch to: binding each event
instead would let the events after a revocation write under the new epoch), and that no
rebalance is in progress.

The zombie is the sharper case: a process frozen (SIGSTOP, a VM pause) longer than the session
timeout has been thrown out of the group, but when it resumes nothing has told it yet; its
consumer still lists the partitions. A ticker *thread* (it keeps running while the event loop is
busy, so a slow loop is not mistaken for a freeze) records the time every ``tick_interval``; a gap
longer than ``freeze_after`` between ticks, or between the last tick and a write, means the whole
process was frozen: every partition counts as lost until the next assignment completes.

A refused handler is not simply dropped: Faust acks its event when the batch ends, so if the
partition stayed with this worker (the eager protocol revokes every partition at each rebalance)
the event would be lost. ``run`` then waits (in the background) for the rebalance to settle and
handles the event again from the start when the partition is still here (handlers are idempotent: the table decides, and
the gateway key makes a repeated charge return the first one); otherwise the new owner has it.
Faust acks the event with its batch all the same, so ``run`` also holds the event's offset
(``hold``: the consumer commits nothing past it) until the redo has ended; else the worker could
commit past it before the redo finds the partition gone, and the new owner would never read it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Awaitable, Callable

from orderflow.delivery import run_delivered

__all__ = ["Fence", "Fenced", "Hold"]

# Called when an event's handler is left to run later: holds the event's offset uncommitted;
# returns the release, called once the redo has ended (``RewindingConsumer.defer``).
Hold = Callable[[], Callable[[], None]]

log = logging.getLogger(__name__)


class Fenced(BaseException):
    """A write was refused: the partition may belong to another worker now.

    A ``BaseException``, like ``asyncio.CancelledError``: no handler's ``except Exception`` may turn
    it into a dead letter or a retry. The handler's caller catches it and drops the event; the
    partition's owner handles it from the committed offset.
    """


class Fence:
    """The assignment epoch, and the freeze detector; one per worker."""

    def __init__(
        self,
        freeze_after: float,
        tick_interval: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.freeze_after = freeze_after
        self.tick_interval = tick_interval
        # A freeze that no rebalance followed was shorter than the broker's view of the session:
        # after this long without a revocation, work goes on (else a false alarm stalls forever).
        self.release_after = 2 * freeze_after
        self.clock = clock
        self.epoch = 0
        self.rebalancing = False
        self.owned: set[int] = set()
        self.frozen = False
        self.freezes = 0  # how many freezes were detected (logs and tests)
        self.refused = 0  # how many writes were refused
        self.redoing: set[asyncio.Future[None]] = set()  # refused handlers waiting to run again
        self._redo_by_key: dict[bytes, asyncio.Future[None]] = {}
        self._frozen_at = 0.0
        self._revoked_since_freeze = False
        self._last_tick = clock()
        self._lock = threading.Lock()
        # (epoch, freezes) when the task was bound
        self._bound: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
            f"orderflow-fence-{id(self)}", default=None
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the freeze detector -------------------------------------------------------------------

    def start(self) -> None:
        """Start the ticker thread (idempotent)."""
        if self._thread is None:
            self._last_tick = self.clock()
            self._thread = threading.Thread(target=self._run, name="orderflow-fence", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_interval):
            self.tick()

    def tick(self) -> None:
        """Record that the process is running; a long gap since the last tick was a freeze."""
        with self._lock:
            now = self.clock()
            gap = now - self._last_tick
            self._last_tick = now
            if gap > self.freeze_after:
                self._freeze(gap, now)

    def _detect(self) -> None:
        # Called from the loop: the ticker thread may not have run yet since the process resumed.
        with self._lock:
            now = self.clock()
            gap = now - self._last_tick
            if gap > self.freeze_after:
                self._last_tick = now
                self._freeze(gap, now)

    def _freeze(self, gap: float, now: float) -> None:
        self.frozen = True
        self.freezes += 1  # bound work carries the count: it can no longer write
        self._frozen_at = now
        self._revoked_since_freeze = False
        log.warning(
            "the process was frozen for %.1fs (longer than %.1fs): every partition counts as "
            "lost until the next assignment",
            gap,
            self.freeze_after,
        )

    def _is_frozen(self) -> bool:
        self._detect()
        if (
            self.frozen
            and not self._revoked_since_freeze
            and self.clock() - self._frozen_at > self.release_after
        ):
            log.info("no rebalance followed the freeze: the partitions were not lost")
            self.frozen = False
        return self.frozen

    # -- the assignment ------------------------------------------------------------------------

    def revoked(self) -> None:
        """Partitions were revoked: work started before now may no longer write."""
        with self._lock:
            self.epoch += 1
            self.rebalancing = True
            self._revoked_since_freeze = True

    def settled(self, partitions: set[int]) -> None:
        """A new assignment is in place (tables recovered): new work may write again."""
        with self._lock:
            self.owned = set(partitions)
            self.rebalancing = False
            self.frozen = False

    # -- handlers ------------------------------------------------------------------------------

    async def wait_ready(self, poll: float = 0.1) -> None:
        """Wait (without blocking the loop or a rebalance) while the process counts as frozen."""
        # Polled, not an asyncio.Event: the ticker thread sets the state, and the release after
        # ``release_after`` is a matter of time passing.
        while self._is_frozen():  # noqa: ASYNC110
            await asyncio.sleep(poll)

    def bind(self) -> None:
        """Tie the writes of this task (and of tasks it starts) to the current epoch.

        The agents bind once per batch, before they filter it by assignment.
        """
        self._bound.set((self.epoch, self.freezes))

    def check(self) -> None:
        """Raise ``Fenced`` unless this task's epoch is still current; call before each write.

        Refused too while a rebalance is in progress: another worker may already be recovering
        the partition (the redo writes once this one has settled with it). Writes not bound to an
        epoch (timers, the web views) are not fenced: they are not tied to one partition's work
        and are idempotent for the owner.
        """
        bound = self._bound.get()
        if bound is None:
            return
        frozen = self._is_frozen()
        if frozen or self.rebalancing or bound != (self.epoch, self.freezes):
            self.refused += 1
            raise Fenced(
                f"bound to epoch {bound[0]}/freeze {bound[1]}, now {self.epoch}/"
                f"{self.freezes}, frozen={frozen}, rebalancing={self.rebalancing}"
            )

    def keeps(self, partition: int) -> bool:
        """Whether this task may send a failed record of ``partition`` again (``settle``'s keep).

        The consumer's assignment is not enough: a process resuming from a freeze still lists
        partitions that another worker has written since. Not while rebalancing or frozen.
        """
        bound = self._bound.get()
        if bound is None:
            return True
        if self.rebalancing or self._is_frozen():
            return False
        return self._kept(partition, bound)

    def _kept(self, partition: int, bound: tuple[int, int]) -> bool:
        # Here now, and no other worker can have had it since ``bound``: either no freeze, or a
        # freeze that no revocation followed (the broker had not thrown us out).
        return partition in self.owned and (bound[1] == self.freezes or bound[0] == self.epoch)

    async def run(
        self,
        partition: int,
        handle: Callable[[], Awaitable[None]],
        key: bytes | None = None,
        hold: Hold | None = None,
    ) -> bool:
        """Run ``handle`` under the task's binding (the agent binds each batch); False when its
        writes were refused or it was left to run later (its offset held until then: ``hold``).

        A refused handler runs again in the background once the rebalance has settled, if
        ``partition`` stayed here. In the background: holding the agent until the rebalance
        completes would hold Faust's stream machinery, which its table recovery (hence the
        rebalance) needs: a deadlock, seen in the zombie test. While an order's (``key``) handler
        waits to run again, its later events run after it, in the background too (two handlers
        of one order at once would both write; dropping them could drop the only copy of an
        event fetched again after the partition came back).
        """
        bound = self._bound.get()
        if bound is None:  # not bound by an agent's batch
            self.bind()
            bound = (self.epoch, self.freezes)
        pending = self._redo_by_key.get(key) if key is not None else None
        if pending is not None:
            log.info("order %r: its refused handler runs again soon; this event runs after it", key)
            self._later(
                partition, handle, bound, key, "queued behind its order's redo", pending, hold
            )
            return False
        try:
            await handle()
            return True
        except Fenced as exc:
            self._later(partition, handle, bound, key, str(exc), None, hold)
            return False

    def _later(
        self,
        partition: int,
        handle: Callable[[], Awaitable[None]],
        bound: tuple[int, int],
        key: bytes | None,
        reason: str,
        after: asyncio.Future[None] | None,
        hold: Hold | None,
    ) -> None:
        release = hold() if hold is not None else None
        task = asyncio.ensure_future(self._redo(partition, handle, bound, reason, after))
        self.redoing.add(task)
        task.add_done_callback(self.redoing.discard)
        if release is not None:
            # Done, left to the new owner, failed or cancelled (even before it started running).
            task.add_done_callback(lambda _: release())
        if key is not None:
            self._redo_by_key[key] = task

            def forget(done: asyncio.Future[None]) -> None:
                if self._redo_by_key.get(key) is done:  # not a later event queued behind it
                    del self._redo_by_key[key]

            task.add_done_callback(forget)

    async def _redo(
        self,
        partition: int,
        handle: Callable[[], Awaitable[None]],
        bound: tuple[int, int],
        reason: str,
        after: asyncio.Future[None] | None,
    ) -> None:
        if after is not None:
            await asyncio.wait([after])  # the order's earlier event first; its outcome is its own
        while True:
            # Polled: a rebalance settles in a Faust signal handler, a freeze ends by itself.
            while self.rebalancing or self._is_frozen():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            if not self._kept(partition, bound):
                log.info(
                    "partition %d moved: in-flight work left to its owner (%s)", partition, reason
                )
                return
            log.info("partition %d stayed here: handling its event again (%s)", partition, reason)
            self.bind()
            bound = (self.epoch, self.freezes)
            try:
                # Its batch was acked long ago: wait here for what it produces to be delivered.
                await run_delivered(handle, lambda p: p is None or self.keeps(p))
                return
            except Fenced as again:
                reason = str(again)

    async def shutdown(self) -> None:
        """Stop the ticker and cancel pending redos (before the local-state guard's last check:
        a redo writing after it would leave a local write that the changelog lacks)."""
        self.stop()
        redos = list(self.redoing)
        for task in redos:
            task.cancel()
        await asyncio.gather(*redos, return_exceptions=True)
