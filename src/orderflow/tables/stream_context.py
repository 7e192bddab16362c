"""Pointing Faust's "current event" at the event a table write belongs to."""

from __future__ import annotations

import weakref
from typing import Any

from faust.streams import _current_event

__all__ = ["bind_event"]


def bind_event(event: Any) -> None:
    """Make ``event`` the current event of this asyncio task.

    Faust writes a table entry to the changelog partition (and RocksDB partition) of the *current*
    event. When a batch from ``take_events`` is processed concurrently, the current event is the
    batch's last one, which may belong to another partition than the key being written. The
    context variable is task-local, so each task of an ``asyncio.gather`` binds its own event.
    """
    _current_event.set(weakref.ref(event))
