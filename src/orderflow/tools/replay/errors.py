"""The exception tree of the replay, trace and dead-letter commands."""

from __future__ import annotations

__all__ = [
    "CaptureError",
    "PublishRefused",
    "ReplayError",
    "SelectionError",
    "TopicNotFound",
]


class ReplayError(Exception):
    """Base of every error these commands report to the user (message only, no traceback)."""


class SelectionError(ReplayError):
    """The options select nothing sensible (bad time, offsets without a partition, ...)."""


class TopicNotFound(ReplayError):
    """A topic named on the command line does not exist on the broker."""


class PublishRefused(ReplayError):
    """Re-publishing was refused: the target is a live input topic and ``--force`` was not given."""


class CaptureError(ReplayError):
    """A capture file is missing, or is not an orderflow capture file."""
