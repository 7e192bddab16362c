"""The safety-net timers with large tables and under repeated rebalances.

After a rebalance the stalled-order watchdog and the UNKNOWN-payment reconciler read the newly
assigned partitions of OrderDB and PaymentDB. With 200,000 orders that read must not freeze the
worker (its HTTP endpoint keeps answering while it runs), and rebalances every few seconds must
not keep pushing a stalled order's nudge back.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
import uuid
from functools import partial
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from orderflow.domain.events import rfc3339
from orderflow.domain.order import Order, OrderStatus
from orderflow.domain.payment import PaymentRecord
from orderflow.domain.validation import LineItem
from orderflow.tables.local_state import LocalState
from orderflow.topics import ORDER_CHANGELOG, PAYMENT_CHANGELOG, all_topic_names
from orderflow.wire import order_to_bytes, payment_to_bytes
from tests.harness import (
    TEST_CLIENT,
    ManagedProcess,
    http_json,
    poll_until,
    start_sandbox,
    start_worker,
)
from tests.kafka_helpers import handled_place_command
from tests.orders_client import get_terminal, ledger_stats

_TOPICS = tuple(all_topic_names())
_ROWS = 200_000
_NUDGE = "still PENDING: publishing order.created again"


def _order(
    order_id: str, status: OrderStatus, updated: float, command_offset: int | None = None
) -> Order:
    at = rfc3339(updated)
    return Order(
        order_id,
        "c-1",
        "EUR",
        (LineItem("SKU-1", 1, 500),),
        500,
        status,
        at,
        at,
        "fingerprint",
        "request",
        command_offset=command_offset,
        client_id=TEST_CLIENT,
    )


def _stalled(bootstrap: str, order_id: str, updated: float) -> Order:
    """Placed (its command handled), stored, never published: the nudge reads its token from
    the command (OrderDB keeps where the command is, never the token)."""
    offset = handled_place_command(bootstrap, order_id)
    return _order(order_id, OrderStatus.PENDING, updated, offset)


async def _create_topics(bootstrap: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        for name in _TOPICS:
            with contextlib.suppress(TopicAlreadyExistsError):  # another test made it
                await admin.create_topics([NewTopic(name, 8, 1)])
    finally:
        await admin.close()


async def _write_tables(bootstrap: str, orders: list[Order], payments: list[PaymentRecord]) -> None:
    """Changelog rows as Faust writes them (same key bytes, same partitioner), in batches."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=20, max_batch_size=1_000_000
    )
    await producer.start()
    try:
        rows = [(ORDER_CHANGELOG, o.order_id, order_to_bytes(o)) for o in orders]
        rows += [(PAYMENT_CHANGELOG, p.order_id, payment_to_bytes(p)) for p in payments]
        for start in range(0, len(rows), 20_000):
            futures = [
                await producer.send(topic, key=key.encode(), value=value)
                for topic, key, value in rows[start : start + 20_000]
            ]
            await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _seed_orderdb(data_dir: Path, orders: list[Order], partitions: int = 8) -> None:
    """Write OrderDB rows straight into the worker's RocksDB, where a restarted worker finds them.

    Faust's changelog recovery ran at about 2,000 rows/s on the loaded 2-core test machine (200,000
    rows: minutes), so the rows are put where Faust keeps them (faust-streaming 0.15:
    ``DATADIR/v1/tables/OrderDB-<partition>.db``, raw keys and values, the order topics'
    partitioner) rather than replayed from the changelog.
    """
    from aiokafka.partitioner import murmur2
    from rocksdict import Options, Rdict

    tables = data_dir / "v1" / "tables"
    tables.mkdir(parents=True)
    dbs = {
        p: Rdict(str(tables / f"OrderDB-{p}.db"), Options(raw_mode=True)) for p in range(partitions)
    }
    try:
        for order in orders:
            key = order.order_id.encode()
            dbs[(murmur2(key) & 0x7FFFFFFF) % partitions][key] = order_to_bytes(order)
    finally:
        for db in dbs.values():
            db.close()
    # As a clean stop leaves them: without the marker the worker (rightly) distrusts the stores
    # and rebuilds them from the changelog (orderflow.tables.local_state).
    LocalState(data_dir, tables).mark_clean_stop()


def test_worker_answers_while_it_reads_200k_orders_and_nudges_the_stalled_one(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    now = time.time()
    stalled_id = "ord_" + uuid.uuid4().hex
    orders = [
        _order(f"ord_{uuid.uuid4().hex}", OrderStatus.PAID, now - 3600) for _ in range(_ROWS - 1)
    ]
    asyncio.run(_create_topics(kafka_bootstrap))
    orders.append(_stalled(kafka_bootstrap, stalled_id, now - 60))  # placed, never published
    data_dir = tmp_path / "data-big"
    _seed_orderdb(data_dir, orders)
    del orders
    sandbox = start_sandbox(tmp_path)
    worker = start_worker(
        tmp_path,
        kafka_bootstrap,
        sandbox.meta["url"],
        name="big",
        data_dir=data_dir,
        extra={"ORDERFLOW_STALL_AFTER": "10"},
        wait_ready=False,
    )
    try:
        answered_while_reading = 0
        deadline = time.monotonic() + 100
        ours = f"order {stalled_id} {_NUDGE}"  # other tests' unfinished orders may be nudged too
        while ours not in worker.log_tail(200_000) and time.monotonic() < deadline:
            reading_before = _reading(worker)
            try:
                status = http_json("GET", f"{worker.meta['url']}/health", timeout=30)[0]
            except OSError:
                status = 0  # not listening yet
                time.sleep(0.2)
            # Answered, and the index read had started before the request and was still going
            # after the answer: the loop served HTTP in the middle of the read.
            if status == 200 and reading_before and _reading(worker):
                answered_while_reading += 1
            assert worker.alive, worker.log_tail()
        assert ours in worker.log_tail(200_000), "never nudged"
        assert answered_while_reading > 0, "no /health answer while the OrderDB index was read"
        # At least ours PENDING (the shared test broker may hold other tests' unfinished orders).
        assert re.search(
            r"read \d{6,} OrderDB row\(s\), [1-9]\d* PENDING", worker.log_tail(200_000)
        )
        assert get_terminal(worker.meta["url"], stalled_id, timeout=60)["status"] == "PAID"
        assert ledger_stats(sandbox.meta["url"])["per_order"][stalled_id] == 1
    finally:
        worker.stop()
        sandbox.stop()


def _reading(worker: ManagedProcess) -> bool:
    """The stalled-order index read has started and not finished yet (from the worker's log)."""
    log = worker.log_tail(200_000)
    started = log.rfind("stalled-order index: reading OrderDB")
    return started >= 0 and log.find("stalled-order index: read ", started + 1) < 0


def test_stalled_order_is_nudged_to_completion_while_workers_keep_joining_and_leaving(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Stored in OrderDB, never published (a crash between the two): only the watchdog moves it.
    order_id = "ord_" + uuid.uuid4().hex
    asyncio.run(_create_topics(kafka_bootstrap))
    sandbox = start_sandbox(tmp_path)
    gateway = sandbox.meta["url"]
    # The churn must be moving partitions before the order is due, or the nudge comes before
    # any rebalance and proves nothing. A loaded machine (load 15-45) takes 10-50 s to start a
    # worker: with 12 s, and the churn started once the stable worker was ready, the order was
    # nudged before the first churner joined. So the churn starts with the stable worker (which
    # then goes through rebalances however slowly it starts), and the order is due after 40 s.
    extra = {"ORDERFLOW_STALL_AFTER": "40", "ORDERFLOW_SESSION_TIMEOUT": "6"}
    asyncio.run(
        _write_tables(kafka_bootstrap, [_stalled(kafka_bootstrap, order_id, time.time())], [])
    )
    stable = start_worker(
        tmp_path, kafka_bootstrap, gateway, name="stable", extra=extra, wait_ready=False
    )
    churners: list[ManagedProcess] = []
    stop = threading.Event()

    def churn() -> None:
        # A worker joins, then leaves, again and again: a rebalance every few seconds, each
        # followed by a rescan of the safety nets.
        for n in range(1000):
            if stop.is_set():
                return
            worker = start_worker(
                tmp_path, kafka_bootstrap, gateway, name=f"churn{n}", extra=extra, wait_ready=False
            )
            churners.append(worker)
            try:
                poll_until(partial(_joined, worker, stop), 60, 0.2, "the churner to join")
            finally:
                worker.stop()

    def nudged() -> bool:
        assert stable.alive, stable.log_tail()  # a crash of the worker fails here, named
        return any(
            f"order {order_id} {_NUDGE}" in w.log_tail(2_000_000) for w in [stable, *churners]
        )

    background = threading.Thread(target=churn, daemon=True)
    try:
        background.start()
        poll_until(nudged, 180, 0.5, "the stalled order to be nudged during the churn")
        rebalances = sum(
            w.log_tail(2_000_000).count("Setting newly assigned partitions") for w in [stable]
        )
        stop.set()
        background.join(60)
        assert rebalances >= 3, f"only {rebalances} assignment(s) at the stable worker"
        assert get_terminal(stable.meta["url"], order_id, timeout=60)["status"] == "PAID"
        assert ledger_stats(gateway)["per_order"][order_id] == 1
    finally:
        stop.set()
        background.join(60)
        for worker in churners:
            worker.stop()
        stable.stop()
        sandbox.stop()


def _joined(worker: ManagedProcess, stop: threading.Event) -> bool:
    log = worker.log_tail(200_000)
    return "Setting newly assigned partitions" in log or not worker.alive or stop.is_set()
