"""UDP collector sources: ``probe.source: netflow`` (v5, v9, IPFIX; sFlow too) and ``sflow``.

One asyncio datagram endpoint per ``probe.listen`` address. The protocol callback only appends
``(payload, sender, arrival ns)`` to a list; :meth:`FlowExportSource.batches` takes the whole
list at once and decodes it in a worker thread (:class:`~netspectra.capture.flows.ExportDecoder`:
the version is read per datagram, so either source decodes every protocol), yielding
:class:`~netspectra.model.flows.FlowColumns`. The kernel's socket buffer is what holds a burst
while a batch is decoded; what the kernel drops there is not visible to us (see docs/flow-export.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path

from netspectra.capture.flows import DatagramBatch, ExportDecoder
from netspectra.capture.flows.datagrams import mapped_address
from netspectra.capture.flows.netflow import allow_list
from netspectra.config.models import ProbeConfig
from netspectra.errors import CaptureError
from netspectra.model.flows import FlowColumns

logger = logging.getLogger(__name__)
_RECEIVE_BUFFER = 32 << 20


def parse_listen(address: str) -> tuple[str, int]:
    """``"0.0.0.0:2055"``, ``":6343"`` (every IPv4 address), ``"[::1]:2055"`` -> (host, port)."""
    host, _sep, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class _Receiver(asyncio.DatagramProtocol):
    def __init__(self, inbox: list[tuple[bytes, str, int]], arrived: asyncio.Event) -> None:
        self._inbox = inbox
        self._arrived = arrived

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:  # type: ignore[override]
        self._inbox.append((data, str(addr[0]), time.time_ns()))
        self._arrived.set()

    def error_received(self, exc: Exception) -> None:
        logger.warning("Flow collector socket error: %s", exc)


class FlowExportSource:
    """Flow records from exporters sending to ``listen`` (several addresses allowed)."""

    def __init__(self, config: ProbeConfig) -> None:
        flows = config.flows
        self.name = f"{config.source} collector on {', '.join(config.listen_addresses)}"
        self.listen = [parse_listen(address) for address in config.listen_addresses]
        self.batch_datagrams = flows.batch_datagrams
        self.pending_ttl_ns = int(float(flows.pending_ttl) * 1e9)
        self.decoder = ExportDecoder(
            allow=allow_list(flows.allow),
            sampling_overrides={mapped_address(a): rate for a, rate in flows.sampling_overrides.items()},
            pending_ttl_s=float(flows.pending_ttl),
            max_pending=flows.max_pending,
            template_path=Path(flows.template_path) if flows.template_path else None,
        )
        self._inbox: list[tuple[bytes, str, int]] = []
        self._arrived = asyncio.Event()
        self._transports: list[asyncio.DatagramTransport] = []
        self._closed = False
        self.datagrams = 0
        self.records = 0
        self.bound: list[tuple[str, int]] = []  # the addresses really bound (port 0 resolved)

    async def start(self) -> None:
        """Bind every listen address (idempotent); raises CaptureError naming one that cannot be bound."""
        if self._transports:
            return
        loop = asyncio.get_running_loop()
        for host, port in self.listen:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
                sock.bind((host, port))
            except OSError as error:
                sock.close()
                await self.close()
                raise CaptureError(f"cannot listen on {host}:{port} for flow exports: {error}") from error
            transport, _protocol = await loop.create_datagram_endpoint(
                lambda: _Receiver(self._inbox, self._arrived), sock=sock
            )
            self._transports.append(transport)
            self.bound.append(sock.getsockname()[:2])
        logger.info("Collecting flow exports on %s", ", ".join(f"{h}:{p}" for h, p in self.bound))

    async def batches(self) -> AsyncIterator[FlowColumns]:
        await self.start()
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not self._inbox:
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), timeout=1.0)
                if not self._inbox:
                    self.decoder.netflow.expire(time.time_ns())  # held data times out when all is quiet
                    continue
            taken = self._inbox[: self.batch_datagrams]
            del self._inbox[: len(taken)]
            self.datagrams += len(taken)
            batch = DatagramBatch.from_datagrams(taken)
            flows = await loop.run_in_executor(None, self.decoder.decode, batch)
            self.records += len(flows)
            if len(flows):
                yield flows

    def stats(self) -> dict[str, int]:
        netflow, sflow = self.decoder.netflow.stats, self.decoder.sflow.stats
        return {
            "datagrams": self.datagrams,
            "records": self.records,
            "refused": netflow.refused + sflow.refused,
            "malformed": sum(netflow.malformed.values()) + sum(sflow.malformed.values()),
            "missed_packets": netflow.missed_packets + sflow.missed_packets,
            "missed_flows": netflow.missed_flows,
            "pending": self.decoder.netflow.pending,
            "pending_expired": netflow.pending_expired,
            "counter_samples": sflow.counter_samples,
            "discarded_samples": sflow.discarded_samples,
        }

    async def close(self) -> None:
        self._closed = True
        self._arrived.set()
        for transport in self._transports:
            transport.close()
        self._transports.clear()
        self.decoder.netflow.save()
