"""The bench's baselines: the perf tools' output read right, the bare aiohttp API compatible."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bench.baselines.bare_aiohttp import make_app
from bench.baselines.kafka_perf import parse_consumer_output, parse_producer_output
from bench.baselines.typical_faust import topic_names
from orderflow.tools.localkafka import KafkaLauncherError

# Printed by Kafka 4.1.2's tools (one interval line, then the summary; the CSV pair).
PRODUCER_OUT = (
    "1 records sent, 0.2 records/sec (0.00 MB/sec), 625.0 ms avg latency, 625.0 ms max latency.\n"
    "20000 records sent, 2293.1 records/sec (0.66 MB/sec), 1193.17 ms avg latency, 5201.00 ms "
    "max latency, 1227 ms 50th, 1715 ms 95th, 1796 ms 99th, 1810 ms 99.9th.\n"
)
CONSUMER_OUT = (
    "start.time, end.time, data.consumed.in.MB, MB.sec, data.consumed.in.nMsg, nMsg.sec, "
    "rebalance.time.ms, fetch.time.ms, fetch.MB.sec, fetch.nMsg.sec\n"
    "2026-11-30 11:38:38:563, 2026-11-30 11:38:41:734, 5.7220, 1.8045, 20000, 6307.1586, 1910, "
    "1261, 4.5377, 15860.4282\n"
)
ORDER = {
    "customer_id": "c-1",
    "currency": "EUR",
    "items": [{"sku": "SKU-1", "quantity": 2, "unit_amount": 1999}],
    "payment": {"token": "tok_visa"},
}


def test_producer_perf_summary_is_the_last_line() -> None:
    result = parse_producer_output(PRODUCER_OUT)
    assert (result.records, result.records_per_s, result.mb_per_s) == (20000, 2293.1, 0.66)


def test_consumer_perf_reports_the_fetch_rate() -> None:
    result = parse_consumer_output(CONSUMER_OUT)
    assert (result.records, result.records_per_s, result.mb_per_s) == (20000, 15860.4282, 4.5377)


def test_perf_output_without_figures_is_an_error() -> None:
    with pytest.raises(KafkaLauncherError):
        parse_producer_output("Exception in thread main\n")
    with pytest.raises(KafkaLauncherError):
        parse_consumer_output("WARN nothing consumed\n")


async def test_bare_aiohttp_answers_pending_then_paid() -> None:
    async with TestClient(TestServer(make_app())) as client:
        posted = await client.post("/orders", json=ORDER)
        assert posted.status == 201
        order = await posted.json()
        assert (order["status"], order["amount"]) == ("PENDING", 3998)
        assert posted.headers["Location"] == f"/orders/{order['order_id']}"
        got = await client.get(f"/orders/{order['order_id']}?wait=5")
        assert got.status == 200
        assert (await got.json())["status"] == "PAID"
        assert (await client.get("/orders/ord_unknown")).status == 404
        assert (await client.post("/orders", data=b"not json")).status == 400


def test_typical_faust_topics_are_named_by_app_id() -> None:
    assert topic_names("t1") == ["t1.orders", "t1.order-created", "t1.payment-results"]
