"""The data dir lock, the clean-stop marker, and the ledger of changelog records that decides it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from aiokafka.errors import KafkaTimeoutError

from orderflow.delivery import ChangelogLedger
from orderflow.tables.local_state import (
    CLEAN_STOP_MARKER,
    DataDirInUse,
    LocalState,
    LocalStateGuard,
)


def _state(tmp_path: Path) -> LocalState:
    return LocalState(tmp_path / "data", tmp_path / "data" / "orderflow-data" / "tables")


def _store(state: LocalState, name: str = "PaymentDB-3.db") -> Path:
    store = state.table_dir / name
    store.mkdir(parents=True)
    (store / "000004.log").write_bytes(b"local only")
    return store


def test_stores_without_clean_stop_marker_are_removed(tmp_path: Path) -> None:
    state = _state(tmp_path)
    store = _store(state)
    assert state.prepare() is False
    assert not store.exists()
    assert state.table_dir.is_dir()  # only what it held goes


def test_stores_after_clean_stop_are_kept_and_marker_removed(tmp_path: Path) -> None:
    state = _state(tmp_path)
    store = _store(state)
    state.mark_clean_stop()
    assert (state.table_dir / CLEAN_STOP_MARKER).is_file()
    assert state.prepare() is True
    assert (store / "000004.log").read_bytes() == b"local only"
    # Removed before the worker writes: a crash from now on must find no marker.
    assert not (state.table_dir / CLEAN_STOP_MARKER).exists()
    assert state.prepare() is False
    assert not store.exists()


def test_first_start_without_stores_is_fine(tmp_path: Path) -> None:
    state = _state(tmp_path)
    assert state.prepare() is False
    state.mark_clean_stop()
    assert state.prepare() is False  # nothing to keep
    assert not (state.table_dir / CLEAN_STOP_MARKER).exists()


def test_second_lock_on_the_same_data_dir_fails_naming_the_setting(tmp_path: Path) -> None:
    first, second = _state(tmp_path), _state(tmp_path)
    first.lock()
    try:
        with pytest.raises(DataDirInUse, match="ORDERFLOW_DATA_DIR"):
            second.lock()
    finally:
        first.release()
    second.lock()  # free again once released
    second.release()


def test_lock_held_by_another_process_is_refused(tmp_path: Path) -> None:
    state = _state(tmp_path)
    code = (
        "import sys, time; from pathlib import Path; "
        "from orderflow.tables.local_state import LocalState; "
        "s = LocalState(Path(sys.argv[1]), Path(sys.argv[1]) / 't'); s.lock(); "
        "print('locked', flush=True); time.sleep(60)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(state.data_dir)], stdout=subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"locked\n"
        with pytest.raises(DataDirInUse):
            state.lock()
    finally:
        holder.kill()
        holder.wait()
    state.lock()  # the dead holder's lock went with it
    state.release()


async def test_guard_marks_clean_stop_only_when_the_changelog_has_everything(
    tmp_path: Path,
) -> None:
    problems: list[str | None] = ["1 changelog record(s) not known delivered, 0 key(s) failed"]
    state = _state(tmp_path)
    _store(state)
    guard = LocalStateGuard(state, lambda: problems[0])
    await guard.on_start()
    await guard.on_stop()
    assert not (state.table_dir / CLEAN_STOP_MARKER).exists()
    problems[0] = None
    await guard.on_stop()
    assert (state.table_dir / CLEAN_STOP_MARKER).is_file()
    state.release()


async def test_guard_that_did_not_get_the_lock_writes_nothing(tmp_path: Path) -> None:
    owner = _state(tmp_path)
    owner.lock()
    _store(owner)
    intruder = LocalStateGuard(_state(tmp_path), lambda: None)
    with pytest.raises(DataDirInUse):
        await intruder.on_start()
    await intruder.on_stop()
    assert not (owner.table_dir / CLEAN_STOP_MARKER).exists()
    assert owner.stores()  # and removed nothing
    owner.release()


def _future() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


async def _callbacks() -> None:
    await asyncio.sleep(0)  # done callbacks run on the next loop iteration


async def test_ledger_counts_records_until_delivered() -> None:
    ledger = ChangelogLedger()
    first, second = _future(), _future()
    ledger.sent("PaymentDB", b"o1", first)
    ledger.sent("PaymentDB", b"o2", second)
    assert ledger.pending == 2 and ledger.unsettled() is not None
    first.set_result(None)
    await _callbacks()
    assert ledger.pending == 1 and ledger.unsettled() is not None
    second.set_result(None)
    await _callbacks()
    assert ledger.unsettled() is None


async def test_ledger_failed_key_stays_unsettled_until_a_later_record_is_delivered() -> None:
    ledger = ChangelogLedger()
    failed = _future()
    ledger.sent("PaymentDB", b"o1", failed)
    failed.set_exception(KafkaTimeoutError())
    await _callbacks()
    assert ledger.pending == 0 and ledger.failed == 1
    assert "1 key(s) failed" in (ledger.unsettled() or "")
    other = _future()  # another key's success repairs nothing
    ledger.sent("PaymentDB", b"o2", other)
    other.set_result(None)
    await _callbacks()
    assert ledger.unsettled() is not None
    resent = _future()  # Deliveries.settle resends the key's current value
    ledger.sent("PaymentDB", b"o1", resent)
    resent.set_result(None)
    await _callbacks()
    assert ledger.unsettled() is None


async def test_ledger_older_record_delivered_after_a_newer_one_failed_repairs_nothing() -> None:
    ledger = ChangelogLedger()
    older, newer = _future(), _future()
    ledger.sent("PaymentDB", b"o1", older)
    ledger.sent("PaymentDB", b"o1", newer)
    newer.set_exception(KafkaTimeoutError())
    await _callbacks()
    older.set_result(None)  # the changelog has the older value, the store the newer one
    await _callbacks()
    assert ledger.failed == 1 and ledger.unsettled() is not None


async def test_ledger_cancelled_record_counts_as_failed() -> None:
    ledger = ChangelogLedger()
    future = _future()
    ledger.sent("OrderDB", b"o1", future)
    future.cancel()
    await _callbacks()
    assert ledger.failed == 1
