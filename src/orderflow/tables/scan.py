"""Reading the rows of newly assigned partitions into an in-memory index, without stalling the loop.

The safety-net timers (stalled orders, UNKNOWN payments) keep an index of the few rows that matter.
After a rebalance only the partitions this worker did not hold throughout need reading: the rows
of the partitions it kept have not changed except through its own writes, which update the index
as they happen. "Throughout" is ``HeldThroughout``'s to say: a partition held at two settled
assignments was another worker's in between if an assignment between them lacked it, or if this
worker missed a generation of the group (it joined late, or was thrown out and came back). The scan reads in chunks and yields to the event loop between them, so HTTP, the
heartbeats and the agents keep running while a large table is read.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from aiokafka.partitioner import murmur2

__all__ = ["HeldThroughout", "PartitionScan", "elsewhere", "order_partition", "partition_rows"]

T = TypeVar("T")


def order_partition(order_id: str, partitions: int) -> int:
    """The partition of an order: every producer keys by order id with the default (murmur2)
    partitioner, and table rows live on the partition of the event that wrote them."""
    return int(murmur2(order_id.encode()) & 0x7FFFFFFF) % partitions


def elsewhere(order_ids: Iterable[str], owned: set[int], partitions: int | None) -> list[str]:
    """The orders whose partition is not in ``owned`` (``partitions`` None: none, as a single
    worker owning everything never forgets)."""
    if partitions is None:
        return []
    return [o for o in order_ids if order_partition(o, partitions) not in owned]


def partition_rows(table: Any, partition: int) -> Iterable[tuple[bytes, bytes]]:
    """Raw (key, value) rows of one partition of a Faust table, read lazily where possible.

    Faust has no public per-partition iteration; its two stores we use are read directly
    (faust-streaming 0.15): RocksDB keeps one database per partition, the memory store knows the
    partition of every row it recovered from the changelog.
    """
    store = table.data
    dbs = getattr(store, "_dbs", None)
    if dbs is not None:  # RocksDB: an iterator over that partition's database
        db = dbs.get(partition)
        return () if db is None else store._visible_items(db)
    key_partition = getattr(store, "_key_partition", None)
    if key_partition is not None:  # memory: a snapshot (agents may write while we yield)
        return [(k, v) for k, v in list(store.data.items()) if key_partition.get(k) == partition]
    return list(table.items()) if partition == 0 else ()  # unknown store: every row, once


class HeldThroughout:
    """The partitions this worker held at every assignment since its last settled one."""

    def __init__(self) -> None:
        self.held: set[int] = set()
        self.last_generation: int | None = None

    def assigned(self, generation: int, partitions: Iterable[int]) -> None:
        """An assignment arrived (group ``generation``), settled or not."""
        if self.last_generation is None or generation != self.last_generation + 1:
            self.held = set()  # a generation missed: any partition may have been elsewhere
        else:
            self.held &= set(partitions)
        self.last_generation = generation

    def settled(self, owned: Iterable[int]) -> set[int]:
        """The assignment ``owned`` is in place: those of its partitions not held throughout
        (another worker's meanwhile: read them again, even if read before)."""
        owned = set(owned)
        changed = owned - self.held
        self.held = owned
        return changed


class PartitionScan:
    """Which partitions an index has read, and which it still has to read."""

    def __init__(self, every: int = 500) -> None:
        self.every = every  # rows read between two yields to the event loop
        self.scanned: set[int] = set()
        self.pending: set[int] = set()
        self.generation = 0  # bumped by each assignment: a scan in progress stops and restarts

    def assigned(
        self, partitions: Iterable[int], *, rescan_all: bool = False, rescan: Iterable[int] = ()
    ) -> None:
        """A new assignment is in place; ``rescan_all`` when kept partitions may have changed,
        ``rescan`` those of them another worker may have written since they were read."""
        owned = set(partitions)
        if rescan_all:
            self.scanned.clear()
        self.scanned &= owned - set(rescan)
        self.pending = owned - self.scanned
        self.generation += 1

    async def run(
        self,
        rows: Callable[[int], Iterable[tuple[bytes, bytes]]],
        decode: Callable[[bytes], T],
        track: Callable[[T], None],
    ) -> int:
        """Read every pending partition into ``track``; returns how many rows were read."""
        generation = self.generation
        read = 0
        for partition in sorted(self.pending):
            iterator: Iterator[tuple[bytes, bytes]] = iter(rows(partition))
            while True:
                chunk = [raw for _, raw in _take(iterator, self.every)]
                for raw in chunk:
                    track(decode(raw))
                read += len(chunk)
                await asyncio.sleep(0)  # let the loop run between chunks
                if generation != self.generation:
                    return read  # reassigned meanwhile: the next run reads the new pending set
                if len(chunk) < self.every:
                    break
            self.pending.discard(partition)
            self.scanned.add(partition)
        return read


def _take(iterator: Iterator[tuple[bytes, bytes]], n: int) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    for row in iterator:
        out.append(row)
        if len(out) >= n:
            break
    return out
