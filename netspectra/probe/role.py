"""The probe role: capture source → (persistence) → publisher → bus.

Stops when ``stop`` is set or when a replayed file ends; either way it sends a final count
message and flushes the bus before returning, so engines can tell what was published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from netspectra.bus.base import Bus
from netspectra.config.models import Settings
from netspectra.errors import BusError
from netspectra.model.flows import FlowColumns
from netspectra.probe.publisher import Publisher
from netspectra.probe.sources import PacketSource, open_source
from netspectra.wire.subjects import flows_subject

logger = logging.getLogger(__name__)
#: Flow records per FlowRecordBatch message: ~66 bytes each encoded, so ~540 kB, under NATS's
#: default max_payload (1 MB) with room to spare.
FLOW_RECORDS_PER_MESSAGE = 8192


class ProbeRole:
    def __init__(self, settings: Settings, bus: Bus, *, probe_id: str | None = None) -> None:
        self.settings = settings
        self.config = settings.probe
        self.bus = bus
        self.publisher = Publisher(bus, self.config.subject, batch=self.config.batch, probe_id=probe_id)
        self.persistence: Any = None
        self.source: PacketSource | None = None
        self.stats_interval = float(settings.engine.stats_interval)
        self.flow_messages = 0
        self.flow_records = 0
        self.flow_records_failed = 0

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event | None = None) -> None:
        """Publish until ``stop`` or the end of a replayed file; ``ready`` is set once the source is open."""
        await self.bus.connect()
        self.source = source = open_source(self.config)
        if self.config.persistence.enabled:
            from netspectra.probe.persistence import Persistence

            self.persistence = Persistence(self.config.persistence)
        logger.info(
            "Probe publishing %s from %s on %s",
            f"PacketBatch of {self.config.batch}" if self.config.batch else "one PacketInfo per packet",
            source.name,
            self.config.subject,
        )
        iterator = source.batches().__aiter__()
        if ready is not None:
            ready.set()
        stop_wait = asyncio.ensure_future(stop.wait())
        next_stats = time.monotonic() + self.stats_interval
        try:
            while not stop.is_set():
                next_batch = asyncio.ensure_future(anext(iterator, None))
                done, _ = await asyncio.wait({next_batch, stop_wait}, return_when="FIRST_COMPLETED")
                if next_batch not in done:
                    next_batch.cancel()
                    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                        await next_batch
                    break
                batch = next_batch.result()
                if batch is None:
                    logger.info("Probe source %s ended", source.name)
                    break
                if isinstance(batch, FlowColumns):  # a flow collector: records, on their own subject
                    await self._publish_flows(batch)
                    continue
                if self.persistence is not None:
                    self.persistence.offer(batch)
                await self.publisher.publish(batch)
                if time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.stats_interval
                    self.log_stats()
        finally:
            stop_wait.cancel()
            await source.close()
            await self.publisher.send_count()
            with contextlib.suppress(BusError):
                await self.bus.flush()
            if self.persistence is not None:
                await asyncio.get_running_loop().run_in_executor(None, self.persistence.close)
            self.log_stats(final=True)

    async def _publish_flows(self, flows: FlowColumns) -> None:
        """FlowRecordBatch messages of at most FLOW_RECORDS_PER_MESSAGE records on ``<subject>.flows``.

        A collector's batch holds what arrived during the last decode (up to 1024 datagrams of
        ~24 records: ~1.6 MB encoded), past NATS's default max_payload (1 MB); so it goes out in
        pieces. A refused publish is counted, not raised.
        """
        from netspectra.wire.flow_codec import encode_flow_batch

        for start in range(0, len(flows), FLOW_RECORDS_PER_MESSAGE):
            part = flows.rows(start, start + FLOW_RECORDS_PER_MESSAGE)
            try:
                await self.bus.publish(flows_subject(self.config.subject), encode_flow_batch(part))
            except BusError:
                self.flow_records_failed += len(part)
                logger.warning(
                    "The bus refused %d flow records (%d so far)", len(part), self.flow_records_failed
                )
                continue
            self.flow_messages += 1
            self.flow_records += len(part)

    def log_stats(self, *, final: bool = False) -> None:
        publisher = self.publisher
        source_stats = self.source.stats() if self.source is not None else {}
        extra = ""
        if self.persistence is not None:
            extra = f"; persisted {self.persistence.written} (dropped {self.persistence.dropped})"
        unheard = self.bus.stats.no_subscriber
        if unheard:
            extra += f"; {unheard} bus messages had no subscriber"
        if self.flow_messages or self.flow_records_failed:
            extra += (
                f"; flow records {self.flow_records} in {self.flow_messages} messages"
                f" ({self.flow_records_failed} refused by the bus)"
            )
        logger.log(
            logging.WARNING if final and (publisher.failed_packets or unheard) else logging.INFO,
            "%s: published %d packets in %d messages; lost %d (bus refused); source %s%s",
            "Probe stopped" if final else "Probe",
            publisher.packets,
            publisher.messages,
            publisher.failed_packets,
            source_stats,
            extra,
        )
