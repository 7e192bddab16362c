"""What /health answers: stuck agents and rebalances or recoveries that never end are 503."""

from __future__ import annotations

from typing import Any

from orderflow.agents.in_flight import InFlight
from orderflow.health import Liveness
from orderflow.web.routing import OwnerLookup


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _liveness(routing: OwnerLookup, in_flight: InFlight | None = None) -> Liveness:
    return Liveness(
        in_flight or InFlight(),
        routing.unready_for,
        lambda: {"dead_letters": 0},
        stuck_after_s=60,
        recovery_deadline_s=300,
    )


def _event(partition: int, offset: int) -> Any:
    message = type("M", (), {"topic": "order.created", "partition": partition, "offset": offset})
    return type("E", (), {"message": message})()


def test_a_recovery_that_never_ends_answers_503_once_past_its_deadline() -> None:
    clock = _Clock()
    routing = OwnerLookup(object(), "OrderDB", monotonic=clock)
    routing.mark_settled()
    routing.mark_moving()  # a rebalance starts...
    clock.now += 299
    assert _liveness(routing).check() == (200, {"status": "ok", "dead_letters": 0})
    clock.now += 2  # ...and its recovery hangs (seen in faust-streaming after a long freeze)
    status, body = _liveness(routing).check()
    assert (status, body["status"], body["recovering_for_s"]) == (503, "stuck", 301.0)


def test_a_worker_that_never_finished_its_first_recovery_is_not_alive_either() -> None:
    clock = _Clock()
    routing = OwnerLookup(object(), "OrderDB", monotonic=clock)
    clock.now += 301
    assert _liveness(routing).check()[0] == 503


def test_repeated_rebalances_count_from_when_the_worker_stopped_being_ready() -> None:
    clock = _Clock()
    routing = OwnerLookup(object(), "OrderDB", monotonic=clock)
    routing.mark_settled()
    routing.mark_moving()
    clock.now += 200
    routing.mark_moving()  # a second rebalance on top of the first: still the same outage
    clock.now += 200
    assert _liveness(routing).check()[0] == 503
    routing.mark_settled()
    assert _liveness(routing).check()[0] == 200


def test_an_agent_stuck_on_one_event_answers_503_naming_it() -> None:
    clock = _Clock()
    routing = OwnerLookup(object(), "OrderDB", monotonic=clock)
    routing.mark_settled()
    in_flight = InFlight(clock=lambda: 1_700_000_000.0, monotonic=clock)
    with in_flight.handling("payment-service", [_event(3, 42)]):
        clock.now += 61
        status, body = _liveness(routing, in_flight).check()
    assert (status, body["status"]) == (503, "stuck")
    assert [(s["agent"], s["partition"], s["offset"]) for s in body["stuck"]] == [
        ("payment-service", 3, 42)
    ]
    assert _liveness(routing, in_flight).check()[0] == 200
