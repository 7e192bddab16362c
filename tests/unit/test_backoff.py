"""The one backoff policy (orderflow.domain.backoff): doubling, capped, jitter drawn by the caller."""

from __future__ import annotations

import itertools
import random

import pytest

from orderflow.domain.backoff import Backoff


def test_ceiling_doubles_from_base_then_stays_at_cap() -> None:
    ceilings = [Backoff(base=0.1, cap=1.0).ceiling(n) for n in range(7)]
    assert ceilings == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_ceiling_does_not_overflow_after_many_attempts() -> None:
    assert Backoff(base=0.1, cap=2.0).ceiling(10_000) == 2.0


def test_negative_attempt_waits_the_base() -> None:
    assert Backoff(base=0.5, cap=4.0).ceiling(-3) == 0.5


def test_delay_without_jitter_is_the_ceiling_whatever_the_draw() -> None:
    policy = Backoff(base=0.1, cap=5.0)
    assert [policy.delay(n, draw) for n, draw in [(0, 0.0), (3, 0.5), (9, 1.0)]] == [
        0.1,
        pytest.approx(0.8),
        5.0,
    ]


def test_full_jitter_scales_the_ceiling_by_the_draw() -> None:
    policy = Backoff(base=1.0, cap=8.0, jitter=1.0)
    assert policy.delay(2, 0.0) == 0.0
    assert policy.delay(2, 0.25) == 1.0
    assert policy.delay(2, 1.0) == 4.0


def test_partial_jitter_keeps_the_fixed_share() -> None:
    policy = Backoff(base=2.0, cap=2.0, jitter=0.5)
    assert policy.delay(0, 0.0) == 1.0
    assert policy.delay(0, 1.0) == 2.0


def test_jittered_delays_stay_within_zero_and_the_ceiling() -> None:
    policy = Backoff(base=0.05, cap=1.5, jitter=1.0)
    delays = list(itertools.islice(policy.delays(random.Random(7)), 200))
    for n, delay in enumerate(delays):
        assert 0.0 <= delay <= policy.ceiling(n)


def test_jittered_delays_spread_over_the_range_at_the_cap() -> None:
    # Full jitter: at the cap, delays spread over [0, cap] instead of repeating the cap.
    policy = Backoff(base=0.05, cap=1.0, jitter=1.0)
    late = list(itertools.islice(policy.delays(random.Random(3)), 20, 120))
    assert min(late) < 0.25
    assert max(late) > 0.75


def test_jittered_delays_are_reproducible_with_a_seed() -> None:
    policy = Backoff(base=0.1, cap=2.0, jitter=1.0)
    first = list(itertools.islice(policy.delays(random.Random(42)), 10))
    again = list(itertools.islice(policy.delays(random.Random(42)), 10))
    assert first == again


def test_full_jitter_draws_what_uniform_zero_to_ceiling_drew() -> None:
    # The gateway client used rng.uniform(0, ceiling): the same seed gives the same delays.
    policy = Backoff(base=0.1, cap=2.0, jitter=1.0)
    rng = random.Random(42)
    expected = [rng.uniform(0.0, policy.ceiling(n)) for n in range(12)]
    assert list(itertools.islice(policy.delays(random.Random(42)), 12)) == expected


def test_unjittered_delays_do_not_consume_the_random_stream() -> None:
    rng = random.Random(5)
    list(itertools.islice(Backoff(base=0.1, cap=5.0).delays(rng), 5))
    assert rng.random() == random.Random(5).random()


@pytest.mark.parametrize(
    ("base", "cap", "jitter"), [(-0.1, 1.0, 0.0), (0.1, -1.0, 0.0), (0.1, 1.0, 1.5)]
)
def test_nonsense_numbers_are_refused(base: float, cap: float, jitter: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base=base, cap=cap, jitter=jitter)
