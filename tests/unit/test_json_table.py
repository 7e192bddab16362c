"""``JsonTable.put_durable``: waits for its changelog record, and leaves that record's delivery
to Faust when the waiting task is cancelled (a graceful stop)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orderflow.tables import PaymentTable
from orderflow.tables.base import allow
from tests.unit.builders import payment_record


class _FaustTable(dict[bytes, bytes]):
    """A Faust table whose every write sends a changelog record (``DeliveringTable``)."""

    last_changelog: Any = None

    def __setitem__(self, key: bytes, value: bytes) -> None:
        super().__setitem__(key, value)
        self.last_changelog = asyncio.get_running_loop().create_future()


def _table() -> tuple[PaymentTable, _FaustTable]:
    table = object.__new__(PaymentTable)  # no app: only the parts put_durable uses
    faust_table = _FaustTable()
    table.table, table.before_write = faust_table, allow
    return table, faust_table


async def test_put_durable_cancelled_at_shutdown_leaves_the_changelog_future_for_faust() -> None:
    # Regression: the bare await cancelled Faust's own future, and its later set_result raised
    # InvalidStateError tracebacks at every graceful stop.
    table, faust_table = _table()
    waiting = asyncio.ensure_future(table.put_durable(payment_record()))
    await asyncio.sleep(0)
    sent: asyncio.Future[None] = faust_table.last_changelog
    assert not waiting.done()

    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting

    assert not sent.cancelled()
    sent.set_result(None)  # what Faust does once Kafka acknowledges the record


async def test_put_durable_returns_once_the_changelog_record_is_delivered_and_raises_if_not() -> (
    None
):
    table, faust_table = _table()
    delivered = asyncio.ensure_future(table.put_durable(payment_record()))
    await asyncio.sleep(0)
    faust_table.last_changelog.set_result(None)
    await delivered

    failed = asyncio.ensure_future(table.put_durable(payment_record(order_id="ord-2")))
    await asyncio.sleep(0)
    faust_table.last_changelog.set_exception(TimeoutError("no ack"))
    with pytest.raises(TimeoutError, match="no ack"):
        await failed
    assert set(faust_table) == {b"ord-1", b"ord-2"}
