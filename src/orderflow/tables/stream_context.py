"""Pointing Faust's "current event" at the event a table write belongs to."""

from __future__ import annotations

import weakref
from typing import Any

from faust.streams import _current_event

__all__ = ["bind_event"]


def bind_event(event: Any) -> None:
    """Make ``event`` the current event of this asyncio task.

    Faust writes a table entry to the changelog partition (and RocksDB partition) of the *current*
    event, a task-local context variable set while a stream iterates. Events of a
    ``take_events`` batch are buffered by another task, so the agent's task has no current event
    (a table write would raise), and a batch mixes partitions anyway. Each task of the batch's
    ``asyncio.gather`` binds the event it handles, so its writes land on that event's partition.
    """
    _current_event.set(weakref.ref(event))
