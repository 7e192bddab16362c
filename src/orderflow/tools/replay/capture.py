"""Capture files: selected records in SQLite, byte for byte, to replay later without the broker.

    records(topic, partition, "offset", timestamp, key BLOB, value BLOB)
    headers(topic, partition, "offset", position, name, value BLOB)   -- order and repeats kept
    meta(name, value)                                                  -- format, when, what

Keys and values are BLOBs (NULL stays NULL: a tombstone is not an empty value). A record is
identified by (topic, partition, offset), so capturing into an existing file adds what is new and
skips what is there: captures can be merged. Open one with ``sqlite3 incident.db``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from pathlib import Path

import aiosqlite

from orderflow.domain.events import rfc3339
from orderflow.tools.replay.errors import CaptureError
from orderflow.tools.replay.model import Selection, TopicRecord

__all__ = ["FORMAT", "read_capture", "write_capture"]

FORMAT = "orderflow-capture/1"
_BATCH = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    topic     TEXT    NOT NULL,
    partition INTEGER NOT NULL,
    "offset"  INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    key       BLOB,
    value     BLOB,
    PRIMARY KEY (topic, partition, "offset")
);
CREATE TABLE IF NOT EXISTS headers (
    topic     TEXT    NOT NULL,
    partition INTEGER NOT NULL,
    "offset"  INTEGER NOT NULL,
    position  INTEGER NOT NULL,
    name      TEXT    NOT NULL,
    value     BLOB,
    PRIMARY KEY (topic, partition, "offset", position)
);
CREATE INDEX IF NOT EXISTS records_timestamp ON records (timestamp);
"""


async def _check_format(db: aiosqlite.Connection, path: Path) -> None:
    try:
        async with db.execute("SELECT value FROM meta WHERE name = 'format'") as cursor:
            row = await cursor.fetchone()
    except aiosqlite.Error:
        row = None
    if row is None or row[0] != FORMAT:
        raise CaptureError(f"{path} is not an orderflow capture file ({FORMAT})")


async def write_capture(
    path: Path, records: AsyncIterable[TopicRecord], meta: Mapping[str, object]
) -> tuple[int, int]:
    """Store ``records`` in ``path`` (created or extended); returns (new, already there)."""
    existed = await asyncio.to_thread(path.exists)
    await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
    async with aiosqlite.connect(path) as db:
        if existed:
            await _check_format(db, path)
        await db.executescript(_SCHEMA)
        await db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
        await db.execute(
            "INSERT OR IGNORE INTO meta VALUES ('created_at', ?)", (rfc3339(time.time()),)
        )
        for name, value in meta.items():
            await db.execute(
                "INSERT OR REPLACE INTO meta VALUES (?, ?)", (f"last_{name}", json.dumps(value))
            )
        # Committed before any record: a capture that fails or is interrupted leaves a valid
        # file with what it had stored so far, which a later run can extend.
        await db.commit()
        added = seen = 0
        batch: list[TopicRecord] = []
        async for record in records:
            batch.append(record)
            if len(batch) >= _BATCH:
                added += await _insert(db, batch)
                await db.commit()
                seen += len(batch)
                batch.clear()
        added += await _insert(db, batch)
        seen += len(batch)
        await db.commit()
    return added, seen - added


async def _insert(db: aiosqlite.Connection, batch: list[TopicRecord]) -> int:
    if not batch:
        return 0
    before = db.total_changes
    await db.executemany(
        'INSERT OR IGNORE INTO records (topic, partition, "offset", timestamp, key, value) '
        "VALUES (?, ?, ?, ?, ?, ?)",
        [(r.topic, r.partition, r.offset, r.timestamp, r.key, r.value) for r in batch],
    )
    added = db.total_changes - before
    await db.executemany(
        'INSERT OR IGNORE INTO headers (topic, partition, "offset", position, name, value) '
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (r.topic, r.partition, r.offset, i, name, value)
            for r in batch
            for i, (name, value) in enumerate(r.headers)
        ],
    )
    return added


async def read_capture(path: Path, selection: Selection) -> AsyncGenerator[TopicRecord, None]:
    """Yield the file's records that match ``selection``, ordered by topic, partition, offset."""
    if not await asyncio.to_thread(path.is_file):
        raise CaptureError(f"{path}: no such capture file")
    async with aiosqlite.connect(path) as db:
        await _check_format(db, path)
        # Both tables are read in the same order and merged: no header is held for long.
        order = 'ORDER BY topic, partition, "offset"'
        records = await db.execute(
            f'SELECT topic, partition, "offset", timestamp, key, value FROM records {order}'
        )
        headers = await db.execute(
            f'SELECT topic, partition, "offset", name, value FROM headers {order}, position'
        )
        try:
            pending = await headers.fetchone()
            async for topic, partition, offset, timestamp, key, value in records:
                ident = (topic, partition, offset)
                found: list[tuple[str, bytes | None]] = []
                while pending is not None and tuple(pending[:3]) <= ident:
                    if tuple(pending[:3]) == ident:
                        raw = pending[4]
                        found.append((pending[3], None if raw is None else bytes(raw)))
                    pending = await headers.fetchone()
                record = TopicRecord(
                    topic,
                    partition,
                    offset,
                    timestamp,
                    None if key is None else bytes(key),
                    None if value is None else bytes(value),
                    tuple(found),
                )
                if selection.matches(record):
                    yield record
        finally:
            await records.close()
            await headers.close()
