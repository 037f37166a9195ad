"""Publishes packet batches on the bus, Go-compatible by default.

* ``batch == 0`` (default): one ``PacketInfo`` per packet on ``subject``, exactly what
  Go2NetSpectra's probe sends, so Go engines can consume it.
* ``batch == N``: our extension, ``PacketBatch`` messages of up to N packets on
  ``<subject>.batch`` — far fewer messages for high rates; our engine accepts both at once.

Before its first packet, every second, and when the probe stops, the publisher sends a count
message (format in :mod:`netspectra.wire.subjects`: cumulative packets and messages handed to
the bus) on ``<subject>.count``, so engines can report any gap between what was published and
what arrived. The opening count (0 packets) tells an engine already listening that it has seen
this probe from its start, so every later loss is owed (see :mod:`netspectra.engine.probe_counts`).
A publish the bus refuses (disconnected with a full reconnect buffer) is counted as lost here;
it is never retried out of order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time

from netspectra.bus.base import Bus
from netspectra.errors import BusError
from netspectra.model.packets import PacketColumns
from netspectra.wire.codec import encode_packets
from netspectra.wire.subjects import ProbeCount, batch_subject, count_subject, encode_probe_count

logger = logging.getLogger(__name__)


class Publisher:
    def __init__(self, bus: Bus, subject: str, *, batch: int = 0, probe_id: str | None = None) -> None:
        self.bus = bus
        self.subject = subject
        self.batch = batch
        self.probe_id = probe_id or f"{socket.gethostname()}-{os.getpid()}-{time.monotonic_ns() % 10**6}"
        self.packets = 0
        self.messages = 0
        self.failed_packets = 0
        self._last_count = 0.0
        self._opened = False
        self._last_fail_log = 0.0

    async def publish(self, columns: PacketColumns) -> None:
        if not len(columns):
            return
        if not self._opened:
            self._opened = True
            await self.send_count()
        encoded = encode_packets(columns)
        publish = self.bus.publish
        if self.batch > 0:
            subject = batch_subject(self.subject)
            for data, count in encoded.batches(self.batch):
                try:
                    await publish(subject, data)
                except BusError:
                    self._failed(count)
                    continue
                self.packets += count
                self.messages += 1
                await asyncio.sleep(0)
        else:
            # one PacketInfo per message: the body of frame i is data[starts[i] + 2 : starts[i + 1]]
            starts = encoded.starts
            sent = await self.bus.publish_many(self.subject, encoded.data, starts[:-1] + 2, starts[1:])
            if sent < len(encoded):
                self._failed(len(encoded) - sent)
            self.packets += sent
            self.messages += sent
        if time.monotonic() - self._last_count >= 1.0:
            await self.send_count()

    def _failed(self, packets: int) -> None:
        self.failed_packets += packets
        now = time.monotonic()
        if now - self._last_fail_log > 5.0:
            self._last_fail_log = now
            logger.warning(
                "Bus refused publishes: %d packets lost so far (disconnected?)", self.failed_packets
            )

    async def send_count(self) -> None:
        """Tell engines how many packets this probe has published so far."""
        self._last_count = time.monotonic()
        report = encode_probe_count(ProbeCount(self.probe_id, self.packets, self.messages))
        with contextlib.suppress(BusError):  # the next one carries the same cumulative numbers
            await self.bus.publish(count_subject(self.subject), report)
