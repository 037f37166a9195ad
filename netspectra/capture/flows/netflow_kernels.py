"""Numba kernels of the NetFlow/IPFIX decoder: the per-record work, over every data set of a batch.

Python (:mod:`netspectra.capture.flows.netflow`) walks each datagram's header and sets — a few
per datagram — keeps the templates and hands the data sets here as jobs: ``(start, end, plan)``
into one buffer. A plan is a template's field list (ids and lengths; 65535 = IPFIX variable
length; enterprise fields have id 0xFFFF, skipped by length). One general kernel walks every
record field by field, so a template of any shape costs no compilation and no Python per record.
NetFlow v5's fixed 48-byte records have a kernel of their own.
"""

from __future__ import annotations

import numba as nb
import numpy as np

from netspectra.model.fields import IPV4_MAPPED_PREFIX

_NS = np.int64(1_000_000_000)
_MS = np.int64(1_000_000)
_NTP_TO_UNIX = np.int64(2_208_988_800)
_VARIABLE = 65535
_MAPPED = np.frombuffer(IPV4_MAPPED_PREFIX, np.uint8).copy()

# job flags
FLAG_V9 = 1  # v9: 21/22 are milliseconds of sysUpTime relative to the header's

#: Why a record (or the rest of a set) could not be decoded, counted by the Python side.
KERNEL_REASONS = ("truncated_record",)


@nb.njit(cache=True, nogil=True, inline="always")
def _be(buf, at, length):  # type: ignore[no-untyped-def]
    """Big-endian unsigned of 1..8 bytes (longer fields: their last 8 bytes)."""
    value = np.uint64(0)
    start = at if length <= 8 else at + length - 8
    for k in range(start, at + length):
        value = (value << np.uint64(8)) | np.uint64(buf[k])
    return value


@nb.njit(cache=True, nogil=True)
def decode_template_sets(  # type: ignore[no-untyped-def]
    buf,
    job_start,
    job_end,
    job_plan,
    job_export_s,
    job_uptime_ms,
    job_flags,
    plan_nfields,
    plan_ids,
    plan_lens,
    plan_min_len,
    first_ns,
    last_ns,
    src_ip,
    dst_ip,
    src_port,
    dst_port,
    protocol,
    ip_version,
    raw_packets,
    raw_bytes,
    record_rate,
    sampler_id,
    row_job,
    job_records,
):
    """Decode every record of every job into rows; returns (rows written, truncated sets).

    ``record_rate`` is the sampling rate a record carries itself (0: none), ``sampler_id`` the
    sampler it names (-1: none); the caller resolves the rate in effect from those.
    Every output column must hold at least the number of records that fit the jobs' bytes.
    """
    n = 0
    truncated = 0
    for j in range(job_start.shape[0]):
        p = job_plan[j]
        nf = plan_nfields[p]
        min_len = max(1, plan_min_len[p])
        pos = job_start[j]
        end = job_end[j]
        export_ns = np.int64(job_export_s[j]) * _NS
        uptime = np.int64(job_uptime_ms[j])
        v9 = (job_flags[j] & FLAG_V9) != 0
        count = 0
        while end - pos >= min_len:
            src4 = np.uint64(0)
            dst4 = np.uint64(0)
            has4 = False
            has6s = -1
            has6d = -1
            sport = 0
            dport = 0
            proto = 0
            pk = np.uint64(0)
            pk_rank = 0
            by = np.uint64(0)
            by_rank = 0
            first = np.int64(0)
            last = np.int64(0)
            have_first = False
            have_last = False
            rel_first = np.int64(-1)
            rel_last = np.int64(-1)
            init_ms = np.int64(-1)
            delta_first = np.int64(-1)
            delta_last = np.int64(-1)
            interval = np.uint64(0)
            space = np.uint64(0)
            sampler = np.int64(-1)
            ok = True
            for f in range(nf):
                fid = plan_ids[p, f]
                flen = np.int64(plan_lens[p, f])
                if flen == _VARIABLE:
                    if pos >= end:
                        ok = False
                        break
                    flen = np.int64(buf[pos])
                    pos += 1
                    if flen == 255:
                        if pos + 2 > end:
                            ok = False
                            break
                        flen = (np.int64(buf[pos]) << 8) | np.int64(buf[pos + 1])
                        pos += 2
                if pos + flen > end:
                    ok = False
                    break
                if flen == 0 or fid == 0xFFFF:
                    pos += flen
                    continue
                if fid == 8 and flen == 4:
                    src4 = _be(buf, pos, 4)
                    has4 = True
                elif fid == 12 and flen == 4:
                    dst4 = _be(buf, pos, 4)
                    has4 = True
                elif fid == 27 and flen == 16:
                    has6s = pos
                elif fid == 28 and flen == 16:
                    has6d = pos
                elif fid == 7:
                    sport = np.int64(_be(buf, pos, flen)) & 0xFFFF
                elif fid == 11:
                    dport = np.int64(_be(buf, pos, flen)) & 0xFFFF
                elif fid == 4:
                    proto = np.int64(_be(buf, pos, flen)) & 0xFF
                elif fid == 1 or fid == 85 or fid == 23:
                    rank = 3 if fid == 1 else (2 if fid == 85 else 1)
                    if rank > by_rank:
                        by = _be(buf, pos, flen)
                        by_rank = rank
                elif fid == 2 or fid == 86 or fid == 24:
                    rank = 3 if fid == 2 else (2 if fid == 86 else 1)
                    if rank > pk_rank:
                        pk = _be(buf, pos, flen)
                        pk_rank = rank
                elif fid == 22:
                    rel_first = np.int64(_be(buf, pos, flen))
                elif fid == 21:
                    rel_last = np.int64(_be(buf, pos, flen))
                elif fid == 160:
                    init_ms = np.int64(_be(buf, pos, flen))
                elif fid == 150:
                    first = np.int64(_be(buf, pos, flen)) * _NS
                    have_first = True
                elif fid == 151:
                    last = np.int64(_be(buf, pos, flen)) * _NS
                    have_last = True
                elif fid == 152:
                    first = np.int64(_be(buf, pos, flen)) * _MS
                    have_first = True
                elif fid == 153:
                    last = np.int64(_be(buf, pos, flen)) * _MS
                    have_last = True
                elif (fid == 154 or fid == 155 or fid == 156 or fid == 157) and flen == 8:
                    seconds = np.int64(_be(buf, pos, 4)) - _NTP_TO_UNIX
                    fraction = np.int64(_be(buf, pos + 4, 4))
                    if fid == 154 or fid == 155:  # microseconds: the low 11 bits are not significant
                        fraction &= ~np.int64(0x7FF)
                    stamp = seconds * _NS + ((fraction * _NS) >> 32)
                    if fid == 154 or fid == 156:
                        first = stamp
                        have_first = True
                    else:
                        last = stamp
                        have_last = True
                elif fid == 158:
                    delta_first = np.int64(_be(buf, pos, flen))
                elif fid == 159:
                    delta_last = np.int64(_be(buf, pos, flen))
                elif fid == 34 or fid == 305 or fid == 50:
                    interval = _be(buf, pos, flen)
                elif fid == 306:
                    space = _be(buf, pos, flen)
                elif fid == 48 or fid == 302:
                    sampler = np.int64(_be(buf, pos, flen) & np.uint64(0x7FFFFFFFFFFFFFFF))
                pos += flen
            if not ok:
                truncated += 1
                break
            count += 1
            # addresses: IPv6 when the record carries them, else IPv4 (mapped); a record with
            # neither (a layer-2 or MPLS-only template) keeps zero addresses and version 0
            six = has6s >= 0 or has6d >= 0
            if six and has4:  # a template with both families: the one this record fills in
                zero6 = True
                for k in range(16):
                    if (has6s >= 0 and buf[has6s + k] != 0) or (has6d >= 0 and buf[has6d + k] != 0):
                        zero6 = False
                        break
                six = not zero6
            if six:
                for k in range(16):
                    src_ip[n, k] = buf[has6s + k] if has6s >= 0 else 0
                    dst_ip[n, k] = buf[has6d + k] if has6d >= 0 else 0
                ip_version[n] = 6
            else:
                for k in range(12):
                    src_ip[n, k] = _MAPPED[k] if has4 else 0
                    dst_ip[n, k] = _MAPPED[k] if has4 else 0
                for k in range(4):
                    shift = np.uint64(24 - 8 * k)
                    src_ip[n, 12 + k] = np.uint8((src4 >> shift) & np.uint64(0xFF))
                    dst_ip[n, 12 + k] = np.uint8((dst4 >> shift) & np.uint64(0xFF))
                ip_version[n] = 4 if has4 else 0
            src_port[n] = sport
            dst_port[n] = dport
            protocol[n] = proto
            raw_packets[n] = pk
            raw_bytes[n] = by
            if not have_first:
                if rel_first >= 0 and v9:
                    first = export_ns - ((uptime - rel_first) & 0xFFFFFFFF) * _MS
                elif rel_first >= 0 and init_ms >= 0:
                    first = (init_ms + rel_first) * _MS
                elif delta_first >= 0:
                    first = export_ns - delta_first * 1000
                else:
                    first = export_ns
            if not have_last:
                if rel_last >= 0 and v9:
                    last = export_ns - ((uptime - rel_last) & 0xFFFFFFFF) * _MS
                elif rel_last >= 0 and init_ms >= 0:
                    last = (init_ms + rel_last) * _MS
                elif delta_last >= 0:
                    last = export_ns - delta_last * 1000
                else:
                    last = export_ns
            first_ns[n] = first
            last_ns[n] = last
            rate = np.uint64(0)
            if interval > 0:
                rate = (interval + space) // interval if space > 0 else interval
            record_rate[n] = min(rate, np.uint64(0xFFFFFFFF))
            sampler_id[n] = sampler
            row_job[n] = j
            n += 1
        job_records[j] = count
    return n, truncated


@nb.njit(cache=True, nogil=True)
def decode_v5_records(  # type: ignore[no-untyped-def]
    buf,
    rec_start,
    rec_count,
    export_ns,
    uptime_ms,
    first_ns,
    last_ns,
    src_ip,
    dst_ip,
    src_port,
    dst_port,
    protocol,
    ip_version,
    raw_packets,
    raw_bytes,
    row_datagram,
):
    """NetFlow v5's 48-byte records of every datagram (``rec_start``: its first record)."""
    n = 0
    for d in range(rec_start.shape[0]):
        pos = rec_start[d]
        for _r in range(rec_count[d]):
            for k in range(12):
                src_ip[n, k] = _MAPPED[k]
                dst_ip[n, k] = _MAPPED[k]
            for k in range(4):
                src_ip[n, 12 + k] = buf[pos + k]
                dst_ip[n, 12 + k] = buf[pos + 4 + k]
            ip_version[n] = 4
            raw_packets[n] = _be(buf, pos + 16, 4)
            raw_bytes[n] = _be(buf, pos + 20, 4)
            first = np.int64(_be(buf, pos + 24, 4))
            last = np.int64(_be(buf, pos + 28, 4))
            up = np.int64(uptime_ms[d])
            first_ns[n] = export_ns[d] - ((up - first) & 0xFFFFFFFF) * _MS
            last_ns[n] = export_ns[d] - ((up - last) & 0xFFFFFFFF) * _MS
            src_port[n] = np.int64(_be(buf, pos + 32, 2))
            dst_port[n] = np.int64(_be(buf, pos + 34, 2))
            protocol[n] = buf[pos + 38]
            row_datagram[n] = d
            n += 1
            pos += 48
    return n
