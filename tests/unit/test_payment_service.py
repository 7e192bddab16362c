"""The payment service's handling of gateway answers and failures (fake gateway, fake table)."""

from __future__ import annotations

from typing import Any

import pytest

from orderflow.agents.payments import PaymentService, UnknownPayments
from orderflow.domain.payment import (
    Approved,
    ChargeOutcome,
    Decline,
    Declined,
    PaymentRecord,
    PaymentStatus,
    idempotency_key_for,
)
from orderflow.gateway.base import (
    ChargeRequest,
    PermanentGatewayError,
    TransientGatewayError,
)


class FakeGateway:
    """Answers ``charge`` and ``find_charge`` from scripted outcomes or errors."""

    def __init__(self, charge: ChargeOutcome | Exception, found: Any = None) -> None:
        self.charge_answer = charge
        self.found = found
        self.requests: list[ChargeRequest] = []

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        self.requests.append(request)
        if isinstance(self.charge_answer, Exception):
            raise self.charge_answer
        return self.charge_answer

    async def find_charge(self, idempotency_key: str) -> ChargeOutcome | None:
        if isinstance(self.found, Exception):
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

    def values(self) -> list[PaymentRecord]:
        return list(self.rows.values())


def _service(gateway: FakeGateway) -> tuple[PaymentService, FakeTable, list[tuple[str, bytes]]]:
    table = FakeTable()
    published: list[tuple[str, bytes]] = []

    async def get_gateway() -> FakeGateway:
        return gateway

    async def publish(topic: str, key: bytes, value: bytes) -> None:
        published.append((topic, value))

    service = PaymentService(table, get_gateway, publish, None, UnknownPayments(),  # type: ignore[arg-type]
                             clock=lambda: 1000.0)  # fmt: skip
    return service, table, published


def _record() -> PaymentRecord:
    return PaymentRecord("o1", idempotency_key_for("o1"), 500, "EUR", PaymentStatus.ATTEMPTING,
                         payment_token="tok_visa")  # fmt: skip


async def test_timeout_makes_the_payment_unknown_never_failed() -> None:
    service, table, published = _service(FakeGateway(TransientGatewayError("timed out")))
    await service._charge(_record())
    assert table.rows["o1"].status is PaymentStatus.UNKNOWN
    assert published == []
    assert service.unknown.due_at["o1"] > 1000.0


@pytest.mark.parametrize(
    ("found", "status", "charge_id"),
    [
        (Approved("ch_earlier"), PaymentStatus.COMPLETED, "ch_earlier"),
        (None, PaymentStatus.FAILED, None),
    ],
    ids=["an-earlier-attempt-charged", "the-gateway-has-no-charge"],
)
async def test_refused_request_is_settled_by_the_gateways_record_for_the_key(
    found: ChargeOutcome | None, status: PaymentStatus, charge_id: str | None
) -> None:
    service, table, published = _service(FakeGateway(PermanentGatewayError("403"), found))
    await service._charge(_record())
    assert table.rows["o1"].status is status
    assert table.rows["o1"].charge_id == charge_id
    assert [topic for topic, _ in published] == [
        "payment.completed" if status is PaymentStatus.COMPLETED else "payment.failed"
    ]


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
