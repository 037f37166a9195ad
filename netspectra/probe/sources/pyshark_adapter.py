"""The only module that touches pyshark: ``LiveCapture`` through its async API, for tshark's
dissectors and display filters (``probe.source: pyshark``).

Honest rate: pyshark decodes about 1 k packets/s here (each packet is a tshark PDML/JSON
dissection), so this source is for selective captures (``display_filter``), not for bulk traffic.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import numpy as np

from netspectra.errors import CaptureError
from netspectra.model.packets import IPV4_MAPPED_PREFIX, PacketColumns
from netspectra.probe.sources.afpacket import check_interface

_FLUSH_EVERY = 256
#: how long closing may wait for tshark's pipes: pyshark waits for its stderr readers to reach
#: EOF, which a lingering child (tshark's dumpcap) can hold open indefinitely
_CLOSE_SECONDS = 10.0

logger = logging.getLogger(__name__)


def _row(packet: Any) -> tuple[int, bytes, bytes, int, int, int, int, int] | None:
    layer = getattr(packet, "ip", None) or getattr(packet, "ipv6", None)
    if layer is None:
        return None
    version = 4 if hasattr(packet, "ip") else 6
    src = ipaddress.ip_address(layer.src).packed
    dst = ipaddress.ip_address(layer.dst).packed
    if version == 4:
        src, dst = IPV4_MAPPED_PREFIX + src, IPV4_MAPPED_PREFIX + dst
    proto = int(layer.proto if version == 4 else layer.nxt)
    sport = dport = 0
    transport = getattr(packet, "tcp", None) or getattr(packet, "udp", None)
    if transport is not None:
        sport, dport = int(transport.srcport), int(transport.dstport)
    ts = int(Decimal(str(packet.sniff_timestamp)) * 1_000_000_000)  # a float would lose the nanoseconds
    return ts, src, dst, sport, dport, proto, int(packet.length), version


def _columns(rows: list[tuple[int, bytes, bytes, int, int, int, int, int]]) -> PacketColumns:
    columns = PacketColumns.empty(len(rows))
    for i, (ts, src, dst, sport, dport, proto, length, version) in enumerate(rows):
        columns.ts_ns[i] = ts
        columns.src_ip[i] = np.frombuffer(src, np.uint8)
        columns.dst_ip[i] = np.frombuffer(dst, np.uint8)
        columns.src_port[i], columns.dst_port[i], columns.protocol[i] = sport, dport, proto
        columns.length[i], columns.ip_version[i] = length, version
    return columns


class PysharkSource:
    name = "pyshark"

    def __init__(self, iface: str, *, bpf_filter: str = "", display_filter: str = "") -> None:
        check_interface(iface)
        self.iface = iface
        self.bpf_filter = bpf_filter or None
        self.display_filter = display_filter or None
        self.packets = 0
        self.capture: Any = None
        self._runner: asyncio.Future[Any] | None = None
        self._closing = False

    def stats(self) -> dict[str, int]:
        return {"packets": self.packets}

    async def batches(self) -> AsyncIterator[PacketColumns]:
        import pyshark

        queue: asyncio.Queue[Any] = asyncio.Queue()
        self.capture = pyshark.LiveCapture(
            interface=self.iface,
            bpf_filter=self.bpf_filter,
            display_filter=self.display_filter,
            eventloop=asyncio.get_running_loop(),
        )
        # pyshark 0.6 calls the callback synchronously (a coroutine function would never run)
        self._runner = runner = asyncio.ensure_future(self.capture.packets_from_tshark(queue.put_nowait))
        rows: list[Any] = []
        while not runner.done() or not queue.empty():
            try:
                packet = await asyncio.wait_for(queue.get(), 0.2)
            except TimeoutError:
                packet = None
            if packet is not None:
                row = _row(packet)
                if row is not None:
                    rows.append(row)
            if rows and (packet is None or len(rows) >= _FLUSH_EVERY):
                self.packets += len(rows)
                yield _columns(rows)
                rows = []
        if rows:
            self.packets += len(rows)
            yield _columns(rows)
        if not self._closing and not runner.cancelled() and runner.exception() is not None:
            error = runner.exception()
            raise CaptureError(f"tshark (pyshark) stopped capturing on {self.iface!r}: {error}") from error

    async def close(self) -> None:
        """Stop tshark, then let pyshark read its pipes to the end (cancelling would leak them)."""
        self._closing = True
        if self.capture is None:
            return
        # pyshark kills tshark but never closes the asyncio transport of its pipes, which then
        # leaks (a ResourceWarning when collected): remember the processes (pyshark's private
        # ``_running_processes``, which close_async empties) to close their transports below.
        processes = list(getattr(self.capture, "_running_processes", ()))
        try:
            await asyncio.wait_for(self.capture.close_async(), _CLOSE_SECONDS)
        except TimeoutError:  # the stderr readers were cancelled with it; the pipes close below
            logger.warning(
                "pyshark: tshark on %r did not release its pipes within %.0f s of being stopped; "
                "closing them anyway",
                self.iface,
                _CLOSE_SECONDS,
            )
        runner = self._runner
        if runner is not None and not runner.done():
            try:
                await asyncio.wait_for(asyncio.shield(runner), 5)
            except TimeoutError:
                runner.cancel()
        if runner is not None and runner.done() and not runner.cancelled():
            runner.exception()  # retrieved: tshark killed by us is not an error
        for process in processes:
            transport = getattr(process, "_transport", None)  # asyncio.subprocess.Process's own
            if transport is not None:
                transport.close()
