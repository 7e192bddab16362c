"""Telling a stuck agent (``InFlight``) and which dead-letter send errors are worth retrying."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotLeaderForPartitionError,
    TopicAuthorizationFailedError,
)
from faust.exceptions import ProducerSendError

from orderflow.agents.dead_letters import DeadLetters, is_retriable
from orderflow.agents.in_flight import InFlight
from orderflow.fencing import Fenced
from orderflow.ports import InboundEvent
from tests.fakes import Event, FakeRecordTopic, event, no_sleep


def _event(topic: str, partition: int, offset: int) -> Any:
    return SimpleNamespace(message=SimpleNamespace(topic=topic, partition=partition, offset=offset))


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_event_held_longer_than_the_bound_is_reported_with_its_coordinates() -> None:
    clock = Clock()
    in_flight = InFlight(clock=lambda: 1_700_000_000.0, monotonic=clock)
    with in_flight.handling(
        "payment-service", [_event("order.created", 3, 41), _event("order.created", 5, 7)]
    ):
        clock.now += 5
        assert in_flight.stuck(10) == []
        clock.now += 6
        stuck = in_flight.stuck(10)
        assert [(s.agent, s.topic, s.partition, s.offset) for s in stuck] == [
            ("payment-service", "order.created", 3, 41),
            ("payment-service", "order.created", 5, 7),
        ]
        assert stuck[0].to_json()["since"] == "2023-11-14T22:13:20.000Z"
        assert stuck[0].seconds == pytest.approx(11)
    assert in_flight.stuck(10) == []  # done: nothing held


def test_a_new_batch_is_not_stuck_because_an_earlier_one_took_long() -> None:
    clock = Clock()
    in_flight = InFlight(monotonic=clock)
    with in_flight.handling("order-service", [_event("t", 0, 1)]):
        clock.now += 30
    with in_flight.handling("order-service", [_event("t", 0, 2)]):
        clock.now += 1
        assert in_flight.stuck(10) == []


def _wrapped(exc: Exception) -> ProducerSendError:
    try:
        raise ProducerSendError(f"Error while sending: {exc!r}") from exc
    except ProducerSendError as wrapped:
        return wrapped


@pytest.mark.parametrize(
    ("error", "retriable"),
    [
        pytest.param(MessageSizeTooLargeError(), False, id="too-large"),
        pytest.param(TopicAuthorizationFailedError(), False, id="authorization"),
        pytest.param(_wrapped(MessageSizeTooLargeError()), False, id="too-large-at-enqueue"),
        pytest.param(KafkaTimeoutError(), True, id="delivery-timeout"),
        pytest.param(_wrapped(KafkaTimeoutError()), True, id="topic-metadata-timeout"),
        pytest.param(KafkaConnectionError(), True, id="connection"),
        pytest.param(NotLeaderForPartitionError(), True, id="leader-moved"),
        pytest.param(ProducerSendError("no cause"), True, id="unknown-cause"),
    ],
)
def test_which_dead_letter_errors_are_retried(error: Exception, retriable: bool) -> None:
    assert is_retriable(error) is retriable


def _message_event() -> Event:
    return event("order.created", b"{}", key=b"o1", partition=2, offset=9)


async def test_a_handler_that_cannot_send_while_the_broker_is_away_is_retried_not_dead_lettered() -> (
    None
):
    topic = FakeRecordTopic()
    dead_letters = DeadLetters(topic, sleep=no_sleep)
    calls: list[int] = []

    async def handle(_: InboundEvent) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise _wrapped(KafkaTimeoutError())

    await dead_letters.guard(_message_event(), handle)

    assert len(calls) == 3  # handled again (it is idempotent) until the send went through
    assert topic.sent == [] and dead_letters.count == 0


async def test_a_handler_error_that_no_retry_can_fix_is_dead_lettered() -> None:
    topic = FakeRecordTopic()
    dead_letters = DeadLetters(topic)

    async def handle(_: InboundEvent) -> None:
        raise _wrapped(MessageSizeTooLargeError())

    await dead_letters.guard(_message_event(), handle)

    assert len(topic.sent) == 1 and dead_letters.count == 1


async def test_a_dead_letter_refused_by_the_fence_is_not_sent_and_the_refusal_propagates() -> None:
    topic = FakeRecordTopic()
    dead_letters = DeadLetters(topic, before_send=_refuse)

    async def handle(_: InboundEvent) -> None:
        raise _wrapped(MessageSizeTooLargeError())

    with pytest.raises(Fenced):  # Fence.run redoes the handler once the assignment settled
        await dead_letters.guard(_message_event(), handle)
    assert topic.sent == [] and dead_letters.count == 0


def _refuse() -> None:
    raise Fenced("rebalancing")


async def test_sends_again_after_delays_doubling_from_a_tenth_of_a_second_to_five() -> None:
    slept: list[float] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)

    dead_letters = DeadLetters(FakeRecordTopic(), sleep=sleep)

    async def handle(_: InboundEvent) -> None:
        if len(slept) < 8:
            raise _wrapped(KafkaTimeoutError())

    await dead_letters.guard(_message_event(), handle)

    assert slept == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])


def test_a_stuck_event_is_shown_with_every_field_in_order() -> None:
    stuck = InFlight(clock=lambda: 1_700_000_000.0, monotonic=Clock())
    with stuck.handling("order-service", [_event("order.commands", 1, 5)]):
        report = stuck.stuck(-1)[0].to_json()

    assert list(report) == ["agent", "topic", "partition", "offset", "since", "seconds"]
    assert report == {
        "agent": "order-service",
        "topic": "order.commands",
        "partition": 1,
        "offset": 5,
        "since": "2023-11-14T22:13:20.000Z",
        "seconds": 0.0,
    }
