"""Flow-record columns to ``FlowRecordBatch`` bytes and back (proto/v1/flow.proto), as numba kernels.

The packet codec (:mod:`netspectra.wire.codec`) is untouched: flow records travel on a subject
of their own. The encoder writes what the official ``protobuf`` package writes for the same
message (proto3: zero scalars and empty bytes omitted; ``five_tuple`` always present; IPv4
addresses as 4 bytes). The decoder reads fields in any order, skips unknown fields of every
wire type (groups included), merges a repeated ``five_tuple`` and keeps the last scalar, as the
official parser does; a record it cannot use (no addresses, an address neither 4 nor 16 bytes, a
port above 65535, a protocol above 255) is counted by reason and skipped, a malformed message
stops the batch there (counted).
"""

from __future__ import annotations

import numba as nb
import numpy as np
import numpy.typing as npt

from netspectra.model.flows import FlowColumns
from netspectra.model.packets import IPV4_MAPPED_PREFIX
from netspectra.wire.codec import tag_is_valid

REJECT_REASONS: tuple[str, ...] = (
    "truncated",  # a varint, length or fixed field runs past its message
    "varint_too_long",
    "bad_tag",  # field number 0, tag above 32 bits, wire type 6/7, an unmatched end-group
    "bad_address",  # neither 4 nor 16 bytes
    "missing_address",
    "bad_value",  # a port above 65535, a protocol above 255
)
# status codes: 0 = ok, else 1 + the reason's index (counters[0] is unused)
_TRUNCATED, _VARINT, _BAD_TAG, _BAD_ADDRESS, _MISSING, _BAD_VALUE = range(1, 7)
_MAPPED = np.frombuffer(IPV4_MAPPED_PREFIX, np.uint8).copy()
_SEVEN = np.uint64(7)
_LOW7 = np.uint64(0x7F)
_HIGH = np.uint64(0x80)


@nb.njit(cache=True, nogil=True, inline="always")
def _vsize(value: np.uint64) -> int:
    size = 1
    while value >= _HIGH:
        value >>= _SEVEN
        size += 1
    return size


@nb.njit(cache=True, nogil=True, inline="always")
def _put(out, pos, value):  # type: ignore[no-untyped-def]
    v = np.uint64(value)
    while v >= _HIGH:
        out[pos] = (v & _LOW7) | _HIGH
        v >>= _SEVEN
        pos += 1
    out[pos] = v
    return pos + 1


@nb.njit(cache=True, nogil=True, inline="always")
def _is_mapped(address, i):  # type: ignore[no-untyped-def]
    for k in range(12):  # noqa: SIM110 (numba: no generator expressions)
        if address[i, k] != _MAPPED[k]:
            return False
    return True


@nb.njit(cache=True, nogil=True)
def _record_sizes(
    src, dst, sport, dport, proto, ver, packets, nbytes, first, last, exporter, rate, rawp, rawb, sizes
):  # type: ignore[no-untyped-def]
    """``sizes[i]`` = bytes of record i's FlowRecord body; ``sizes[n + i]`` = its FiveTuple's."""
    n = src.shape[0]
    total = 0
    for i in range(n):
        alen = 4 if ver[i] == 4 else 16
        ft = 2 * (2 + alen)
        if sport[i] != 0:
            ft += 1 + _vsize(np.uint64(sport[i]))
        if dport[i] != 0:
            ft += 1 + _vsize(np.uint64(dport[i]))
        if proto[i] != 0:
            ft += 1 + _vsize(np.uint64(proto[i]))
        body = 1 + _vsize(np.uint64(ft)) + ft
        for value in (packets[i], nbytes[i], np.uint64(first[i]), np.uint64(last[i])):
            if value != 0:
                body += 1 + _vsize(value)
        elen = 4 if _is_mapped(exporter, i) else 16
        body += 2 + elen
        if rate[i] != 0:
            body += 1 + _vsize(np.uint64(rate[i]))
        for value in (rawp[i], rawb[i]):
            if value != 0:
                body += 1 + _vsize(value)
        sizes[i] = body
        sizes[n + i] = ft
        total += 1 + _vsize(np.uint64(body)) + body
    return total


@nb.njit(cache=True, nogil=True)
def _encode(
    src, dst, sport, dport, proto, ver, packets, nbytes, first, last, exporter, rate, rawp, rawb, sizes, out
):  # type: ignore[no-untyped-def]
    n = src.shape[0]
    pos = 0
    for i in range(n):
        out[pos] = 0x0A
        pos = _put(out, pos + 1, sizes[i])
        out[pos] = 0x0A
        pos = _put(out, pos + 1, sizes[n + i])
        alen = 4 if ver[i] == 4 else 16
        off = 16 - alen
        out[pos] = 0x0A
        out[pos + 1] = alen
        pos += 2
        for k in range(alen):
            out[pos + k] = src[i, off + k]
        pos += alen
        out[pos] = 0x12
        out[pos + 1] = alen
        pos += 2
        for k in range(alen):
            out[pos + k] = dst[i, off + k]
        pos += alen
        if sport[i] != 0:
            out[pos] = 0x18
            pos = _put(out, pos + 1, sport[i])
        if dport[i] != 0:
            out[pos] = 0x20
            pos = _put(out, pos + 1, dport[i])
        if proto[i] != 0:
            out[pos] = 0x28
            pos = _put(out, pos + 1, proto[i])
        if packets[i] != 0:
            out[pos] = 0x10
            pos = _put(out, pos + 1, packets[i])
        if nbytes[i] != 0:
            out[pos] = 0x18
            pos = _put(out, pos + 1, nbytes[i])
        if first[i] != 0:
            out[pos] = 0x20
            pos = _put(out, pos + 1, np.uint64(first[i]))
        if last[i] != 0:
            out[pos] = 0x28
            pos = _put(out, pos + 1, np.uint64(last[i]))
        elen = 4 if _is_mapped(exporter, i) else 16
        out[pos] = 0x32
        out[pos + 1] = elen
        pos += 2
        for k in range(elen):
            out[pos + k] = exporter[i, 16 - elen + k]
        pos += elen
        if rate[i] != 0:
            out[pos] = 0x38
            pos = _put(out, pos + 1, rate[i])
        if rawp[i] != 0:
            out[pos] = 0x40
            pos = _put(out, pos + 1, rawp[i])
        if rawb[i] != 0:
            out[pos] = 0x48
            pos = _put(out, pos + 1, rawb[i])
    return pos


def encode_flow_batch(flows: FlowColumns) -> bytes:
    """One ``FlowRecordBatch`` message holding every record of ``flows``."""
    n = len(flows)
    sizes = np.empty(2 * n, np.int64)
    args = (
        flows.src_ip, flows.dst_ip, flows.src_port, flows.dst_port, flows.protocol, flows.ip_version,
        flows.packets, flows.bytes, flows.first_ns, flows.last_ns, flows.exporter, flows.sampling_rate,
        flows.raw_packets, flows.raw_bytes,
    )  # fmt: skip
    total = _record_sizes(*args, sizes)
    out = np.empty(total, np.uint8)
    _encode(*args, sizes, out)
    return out.tobytes()


@nb.njit(cache=True, nogil=True, inline="always")
def _varint(buf, pos, end):  # type: ignore[no-untyped-def]
    """(value, new pos, status): status 0 ok, else a reason."""
    value = np.uint64(0)
    shift = np.uint64(0)
    for _k in range(10):
        if pos >= end:
            return value, pos, _TRUNCATED
        byte = np.uint64(buf[pos])
        pos += 1
        value |= (byte & _LOW7) << shift
        if byte < _HIGH:
            return value, pos, 0
        shift += _SEVEN
    return value, pos, _VARINT


@nb.njit(cache=True, nogil=True, inline="always")
def _skip_value(buf, pos, end, wire):  # type: ignore[no-untyped-def]
    """Skip one value of wire type 0, 1, 2 or 5; (new pos, status)."""
    if wire == 0:
        _v, pos, st = _varint(buf, pos, end)
        return pos, st
    if wire == 1:
        return (pos + 8, 0) if pos + 8 <= end else (pos, _TRUNCATED)
    if wire == 5:
        return (pos + 4, 0) if pos + 4 <= end else (pos, _TRUNCATED)
    length, pos, st = _varint(buf, pos, end)
    if st != 0:
        return pos, st
    if length > np.uint64(end - pos):
        return pos, _TRUNCATED
    return pos + np.int64(length), 0


@nb.njit(cache=True, nogil=True)
def _skip(buf, pos, end, wire, field):  # type: ignore[no-untyped-def]
    """Skip an unknown field's value (a group up to its matching end-group); (new pos, status)."""
    if wire != 3:
        return _skip_value(buf, pos, end, wire)
    fields = np.empty(64, np.int64)
    depth = 1
    fields[0] = field
    while pos < end:
        tag, pos, st = _varint(buf, pos, end)
        if st != 0:
            return pos, st
        if not tag_is_valid(tag):
            return pos, _BAD_TAG
        w = np.int64(tag & np.uint64(7))
        f = np.int64(tag >> np.uint64(3))
        if w == 4:
            if f != fields[depth - 1]:
                return pos, _BAD_TAG
            depth -= 1
            if depth == 0:
                return pos, 0
        elif w == 3:
            if depth == 64:
                return pos, _BAD_TAG
            fields[depth] = f
            depth += 1
        else:
            pos, st = _skip_value(buf, pos, end, w)
            if st != 0:
                return pos, st
    return pos, _TRUNCATED


@nb.njit(cache=True, nogil=True)
def _decode(  # type: ignore[no-untyped-def]
    buf,
    src,
    dst,
    sport,
    dport,
    proto,
    ver,
    packets,
    nbytes,
    first,
    last,
    exporter,
    rate,
    rawp,
    rawb,
    counters,
):
    end = buf.shape[0]
    pos = 0
    n = 0
    while pos < end:
        tag, pos, st = _varint(buf, pos, end)
        if st != 0:
            counters[st] += 1
            return n
        wire = np.int64(tag & np.uint64(7))
        field = np.int64(tag >> np.uint64(3))
        if not tag_is_valid(tag) or wire == 4:
            counters[_BAD_TAG] += 1
            return n
        if field != 1 or wire != 2:
            pos, st = _skip(buf, pos, end, wire, field)
            if st != 0:
                counters[st] += 1
                return n
            continue
        length, pos, st = _varint(buf, pos, end)
        if st != 0 or length > np.uint64(end - pos):
            counters[_TRUNCATED if st == 0 else st] += 1
            return n
        rec_end = pos + np.int64(length)
        # record fields
        s_at = -1
        s_len = 0
        d_at = -1
        d_len = 0
        e_at = -1
        e_len = 0
        sp = np.uint64(0)
        dp = np.uint64(0)
        pr = np.uint64(0)
        values = np.zeros(10, np.uint64)
        bad = 0
        while pos < rec_end:
            t, pos, st = _varint(buf, pos, rec_end)
            if st != 0:
                counters[st] += 1
                return n
            w = np.int64(t & np.uint64(7))
            f = np.int64(t >> np.uint64(3))
            if not tag_is_valid(t) or w == 4:
                counters[_BAD_TAG] += 1
                return n
            if f == 1 and w == 2:
                flen, pos, st = _varint(buf, pos, rec_end)
                if st != 0 or flen > np.uint64(rec_end - pos):
                    counters[_TRUNCATED if st == 0 else st] += 1
                    return n
                ft_end = pos + np.int64(flen)
                while pos < ft_end:  # FiveTuple (repeated occurrences merge)
                    t2, pos, st = _varint(buf, pos, ft_end)
                    if st != 0:
                        counters[st] += 1
                        return n
                    w2 = np.int64(t2 & np.uint64(7))
                    f2 = np.int64(t2 >> np.uint64(3))
                    if not tag_is_valid(t2) or w2 == 4:
                        counters[_BAD_TAG] += 1
                        return n
                    if (f2 == 1 or f2 == 2) and w2 == 2:
                        alen, pos, st = _varint(buf, pos, ft_end)
                        if st != 0 or alen > np.uint64(ft_end - pos):
                            counters[_TRUNCATED if st == 0 else st] += 1
                            return n
                        if f2 == 1:
                            s_at, s_len = pos, np.int64(alen)
                        else:
                            d_at, d_len = pos, np.int64(alen)
                        pos += np.int64(alen)
                    elif 3 <= f2 <= 5 and w2 == 0:
                        v, pos, st = _varint(buf, pos, ft_end)
                        if st != 0:
                            counters[st] += 1
                            return n
                        if f2 == 3:
                            sp = v & np.uint64(0xFFFFFFFF)
                        elif f2 == 4:
                            dp = v & np.uint64(0xFFFFFFFF)
                        else:
                            pr = v & np.uint64(0xFFFFFFFF)
                    else:
                        pos, st = _skip(buf, pos, ft_end, w2, f2)
                        if st != 0:
                            counters[st] += 1
                            return n
            elif f == 6 and w == 2:
                elen, pos, st = _varint(buf, pos, rec_end)
                if st != 0 or elen > np.uint64(rec_end - pos):
                    counters[_TRUNCATED if st == 0 else st] += 1
                    return n
                e_at, e_len = pos, np.int64(elen)
                pos += np.int64(elen)
            elif 2 <= f <= 9 and f != 6 and w == 0:
                v, pos, st = _varint(buf, pos, rec_end)
                if st != 0:
                    counters[st] += 1
                    return n
                values[f] = v
            else:
                pos, st = _skip(buf, pos, rec_end, w, f)
                if st != 0:
                    counters[st] += 1
                    return n
        pos = rec_end
        if s_at < 0 or d_at < 0 or s_len == 0 or d_len == 0:
            bad = _MISSING
        elif (s_len != 4 and s_len != 16) or s_len != d_len or (e_len != 0 and e_len != 4 and e_len != 16):
            bad = _BAD_ADDRESS
        elif sp > 65535 or dp > 65535 or pr > 255:
            bad = _BAD_VALUE
        if bad:
            counters[bad] += 1
            continue
        for k in range(16):
            if s_len == 4:
                src[n, k] = _MAPPED[k] if k < 12 else buf[s_at + k - 12]
                dst[n, k] = _MAPPED[k] if k < 12 else buf[d_at + k - 12]
            else:
                src[n, k] = buf[s_at + k]
                dst[n, k] = buf[d_at + k]
            if e_len == 4:
                exporter[n, k] = _MAPPED[k] if k < 12 else buf[e_at + k - 12]
            elif e_len == 16:
                exporter[n, k] = buf[e_at + k]
            else:
                exporter[n, k] = 0
        ver[n] = 4 if s_len == 4 else 6
        sport[n] = sp
        dport[n] = dp
        proto[n] = pr
        packets[n] = values[2]
        nbytes[n] = values[3]
        first[n] = np.int64(values[4])
        last[n] = np.int64(values[5])
        rate[n] = values[7] & np.uint64(0xFFFFFFFF)  # uint32: the official parser keeps the low 32 bits
        rawp[n] = values[8]
        rawb[n] = values[9]
        n += 1
    return n


def decode_flow_batch(data: bytes) -> tuple[FlowColumns, npt.NDArray[np.int64]]:
    """The records of one ``FlowRecordBatch`` message and the counts of what was refused (REJECT_REASONS)."""
    buf = np.frombuffer(data, np.uint8)
    capacity = len(data) // 12 + 1  # a usable record takes at least 12 bytes (two 4-byte addresses)
    out = FlowColumns.empty(capacity)
    counters = np.zeros(len(REJECT_REASONS) + 1, np.int64)
    n = _decode(
        buf, out.src_ip, out.dst_ip, out.src_port, out.dst_port, out.protocol, out.ip_version, out.packets,
        out.bytes, out.first_ns, out.last_ns, out.exporter, out.sampling_rate, out.raw_packets, out.raw_bytes,
        counters,
    )  # fmt: skip
    return out.head(n), counters[1:]
