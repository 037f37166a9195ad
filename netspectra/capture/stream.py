"""Incremental pcap/pcapng parsing for bytes that arrive in arbitrary pieces.

:class:`CaptureStreamParser` is the one parser of capture containers: ``dumpcap -w -`` output
fed pipe read by pipe read, and (through :class:`~netspectra.capture.reader.CaptureReader`) files
read chunk by chunk with ``readinto``. It keeps the unconsumed tail of the input in one reused
numpy buffer, lets the numba walkers of :mod:`netspectra.capture.kernel` consume every complete
record, and interprets the few header blocks (pcap global header, pcapng SHB/IDB) in Python.

Nothing in a file can crash it, hang it or make it allocate without bound: record and block
lengths are checked against fixed maxima before anything is buffered for them, and a header
that cannot be right ends the input with a message in :attr:`error` naming the byte offset;
every packet before it is kept.
"""

from __future__ import annotations

import builtins
import struct

import numpy as np
import numpy.typing as npt

from netspectra.capture.kernel import (
    CORRUPT_BLOCK,
    CORRUPT_CAPLEN,
    COUNTER_BYTES,
    COUNTER_FRAMES,
    COUNTER_PACKETS,
    COUNTER_SIZE,
    COUNTER_SKIP_BASE,
    NEED_HEADER,
    NEED_MORE,
    OUT_FULL,
    PCAPNG_IDB,
    PCAPNG_SHB,
    SKIP_REASONS,
    walk_pcap,
    walk_pcap_go,
    walk_pcapng,
    walk_pcapng_go,
)
from netspectra.model.packets import PacketColumns

#: Largest captured length accepted in a pcap record (Wireshark's WTAP_MAX_PACKET_SIZE_STANDARD).
MAX_CAPLEN = 262_144
#: Largest pcapng block accepted; a longer claimed length is treated as corruption.
MAX_BLOCK = 16 << 20
#: Records hold at least this many bytes, so a buffer of B bytes yields at most B // 16 packets.
_MIN_RECORD = 16
_FEED_BATCH = 1 << 16

_PCAP_MAGICS: dict[int, tuple[int, int]] = {
    # magic as read little-endian -> (nanoseconds?, record header length)
    0xA1B2C3D4: (0, 16),
    0xA1B23C4D: (1, 16),
    0xA1B2CD34: (0, 24),  # Kuznetzov's "modified" libpcap format
}
_BYTE_ORDER_MAGIC = 0x1A2B3C4D


def _swap32(value: int) -> int:
    return int.from_bytes(value.to_bytes(4, "little"), "big")


class CaptureStreamParser:
    """Parse a pcap or pcapng byte stream fed in pieces of any size.

    Counters (cumulative): ``frames`` records seen, ``packets`` IP packets emitted, ``bytes``
    their wire bytes, ``skips`` frames not emitted by reason, ``error`` the message that ended
    the input (``None`` while all is well). After an error further input is ignored.

    ``compat="go"`` (``probe.compat``) decodes frames as gopacket 1.1.19 does: the walkers are
    chosen here, once, so the default walkers stay the kernels they were.
    """

    def __init__(self, initial_buffer: int = 1 << 16, *, compat: str | None = None) -> None:
        if compat not in (None, "go"):
            raise ValueError(f"compat must be None or 'go' (got {compat!r})")
        self._walk_pcap = walk_pcap_go if compat == "go" else walk_pcap
        self._walk_pcapng = walk_pcapng_go if compat == "go" else walk_pcapng
        self._buf: npt.NDArray[np.uint8] = np.empty(max(initial_buffer, 64), np.uint8)
        self._start = 0
        self._end = 0
        self._consumed_before = 0  # absolute offset of _buf[0]
        self._format: str | None = None
        self._big = False
        # pcap
        self._frac_to_ns = 1000
        self._record_header = 16
        self._linktype = 0
        # pcapng (per section)
        self._if_linktype: list[int] = []
        self._if_ts_exponent: list[int] = []
        self._if_ts_binary: list[int] = []
        self._if_ts_offset_ns: list[int] = []
        self._if_snaplen: list[int] = []
        self._if_arrays: tuple[npt.NDArray[np.int64], ...] = self._interface_arrays()
        self._counters = np.zeros(COUNTER_SIZE, np.int64)
        self._extra_skips: dict[str, int] = {}
        self.error: str | None = None
        self.linktypes: list[int] = []  # every link type declared, in order (for reports)

    # -- counters ----------------------------------------------------------------------------

    @property
    def frames(self) -> int:
        return int(self._counters[COUNTER_FRAMES])

    @property
    def packets(self) -> int:
        return int(self._counters[COUNTER_PACKETS])

    @property
    def bytes(self) -> int:
        return int(self._counters[COUNTER_BYTES])

    @property
    def skips(self) -> dict[str, int]:
        """Frames (and trailing records) not emitted, by reason; only non-zero reasons."""
        result = {
            reason: int(self._counters[COUNTER_SKIP_BASE + status])
            for status, reason in enumerate(SKIP_REASONS)
            if status > 0 and self._counters[COUNTER_SKIP_BASE + status]
        }
        result.update(self._extra_skips)
        return result

    @property
    def offset(self) -> int:
        """Absolute input offset of the first byte not yet consumed."""
        return self._consumed_before + self._start

    @property
    def pending(self) -> int:
        """Bytes buffered but not yet consumed (an incomplete record)."""
        return self._end - self._start

    # -- input -------------------------------------------------------------------------------

    def feed(self, data: builtins.bytes | bytearray | memoryview) -> PacketColumns:
        """Add bytes and return the packets of every record they complete (possibly none)."""
        if self.error is not None or not len(data):
            return PacketColumns.empty(0)
        view = np.frombuffer(data, np.uint8)
        self._reserve(len(view))
        self._buf[self._end : self._end + len(view)] = view
        self._end += len(view)
        parts: list[PacketColumns] = []
        while True:
            capacity = min(self.pending // _MIN_RECORD + 1, _FEED_BATCH)
            columns = PacketColumns.empty(capacity)
            count = self.parse_into(columns, 0, capacity)
            if count:
                parts.append(columns.head(count))
            if count < capacity:
                break
        if len(parts) == 1:
            return parts[0]
        return PacketColumns.concat(parts)

    def close(self) -> None:
        """Declare the end of input: a partial record left over is reported in :attr:`error`."""
        if self.error is not None:
            return
        if self._format is None:
            if self.pending == 0 and self._consumed_before == 0:
                self.error = "empty input: no capture header (expected a pcap or pcapng file)"
            else:
                self.error = (
                    f"input ends inside the capture header ({self.pending} bytes); "
                    "the file is truncated or not a capture"
                )
            return
        if self.pending:
            self._extra_skips["truncated_record"] = self._extra_skips.get("truncated_record", 0) + 1
            self.error = (
                f"input ends in the middle of a record at byte {self.offset} ({self.pending} bytes "
                f"left): the capture was cut short; kept the {self.packets} packets before it"
            )

    # -- buffer management (used by CaptureReader too) -------------------------------------------

    def _reserve(self, free: int) -> None:
        """Make room for ``free`` more bytes after the buffered tail (compact, then grow)."""
        if self._buf.shape[0] - self._end >= free:
            return
        pending = self.pending
        if self._start:
            self._buf[:pending] = self._buf[self._start : self._end]
            self._consumed_before += self._start
            self._start, self._end = 0, pending
        if self._buf.shape[0] - self._end < free:
            grown = np.empty(max(2 * self._buf.shape[0], pending + free), np.uint8)
            grown[:pending] = self._buf[:pending]
            self._buf = grown

    def _writable(self, want: int) -> memoryview:
        """A view of free buffer space of at least ``want`` bytes (for ``readinto``)."""
        if self._start and self._start == self._end:
            self._consumed_before += self._start
            self._start = self._end = 0
        self._reserve(want)
        return memoryview(self._buf)[self._end :]  # type: ignore[arg-type]

    def _commit(self, count: int) -> None:
        self._end += count

    # -- parsing -----------------------------------------------------------------------------

    def parse_into(self, columns: PacketColumns, n: int, capacity: int) -> int:
        """Parse buffered complete records into rows ``n..capacity-1``; returns the new ``n``."""
        while self.error is None:
            if self._format is None:
                if not self._read_file_header():
                    return n
                if self._format is None:  # not a capture: error is set
                    break
            if self._format == "pcap":
                pos, n, reason = self._walk_pcap(
                    self._buf, self._start, self._end, self._big, self._frac_to_ns, self._record_header,
                    MAX_CAPLEN, self._linktype,
                    *columns.arrays(), n, capacity, self._counters,
                )  # fmt: skip
            else:
                lt, exp, binary, offset_ns, snaplen = self._if_arrays
                pos, n, reason = self._walk_pcapng(
                    self._buf, self._start, self._end, self._big, MAX_BLOCK,
                    lt, exp, binary, offset_ns, snaplen, len(self._if_linktype),
                    *columns.arrays(), n, capacity, self._counters,
                )  # fmt: skip
            self._start = int(pos)
            n = int(n)
            if reason in (OUT_FULL, NEED_MORE):
                return n
            if reason == NEED_HEADER:
                if not self._read_pcapng_header():
                    return n
            elif reason == CORRUPT_CAPLEN:
                self._corrupt("a record's captured length is larger than its record allows or the "
                              f"{MAX_CAPLEN}-byte maximum")  # fmt: skip
            elif reason == CORRUPT_BLOCK:
                self._corrupt(f"a pcapng block length is below 12, not a multiple of 4 or above {MAX_BLOCK}")
        return n

    def _corrupt(self, what: str) -> None:
        head = bytes(self._buf[self._start : min(self._start + 16, self._end)]).hex(" ")
        self.error = (
            f"corrupt capture at byte {self.offset}: {what} (record header bytes: {head}); "
            f"stopped reading, kept the {self.packets} packets before it"
        )

    def _read_file_header(self) -> bool:
        """Recognise pcap or pcapng; returns False while more bytes are needed."""
        if self.pending < 4:
            return False
        raw = bytes(self._buf[self._start : self._start + 4])
        (magic,) = struct.unpack("<I", raw)
        if magic == PCAPNG_SHB:
            self._format = "pcapng"
            return True
        for big, value in ((False, magic), (True, _swap32(magic))):
            if value in _PCAP_MAGICS:
                if self.pending < 24:
                    return False
                nano, record_header = _PCAP_MAGICS[value]
                header = bytes(self._buf[self._start : self._start + 24])
                _, _, _, _, _, _snaplen, network = struct.unpack(">IHHiIII" if big else "<IHHiIII", header)
                self._big = big
                self._frac_to_ns = 1 if nano else 1000
                self._record_header = record_header
                self._linktype = network & 0x03FFFFFF
                self.linktypes.append(self._linktype)
                self._format = "pcap"
                self._start += 24
                return True
        hint = " (gzip-compressed: decompress it first)" if raw[:2] == b"\x1f\x8b" else ""
        self.error = (
            f"not a pcap or pcapng capture: unknown magic {raw.hex(' ')}{hint}; "
            "expected a classic pcap (a1b2c3d4/a1b23c4d) or pcapng (0a0d0d0a) file"
        )
        return True

    def _read_pcapng_header(self) -> bool:
        """Interpret a complete SHB or IDB at the cursor; returns False while more bytes are needed."""
        if self.pending < 12:
            return False
        head = bytes(self._buf[self._start : self._start + 12])
        (btype,) = struct.unpack("<I", head[:4])
        if btype == PCAPNG_SHB:
            (order,) = struct.unpack("<I", head[8:12])
            if order == _BYTE_ORDER_MAGIC:
                big = False
            elif _swap32(order) == _BYTE_ORDER_MAGIC:
                big = True
            else:
                self._corrupt(f"section header byte-order magic is {head[8:12].hex()}, not 1a2b3c4d")
                return True
            (length,) = struct.unpack(">I" if big else "<I", head[4:8])
            if length < 28 or length % 4 or length > MAX_BLOCK:
                self._corrupt(f"section header block length {length} is invalid")
                return True
            if self.pending < length:
                return False
            self._big = big
            self._if_linktype.clear()
            self._if_ts_exponent.clear()
            self._if_ts_binary.clear()
            self._if_ts_offset_ns.clear()
            self._if_snaplen.clear()
            self._if_arrays = self._interface_arrays()
            self._start += length
            return True
        endian = ">" if self._big else "<"
        btype, length = struct.unpack(endian + "II", head[:8])
        if btype != PCAPNG_IDB:  # the walker only stops at SHB and IDB
            raise AssertionError(f"walker stopped at block type {btype:#x}")
        if self.pending < length:
            return False
        block = bytes(self._buf[self._start : self._start + length])
        if length < 20:
            self._corrupt(f"interface description block length {length} is below 20")
            return True
        linktype, _, snaplen = struct.unpack(endian + "HHI", block[8:16])
        exponent, binary, offset_s = 6, 0, 0
        pos = 16
        while pos + 4 <= length - 4:
            code, size = struct.unpack(endian + "HH", block[pos : pos + 4])
            value = block[pos + 4 : pos + 4 + size]
            if code == 0:
                break
            if code == 9 and size >= 1:  # if_tsresol
                exponent, binary = value[0] & 0x7F, value[0] >> 7
            elif code == 14 and size >= 8:  # if_tsoffset (seconds)
                (offset_s,) = struct.unpack(endian + "q", value[:8])
            pos += 4 + ((size + 3) & ~3)
        self._if_linktype.append(linktype)
        self._if_ts_exponent.append(exponent)
        self._if_ts_binary.append(binary)
        self._if_ts_offset_ns.append(offset_s * 1_000_000_000)
        self._if_snaplen.append(snaplen)
        self._if_arrays = self._interface_arrays()
        self.linktypes.append(linktype)
        self._start += length
        return True

    def _interface_arrays(self) -> tuple[npt.NDArray[np.int64], ...]:
        # numba needs non-empty typed arrays; pad with one unused slot.
        return tuple(
            np.array([*values, 0], np.int64)
            for values in (
                self._if_linktype,
                self._if_ts_exponent,
                self._if_ts_binary,
                self._if_ts_offset_ns,
                self._if_snaplen,
            )
        )
