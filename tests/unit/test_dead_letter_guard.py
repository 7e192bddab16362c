"""The dead-letter guard: what a handler raises decides whether its event is parked (and with which
reason), handled again, or let through; and what a dead letter carries."""

from __future__ import annotations

import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from orderflow.agents.dead_letters import DeadLetters
from orderflow.domain.errors import (
    ChargeMismatchError,
    EventDecodeError,
    PaymentTokenGoneError,
)
from orderflow.ports import InboundEvent
from orderflow.wire.dead_letters import (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_OFFSET,
    DLQ_HEADER_PARTITION,
    DLQ_HEADER_REASON,
    DLQ_HEADER_TOPIC,
)
from tests.fakes import Event, FakeRecordTopic, Message, no_sleep

_EVENT = Event(
    Message(
        "order.created",
        4,
        17,
        b"o1",
        b'{"payment": {"token": "tok_visa"}}',
        (("traceparent", b"00-abc-01"), ("orderflow-dlq-reason", b"an older one")),
    )
)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (EventDecodeError("amount: expected an integer"), "malformed: amount: expected an integer"),
        (ChargeMismatchError("charge ch_x is 499 EUR"), "inconsistent: charge ch_x is 499 EUR"),
        (PaymentTokenGoneError(), str(PaymentTokenGoneError())),
        (ValueError("a bug"), "unexpected: ValueError('a bug')"),
    ],
    ids=["malformed", "inconsistent", "token-gone", "a-bug"],
)
async def test_what_the_handler_raises_names_the_dead_letters_reason(
    error: Exception, reason: str
) -> None:
    topic = FakeRecordTopic()
    dead_letters = DeadLetters(topic, sleep=no_sleep)
    calls: list[int] = []

    async def handle(_: InboundEvent) -> None:
        calls.append(1)
        raise error

    await dead_letters.guard(_EVENT, handle)

    assert calls == [1]  # parked at once, never handled again
    assert topic.header(DLQ_HEADER_REASON) == [reason]
    assert topic.header(DLQ_HEADER_ERROR) == [type(error).__name__]
    assert dead_letters.count == 1


async def test_a_dead_letter_keeps_the_bytes_and_says_where_they_came_from() -> None:
    topic = FakeRecordTopic()
    dead_letters = DeadLetters(topic, sleep=no_sleep)
    reasons: list[str] = []
    dead_letters.on_sent = reasons.append

    await dead_letters.send(_EVENT, "payment result for an unknown order")

    (parked,) = topic.sent
    assert (parked.key, parked.value) == (_EVENT.message.key, _EVENT.message.value)
    names = [name for name, _ in parked.headers]
    # Ours first, then the original headers, except an earlier dead letter's own.
    assert names[:6] == [
        DLQ_HEADER_REASON,
        DLQ_HEADER_ERROR,
        DLQ_HEADER_TOPIC,
        DLQ_HEADER_PARTITION,
        DLQ_HEADER_OFFSET,
        "orderflow-dlq-failed-at",
    ]
    assert names[6:] == ["traceparent"]
    headers = dict(parked.headers)
    assert (headers[DLQ_HEADER_TOPIC], headers[DLQ_HEADER_PARTITION]) == (b"order.created", b"4")
    assert headers[DLQ_HEADER_OFFSET] == b"17"
    assert reasons == ["payment result for an unknown order"]


async def test_a_reason_quoting_a_payment_token_is_masked() -> None:
    topic = FakeRecordTopic()
    await DeadLetters(topic, sleep=no_sleep).send(_EVENT, "refused: token tok_visa_4242424242")
    (reason,) = topic.header(DLQ_HEADER_REASON)
    assert "4242424242" not in reason


async def test_a_dead_letter_the_broker_cannot_take_now_is_sent_again_until_it_can() -> None:
    topic = FakeRecordTopic(refuse=[KafkaConnectionError(), KafkaConnectionError()])
    waits: list[float] = []

    async def sleep(delay: float) -> None:
        waits.append(delay)

    dead_letters = DeadLetters(topic, sleep=sleep)
    await dead_letters.send(_EVENT, "malformed: x")
    assert len(topic.sent) == 1 and dead_letters.count == 1
    assert waits == [0.1, 0.2]  # backing off
    assert dead_letters.undeliverable == 0


async def test_a_dead_letter_the_broker_refuses_for_good_is_counted_and_given_up() -> None:
    topic = FakeRecordTopic(refuse=[MessageSizeTooLargeError()])
    dead_letters = DeadLetters(topic, sleep=no_sleep)
    await dead_letters.send(_EVENT, "malformed: x")
    assert topic.sent == []
    assert (dead_letters.undeliverable, dead_letters.count) == (1, 0)


async def test_a_handler_that_succeeds_sends_no_dead_letter() -> None:
    topic = FakeRecordTopic()
    handled: list[InboundEvent] = []

    async def handle(event: InboundEvent) -> None:
        handled.append(event)

    await DeadLetters(topic, sleep=no_sleep).guard(_EVENT, handle)
    assert handled == [_EVENT] and topic.sent == []
