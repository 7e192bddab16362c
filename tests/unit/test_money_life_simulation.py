"""An order's whole life through the real order and payment services, under random schedules.

The two services run over in-memory stores and topics (per-topic FIFO, any order across topics,
as Kafka delivers one partition of several topics), with a model of the gateway's ledger that
keeps each key's first answer and refuses over-refunds. Hypothesis draws the schedule: which
topic delivers next, duplicates, cancels and refunds at any moment, gateway calls that fail
before acting, lose their answer after acting, or crash the worker mid-call (the event is then
delivered again, as after a SIGKILL). After the schedule everything is drained without faults,
with the reconciler and the stall nudge running, and the end is checked against the ledger:

- every order ends in one non-PENDING state, and nothing is left owed;
- the gateway charged at most once, never refunded more than it charged;
- OrderDB's money is the ledger's money: captured = charged, refunded = given back;
- a CANCELLED order kept nothing; PAID / PARTIALLY_REFUNDED / REFUNDED say what the money says;
- nothing was dead-lettered (no contradiction between the services arose).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orderflow.agents.dead_letters import DeadLetters
from orderflow.agents.orders import OrderService, StalledOrders
from orderflow.agents.payments import PaymentService, UnknownPayments
from orderflow.domain.declines import decline_for
from orderflow.domain.events import CancelOrder, RefundOrder, rfc3339
from orderflow.domain.order import OrderStatus
from orderflow.domain.payment import Approved, ChargeOutcome, Declined, GatewayCharge
from orderflow.domain.refund import GatewayRefund, RefundDeclined, Refunded, RefundOutcome
from orderflow.gateway.base import ChargeRequest, RefundRequest, TransientGatewayError
from orderflow.ports import OutboundEvent
from orderflow.topics import (
    EVENT_TOPICS,
    ORDER_COMMANDS,
    PAYMENT_RECONCILE,
)
from orderflow.watch import OrderWatch
from orderflow.wire import encode_event, encode_reconcile
from orderflow.wire.dead_letters import DLQ_HEADER_REASON
from tests.fakes import FakeOrderStore, FakePaymentStore, FakeRecordTopic, event, no_sleep
from tests.unit.builders import ITEMS_TOTAL, pending_order, place_command

ORDER = "ord-1"
T0 = 1_714_564_800.0


class Crash(BaseException):
    """The worker died inside a gateway call (SIGKILL): nothing after it ran, nothing acked."""


@dataclass
class LedgerGateway:
    """The gateway's ledger: one charge per key, one refund per key, never beyond the charge.

    ``faults`` is consumed one per call: "ok", "error" (fails before acting), "lost" (acts,
    then the answer is lost), "crash" (acts, then the worker dies), "held" (a charge the
    gateway holds: no answer now, and it lands ``hold_s`` later, at the next call after that).
    """

    token_approves: bool
    clock: Callable[[], float]
    faults: deque[str] = field(default_factory=deque)
    charges: dict[str, tuple[str, bool, int]] = field(default_factory=dict)  # key -> id, ok, amt
    refunds: dict[str, tuple[str, bool, int, str]] = field(default_factory=dict)
    ids: itertools.count[int] = field(default_factory=itertools.count)
    held: list[tuple[float, ChargeRequest]] = field(default_factory=list)  # (lands at, charge)
    hold_s: float = 30.0

    def _fault(self) -> str:
        self.land_held()
        return self.faults.popleft() if self.faults else "ok"

    def land_held(self) -> None:
        """Held charges whose time has come land now (a no-op for a key already charged)."""
        now = self.clock()
        for landing in [h for h in self.held if h[0] <= now]:
            self.held.remove(landing)
            self._make_charge(landing[1])

    def _make_charge(self, request: ChargeRequest) -> None:
        if request.idempotency_key not in self.charges:
            charge_id = f"ch_{next(self.ids)}"
            self.charges[request.idempotency_key] = (charge_id, self.token_approves, request.amount)

    def refunded(self, charge_id: str) -> int:
        return sum(a for _, ok, a, c in self.refunds.values() if ok and c == charge_id)

    async def charge(self, request: ChargeRequest) -> ChargeOutcome:
        fault = self._fault()
        if fault == "error":
            raise TransientGatewayError("HTTP 503", status=503)
        if fault == "held":
            self.held.append((self.clock() + self.hold_s, request))
            raise TransientGatewayError("no answer in 5s")
        self._make_charge(request)
        if fault == "lost":
            raise TransientGatewayError("no answer in 5s")
        if fault == "crash":
            raise Crash
        return self._outcome(request.idempotency_key)

    def _outcome(self, key: str) -> ChargeOutcome:
        charge_id, ok, _ = self.charges[key]
        if ok:
            return Approved(charge_id)
        return Declined(decline_for("card_declined"), charge_id)

    async def find_charge(self, idempotency_key: str) -> GatewayCharge | None:
        if self._fault() == "error":
            raise TransientGatewayError("HTTP 503", status=503)
        if idempotency_key not in self.charges:
            return None
        _, _, amount = self.charges[idempotency_key]
        return GatewayCharge(self._outcome(idempotency_key), amount, "USD", ORDER)

    async def refund(self, request: RefundRequest) -> RefundOutcome:
        fault = self._fault()
        if fault == "error":
            raise TransientGatewayError("HTTP 503", status=503)
        if request.idempotency_key not in self.refunds:
            charged = [c for c in self.charges.values() if c[0] == request.charge_id and c[1]]
            left = charged[0][2] - self.refunded(request.charge_id) if charged else 0
            ok = request.amount <= left
            refund_id = f"re_{next(self.ids)}"
            self.refunds[request.idempotency_key] = (
                refund_id,
                ok,
                request.amount,
                request.charge_id,
            )
        if fault == "lost":
            raise TransientGatewayError("no answer in 5s")
        if fault == "crash":
            raise Crash
        return self._refund_outcome(request.idempotency_key)

    def _refund_outcome(self, key: str) -> RefundOutcome:
        refund_id, ok, _, _ = self.refunds[key]
        return Refunded(refund_id) if ok else RefundDeclined(decline_for("amount_too_large"))

    async def find_refund(self, idempotency_key: str) -> GatewayRefund | None:
        if self._fault() == "error":
            raise TransientGatewayError("HTTP 503", status=503)
        if idempotency_key not in self.refunds:
            return None
        _, _, amount, charge_id = self.refunds[idempotency_key]
        return GatewayRefund(self._refund_outcome(idempotency_key), amount, charge_id)

    async def close(self) -> None:
        return None


class Topics:
    """Every topic as a FIFO of encoded records for the one order."""

    def __init__(self) -> None:
        self.queues: dict[str, deque[bytes]] = {}
        self.offsets = itertools.count()

    async def publish(self, event: OutboundEvent) -> None:
        self.put(EVENT_TOPICS[event.event_type], encode_event(event))

    async def request_reconciliation(self, order_id: str) -> None:
        self.put(PAYMENT_RECONCILE, encode_reconcile(order_id))

    def put(self, topic: str, value: bytes) -> None:
        self.queues.setdefault(topic, deque()).append(value)

    def waiting(self) -> list[str]:
        return sorted(t for t, q in self.queues.items() if q)


class World:
    """The two services, their stores, the topics, the gateway and a clock."""

    def __init__(self, token_approves: bool) -> None:
        self.now = T0
        self.topics = Topics()
        self.gateway = LedgerGateway(token_approves, lambda: self.now)
        self.orders = FakeOrderStore()
        self.payments = FakePaymentStore()
        self.dead_letters = FakeRecordTopic()
        self.order_service = OrderService(
            self.orders,
            self.topics,
            DeadLetters(self.dead_letters, sleep=no_sleep),
            OrderWatch(),
            StalledOrders(stall_after=60.0),
            clock=lambda: self.now,
        )
        self.unknown = UnknownPayments()
        self.payment_service = PaymentService(
            self.payments,
            self.gateway,
            self.topics,
            DeadLetters(self.dead_letters, sleep=no_sleep),
            self.unknown,
            clock=lambda: self.now,
            settle_window=20.0,
            cancel_watch=200.0,
        )
        self.requests = itertools.count()

    async def deliver(self, topic: str, *, again: bool = False) -> None:
        """Hand the topic's next record to its consumer; a crash leaves it to come again."""
        queue = self.topics.queues[topic]
        value = queue[0]
        incoming = event(topic, value, key=ORDER.encode(), offset=next(self.topics.offsets))
        service = (
            self.order_service
            if topic in (ORDER_COMMANDS, *_ORDER_SERVICE_RESULTS)
            else self.payment_service
        )
        try:
            await service.handle(incoming)
        except Crash:
            return  # not acked: delivered again later
        if not again:
            queue.popleft()

    def command(self, command: CancelOrder | RefundOrder) -> None:
        self.topics.put(ORDER_COMMANDS, encode_event(command))

    def cancel(self) -> None:
        self.command(CancelOrder(ORDER, f"req-{next(self.requests)}", "", rfc3339(self.now)))

    def refund(self, key: str, amount: int) -> None:
        refund_id = f"rf_{key}"
        self.command(
            RefundOrder(
                ORDER,
                refund_id,
                amount,
                "USD",
                f"req-{next(self.requests)}",
                f"fp-{key}-{amount}",
                "",
                rfc3339(self.now),
            )
        )

    async def tick(self, seconds: float) -> None:
        """Time passes: the reconciler and the stall nudge look for due work."""
        self.now += seconds
        await self.payment_service.request_due_reconciliations()
        await self.order_service.nudge_stalled(lambda order_id: True)

    async def drain(self) -> None:
        """Deliver everything, faults off, with time passing, until nothing moves; then let
        every charge the gateway still holds land (it may be late), and drain again."""
        await self._drain()
        if self.gateway.held:
            self.now = max(at for at, _ in self.gateway.held)
            self.gateway.land_held()
            await self._drain()

    async def _drain(self) -> None:
        self.gateway.faults.clear()
        for _ in range(1000):
            while waiting := self.topics.waiting():
                for topic in waiting:
                    await self.deliver(topic)
            await self.tick(5.0)
            order = self.orders.get(ORDER)
            quiet = not self.topics.waiting() and not self.unknown.due_at
            settled = order is not None and order.status is not OrderStatus.PENDING
            if quiet and settled and order is not None and not order.awaiting_money:
                return
        raise AssertionError(f"never settled: {self.orders.get(ORDER)}")


_ORDER_SERVICE_RESULTS = (
    EVENT_TOPICS["payment.completed"],
    EVENT_TOPICS["payment.failed"],
    EVENT_TOPICS["payment.refunded"],
    EVENT_TOPICS["refund.failed"],
)

STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("deliver"), st.integers(0, 8), st.booleans()),
        st.tuples(st.just("cancel"), st.just(0), st.just(False)),
        st.tuples(
            st.just("refund"),
            st.sampled_from([1, ITEMS_TOTAL // 2, ITEMS_TOTAL, ITEMS_TOTAL + 1]),
            st.booleans(),
        ),
        st.tuples(st.just("tick"), st.sampled_from([1, 30, 90]), st.just(False)),
    ),
    max_size=40,
)
FAULTS = st.lists(st.sampled_from(["ok", "ok", "error", "lost", "crash", "held"]), max_size=12)


async def _run(world: World, steps: list[tuple[str, int, bool]]) -> None:
    keys = itertools.count()
    for kind, n, flag in steps:
        if kind == "deliver" and (waiting := world.topics.waiting()):
            await world.deliver(waiting[n % len(waiting)], again=flag)
        elif kind == "cancel":
            world.cancel()
        elif kind == "refund":
            # flag: the same request again (its Idempotency-Key), or a new refund
            world.refund(str(next(keys) if not flag else 0), n)
        elif kind == "tick":
            await world.tick(float(n))
    await world.drain()


def _check(world: World) -> None:
    order = world.orders.get(ORDER)
    assert order is not None
    ledger = world.gateway
    assert len(ledger.charges) <= 1, "charged under more than one key"
    charged = next((amount for _, ok, amount in ledger.charges.values() if ok), 0)
    charge_id = next((cid for cid, ok, _ in ledger.charges.values() if ok), None)
    given_back = ledger.refunded(charge_id) if charge_id else 0
    assert given_back <= charged
    assert (order.captured, order.refunded) == (charged, given_back), order
    if order.status is OrderStatus.CANCELLED:
        assert charged == given_back, "a cancelled order kept money"
    elif order.status is OrderStatus.PAID:
        assert charged == order.amount and given_back == 0
    elif order.status is OrderStatus.PARTIALLY_REFUNDED:
        assert 0 < given_back < charged
    elif order.status is OrderStatus.REFUNDED:
        assert 0 < given_back == charged
    else:
        assert order.status is OrderStatus.PAYMENT_FAILED and charged == 0
    assert not order.awaiting_money
    assert world.dead_letters.header(DLQ_HEADER_REASON) == []
    assert not ledger.held


@settings(max_examples=300, deadline=None)
@given(STEPS, FAULTS, st.booleans())
async def test_every_schedule_ends_with_the_order_s_money_equal_to_the_ledger_s(
    steps: list[tuple[str, int, bool]], faults: list[str], approves: bool
) -> None:
    world = World(token_approves=approves)
    world.gateway.faults.extend(faults)
    token = "tok_visa" if approves else "tok_chargeDeclined"
    world.topics.put(
        ORDER_COMMANDS, encode_event(place_command(order_id=ORDER, payment_token=token))
    )

    await _run(world, steps)

    _check(world)


async def test_a_cancel_before_the_payment_service_reads_the_order_is_never_charged() -> None:
    world = World(token_approves=True)
    world.topics.put(ORDER_COMMANDS, encode_event(place_command(order_id=ORDER)))
    await world.deliver(ORDER_COMMANDS)  # placed: order.created waits on its topic
    world.cancel()
    await world.deliver(ORDER_COMMANDS)  # cancelled: order.cancelled waits too
    await world.deliver(EVENT_TOPICS["order.cancelled"])  # the payment service reads it first

    await world.drain()

    assert world.gateway.charges == {}
    order = world.orders.get(ORDER)
    assert order is not None and order.status is OrderStatus.CANCELLED
    assert world.payments.rows[ORDER].status.value == "VOIDED"


async def test_a_cancel_racing_a_successful_charge_ends_cancelled_with_one_refund() -> None:
    world = World(token_approves=True)
    world.topics.put(ORDER_COMMANDS, encode_event(place_command(order_id=ORDER)))
    await world.deliver(ORDER_COMMANDS)
    world.cancel()
    await world.deliver(ORDER_COMMANDS)  # CANCELLED in OrderDB ...
    await world.deliver(EVENT_TOPICS["order.created"])  # ... while the charge goes through

    await world.drain()

    order = world.orders.get(ORDER)
    assert order is not None and order.status is OrderStatus.CANCELLED
    assert len(world.gateway.refunds) == 1
    ((_, ok, amount, _),) = world.gateway.refunds.values()
    assert ok and amount == ITEMS_TOTAL == order.refunded == order.captured
    _check(world)


async def test_a_refund_whose_answer_is_lost_ends_exactly_once() -> None:
    world = World(token_approves=True)
    world.topics.put(ORDER_COMMANDS, encode_event(place_command(order_id=ORDER)))
    await world.drain()
    world.gateway.faults.extend(["lost"])  # the refund happens; its answer never arrives
    world.refund("k", 1000)
    while waiting := world.topics.waiting():
        await world.deliver(waiting[0])
    assert world.payments.rows[ORDER].refunds[0].status.value == "UNKNOWN"

    await world.drain()

    order = world.orders.get(ORDER)
    assert order is not None and order.status is OrderStatus.PARTIALLY_REFUNDED
    assert [amount for _, _, amount, _ in world.gateway.refunds.values()] == [1000]
    _check(world)


def test_the_simulation_notices_a_double_charge() -> None:
    # The checker itself can fail: a second key charged is caught.
    world = World(token_approves=True)
    world.gateway.charges = {"a": ("ch_1", True, 10), "b": ("ch_2", True, 10)}
    world.orders.put(dataclasses.replace(pending_order(order_id=ORDER), captured=10))
    with pytest.raises(AssertionError, match="charged under more than one key"):
        _check(world)


async def test_a_charge_the_gateway_held_past_the_client_s_deadline_is_refunded_after_a_cancel() -> (
    None
):
    world = World(token_approves=True)
    world.gateway.faults.extend(["held"])  # no answer; the charge lands 30 s later
    world.topics.put(ORDER_COMMANDS, encode_event(place_command(order_id=ORDER)))
    await world.deliver(ORDER_COMMANDS)
    await world.deliver(EVENT_TOPICS["order.created"])  # the charge request goes out, held
    world.cancel()
    await world.deliver(ORDER_COMMANDS)
    await world.deliver(EVENT_TOPICS["order.cancelled"])  # cancelled while the charge is held

    await world.drain()

    order = world.orders.get(ORDER)
    assert order is not None and order.status is OrderStatus.CANCELLED
    assert [ok for _, ok, _ in world.gateway.charges.values()] == [True]  # it did land
    assert (order.captured, order.refunded) == (ITEMS_TOTAL, ITEMS_TOTAL)
    _check(world)
