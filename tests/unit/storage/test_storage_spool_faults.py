"""The queued writer survives bad spool files, restarts without repeating flows, and never shares a spool.

The store here is a recording backend (the unit under test is the queue, not the database); the
truth is the list of snapshots put in, compared with what reached the store, in order.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from netspectra.errors import StorageError
from netspectra.storage.rows import SnapshotRows
from netspectra.storage.spool import QueuedWriter, SnapshotSpool


class RecordingBackend:
    """Keeps every insert; ``fail_tables`` refuse inserts (a store that is half away)."""

    def __init__(self, fail_tables: tuple[str, ...] = ()) -> None:
        self.inserts: list[tuple[str, list[Any]]] = []
        self.fail_tables = fail_tables

    async def select(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return []

    async def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        if table in self.fail_tables:
            raise StorageError(f"{table} refused")
        self.inserts.append((table, list(next(iter(columns.values())))))

    async def execute(self, sql: str) -> None:
        return None

    async def close(self) -> None:
        return None


def rows(number: int, hitters: bool = False) -> SnapshotRows:
    return SnapshotRows(
        "exact", number, flows={"Timestamp": [number]}, hitters={"Timestamp": [number]} if hitters else {}
    )


def writer(backend: RecordingBackend, spool: SnapshotSpool) -> QueuedWriter:
    queued = QueuedWriter(backend, spool, engine_id="engine/1", label="test")  # type: ignore[arg-type]
    queued.backoff_initial = queued.backoff_max = 0.01
    queued.close_grace = 0.2
    return queued


async def test_corrupt_file_is_moved_aside_and_the_rest_is_written(tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path / "q", memory_limit=0)
    for number in range(3):
        await spool.put(rows(number))
    files = sorted((tmp_path / "q").glob("*.snapshot"))
    files[1].write_bytes(b"not a pickle")
    backend = RecordingBackend()
    queued = writer(backend, spool)
    await queued.flush(5)
    assert backend.inserts == [("flow_metrics", [0]), ("flow_metrics", [2])]
    own = tmp_path / "q" / "engine_1"
    assert [p.name for p in own.glob("*.bad")] == [f"{1:016d}.snapshot.bad"]
    assert (own / f"{1:016d}.snapshot.bad").read_bytes() == b"not a pickle"
    await queued.close()


async def test_stray_file_name_is_moved_aside(tmp_path: Path) -> None:
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "notes.snapshot").write_text("x")
    spool = SnapshotSpool(tmp_path / "q", memory_limit=2)
    assert len(spool) == 0 and spool.bad_files == 1
    assert (tmp_path / "q" / "notes.snapshot.bad").read_text() == "x"
    await spool.put(rows(7))
    assert (await spool.peek()).taken_at_ns == 7  # type: ignore[union-attr]
    spool.close()


async def test_flows_written_flag_survives_a_restart(tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path / "q", memory_limit=0)
    await spool.put(rows(5, hitters=True))
    half_away = RecordingBackend(fail_tables=("heavy_hitters",))
    first = writer(half_away, spool)
    with contextlib.suppress(TimeoutError):
        await first.flush(0.3)
    await first.close()
    assert half_away.inserts == [("flow_metrics", [5])]
    back = RecordingBackend()
    second = writer(back, SnapshotSpool(tmp_path / "q", memory_limit=0))
    await second.flush(5)
    assert back.inserts == [("heavy_hitters", [5])]  # flows not inserted a second time
    await second.close()


async def test_one_spool_directory_per_engine_and_never_shared(tmp_path: Path) -> None:
    first = SnapshotSpool(tmp_path / "q", memory_limit=0, owner="a")
    with pytest.raises(StorageError, match="in use by another writer"):
        SnapshotSpool(tmp_path / "q", memory_limit=0, owner="a")
    second = SnapshotSpool(tmp_path / "q", memory_limit=0, owner="b")
    await first.put(rows(1))
    await second.put(rows(2))
    assert [p.parent.name for p in sorted((tmp_path / "q").rglob("*.snapshot"))] == ["a", "b"]
    assert (await first.peek()).taken_at_ns == 1  # type: ignore[union-attr]
    assert (await second.peek()).taken_at_ns == 2  # type: ignore[union-attr]
    first.close()
    SnapshotSpool(tmp_path / "q", memory_limit=0, owner="a").close()  # free again once closed
    second.close()


async def test_half_written_files_of_a_crashed_run_are_removed_at_start(tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path / "q", memory_limit=0)
    await spool.put(rows(1))
    spool.close()
    # what a kill in the middle of a write leaves: a temporary that was never renamed
    (tmp_path / "q" / "0000000000000001.snapshot.tmp").write_bytes(b"half a pick")
    (tmp_path / "q" / "0000000000000002.tmp").write_bytes(b"older naming")
    reopened = SnapshotSpool(tmp_path / "q", memory_limit=0)
    assert sorted(path.name for path in (tmp_path / "q").glob("*tmp")) == []
    assert [item.taken_at_ns for item in [await reopened.peek()] if item] == [1]
    assert len(reopened) == 1
    reopened.close()


async def test_a_spool_that_cannot_write_keeps_memory_bounded_and_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno
    import logging

    from netspectra.model.snapshot import Snapshot

    spool = SnapshotSpool(tmp_path / "q", memory_limit=2)

    class DownBackend(RecordingBackend):
        async def execute(self, sql: str) -> None:
            raise StorageError("the store is away too")

    queued = writer(DownBackend(), spool)

    def disk_full(sequence: int, rows: SnapshotRows) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool, "_dump", disk_full)
    caplog.set_level(logging.INFO)
    for second in range(6):
        await queued.write(Snapshot(group="exact", taken_at_ns=second * 10**9, period_start_ns=0))
    stats = queued.stats
    assert (stats.stored, stats.dropped, stats.memory_only) == (0, 4, 2)  # bounded by memory_limit
    assert stats.failed >= 6
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert sum("cannot write the snapshot to the spool" in r.getMessage() for r in errors) == 1
    assert sum("dropped the oldest snapshot" in r.getMessage() for r in errors) == 4
    await queued.close()
    assert any("LOST" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert list((tmp_path / "q").glob("*.tmp")) == []


async def test_the_progress_of_the_newest_accepted_snapshot_survives_a_restart(tmp_path: Path) -> None:
    spool = SnapshotSpool(tmp_path, 4, owner="e1")
    for arrived in (10, 20):
        await spool.put(SnapshotRows("exact", arrived, progress={"arrived": arrived}))
    spool.close()
    assert SnapshotSpool(tmp_path, 4, owner="e1").resumed_progress == {"arrived": 20}


async def test_a_crash_between_snapshot_file_and_progress_file_resumes_from_the_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spool = SnapshotSpool(tmp_path, 4, owner="e1")
    await spool.put(SnapshotRows("exact", 1, progress={"arrived": 10}))
    monkeypatch.setattr(spool, "_accept", spool._dump)  # the progress file is never written
    await spool.put(SnapshotRows("exact", 2, progress={"arrived": 30}))
    spool.close()
    assert SnapshotSpool(tmp_path, 4, owner="e1").resumed_progress == {"arrived": 30}
