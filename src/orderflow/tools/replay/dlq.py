"""``dlq list | show | redrive``: the dead-letter topic, read without a consumer group.

A dead letter holds the original key and value bytes; its headers say why it failed and where it
came from (``orderflow.wire.dead_letters``), followed by the original headers.

Redrive re-produces the original key, value and headers to the source topic named in the
header, adding ``orderflow-redriven-from: dead-letters:<partition>:<offset>``. Before sending it
scans the source topic for that header, so redriving the same dead letter again is a no-op. Only
the partitions the dead letters' keys hash to are scanned, from a day before the oldest selected
dead letter (producers' clocks may differ; a redrive is never older than its dead letter). Two
redrives running at the same moment can both send: harmless, because the agents are idempotent
consumers (a second ``order.created`` for an order charges nothing twice), but avoid it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from typing import Any

from orderflow.domain.tokens import mask_text
from orderflow.tools.replay.model import (
    REDRIVEN_FROM_HEADER,
    Selection,
    TopicRecord,
    key_text,
    record_to_json,
)
from orderflow.tools.replay.output import Progress
from orderflow.tools.replay.publish import make_producer, send_all
from orderflow.tools.replay.reader import read_records
from orderflow.tools.replay.window import TimeWindow
from orderflow.topics import DEAD_LETTERS, INPUT_TOPICS
from orderflow.wire.dead_letters import (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_FAILED_AT,
    DLQ_HEADER_OFFSET,
    DLQ_HEADER_PARTITION,
    DLQ_HEADER_REASON,
    DLQ_HEADER_TOPIC,
    DLQ_PREFIX,
)

__all__ = [
    "DeadLetter",
    "DlqFilter",
    "RedriveAction",
    "find_dead_letters",
    "redrive",
    "redriven_markers",
]

MARKER_SCAN_MARGIN_MS = 24 * 3600 * 1000


def _int(text: str | None) -> int | None:
    try:
        return None if text is None else int(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class DeadLetter:
    """One record of the dead-letter topic, with its headers read."""

    record: TopicRecord

    @property
    def address(self) -> str:
        return f"{self.record.partition}:{self.record.offset}"

    @property
    def marker(self) -> str:
        """The ``orderflow-redriven-from`` value a redrive of this dead letter carries."""
        return f"dead-letters:{self.address}"

    @property
    def order_id(self) -> str | None:
        return key_text(self.record)

    @property
    def reason(self) -> str:
        # Masked: a reason written before tokens were masked in it may quote one.
        return mask_text(self.record.header_text(DLQ_HEADER_REASON) or "")

    @property
    def source_topic(self) -> str | None:
        return self.record.header_text(DLQ_HEADER_TOPIC)

    @property
    def source(self) -> str:
        r = self.record
        return ":".join(
            r.header_text(h) or "?"
            for h in (DLQ_HEADER_TOPIC, DLQ_HEADER_PARTITION, DLQ_HEADER_OFFSET)
        )

    def original_headers(self) -> list[tuple[str, bytes | None]]:
        """The headers the event had before it was dead-lettered."""
        return [(k, v) for k, v in self.record.headers if not k.startswith(DLQ_PREFIX)]

    def to_json(self, *, full: bool = False) -> dict[str, Any]:
        r = self.record
        out: dict[str, Any] = {
            "dead_letter": self.address,
            "partition": r.partition,
            "offset": r.offset,
            "order_id": self.order_id,
            "reason": self.reason,
            "error_type": r.header_text(DLQ_HEADER_ERROR) or None,
            "source_topic": self.source_topic,
            "source_partition": _int(r.header_text(DLQ_HEADER_PARTITION)),
            "source_offset": _int(r.header_text(DLQ_HEADER_OFFSET)),
            "failed_at": r.header_text(DLQ_HEADER_FAILED_AT),
        }
        if full:
            out["record"] = record_to_json(r)
        return out


@dataclass(frozen=True)
class DlqFilter:
    """Which dead letters: all filters must match; empty ones match everything."""

    order_ids: frozenset[str] = frozenset()
    at: frozenset[tuple[int, int]] = frozenset()  # (partition, offset)
    reason: str | None = None  # case-insensitive substring
    source_topics: frozenset[str] = frozenset()
    window: TimeWindow = field(default_factory=TimeWindow)

    @property
    def is_empty(self) -> bool:
        return not (self.order_ids or self.at or self.reason or self.source_topics) and (
            self.window.is_open
        )

    def selection(self) -> Selection:
        """The cheap part, pushed down to the reader (partitions and offsets to read)."""
        partitions = tuple(sorted({p for p, _ in self.at}))
        offsets = [o for _, o in self.at]
        return Selection(
            topics=(DEAD_LETTERS,),
            partitions=partitions,
            from_offset=min(offsets) if offsets else None,
            to_offset=max(offsets) if offsets else None,
            window=self.window,
            order_ids=self.order_ids,
        )

    def matches(self, letter: DeadLetter) -> bool:
        r = letter.record
        if self.at and (r.partition, r.offset) not in self.at:
            return False
        if self.reason and self.reason.lower() not in letter.reason.lower():
            return False
        return not self.source_topics or letter.source_topic in self.source_topics


async def find_dead_letters(
    bootstrap: str, flt: DlqFilter, *, progress: Progress | None = None
) -> AsyncGenerator[DeadLetter, None]:
    """The matching dead letters, each partition in offset order."""
    records = read_records(
        bootstrap, flt.selection(), [DEAD_LETTERS], progress=progress, missing_ok=True
    )
    async with contextlib.aclosing(records):
        async for record in records:
            letter = DeadLetter(record)
            if flt.matches(letter):
                yield letter


async def redriven_markers(bootstrap: str, letters: Sequence[DeadLetter]) -> set[str]:
    """The ``orderflow-redriven-from`` values already on the letters' source topics."""
    found: set[str] = set()
    by_topic: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        if letter.source_topic:
            by_topic.setdefault(letter.source_topic, []).append(letter)
    for topic, group in by_topic.items():
        keys = [letter.record.key for letter in group]
        since = min(letter.record.timestamp for letter in group) - MARKER_SCAN_MARGIN_MS
        selection = Selection(
            topics=(topic,),
            window=TimeWindow(since_ms=max(0, since)),
            # A keyless dead letter was redriven to any partition: then read them all.
            key_partitions_of=() if None in keys else tuple(k for k in keys if k is not None),
        )
        records = read_records(bootstrap, selection, [topic], missing_ok=True, skipped=[])
        async with contextlib.aclosing(records):
            async for record in records:
                marker = record.header_text(REDRIVEN_FROM_HEADER)
                if marker is not None:
                    found.add(marker)
    return found


@dataclass(frozen=True)
class RedriveAction:
    """What redrive did (or, with --dry-run, would do) with one dead letter."""

    letter: DeadLetter
    action: str  # redriven | would_redrive | already_redriven | skipped
    target: str | None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "dead_letter": self.letter.address,
            "order_id": self.letter.order_id,
            "action": self.action,
            "to_topic": self.target,
            "detail": self.detail,
        }


def _plan(letters: Sequence[DeadLetter], markers: set[str], dry_run: bool) -> list[RedriveAction]:
    actions = []
    sources_seen: dict[str, str] = {}
    for letter in letters:
        target = letter.source_topic
        if target not in INPUT_TOPICS:
            detail = f"source topic {target!r} is not an orderflow input topic"
            actions.append(RedriveAction(letter, "skipped", target, detail))
        elif letter.marker in markers:
            detail = f"{target} already has a record with {REDRIVEN_FROM_HEADER}={letter.marker}"
            actions.append(RedriveAction(letter, "already_redriven", target, detail))
        elif letter.source in sources_seen:
            # The same source event dead-lettered twice (it was redelivered): send it once.
            detail = f"same source event as dead letter {sources_seen[letter.source]}"
            actions.append(RedriveAction(letter, "skipped", target, detail))
        else:
            sources_seen[letter.source] = letter.address
            action = "would_redrive" if dry_run else "redriven"
            actions.append(RedriveAction(letter, action, target, f"from {letter.source}"))
    return actions


async def redrive(bootstrap: str, flt: DlqFilter, *, dry_run: bool) -> list[RedriveAction]:
    """Re-produce the matching dead letters to their source topics, each at most once."""
    letters = [letter async for letter in find_dead_letters(bootstrap, flt)]
    letters.sort(key=lambda letter: (letter.record.partition, letter.record.offset))
    markers = await redriven_markers(bootstrap, letters) if letters else set()
    actions = _plan(letters, markers, dry_run)
    to_send = [a for a in actions if a.action == "redriven"]
    if not to_send:
        return actions

    async def items() -> AsyncGenerator[
        tuple[str, bytes | None, bytes | None, list[tuple[str, bytes | None]]], None
    ]:
        for a in to_send:
            r = a.letter.record
            headers = [
                *a.letter.original_headers(),
                (REDRIVEN_FROM_HEADER, a.letter.marker.encode()),
            ]
            yield str(a.target), r.key, r.value, headers

    producer = make_producer(bootstrap)
    await producer.start()
    try:
        await send_all(producer, items())
    finally:
        await producer.stop()
    return actions
