"""A typed view over a Faust table whose values are JSON bytes (``orderflow.wire.tables``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, Protocol, TypeVar

# A module import, not a name: orderflow.delivery imports this package (a cycle Python
# resolves as long as the name is looked up at call time).
import orderflow.delivery as delivery
from orderflow.tables.scan import partition_rows

__all__ = ["JsonTable", "allow"]


class Keyed(Protocol):
    """A table value: every table is keyed by order id (co-partitioned with the order topics)."""

    @property
    def order_id(self) -> str: ...


T = TypeVar("T", bound=Keyed)


def allow() -> None:
    """The default ``before_write``: every write goes ahead."""
    return None


class JsonTable(Generic[T]):
    """Order id -> ``T``, stored as bytes; writes happen inside stream iteration only.

    A table is a subclass naming its table and how its values are stored (``orderflow.wire.tables``).
    """

    NAME: ClassVar[str]  # the Faust table's name (its changelog topic is named after it)
    HELP: ClassVar[str]
    encode: Callable[[T], bytes]  # staticmethods of the subclass
    decode: Callable[[bytes], T]

    def __init__(self, app: Any, partitions: int, before_write: Callable[[], None] = allow) -> None:
        self.name = self.NAME
        # bytes keys and values: Faust picks the "raw" codec, so keys partition exactly like the
        # order topics' keys (the same UTF-8 bytes through the same murmur2 partitioner).
        # DeliveringTable: the agent batch that writes an entry awaits its changelog delivery
        # (orderflow.delivery); otherwise what ``app.Table`` builds.
        self.table = app.tables.add(
            delivery.DeliveringTable(
                app,
                name=self.NAME,
                beacon=app.tables.beacon,
                partitions=partitions,
                key_type=bytes,
                value_type=bytes,
                help=self.HELP,
            )
        )
        # Called right before every write; raises to refuse it (orderflow.fencing: a handler whose
        # partition was revoked while it awaited the gateway must not write after the new owner).
        self.before_write = before_write

    def get(self, order_id: str) -> T | None:
        raw = self.table.get(order_id.encode())
        return None if raw is None else self.decode(raw)

    def put(self, value: T) -> None:
        """Store it; Faust sends the changelog entry (to the current event's partition)."""
        self.before_write()
        self.table[value.order_id.encode()] = self.encode(value)

    async def put_durable(self, value: T) -> None:
        """Store it and wait until its changelog record is in Kafka (raises if it is not).

        For a write that must survive a crash before the next step (ATTEMPTING before a charge).
        The batch's settle awaits the same record too and resends the key on failure.
        """
        self.table.last_changelog = None
        self.put(value)
        # Set synchronously by the write above (DeliveringTable.send_changelog), read at once.
        sent = self.table.last_changelog
        if sent is not None:
            # shield: a cancelled wait (a graceful stop) must not cancel Faust's own future,
            # which it resolves later (set_result on a cancelled one raises InvalidStateError).
            await asyncio.shield(sent)

    def partition_rows(self, partition: int) -> Iterable[tuple[bytes, bytes]]:
        """The raw rows of one partition held here (see ``orderflow.tables.scan``)."""
        return partition_rows(self.table, partition)
