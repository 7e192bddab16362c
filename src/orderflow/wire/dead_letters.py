"""The dead-letter record's headers: why an event failed and where it came from.

A dead letter keeps the original key, value and headers byte for byte; ours come first and all
start with ``DLQ_PREFIX`` (a redrive strips them, a second dead-lettering replaces them).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = [
    "DLQ_HEADER_ERROR",
    "DLQ_HEADER_FAILED_AT",
    "DLQ_HEADER_OFFSET",
    "DLQ_HEADER_PARTITION",
    "DLQ_HEADER_REASON",
    "DLQ_HEADER_TOPIC",
    "DLQ_PREFIX",
    "dead_letter_headers",
]

DLQ_PREFIX = "orderflow-dlq"
DLQ_HEADER_REASON = f"{DLQ_PREFIX}-reason"  # "<field path>: <problem>", tokens masked
DLQ_HEADER_ERROR = f"{DLQ_PREFIX}-error-type"  # the exception's class name ("" for none)
DLQ_HEADER_TOPIC = f"{DLQ_PREFIX}-source-topic"
DLQ_HEADER_PARTITION = f"{DLQ_PREFIX}-source-partition"  # decimal
DLQ_HEADER_OFFSET = f"{DLQ_PREFIX}-source-offset"  # decimal
DLQ_HEADER_FAILED_AT = f"{DLQ_PREFIX}-failed-at"  # RFC 3339


def dead_letter_headers(
    *,
    reason: str,
    error_type: str,
    topic: str,
    partition: int,
    offset: int,
    failed_at: str,
    original: Iterable[tuple[str, bytes]] = (),
) -> list[tuple[str, bytes]]:
    """A dead letter's headers: ours first, then the original ones (a redrive restores them),
    without any of ours an earlier dead-lettering left (a second one replaces them)."""
    headers = [
        (DLQ_HEADER_REASON, reason.encode()),
        (DLQ_HEADER_ERROR, error_type.encode()),
        (DLQ_HEADER_TOPIC, topic.encode()),
        (DLQ_HEADER_PARTITION, str(partition).encode()),
        (DLQ_HEADER_OFFSET, str(offset).encode()),
        (DLQ_HEADER_FAILED_AT, failed_at.encode()),
    ]
    headers.extend((k, v) for k, v in original if not k.startswith(DLQ_PREFIX))
    return headers
