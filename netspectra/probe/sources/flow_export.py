"""UDP collector sources: ``probe.source: netflow`` (v5, v9, IPFIX; sFlow too) and ``sflow``.

One socket per ``probe.listen`` address, each read by a
:class:`~netspectra.probe.sources.udp_batch.BatchReceiver`: when the event loop sees a socket
readable, one ``recvmmsg`` call moves every queued datagram into the receiver's batch buffer (no
per-datagram Python objects). :meth:`FlowExportSource.batches` takes what has accumulated, decodes
it in a worker thread (:class:`~netspectra.capture.flows.ExportDecoder`: the version is read per
datagram, so either source decodes every protocol) while the next batch accumulates, and yields
:class:`~netspectra.model.flows.FlowColumns`. A receiver whose buffer is full stops reading until
it is taken: the socket's kernel buffer (``probe.flows.receive_buffer``) holds a burst meanwhile,
and what it cannot hold the kernel drops and counts, and so do we (``kernel_drops``, logged as
a WARNING when it grows, on ``/metrics``; docs/flow-export.md).
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
from netspectra.probe.sources.udp_batch import BatchReceiver, set_receive_buffer

logger = logging.getLogger(__name__)
#: Seconds between two looks at the kernel's drop counters while datagrams flow (and on every
#: quiet second): a drop is logged within about this long of happening.
_DROP_CHECK_S = 1.0


def parse_listen(address: str) -> tuple[str, int]:
    """``"0.0.0.0:2055"``, ``":6343"`` (every IPv4 address), ``"[::1]:2055"`` -> (host, port)."""
    host, _sep, port = address.rpartition(":")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


class FlowExportSource:
    """Flow records from exporters sending to ``listen`` (several addresses allowed)."""

    def __init__(self, config: ProbeConfig, *, use_recvmmsg: bool = True) -> None:
        flows = config.flows
        self.name = f"{config.source} collector on {', '.join(config.listen_addresses)}"
        self.listen = [parse_listen(address) for address in config.listen_addresses]
        self.batch_datagrams = flows.batch_datagrams
        self.receive_buffer = flows.receive_buffer
        self.pending_ttl_ns = int(float(flows.pending_ttl) * 1e9)
        self.decoder = ExportDecoder(
            allow=allow_list(flows.allow),
            sampling_overrides={mapped_address(a): rate for a, rate in flows.sampling_overrides.items()},
            pending_ttl_s=float(flows.pending_ttl),
            max_pending=flows.max_pending,
            template_path=Path(flows.template_path) if flows.template_path else None,
        )
        self._use_recvmmsg = use_recvmmsg
        self._receivers: list[BatchReceiver] = []
        self._reading: set[int] = set()  # fds the event loop watches
        self._arrived = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.datagrams = 0
        self.records = 0
        self.granted_buffers: list[int] = []  # receive buffer the kernel granted, per socket
        self.bound: list[tuple[str, int]] = []  # the addresses really bound (port 0 resolved)
        self._drops_logged = 0
        self._drops_checked_at = 0.0

    async def start(self) -> None:
        """Bind every listen address (idempotent); raises CaptureError naming one that cannot be bound."""
        if self._receivers:
            return
        self._loop = asyncio.get_running_loop()
        for host, port in self.listen:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.bind((host, port))
            except OSError as error:
                sock.close()
                await self.close()
                raise CaptureError(f"cannot listen on {host}:{port} for flow exports: {error}") from error
            self.granted_buffers.append(set_receive_buffer(sock, self.receive_buffer))
            receiver = BatchReceiver(sock, batch=self.batch_datagrams, use_recvmmsg=self._use_recvmmsg)
            self._receivers.append(receiver)
            self.bound.append(sock.getsockname()[:2])
            self._watch(receiver)
        logger.info(
            "Collecting flow exports on %s (receive buffer %s bytes, %s)",
            ", ".join(f"{h}:{p}" for h, p in self.bound),
            "/".join(str(size) for size in self.granted_buffers),
            "recvmmsg" if all(r.batched for r in self._receivers) else "recvmsg loop",
        )

    def _watch(self, receiver: BatchReceiver) -> None:
        fd = receiver.sock.fileno()
        if self._loop is not None and fd not in self._reading and not self._closed:
            self._loop.add_reader(fd, self._readable, receiver)
            self._reading.add(fd)

    def _readable(self, receiver: BatchReceiver) -> None:
        try:
            got = receiver.fill()
        except OSError as error:  # e.g. ECONNREFUSED from an ICMP error: the socket stays usable
            logger.warning("Flow collector socket error: %s", error)
            return
        if receiver.full:  # stop reading until taken: the kernel buffer holds the rest
            fd = receiver.sock.fileno()
            if self._loop is not None and fd in self._reading:
                self._loop.remove_reader(fd)
                self._reading.discard(fd)
        if got:
            self._arrived.set()

    def _take(self) -> list[DatagramBatch]:
        taken = []
        for receiver in self._receivers:
            batch = receiver.take()
            self._watch(receiver)
            if batch is not None:
                taken.append(batch)
        return taken

    async def batches(self) -> AsyncIterator[FlowColumns]:
        await self.start()
        loop = asyncio.get_running_loop()
        while not self._closed:
            if not any(receiver.pending for receiver in self._receivers):
                self._arrived.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._arrived.wait(), timeout=_DROP_CHECK_S)
                if not any(receiver.pending for receiver in self._receivers):
                    self.decoder.netflow.expire(time.time_ns())  # held data times out when all is quiet
                    self._check_drops(force=True)
                    continue
            parts = []
            for batch in self._take():
                self.datagrams += len(batch)
                flows = await loop.run_in_executor(None, self.decoder.decode, batch)
                self.records += len(flows)
                if len(flows):
                    parts.append(flows)
            self._check_drops()
            if parts:
                yield parts[0] if len(parts) == 1 else FlowColumns.concat(parts)

    def kernel_drops(self, *, read_proc: bool = True) -> int:
        """Datagrams the kernel dropped on our sockets (receive buffer full): seen by nothing else."""
        return sum(receiver.kernel_drops(read_proc=read_proc) for receiver in self._receivers)

    def oversize_datagrams(self) -> int:
        """Datagrams longer than a receive slot, cut by the kernel and skipped."""
        return sum(receiver.oversize for receiver in self._receivers)

    def _check_drops(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._drops_checked_at < _DROP_CHECK_S:
            return
        self._drops_checked_at = now
        drops = self.kernel_drops(read_proc=force)  # while traffic flows SO_RXQ_OVFL suffices
        if drops > self._drops_logged:
            logger.warning(
                "The kernel dropped %d flow-export datagrams on %s (%d in all): the collector's receive"
                " buffer (%s bytes) overflowed; raise probe.flows.receive_buffer (and net.core.rmem_max)"
                " or give the collector more CPU",
                drops - self._drops_logged,
                self.name,
                drops,
                "/".join(str(size) for size in self.granted_buffers),
            )
            self._drops_logged = drops

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
            "kernel_dropped_datagrams": self.kernel_drops(),
            "oversize_datagrams": self.oversize_datagrams(),
        }

    async def close(self) -> None:
        self._closed = True
        self._arrived.set()
        for receiver in self._receivers:
            fd = receiver.sock.fileno()
            if self._loop is not None and fd in self._reading:
                self._loop.remove_reader(fd)
            receiver.close()
        self._reading.clear()
        self.decoder.netflow.save()
