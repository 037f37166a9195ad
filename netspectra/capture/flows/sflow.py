"""sFlow v5 collection: flow samples (their sampled headers through our packet parser), counters, discards.

The whole datagram walk — samples and their records — is one numba kernel over the batch; the
sampled headers then go through :func:`netspectra.capture.kernel.parse_frames`, the packet
parser every capture path uses, so a sample's key fields are what a probe would have seen on
that link (VLAN tags, MPLS, PPPoE; tunnels are not entered, as for captured packets).

One flow record per flow sample (expanded or compact): packets 1 and bytes the sampled frame's
``frame_length`` (as sent; it includes the FCS on layer-2 samples, as GoFlow2 and Akvorado
report it), renormalised by the sample's sampling rate (or the exporter's override). A sample
without a raw header takes its key from a sampled IPv4/IPv6 record. Timestamps are the
datagram's arrival: sFlow carries no absolute time. The exporter column is the agent address.
Counter samples and discarded-packet samples are counted (they carry no flow); datagram sequence
gaps per (agent, sub-agent) are missed export packets.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numba as nb
import numpy as np

from netspectra.capture.flows.datagrams import DatagramBatch, ExporterTally
from netspectra.capture.flows.netflow import _sequence_gap
from netspectra.capture.kernel import OK, SKIP_REASONS, parse_frames
from netspectra.model.fields import IPV4_MAPPED_PREFIX
from netspectra.model.flows import FlowColumns

#: Why a datagram (or its rest) was skipped, by status code (0 = decoded).
SFLOW_MALFORMED: tuple[str, ...] = (
    "ok",
    "truncated",  # the datagram ends inside its header or a sample/record header
    "bad_version",  # not version 5
    "bad_address_type",  # agent address type neither 1 (IPv4) nor 2 (IPv6)
    "bad_sample_length",  # a sample running past the datagram
    "bad_record_length",  # a record running past its sample
)
# kernel counters
_C_FLOW = 0
_C_COUNTER = 1
_C_COUNTER_RECORDS = 2
_C_DISCARD = 3
_C_UNKNOWN_SAMPLE = 4
_C_NO_KEY = 5
_N_COUNTERS = 6
_MAPPED = np.frombuffer(IPV4_MAPPED_PREFIX, np.uint8).copy()
#: sFlow header_protocol -> our link type (ethernet, raw IPv4, raw IPv6)
_LINKTYPE_ETHERNET = 1
_LINKTYPE_IPV4 = 228
_LINKTYPE_IPV6 = 229


@nb.njit(cache=True, nogil=True, inline="always")
def _u32(buf, at):  # type: ignore[no-untyped-def]
    return (
        (np.int64(buf[at]) << 24)
        | (np.int64(buf[at + 1]) << 16)
        | (np.int64(buf[at + 2]) << 8)
        | np.int64(buf[at + 3])
    )


@nb.njit(cache=True, nogil=True)
def walk_sflow(  # type: ignore[no-untyped-def]
    buf,
    offsets,
    lengths,
    dg_status,
    dg_agent,
    dg_sub,
    dg_seq,
    s_datagram,
    s_rate,
    s_hdr_off,
    s_hdr_len,
    s_linktype,
    s_bytes,
    s_src,
    s_dst,
    s_sport,
    s_dport,
    s_proto,
    s_ver,
    counters,
):
    """Walk every datagram; one row per flow sample. Returns the rows written.

    ``s_linktype[i] > 0``: row i has a raw header at ``s_hdr_off``/``s_hdr_len`` for the packet
    parser; else (0) the sampled IPv4/IPv6 record's key is already in ``s_src`` .. ``s_ver``.
    """
    n = 0
    for d in range(offsets.shape[0]):
        pos = offsets[d]
        end = pos + lengths[d]
        dg_status[d] = 1
        if end - pos < 8:
            continue
        if _u32(buf, pos) != 5:
            dg_status[d] = 2
            continue
        atype = _u32(buf, pos + 4)
        if atype == 1:
            alen = 4
        elif atype == 2:
            alen = 16
        else:
            dg_status[d] = 3
            continue
        if pos + 8 + alen + 16 > end:
            continue
        for k in range(16):
            if alen == 4:
                dg_agent[d, k] = _MAPPED[k] if k < 12 else buf[pos + 8 + k - 12]
            else:
                dg_agent[d, k] = buf[pos + 8 + k]
        p = pos + 8 + alen
        dg_sub[d] = _u32(buf, p)
        dg_seq[d] = _u32(buf, p + 4)
        nsamples = _u32(buf, p + 12)
        p += 16
        status = 0
        for _s in range(nsamples):
            if p + 8 > end:
                status = 1
                break
            fmt = _u32(buf, p)
            slen = _u32(buf, p + 4)
            body = p + 8
            send = body + slen
            if send > end:
                status = 4
                break
            p = send
            enterprise = fmt >> 12
            kind = fmt & 0xFFF
            if enterprise != 0:
                counters[_C_UNKNOWN_SAMPLE] += 1
                continue
            if kind == 2 or kind == 4:
                counters[_C_COUNTER] += 1
                at = body + (8 if kind == 2 else 12)
                if at + 4 <= send:
                    counters[_C_COUNTER_RECORDS] += _u32(buf, at)
                continue
            if kind == 5:
                counters[_C_DISCARD] += 1
                continue
            if kind != 1 and kind != 3:
                counters[_C_UNKNOWN_SAMPLE] += 1
                continue
            head = 32 if kind == 1 else 44
            if body + head > send:
                status = 4
                break
            counters[_C_FLOW] += 1
            rate = _u32(buf, body + (8 if kind == 1 else 12))
            nrecords = _u32(buf, body + head - 4)
            r = body + head
            have_header = False
            have_ip = False
            s_linktype[n] = 0
            for _r in range(nrecords):
                if r + 8 > send:
                    status = 5
                    break
                rfmt = _u32(buf, r)
                rlen = _u32(buf, r + 4)
                rbody = r + 8
                r = rbody + rlen
                if r > send:
                    status = 5
                    break
                if rfmt == 1 and rlen >= 16 and not have_header:
                    proto = _u32(buf, rbody)
                    hlen = _u32(buf, rbody + 12)
                    if rbody + 16 + hlen > r:
                        status = 5
                        break
                    if proto == 1:
                        s_linktype[n] = _LINKTYPE_ETHERNET
                    elif proto == 11:
                        s_linktype[n] = _LINKTYPE_IPV4
                    elif proto == 12:
                        s_linktype[n] = _LINKTYPE_IPV6
                    else:
                        s_linktype[n] = 255  # not a protocol the parser knows: unsupported_linktype
                    s_hdr_off[n] = rbody + 16
                    s_hdr_len[n] = hlen
                    s_bytes[n] = _u32(buf, rbody + 4)
                    have_header = True
                elif (rfmt == 3 and rlen >= 32) or (rfmt == 4 and rlen >= 56):
                    if not have_header:
                        s_bytes[n] = _u32(buf, rbody)
                    alen6 = 4 if rfmt == 3 else 16
                    a = rbody + 8
                    for k in range(16):
                        if alen6 == 4:
                            s_src[n, k] = _MAPPED[k] if k < 12 else buf[a + k - 12]
                            s_dst[n, k] = _MAPPED[k] if k < 12 else buf[a + 4 + k - 12]
                        else:
                            s_src[n, k] = buf[a + k]
                            s_dst[n, k] = buf[a + 16 + k]
                    q = a + 2 * alen6
                    s_sport[n] = _u32(buf, q) & 0xFFFF
                    s_dport[n] = _u32(buf, q + 4) & 0xFFFF
                    s_proto[n] = _u32(buf, rbody + 4) & 0xFF
                    s_ver[n] = 4 if rfmt == 3 else 6
                    have_ip = True
            if status != 0:
                break
            if not have_header and not have_ip:
                counters[_C_NO_KEY] += 1
                continue
            if have_header and have_ip:
                s_linktype[n] = -s_linktype[n]  # fall back to the sampled IP record if the header fails
            s_datagram[n] = d
            s_rate[n] = rate
            n += 1
        dg_status[d] = status
    return n


@dataclass(slots=True)
class SFlowStats:
    """What the sFlow decoder saw, cumulative."""

    datagrams: int = 0
    refused: int = 0
    flow_samples: int = 0
    records: int = 0
    counter_samples: int = 0
    counter_records: int = 0
    discarded_samples: int = 0
    unknown_samples: int = 0
    samples_without_key: int = 0
    missed_packets: int = 0
    sequence_resets: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    header_skips: Counter[str] = field(default_factory=Counter)  # the packet parser's skip reasons
    #: datagrams, records, missed_packets, sequence_resets per agent address
    exporters: ExporterTally = field(default_factory=ExporterTally)

    def as_dict(self) -> dict[str, object]:
        return {
            "datagrams": self.datagrams,
            "refused": self.refused,
            "flow_samples": self.flow_samples,
            "records": self.records,
            "counter_samples": self.counter_samples,
            "counter_records": self.counter_records,
            "discarded_samples": self.discarded_samples,
            "unknown_samples": self.unknown_samples,
            "samples_without_key": self.samples_without_key,
            "missed_packets": self.missed_packets,
            "sequence_resets": self.sequence_resets,
            "malformed": dict(self.malformed),
            "header_skips": dict(self.header_skips),
        }


class SFlowDecoder:
    """Decodes batches of sFlow v5 datagrams into :class:`FlowColumns` (sequence state across batches)."""

    def __init__(
        self, *, allow: frozenset[bytes] | None = None, sampling_overrides: Mapping[bytes, int] | None = None
    ) -> None:
        self._allow = allow
        self._overrides = dict(sampling_overrides or {})
        self._expected: dict[tuple[bytes, int], int] = {}
        self.stats = SFlowStats()

    def decode(self, batch: DatagramBatch) -> FlowColumns:
        self.stats.datagrams += len(batch)
        offsets, lengths = batch.offsets, batch.lengths
        if self._allow is not None and len(batch):
            allowed = np.array([row.tobytes() in self._allow for row in batch.exporter], bool)
            self.stats.refused += int((~allowed).sum())
            offsets, lengths = offsets[allowed], lengths[allowed]
        nd = offsets.shape[0]
        capacity = int(lengths.sum()) // 40 + 1  # a flow sample takes 40 bytes at the very least
        status = np.zeros(nd, np.int64)
        agent = np.zeros((nd, 16), np.uint8)
        sub = np.zeros(nd, np.int64)
        seq = np.zeros(nd, np.int64)
        row_dg = np.empty(capacity, np.int64)
        rate = np.empty(capacity, np.int64)
        hdr_off = np.zeros(capacity, np.int64)
        hdr_len = np.zeros(capacity, np.int64)
        linktype = np.zeros(capacity, np.int64)
        out = FlowColumns.empty(capacity)
        counters = np.zeros(_N_COUNTERS, np.int64)
        n = walk_sflow(
            batch.buf, offsets, lengths, status, agent, sub, seq, row_dg, rate, hdr_off, hdr_len, linktype,
            out.raw_bytes, out.src_ip, out.dst_ip, out.src_port, out.dst_port, out.protocol, out.ip_version,
            counters,
        )  # fmt: skip
        self.stats.flow_samples += int(counters[_C_FLOW])
        self.stats.counter_samples += int(counters[_C_COUNTER])
        self.stats.counter_records += int(counters[_C_COUNTER_RECORDS])
        self.stats.discarded_samples += int(counters[_C_DISCARD])
        self.stats.unknown_samples += int(counters[_C_UNKNOWN_SAMPLE])
        self.stats.samples_without_key += int(counters[_C_NO_KEY])
        accepted: Counter[bytes] = Counter()
        for d in range(nd):
            if status[d]:
                self.stats.malformed[SFLOW_MALFORMED[int(status[d])]] += 1
            if status[d] in (2, 3) or (status[d] == 1 and not agent[d].any()):
                continue  # no header read: no sequence number
            key = (agent[d].tobytes(), int(sub[d]))
            missed, reset = _sequence_gap(self._expected.get(key), int(seq[d]))
            self.stats.missed_packets += missed
            self.stats.sequence_resets += int(reset)
            accepted[key[0]] += 1
            if missed or reset:
                self.stats.exporters.add(key[0], "missed_packets", missed)
                self.stats.exporters.add(key[0], "sequence_resets", int(reset))
            self._expected[key] = (int(seq[d]) + 1) & 0xFFFFFFFF
        out = out.head(n)
        linktype, hdr_off, hdr_len, rate, row_dg = (
            linktype[:n],
            hdr_off[:n],
            hdr_len[:n],
            rate[:n],
            row_dg[:n],
        )
        keep = np.ones(n, bool)
        with_header = np.flatnonzero(linktype != 0)
        if with_header.shape[0]:
            # parse into scratch columns: a header that fails must leave a sampled-IP key untouched
            m = with_header.shape[0]
            src = np.empty((m, 16), np.uint8)
            dst = np.empty((m, 16), np.uint8)
            sport = np.empty(m, np.uint16)
            dport = np.empty(m, np.uint16)
            proto = np.empty(m, np.uint8)
            ver = np.empty(m, np.uint8)
            frame_status = np.empty(m, np.int64)
            parse_frames(
                batch.buf, hdr_off[with_header], hdr_len[with_header], np.abs(linktype[with_header]),
                src, dst, sport, dport, proto, ver, frame_status,
            )  # fmt: skip
            good = frame_status == OK
            rows = with_header[good]
            out.src_ip[rows], out.dst_ip[rows] = src[good], dst[good]
            out.src_port[rows], out.dst_port[rows], out.protocol[rows], out.ip_version[rows] = (
                sport[good], dport[good], proto[good], ver[good]
            )  # fmt: skip
            bad = ~good
            for code, count in zip(*np.unique(frame_status[bad], return_counts=True), strict=True):
                self.stats.header_skips[SKIP_REASONS[int(code)]] += int(count)
            keep[with_header[bad & (linktype[with_header] > 0)]] = False  # no sampled-IP fallback
        out = out.take(keep) if not keep.all() else out
        row_dg, rate = row_dg[keep], rate[keep]
        exporters = agent[row_dg]
        out.exporter[:] = exporters
        self.stats.exporters.add_all("datagrams", accepted)
        records: Counter[bytes] = Counter()
        for d, count in enumerate(np.bincount(row_dg, minlength=nd).tolist()):
            if count:
                records[agent[d].tobytes()] += count
        self.stats.exporters.add_all("records", records)
        out.raw_packets[:] = 1
        recv = batch.recv_ns if self._allow is None else batch.recv_ns[allowed]
        out.first_ns[:] = recv[row_dg]
        out.last_ns[:] = out.first_ns
        forced = (
            np.array([self._overrides.get(row.tobytes(), 0) for row in exporters], np.int64)
            if self._overrides
            else 0
        )
        effective = np.where(np.asarray(forced) > 0, forced, np.maximum(rate, 1))
        out.sampling_rate[:] = np.minimum(effective, 0xFFFFFFFF).astype(np.uint32)
        out.packets[:] = out.sampling_rate
        np.multiply(out.raw_bytes, out.sampling_rate.astype(np.uint64), out=out.bytes)
        self.stats.records += len(out)
        return out
