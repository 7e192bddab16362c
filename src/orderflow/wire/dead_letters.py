"""The dead-letter record's headers: why an event failed and where it came from.

A dead letter keeps the original key, value and headers byte for byte; ours come first and all
start with ``DLQ_PREFIX`` (a redrive strips them, a second dead-lettering replaces them).
"""

from __future__ import annotations

__all__ = [
    "DLQ_HEADER_ERROR",
    "DLQ_HEADER_FAILED_AT",
    "DLQ_HEADER_OFFSET",
    "DLQ_HEADER_PARTITION",
    "DLQ_HEADER_REASON",
    "DLQ_HEADER_TOPIC",
    "DLQ_PREFIX",
]

DLQ_PREFIX = "orderflow-dlq"
DLQ_HEADER_REASON = f"{DLQ_PREFIX}-reason"  # "<field path>: <problem>", tokens masked
DLQ_HEADER_ERROR = f"{DLQ_PREFIX}-error-type"  # the exception's class name ("" for none)
DLQ_HEADER_TOPIC = f"{DLQ_PREFIX}-source-topic"
DLQ_HEADER_PARTITION = f"{DLQ_PREFIX}-source-partition"  # decimal
DLQ_HEADER_OFFSET = f"{DLQ_PREFIX}-source-offset"  # decimal
DLQ_HEADER_FAILED_AT = f"{DLQ_PREFIX}-failed-at"  # RFC 3339
