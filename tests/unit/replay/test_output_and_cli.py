"""Output formats, the stderr progress bar, and option checks that need no broker."""

from __future__ import annotations

import io
from collections.abc import AsyncGenerator
from typing import Any

import click
import pytest

from orderflow.cli import orderflow
from orderflow.tools.replay.errors import PublishRefused
from orderflow.tools.replay.output import (
    NullProgress,
    TerminalProgress,
    Writer,
    make_progress,
    resolve_format,
)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_lines_when_piped_a_table_on_a_terminal_unless_asked() -> None:
    assert resolve_format(None, io.StringIO()) == "json"
    assert resolve_format(None, Terminal()) == "table"
    assert resolve_format("table", io.StringIO()) == "table"
    assert resolve_format("json", Terminal()) == "json"


def test_progress_is_drawn_only_on_a_terminal() -> None:
    piped = io.StringIO()
    progress = make_progress("replay", piped)
    assert isinstance(progress, NullProgress)
    progress.set_total(10)
    progress.advance(10)
    progress.close()
    assert piped.getvalue() == ""

    terminal = Terminal()
    bar = make_progress("replay", terminal)
    assert isinstance(bar, TerminalProgress)
    bar.set_total(4)
    bar.advance(4)
    bar.close()
    assert terminal.getvalue().startswith("\rreplay [")
    assert "4/4 records (100%)" in terminal.getvalue()


def test_writer_emits_json_lines_or_an_aligned_table() -> None:
    json_out, table_out = io.StringIO(), io.StringIO()
    for fmt, out in (("json", json_out), ("table", table_out)):
        writer = Writer(fmt, [("A", 3), ("B", 0)], out)  # type: ignore[arg-type]
        writer.emit({"a": 1, "b": "x y"}, [1, "x y"])
        writer.emit({"a": 22, "b": "z"}, [22, "z"])
    assert json_out.getvalue() == '{"a":1,"b":"x y"}\n{"a":22,"b":"z"}\n'
    assert table_out.getvalue() == "A    B\n1    x y\n22   z\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "--capture", "f.db", "--dry-run"], "cannot be combined"),
        (["replay", "--dry-run", "--to-topic", "x"], "cannot be combined"),
        (["replay", "--dry-run", "--decision-rule", "m:f"], "No such option: --decision-rule"),
        (["replay", "--force"], "--force only applies to --to-topic"),
        (["replay", "--to-topic", "order.created"], "live input topic"),
        (["replay", "--since", "last week"], "neither an RFC 3339 time"),
        (["replay", "--partition", "1", "--from-offset", "9", "--to-offset", "3"], "greater"),
        (["dlq", "show"], "either PARTITION:OFFSET or --order-id"),
        (["dlq", "show", "3-17"], "is not PARTITION:OFFSET"),
        (["dlq", "redrive"], "or pass --all"),
    ],
)
def test_bad_option_combinations_fail_before_touching_kafka(args: list[str], message: str) -> None:
    with pytest.raises(click.UsageError) as caught:
        orderflow.main(args=args, prog_name="orderflow", standalone_mode=False)
    assert message in caught.value.format_message()


@pytest.mark.parametrize(
    "topic",
    [
        "order.created",
        "orderflow-OrderDB-changelog",
        "orderflow-PaymentDB-changelog",
        "orderflow.dead-letters",
        "other-app-Table-changelog",
    ],
)
def test_publishing_into_live_orderflow_state_needs_force(topic: str) -> None:
    from orderflow.tools.replay.publish import check_target

    with pytest.raises(PublishRefused):
        check_target(topic, force=False)
    check_target(topic, force=True)
    check_target("scratch.copy", force=False)


async def test_limit_stops_reading_at_the_last_wanted_record() -> None:
    from orderflow.tools.replay.cli import _take

    pulled: list[int] = []

    async def records() -> AsyncGenerator[Any, None]:
        for i in range(10):
            pulled.append(i)
            yield i

    got: list[Any] = [r async for r in _take(records(), 2)]
    assert got == [0, 1]
    assert pulled == [0, 1]  # the third record was never read
