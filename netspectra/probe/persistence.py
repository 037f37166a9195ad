"""Go feature: the probe also writes what it captures to rotating files, never blocking publishing.

Batches are offered to a bounded queue drained by one writer thread; when the queue is full the
batch is dropped from persistence (counted, logged), never from publishing. The columns carry
the five-tuple, time and wire length but not the payload, so ``pcap`` files hold a rebuilt
header-only frame per packet (Ethernet + IPv4/IPv6 + TCP/UDP; ``orig_len`` = wire length),
readable by tshark and ``netspectra analyze`` with the same flows, times and byte counts.
``text`` writes one line per packet (slower; for reading by eye).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import struct
import threading
import time
from pathlib import Path

import numba as nb
import numpy as np

from netspectra.config.models import PersistenceConfig
from netspectra.model.fields import address_text
from netspectra.model.packets import PacketColumns

logger = logging.getLogger(__name__)

_PCAP_NS_MAGIC = 0xA1B23C4D
_MAX_RECORD = 16 + 14 + 40 + 20


@nb.njit(cache=True, nogil=True)
def _pcap_records(ts_ns, src_ip, dst_ip, src_port, dst_port, protocol, length, ip_version, out):  # type: ignore[no-untyped-def]
    """Write a nanosecond-pcap record (header + rebuilt frame) per packet; returns bytes used."""
    pos = 0
    for i in range(ts_ns.shape[0]):
        v6 = ip_version[i] == 6
        proto = protocol[i]
        l4 = 20 if proto == 6 else (8 if proto == 17 else 0)
        frame = 14 + (40 if v6 else 20) + l4
        wire = np.int64(length[i])
        caplen = frame if wire >= frame else wire
        sec = ts_ns[i] // 1_000_000_000
        nsec = ts_ns[i] - sec * 1_000_000_000
        for k in range(4):
            out[pos + k] = (sec >> (8 * k)) & 0xFF
            out[pos + 4 + k] = (nsec >> (8 * k)) & 0xFF
            out[pos + 8 + k] = (caplen >> (8 * k)) & 0xFF
            out[pos + 12 + k] = (wire >> (8 * k)) & 0xFF
        pos += 16
        f = pos
        for k in range(frame):
            out[f + k] = 0
        out[f + 12] = 0x86 if v6 else 0x08
        out[f + 13] = 0xDD if v6 else 0x00
        ip = f + 14
        if v6:
            out[ip] = 0x60
            payload = max(0, wire - 54)
            out[ip + 4] = (payload >> 8) & 0xFF
            out[ip + 5] = payload & 0xFF
            out[ip + 6] = proto
            out[ip + 7] = 64
            for k in range(16):
                out[ip + 8 + k] = src_ip[i, k]
                out[ip + 24 + k] = dst_ip[i, k]
            l4_at = ip + 40
        else:
            total = min(max(0, wire - 14), 65535)
            out[ip] = 0x45
            out[ip + 2] = (total >> 8) & 0xFF
            out[ip + 3] = total & 0xFF
            out[ip + 8] = 64
            out[ip + 9] = proto
            for k in range(4):
                out[ip + 12 + k] = src_ip[i, 12 + k]
                out[ip + 16 + k] = dst_ip[i, 12 + k]
            l4_at = ip + 20
        if l4 > 0:
            out[l4_at] = src_port[i] >> 8
            out[l4_at + 1] = src_port[i] & 0xFF
            out[l4_at + 2] = dst_port[i] >> 8
            out[l4_at + 3] = dst_port[i] & 0xFF
            if proto == 6:
                out[l4_at + 12] = 0x50
            else:
                udp_len = min(max(8, wire - (l4_at - f)), 65535)
                out[l4_at + 4] = (udp_len >> 8) & 0xFF
                out[l4_at + 5] = udp_len & 0xFF
        pos += caplen
    return pos


def pcap_file_header(snaplen: int = 262_144) -> bytes:
    """Classic pcap, nanosecond timestamps, Ethernet link type."""
    return struct.pack("<IHHiIII", _PCAP_NS_MAGIC, 2, 4, 0, 0, snaplen, 1)


def pcap_records(columns: PacketColumns) -> bytes:
    out = np.empty(len(columns) * _MAX_RECORD, np.uint8)
    used = _pcap_records(
        *columns.arrays(),
        out,
    )
    return out[:used].tobytes()


def text_lines(columns: PacketColumns) -> str:
    lines = []
    for i in range(len(columns)):
        lines.append(
            f"{int(columns.ts_ns[i])} {address_text(columns.src_ip[i])}:{int(columns.src_port[i])} -> "
            f"{address_text(columns.dst_ip[i])}:{int(columns.dst_port[i])} proto {int(columns.protocol[i])} "
            f"len {int(columns.length[i])}\n"
        )
    return "".join(lines)


class Persistence:
    """Rotating capture files written by one background thread from a bounded queue."""

    def __init__(self, config: PersistenceConfig) -> None:
        self.config = config
        self.directory = Path(config.path)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.encoding = "pcap" if config.encoding == "gob" else config.encoding
        if config.encoding == "gob":
            logger.warning("probe.persistence.encoding 'gob' (Go) is written as pcap")
        self._queue: queue.Queue[PacketColumns | None] = queue.Queue(maxsize=config.channel_buffer_size)
        self.written = 0
        self.dropped = 0
        self._dropped_lock = threading.Lock()
        self.files: list[Path] = []
        self._thread = threading.Thread(target=self._run, name="netspectra-persistence", daemon=True)
        self._thread.start()

    def offer(self, columns: PacketColumns) -> None:
        """Queue a batch; never blocks (a full queue drops the batch from persistence only)."""
        try:
            self._queue.put_nowait(columns)
        except queue.Full:
            self._drop(len(columns))

    def _open(self, sequence: int):  # type: ignore[no-untyped-def]
        stamp = time.strftime("%Y%m%d-%H%M%S")
        suffix = "pcap" if self.encoding == "pcap" else "txt"
        path = self.directory / f"capture-{stamp}-{sequence:04d}.{suffix}"
        self.files.append(path)
        handle = open(path, "wb")  # noqa: SIM115 (closed on rotation)
        if self.encoding == "pcap":
            handle.write(pcap_file_header())
        return handle

    def _run(self) -> None:
        sequence = 0
        in_file = 0
        handle = None
        columns: PacketColumns | None = None
        begin = 0
        try:
            while True:
                columns = self._queue.get()
                if columns is None:
                    return
                begin = 0
                while begin < len(columns):
                    if handle is None or in_file >= self.config.rotate_packets:
                        if handle is not None:
                            handle.close()
                        handle = self._open(sequence)
                        sequence += 1
                        in_file = 0
                    take = min(len(columns) - begin, self.config.rotate_packets - in_file)
                    part = columns.head(begin + take)
                    part = PacketColumns(*(getattr(part, name)[begin:] for name in _NAMES))
                    if self.encoding == "pcap":
                        handle.write(pcap_records(part))
                    else:
                        handle.write(text_lines(part).encode())
                    in_file += take
                    begin += take
                    self.written += take
        except Exception:  # any failure stops writing, never the probe: drain below so offer() never blocks
            logger.exception("Probe persistence stopped: cannot write under %s", self.directory)
            if columns is not None:
                self._drop(len(columns) - begin)
        finally:
            if handle is not None:
                with contextlib.suppress(OSError):
                    handle.close()
        self._discard()  # only reached after an error: a None from close() returns above

    def _discard(self) -> None:
        """After a write error: keep emptying the queue (counted as dropped) until close() says stop."""
        while (columns := self._queue.get()) is not None:
            self._drop(len(columns))

    def _drop(self, packets: int) -> None:
        with self._dropped_lock:  # offer() (probe thread) and _discard() (writer thread) both count
            self.dropped += packets

    def close(self) -> None:
        """Write what is queued, then stop the thread; never blocks for good (a dead thread is skipped)."""
        while self._thread.is_alive():
            try:
                self._queue.put(None, timeout=0.5)
                break
            except queue.Full:
                continue
        self._thread.join(timeout=30)
        if self._thread.is_alive():
            logger.error("Probe persistence: writer thread did not stop within 30 s; abandoning it")


_NAMES = ("ts_ns", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "length", "ip_version")
