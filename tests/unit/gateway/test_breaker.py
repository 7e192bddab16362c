"""The circuit breaker's state machine (injected clock), and fault settings."""

from __future__ import annotations

import pytest

from orderflow.gateway.http import BreakerState, CircuitBreaker
from orderflow.tools.sandbox.gateway import Faults
from tests.breaker_helpers import FakeClock, state_of

# -- circuit breaker -------------------------------------------------------------------------------


def test_breaker_opens_after_threshold_consecutive_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=FakeClock())
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.allow()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.OPEN
    assert not breaker.allow()


def test_breaker_success_resets_the_consecutive_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3, cooldown_s=10, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2


def test_open_breaker_allows_exactly_one_probe_after_the_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now += 9.9
    assert not breaker.allow()
    clock.now += 0.1
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()  # the probe
    assert not breaker.allow()  # nobody else while it is out


def test_successful_probe_closes_the_breaker() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_success()
    assert state_of(breaker) is BreakerState.CLOSED
    assert breaker.allow()
    assert breaker.allow()


def test_failed_probe_reopens_for_a_fresh_cooldown() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, cooldown_s=10, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.record_failure()  # one failure is enough in half-open
    assert state_of(breaker) is BreakerState.OPEN
    clock.now += 9
    assert not breaker.allow()
    clock.now += 1
    assert breaker.allow()


def test_released_probe_frees_the_slot_without_a_verdict() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, cooldown_s=10, clock=clock)
    breaker.record_failure()
    clock.now += 10
    assert breaker.allow()
    breaker.release()  # e.g. the probe was cancelled
    assert state_of(breaker) is BreakerState.HALF_OPEN
    assert breaker.allow()


def test_breaker_refuses_nonsense_settings() -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(failure_threshold=0)
    with pytest.raises(ValueError):
        CircuitBreaker(cooldown_s=-1.0)


# -- fault settings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"error_rate": 1.5},
        {"timeout_rate": -0.1},
        {"latency_ms": float("nan")},
        {"drop_response_rate": "often"},
        {"error_rate": True},
        {"errors": 0.5},
        ["error_rate", 0.5],
    ],
)
def test_faults_refuse_invalid_settings(data: object) -> None:
    with pytest.raises(ValueError):
        Faults.from_json(data)


def test_faults_from_json_keeps_given_fields_and_defaults_the_rest() -> None:
    faults = Faults.from_json({"error_rate": 0.3, "latency_ms": 5})
    assert faults == Faults(error_rate=0.3, latency_ms=5)
