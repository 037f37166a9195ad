"""The engine role: bus → numba decoder → column batches → engine.

The per-message work in Python is one list append in the bus handler; everything else runs per
batch. Messages are gathered until ``engine.batch_size`` packets (or ``engine.flush_interval``
passes), decoded in one kernel run on a helper thread (the kernel releases the GIL, so the
event loop keeps reading the socket) and ingested.

Subjects (``S`` = ``engine.subject``, else ``probe.subject``):

* ``S``: one Go-compatible ``PacketInfo`` per message (queue group ``engine.queue_group``);
* ``S.batch``: our ``PacketBatch`` extension (same queue group);
* ``S.count``: our probes' cumulative published-packet counts (every engine gets every one).
  Comparing them with what arrived reveals losses the client never sees, such as messages in
  flight when a server died (the gap: its definition is in :mod:`netspectra.engine.probe_counts`).
  Each count is taken straight from the parser like the packets, so it keeps its place in the
  stream, and applied after the packets that arrived before it. With several engines in a
  queue group, each engine sees only its share of the stream, so its own gap is an upper bound;
  the group's gap is the sum of received packets over all engines subtracted from the
  published count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netspectra.bus.base import Bus, Subscription
from netspectra.config.models import Settings
from netspectra.engine.probe_counts import ProbeCounts
from netspectra.errors import BusError
from netspectra.model.packets import PacketColumns
from netspectra.wire.codec import KIND_PACKET_BATCH, KIND_PACKET_INFO, REJECT_REASONS, decode_messages
from netspectra.wire.subjects import (
    BadProbeCount,
    ProbeCount,
    batch_subject,
    count_subject,
    decode_probe_count,
    flows_subject,
)

logger = logging.getLogger(__name__)

#: Rough bytes per packet in a PacketBatch, to decide when gathered batches are worth decoding.
_BATCH_BYTES_PER_PACKET = 40


@dataclass
class EngineRoleStats:
    """What arrived, what was decoded, what was rejected and what the probes say they sent."""

    messages: int = 0
    batch_messages: int = 0
    packets: int = 0
    rejects: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REJECT_REASONS, 0))
    counts: ProbeCounts = field(default_factory=ProbeCounts)  # the probes' count messages
    dropped: int = 0  # PacketInfo messages refused because pending_msgs_limit were already waiting
    dropped_batches: int = 0  # PacketBatch messages refused because pending_bytes_limit were waiting
    flow_messages: int = 0  # FlowRecordBatch messages (flow-export records; not packets, no gap)
    flow_records: int = 0
    flow_rejects: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())

    @property
    def arrived(self) -> int:
        """Packets that arrived and went through the decoder (decoded or rejected)."""
        return self.packets + self.rejected

    @property
    def published_by_probe(self) -> dict[str, int]:
        return self.counts.by_probe

    @property
    def published(self) -> int | None:
        """Packets our probes report having published (None when no probe reported, e.g. Go probes)."""
        return self.counts.published

    @property
    def bad_count_messages(self) -> int:
        return sum(self.counts.rejects.values())

    @property
    def gap(self) -> int | None:
        """Published minus arrived since each probe's first count, never negative; None when unknown."""
        return self.counts.gap


class EngineRole:
    """Subscribes, gathers, decodes and ingests; on stop drains, ingests the rest, closes the engine."""

    def __init__(
        self,
        settings: Settings,
        bus: Bus,
        engine: Any,
        *,
        observe_batch: Callable[[str, float], None] | None = None,
    ) -> None:
        self.settings = settings
        #: (stage, seconds) of each batch's decode and count kernels, for /metrics; once per batch.
        self.observe_batch = observe_batch
        self.bus = bus
        self.engine = engine
        self.subject = settings.bus_subject
        config = settings.engine
        self.queue_group = config.queue_group
        self.batch_size = config.batch_size
        self.flush_interval = float(config.flush_interval)
        self.stats_interval = float(config.stats_interval)
        self.pending_msgs_limit = config.pending_msgs_limit
        self.pending_bytes_limit = config.pending_bytes_limit
        self.stats = EngineRoleStats()
        self._infos: list[bytes] = []
        self._batches: list[bytes] = []
        self._batch_bytes = 0
        self._flows: list[bytes] = []  # FlowRecordBatch messages (flow-export records)
        # count reports with their place in the stream: (len(_infos), len(_batches)) on arrival
        self._cuts: list[tuple[int, int, ProbeCount]] = []
        self._ready = asyncio.Event()
        self._decoder: ThreadPoolExecutor | None = None  # one per serve(), so a restarted role decodes
        self._resume_checked = False

    # --- bus sinks (run once per message, straight from the NATS parser: keep them to an append) --

    def _on_info(self, payload: bytes) -> None:
        infos = self._infos
        if len(infos) >= self.pending_msgs_limit:
            self.stats.dropped += 1  # the engine is behind by a whole pending limit: count, never grow
            return
        infos.append(payload)
        if len(infos) >= self.batch_size:
            self._ready.set()

    def _on_batch(self, payload: bytes) -> None:
        if self._batch_bytes >= self.pending_bytes_limit:
            self.stats.dropped_batches += 1
            return
        self._batches.append(payload)
        self._batch_bytes += len(payload)
        if self._batch_bytes >= self.batch_size * _BATCH_BYTES_PER_PACKET:
            self._ready.set()

    def _on_flows(self, payload: bytes) -> None:
        if len(self._flows) >= self.pending_msgs_limit:
            self.stats.dropped_batches += 1
            return
        self._flows.append(payload)

    def _on_count(self, payload: bytes) -> None:
        try:
            report = decode_probe_count(payload)
        except BadProbeCount as error:
            self.stats.counts.reject(error.reason)
            logger.debug("Ignored a bad probe count message: %s", error)
            return
        self._cuts.append((len(self._infos), len(self._batches), report))

    # --- batching --------------------------------------------------------------------------

    def _take(self) -> tuple[list[bytes], list[bytes], list[tuple[int, int, ProbeCount]]]:
        infos, batches, cuts = self._infos, self._batches, self._cuts
        self._infos, self._batches, self._batch_bytes, self._cuts = [], [], 0, []
        self._ready.clear()
        return infos, batches, cuts

    @staticmethod
    def _decode(infos: list[bytes], batches: list[bytes]) -> Any:
        messages = infos + batches
        sizes = np.fromiter(map(len, messages), np.int64, len(messages))
        offsets = np.zeros(len(messages) + 1, np.int64)
        np.cumsum(sizes, out=offsets[1:])
        kinds = np.empty(len(messages), np.uint8)
        kinds[: len(infos)] = KIND_PACKET_INFO
        kinds[len(infos) :] = KIND_PACKET_BATCH
        return decode_messages(b"".join(messages), offsets, kinds)

    async def _flush(self) -> None:
        if self._flows:
            await self._ingest_flows()
        infos, batches, cuts = self._take()
        self.stats.messages += len(infos)
        self.stats.batch_messages += len(batches)
        if not cuts:
            await self._ingest(infos, batches)
            return
        # decode up to each count's cut, then compare the count with what had arrived by then
        done_infos = done_batches = 0
        counts = self.stats.counts
        for end_infos, end_batches, report in cuts:
            if end_infos > done_infos or end_batches > done_batches:
                await self._ingest(infos[done_infos:end_infos], batches[done_batches:end_batches])
                done_infos, done_batches = end_infos, end_batches
            counts.record(report, self.stats.arrived)
            restart_loss = counts.take_restart_loss()
            if restart_loss is not None:
                self._log_restart_loss(*restart_loss)
        if done_infos == len(infos) and done_batches == len(batches):
            # nothing after the last count: its accounting still has to reach the snapshots
            await self.engine.ingest(PacketColumns.empty(), progress=self._progress())
        else:
            await self._ingest(infos[done_infos:], batches[done_batches:])

    def _progress(self) -> dict[str, Any]:
        return self.stats.counts.progress(self.stats.arrived)

    async def _ingest(self, infos: list[bytes], batches: list[bytes]) -> None:
        if not infos and not batches:
            return
        assert self._decoder is not None, "_flush runs only inside serve()"
        began = time.perf_counter()
        result = await asyncio.get_running_loop().run_in_executor(self._decoder, self._decode, infos, batches)
        decoded = time.perf_counter()
        for reason, count in result.rejects.items():
            self.stats.rejects[reason] += count
        if result.rejected:
            logger.debug("Skipped %d malformed messages: %s", result.rejected, result.rejects)
        self.stats.packets += len(result.columns)
        await self.engine.ingest(result.columns, progress=self._progress())
        if self.observe_batch is not None:
            self.observe_batch("decode", decoded - began)
            self.observe_batch("count", time.perf_counter() - decoded)

    def _resume(self) -> None:
        """Continue the probes' accounting from the last snapshot an earlier run stored (once)."""
        if self._resume_checked:
            return
        self._resume_checked = True
        resumed_progress = getattr(self.engine, "resumed_progress", None)
        progress = resumed_progress() if resumed_progress is not None else None
        if progress is None:
            return
        try:
            self.stats.counts = ProbeCounts.resumed(dict(progress))
        except ValueError as error:
            logger.warning(
                "Engine role: the accounting an earlier run stored cannot be resumed (%s); the gap "
                "counts afresh from each probe's next count",
                error,
            )
            return
        counts = self.stats.counts
        logger.info(
            "Engine role: resuming from the last snapshot an earlier run stored (%d packets had "
            "arrived; probes %s); what reached no store since then counts in the gap",
            counts.arrived_before,
            counts.by_probe or "none",
        )

    def _log_restart_loss(self, probe: str, lost: int) -> None:
        logger.log(
            logging.WARNING if lost else logging.INFO,
            "Engine role: probe %s: %d packets lost across the restart (counted by the earlier run "
            "after its last stored snapshot, or published while no engine listened); gap now %s",
            probe,
            lost,
            self.stats.gap,
        )

    async def _ingest_flows(self) -> None:
        """Decode the FlowRecordBatch messages that arrived and count them with their weights."""
        from netspectra.model.flows import FlowColumns
        from netspectra.wire.flow_codec import REJECT_REASONS as FLOW_REJECTS
        from netspectra.wire.flow_codec import decode_flow_batch

        messages, self._flows = self._flows, []
        assert self._decoder is not None, "_flush runs only inside serve()"

        def decode() -> tuple[FlowColumns, list[int]]:
            parts, refused = [], [0] * len(FLOW_REJECTS)
            for message in messages:
                columns, counts = decode_flow_batch(message)
                parts.append(columns)
                refused = [a + int(b) for a, b in zip(refused, counts, strict=True)]
            return FlowColumns.concat(parts), refused

        flows, refused = await asyncio.get_running_loop().run_in_executor(self._decoder, decode)
        for reason, count in zip(FLOW_REJECTS, refused, strict=True):
            if count:
                self.stats.flow_rejects[reason] = self.stats.flow_rejects.get(reason, 0) + count
        self.stats.flow_messages += len(messages)
        self.stats.flow_records += len(flows)
        await self.engine.ingest_flows(flows)

    # --- lifecycle -------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Run until ``stop``; then drain, ingest the rest and close the engine (its final snapshot).

        ``ready`` is set once the server has every subscription (a flush's round trip), so a probe
        started after it loses nothing.

        A crash (the loop raises) leaves the engine open, so the supervisor's next serve() resumes
        counting in the same engine; only a requested stop closes it.
        """
        await self.bus.connect()
        await self.engine.start()
        self._resume()
        queue = self.queue_group
        limits = {
            "pending_msgs_limit": self.pending_msgs_limit,
            "pending_bytes_limit": self.pending_bytes_limit,
        }
        subscriptions: list[Subscription] = [
            await self.bus.subscribe_payloads(self.subject, self._on_info, queue=queue, **limits),
            await self.bus.subscribe_payloads(
                batch_subject(self.subject), self._on_batch, queue=queue, **limits
            ),
            # straight from the parser like the packets, so a count keeps its place among them
            await self.bus.subscribe_payloads(count_subject(self.subject), self._on_count),
            await self.bus.subscribe_payloads(
                flows_subject(self.subject), self._on_flows, queue=queue, **limits
            ),
        ]
        logger.info(
            "Engine subscribed to %s and %s in queue group %r",
            self.subject,
            batch_subject(self.subject),
            queue,
        )
        next_stats = time.monotonic() + self.stats_interval
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netspectra-decode")
        stop_wait = asyncio.ensure_future(stop.wait())
        faulted = False
        # Claimed while counting already runs: EngineIdInUseError ends the role (nothing stored).
        writers_ready = asyncio.ensure_future(self.engine.start_writers())
        try:
            await self.bus.flush()
            if ready is not None:
                ready.set()
            while not stop.is_set():
                if writers_ready.done():
                    writers_ready.result()
                fault = self.engine.writer_fault() if hasattr(self.engine, "writer_fault") else None
                if fault is not None:
                    faulted = True  # its writers keep what they hold in their spools: close them
                    raise fault
                ready_wait = asyncio.ensure_future(self._ready.wait())
                await asyncio.wait(
                    {ready_wait, stop_wait}, timeout=self.flush_interval, return_when="FIRST_COMPLETED"
                )
                ready_wait.cancel()
                await self._flush()
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.stats_interval
                    self.log_stats()
        finally:
            stop_wait.cancel()
            writers_ready.cancel()
            try:
                for subscription in subscriptions:
                    with contextlib.suppress(BusError):
                        await subscription.drain()
                await self._flush()
            finally:
                try:
                    if stop.is_set() or faulted:  # on a crash the engine stays open for the restart
                        await self.engine.close()
                finally:
                    self._decoder.shutdown(wait=True)
                    self.log_stats(final=stop.is_set())

    def log_stats(self, *, final: bool = False) -> None:
        stats = self.stats
        bus = self.bus.stats
        gap = stats.gap
        unseen = stats.counts.before_first_count
        bad_counts = {reason: count for reason, count in stats.counts.rejects.items() if count}
        rejected = {reason: count for reason, count in stats.rejects.items() if count}
        dropped = bus.dropped + stats.dropped
        level = (
            logging.WARNING
            if (final and (gap or unseen or dropped or stats.dropped_batches or rejected or bad_counts))
            else logging.INFO
        )
        logger.log(
            level,
            "%s: %d packets from %d messages + %d batch messages; rejected %s%s; bus dropped %d%s; "
            "probes published %s; gap %s%s",
            "Engine role stopped" if final else "Engine role",
            stats.packets,
            stats.messages,
            stats.batch_messages,
            rejected or 0,
            f"; refused count messages {bad_counts}" if bad_counts else "",
            dropped,
            f" (+{stats.dropped_batches} batch messages)" if stats.dropped_batches else "",
            "unknown" if stats.published is None else stats.published,
            "unknown (no probe count messages)" if gap is None else gap,
            f" (+{unseen} published before this engine heard from their probe)" if unseen else "",
        )
