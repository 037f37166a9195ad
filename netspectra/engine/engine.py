"""The engine: feeds every batch to every group, and hands each writer snapshots of its own group.

Timing rules (what a writer can rely on):

* A writer snapshots only its own group, every ``snapshot_interval`` of its own. A snapshot is a
  read-only copy; taking it never resets anything, so writers with different intervals each see
  everything counted since the period began.
* One global ``aggregator.period`` resets every task of every group at the same instant. At
  that instant **every writer first receives a closing snapshot of the ending period** (taken
  just before the reset, under the same lock), whether or not its own interval is due. So a
  writer whose snapshot is due at the reset instant sees the pre-reset data, and no writer
  loses what was counted between its last snapshot and the reset. Each writer's interval
  cadence then continues unchanged.
* ``close()`` stops the schedule, waits for in-flight batches, gives every writer a final
  snapshot, waits until the writers have written what they accepted, then closes them.
* Snapshots grow with change: a writer that sets ``writes_changes = True`` receives, from a
  group that keeps change epochs (``snapshot_changes``: exact), only the flows changed since the
  last snapshot it **wrote** (``write()`` returned): its first snapshot, and the first after a
  failed write, hold everything still unwritten, so a failed write loses nothing and a waiting
  snapshot replaced by a newer one (below) is covered by it. A writer whose own queue dropped a
  snapshot sets ``needs_full_snapshot`` and gets the whole period's flows next. Queries read "the
  latest row ≤ t per flow", so rows left out (unchanged flows) read as the row already written:
  a 10 M-flow table with 1 % of its flows active writes ~1 % of the rows (bench/snapshot_delta.py).

Concurrency: kernels release the GIL, so batches run in one worker thread (a single-thread
executor) and the event loop stays responsive. Inserts, snapshots and resets all take one lock,
so a snapshot never sees half a batch. Writers write from their own asyncio task each; a writer
that raises is logged with its traceback and the engine and the other writers carry on.

Tasks are counted on ``kernel_threads`` threads (default: one per core; see
:mod:`netspectra.engine.lanes`). A group that offers ``insert_jobs(batch) -> [(label,
callable), ...]`` hands the engine one independent job per task (each touches only its own
task's state); any other group is one job, ``group.insert(batch)``, so a group never sees two
of its own calls at once unless it asked for it. Each label runs on one lane, batches in
order; :meth:`Engine.ingest_sync` returns once the batch is queued, and every snapshot, reset
and close first waits until the lanes are idle, under the lock. With one thread everything
runs in the calling thread, as before. A job that raises is re-raised by the next
:meth:`Engine.ingest_sync` (or logged by the next snapshot).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from netspectra.config.durations import format_duration
from netspectra.config.models import WriterConfig
from netspectra.engine.lanes import InsertJob, KernelLanes
from netspectra.engine.protocols import AggregatorGroup
from netspectra.model.flows import FlowColumns
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import Snapshot
from netspectra.model.writer import SnapshotWriter, WriterStats

logger = logging.getLogger(__name__)

#: Wall clock in nanoseconds since the epoch; injectable so tests control time.
Clock = Callable[[], int]
_NS = 1_000_000_000
#: Longest the scheduler sleeps, so a stepped wall clock is noticed within this time.
_MAX_SLEEP_S = 1.0


def _default_kernel_threads() -> int:
    """One per core this process may run on (kernels release the GIL, so they really overlap)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(slots=True)
class EngineStats:
    """Totals since the engine was built (not reset by the period)."""

    packets: int = 0
    bytes: int = 0
    batches: int = 0


@dataclass(slots=True, eq=False)
class _WriterSlot:
    group: str
    config: WriterConfig
    writer: SnapshotWriter
    interval_ns: int
    next_due_ns: int = 0
    queue: asyncio.Queue[Snapshot | None] | None = None
    task: asyncio.Task[None] | None = None
    written: int = 0
    failed: int = 0
    skipped: int = 0
    label: str = field(default="")
    #: The first change epoch this writer has not written yet (0: it has written nothing).
    since_epoch: int = 0

    def wanted_since(self) -> int:
        """The change epoch this writer's next snapshot must start at (0: every flow)."""
        writer = self.writer
        if not getattr(writer, "writes_changes", False) or getattr(writer, "needs_full_snapshot", False):
            return 0
        return self.since_epoch


class Engine:
    """Owns the aggregator groups and their writers; see the module docstring for the timing rules.

    It is handed its groups and writers (:func:`netspectra.app.build_engine` builds them from the
    settings), so the engine never imports storage.
    """

    def __init__(
        self,
        groups: Mapping[str, AggregatorGroup],
        writers: Mapping[str, Sequence[tuple[WriterConfig, SnapshotWriter]]] | None = None,
        *,
        period_s: float = 720 * 3600.0,
        stats_interval_s: float = 10.0,
        clock: Clock = time.time_ns,
        kernel_threads: int = 0,
    ) -> None:
        self._groups = dict(groups)
        self._kernel_threads = kernel_threads if kernel_threads > 0 else _default_kernel_threads()
        self._lanes: KernelLanes | None = None  # started on the first batch when threads > 1
        self._clock = clock
        self._period_ns = max(1, int(period_s * _NS))
        self._stats_interval_ns = max(1, int(stats_interval_s * _NS))
        self._slots: list[_WriterSlot] = []
        for group_name, pairs in (writers or {}).items():
            if group_name not in self._groups:
                raise ValueError(f"writers given for unknown group {group_name!r}")
            for position, (config, writer) in enumerate(pairs):
                self._slots.append(
                    _WriterSlot(
                        group=group_name,
                        config=config,
                        writer=writer,
                        interval_ns=max(1, int(config.snapshot_interval * _NS)),
                        label=f"{group_name}.writers[{position}] ({config.type})",
                    )
                )
        self.stats = EngineStats()
        self._lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._started = False
        self._closed = False
        self._progress: Mapping[str, Any] | None = None  # see ingest()
        self._period_start_ns = clock()
        self._period_end_ns = self._period_start_ns + self._period_ns
        self._next_stats_ns = self._period_start_ns + self._stats_interval_ns
        self._stats_mark = (self._period_start_ns, 0)
        self.final_snapshots: dict[str, Snapshot] = {}

    @property
    def groups(self) -> Mapping[str, AggregatorGroup]:
        return self._groups

    @property
    def period_start_ns(self) -> int:
        return self._period_start_ns

    @property
    def writer_slots(self) -> tuple[_WriterSlot, ...]:
        """Each writer with the engine's tally of it (written, failed, skipped), for /metrics."""
        return tuple(self._slots)

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self, *, schedule: bool = True) -> None:
        """Start the worker thread, the writers' tasks and (unless ``schedule=False``) the timer.

        Without the schedule nothing is snapshot or reset on time; the caller drives
        :meth:`run_due` (tests with an injected clock) or only wants the final snapshot (analyze).
        """
        if self._started:
            # A restarted role calls start() again on the engine it left open: keep everything, but
            # bring back a timer that is gone (never started by a schedule=False run, or cancelled).
            if schedule and not self._closed and (self._scheduler is None or self._scheduler.done()):
                self._scheduler = asyncio.create_task(self._schedule_loop(), name="engine scheduler")
            return
        self._started = True
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netspectra-engine")
        now = self._clock()
        self._period_start_ns = now
        self._period_end_ns = now + self._period_ns
        self._next_stats_ns = now + self._stats_interval_ns
        self._stats_mark = (now, self.stats.packets)
        for slot in self._slots:
            slot.next_due_ns = now + slot.interval_ns
            slot.queue = asyncio.Queue()
            slot.task = asyncio.create_task(self._write_loop(slot), name=f"writer {slot.label}")
        if schedule:
            self._scheduler = asyncio.create_task(self._schedule_loop(), name="engine scheduler")
        tasks = {name: len(group.task_names) for name, group in self._groups.items()}
        logger.info(
            "Started engine: %s tasks; %d writer(s); period %s",
            ", ".join(f"{count} {name}" for name, count in tasks.items()) or "no",
            len(self._slots),
            format_duration(self._period_ns / _NS),
        )

    async def start_writers(self) -> None:
        """Await every writer's optional ``start()`` (store writers claim their engine-id lease).

        Separate from :meth:`start` so the engine role can subscribe first and count meanwhile:
        a claim may wait for a store, and packets published in that time must not be missed.
        An error (EngineIdInUseError: another live engine uses this engine id) stops the role.
        """
        for slot in self._slots:
            start_writer = getattr(slot.writer, "start", None)
            if start_writer is not None:
                await start_writer()

    async def close(self) -> dict[str, Snapshot]:
        """Drain, final snapshot to every writer, wait for the writes, close the writers (idempotent)."""
        if self._closed:
            return self.final_snapshots
        self._closed = True
        self._stop.set()
        if self._scheduler is not None:
            # Let the current step finish rather than cancel it: a cancel landing while run_due waits
            # for a period reset would leave the reset done but its closing snapshots never queued.
            await asyncio.wait({self._scheduler})
        now = self._clock()
        # Runs after every batch already submitted to the worker thread: that is the drain.
        self.final_snapshots = await self._in_worker(self._snapshot_groups, list(self._groups), now, False)
        for slot in self._slots:
            snapshot = self.final_snapshots.get(slot.group)
            if snapshot is not None:
                snapshot = snapshot.changed_since(slot.wanted_since())
            if slot.queue is not None and slot.task is not None:
                if snapshot is not None:
                    slot.queue.put_nowait(snapshot)
                slot.queue.put_nowait(None)
            elif snapshot is not None:  # never started: write directly
                await self._write_one(slot, snapshot)
        for slot in self._slots:
            if slot.task is not None:
                await slot.task
        for slot in self._slots:
            try:
                await slot.writer.close()
            except Exception:
                logger.exception("Writer %s failed to close", slot.label)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        with self._lock:
            if self._lanes is not None:
                self._log_job_errors(self._lanes.close())
                self._lanes = None
        self._log_stats(now)
        logger.info("Stopped engine: %d packets, %d bytes, %d batches", *self._totals())
        return self.final_snapshots

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # --- data path -------------------------------------------------------------------------

    async def ingest(self, batch: PacketColumns, progress: Mapping[str, Any] | None = None) -> None:
        """Count one batch in every task of every group (in the worker thread).

        ``progress`` (the engine role's probe accounting after this batch) rides on every later
        snapshot until the next one, so a restart knows what its stored snapshots hold.
        """
        if not len(batch):
            if progress is not None:
                await self._in_worker(self._note_progress, progress)
            return
        await self._in_worker(self.ingest_sync, batch, progress)

    def _note_progress(self, progress: Mapping[str, Any]) -> None:
        with self._lock:
            self._progress = progress

    def resumed_progress(self) -> Mapping[str, Any] | None:
        """The progress an earlier run's writers stored last, to continue the accounting from.

        Each writer that keeps one (the store writers) reports the latest snapshot it accepted;
        with several, the one with the fewest arrivals, so the gap is exact for that writer's
        store and an upper bound for the others. None when no writer holds one.
        """
        found = []
        for slot in self._slots:
            resumed = getattr(slot.writer, "resumed_progress", None)
            if isinstance(resumed, Mapping) and isinstance(resumed.get("arrived"), int):
                found.append(resumed)
        return min(found, key=lambda progress: int(progress["arrived"])) if found else None

    def writer_fault(self) -> BaseException | None:
        """An error a writer raised that must stop the engine (another engine took its engine id)."""
        for slot in self._slots:
            fault = getattr(slot.writer, "fault", None)
            if isinstance(fault, BaseException):
                return fault
        return None

    def ingest_sync(self, batch: PacketColumns, progress: Mapping[str, Any] | None = None) -> None:
        """Count one batch (the offline runner calls this directly); serialised with everything else.

        With more than one kernel thread this returns once the batch is queued on the lanes; the
        batch's arrays must not be changed afterwards (every producer hands over fresh arrays).
        """
        if self._closed:
            raise RuntimeError(
                "Engine.ingest_sync called after close(): the final snapshot is already taken; "
                "stop feeding batches before closing the engine"
            )
        if not len(batch):
            return
        with self._lock:
            jobs: list[InsertJob] = []
            for name, group in self._groups.items():
                split = getattr(group, "insert_jobs", None)
                if split is not None:
                    jobs.extend(split(batch))
                else:
                    jobs.append((name, _bind_insert(group, batch)))
            self._run_jobs(jobs)
            if progress is not None:
                self._progress = progress
            self.stats.packets += len(batch)
            self.stats.bytes += int(batch.length.sum())
            self.stats.batches += 1

    def ingest_flows_sync(self, flows: FlowColumns) -> None:
        """Count a batch of flow records (NetFlow/IPFIX/sFlow): each carries its packets and bytes.

        A group with ``insert_flow_jobs(flows)`` (exact) adds the weights; any other group sees one
        packet per record (``flows.as_packets()``, length = the record's bytes), which is right
        for tasks that count each element once (spread sketches). ``stats.packets`` and
        ``stats.bytes`` add the records' (renormalised) packets and bytes.
        """
        if self._closed:
            raise RuntimeError("Engine.ingest_flows_sync called after close()")
        if not len(flows):
            return
        as_packets = flows.as_packets()
        with self._lock:
            jobs: list[InsertJob] = []
            for name, group in self._groups.items():
                weighted = getattr(group, "insert_flow_jobs", None)
                if weighted is not None:
                    jobs.extend(weighted(flows))
                    continue
                split = getattr(group, "insert_jobs", None)
                if split is not None:
                    jobs.extend(split(as_packets))
                else:
                    jobs.append((name, _bind_insert(group, as_packets)))
            self._run_jobs(jobs)
            self.stats.packets += int(flows.packets.sum())
            self.stats.bytes += int(flows.bytes.sum())
            self.stats.batches += 1

    async def ingest_flows(self, flows: FlowColumns) -> None:
        """Count a batch of flow records in the worker thread."""
        if len(flows):
            await self._in_worker(self.ingest_flows_sync, flows)

    def _run_jobs(self, jobs: list[InsertJob]) -> None:
        """Serially here with one kernel thread; else queue on the lanes after raising any earlier error."""
        if self._kernel_threads <= 1:
            for _label, job in jobs:
                job()
            return
        if self._lanes is None:
            self._lanes = KernelLanes(self._kernel_threads)
        errors = self._lanes.take_errors()
        if errors:
            raise errors[0]
        self._lanes.submit(jobs)

    def _wait_for_lanes(self) -> None:
        """Let the lanes finish every queued batch (called with the lock held)."""
        if self._lanes is not None:
            self._log_job_errors(self._lanes.drain())

    @staticmethod
    def _log_job_errors(errors: Sequence[BaseException]) -> None:
        for error in errors:
            logger.error("A counting job failed; its batch is partly counted", exc_info=error)

    def snapshot_all_sync(self) -> dict[str, Snapshot]:
        """A snapshot of every group now (no writer involved, nothing reset)."""
        return self._snapshot_groups(list(self._groups), self._clock(), False)

    # --- schedule --------------------------------------------------------------------------

    async def run_due(self) -> None:
        """Take the snapshots that are due at ``clock()`` and reset when the period is over.

        The scheduler calls this; tests with an injected clock call it directly.
        """
        now = self._clock()
        period_over = now >= self._period_end_ns
        due = [slot for slot in self._slots if period_over or slot.next_due_ns <= now]
        ready = due  # a slow writer's waiting snapshot is replaced by the new one (see _enqueue)
        for slot in due:
            while slot.next_due_ns <= now:
                slot.next_due_ns += slot.interval_ns
        if ready or period_over:
            names = sorted({slot.group for slot in ready})
            since: dict[str, int] = {}
            for slot in ready:
                since[slot.group] = min(since.get(slot.group, slot.wanted_since()), slot.wanted_since())
            snapshots = await self._in_worker(self._snapshot_groups, names, now, period_over, since)
            for slot in ready:
                if slot.group in snapshots:
                    await self._enqueue(slot, snapshots[slot.group].changed_since(slot.wanted_since()))
        if period_over:
            logger.info("Period of %s ended: every task reset", format_duration(self._period_ns / _NS))
        if now >= self._next_stats_ns:
            self._log_stats(now)
            while self._next_stats_ns <= now:
                self._next_stats_ns += self._stats_interval_ns

    def _snapshot_groups(
        self, names: Sequence[str], now: int, reset: bool, since: Mapping[str, int] | None = None
    ) -> dict[str, Snapshot]:
        """Snapshots of ``names`` (the flows changed from ``since[name]`` on, where the group keeps
        change epochs; every flow without) and, when ``reset``, a reset of every group, atomically."""
        snapshots: dict[str, Snapshot] = {}
        with self._lock:
            self._wait_for_lanes()
            for name in names:
                group = self._groups[name]
                start = (since or {}).get(name, 0)
                changes = getattr(group, "snapshot_changes", None)
                # the sketch group closes its runs of epochs at the period's end (engine/sketch/runs.py)
                closing = getattr(group, "snapshot_closing_period", None) if reset else None
                try:
                    if changes is not None and start > 0:
                        snapshot = changes(now, self._period_start_ns, start)
                    elif closing is not None:
                        snapshot = closing(now, self._period_start_ns)
                    else:
                        snapshot = group.snapshot(taken_at_ns=now, period_start_ns=self._period_start_ns)
                    if self._progress is not None and isinstance(snapshot, Snapshot):
                        snapshot = dataclasses.replace(snapshot, progress=self._progress)
                    snapshots[name] = snapshot
                except Exception:  # one broken group must not cost the others their snapshots
                    logger.exception("Group %r failed to take a snapshot; its writers get none now", name)
            if reset:
                for group in self._groups.values():
                    group.reset()
                self._period_start_ns = now
                self._period_end_ns = now + self._period_ns
        return snapshots

    async def _schedule_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.run_due()
            except Exception:
                logger.exception("Engine schedule step failed; retrying on the next tick")
            wake = min([self._period_end_ns, self._next_stats_ns, *(s.next_due_ns for s in self._slots)])
            delay = min(_MAX_SLEEP_S, max(0.0, (wake - self._clock()) / _NS))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=delay)

    # --- writers ---------------------------------------------------------------------------

    async def _enqueue(self, slot: _WriterSlot, snapshot: Snapshot) -> None:
        """Queue ``snapshot``, dropping waiting snapshots of the same period: it contains all they do
        (counters are cumulative within a period, and a change snapshot starts where the writer's
        last *written* one ended, so it also holds every flow a waiting one held).

        A waiting snapshot of an earlier period (a period's closing snapshot) is kept: the reset
        since then means the newer one does not contain what it counted. So is one carrying sketch
        epoch states: each holds only its own epoch (see engine/sketch/group.py), which no newer
        snapshot contains.
        """
        queue = slot.queue
        if queue is not None:
            waiting = [queue.get_nowait() for _ in range(queue.qsize())]
            for old in waiting:
                if old is None or old.period_start_ns != snapshot.period_start_ns or _carries_epochs(old):
                    queue.put_nowait(old)
                else:
                    slot.skipped += 1
                    logger.warning(
                        "Writer %s is slower than its %gs interval; a newer snapshot replaced a waiting "
                        "one (%d so far)",
                        slot.label,
                        slot.interval_ns / _NS,
                        slot.skipped,
                    )
            queue.put_nowait(snapshot)
        else:
            await self._write_one(slot, snapshot)

    async def _write_loop(self, slot: _WriterSlot) -> None:
        assert slot.queue is not None
        while True:
            snapshot = await slot.queue.get()
            if snapshot is None:
                return
            await self._write_one(slot, snapshot)

    async def _write_one(self, slot: _WriterSlot, snapshot: Snapshot) -> None:
        try:
            await slot.writer.write(snapshot)
            slot.written += 1
            if snapshot.epoch:
                slot.since_epoch = max(slot.since_epoch, snapshot.epoch + 1)
        except Exception:
            slot.failed += 1
            if slot.failed > 1 and slot.failed % 100:  # one traceback per 100 failures: no flood
                return
            logger.exception(
                "Writer %s failed to write the snapshot taken at %d (%d failure(s) so far); engine continues",
                slot.label,
                snapshot.taken_at_ns,
                slot.failed,
            )

    # --- helpers ---------------------------------------------------------------------------

    async def _in_worker(self, function, *args):  # type: ignore[no-untyped-def]
        if self._executor is None:
            return function(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)

    def _totals(self) -> tuple[int, int, int]:
        return self.stats.packets, self.stats.bytes, self.stats.batches

    def _log_stats(self, now: int) -> None:
        mark_ns, mark_packets = self._stats_mark
        elapsed = max(1e-9, (now - mark_ns) / _NS)
        rate = (self.stats.packets - mark_packets) / elapsed
        self._stats_mark = (now, self.stats.packets)
        logger.info(
            "Engine stats: %d packets (%.0f/s), %d bytes, %d batches; writers %s",
            self.stats.packets,
            rate,
            self.stats.bytes,
            self.stats.batches,
            ", ".join(_writer_stats(slot) for slot in self._slots) or "none",
        )


def _writer_stats(slot: _WriterSlot) -> str:
    """One writer's part of the stats line: the writer's own account when it keeps one.

    "accepted" is what the engine handed over; only a store writer knows what reached the store,
    so a snapshot queued behind a full disk or a refused store shows as queued and failed, never
    as stored.
    """
    stats = getattr(slot.writer, "stats", None)
    if not isinstance(stats, WriterStats):
        return f"{slot.label}: {slot.written} written, {slot.failed} failed"
    text = (
        f"{slot.label}: {slot.written} accepted, {stats.stored} stored, {stats.queued} queued, "
        f"{stats.failed + slot.failed} failed, {stats.dropped} dropped"
    )
    return text + (f" ({stats.memory_only} in memory only)" if stats.memory_only else "")


def _carries_epochs(snapshot: Snapshot) -> bool:
    """True when ``snapshot`` holds sketch epoch states (what no other snapshot holds)."""
    return any(result.state is not None or result.deferred_state is not None for result in snapshot.sketches)


def _bind_insert(group: AggregatorGroup, batch: PacketColumns) -> Callable[[], None]:
    """``group.insert(batch)`` as one job (for groups that do not split their work)."""

    def insert() -> None:
        group.insert(batch)

    return insert
