"""One table of the sandbox's ledger whose rows are made once per active idempotency key."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import astuple, fields
from typing import Any, Generic, Protocol, TypeVar

import aiosqlite

__all__ = ["KeyedRows"]


class _Row(Protocol):
    """A ledger row: a dataclass whose fields are the table's columns."""

    @property
    def created_at(self) -> float: ...


Row = TypeVar("Row", bound=_Row)


class KeyedRows(Generic[Row]):
    """The rows of ``table`` (columns: the fields of ``make``), made once per active key.

    ``db`` is read at each call: the ledger opens and closes its connection.
    """

    def __init__(
        self,
        db: Callable[[], aiosqlite.Connection],
        write: asyncio.Lock,
        table: str,
        make: Callable[..., Row],
    ) -> None:
        self._db = db
        self._write = write
        self._table = table
        self._make = make
        self._columns = tuple(f.name for f in fields(make))  # type: ignore[arg-type]

    async def select(self, where: str = "", args: tuple[object, ...] = ()) -> list[Row]:
        sql = f"SELECT {', '.join(self._columns)} FROM {self._table} {where}"
        async with self._db().execute(sql, args) as cursor:
            return [self._make(*row) for row in await cursor.fetchall()]

    async def by_key(self, idempotency_key: str) -> Row | None:
        """The newest row made with the key (expired or not)."""
        rows = await self.select(
            "WHERE idempotency_key = ? ORDER BY created_at DESC, rowid DESC LIMIT 1",
            (idempotency_key,),
        )
        return rows[0] if rows else None

    async def rows(self, order_id: str | None = None) -> list[Row]:
        if order_id is None:
            return await self.select("ORDER BY created_at, rowid")
        return await self.select("WHERE order_id = ? ORDER BY created_at, rowid", (order_id,))

    async def once(
        self, key: str, arrived_at: float, ttl_s: float, new_row: Callable[[], Awaitable[Row]]
    ) -> tuple[Row, str]:
        """The key's active row, or a new one: ``(row, "replayed" | "created" | "expired")``.

        The key's newest row is active while ``arrived_at`` is less than ``ttl_s`` after it was
        made. Read, ``new_row`` (which may read the ledger) and insert run in one write
        transaction, so two processes sharing the file cannot both make a row for one key.
        """
        db = self._db()
        async with self._write:
            await db.execute("BEGIN IMMEDIATE")
            try:
                current = await self.by_key(key)
                if current is not None and arrived_at - current.created_at < ttl_s:
                    await db.rollback()
                    return current, "replayed"
                row = await new_row()
                values: tuple[Any, ...] = astuple(row)  # type: ignore[call-overload]
                placeholders = ", ".join("?" for _ in self._columns)
                await db.execute(
                    f"INSERT INTO {self._table} ({', '.join(self._columns)}) VALUES ({placeholders})",
                    values,
                )
                await db.commit()
            except BaseException:
                await db.rollback()
                raise
        return row, "created" if current is None else "expired"
