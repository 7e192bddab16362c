"""The payment service's handling of gateway answers and failures (fakes of its ports).

Every test goes through ``handle`` (or ``handle_batch``), as the payment agent does: the event
reaches the dead-letter guard, which parks what the service raises.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable

import pytest
from aiokafka.errors import KafkaTimeoutError

from orderflow.agents.dead_letters import DeadLetters
from orderflow.agents.payments import PaymentService, UnknownPayments
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
from orderflow.gateway.base import PermanentGatewayError, TransientGatewayError
from orderflow.ports import InboundMessage
from orderflow.topics import ORDER_CREATED, PAYMENT_RECONCILE
from orderflow.wire import encode_event
from orderflow.wire.dead_letters import DLQ_HEADER_REASON
from tests.fakes import (
    Event,
    FakeGateway,
    FakePaymentStore,
    FakePublisher,
    FakeRecordTopic,
    event,
    no_sleep,
)

_CREATED = OrderCreated("o1", "c-1", "EUR", 500, (), "tok_visa", "2026-01-01T00:00:00Z")


class Stack:
    """A payment service over fakes: its table, publisher, gateway and dead-letter topic."""

    def __init__(
        self,
        gateway: FakeGateway,
        payments: FakePaymentStore | None = None,
    ) -> None:
        self.gateway = gateway
        self.payments = payments or FakePaymentStore()
        self.published = FakePublisher()
        self.dead_letter_topic = FakeRecordTopic()
        self.dead_letters = DeadLetters(self.dead_letter_topic, sleep=no_sleep)
        self.service = PaymentService(
            self.payments,
            gateway,
            self.published,
            self.dead_letters,
            UnknownPayments(),
            clock=lambda: 1000.0,
        )

    @property
    def rows(self) -> dict[str, PaymentRecord]:
        return self.payments.rows

    def reasons(self) -> list[str]:
        return self.dead_letter_topic.header(DLQ_HEADER_REASON)


def _created(order_id: str = "o1", token: str = "tok_visa") -> Event:
    created = dataclasses.replace(_CREATED, order_id=order_id, payment_token=token)
    return event(ORDER_CREATED, encode_event(created), key=order_id.encode())


def _reconcile_request(order_id: str = "o1") -> Event:
    value = b'{"order_id": "%s"}' % order_id.encode()
    return event(PAYMENT_RECONCILE, value, key=order_id.encode())


def _record() -> PaymentRecord:
    return PaymentRecord.first_attempt("o1", 500, "EUR", "tok_visa")


async def test_timeout_makes_the_payment_unknown_never_failed() -> None:
    stack = Stack(FakeGateway(TransientGatewayError("timed out")))
    await stack.service.handle(_created())
    assert stack.rows["o1"].status is PaymentStatus.UNKNOWN
    assert stack.published.events == []
    assert stack.service.unknown.due_at["o1"] > 1000.0
    assert stack.reasons() == []


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
    stack = Stack(FakeGateway(PermanentGatewayError("403"), found))
    await stack.service.handle(_created())
    assert stack.rows["o1"].status is status
    assert stack.rows["o1"].charge_id == charge_id
    assert stack.published.kinds() == [
        "payment.completed" if status is PaymentStatus.COMPLETED else "payment.failed"
    ]


async def test_a_refused_request_fails_with_a_fixed_public_message_not_the_gateways_reply() -> None:
    # The error's text (once: the gateway URL and 200 bytes of its reply) must not reach the
    # decline message, hence payment.failed, PaymentDB and GET /orders.
    leak = "POST https://gw.example/v1/charges: HTTP 403: key sk_live_42 is not allowed"
    stack = Stack(FakeGateway(PermanentGatewayError(leak), None))
    await stack.service.handle(_created())
    decline = stack.rows["o1"].decline
    assert decline is not None
    assert (decline.code, decline.message) == (
        "gateway_rejected",
        "The payment could not be processed.",
    )
    assert stack.published.kinds() == ["payment.failed"]
    sent = encode_event(stack.published.events[0])
    assert b"gw.example" not in sent and b"sk_live_42" not in sent


async def test_refused_request_with_an_unreachable_gateway_record_stays_unknown() -> None:
    stack = Stack(FakeGateway(PermanentGatewayError("403"), TransientGatewayError("down")))
    await stack.service.handle(_created())
    assert stack.rows["o1"].status is PaymentStatus.UNKNOWN
    assert stack.published.events == []


async def test_decline_is_published_as_payment_failed_with_its_code() -> None:
    decline = Decline("card_declined", "The card was declined.", False)
    stack = Stack(FakeGateway(Declined(decline, "ch_1")))
    await stack.service.handle(_created())
    assert stack.rows["o1"].decline == decline
    assert stack.published.kinds() == ["payment.failed"]
    assert b'"code":"card_declined"' in encode_event(stack.published.events[0])


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
    stack = Stack(FakeGateway(PermanentGatewayError("400"), found))
    await stack.service.handle(_created())
    assert stack.rows["o1"].status is PaymentStatus.INCONSISTENT
    assert stack.rows["o1"].charge_id is None
    assert stack.published.events == []
    assert stack.service.inconsistent == 1
    assert "o1" not in stack.service.unknown.due_at  # the reconciler leaves it alone
    (reason,) = stack.reasons()  # the alert an operator sees
    assert reason.startswith("inconsistent:") and "ch_foreign" in reason


@pytest.mark.parametrize("found", _FOREIGN, ids=_FOREIGN_IDS)
async def test_reconciler_finding_a_foreign_charge_marks_it_inconsistent_and_charges_nothing(
    found: GatewayCharge,
) -> None:
    stack = Stack(FakeGateway(Approved("ch_new"), found))
    stack.payments.put(_record().unknown(900.0))
    await stack.service.handle(_reconcile_request())
    assert stack.rows["o1"].status is PaymentStatus.INCONSISTENT
    assert stack.gateway.requests == []
    assert stack.published.events == []
    assert [r.split(":")[0] for r in stack.reasons()] == ["inconsistent"]


async def test_reconciler_settles_from_the_gateways_matching_charge_without_charging() -> None:
    gateway = FakeGateway(Approved("ch_new"), GatewayCharge(Approved("ch_1"), 500, "EUR", "o1"))
    stack = Stack(gateway)
    stack.payments.put(_record().unknown(900.0))
    await stack.service.handle(_reconcile_request())
    assert stack.rows["o1"].status is PaymentStatus.COMPLETED
    assert stack.rows["o1"].charge_id == "ch_1"
    assert gateway.requests == []
    assert stack.published.kinds() == ["payment.completed"]


async def test_reconciler_whose_lookup_fails_asks_again_later_and_never_charges_blind() -> None:
    # Gateways expire idempotency keys (about 24 h): a charge sent without knowing whether the
    # first one landed could be a second charge. Only a lookup that finds nothing allows one.
    gateway = FakeGateway(Approved("ch_new"), TransientGatewayError("lookup timed out"))
    stack = Stack(gateway)
    stack.payments.put(_record().unknown(900.0))
    await stack.service.handle(_reconcile_request())
    assert gateway.requests == []
    assert stack.rows["o1"].status is PaymentStatus.UNKNOWN
    assert stack.service.unknown.due_at["o1"] > 1000.0
    assert stack.published.events == []


async def test_reconciler_whose_lookup_finds_nothing_charges_with_the_same_key() -> None:
    gateway = FakeGateway(Approved("ch_new"), None)
    stack = Stack(gateway)
    stack.payments.put(_record().unknown(900.0))
    await stack.service.handle(_reconcile_request())
    assert [r.idempotency_key for r in gateway.requests] == [idempotency_key_for("o1")]
    assert stack.rows["o1"].charge_id == "ch_new"
    assert stack.published.kinds() == ["payment.completed"]


async def test_a_reconcile_request_for_a_settled_payment_changes_nothing() -> None:
    gateway = FakeGateway(Approved("ch_new"), None)
    stack = Stack(gateway)
    settled = _record().attempt(900.0).settle(Approved("ch_1"), 900.0)
    stack.payments.put(settled)
    await stack.service.handle(_reconcile_request())
    assert gateway.requests == [] and gateway.lookups == []
    assert stack.rows["o1"] == settled and stack.published.events == []


async def test_a_reconcile_request_not_keyed_by_its_order_is_dead_lettered() -> None:
    stack = Stack(FakeGateway(Approved("ch_new"), None))
    stack.payments.put(_record().unknown(900.0))
    wrong_key = event(PAYMENT_RECONCILE, b'{"order_id": "o1"}', key=b"o2")
    await stack.service.handle(wrong_key)
    assert stack.gateway.requests == [] and stack.gateway.lookups == []
    assert stack.reasons() == ["malformed: reconcile request: order_id missing or not the key"]


async def test_order_created_again_for_a_payment_left_attempting_looks_it_up_before_charging() -> (
    None
):
    # A crash between "ATTEMPTING" and the gateway's answer: the charge may have landed.
    gateway = FakeGateway(Approved("ch_new"), GatewayCharge(Approved("ch_1"), 500, "EUR", "o1"))
    stack = Stack(gateway)
    stack.payments.put(_record().attempt(900.0))
    await stack.service.handle(_created())
    assert gateway.requests == []
    assert (stack.rows["o1"].status, stack.rows["o1"].charge_id) == (
        PaymentStatus.COMPLETED,
        "ch_1",
    )
    assert stack.published.kinds() == ["payment.completed"]


async def test_each_failed_lookup_waits_longer_up_to_the_cap_and_counts_no_charge_attempt() -> None:
    gateway = FakeGateway(Approved("ch_new"), TransientGatewayError("lookup timed out"))
    stack = Stack(gateway)
    now = [1000.0]
    stack.service.clock = lambda: now[0]
    stack.payments.put(_record().attempt(1000.0).unknown(1000.0))
    delays = []
    for _ in range(7):
        now[0] = stack.rows["o1"].next_attempt_at
        await stack.service.handle(_reconcile_request())
        delays.append(stack.rows["o1"].next_attempt_at - now[0])
    assert delays == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert stack.rows["o1"].attempts == 1
    assert gateway.requests == []


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(100):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never met")


async def test_the_gateway_is_called_only_once_the_attempting_record_is_delivered() -> None:
    # A crash after a charge whose ATTEMPTING record never reached the changelog: the next owner
    # would see no record and charge without looking up (unsafe once the gateway key expired).
    gateway = FakeGateway(Approved("ch_1"))
    stack = Stack(gateway, FakePaymentStore(hold=True))
    batch = [_created(f"o{i}") for i in range(3)]
    charges = asyncio.ensure_future(stack.service.handle_batch(batch))
    await _until(lambda: len(stack.payments.deliveries) == 3)  # one round trip for the batch
    assert gateway.requests == []
    assert {r.status for r in stack.rows.values()} == {PaymentStatus.ATTEMPTING}
    for future in stack.payments.deliveries:
        future.set_result(None)
    await charges
    assert len(gateway.requests) == 3
    assert {r.status for r in stack.rows.values()} == {PaymentStatus.COMPLETED}


class _BrokerAway(Exception):
    """Raised by the guard's backoff sleep: the test stops the retry loop there."""


async def test_an_attempting_record_that_is_not_delivered_stops_the_charge_and_is_retried() -> None:
    gateway = FakeGateway(Approved("ch_1"))
    stack = Stack(gateway, FakePaymentStore(fail=KafkaTimeoutError()))
    waits: list[float] = []

    async def stop_at_the_retry(delay: float) -> None:
        waits.append(delay)
        raise _BrokerAway

    stack.dead_letters.sleep = stop_at_the_retry
    with pytest.raises(_BrokerAway):
        await stack.service.handle(_created())
    assert waits == [0.1]  # the guard was about to handle the event again, not dead-letter it
    assert gateway.requests == []
    assert stack.published.events == [] and stack.reasons() == []
    assert stack.rows["o1"].status is PaymentStatus.ATTEMPTING


async def test_an_event_whose_attempting_record_failed_is_retried_by_the_guard_and_looked_up() -> (
    None
):
    gateway = FakeGateway(Approved("ch_1"), None)
    stack = Stack(gateway, FakePaymentStore(fail=KafkaTimeoutError()))

    async def broker_back(delay: float) -> None:
        stack.payments.fail = None

    stack.dead_letters.sleep = broker_back
    await stack.service.handle(_created())
    assert gateway.lookups == [idempotency_key_for("o1")]  # an attempt was recorded: look first
    assert len(gateway.requests) == 1
    assert stack.rows["o1"].status is PaymentStatus.COMPLETED
    assert stack.published.kinds() == ["payment.completed"]


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
    stack = Stack(FakeGateway(charge, found))
    if stored is not None:
        stack.payments.put(stored)
    request = _created() if topic == ORDER_CREATED else _reconcile_request()

    with pytest.raises(Fenced):
        await stack.service.handle(request)

    after = stack.rows["o1"]
    if written == 0:
        assert after == stored
    else:
        assert after.status is PaymentStatus.ATTEMPTING
        assert after.attempts == (stored.attempts if stored else 0) + written
    assert stack.published.events == []
    assert stack.reasons() == []
    assert stack.service.unknown.due_at == {}  # nothing marked UNKNOWN for the reconciler


# -- the batch: one order's events in order, different orders at once --------------------------


async def test_a_batch_handles_one_orders_events_in_offset_order_never_at_once() -> None:
    # Two copies of one order.created in a batch (a redelivery): the second must see the first's
    # settled record (and republish), never a record mid-charge (which would look it up).
    gateway = FakeGateway(Approved("ch_1"), None)
    gateway.gate = asyncio.Event()
    stack = Stack(gateway)
    first, again = _created(), _created()
    again = dataclasses.replace(again, message=dataclasses.replace(again.message, offset=1))
    batch = asyncio.ensure_future(stack.service.handle_batch([first, again]))
    await _until(lambda: gateway.in_flight == ["o1"])
    await asyncio.sleep(0)
    assert len(gateway.requests) == 1  # the copy waits behind the charge of the first
    gateway.gate.set()
    await batch
    assert len(gateway.requests) == 1 and gateway.lookups == []
    assert gateway.most_in_flight == 1
    assert stack.published.kinds() == ["payment.completed", "payment.completed"]


async def test_a_batch_charges_different_orders_at_once_whatever_their_partitions() -> None:
    gateway = FakeGateway(Approved("ch_1"))
    gateway.gate = asyncio.Event()
    stack = Stack(gateway)
    # o1 and o2 on partition 3 (one partition's charges overlap), o3 on partition 5.
    batch = [
        dataclasses.replace(e, message=dataclasses.replace(e.message, partition=p, offset=n))
        for n, (e, p) in enumerate(((_created("o1"), 3), (_created("o2"), 3), (_created("o3"), 5)))
    ]
    handling = asyncio.ensure_future(stack.service.handle_batch(batch))
    await _until(lambda: len(gateway.in_flight) == 3)  # all three wait on the gateway together
    gateway.gate.set()
    await handling
    assert sorted(gateway.finished) == ["o1", "o2", "o3"]
    assert {e.order_id for e in stack.published.outcomes()} == {"o1", "o2", "o3"}


async def test_a_batch_runs_each_event_through_run_event_with_its_partition_and_key() -> None:
    stack = Stack(FakeGateway(Approved("ch_1")))
    seen: list[tuple[int, bytes | None, int]] = []

    async def run_event(
        partition: int,
        handle: Callable[[], Awaitable[None]],
        key: bytes | None,
        message: InboundMessage,
    ) -> bool:
        seen.append((partition, key, message.offset))  # the offset: held while a redo waits
        await handle()
        return True

    stack.service.run_event = run_event
    created = _created("o7")
    await stack.service.handle_batch(
        [dataclasses.replace(created, message=dataclasses.replace(created.message, partition=6))]
    )
    assert seen == [(6, b"o7", 0)]
