"""Time windows: RFC 3339 instants, durations ago, and the half-open window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from orderflow.tools.replay.errors import SelectionError
from orderflow.tools.replay.window import (
    TimeWindow,
    ms_to_rfc3339,
    parse_duration,
    parse_instant,
    to_epoch_ms,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("1w", timedelta(weeks=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1.5h", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
    ],
)
def test_durations_in_every_unit_and_combined(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "15", "m", "15min", "-5m", "2 h", "1M", "15m ago"])
def test_anything_else_is_not_a_duration(text: str) -> None:
    with pytest.raises(SelectionError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01t10:00:00z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01 10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T12:00:00+02:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
        ("2024-05-01T10:00:00.123456789Z", datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)),
        ("2024-04-30", datetime(2024, 4, 30, tzinfo=UTC)),
        ("15m", NOW - timedelta(minutes=15)),
        ("now", NOW),
    ],
)
def test_instants_are_rfc3339_dates_or_durations_ago(text: str, expected: datetime) -> None:
    assert parse_instant(text, NOW) == expected


@pytest.mark.parametrize(
    "text", ["2024-05-01T10:00:00", "yesterday", "2024-13-01T00:00:00Z", "1714564800"]
)
def test_instants_without_offset_or_of_unknown_form_are_refused(text: str) -> None:
    with pytest.raises(SelectionError):
        parse_instant(text, NOW)


def test_epoch_milliseconds_are_exact_both_ways() -> None:
    # 1714564800.123 * 1000 is 1714564800122.9999 as a float: the conversion must not use one.
    instant = parse_instant("2024-05-01T12:00:00.123Z", NOW)
    assert to_epoch_ms(instant) == 1714564800123
    assert ms_to_rfc3339(1714564800123) == "2024-05-01T12:00:00.123Z"
    assert ms_to_rfc3339(0) == "1970-01-01T00:00:00.000Z"


def test_window_is_half_open_and_refuses_an_empty_range() -> None:
    window = TimeWindow.parse("2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z", NOW)
    start, end = window.since_ms, window.until_ms
    assert start is not None and end is not None
    assert window.contains(start) and window.contains(end - 1)
    assert not window.contains(start - 1) and not window.contains(end)
    assert TimeWindow().contains(0) and TimeWindow().is_open
    with pytest.raises(SelectionError, match="earlier"):
        TimeWindow.parse("1h", "2h", NOW)
