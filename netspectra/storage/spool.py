"""The queue between the engine and a store: bounded in memory, spilled to disk beyond, never lossy.

A writer accepts a snapshot at once (the engine must not wait on storage) and a drain task
inserts it, retrying with capped exponential backoff while the store is away. Up to
``memory_limit`` snapshots wait in memory; later ones are pickled to ``directory`` and read
back in order. Whatever is still queued at :meth:`QueuedWriter.close` is written to disk and
picked up by the next writer opened on the same directory, so an outage or a restart loses
nothing the engine handed over.

Layout: ``<directory>/<engine_id>/NNNN.snapshot`` — :class:`QueuedWriter` claims a subdirectory
named after its engine id (the caller's ``directory`` already names the store and the group), and
a ``.lock`` file held with ``flock`` while the spool is open makes a second process (or writer)
on the same subdirectory fail at once with a clear error instead of overwriting files. Files that
cannot be read back (corrupt, from an incompatible version, stray names) are renamed to ``*.bad``
with an ERROR/WARNING naming them, and draining carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import pickle
import re
import secrets
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netspectra.config.durations import format_duration
from netspectra.errors import EngineIdInUseError, StorageAuthError, StorageError, StorageRefusedError
from netspectra.model.snapshot import Snapshot
from netspectra.model.writer import WriterStats
from netspectra.storage import sql
from netspectra.storage.context import stored_engine_id
from netspectra.storage.lease import HEARTBEAT_S, EngineLease
from netspectra.storage.retention import apply_retention
from netspectra.storage.rows import SnapshotRows, as_arrow, snapshot_rows
from netspectra.storage.sql import LATEST_COMPACT, SqlBackend, ensure_schema

logger = logging.getLogger(__name__)

_SUFFIX = ".snapshot"
_LOCK = ".lock"
_HOLDER = ".holder"
#: The progress of the newest snapshot this spool accepted durably (see :meth:`SnapshotSpool.put`).
_PROGRESS = ".progress"
#: At most one ERROR line per failure kind this often (the hot path must not flood the log).
_LOG_EVERY_S = 60.0
#: Seconds between two retention passes of one writer (partition drops are monthly anyway).
RETENTION_EVERY_S = 600.0


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text).lstrip(".") or "default"


def _move_aside(path: Path) -> Path:
    """Rename ``path`` to ``path.bad`` (kept for inspection, never read again)."""
    bad = path.with_name(path.name + ".bad")
    with contextlib.suppress(OSError):
        path.replace(bad)
    return bad


@dataclass(slots=True, eq=False)
class _Entry:
    """One queued snapshot: its file (when ``durable``), its rows (when cached in memory)."""

    sequence: int
    rows: SnapshotRows | None
    durable: bool
    #: Its insert may already have happened (left by a previous run, or an insert that raised
    #: after it was sent): the writer checks the store before inserting it (exactly once).
    maybe_stored: bool = False


class SnapshotSpool:
    """FIFO of :class:`SnapshotRows`, every one on disk before :meth:`put` returns.

    ``memory_limit`` bounds the snapshots held in memory: a cache of durable ones (so the drain
    does not read back what it just wrote) and, while the directory cannot be written, the ones
    kept only in memory (see :meth:`put` for what happens beyond the bound).
    """

    def __init__(self, directory: Path, memory_limit: int, *, owner: str | None = None) -> None:
        self.memory_limit = memory_limit
        self.owner = owner
        self.directory = directory if owner is None else directory / _safe_name(owner)
        self._entries: deque[_Entry] = deque()
        self._next = 0
        self.spilled_total = 0
        self.bad_files = 0
        self._lock_fd: int | None = None
        self.holder = ""
        self._dropped: SnapshotRows | None = None
        #: The progress of the newest snapshot an earlier run left accepted here (None if none).
        self.resumed_progress: dict[str, Any] | None = None
        self._open()

    def _open(self) -> None:
        """Take the directory's lock, remove half-written files, then load what a previous run left."""
        directory = self.directory
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / _LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StorageError(
                f"spool directory {directory} is in use by another writer; give each engine its own "
                "engine id or queue_dir"
            ) from None
        self._lock_fd = fd
        self.holder = self._holder_id()
        # A .tmp is a write a crash interrupted before its rename: never accepted, so never counted.
        leftovers = list(directory.glob("*.tmp"))
        for path in leftovers:
            path.unlink(missing_ok=True)
        if leftovers:
            logger.info(
                "Spool %s: removed %d half-written file(s) of a previous run", directory, len(leftovers)
            )
        for path in sorted(directory.glob(f"*{_SUFFIX}")):
            try:
                sequence = int(path.stem)
            except ValueError:
                self.bad_files += 1
                logger.warning(
                    "Spool %s: stray file %s moved aside to %s", directory, path, _move_aside(path)
                )
                continue
            # A previous run may have inserted it and died before removing the file.
            self._entries.append(_Entry(sequence, None, durable=True, maybe_stored=True))
            self._next = max(self._next, sequence + 1)
        if self._entries:
            logger.info("Spool %s: %d snapshots left by a previous run", directory, len(self._entries))
        self.resumed_progress = self._load_progress()

    def _load_progress(self) -> dict[str, Any] | None:
        """The progress of the newest snapshot accepted here: the progress file, or the newest file.

        :meth:`put` renames the snapshot's file into place before it writes the progress file, so
        a crash between the two leaves the newer progress inside the newest snapshot file; the
        file with more arrivals wins.
        """
        found: list[dict[str, Any]] = []
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads((self.directory / _PROGRESS).read_text())
            if isinstance(loaded, dict):
                found.append(loaded)
        if self._entries:
            newest = self._path(self._entries[-1].sequence)
            with contextlib.suppress(Exception):  # unreadable: the drain sets it aside and says so
                progress = getattr(pickle.loads(newest.read_bytes()), "progress", None)
                if isinstance(progress, dict):
                    found.append(progress)
        found = [progress for progress in found if isinstance(progress.get("arrived"), int)]
        return max(found, key=lambda progress: int(progress["arrived"])) if found else None

    def _holder_id(self) -> str:
        """This directory's id, made once and kept in it: the engine-id lease names its holder by it."""
        path = self.directory / _HOLDER
        with contextlib.suppress(OSError, UnicodeDecodeError):
            text = path.read_text().strip()
            if text:
                return text
        text = secrets.token_hex(8)
        _write_durably(path, (text + "\n").encode())
        return text

    def claim(self, owner: str) -> None:
        """Move this spool into ``<directory>/<owner>`` (files queued at the old level come along).

        Files at the old level predate per-engine directories; whichever writer claims first takes
        them (rename is atomic, so each is inserted once).
        """
        if self.owner is not None or any(entry.rows is not None for entry in self._entries):
            raise StorageError(f"spool {self.directory} already has an owner or queued snapshots in memory")
        parent, legacy = self.directory, [entry.sequence for entry in self._entries]
        self.close()
        self.owner = owner
        self.directory = parent / _safe_name(owner)
        self._entries.clear()
        self._next = 0
        self._open()
        for sequence in legacy:
            with contextlib.suppress(FileNotFoundError):  # another engine took it first
                (parent / f"{sequence:016d}{_SUFFIX}").rename(self._path(self._next))
                self._entries.append(_Entry(self._next, None, durable=True, maybe_stored=True))
                self._next += 1

    def close(self) -> None:
        """Release the directory lock (files stay for the next writer)."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def discard_oldest_as_bad(self, error: BaseException) -> None:
        """The oldest entry cannot be read back: move its file aside and drop it from the queue."""
        entry = self._entries.popleft()
        self.bad_files += 1
        path = self._path(entry.sequence)
        logger.error(
            "Spool %s: cannot read %s (%s); moved aside to %s and skipped",
            self.directory,
            path,
            error,
            _move_aside(path),
        )

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def in_memory(self) -> int:
        return sum(1 for entry in self._entries if entry.rows is not None)

    @property
    def memory_only(self) -> int:
        """Snapshots that are not on disk (the directory could not be written): lost if we die."""
        return sum(1 for entry in self._entries if not entry.durable)

    def _path(self, sequence: int) -> Path:
        return self.directory / f"{sequence:016d}{_SUFFIX}"

    def _dump(self, sequence: int, rows: SnapshotRows) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_durably(self._path(sequence), pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL))

    def _accept(self, sequence: int, rows: SnapshotRows) -> None:
        self._dump(sequence, rows)
        progress = getattr(rows, "progress", None)
        if progress is not None:
            # after the snapshot's own file: a restart reads whichever of the two is newer
            with contextlib.suppress(OSError):
                _write_durably(self.directory / _PROGRESS, json.dumps(progress).encode())

    async def put(self, rows: SnapshotRows) -> SnapshotRows | None:
        """Queue ``rows``, written to disk durably before returning.

        When the directory cannot be written (disk full, read-only, permissions) the OSError is
        re-raised after ``rows`` are queued in memory only, and at most ``memory_limit`` such
        snapshots are kept: beyond that the **oldest memory-only one is dropped** and returned
        (the caller counts and logs it, and asks the engine for a snapshot of every flow next,
        since a change snapshot holds only what changed since the one before).
        """
        sequence, self._next = self._next, self._next + 1
        try:
            await asyncio.to_thread(self._accept, sequence, rows)
        except OSError:
            self._entries.append(_Entry(sequence, rows, durable=False))
            self._dropped = self._drop_oldest_memory_only()
            raise
        cached = rows if self.in_memory < self.memory_limit else None
        self._entries.append(_Entry(sequence, cached, durable=True))
        if cached is None:
            self.spilled_total += 1
        return None

    def take_dropped(self) -> SnapshotRows | None:
        """The snapshot the last failed :meth:`put` dropped to keep memory bounded, if any."""
        dropped, self._dropped = self._dropped, None
        return dropped

    def _drop_oldest_memory_only(self) -> SnapshotRows | None:
        if self.memory_only <= max(1, self.memory_limit):
            return None
        # Never the head: the drain may be inserting it right now.
        for position, entry in enumerate(self._entries):
            if position and not entry.durable:
                del self._entries[position]
                return entry.rows
        return None

    @property
    def head_maybe_stored(self) -> bool:
        return bool(self._entries) and self._entries[0].maybe_stored

    def mark_head_maybe_stored(self) -> None:
        """An insert of the oldest entry failed in a way that may have stored it anyway."""
        if self._entries:
            self._entries[0].maybe_stored = True

    async def peek(self) -> SnapshotRows | None:
        """The oldest entry (loaded from disk if needed), or None when empty."""
        if not self._entries:
            return None
        entry = self._entries[0]
        if entry.rows is None:
            data = await asyncio.to_thread(self._path(entry.sequence).read_bytes)
            entry.rows = pickle.loads(data)
        return entry.rows

    def pop(self) -> None:
        """Drop the oldest entry (it has been written) and its file, if any.

        A crash before the unlink leaves the file: the next run checks the store (maybe_stored).
        """
        entry = self._entries.popleft()
        if entry.durable:
            self._path(entry.sequence).unlink(missing_ok=True)

    async def persist(self) -> int:
        """Write what only memory holds, and rows a partial insert changed, to disk (at close).

        Returns how many are written; what still cannot be written stays memory-only (see
        :attr:`memory_only`: those are lost when the process ends).
        """
        written = 0
        for entry in list(self._entries):
            rows = entry.rows
            # A loaded entry may carry flows_written=True: rewrite it so a restart skips the flows.
            if rows is not None and (rows.flows_written or not entry.durable):
                try:
                    await asyncio.to_thread(self._dump, entry.sequence, rows)
                except OSError as error:
                    if entry.durable:  # the older file stays: at worst flows are checked again
                        continue
                    logger.debug("Spool %s: still cannot write (%s)", self.directory, error)
                    continue
                entry.durable = True
                written += 1
        return written


def _disk_full(error: BaseException) -> bool:
    text = str(error)
    return any(sign in text for sign in ("NOT_ENOUGH_SPACE", "No space left", "not enough space"))


def _write_durably(path: Path, data: bytes) -> None:
    """``data`` in ``path`` whole or not at all, surviving a crash: fsync'd temporary, rename, dir fsync.

    A failed write (ENOSPC) removes its temporary, so a full disk leaves no ``.tmp`` behind.
    """
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)  # the rename itself must survive a crash too
    finally:
        os.close(directory)


class QueuedWriter:
    """A :class:`SnapshotWriter` over any :class:`SqlBackend`: queue, drain, retry, spill."""

    #: The engine hands this writer only the flows changed since its last accepted snapshot.
    writes_changes = True

    #: First and largest pause between attempts while the store is unreachable.
    backoff_initial = 0.2
    backoff_max = 5.0
    #: How long :meth:`close` keeps trying to drain before persisting the rest.
    close_grace = 5.0
    #: Pause between attempts when the store refused our credentials or our engine id.
    refused_retry = 30.0

    def __init__(
        self,
        backend: SqlBackend,
        spool: SnapshotSpool,
        *,
        engine_id: str,
        label: str,
        incarnation: str = "",
        group: str = "",
        store: str = "",
        close_backend: Callable[[], Awaitable[None]] | None = None,
        retention_s: float = 0.0,
    ) -> None:
        self._backend = backend
        self._retention_s = retention_s
        self._retained_at: float | None = None  # monotonic time of the last retention pass
        self._ttl_set = False
        self._spool = spool
        self._engine_id = engine_id
        self._stored_engine_id = stored_engine_id(engine_id, incarnation)
        self._periods_recorded: dict[str, int] = {}  # EngineId → the period start in engine_periods
        self._label = label
        self._close_backend = close_backend
        if spool.owner is None:
            spool.claim(engine_id)  # one directory per engine: engines never share sequence numbers
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._drainer: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        # One-shot runs (no incarnation: analyze, tests) take no lease, as before incarnations.
        self._lease = (
            EngineLease(
                backend,
                engine_id=engine_id,
                writer=group or label,
                incarnation=incarnation,
                holder=spool.holder,
                store=store or label,
            )
            if incarnation
            else None
        )
        self._schema_ready = False
        self._closed = False
        self.written = 0
        self.failures = 0
        #: Snapshots the spool could not write (kept in memory only), and ones dropped for memory.
        self.spool_failures = 0
        self.dropped = 0
        #: Rows (flows and hitters) inserted into the store, for /metrics.
        self.rows_inserted = 0
        #: Set when the spool dropped a snapshot: the next one must hold every flow of the period.
        self.needs_full_snapshot = False
        self._last_error_log = -_LOG_EVERY_S
        self._last_spool_log = -_LOG_EVERY_S
        self._failing_since: float | None = None
        #: Set when another incarnation took our engine-id lease: nothing is written any more, and
        #: the engine role stops the process with this error (see :mod:`netspectra.storage.lease`).
        self.fault: EngineIdInUseError | None = None

    @property
    def resumed_progress(self) -> dict[str, Any] | None:
        """The progress of the last snapshot an earlier run of this engine id accepted here.

        The engine role resumes its probe accounting from it (:mod:`netspectra.engine.probe_counts`).
        """
        return self._spool.resumed_progress

    @property
    def queued(self) -> int:
        """Snapshots accepted but not yet in the store."""
        return len(self._spool)

    @property
    def stats(self) -> WriterStats:
        """What the engine's stats line reports for this writer."""
        return WriterStats(
            stored=self.written,
            queued=len(self._spool),
            failed=self.failures + self.spool_failures,
            dropped=self.dropped,
            memory_only=self._spool.memory_only,
        )

    async def write(self, snapshot: Snapshot) -> None:
        """Accept ``snapshot``: on disk in the spool when this returns, inserted in the background.

        When the spool cannot be written the snapshot is still queued (in memory only, bounded:
        see :meth:`SnapshotSpool.put`) and inserted if the store takes it; the failure is an ERROR
        (once per minute) and counted in :attr:`stats`, never raised: the engine keeps counting.
        """
        if self._closed:
            raise StorageError(f"{self._label}: write after close")
        rows = await asyncio.to_thread(snapshot_rows, snapshot, self._stored_engine_id)
        if snapshot.progress is not None:
            rows.progress = dict(snapshot.progress)
        if snapshot.since_epoch == 0:
            self.needs_full_snapshot = False
        else:  # only changed flows: the row count at its second does not tell whether it is stored
            rows.changes = True
        try:
            await self._spool.put(rows)
        except OSError as error:
            self.spool_failures += 1
            dropped = self._spool.take_dropped()
            if dropped is not None:
                self.dropped += 1
                self.needs_full_snapshot = True
                logger.error(
                    "%s: dropped the oldest snapshot kept only in memory (taken at %d; %d dropped so "
                    "far) to keep memory bounded: the spool %s cannot be written",
                    self._label,
                    dropped.taken_at_ns // 1_000_000_000,
                    self.dropped,
                    self._spool.directory,
                )
            now = time.monotonic()
            if now - self._last_spool_log >= _LOG_EVERY_S:
                self._last_spool_log = now
                logger.error(
                    "%s: cannot write the snapshot to the spool %s (%s): %d snapshot(s) are held in "
                    "memory only and are LOST if the process stops before the store takes them; "
                    "%d spool failures so far",
                    self._label,
                    self._spool.directory,
                    error.strerror or error,
                    self._spool.memory_only,
                    self.spool_failures,
                )
        self._start()

    async def start(self) -> None:
        """Claim the engine-id lease now if the store answers (EngineIdInUseError stops the engine).

        An unreachable store is not an error here: the drain claims the lease at first contact and
        inserts nothing before it holds it.
        """
        if self._lease is None:
            return
        try:
            await self._ready()
        except EngineIdInUseError:
            raise
        except StorageAuthError as error:  # reachable, and it said no: not an outage to wait out
            self._report_insert_failure(error)
        except StorageError as error:
            logger.warning(
                "%s: store not reachable at start (%s); the engine id is checked at first contact",
                self._label,
                error,
            )
        if self._heartbeat is None:
            self._heartbeat = asyncio.create_task(self._beat_loop(), name=f"lease {self._label}")

    async def _ready(self) -> None:
        """Schema in place and the lease held: what must be true before any insert."""
        if not self._schema_ready:
            await ensure_schema(self._backend)
            self._schema_ready = True
        if self._lease is not None:
            await self._lease.ensure_held()  # a lease that lapsed in an outage is claimed again

    async def _beat_loop(self) -> None:
        assert self._lease is not None
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            try:
                await self._lease.renew()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # the drain reports outages; a missed beat is only a debug line
                if isinstance(error, EngineIdInUseError) and self._lease.lost:
                    self.fault = error
                    return
                logger.debug("%s: lease heartbeat failed (%s)", self._label, error)

    def _start(self) -> None:
        if self.fault is not None:
            return  # another engine writes under our id now: nothing more goes to the store
        self._idle.clear()
        self._wakeup.set()
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name=f"drain {self._label}")

    async def flush(self, timeout: float | None = None) -> None:
        """Wait until every accepted snapshot is in the store (raises TimeoutError after ``timeout``).

        Returns at once when the writer has a :attr:`fault`: nothing will be written any more.
        """
        if not len(self._spool) or self.fault is not None:
            return
        self._start()
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def _insert(self, rows: SnapshotRows, maybe_stored: bool) -> None:
        """Insert what is not stored yet; with ``maybe_stored``, ask the store first (exactly once)."""
        await self._ready()
        # A change snapshot may share its second with the one before and hold fewer rows, so the row
        # count cannot tell it is stored: it is inserted again, and a repeated row is harmless (every
        # query takes each flow's latest row; identical rows merge away in flow_latest).
        check_stored = maybe_stored and not getattr(rows, "changes", False)
        await self._record_period(rows)
        if (
            rows.flow_count
            and not rows.flows_written
            and not (check_stored and await self._already_stored(sql.STORED_FLOW_ROWS, rows.flows))
        ):
            await self._backend.insert("flow_metrics", rows.flows)
            self.rows_inserted += rows.flow_count
        rows.flows_written = True  # a retry after a failed hitter insert must not repeat flows
        if rows.hitter_count and not (
            maybe_stored and await self._already_stored(sql.STORED_HITTER_ROWS, rows.hitters)
        ):
            await self._backend.insert("heavy_hitters", rows.hitters)
            self.rows_inserted += rows.hitter_count
        # after the hitters: a retry repeats at most these rows, which the readers take once
        states = getattr(rows, "states", None)  # absent from snapshots spooled by older versions
        if states and len(states.get("TaskName", ())):
            await self._backend.insert("sketch_states", states)
            self.rows_inserted += len(states["TaskName"])
        # after the epochs it covers: a reader that sees the run sees its epochs (a retry repeats
        # at most this row, read once)
        runs = getattr(rows, "runs", None)  # absent from snapshots spooled by older versions
        if runs and len(runs.get("TaskName", ())):
            await self._backend.insert("sketch_state_runs", runs)
            self.rows_inserted += len(runs["TaskName"])
        await self._record_snapshot(rows)

    def _rows_engine(self, rows: SnapshotRows) -> str:
        """The stored EngineId of ``rows``: a killed incarnation's spooled rows keep theirs."""
        if rows.flow_count and "EngineId" in rows.flows:
            return str(as_arrow("EngineId", rows.flows["EngineId"])[0].as_py())
        return self._stored_engine_id

    async def _record_snapshot(self, rows: SnapshotRows) -> None:
        """Say in engine_snapshots that this snapshot landed, when it wrote no row at all.

        The store's data time (sql.ENGINE_DATA_TIMES) is the newest snapshot's: its flow rows'
        Timestamp, and for a change snapshot with no changed flow (it writes no row, yet its counts
        are as current as the snapshot) this row. The alerter makes its rates over these times.
        """
        states = getattr(rows, "states", None)
        if rows.flow_count or rows.hitter_count or (states and len(states.get("TaskName", ()))):
            return
        await self._backend.insert(
            "engine_snapshots",
            {
                "EngineId": as_arrow("EngineId", [self._rows_engine(rows)]),
                "Writer": as_arrow("Writer", [rows.group]),
                "Timestamp": as_arrow("Timestamp", [rows.taken_at_ns // 1_000_000_000]),
            },
        )

    async def _record_period(self, rows: SnapshotRows) -> None:
        """Say in engine_periods when this snapshot's period began, before its first rows land.

        A change snapshot holds only the changed flows, so the store cannot tell from the flows
        whether a flow's latest row is of the running period; the alerter reads the period start
        from here (sql.CURRENT_FLOWS_BY). Inserted first: a reader never sees a new period's rows
        counted under the old one. A row inserted twice (a retry, a restart) merges away.
        """
        period = getattr(rows, "period_start", 0)  # absent from snapshots spooled by older versions
        engine = self._rows_engine(rows)
        if not period or self._periods_recorded.get(engine) == period:
            return
        await self._backend.insert(
            "engine_periods",
            {"EngineId": as_arrow("EngineId", [engine]), "PeriodStart": as_arrow("PeriodStart", [period])},
        )
        self._periods_recorded[engine] = period

    async def _already_stored(self, query: str, columns: dict[str, Any]) -> bool:
        """True when the store holds this snapshot's rows of its first task (see sql.STORED_FLOW_ROWS).

        The key is the snapshot's own (EngineId with its incarnation, its second, its task), so a
        file a killed incarnation left is recognised by the next one. An insert's first task is
        counted whole only once every row landed (a backend sending blocks at once inserts the first
        row after the others: rows.insert_blocks), so fewer rows than the snapshot carries means
        "not stored": insert it.
        """
        if not all(name in columns for name in ("EngineId", "Timestamp", "TaskName")):
            return False  # rows from a spool too old to carry the key: insert (argMax absorbs a repeat)
        import pyarrow.compute as pc  # here: its import parses every compute docstring, ~25 ms

        tasks = as_arrow("TaskName", columns["TaskName"])
        task = tasks[0].as_py()
        expected = int(pc.sum(pc.equal(tasks, task)).as_py() or 0)
        params = {
            "engine": as_arrow("EngineId", columns["EngineId"])[0].as_py(),
            "at": as_arrow("Timestamp", columns["Timestamp"])[0].as_py(),
            "task": task,
        }
        found = await self._backend.select(query, params)
        stored = int(found[0][0]) if found else 0
        if stored >= expected:
            logger.info(
                "%s: snapshot of %s at %d is already stored (%d rows); not inserted again",
                self._label,
                params["engine"],
                params["at"],
                stored,
            )
            return True
        return False

    async def _compact_latest(self) -> None:
        """Merge flow_latest's parts once the queue is empty (not per snapshot of a backlog).

        Every snapshot adds one flow_latest row per flow; the stores' background merges stop at
        a few parts (measured: 10 snapshots of 100 k flows stayed 5 parts, 500 k rows, on 18.16
        and chdb), so AggregateFlows would group ~5 rows per flow. One OPTIMIZE brings it back to
        ~1. A failure here loses nothing (the answers never depend on merges): logged, not retried.
        """
        try:
            await self._backend.execute(LATEST_COMPACT)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.info("%s: flow_latest not compacted this time (%s)", self._label, error)

    async def _retain(self) -> None:
        """Apply the store's retention (see storage/retention.py) after a write, once per
        :data:`RETENTION_EVERY_S` (a TTL once per writer: the server applies it from then on).
        A failure loses nothing: logged, and tried again on the next pass."""
        if self._retention_s <= 0 or self._ttl_set:
            return
        now = time.monotonic()
        if self._retained_at is not None and now - self._retained_at < RETENTION_EVERY_S:
            return
        self._retained_at = now
        try:
            done = await apply_retention(self._backend, self._retention_s)
        except asyncio.CancelledError:
            raise
        except Exception as error:
            logger.warning("%s: retention not applied this time (%s)", self._label, error)
            return
        self._ttl_set = done.startswith("TTL")
        logger.info("%s: retention %s: %s", self._label, format_duration(self._retention_s), done)

    def _report_insert_failure(self, error: BaseException) -> None:
        """A WARNING for the first failure, then an ERROR naming what is at risk, once per minute.

        Credentials refused and an engine id in use are ERRORs at once: waiting will not cure them.
        """
        now = time.monotonic()
        first = self._failing_since is None
        if first:
            self._failing_since = now
        if not first and now - self._last_error_log < _LOG_EVERY_S:
            return
        self._last_error_log = now
        queued, memory_only = len(self._spool), self._spool.memory_only
        at_risk = f"{queued} snapshot(s) not in the store, kept in {self._spool.directory}" + (
            f" ({memory_only} in memory only: lost if the process stops)" if memory_only else ""
        )
        if isinstance(error, StorageAuthError):
            logger.error("%s: the store refused our credentials (%s); %s", self._label, error, at_risk)
        elif isinstance(error, EngineIdInUseError):
            logger.error("%s: refusing to write: %s; %s", self._label, error, at_risk)
        elif isinstance(error, StorageRefusedError):
            # it answered and said no (its disk full, read-only, a schema it cannot take): waiting
            # a few seconds will not cure it, so say so at once
            logger.error(
                "%s: the store refused the snapshot%s (%s); %s; %d failed attempts, still retrying",
                self._label,
                " (its disk is full)" if _disk_full(error) else "",
                error,
                at_risk,
                self.failures,
            )
        elif first:
            logger.warning("%s: cannot write snapshot (%s); %s; retrying", self._label, error, at_risk)
        else:
            assert self._failing_since is not None
            logger.error(
                "%s: no snapshot stored for %.0f s (%s); %s; %d failed attempts, still retrying",
                self._label,
                now - self._failing_since,
                error,
                at_risk,
                self.failures,
            )

    async def _drain(self) -> None:
        delay = self.backoff_initial
        while True:
            try:
                rows = await self._spool.peek()
            except asyncio.CancelledError:
                raise
            except Exception as error:  # corrupt or incompatible file: set it aside, keep draining
                self._spool.discard_oldest_as_bad(error)
                continue
            if rows is None:
                self._idle.set()
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            try:
                await self._insert(rows, self._spool.head_maybe_stored)
            except asyncio.CancelledError:
                self._spool.mark_head_maybe_stored()
                raise
            except Exception as error:  # the store is away or refused: keep it queued, retry
                self._spool.mark_head_maybe_stored()  # the insert may have landed before the error
                self.failures += 1
                self._schema_ready = False
                self._report_insert_failure(error)
                if isinstance(error, EngineIdInUseError) and self._lease is not None and self._lease.lost:
                    self.fault = error  # the engine role stops the process with it
                    return
                if isinstance(error, StorageAuthError | EngineIdInUseError):
                    await asyncio.sleep(self.refused_retry)  # a fault to fix, not an outage to wait out
                else:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.backoff_max)
                continue
            self._spool.pop()
            self.written += 1
            self._failing_since = None
            if rows.flow_count and not len(self._spool):
                await self._compact_latest()
            if not len(self._spool):
                await self._retain()
            if delay > self.backoff_initial:
                logger.info("%s: store is back; %d snapshots still queued", self._label, len(self._spool))
            delay = self.backoff_initial

    async def close(self) -> None:
        """Drain for up to :attr:`close_grace` seconds, then persist what is left; idempotent."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(TimeoutError):
            await self.flush(self.close_grace)
        if self._drainer is not None:
            self._drainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._drainer
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        if self._lease is not None and self._lease.claimed:
            try:
                await asyncio.wait_for(self._lease.release(), self.close_grace)
            except Exception as error:  # it expires by itself after LEASE_TIMEOUT_S
                logger.info("%s: engine-id lease not released (%s); it expires by itself", self._label, error)
        left = await self._spool.persist()
        if self._spool.memory_only:
            logger.error(
                "%s: %d snapshot(s) are LOST: neither the store nor the spool %s took them",
                self._label,
                self._spool.memory_only,
                self._spool.directory,
            )
        if len(self._spool):
            logger.warning(
                "%s: %d snapshots not written yet, kept in %s for the next start",
                self._label,
                len(self._spool),
                self._spool.directory,
            )
        elif left:
            logger.debug("%s: persisted %d", self._label, left)
        self._spool.close()
        if self._close_backend is not None:
            await self._close_backend()
