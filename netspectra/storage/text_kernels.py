"""Text of snapshot columns written by numba kernels straight into byte buffers.

A snapshot of a million flows must never become a million Python strings: formatting JSON Lines
row by row in Python ran at ~0.2 M rows/s (1.6-1.9 s of a 2 M-frame ``analyze``); these kernels
write the bytes of every row into one preallocated ``uint8`` buffer at several million rows per
second and release the GIL, so tasks are formatted on as many threads as there are cores.

Addresses follow Python's ``ipaddress`` text exactly (dotted quad for IPv4-mapped rows, RFC 5952
for the rest); times are RFC 3339 UTC with all nine fractional digits, for the years 1970-9999
(:func:`times_in_range` says when a caller must take the Python path instead).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from netspectra.jit import njit

#: Longest text of one address: eight 4-digit groups and seven colons.
MAX_ADDRESS_TEXT = 39
HEX_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8)
_NS = 1_000_000_000
#: 0001-01-01 .. 9999-12-31 23:59:59 is what the kernel's four-digit year covers; we keep to the
#: epoch onwards, where Python's strftime and the kernel agree without question.
_LAST_SECOND = 253_402_300_799
_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_TEN = np.uint64(10)
_BILLION = np.uint64(_NS)


@njit(cache=True, nogil=True, inline="always")
def _write_decimal(out: npt.NDArray[np.uint8], at: int, value: int) -> int:
    if value >= 100:
        out[at] = 48 + value // 100
        at += 1
    if value >= 10:
        out[at] = 48 + (value // 10) % 10
        at += 1
    out[at] = 48 + value % 10
    return at + 1


@njit(cache=True, nogil=True, inline="always")
def _write_hextet(out: npt.NDArray[np.uint8], at: int, value: int, hexdigits: npt.NDArray[np.uint8]) -> int:
    started = False
    for shift in (12, 8, 4, 0):
        digit = (value >> shift) & 0xF
        if digit or started or shift == 0:
            out[at] = hexdigits[digit]
            at += 1
            started = True
    return at


@njit(cache=True, nogil=True, inline="always")
def write_address(  # type: ignore[no-untyped-def]
    out, at, raw, row, hextets, hexdigits
):
    """Write row ``row`` of the ``(n, 16)`` address column at ``out[at:]``; returns the new end."""
    mapped = raw[row, 10] == 0xFF and raw[row, 11] == 0xFF
    if mapped:
        for index in range(10):
            if raw[row, index] != 0:
                mapped = False
                break
    if mapped:
        for index in range(12, 16):
            if index > 12:
                out[at] = 46  # "."
                at += 1
            at = _write_decimal(out, at, raw[row, index])
        return at
    for group in range(8):
        hextets[group] = (np.int64(raw[row, 2 * group]) << 8) | raw[row, 2 * group + 1]
    best_start = -1
    best_length = 0
    run_start = -1
    for group in range(8):
        if hextets[group] == 0:
            if run_start < 0:
                run_start = group
            if group - run_start + 1 > best_length:
                best_length = group - run_start + 1
                best_start = run_start
        else:
            run_start = -1
    if best_length < 2:
        best_start = -1
    group = 0
    while group < 8:
        if group == best_start:
            out[at] = 58  # ":"
            out[at + 1] = 58
            at += 2
            group += best_length
            continue
        if group > 0 and group != best_start + best_length:
            out[at] = 58
            at += 1
        at = _write_hextet(out, at, hextets[group], hexdigits)
        group += 1
    return at


@njit(cache=True, nogil=True)
def address_text_kernel(  # type: ignore[no-untyped-def]
    raw, hexdigits, out, offsets
):
    """Arrow string buffers (``out`` bytes, ``offsets``) of every 16-byte row."""
    at = 0
    offsets[0] = 0
    hextets = np.zeros(8, np.int64)
    for row in range(raw.shape[0]):
        at = write_address(out, at, raw, row, hextets, hexdigits)
        offsets[row + 1] = at


@njit(cache=True, nogil=True, inline="always")
def _write_unsigned(out, at, value):  # type: ignore[no-untyped-def]
    """Decimal text of a non-negative integer, in uint64 throughout (numba turns mixed
    uint64/int64 operands into float64, which loses the low digits of a large counter)."""
    value = np.uint64(value)
    digits = 1
    probe = value
    while probe >= _TEN:
        probe //= _TEN
        digits += 1
    end = at + digits
    position = end - 1
    while True:
        out[position] = np.uint8(48) + np.uint8(value % _TEN)
        value //= _TEN
        if value == _ZERO:
            return end
        position -= 1


@njit(cache=True, nogil=True, inline="always")
def _write_digits(out, at, value, width):  # type: ignore[no-untyped-def]
    """``value`` (unsigned) zero-padded to ``width`` digits."""
    for position in range(width - 1, -1, -1):
        out[at + position] = np.uint8(48) + np.uint8(value % _TEN)
        value //= _TEN
    return at + width


@njit(cache=True, nogil=True, inline="always")
def _second_text(prefix, seconds):  # type: ignore[no-untyped-def]
    """``prefix[:20]`` = ``YYYY-MM-DDTHH:MM:SS.`` of epoch ``seconds`` (civil date from days:
    H. Hinnant's algorithm, in unsigned arithmetic: the caller keeps to 1970-9999)."""
    days = seconds // np.uint64(86400)
    of_day = seconds - days * np.uint64(86400)
    z = days + np.uint64(719468)
    era = z // np.uint64(146097)
    doe = z - era * np.uint64(146097)
    yoe = (doe - doe // np.uint64(1460) + doe // np.uint64(36524) - doe // np.uint64(146096)) // np.uint64(
        365
    )
    year = yoe + era * np.uint64(400)
    doy = doe - (np.uint64(365) * yoe + yoe // np.uint64(4) - yoe // np.uint64(100))
    mp = (np.uint64(5) * doy + np.uint64(2)) // np.uint64(153)
    day = doy - (np.uint64(153) * mp + np.uint64(2)) // np.uint64(5) + np.uint64(1)
    month = mp + np.uint64(3) if mp < np.uint64(10) else mp - np.uint64(9)
    if month <= np.uint64(2):
        year += _ONE
    _write_digits(prefix, 0, year, 4)
    prefix[4] = 45  # "-"
    _write_digits(prefix, 5, month, 2)
    prefix[7] = 45
    _write_digits(prefix, 8, day, 2)
    prefix[10] = 84  # "T"
    _write_digits(prefix, 11, of_day // np.uint64(3600), 2)
    prefix[13] = 58  # ":"
    _write_digits(prefix, 14, (of_day // np.uint64(60)) % np.uint64(60), 2)
    prefix[16] = 58
    _write_digits(prefix, 17, of_day % np.uint64(60), 2)
    prefix[19] = 46  # "."


#: Slots of the per-second text cache (direct-mapped by second): 80 KB, the seconds of 68 minutes.
_SECOND_SLOTS = 4096


@njit(cache=True, nogil=True, inline="always")
def _write_rfc3339(out, at, ns, prefixes, cached):  # type: ignore[no-untyped-def]
    """``2024-05-01T12:00:00.000000001Z``; ``prefixes[s]`` caches the text of second ``cached[s]``
    for slot ``s = second % _SECOND_SLOTS``: a snapshot's flows share a few thousand seconds, but
    not in row order (one cached second missed on nearly every row: 20 % of the kernel's time)."""
    stamp = np.uint64(ns)
    seconds = stamp // _BILLION
    slot = np.int64(seconds & np.uint64(_SECOND_SLOTS - 1))
    prefix = prefixes[slot]
    if seconds != cached[slot]:
        _second_text(prefix, seconds)
        cached[slot] = seconds
    for index in range(20):
        out[at + index] = prefix[index]
    at = _write_digits(out, at + 20, stamp - seconds * _BILLION, 9)
    out[at] = 90  # "Z"
    return at + 1


@njit(cache=True, nogil=True, inline="always")
def _copy(out, at, pieces, offsets, which):  # type: ignore[no-untyped-def]
    for index in range(offsets[which], offsets[which + 1]):
        out[at] = pieces[index]
        at += 1
    return at


@njit(cache=True, nogil=True)
def jsonl_kernel(  # type: ignore[no-untyped-def]
    out,
    start,
    stop,
    pieces,
    piece_offsets,
    kinds,
    src_ip,
    dst_ip,
    src_port,
    dst_port,
    protocol,
    packets,
    nbytes,
    first,
    last,
    has_raw,
    raw_packets,
    raw_bytes,
):
    """Rows ``start..stop`` as JSON Lines records from ``out[0]``; returns the bytes written.

    ``pieces`` holds the constant text, cut by ``piece_offsets``: piece 0 opens a record (task
    and ``"fields": {``), piece ``1 + k`` precedes key field ``k`` (its name, and the opening
    quote for an address), then the four pieces before packets, bytes, first and last seen and
    the one closing the record. ``kinds[k]``: 0 source, 1 destination address, 2 source port,
    3 destination port, 4 protocol. With ``has_raw`` (a task fed flow records) the record ends
    with the raw counts instead: the pieces before raw packets and raw bytes, then the closing one.
    """
    hextets = np.zeros(8, np.int64)
    prefixes = np.zeros((_SECOND_SLOTS, 20), np.uint8)
    cached = np.full(_SECOND_SLOTS, np.uint64(0xFFFFFFFFFFFFFFFF))
    fields = kinds.shape[0]
    tail = 1 + fields
    at = 0
    for row in range(start, stop):
        at = _copy(out, at, pieces, piece_offsets, 0)
        for k in range(fields):
            at = _copy(out, at, pieces, piece_offsets, 1 + k)
            kind = kinds[k]
            if kind == 0:
                at = write_address(out, at, src_ip, row, hextets, HEX_DIGITS)
                out[at] = 34  # '"'
                at += 1
            elif kind == 1:
                at = write_address(out, at, dst_ip, row, hextets, HEX_DIGITS)
                out[at] = 34
                at += 1
            elif kind == 2:
                at = _write_unsigned(out, at, np.int64(src_port[row]))
            elif kind == 3:
                at = _write_unsigned(out, at, np.int64(dst_port[row]))
            else:
                at = _write_unsigned(out, at, np.int64(protocol[row]))
        at = _copy(out, at, pieces, piece_offsets, tail)
        at = _write_unsigned(out, at, packets[row])
        at = _copy(out, at, pieces, piece_offsets, tail + 1)
        at = _write_unsigned(out, at, nbytes[row])
        at = _copy(out, at, pieces, piece_offsets, tail + 2)
        at = _write_rfc3339(out, at, first[row], prefixes, cached)
        at = _copy(out, at, pieces, piece_offsets, tail + 3)
        at = _write_rfc3339(out, at, last[row], prefixes, cached)
        at = _copy(out, at, pieces, piece_offsets, tail + 4)
        if has_raw:
            at = _write_unsigned(out, at, raw_packets[row])
            at = _copy(out, at, pieces, piece_offsets, tail + 5)
            at = _write_unsigned(out, at, raw_bytes[row])
            at = _copy(out, at, pieces, piece_offsets, tail + 6)
    return at


def times_in_range(*columns: npt.NDArray[np.int64]) -> bool:
    """True when every stamp is within 1970-9999, the years :func:`jsonl_kernel` writes."""
    for column in columns:
        if column.shape[0] and (int(column.min()) < 0 or int(column.max()) // _NS > _LAST_SECOND):
            return False
    return True


@njit(cache=True, nogil=True)
def hitter_lines_kernel(  # type: ignore[no-untyped-def]
    out, order, flow_bytes, starts, ends, values
):
    """``"<flow> <value>\\n"`` of rows ``order`` (in that order) from ``out[0]``; returns the bytes
    written. ``flow_bytes`` holds every flow's text, row ``i``'s at ``starts[i]:ends[i]``."""
    at = 0
    for position in range(order.shape[0]):
        row = order[position]
        for index in range(starts[row], ends[row]):
            out[at] = flow_bytes[index]
            at += 1
        out[at] = 32  # " "
        at = _write_unsigned(out, at + 1, values[row])
        out[at] = 10  # "\n"
        at += 1
    return at


@njit(cache=True, nogil=True)
def native_strings_kernel(out, data, offsets):  # type: ignore[no-untyped-def]
    """ClickHouse Native String column of Arrow string buffers whose values are all shorter than
    128 bytes: per value one length byte (its varint), then the bytes. ``data`` starts at
    ``offsets[0]``. Returns the bytes written (the numpy scatter it replaces: ~4x slower)."""
    at = 0
    base = offsets[0]
    for row in range(offsets.shape[0] - 1):
        start = offsets[row] - base
        stop = offsets[row + 1] - base
        out[at] = stop - start
        at += 1
        for index in range(start, stop):
            out[at] = data[index]
            at += 1
    return at
