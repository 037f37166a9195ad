"""numba kernels that walk the records of a pcap or pcapng buffer and fill packet columns.

The buffer holds whatever bytes have arrived; a walker consumes only COMPLETE records and
stops at the first incomplete one (``NEED_MORE``), when the output columns are full
(``OUT_FULL``), at a pcapng section or interface block that Python must interpret
(``NEED_HEADER``: rare, and it carries options that are awkward in numba), or at a record
header that cannot be right (``CORRUPT_*``). Callers keep the returned position, add bytes and
call again, so files larger than memory and streams arriving in arbitrary pieces both work.

``counters`` is an int64 array: ``[frames, packets, bytes, skip[1], skip[2], ...]`` indexed as
:data:`COUNTER_FRAMES` etc. and ``COUNTER_SKIP_BASE + status`` with the statuses of
:mod:`netspectra.capture.kernel`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from netspectra.capture.kernel import OK, SKIP_REASONS, UNKNOWN_INTERFACE, decode_frame

NEED_MORE = 0
OUT_FULL = 1
NEED_HEADER = 2
CORRUPT_CAPLEN = 3
CORRUPT_BLOCK = 4

COUNTER_FRAMES = 0
COUNTER_PACKETS = 1
COUNTER_BYTES = 2
COUNTER_SKIP_BASE = 2  # + status (statuses start at 1)
COUNTER_SIZE = COUNTER_SKIP_BASE + len(SKIP_REASONS)

PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_IDB = 1
PCAPNG_OPB = 2  # obsolete Packet Block
PCAPNG_SPB = 3
PCAPNG_EPB = 6


@njit(cache=True, nogil=True, inline="always")
def _u32(b0: int, b1: int, b2: int, b3: int, big: bool) -> int:
    if big:
        return (b0 << 24) | (b1 << 16) | (b2 << 8) | b3
    return (b3 << 24) | (b2 << 16) | (b1 << 8) | b0


@njit(cache=True, nogil=True)
def walk_pcap(  # type: ignore[no-untyped-def]
    buf,
    pos,
    end,
    big_endian,
    frac_to_ns,
    rec_header_len,
    max_caplen,
    linktype,
    ts_col,
    src_col,
    dst_col,
    sport_col,
    dport_col,
    proto_col,
    len_col,
    ver_col,
    n,
    capacity,
    counters,
):
    """Walk classic pcap records in ``buf[pos:end]``; returns ``(pos, n, reason)``.

    ``frac_to_ns`` is 1000 for microsecond files and 1 for nanosecond files; ``rec_header_len``
    is 16, or 24 for the Kuznetzov "modified" format.
    """
    while n < capacity:
        if pos + rec_header_len > end:
            return pos, n, NEED_MORE
        sec = _u32(
            np.int64(buf[pos]), np.int64(buf[pos + 1]), np.int64(buf[pos + 2]), np.int64(buf[pos + 3]),
            big_endian,
        )  # fmt: skip
        frac = _u32(
            np.int64(buf[pos + 4]), np.int64(buf[pos + 5]), np.int64(buf[pos + 6]), np.int64(buf[pos + 7]),
            big_endian,
        )  # fmt: skip
        caplen = _u32(
            np.int64(buf[pos + 8]), np.int64(buf[pos + 9]), np.int64(buf[pos + 10]), np.int64(buf[pos + 11]),
            big_endian,
        )  # fmt: skip
        wirelen = _u32(
            np.int64(buf[pos + 12]), np.int64(buf[pos + 13]), np.int64(buf[pos + 14]), np.int64(buf[pos + 15]),
            big_endian,
        )  # fmt: skip
        if caplen > max_caplen:
            return pos, n, CORRUPT_CAPLEN
        data = pos + rec_header_len
        if data + caplen > end:
            return pos, n, NEED_MORE
        counters[COUNTER_FRAMES] += 1
        status, version, l3, proto, sport, dport = decode_frame(buf, data, caplen, linktype)
        pos = data + caplen
        if status != OK:
            counters[COUNTER_SKIP_BASE + status] += 1
            continue
        ts_col[n] = sec * 1_000_000_000 + frac * frac_to_ns
        if version == 4:
            for k in range(10):
                src_col[n, k] = 0
                dst_col[n, k] = 0
            src_col[n, 10] = 0xFF
            src_col[n, 11] = 0xFF
            dst_col[n, 10] = 0xFF
            dst_col[n, 11] = 0xFF
            for k in range(4):
                src_col[n, 12 + k] = buf[l3 + 12 + k]
                dst_col[n, 12 + k] = buf[l3 + 16 + k]
        else:
            for k in range(16):
                src_col[n, k] = buf[l3 + 8 + k]
                dst_col[n, k] = buf[l3 + 24 + k]
        sport_col[n] = sport
        dport_col[n] = dport
        proto_col[n] = proto
        len_col[n] = wirelen
        ver_col[n] = version
        counters[COUNTER_PACKETS] += 1
        counters[COUNTER_BYTES] += wirelen
        n += 1
    return pos, n, OUT_FULL


@njit(cache=True, nogil=True, inline="always")
def _units_to_ns(units: int, exponent: int, binary: bool) -> int:
    """pcapng timestamp units (10^-e or 2^-e seconds) to nanoseconds, in integers."""
    if binary:
        if exponent <= 32:
            whole = units >> exponent
            part = units & ((1 << exponent) - 1)
            return whole * 1_000_000_000 + ((part * 1_000_000_000) >> exponent)
        return np.int64(np.float64(units) / (2.0**exponent) * 1e9)
    if exponent <= 9:
        scale = 1
        for _ in range(9 - exponent):
            scale *= 10
        return units * scale
    scale = 1
    for _ in range(min(exponent - 9, 18)):
        scale *= 10
    return units // scale


@njit(cache=True, nogil=True)
def walk_pcapng(  # type: ignore[no-untyped-def]
    buf,
    pos,
    end,
    big_endian,
    max_block,
    if_linktype,
    if_ts_exponent,
    if_ts_binary,
    if_ts_offset_ns,
    if_snaplen,
    n_interfaces,
    ts_col,
    src_col,
    dst_col,
    sport_col,
    dport_col,
    proto_col,
    len_col,
    ver_col,
    n,
    capacity,
    counters,
):
    """Walk pcapng blocks of one section in ``buf[pos:end]``; returns ``(pos, n, reason)``.

    Enhanced (6), simple (3) and obsolete (2) packet blocks are parsed; section (SHB) and
    interface (IDB) blocks return ``NEED_HEADER`` once complete; every other block is skipped.
    """
    while n < capacity:
        if pos + 12 > end:
            return pos, n, NEED_MORE
        btype = _u32(
            np.int64(buf[pos]), np.int64(buf[pos + 1]), np.int64(buf[pos + 2]), np.int64(buf[pos + 3]),
            big_endian,
        )  # fmt: skip
        if btype == PCAPNG_SHB:
            return pos, n, NEED_HEADER
        blen = _u32(
            np.int64(buf[pos + 4]), np.int64(buf[pos + 5]), np.int64(buf[pos + 6]), np.int64(buf[pos + 7]),
            big_endian,
        )  # fmt: skip
        if blen < 12 or blen % 4 != 0 or blen > max_block:
            return pos, n, CORRUPT_BLOCK
        if pos + blen > end:
            return pos, n, NEED_MORE
        if btype == PCAPNG_IDB:
            return pos, n, NEED_HEADER
        if btype == PCAPNG_EPB or btype == PCAPNG_OPB or btype == PCAPNG_SPB:
            if btype == PCAPNG_SPB:
                if blen < 16:
                    return pos, n, CORRUPT_BLOCK
                wirelen = _u32(
                    np.int64(buf[pos + 8]), np.int64(buf[pos + 9]), np.int64(buf[pos + 10]),
                    np.int64(buf[pos + 11]), big_endian,
                )  # fmt: skip
                caplen = min(wirelen, blen - 16)
                if n_interfaces > 0 and if_snaplen[0] > 0:
                    caplen = min(caplen, if_snaplen[0])
                iface = 0
                data = pos + 12
                units = np.int64(0)
            else:
                if blen < 32:
                    return pos, n, CORRUPT_BLOCK
                if btype == PCAPNG_EPB:
                    iface = _u32(
                        np.int64(buf[pos + 8]), np.int64(buf[pos + 9]), np.int64(buf[pos + 10]),
                        np.int64(buf[pos + 11]), big_endian,
                    )  # fmt: skip
                elif big_endian:
                    iface = (np.int64(buf[pos + 8]) << 8) | np.int64(buf[pos + 9])
                else:
                    iface = (np.int64(buf[pos + 9]) << 8) | np.int64(buf[pos + 8])
                hi = _u32(
                    np.int64(buf[pos + 12]), np.int64(buf[pos + 13]), np.int64(buf[pos + 14]),
                    np.int64(buf[pos + 15]), big_endian,
                )  # fmt: skip
                lo = _u32(
                    np.int64(buf[pos + 16]), np.int64(buf[pos + 17]), np.int64(buf[pos + 18]),
                    np.int64(buf[pos + 19]), big_endian,
                )  # fmt: skip
                caplen = _u32(
                    np.int64(buf[pos + 20]), np.int64(buf[pos + 21]), np.int64(buf[pos + 22]),
                    np.int64(buf[pos + 23]), big_endian,
                )  # fmt: skip
                wirelen = _u32(
                    np.int64(buf[pos + 24]), np.int64(buf[pos + 25]), np.int64(buf[pos + 26]),
                    np.int64(buf[pos + 27]), big_endian,
                )  # fmt: skip
                if caplen > blen - 32:
                    return pos, n, CORRUPT_CAPLEN
                data = pos + 28
                units = (hi << 32) | lo
            counters[COUNTER_FRAMES] += 1
            if iface >= n_interfaces:
                counters[COUNTER_SKIP_BASE + UNKNOWN_INTERFACE] += 1
                pos += blen
                continue
            status, version, l3, proto, sport, dport = decode_frame(buf, data, caplen, if_linktype[iface])
            if status != OK:
                counters[COUNTER_SKIP_BASE + status] += 1
                pos += blen
                continue
            ts_col[n] = (
                _units_to_ns(units, if_ts_exponent[iface], if_ts_binary[iface] != 0) + if_ts_offset_ns[iface]
            )
            if version == 4:
                for k in range(10):
                    src_col[n, k] = 0
                    dst_col[n, k] = 0
                src_col[n, 10] = 0xFF
                src_col[n, 11] = 0xFF
                dst_col[n, 10] = 0xFF
                dst_col[n, 11] = 0xFF
                for k in range(4):
                    src_col[n, 12 + k] = buf[l3 + 12 + k]
                    dst_col[n, 12 + k] = buf[l3 + 16 + k]
            else:
                for k in range(16):
                    src_col[n, k] = buf[l3 + 8 + k]
                    dst_col[n, k] = buf[l3 + 24 + k]
            sport_col[n] = sport
            dport_col[n] = dport
            proto_col[n] = proto
            len_col[n] = wirelen
            ver_col[n] = version
            counters[COUNTER_PACKETS] += 1
            counters[COUNTER_BYTES] += wirelen
            n += 1
        pos += blen
    return pos, n, OUT_FULL
