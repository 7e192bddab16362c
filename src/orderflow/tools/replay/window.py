"""Time windows from the command line: RFC 3339 instants or durations ago (``15m``, ``2h``, ``7d``).

Pure: no I/O, no clock (``now`` is a parameter), so every rule is unit-tested.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from orderflow.tools.replay.errors import SelectionError

__all__ = ["TimeWindow", "ms_to_rfc3339", "parse_duration", "parse_instant", "to_epoch_ms"]

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# One or more <number><unit> parts: "90s", "1h30m", "1.5h". Units are case-sensitive ("m" is a
# minute; months are not offered because their length varies).
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
# RFC 3339 date-time (T or space, optional fraction, Z or +hh:mm), or a bare date (midnight UTC).
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}"
    r"(?:[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2}))?"
)


def parse_duration(text: str) -> timedelta:
    """``15m`` -> 15 minutes; units ms, s, m, h, d, w, combinable (``1h30m``)."""
    text = text.strip()
    if not _DURATION.fullmatch(text):
        raise SelectionError(f"{text!r} is not a duration like 90s, 15m, 2h, 1h30m or 7d")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    return timedelta(seconds=seconds)


def _fromisoformat(text: str) -> datetime:
    text = text.replace("z", "Z").replace("t", "T")
    if "." in text:
        # Python 3.11 accepts at most 6 fraction digits; Kafka timestamps are milliseconds anyway.
        head, _, tail = text.partition(".")
        digits = re.match(r"\d+", tail)
        assert digits is not None  # the regex guarantees digits after the dot
        text = f"{head}.{digits.group()[:6].ljust(6, '0')}{tail[digits.end() :]}"
    return datetime.fromisoformat(text)


def parse_instant(text: str, now: datetime) -> datetime:
    """An RFC 3339 instant, a date (midnight UTC), ``now``, or a duration meaning that long ago."""
    text = text.strip()
    if text == "now":
        return now
    if _DURATION.fullmatch(text):
        return now - parse_duration(text)
    if not _RFC3339.fullmatch(text):
        raise SelectionError(
            f"{text!r} is neither an RFC 3339 time (2024-05-01T12:00:00Z, with Z or an offset) "
            "nor a duration ago (15m, 2h, 7d)"
        )
    try:
        value = _fromisoformat(text)
    except ValueError as exc:
        raise SelectionError(f"{text!r}: {exc}") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_epoch_ms(value: datetime) -> int:
    """Kafka timestamps are integer milliseconds since the epoch (exact: no float rounding)."""
    return (value - _EPOCH) // timedelta(milliseconds=1)


def ms_to_rfc3339(timestamp_ms: int) -> str:
    """A Kafka timestamp as RFC 3339 in UTC, to the millisecond (exact, unlike via a float)."""
    value = _EPOCH + timedelta(milliseconds=timestamp_ms)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class TimeWindow:
    """Record timestamps ``since_ms <= t < until_ms`` (either side open when None)."""

    since_ms: int | None = None
    until_ms: int | None = None

    def __post_init__(self) -> None:
        if (
            self.since_ms is not None
            and self.until_ms is not None
            and self.since_ms >= self.until_ms
        ):
            raise SelectionError("--since must be earlier than --until")

    @classmethod
    def parse(cls, since: str | None, until: str | None, now: datetime) -> TimeWindow:
        """Build from the ``--since`` / ``--until`` option texts."""
        return cls(
            None if since is None else to_epoch_ms(parse_instant(since, now)),
            None if until is None else to_epoch_ms(parse_instant(until, now)),
        )

    @property
    def is_open(self) -> bool:
        return self.since_ms is None and self.until_ms is None

    def contains(self, timestamp_ms: int) -> bool:
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return False
        return self.until_ms is None or timestamp_ms < self.until_ms
