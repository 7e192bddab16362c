"""The payment service's handling of gateway answers and failures (fake gateway, fake table)."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from orderflow.agents.dead_letters import DeadLetters
from orderflow.agents.payments import PaymentService, UnknownPayments
from orderflow.domain.errors import ChargeMismatchError
from orderflow.domain.events import OrderCreated
from orderflow.domain.payment import (
    Approved,
    ChargeOutcome,
    Decline,
    Declined,
    GatewayCharge,
    PaymentRecord,
    PaymentStatus,
    idempotency_key_for,
)
from orderflow.fencing import Fenced
from orderflow.gateway.base import (
    ChargeRequest,
    PermanentGatewayError,
    TransientGatewayError,
)
from orderflow.topics import ORDER_CREATED, PAYMENT_RECONCILE
from orderflow.wire import encode_event


class FakeGateway:
    """Answers ``charge`` and ``find_charge`` from scripted outcomes or errors."""

    def __init__(self, charge: ChargeOutcome | BaseException, found: Any = None) -> None:
        self.charge_answer = charge
        self.found = found
        self.requests: list[ChargeRequest] = []

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        self.requests.append(request)
        if isinstance(self.charge_answer, BaseException):
            raise self.charge_answer
        return self.charge_answer

    async def find_charge(self, idempotency_key: str) -> GatewayCharge | None:
        if isinstance(self.found, BaseException):
            raise self.found
        return self.found  # type: ignore[no-any-return]

    async def close(self) -> None:
        return None


class FakeTable:
    def __init__(self) -> None:
        self.rows: dict[str, PaymentRecord] = {}

    def get(self, order_id: str) -> PaymentRecord | None:
        return self.rows.get(order_id)

    def put(self, record: PaymentRecord) -> None:
        self.rows[record.order_id] = record

    async def put_durable(self, record: PaymentRecord) -> None:
        self.put(record)

    def values(self) -> list[PaymentRecord]:
        return list(self.rows.values())


def _service(gateway: FakeGateway) -> tuple[PaymentService, FakeTable, list[tuple[str, bytes]]]:
    table = FakeTable()
    published: list[tuple[str, bytes]] = []

    async def get_gateway() -> FakeGateway:
        return gateway

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        published.append((topic, value))

    service = PaymentService(
        table,  # type: ignore[arg-type]
        get_gateway,
        publish,
        None,  # type: ignore[arg-type]
        UnknownPayments(),  # type: ignore[arg-type]
        clock=lambda: 1000.0,
    )
    return service, table, published


def _record() -> PaymentRecord:
    return PaymentRecord(
        "o1",
        idempotency_key_for("o1"),
        500,
        "EUR",
        PaymentStatus.ATTEMPTING,
        payment_token="tok_visa",
    )


async def test_timeout_makes_the_payment_unknown_never_failed() -> None:
    service, table, published = _service(FakeGateway(TransientGatewayError("timed out")))
    await service._charge(_record())
    assert table.rows["o1"].status is PaymentStatus.UNKNOWN
    assert published == []
    assert service.unknown.due_at["o1"] > 1000.0


@pytest.mark.parametrize(
    ("found", "status", "charge_id"),
    [
        (
            GatewayCharge(Approved("ch_earlier"), 500, "eur", "o1"),
            PaymentStatus.COMPLETED,
            "ch_earlier",
        ),
        (None, PaymentStatus.FAILED, None),
    ],
    ids=["an-earlier-attempt-charged", "the-gateway-has-no-charge"],
)
async def test_refused_request_is_settled_by_the_gateways_record_for_the_key(
    found: GatewayCharge | None, status: PaymentStatus, charge_id: str | None
) -> None:
    service, table, published = _service(FakeGateway(PermanentGatewayError("403"), found))
    await service._charge(_record())
    assert table.rows["o1"].status is status
    assert table.rows["o1"].charge_id == charge_id
    assert [topic for topic, _ in published] == [
        "payment.completed" if status is PaymentStatus.COMPLETED else "payment.failed"
    ]


async def test_a_refused_request_fails_with_a_fixed_public_message_not_the_gateways_reply() -> None:
    # The error's text (once: the gateway URL and 200 bytes of its reply) must not reach the
    # decline message, hence payment.failed, PaymentDB and GET /orders.
    leak = "POST https://gw.example/v1/charges: HTTP 403: key sk_live_42 is not allowed"
    service, table, published = _service(FakeGateway(PermanentGatewayError(leak), None))
    await service._charge(_record())
    decline = table.rows["o1"].decline
    assert decline is not None
    assert (decline.code, decline.message) == (
        "gateway_rejected",
        "The payment could not be processed.",
    )
    assert [topic for topic, _ in published] == ["payment.failed"]
    assert b"gw.example" not in published[0][1] and b"sk_live_42" not in published[0][1]


async def test_refused_request_with_an_unreachable_gateway_record_stays_unknown() -> None:
    gateway = FakeGateway(PermanentGatewayError("403"), TransientGatewayError("down"))
    service, table, published = _service(gateway)
    await service._charge(_record())
    assert table.rows["o1"].status is PaymentStatus.UNKNOWN
    assert published == []


async def test_decline_is_published_as_payment_failed_with_its_code() -> None:
    decline = Decline("card_declined", "The card was declined.", False)
    service, table, published = _service(FakeGateway(Declined(decline, "ch_1")))
    await service._charge(_record())
    assert table.rows["o1"].decline == decline
    assert published[0][0] == "payment.failed"
    assert b'"code":"card_declined"' in published[0][1]


_FOREIGN = [
    GatewayCharge(Approved("ch_foreign"), 500, "EUR", "o-of-another-deployment"),
    GatewayCharge(Approved("ch_foreign"), 499, "EUR", "o1"),
    GatewayCharge(Approved("ch_foreign"), 500, "USD", "o1"),
    GatewayCharge(Approved("ch_foreign"), None, None, None),
    GatewayCharge(Declined(Decline("card_declined", "no", False), "ch_foreign"), 1, "EUR", "o9"),
]
_FOREIGN_IDS = ["other-order", "other-amount", "other-currency", "unreported", "foreign-decline"]


@pytest.mark.parametrize("found", _FOREIGN, ids=_FOREIGN_IDS)
async def test_refused_request_with_a_foreign_charge_under_the_key_is_inconsistent_not_settled(
    found: GatewayCharge,
) -> None:
    service, table, published = _service(FakeGateway(PermanentGatewayError("400"), found))
    with pytest.raises(ChargeMismatchError, match="ch_foreign"):
        await service._charge(_record())
    assert table.rows["o1"].status is PaymentStatus.INCONSISTENT
    assert table.rows["o1"].charge_id is None
    assert published == []
    assert service.inconsistent == 1
    assert "o1" not in service.unknown.due_at  # the reconciler leaves it alone


@pytest.mark.parametrize("found", _FOREIGN, ids=_FOREIGN_IDS)
async def test_reconciler_finding_a_foreign_charge_marks_it_inconsistent_and_charges_nothing(
    found: GatewayCharge,
) -> None:
    gateway = FakeGateway(Approved("ch_new"), found)
    service, table, published = _service(gateway)
    table.put(_record().unknown(900.0))
    message = type("M", (), {"value": b'{"order_id": "o1"}', "key": b"o1"})()
    with pytest.raises(ChargeMismatchError):
        await service._reconcile(message)
    assert table.rows["o1"].status is PaymentStatus.INCONSISTENT
    assert gateway.requests == []
    assert published == []


async def test_reconciler_settles_from_the_gateways_matching_charge_without_charging() -> None:
    gateway = FakeGateway(Approved("ch_new"), GatewayCharge(Approved("ch_1"), 500, "EUR", "o1"))
    service, table, published = _service(gateway)
    table.put(_record().unknown(900.0))
    message = type("M", (), {"value": b'{"order_id": "o1"}', "key": b"o1"})()
    await service._reconcile(message)
    assert table.rows["o1"].status is PaymentStatus.COMPLETED
    assert table.rows["o1"].charge_id == "ch_1"
    assert gateway.requests == []
    assert [topic for topic, _ in published] == ["payment.completed"]


def _reconcile_request() -> Any:
    return type("M", (), {"value": b'{"order_id": "o1"}', "key": b"o1"})()


async def test_reconciler_whose_lookup_fails_asks_again_later_and_never_charges_blind() -> None:
    # Gateways expire idempotency keys (about 24 h): a charge sent without knowing whether the
    # first one landed could be a second charge. Only a lookup that finds nothing allows one.
    gateway = FakeGateway(Approved("ch_new"), TransientGatewayError("lookup timed out"))
    service, table, published = _service(gateway)
    table.put(_record().unknown(900.0))
    await service._reconcile(_reconcile_request())
    assert gateway.requests == []
    assert table.rows["o1"].status is PaymentStatus.UNKNOWN
    assert service.unknown.due_at["o1"] > 1000.0
    assert published == []


async def test_reconciler_whose_lookup_finds_nothing_charges_with_the_same_key() -> None:
    gateway = FakeGateway(Approved("ch_new"), None)
    service, table, published = _service(gateway)
    table.put(_record().unknown(900.0))
    await service._reconcile(_reconcile_request())
    assert [r.idempotency_key for r in gateway.requests] == [idempotency_key_for("o1")]
    assert table.rows["o1"].charge_id == "ch_new"
    assert [topic for topic, _ in published] == ["payment.completed"]


async def test_order_created_again_for_a_payment_left_attempting_looks_it_up_before_charging() -> (
    None
):
    # A crash between "ATTEMPTING" and the gateway's answer: the charge may have landed.
    gateway = FakeGateway(Approved("ch_new"), GatewayCharge(Approved("ch_1"), 500, "EUR", "o1"))
    service, table, published = _service(gateway)
    table.put(_record().attempt(900.0))
    created = OrderCreated("o1", "c-1", "EUR", 500, (), "tok_visa", "2026-01-01T00:00:00Z")
    await service._on_order_created(created)
    assert gateway.requests == []
    assert (table.rows["o1"].status, table.rows["o1"].charge_id) == (
        PaymentStatus.COMPLETED,
        "ch_1",
    )
    assert [topic for topic, _ in published] == ["payment.completed"]


async def test_each_failed_lookup_waits_longer_up_to_the_cap_and_counts_no_charge_attempt() -> None:
    gateway = FakeGateway(Approved("ch_new"), TransientGatewayError("lookup timed out"))
    service, table, _ = _service(gateway)
    now = [1000.0]
    service.clock = lambda: now[0]
    table.put(_record().attempt(1000.0).unknown(1000.0))
    delays = []
    for _ in range(7):
        now[0] = table.rows["o1"].next_attempt_at
        await service._reconcile(_reconcile_request())
        delays.append(table.rows["o1"].next_attempt_at - now[0])
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert table.rows["o1"].attempts == 1
    assert gateway.requests == []


class DurableTable(FakeTable):
    """A table whose changelog deliveries are held (or failed) by the test."""

    def __init__(self, fail: BaseException | None = None, hold: bool = False) -> None:
        super().__init__()
        self.fail, self.hold = fail, hold
        self.deliveries: list[asyncio.Future[None]] = []

    async def put_durable(self, record: PaymentRecord) -> None:
        self.put(record)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail is not None:
            future.set_exception(self.fail)
        elif not self.hold:
            future.set_result(None)
        self.deliveries.append(future)
        await future


def _durable_service(
    gateway: FakeGateway, table: DurableTable
) -> tuple[PaymentService, list[tuple[str, bytes]]]:
    service, _, published = _service(gateway)
    service.payments = table  # type: ignore[assignment]
    return service, published


async def _until(condition: Any) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never met")


async def test_the_gateway_is_called_only_once_the_attempting_record_is_delivered() -> None:
    # A crash after a charge whose ATTEMPTING record never reached the changelog: the next owner
    # would see no record and charge without looking up (unsafe once the gateway key expired).
    gateway = FakeGateway(Approved("ch_1"))
    table = DurableTable(hold=True)
    service, _ = _durable_service(gateway, table)
    records = [dataclasses.replace(_record(), order_id=f"o{i}") for i in range(3)]
    charges = [asyncio.create_task(service._charge(record)) for record in records]
    await _until(lambda: len(table.deliveries) == 3)  # one round trip for the batch, not three
    assert gateway.requests == []
    assert {r.status for r in table.rows.values()} == {PaymentStatus.ATTEMPTING}
    for future in table.deliveries:
        future.set_result(None)
    await asyncio.gather(*charges)
    assert len(gateway.requests) == 3
    assert {r.status for r in table.rows.values()} == {PaymentStatus.COMPLETED}


async def test_an_attempting_record_that_is_not_delivered_stops_the_charge() -> None:
    gateway = FakeGateway(Approved("ch_1"))
    table = DurableTable(fail=KafkaTimeoutError())
    service, published = _durable_service(gateway, table)
    with pytest.raises(KafkaTimeoutError):  # the dead-letter guard handles the event again
        await service._charge(_record())
    assert gateway.requests == []
    assert published == []
    assert table.rows["o1"].status is PaymentStatus.ATTEMPTING


async def test_an_event_whose_attempting_record_failed_is_retried_by_the_guard_and_looked_up() -> (
    None
):
    gateway = FakeGateway(Approved("ch_1"), None)
    table = DurableTable(fail=KafkaTimeoutError())
    service, published = _durable_service(gateway, table)

    async def no_sleep(delay: float) -> None:
        table.fail = None  # the broker is back

    service.dead_letters = DeadLetters(topic=None, sleep=no_sleep)
    created = OrderCreated("o1", "c-1", "EUR", 500, (), "tok_visa", "2026-01-01T00:00:00Z")
    event = type(
        "E",
        (),
        {
            "message": type(
                "M",
                (),
                {
                    "topic": "order.created",
                    "partition": 0,
                    "offset": 7,
                    "key": b"o1",
                    "value": encode_event(created),
                },
            )()
        },
    )()
    await service.handle(event)
    assert len(gateway.requests) == 1
    assert table.rows["o1"].status is PaymentStatus.COMPLETED
    assert [topic for topic, _ in published] == ["payment.completed"]


class RecordingDeadLetters(DeadLetters):
    """Dead letters that are only counted (no topic)."""

    def __init__(self) -> None:
        super().__init__(topic=None)
        self.sent: list[str] = []

    async def send(self, event: Any, reason: str, error: BaseException | None = None) -> None:
        self.sent.append(reason)


def _event(topic: str, value: bytes) -> Any:
    return type(
        "E",
        (),
        {
            "message": type(
                "M", (), {"topic": topic, "partition": 0, "offset": 7, "key": b"o1", "value": value}
            )()
        },
    )()


_CREATED = OrderCreated("o1", "c-1", "EUR", 500, (), "tok_visa", "2026-01-01T00:00:00Z")
_FENCED = Fenced("bound to epoch 0/freeze 0, now 0/1, frozen=True, rebalancing=False")


_ATTEMPTED = _record().attempt(900.0)
_UNKNOWN = _ATTEMPTED.unknown(900.0)


@pytest.mark.parametrize(
    ("stored", "charge", "found", "topic", "written"),
    [
        (None, _FENCED, None, ORDER_CREATED, 1),
        (_ATTEMPTED, Approved("ch_1"), _FENCED, ORDER_CREATED, 0),
        (_ATTEMPTED, _FENCED, None, ORDER_CREATED, 1),
        (None, PermanentGatewayError("403"), _FENCED, ORDER_CREATED, 1),
        (_UNKNOWN, Approved("ch_1"), _FENCED, PAYMENT_RECONCILE, 0),
    ],
    ids=[
        "first-charge",
        "lookup-of-an-attempt",
        "charge-after-the-lookup",
        "lookup-after-a-refused-request",
        "reconcile-lookup",
    ],
)
async def test_a_gateway_request_refused_by_the_fence_propagates_and_writes_nothing_more(
    stored: PaymentRecord | None,
    charge: ChargeOutcome | BaseException,
    found: GatewayCharge | BaseException | None,
    topic: str,
    written: int,
) -> None:
    # The client raises Fenced before an attempt of stale work (a zombie's retry): the payment
    # service must let it reach Fence.run (redo, or leave it to the new owner), never turn it
    # into UNKNOWN, a decline, a dead letter or a retry. ``written``: new attempts recorded
    # (the write-ahead ATTEMPTING, made before the gateway was called).
    gateway = FakeGateway(charge, found)
    service, table, published = _service(gateway)
    dead_letters = RecordingDeadLetters()
    service.dead_letters = dead_letters
    if stored is not None:
        table.put(stored)
    value = encode_event(_CREATED) if topic == ORDER_CREATED else b'{"order_id": "o1"}'

    with pytest.raises(Fenced):
        await service.handle(_event(topic, value))

    after = table.rows["o1"]
    if written == 0:
        assert after == stored
    else:
        assert after.status is PaymentStatus.ATTEMPTING
        assert after.attempts == (stored.attempts if stored else 0) + written
    assert published == []
    assert dead_letters.sent == []
    assert service.unknown.due_at == {}  # nothing marked UNKNOWN for the reconciler
