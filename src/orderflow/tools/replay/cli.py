"""The ``replay``, ``trace`` and ``dlq`` commands (click), subcommands of ``orderflow.cli``.

They never import the Faust app (no worker needed). Each command callback validates its options
and returns a coroutine that yields the exit status (``_runs``: errors become a message and
status 1); ``orderflow.cli`` runs it under ``asyncio.run``, or awaits it in a caller's loop.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import click
from aiokafka.errors import KafkaError

from orderflow.config import ConfigError, Settings
from orderflow.tools.replay.errors import ReplayError
from orderflow.tools.replay.model import (
    ORDER_CHANGELOG,
    PAYMENT_CHANGELOG,
    Selection,
    TopicRecord,
    describe,
    key_text,
    record_to_json,
)
from orderflow.tools.replay.output import Writer, make_progress, note, resolve_format
from orderflow.tools.replay.window import TimeWindow
from orderflow.topics import INPUT_TOPICS, WEBHOOK_ATTEMPTS

__all__ = ["dlq", "replay", "trace"]

F = TypeVar("F", bound=Callable[..., Any])


def _bootstrap(value: str | None) -> str:
    return value or Settings.from_env(worker=False).kafka_bootstrap


def _window(since: str | None, until: str | None) -> TimeWindow:
    try:
        return TimeWindow.parse(since, until, datetime.now(UTC))
    except ReplayError as exc:
        raise click.BadParameter(str(exc), param_hint="'--since' / '--until'") from None


def bootstrap_option(f: F) -> F:
    return click.option(
        "--bootstrap",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers [default: ORDERFLOW_KAFKA_BOOTSTRAP or 127.0.0.1:9092]",
    )(f)


def format_option(f: F) -> F:
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(["json", "table"]),
        help="json: JSON lines (the default when stdout is not a terminal); table: for people "
        "(the default on a terminal)",
    )(f)


def window_options(f: F) -> F:
    f = click.option(
        "--until", metavar="WHEN", help="Only records before WHEN (same forms as --since)"
    )(f)
    return click.option(
        "--since",
        metavar="WHEN",
        help="Only records at or after WHEN: RFC 3339 (2024-05-01T12:00:00Z) or a duration ago "
        "(15m, 2h, 7d)",
    )(f)


class PartitionOffset(click.ParamType):
    """``3:1042``: a dead letter's partition and offset."""

    name = "PARTITION:OFFSET"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, tuple):
            return value
        try:
            partition, offset = (int(part) for part in str(value).split(":"))
        except ValueError:
            self.fail(f"{value!r} is not PARTITION:OFFSET (e.g. 3:1042)", param, ctx)
        if partition < 0 or offset < 0:
            self.fail(f"{value!r}: partition and offset must be >= 0", param, ctx)
        return partition, offset


async def _take(
    records: AsyncGenerator[TopicRecord, None], limit: int | None
) -> AsyncGenerator[TopicRecord, None]:
    if limit is not None and limit <= 0:
        return
    count = 0
    async with contextlib.aclosing(records):
        async for record in records:
            yield record
            count += 1
            if limit is not None and count >= limit:
                return  # stop reading now, not at the next match (which may be far away)


async def _exit_status(work: Callable[[], Awaitable[None]]) -> int:
    """Run one command's work; its errors become a one-line message and status 1."""
    try:
        await work()
    except (ReplayError, ConfigError) as exc:
        click.echo(f"Error: {exc}", err=True)
        return 1
    except KafkaError as exc:
        click.echo(f"Error: Kafka: {exc!r}", err=True)
        return 1
    except BrokenPipeError:
        # `orderflow replay | head`: the reader left; that is not an error. Point stdout at
        # /dev/null so the interpreter's final flush does not complain either.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _runs(f: Callable[..., Awaitable[None]]) -> Callable[..., Awaitable[int]]:
    """A callback that validates now (click's usage errors) and returns its work's exit status."""

    @functools.wraps(f)
    def callback(*args: Any, **kwargs: Any) -> Awaitable[int]:
        try:
            work = f(*args, **kwargs)
        except (ReplayError, ConfigError) as exc:
            failure = exc  # e.g. the environment's broker setting: reported like the others

            async def fail() -> None:
                raise failure

            return _exit_status(fail)
        return _exit_status(lambda: work)

    return callback


# -- replay ------------------------------------------------------------------------------------

REPLAY_COLUMNS = [("TIME", 24), ("TOPIC", 29), ("P", 2), ("OFFSET", 8), ("KEY", 36), ("WHAT", 0)]
DRY_RUN_COLUMNS = [("ORDER", 36), ("KIND", 16), ("AT", 34), ("RECORDED", 34), ("TODAY", 0)]


def replay_options(f: F) -> F:
    """What to read: topics, partitions, offsets, window, orders, event types, how many."""
    for option in reversed(
        [
            click.option(
                "--topic",
                "-t",
                "topics",
                multiple=True,
                help="Topic to read (repeatable) [default: the input topics; with --dry-run also "
                "the OrderDB and PaymentDB changelogs, and not the webhook attempts]",
            ),
            click.option(
                "--partition",
                "-p",
                "partitions",
                type=click.IntRange(min=0),
                multiple=True,
                help="Only this partition (repeatable)",
            ),
            click.option(
                "--from-offset",
                type=click.IntRange(min=0),
                help="First offset to read, inclusive (needs --partition)",
            ),
            click.option(
                "--to-offset",
                type=click.IntRange(min=0),
                help="Last offset to read, inclusive (needs --partition)",
            ),
            window_options,
            click.option(
                "--order-id",
                "order_ids",
                multiple=True,
                help="Only this order's records (repeatable)",
            ),
            click.option(
                "--event-type",
                "event_types",
                multiple=True,
                help="Only events of this type, e.g. order.created (repeatable)",
            ),
            click.option(
                "--limit", type=click.IntRange(min=1), help="Stop after this many records"
            ),
        ]
    ):
        f = option(f)
    return f


def action_options(f: F) -> F:
    """Where the records go: a capture file, a dry run, another topic (default: printed)."""
    for option in reversed(
        [
            click.option(
                "--from-capture",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Read a capture file instead of the broker",
            ),
            click.option(
                "--capture",
                type=click.Path(dir_okay=False, path_type=Path),
                help="Write the records to this capture file (SQLite), print nothing",
            ),
            click.option(
                "--dry-run",
                is_flag=True,
                help="Fold the records through today's domain code, the gateway's answers as "
                "recorded; print where it decides differently. Calls no gateway, produces nothing",
            ),
            click.option(
                "--to-topic",
                metavar="NAME",
                help="Re-publish the records to NAME with orderflow-origin-* headers",
            ),
            click.option(
                "--force", is_flag=True, help="Allow --to-topic to name a live input topic"
            ),
        ]
    ):
        f = option(f)
    return f


@dataclass(frozen=True)
class _Action:
    """What ``replay`` does with the records it reads (one at most of the three)."""

    capture: Path | None
    dry_run: bool
    to_topic: str | None
    force: bool

    def check(self) -> None:
        named = (("--capture", self.capture), ("--dry-run", self.dry_run))
        actions = [name for name, on in (*named, ("--to-topic", self.to_topic)) if on]
        if len(actions) > 1:
            raise click.UsageError(f"{' and '.join(actions)} cannot be combined")
        if self.force and not self.to_topic:
            raise click.UsageError("--force only applies to --to-topic")
        if self.to_topic:
            from orderflow.tools.replay.publish import check_target

            try:
                check_target(self.to_topic, force=self.force)  # before reading anything
            except ReplayError as exc:
                raise click.UsageError(str(exc)) from None


def _selection(options: dict[str, Any]) -> Selection:
    try:
        return Selection(
            topics=options["topics"],
            partitions=options["partitions"],
            from_offset=options["from_offset"],
            to_offset=options["to_offset"],
            window=_window(options["since"], options["until"]),
            order_ids=frozenset(options["order_ids"]),
            event_types=frozenset(options["event_types"]),
        )
    except ReplayError as exc:
        raise click.UsageError(str(exc)) from None


@click.command()
@replay_options
@action_options
@bootstrap_option
@format_option
@_runs
def replay(
    from_capture: Path | None,
    capture: Path | None,
    dry_run: bool,
    to_topic: str | None,
    force: bool,
    bootstrap: str | None,
    fmt: str | None,
    **options: Any,
) -> Awaitable[None]:
    """Re-read events by time window or offsets, without any consumer group.

    Prints them (default), or writes them to a capture file (--capture), folds them through
    today's code (--dry-run), or re-publishes them (--to-topic). Never commits an offset.
    Records come partition by partition, each in offset order (Kafka orders nothing across
    partitions); `trace` puts one order's records in time order.
    """
    _Action(capture, dry_run, to_topic, force).check()
    selection, topics, limit = _selection(options), options["topics"], options["limit"]
    history = [ORDER_CHANGELOG, PAYMENT_CHANGELOG] if dry_run else []
    # A dry run folds order state only: the webhook attempts are not read (nor folded if named).
    inputs = [t for t in INPUT_TOPICS if not (dry_run and t == WEBHOOK_ATTEMPTS)]
    read_topics = list(topics) or [*inputs, *history]

    def source() -> AsyncGenerator[TopicRecord, None]:
        if from_capture is not None:
            from orderflow.tools.replay.capture import read_capture

            return _take(read_capture(from_capture, selection), limit)
        from orderflow.tools.replay.reader import read_records

        progress = make_progress("replay")
        records = read_records(
            _bootstrap(bootstrap), selection, read_topics, progress=progress, missing_ok=not topics
        )
        return _take(records, limit)

    if capture is not None:
        return _capture(source(), capture, sys.argv[1:])
    if dry_run:
        return _dry_run(source(), resolve_format(fmt))
    if to_topic:
        return _publish(source(), _bootstrap(bootstrap), to_topic, force)
    return _print_records(source(), resolve_format(fmt))


async def _print_records(records: AsyncGenerator[TopicRecord, None], fmt: str) -> None:
    out = Writer("json" if fmt == "json" else "table", REPLAY_COLUMNS)
    async with contextlib.aclosing(records):
        async for r in records:
            data = record_to_json(r)
            out.emit(
                data,
                [data["time"], r.topic, r.partition, r.offset, key_text(r) or "-", describe(r)],
            )
    out.flush()
    note(f"replay: {out.rows} record(s)")


async def _capture(records: AsyncGenerator[TopicRecord, None], path: Path, argv: list[str]) -> None:
    from orderflow.tools.replay.capture import write_capture

    added, known = await write_capture(path, records, {"argv": argv})
    note(
        f"replay: captured {added} record(s) to {path}"
        + (f" ({known} were there already)" if known else "")
    )


async def _dry_run(records: AsyncGenerator[TopicRecord, None], fmt: str) -> None:
    from orderflow.tools.replay.dryrun import dry_run

    async with contextlib.aclosing(records):
        collected = [r async for r in records]
    report = dry_run(collected)
    out = Writer("json" if fmt == "json" else "table", DRY_RUN_COLUMNS)
    for finding in report.findings:
        out.emit(
            finding.to_json(),
            [finding.order_id, finding.kind, finding.at, finding.recorded, finding.today],
        )
    out.flush()
    s = report.summary()
    note(
        f"dry-run: {s['orders']} order(s), {s['compared']} with a recorded outcome, "
        f"{s['differing_orders']} decided differently by today's code "
        f"({s['differences']} difference(s), {s['findings']} finding(s))"
    )


async def _publish(
    records: AsyncGenerator[TopicRecord, None], bootstrap: str, to_topic: str, force: bool
) -> None:
    from orderflow.tools.replay.publish import publish_records

    async with contextlib.aclosing(records):
        count = await publish_records(bootstrap, records, to_topic, force=force)
    note(f"replay: published {count} record(s) to {to_topic}")


# -- trace -------------------------------------------------------------------------------------


@click.command()
@click.argument("order_id")
@click.option(
    "--gateway-url",
    metavar="URL",
    help="Payment gateway whose /_admin/ledger to ask [default: ORDERFLOW_GATEWAY_URL]",
)
@click.option(
    "--all-partitions",
    is_flag=True,
    help="Read every partition, not only the one the order id hashes to (finds "
    "records produced with a wrong key)",
)
@bootstrap_option
@format_option
@_runs
def trace(
    order_id: str,
    gateway_url: str | None,
    all_partitions: bool,
    bootstrap: str | None,
    fmt: str | None,
) -> Awaitable[None]:
    """One order's history on every orderflow topic, its table entries, ledger and verdict."""
    return _trace(order_id, gateway_url, all_partitions, bootstrap, resolve_format(fmt))


async def _trace(
    order_id: str, gateway_url: str | None, all_partitions: bool, bootstrap: str | None, fmt: str
) -> None:
    from orderflow.tools.replay.trace import trace_lines, trace_order

    url = gateway_url if gateway_url is not None else Settings.from_env(worker=False).gateway_url
    result = await trace_order(
        _bootstrap(bootstrap),
        order_id,
        gateway_url=url,
        all_partitions=all_partitions,
        progress=make_progress("trace"),
    )
    out = Writer("json")
    if fmt == "json":
        out.json(result.to_json())
    else:
        for line in trace_lines(result):
            out.text(line)
    out.flush()


# -- dlq ---------------------------------------------------------------------------------------

DLQ_COLUMNS = [("DL", 8), ("TIME", 24), ("ORDER", 36), ("SOURCE", 34), ("REASON", 0)]
REDRIVE_COLUMNS = [("DL", 8), ("ORDER", 36), ("ACTION", 16), ("TO", 26), ("DETAIL", 0)]


@click.group()
def dlq() -> None:
    """Dead letters: list, show, redrive."""


@dataclass(frozen=True)
class _Filters:
    """The dead-letter selection options shared by ``dlq list`` and ``dlq redrive``."""

    order_ids: tuple[str, ...]
    reason: str | None
    source_topics: tuple[str, ...]
    since: str | None
    until: str | None

    def build(self, at: Sequence[tuple[int, int]] = ()) -> Any:
        return _dlq_filter(
            self.order_ids, self.reason, self.source_topics, self.since, self.until, at
        )


def dlq_filter_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The selection options, handed to ``f`` as one ``filters`` argument."""

    @functools.wraps(f)
    def with_filters(
        order_ids: tuple[str, ...],
        reason: str | None,
        source_topics: tuple[str, ...],
        since: str | None,
        until: str | None,
        **kwargs: Any,
    ) -> Any:
        return f(filters=_Filters(order_ids, reason, source_topics, since, until), **kwargs)

    g = window_options(with_filters)
    g = click.option(
        "--source-topic",
        "source_topics",
        multiple=True,
        help="Only dead letters from this topic (repeatable)",
    )(g)
    g = click.option("--reason", help="Only reasons containing this text (case-insensitive)")(g)
    return click.option(
        "--order-id", "order_ids", multiple=True, help="Only this order's dead letters (repeatable)"
    )(g)


def _dlq_filter(
    order_ids: Sequence[str],
    reason: str | None,
    source_topics: Sequence[str],
    since: str | None,
    until: str | None,
    at: Sequence[tuple[int, int]] = (),
) -> Any:
    from orderflow.tools.replay.dlq import DlqFilter

    return DlqFilter(
        order_ids=frozenset(order_ids),
        at=frozenset(at),
        reason=reason,
        source_topics=frozenset(source_topics),
        window=_window(since, until),
    )


@dlq.command(name="list")
@dlq_filter_options
@bootstrap_option
@format_option
@_runs
def dlq_list(filters: _Filters, bootstrap: str | None, fmt: str | None) -> Awaitable[None]:
    """Dead letters with their reason and source."""
    return _dlq_list(_bootstrap(bootstrap), filters.build(), resolve_format(fmt))


async def _dlq_list(bootstrap: str, flt: Any, fmt: str) -> None:
    from orderflow.tools.replay.dlq import find_dead_letters

    out = Writer("json" if fmt == "json" else "table", DLQ_COLUMNS)
    letters = find_dead_letters(bootstrap, flt, progress=make_progress("dlq"))
    async with contextlib.aclosing(letters):
        async for letter in letters:
            data = letter.to_json()
            out.emit(
                data,
                [
                    letter.address,
                    record_to_json(letter.record)["time"],
                    letter.order_id or "-",
                    letter.source,
                    letter.reason,
                ],
            )
    out.flush()
    note(f"dlq: {out.rows} dead letter(s)")


@dlq.command(name="show")
@click.argument("address", type=PartitionOffset(), required=False)
@click.option("--order-id", help="Show every dead letter of this order")
@bootstrap_option
@format_option
@_runs
def dlq_show(
    address: tuple[int, int] | None, order_id: str | None, bootstrap: str | None, fmt: str | None
) -> Awaitable[None]:
    """One dead letter in full (PARTITION:OFFSET), or all of one order (--order-id)."""
    if (address is None) == (order_id is None):
        raise click.UsageError("give either PARTITION:OFFSET or --order-id")
    flt = _dlq_filter(
        [order_id] if order_id else [], None, [], None, None, [address] if address else []
    )
    return _dlq_show(_bootstrap(bootstrap), flt, resolve_format(fmt))


async def _dlq_show(bootstrap: str, flt: Any, fmt: str) -> None:
    from orderflow.tools.replay.dlq import find_dead_letters

    out = Writer("json")
    letters = find_dead_letters(bootstrap, flt)
    async with contextlib.aclosing(letters):
        async for letter in letters:
            data = letter.to_json(full=True)
            if fmt == "json":
                out.json(data)
                continue
            out.rows += 1
            for name, value in data.items():
                if name != "record":
                    out.text(f"{name + ':':<18}{value}")
            record = data["record"]
            out.text("headers:")
            for name, value in record["headers"].items():
                out.text(f"  {name}: {value}")
            value = record.get("value_raw") if record["value"] is None else record["value"]
            out.text(f"{'value:':<18}{value}")
            out.text()
    out.flush()
    if not out.rows:
        raise ReplayError("no such dead letter")


@dlq.command(name="redrive")
@dlq_filter_options
@click.option(
    "--at",
    "at",
    type=PartitionOffset(),
    multiple=True,
    help="Only the dead letter at PARTITION:OFFSET (repeatable)",
)
@click.option("--all", "redrive_all", is_flag=True, help="Redrive every dead letter")
@click.option("--dry-run", is_flag=True, help="Say what would be redriven; send nothing")
@bootstrap_option
@format_option
@_runs
def dlq_redrive(
    filters: _Filters,
    at: tuple[tuple[int, int], ...],
    redrive_all: bool,
    dry_run: bool,
    bootstrap: str | None,
    fmt: str | None,
) -> Awaitable[None]:
    """Re-produce dead letters to their source topic, original key/value, at most once each."""
    flt = filters.build(at)
    if flt.is_empty and not redrive_all:
        raise click.UsageError(
            "select dead letters (--order-id, --at, --reason, "
            "--source-topic, --since/--until) or pass --all"
        )
    return _dlq_redrive(_bootstrap(bootstrap), flt, dry_run, resolve_format(fmt))


async def _dlq_redrive(bootstrap: str, flt: Any, dry_run: bool, fmt: str) -> None:
    from orderflow.tools.replay.dlq import redrive

    actions = await redrive(bootstrap, flt, dry_run=dry_run)
    out = Writer("json" if fmt == "json" else "table", REDRIVE_COLUMNS)
    for a in actions:
        out.emit(
            a.to_json(),
            [a.letter.address, a.letter.order_id or "-", a.action, a.target or "-", a.detail],
        )
    out.flush()
    counts: dict[str, int] = {}
    for a in actions:
        counts[a.action] = counts.get(a.action, 0) + 1
    summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items())) or "nothing"
    note(f"dlq redrive: {summary}")
