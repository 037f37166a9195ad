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

from netspectra.jit import njit, numba_only

load_word = numba_only("netspectra.storage.text_intrinsics", "load_word")
store_word = numba_only("netspectra.storage.text_intrinsics", "store_word")

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


#: Each byte value's decimal text and a dot, as the word a store writes (``"192."``: 0x2e323931).
_OCTET_WORDS = np.array([int.from_bytes(f"{n}.".encode(), "little") for n in range(256)], np.uint64)
#: Its length, dot included.
_OCTET_LENGTHS = np.array([len(f"{n}.") for n in range(256)], np.int64)
_MAPPED = np.uint64(0xFFFF0000)  # bytes 8-11 of an IPv4-mapped address, read little-endian
_LOW_HALF = np.uint64(0xFFFFFFFF)
_BYTE = np.uint64(0xFF)


@njit(cache=True, nogil=True)
def address_text_kernel(  # type: ignore[no-untyped-def]
    raw, hexdigits, out, offsets
):
    """Arrow string buffers (``out`` bytes, ``offsets``) of every 16-byte row (``raw``: C-contiguous).

    An IPv4-mapped row, most of a capture, is written in this loop as four words of
    ``_OCTET_WORDS``, as :func:`jsonl_kernel` writes it (through :func:`write_address`, inlined
    with its reference counting, it took ~65 ns a row); the others, and the rows within
    ``WORD_ROOM`` of the end of ``out``, take :func:`write_address`.
    """
    at = 0
    offsets[0] = 0
    hextets = np.zeros(8, np.int64)
    size = out.shape[0]
    for row in range(raw.shape[0]):
        octets = load_word(raw, row * 16 + 8)
        if load_word(raw, row * 16) == _ZERO and (octets & _LOW_HALF) == _MAPPED and at + WORD_ROOM <= size:
            for shift in range(32, 64, 8):
                octet = np.int64((octets >> np.uint64(shift)) & _BYTE)
                store_word(out, at, _OCTET_WORDS[octet])
                at += _OCTET_LENGTHS[octet]
            at -= 1  # the last octet's dot is not the address's
        else:
            at = write_address(out, at, raw, row, hextets, hexdigits)
        offsets[row + 1] = at


#: ``"00" "01" .. "99"``: two digits per lookup halve the divisions of a number's text.
_DIGIT_PAIRS = np.frombuffer("".join(f"{n:02d}" for n in range(100)).encode(), np.uint8)
_HUNDRED = np.uint64(100)
#: ``10**k`` for k = 0..19: the digits of a uint64 are counted by comparisons, not divisions.
_POWERS = np.array([10**k for k in range(20)], np.uint64)


@njit(cache=True, nogil=True, inline="always")
def _write_pairs(out, end, value, digits):  # type: ignore[no-untyped-def]
    """The last ``digits`` digits of ``value`` (uint64) ending just before ``out[end]``,
    zero-padded, two per division."""
    position = end
    while digits >= 2:
        pair = np.int64(value % _HUNDRED) * 2
        value //= _HUNDRED
        out[position - 2] = _DIGIT_PAIRS[pair]
        out[position - 1] = _DIGIT_PAIRS[pair + 1]
        position -= 2
        digits -= 2
    if digits:
        out[position - 1] = np.uint8(48) + np.uint8(value % _TEN)


@njit(cache=True, nogil=True, inline="always")
def _write_digits(out, at, value, width):  # type: ignore[no-untyped-def]
    """``value`` (unsigned) zero-padded to ``width`` digits."""
    _write_pairs(out, at + width, np.uint64(value), width)
    return at + width


@njit(cache=True, nogil=True, inline="always")
def _second_text(prefix, base, seconds):  # type: ignore[no-untyped-def]
    """``prefix[base:base + 20]`` = ``YYYY-MM-DDTHH:MM:SS.`` of epoch ``seconds`` (civil date from days:
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
    _write_digits(prefix, base + 0, year, 4)
    prefix[base + 4] = 45  # "-"
    _write_digits(prefix, base + 5, month, 2)
    prefix[base + 7] = 45
    _write_digits(prefix, base + 8, day, 2)
    prefix[base + 10] = 84  # "T"
    _write_digits(prefix, base + 11, of_day // np.uint64(3600), 2)
    prefix[base + 13] = 58  # ":"
    _write_digits(prefix, base + 14, (of_day // np.uint64(60)) % np.uint64(60), 2)
    prefix[base + 16] = 58
    _write_digits(prefix, base + 17, of_day % np.uint64(60), 2)
    prefix[base + 19] = 46  # "."


#: Slots of the per-second text cache (direct-mapped by second): 96 KB, the seconds of 68 minutes.
_SECOND_SLOTS = 4096
#: A word copy may write up to 7 bytes past its text: it is taken while this many bytes are left.
WORD_ROOM = 64
#: Bytes of a slot: its 20 of text, padded to whole words.
_PREFIX_ROOM = 24


#: What follows each piece of a JSON Lines record, after the key fields' kinds (0-4).
_PACKETS, _BYTES, _FIRST, _LAST, _RAW_PACKETS, _RAW_BYTES = 5, 6, 7, 8, 9, 10


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

    Each piece and value is written by the one block of this loop for its sort, not by inlined
    helpers: numba counted references to the arrays handed to every inlined call (~100
    ``NRT_incref``/``NRT_decref`` calls in the loop), half the kernel's time. Constant text and
    cached dates are copied a word at a time, IPv4 octets stored as words, integers two digits
    per division; the callers leave ``WORD_ROOM`` bytes past the widest records in ``out`` and
    8 past the last piece (byte-wise copies take over where the room runs out).
    """
    hextets = np.zeros(8, np.int64)
    prefixes = np.zeros(_SECOND_SLOTS * _PREFIX_ROOM, np.uint8)
    cached = np.full(_SECOND_SLOTS, np.uint64(0xFFFFFFFFFFFFFFFF))
    fields = kinds.shape[0]
    values = np.empty(fields + 6, np.int64)
    values[:fields] = kinds
    values[fields : fields + 4] = (_PACKETS, _BYTES, _FIRST, _LAST)
    values[fields + 4 : fields + 6] = (_RAW_PACKETS, _RAW_BYTES)
    count = fields + 4 + 2 * np.int64(has_raw)  # the values of a record; count + 2 pieces
    size = out.shape[0]
    padded = pieces.shape[0] >= piece_offsets[count + 2] + 8
    at = 0
    for row in range(start, stop):
        for segment in range(count + 2):  # piece 0 opens, piece j precedes value j - 1
            piece = piece_offsets[segment]
            length = piece_offsets[segment + 1] - piece
            if padded and at + length + WORD_ROOM <= size:
                for word in range(0, length, 8):
                    store_word(out, at + word, load_word(pieces, piece + word))
            else:
                for index in range(length):
                    out[at + index] = pieces[piece + index]
            at += length
            if segment == 0 or segment == count + 1:
                continue
            kind = values[segment - 1]
            if kind <= 1:  # an address, and its closing quote
                raw_words = load_word(src_ip, row * 16) if kind == 0 else load_word(dst_ip, row * 16)
                octets = load_word(src_ip, row * 16 + 8) if kind == 0 else load_word(dst_ip, row * 16 + 8)
                if raw_words == _ZERO and (octets & _LOW_HALF) == _MAPPED and at + WORD_ROOM <= size:
                    for shift in range(32, 64, 8):
                        octet = np.int64((octets >> np.uint64(shift)) & _BYTE)
                        store_word(out, at, _OCTET_WORDS[octet])
                        at += _OCTET_LENGTHS[octet]
                    at -= 1  # the last octet's dot is not the address's
                elif kind == 0:
                    at = write_address(out, at, src_ip, row, hextets, HEX_DIGITS)
                else:
                    at = write_address(out, at, dst_ip, row, hextets, HEX_DIGITS)
                out[at] = 34  # '"'
                at += 1
            elif kind in (_FIRST, _LAST):  # RFC 3339, the second's text from its slot
                stamp = np.uint64(first[row]) if kind == _FIRST else np.uint64(last[row])
                seconds = stamp // _BILLION
                slot = np.int64(seconds & np.uint64(_SECOND_SLOTS - 1))
                base = slot * _PREFIX_ROOM
                if seconds != cached[slot]:
                    _second_text(prefixes, base, seconds)
                    cached[slot] = seconds
                if at + WORD_ROOM <= size:
                    for word in range(0, _PREFIX_ROOM, 8):
                        store_word(out, at + word, load_word(prefixes, base + word))
                else:
                    for index in range(20):
                        out[at + index] = prefixes[base + index]
                fraction = stamp - seconds * _BILLION
                out[at + 20] = np.uint8(48) + np.uint8(fraction // np.uint64(100_000_000))
                for position in range(28, 20, -2):
                    pair = np.int64(fraction % _HUNDRED) * 2
                    fraction //= _HUNDRED
                    out[at + position - 1] = _DIGIT_PAIRS[pair]
                    out[at + position] = _DIGIT_PAIRS[pair + 1]
                out[at + 29] = 90  # "Z"
                at += 30
            else:  # an unsigned integer
                if kind == 2:
                    value = np.uint64(src_port[row])
                elif kind == 3:
                    value = np.uint64(dst_port[row])
                elif kind == 4:
                    value = np.uint64(protocol[row])
                elif kind == _PACKETS:
                    value = np.uint64(packets[row])
                elif kind == _BYTES:
                    value = np.uint64(nbytes[row])
                elif kind == _RAW_PACKETS:
                    value = np.uint64(raw_packets[row])
                else:
                    value = np.uint64(raw_bytes[row])
                digits = 1
                while digits < 20 and value >= _POWERS[digits]:
                    digits += 1
                position = at + digits
                while position - at >= 2:
                    pair = np.int64(value % _HUNDRED) * 2
                    value //= _HUNDRED
                    out[position - 2] = _DIGIT_PAIRS[pair]
                    out[position - 1] = _DIGIT_PAIRS[pair + 1]
                    position -= 2
                if position > at:
                    out[at] = np.uint8(48) + np.uint8(value)
                at += digits
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
    written. ``flow_bytes`` holds every flow's text, row ``i``'s at ``starts[i]:ends[i]``.

    Written in line as :func:`jsonl_kernel` is (no inlined helpers: their reference counts
    were most of the time); a flow is copied a word at a time while ``out`` has ``WORD_ROOM``
    bytes left and ``flow_bytes`` 8 past it."""
    size = out.shape[0]
    last = flow_bytes.shape[0]
    at = 0
    for position in range(order.shape[0]):
        row = order[position]
        start = starts[row]
        length = ends[row] - start
        if at + length + WORD_ROOM <= size and start + length + 8 <= last:
            for word in range(0, length, 8):
                store_word(out, at + word, load_word(flow_bytes, start + word))
        else:
            for index in range(length):
                out[at + index] = flow_bytes[start + index]
        at += length
        out[at] = 32  # " "
        at += 1
        value = np.uint64(values[row])
        digits = 1
        while digits < 20 and value >= _POWERS[digits]:
            digits += 1
        end = at + digits
        while end - at >= 2:
            pair = np.int64(value % _HUNDRED) * 2
            value //= _HUNDRED
            out[end - 2] = _DIGIT_PAIRS[pair]
            out[end - 1] = _DIGIT_PAIRS[pair + 1]
            end -= 2
        if end > at:
            out[at] = np.uint8(48) + np.uint8(value)
        at += digits
        out[at] = 10  # "\n"
        at += 1
    return at


@njit(cache=True, nogil=True)
def order_ties_by_flow(  # type: ignore[no-untyped-def]
    order, ordered_values, flow_bytes, starts, ends, scratch
):
    """Within each run of equal ``ordered_values`` (sorted; the value of row ``order[i]`` is
    ``ordered_values[i]``), put the rows in order of their flow's bytes, in place: UTF-8 text
    order as its code points do, so this is Python's string order. Rows of equal value and
    equal flow make equal lines: their order among themselves does not show.

    A stable bottom-up merge sort per run (``scratch``: as long as ``order``), the comparison
    written in line (see :func:`jsonl_kernel`). Python's sort of a million flow strings for
    their ranks took 0.2-0.6 s (how presorted they came) with the GIL held.
    """
    rows = order.shape[0]
    run = 0
    while run < rows:
        stop = run + 1
        while stop < rows and ordered_values[stop] == ordered_values[run]:
            stop += 1
        width = 1
        source, target = order, scratch
        while width < stop - run:
            for left in range(run, stop, 2 * width):
                middle = min(left + width, stop)
                right = min(left + 2 * width, stop)
                i, j, k = left, middle, left
                while i < middle and j < right:
                    a, b = source[i], source[j]
                    start_a, start_b = starts[a], starts[b]
                    length_a, length_b = ends[a] - start_a, ends[b] - start_b
                    shorter = min(length_a, length_b)
                    same = 0
                    while same < shorter and flow_bytes[start_a + same] == flow_bytes[start_b + same]:
                        same += 1
                    if same < shorter:
                        b_first = flow_bytes[start_b + same] < flow_bytes[start_a + same]
                    else:
                        b_first = length_b < length_a
                    if b_first:
                        target[k] = b
                        j += 1
                    else:
                        target[k] = a
                        i += 1
                    k += 1
                while i < middle:
                    target[k] = source[i]
                    i += 1
                    k += 1
                while j < right:
                    target[k] = source[j]
                    j += 1
                    k += 1
            source, target = target, source
            width *= 2
        if source is not order:
            for index in range(run, stop):
                order[index] = source[index]
        run = stop


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
