"""A worker's local RocksDB is trusted only after a clean stop; otherwise it is rebuilt.

Faust's RocksDB store writes ``table[k] = v`` locally at once and sends the changelog record
after; the persisted changelog offset moves only when that send succeeds. A worker killed in
between restarts with local values the changelog never got, trusts them (a COMPLETED payment is
republished, never written to the changelog again), and the next owner of the partition, which
rebuilds from the changelog, charges again. So, as Kafka Streams does without a checkpoint:

- at worker start (``LocalStateGuard``, started before Faust's producer, consumer and tables),
  an exclusive ``flock`` on ``<data dir>/orderflow.lock`` for the process's life (a second worker
  on the same data dir fails at once, naming ORDERFLOW_DATA_DIR); then, unless the table
  directory holds the clean-stop marker, its stores are removed: Faust rebuilds them from their
  changelogs. The marker is removed in any case before anything is written.
- at a clean stop (the guard stops last: after the agents, the tables and the producer's final
  flush), the marker is written only if every changelog record the worker sent was delivered
  (``orderflow.delivery.CHANGELOG``): then the local stores hold nothing the changelog lacks.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mode import Service

__all__ = ["CLEAN_STOP_MARKER", "LOCK_FILE", "DataDirInUse", "LocalState", "LocalStateGuard"]

log = logging.getLogger(__name__)

LOCK_FILE = "orderflow.lock"
CLEAN_STOP_MARKER = ".clean-stop"


class DataDirInUse(RuntimeError):
    """Another process holds this data dir (two workers cannot share one)."""


class LocalState:
    """The lock on a data dir and the clean-stop marker of its table directory."""

    def __init__(self, data_dir: Path, table_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.table_dir = Path(table_dir)
        self._lock_fd: int | None = None

    @property
    def marker(self) -> Path:
        return self.table_dir / CLEAN_STOP_MARKER

    def lock(self) -> None:
        """Hold an exclusive lock on the data dir until ``release`` or the process ends."""
        if self._lock_fd is not None:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        path = self.data_dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise DataDirInUse(
                    f"data dir {self.data_dir} is in use by another worker: give each worker "
                    "its own ORDERFLOW_DATA_DIR"
                ) from exc
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())  # who holds it, for a person looking
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    def stores(self) -> list[Path]:
        """What the table directory holds besides the marker (Faust's ``<table>-<n>.db`` dirs)."""
        if not self.table_dir.is_dir():
            return []
        return sorted(p for p in self.table_dir.iterdir() if p.name != CLEAN_STOP_MARKER)

    def prepare(self) -> bool:
        """Keep the stores after a clean stop, else remove them; True when they were kept.

        Call with the lock held, before any store is opened. The marker goes in any case: from
        now on the stores may be ahead of the changelog until the next clean stop says otherwise.
        """
        clean = self.marker.is_file()
        stores = self.stores()
        if stores and not clean:
            log.warning(
                "unclean stop, rebuilding tables from their changelogs: removing %d "
                "local store(s) in %s",
                len(stores),
                self.table_dir,
            )
            for path in stores:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path)
                else:
                    path.unlink()
        elif stores:
            log.info(
                "local tables kept (clean stop at %s): %d store(s) in %s",
                self.marker.read_text().strip(),
                len(stores),
                self.table_dir,
            )
        self.marker.unlink(missing_ok=True)
        _fsync_dir(self.table_dir)
        return bool(stores) and clean

    def mark_clean_stop(self) -> None:
        """Say the stores hold nothing their changelogs lack (the caller has made sure)."""
        self.table_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.marker.with_name(self.marker.name + ".tmp")
        with tmp.open("w") as f:
            f.write(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()) + "\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.marker)
        _fsync_dir(self.table_dir)


def _fsync_dir(path: Path) -> None:
    # The marker's creation or removal must itself survive a power cut.
    if not path.is_dir():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStateGuard(Service):
    """Runs ``LocalState`` with the worker: claims at start, marks a clean stop at the end.

    Added as the app's first dependency, it starts before Faust's own services (so before any
    store is opened) and stops after them (mode stops children in reverse order).
    """

    def __init__(
        self, state: LocalState, unsettled: Callable[[], str | None], **kwargs: Any
    ) -> None:
        self.local = state
        self.unsettled = unsettled  # None when every changelog record sent was delivered
        self.claimed = False
        super().__init__(**kwargs)

    async def on_start(self) -> None:
        self.local.lock()
        self.local.prepare()
        self.claimed = True

    async def on_stop(self) -> None:
        if not self.claimed:  # the data dir is someone else's (or was never prepared)
            return
        problem = self.unsettled()
        if problem is None:
            self.local.mark_clean_stop()
            log.info("clean stop: local tables marked consistent with their changelogs")
        else:
            log.warning(
                "local tables not marked clean (%s): the next start rebuilds them "
                "from their changelogs",
                problem,
            )
        # The lock stays until the process exits: Faust never closes its RocksDB handles.
