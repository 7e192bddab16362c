"""Helpers for circuit-breaker tests: a hand-moved clock and a fresh state read."""

from __future__ import annotations

from orderflow.gateway.http import BreakerState, CircuitBreaker

__all__ = ["FakeClock", "state_of"]


def state_of(breaker: CircuitBreaker) -> BreakerState:
    """Read the state afresh (mypy would otherwise keep a narrowed ``breaker.state``)."""
    return breaker.state


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
