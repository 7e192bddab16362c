"""The one exponential backoff policy: ``base * 2**attempt``, capped, optionally jittered.

Pure (no clock, no sleep, no randomness of its own) so that the domain, the agents and the
gateway client share it: each caller keeps its own numbers and does its own waiting.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["Backoff"]

# The cap applies long before this; bounding the exponent keeps ``2.0**attempt`` from
# overflowing a float in a loop that never stops retrying.
_MAX_EXPONENT = 64


@dataclass(frozen=True)
class Backoff:
    """Delays that double from ``base`` up to ``cap``; ``jitter`` of them drawn at random.

    ``jitter`` is the share of each delay that is random: 0 (none, the exact ceiling) to 1
    ("full jitter", uniform in ``[0, ceiling]``, AWS's "Exponential Backoff and Jitter"), which
    spreads the retries of many clients that failed together instead of keeping them in step.
    """

    base: float
    cap: float
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if min(self.base, self.cap) < 0.0:
            raise ValueError(f"backoff needs base, cap >= 0, got base={self.base} cap={self.cap}")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"backoff jitter must be within [0, 1], got {self.jitter}")

    def ceiling(self, attempt: int) -> float:
        """The most waited before retry ``attempt`` (0-based): ``base * 2**attempt``, capped."""
        return min(self.cap, self.base * 2.0 ** min(max(attempt, 0), _MAX_EXPONENT))

    def delay(self, attempt: int, draw: float = 1.0) -> float:
        """The wait before retry ``attempt``; ``draw`` in ``[0, 1]`` places it in the jitter.

        Without jitter the draw changes nothing; with full jitter the delay is
        ``draw * ceiling``. The caller supplies the draw (``rng.random()``), so this stays pure.
        """
        return self.ceiling(attempt) * (1.0 - self.jitter + self.jitter * draw)

    def delays(self, rng: random.Random) -> Iterator[float]:
        """Endless delays for retries 0, 1, 2...; the jitter is drawn from ``rng``."""
        attempt = 0
        while True:
            yield self.delay(attempt, rng.random() if self.jitter else 1.0)
            attempt += 1
