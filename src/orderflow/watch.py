"""Wake HTTP requests waiting on an order when the order service changes it (same process)."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from typing import TypeVar

__all__ = ["OrderWatch"]

T = TypeVar("T")


class OrderWatch:
    """The order service calls ``notify(order_id)`` after every OrderDB write; views wait.

    Only the partition's owner writes an order, and requests are routed to that owner, so an
    in-process signal is enough: no polling of the table, no extra Kafka round trip.
    """

    def __init__(self) -> None:
        self._waiters: defaultdict[str, set[asyncio.Event]] = defaultdict(set)

    def notify(self, order_id: str) -> None:
        for event in self._waiters.pop(order_id, ()):
            event.set()

    def waiting(self, order_id: str) -> int:
        """How many requests wait on this order right now."""
        return len(self._waiters.get(order_id, ()))

    def notify_all(self) -> None:
        """Wake every waiter: partitions moved, so each must check it still owns its order."""
        waiters, self._waiters = self._waiters, defaultdict(set)
        for events in waiters.values():
            for event in events:
                event.set()

    async def wait_for(
        self, order_id: str, read: Callable[[], T], done: Callable[[T], bool], timeout: float
    ) -> T:
        """Return ``read()`` once ``done`` holds for it, or its latest value at the timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            value = read()
            remaining = deadline - loop.time()
            if done(value) or remaining <= 0:
                return value
            event = asyncio.Event()
            self._waiters[order_id].add(event)
            try:
                await asyncio.wait_for(event.wait(), timeout=remaining)
            except TimeoutError:
                pass
            finally:
                waiters = self._waiters.get(order_id)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[order_id]
