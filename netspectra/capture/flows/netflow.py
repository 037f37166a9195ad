"""NetFlow v5, v9 and IPFIX (v10) collection: templates, option data, sampling, loss accounting.

What each layer costs decides where it runs (see docs/flow-export.md for the figures): the
datagram header and its few sets are walked here in Python — a datagram carries tens of
records, so this is a few microseconds per datagram — and every data record goes to one numba
kernel call per batch (:mod:`netspectra.capture.flows.netflow_kernels`); no Python object is
made per record.

State, per exporter (the UDP source address) and observation domain (v9: source id):

* **templates** by id; a redefinition replaces the old one for the data that follows (refresh),
  IPFIX withdrawals (field count 0; template id 2 or 3 withdraws every template of the set
  kind) remove them. With ``template_path`` they are written there (JSON, atomically) whenever
  they change, and read back at start, so a restarted collector decodes data at once.
* **data before its template** is held (at most ``max_pending`` sets, each at most
  ``pending_ttl_s`` after its arrival) and decoded when the template comes; what expires or
  overflows is counted as ``pending_expired``.
* **option data** carrying a sampling interval (v9 34/50, IPFIX 305[/306]) is kept per sampler
  id (48/302) or, without one, as the domain's rate. The rate in effect for a record is, in
  order: the configured per-exporter override, the record's own interval, its sampler's option
  data, the domain's option data, v5's header interval, else 1.
* **sequence numbers**: v5 and IPFIX count records (missed flows), v9 counts datagrams (missed
  export packets). A number that goes backwards is an exporter restart (``sequence_resets``), not a loss.

Malformed datagrams are counted by reason and the rest of that datagram skipped; decoding never raises.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from netspectra.capture.flows.datagrams import DatagramBatch, ExporterTally, mapped_address
from netspectra.capture.flows.netflow_kernels import FLAG_V9, decode_template_sets, decode_v5_records
from netspectra.model.flows import FlowColumns

logger = logging.getLogger(__name__)

_NS = 1_000_000_000
_VARIABLE = 65535
_ENTERPRISE = 0xFFFF  # plan id of an enterprise-specific field: skipped by its length
_V9_SCOPE = 0xFFFE  # plan id of a v9 option scope field (scope types are not field ids)
_SAMPLER_FIELDS = (48, 302)
_INTERVAL_FIELDS = (34, 305, 50)
_SPACE_FIELD = 306

#: Why a datagram (or the rest of it) was skipped, in the order the stats show them.
MALFORMED_REASONS: tuple[str, ...] = (
    "short_header",  # shorter than its version's header
    "unknown_version",  # not 5, 9 or 10
    "bad_length",  # IPFIX message length above the datagram, v5 count beyond the datagram or above 30
    "bad_set_length",  # a set shorter than its header or running past the message
    "bad_template",  # a template whose fields run past its set, or without fields
    "truncated_record",  # a data record running past its set
)


@dataclass(frozen=True, slots=True)
class Template:
    """A template's field list as the kernel walks it (``options``: an options template)."""

    ids: tuple[int, ...]
    lengths: tuple[int, ...]
    options: bool = False
    #: bytes of a record with every variable-length field empty (1 byte each); computed once
    min_length: int = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "min_length", sum(1 if n == _VARIABLE else n for n in self.lengths))


@dataclass(slots=True)
class FlowDecodeStats:
    """What the decoder saw, cumulative (exposed like the packet path's counters)."""

    datagrams: int = 0
    records: int = 0
    refused: int = 0  # datagrams from an exporter outside the allow-list
    malformed: Counter[str] = field(default_factory=Counter)
    templates: int = 0
    template_withdrawals: int = 0
    option_records: int = 0
    missed_packets: int = 0  # v9 / sFlow datagram sequence gaps
    missed_flows: int = 0  # v5 / IPFIX record sequence gaps
    sequence_resets: int = 0
    pending_held: int = 0
    pending_decoded: int = 0
    pending_expired: int = 0
    by_version: Counter[int] = field(default_factory=Counter)
    #: datagrams, records, missed_packets, missed_flows, sequence_resets per (accepted) exporter
    exporters: ExporterTally = field(default_factory=ExporterTally)

    def as_dict(self) -> dict[str, object]:
        return {
            "datagrams": self.datagrams,
            "records": self.records,
            "refused": self.refused,
            "malformed": {
                reason: self.malformed[reason] for reason in MALFORMED_REASONS if self.malformed[reason]
            },
            "templates": self.templates,
            "template_withdrawals": self.template_withdrawals,
            "option_records": self.option_records,
            "missed_packets": self.missed_packets,
            "missed_flows": self.missed_flows,
            "sequence_resets": self.sequence_resets,
            "pending_held": self.pending_held,
            "pending_decoded": self.pending_decoded,
            "pending_expired": self.pending_expired,
            "by_version": dict(self.by_version),
        }


@dataclass(slots=True)
class _Pending:
    payload: bytes  # the data set's records (after the set header)
    export_s: int
    uptime_ms: int
    flags: int
    recv_ns: int
    exporter: bytes
    domain: int


@dataclass(slots=True)
class _Job:
    start: int
    end: int
    template: Template
    export_s: int
    uptime_ms: int
    flags: int
    exporter: bytes
    domain: int


_DomainKey = tuple[bytes, int, int]  # exporter, version, domain
_TemplateKey = tuple[bytes, int, int, int]  # exporter, version, domain, template id


def _sequence_gap(expected: int | None, seq: int) -> tuple[int, bool]:
    """(missed, reset) for a 32-bit sequence number ``seq`` where ``expected`` was due."""
    if expected is None:
        return 0, False
    gap = (seq - expected) & 0xFFFFFFFF
    if gap == 0:
        return 0, False
    if gap < 0x80000000:
        return gap, False
    return 0, True  # backwards: the exporter restarted (or reordered): not a loss


class NetFlowDecoder:
    """Decodes batches of NetFlow v5/v9/IPFIX datagrams into :class:`FlowColumns`, state kept across them."""

    def __init__(
        self,
        *,
        allow: frozenset[bytes] | None = None,
        sampling_overrides: Mapping[bytes, int] | None = None,
        pending_ttl_s: float = 60.0,
        max_pending: int = 4096,
        template_path: Path | None = None,
    ) -> None:
        self._allow = allow
        self._overrides = dict(sampling_overrides or {})
        self._pending_ttl_ns = int(pending_ttl_s * _NS)
        self._max_pending = max_pending
        self._template_path = template_path
        self.stats = FlowDecodeStats()
        self.templates: dict[_TemplateKey, Template] = {}
        self.rates: dict[_DomainKey, dict[int, int]] = {}  # sampler id (-1: the domain's) -> rate
        self._pending: dict[_TemplateKey, list[_Pending]] = {}
        self._pending_count = 0
        self._expected: dict[tuple[bytes, int, int], int | None] = {}
        self._dirty = False
        if template_path is not None and template_path.exists():
            self._load(template_path)

    # --- persistence ---------------------------------------------------------------------

    def _load(self, path: Path) -> None:
        try:
            saved = json.loads(path.read_text())
            for entry in saved.get("templates", []):
                key = (bytes.fromhex(entry["exporter"]), entry["version"], entry["domain"], entry["id"])
                self.templates[key] = Template(tuple(entry["ids"]), tuple(entry["lengths"]), entry["options"])
            for entry in saved.get("rates", []):
                dkey = (bytes.fromhex(entry["exporter"]), entry["version"], entry["domain"])
                self.rates[dkey] = {int(k): int(v) for k, v in entry["rates"].items()}
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning(
                "Could not read the saved templates in %s (%s); starting without them", path, error
            )
            self.templates.clear()
            self.rates.clear()
            return
        logger.info("Read %d saved template(s) from %s", len(self.templates), path)

    def save(self) -> None:
        """Write templates and sampling rates to ``template_path`` (atomically), if set."""
        if self._template_path is None:
            return
        body = {
            "templates": [
                {
                    "exporter": k[0].hex(),
                    "version": k[1],
                    "domain": k[2],
                    "id": k[3],
                    "ids": list(t.ids),
                    "lengths": list(t.lengths),
                    "options": t.options,
                }
                for k, t in self.templates.items()
            ],
            "rates": [
                {
                    "exporter": k[0].hex(),
                    "version": k[1],
                    "domain": k[2],
                    "rates": {str(s): r for s, r in v.items()},
                }
                for k, v in self.rates.items()
            ],
        }
        self._template_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self._template_path.with_suffix(self._template_path.suffix + ".tmp")
        temporary.write_text(json.dumps(body))
        os.replace(temporary, self._template_path)
        self._dirty = False

    # --- decoding ------------------------------------------------------------------------

    def decode(self, batch: DatagramBatch) -> FlowColumns:
        """Every record of the batch (and of held data whose template arrived), in arrival order."""
        jobs: list[_Job] = []
        v5: list[
            tuple[int, int, int, int, int, bytes]
        ] = []  # start, count, export ns, uptime, rate, exporter
        extra = bytearray()
        base = int(batch.buf.shape[0])
        sequences: list[tuple[tuple[bytes, int, int], int, int | None, list[int]]] = []
        buf = batch.buf
        now = int(batch.recv_ns.max()) if len(batch) else 0
        accepted: Counter[bytes] = Counter()
        for i in range(len(batch)):
            exporter = batch.exporter[i].tobytes()
            self.stats.datagrams += 1
            if self._allow is not None and exporter not in self._allow:
                self.stats.refused += 1
                continue
            accepted[exporter] += 1
            start = int(batch.offsets[i])
            data = buf[start : start + int(batch.lengths[i])].tobytes()
            if len(data) < 4:
                self.stats.malformed["short_header"] += 1
                continue
            version = (data[0] << 8) | data[1]
            self.stats.by_version[version] += 1
            if version == 5:
                self._v5(data, start, exporter, v5, sequences)
            elif version in (9, 10):
                self._templated(
                    data, start, version, exporter, int(batch.recv_ns[i]), jobs, extra, base, sequences
                )
            else:
                self.stats.malformed["unknown_version"] += 1
        self._expire(now)
        merged = buf if not extra else np.concatenate([buf, np.frombuffer(bytes(extra), np.uint8)])
        parts = []
        if v5:
            parts.append(self._run_v5(merged, v5))
        job_records = np.zeros(len(jobs), np.int64)
        if jobs:
            parts.append(self._run_jobs(merged, jobs, job_records))
        records_per_job = job_records.tolist()
        records: Counter[bytes] = Counter()
        for entry in v5:
            records[entry[5]] += entry[1]
        for job, decoded in zip(jobs, records_per_job, strict=True):
            records[job.exporter] += decoded
        self.stats.exporters.add_all("datagrams", accepted)
        self.stats.exporters.add_all("records", records)
        for key, seq, count, job_ids in sequences:
            if count is not None:
                for j in job_ids:
                    count += records_per_job[j]
            self._advance(key, seq, count)
        if self._dirty:
            self.save()
        out = FlowColumns.concat(parts) if len(parts) != 1 else parts[0]
        self.stats.records += len(out)
        return out

    def _advance(self, key: tuple[bytes, int, int], seq: int, count: int | None) -> None:
        missed, reset = _sequence_gap(self._expected.get(key), seq)
        if reset:
            self.stats.sequence_resets += 1
            self.stats.exporters.add(key[0], "sequence_resets")
        elif missed and key[1] == 9:
            self.stats.missed_packets += missed
            self.stats.exporters.add(key[0], "missed_packets", missed)
        elif missed:
            self.stats.missed_flows += missed
            self.stats.exporters.add(key[0], "missed_flows", missed)
        self._expected[key] = None if count is None else (seq + count) & 0xFFFFFFFF

    def _v5(self, data: bytes, start: int, exporter: bytes, v5: list, sequences: list) -> None:  # type: ignore[type-arg]
        if len(data) < 24:
            self.stats.malformed["short_header"] += 1
            return
        _version, count, uptime, secs, nsecs, seq, engine_type, engine_id, sampling = struct.unpack_from(
            "!HHIIIIBBH", data
        )
        if count > 30 or 24 + 48 * count > len(data):
            self.stats.malformed["bad_length"] += 1
            return
        interval = sampling & 0x3FFF
        v5.append((start + 24, count, secs * _NS + nsecs, uptime, interval if interval > 0 else 1, exporter))
        sequences.append(((exporter, 5, (engine_type << 8) | engine_id), seq, count, []))

    def _templated(  # type: ignore[no-untyped-def]
        self,
        data: bytes,
        start: int,
        version: int,
        exporter: bytes,
        recv_ns: int,
        jobs,
        extra,
        base,
        sequences,
    ) -> None:
        if version == 9:
            if len(data) < 20:
                self.stats.malformed["short_header"] += 1
                return
            _v, _count, uptime, export_s, seq, domain = struct.unpack_from("!HHIIII", data)
            pos, end, flags = 20, len(data), FLAG_V9
        else:
            if len(data) < 16:
                self.stats.malformed["short_header"] += 1
                return
            _v, length, export_s, seq, domain = struct.unpack_from("!HHIII", data)
            if length > len(data) or length < 16:
                self.stats.malformed["bad_length"] += 1
                return
            pos, end, uptime, flags = 16, length, 0, 0
        job_ids: list[int] = []
        option_records = 0
        complete = True
        while pos + 4 <= end:
            set_id, set_length = struct.unpack_from("!HH", data, pos)
            if set_length < 4 or pos + set_length > end:
                self.stats.malformed["bad_set_length"] += 1
                break
            body, body_end = pos + 4, pos + set_length
            pos = body_end
            if (version == 9 and set_id == 0) or (version == 10 and set_id == 2):
                if not self._templates(data, body, body_end, version, exporter, domain, False):
                    break
            elif (version == 9 and set_id == 1) or (version == 10 and set_id == 3):
                if not self._templates(data, body, body_end, version, exporter, domain, True):
                    break
            elif set_id >= 256:
                key = (exporter, version, domain, set_id)
                template = self.templates.get(key)
                if template is None:
                    self._hold(
                        key, _Pending(data[body:body_end], export_s, uptime, flags, recv_ns, exporter, domain)
                    )
                    complete = False
                elif template.options:
                    option_records += self._option_data(
                        data, body, body_end, template, (exporter, version, domain)
                    )
                else:
                    job_ids.append(len(jobs))
                    jobs.append(
                        _Job(
                            start + body,
                            start + body_end,
                            template,
                            export_s,
                            uptime,
                            flags,
                            exporter,
                            domain,
                        )
                    )
            # other set ids are reserved: skipped by their length
        self.stats.option_records += option_records
        self._release(version, exporter, domain, jobs, extra, base)
        if version == 9:  # v9 numbers export packets (RFC 3954 5.1): the next one is seq + 1
            sequences.append(((exporter, version, domain), seq, 1, []))
        else:  # IPFIX numbers data records (RFC 7011 3.1): known once the jobs are decoded
            sequences.append(
                ((exporter, version, domain), seq, option_records if complete else None, job_ids)
            )

    def _templates(  # type: ignore[no-untyped-def]
        self, data: bytes, pos: int, end: int, version: int, exporter: bytes, domain: int, options: bool
    ) -> bool:
        """Read a (options) template set; False when it is malformed (the rest of the datagram is skipped)."""
        header = 6 if options else 4
        while pos + header <= end:
            if options and version == 9:
                tid, scope_bytes, option_bytes = struct.unpack_from("!HHH", data, pos)
                pos += 6
                if scope_bytes % 4 or option_bytes % 4 or pos + scope_bytes + option_bytes > end:
                    self.stats.malformed["bad_template"] += 1
                    return False
                ids: list[int] = []
                lengths: list[int] = []
                for k in range((scope_bytes + option_bytes) // 4):
                    fid, flen = struct.unpack_from("!HH", data, pos + 4 * k)
                    ids.append(_V9_SCOPE if k < scope_bytes // 4 else fid)
                    lengths.append(flen)
                pos += scope_bytes + option_bytes
            else:
                if options:
                    tid, count, _scope = struct.unpack_from("!HHH", data, pos)
                    pos += 6
                else:
                    tid, count = struct.unpack_from("!HH", data, pos)
                    pos += 4
                if count == 0 and version == 10:
                    self._withdraw(exporter, domain, tid, options)
                    continue
                ids, lengths = [], []
                for _ in range(count):
                    if pos + 4 > end:
                        self.stats.malformed["bad_template"] += 1
                        return False
                    fid, flen = struct.unpack_from("!HH", data, pos)
                    pos += 4
                    if version == 10 and fid & 0x8000:
                        pos += 4  # enterprise number
                        fid = _ENTERPRISE
                    ids.append(fid)
                    lengths.append(flen)
                if pos > end or not ids:
                    self.stats.malformed["bad_template"] += 1
                    return False
            if tid < 256:
                self.stats.malformed["bad_template"] += 1
                return False
            template = Template(tuple(ids), tuple(lengths), options)
            key = (exporter, version, domain, tid)
            if self.templates.get(key) != template:
                self.templates[key] = template
                self._dirty = True
            self.stats.templates += 1
        return True

    def _withdraw(self, exporter: bytes, domain: int, tid: int, options: bool) -> None:
        self.stats.template_withdrawals += 1
        if tid in (2, 3):  # every template of this kind
            doomed = [
                k
                for k, t in self.templates.items()
                if k[:3] == (exporter, 10, domain) and t.options == options
            ]
        else:
            doomed = [(exporter, 10, domain, tid)]
        for key in doomed:
            if self.templates.pop(key, None) is not None:
                self._dirty = True

    def _option_data(self, data: bytes, pos: int, end: int, template: Template, dkey: _DomainKey) -> int:
        """Read sampling rates out of option data records; returns the records read."""
        records = 0
        minimum = max(1, template.min_length)
        while end - pos >= minimum:
            values: dict[int, int] = {}
            for fid, flen in zip(template.ids, template.lengths, strict=True):
                if flen == _VARIABLE:
                    flen = data[pos]
                    pos += 1
                    if flen == 255:
                        flen = struct.unpack_from("!H", data, pos)[0]
                        pos += 2
                if pos + flen > end:
                    self.stats.malformed["truncated_record"] += 1
                    return records
                if 0 < flen <= 8:
                    values[fid] = int.from_bytes(data[pos : pos + flen], "big")
                pos += flen
            records += 1
            interval = next((values[f] for f in _INTERVAL_FIELDS if values.get(f)), 0)
            if interval:
                space = values.get(_SPACE_FIELD, 0)
                rate = (interval + space) // interval if space else interval
                sampler = next((values[f] for f in _SAMPLER_FIELDS if f in values), -1)
                rates = self.rates.setdefault(dkey, {})
                if rates.get(sampler) != rate:
                    rates[sampler] = rate
                    self._dirty = True
        return records

    # --- held data -----------------------------------------------------------------------

    def _hold(self, key: _TemplateKey, pending: _Pending) -> None:
        if self._pending_count >= self._max_pending:  # drop the oldest held set
            oldest = min(self._pending, key=lambda k: self._pending[k][0].recv_ns)
            self._pending[oldest].pop(0)
            if not self._pending[oldest]:
                del self._pending[oldest]
            self._pending_count -= 1
            self.stats.pending_expired += 1
        self._pending.setdefault(key, []).append(pending)
        self._pending_count += 1
        self.stats.pending_held += 1

    def _release(
        self, version: int, exporter: bytes, domain: int, jobs: list[_Job], extra: bytearray, base: int
    ) -> None:
        """Decode held data whose template is now known (after the datagram that brought it)."""
        if not self._pending:
            return
        for key in [k for k in self._pending if k[:3] == (exporter, version, domain) and k in self.templates]:
            template = self.templates[key]
            for held in self._pending.pop(key):
                self._pending_count -= 1
                self.stats.pending_decoded += 1
                if template.options:
                    self.stats.option_records += self._option_data(
                        held.payload, 0, len(held.payload), template, key[:3]
                    )
                    continue
                at = base + len(extra)
                extra += held.payload
                jobs.append(
                    _Job(
                        at,
                        at + len(held.payload),
                        template,
                        held.export_s,
                        held.uptime_ms,
                        held.flags,
                        exporter,
                        domain,
                    )
                )

    def _expire(self, now_ns: int) -> None:
        """Drop held data older than the time to live (``now_ns``: the newest arrival seen)."""
        if not self._pending:
            return
        limit = now_ns - self._pending_ttl_ns
        for key in list(self._pending):
            kept = [p for p in self._pending[key] if p.recv_ns >= limit]
            expired = len(self._pending[key]) - len(kept)
            if expired:
                self.stats.pending_expired += expired
                self._pending_count -= expired
                if kept:
                    self._pending[key] = kept
                else:
                    del self._pending[key]

    def expire(self, now_ns: int) -> None:
        """Expire held data at ``now_ns`` (live sources call it when no datagram arrives for a while)."""
        self._expire(now_ns)

    @property
    def pending(self) -> int:
        """Data sets held for a template that has not arrived yet."""
        return self._pending_count

    # --- kernels -------------------------------------------------------------------------

    def _override(self, exporter: bytes) -> int:
        return self._overrides.get(exporter, 0)

    def _run_v5(self, buf: npt.NDArray[np.uint8], v5: list) -> FlowColumns:  # type: ignore[type-arg]
        starts = np.array([d[0] for d in v5], np.int64)
        counts = np.array([d[1] for d in v5], np.int64)
        export_ns = np.array([d[2] for d in v5], np.int64)
        uptime = np.array([d[3] for d in v5], np.int64)
        rates = np.array([self._override(d[5]) or d[4] for d in v5], np.uint32)
        exporters = np.frombuffer(b"".join(d[5] for d in v5), np.uint8).reshape(len(v5), 16)
        total = int(counts.sum())
        out = FlowColumns.empty(total)
        rows = np.empty(total, np.int64)
        decode_v5_records(
            buf, starts, counts, export_ns, uptime, out.first_ns, out.last_ns, out.src_ip, out.dst_ip,
            out.src_port, out.dst_port, out.protocol, out.ip_version, out.raw_packets, out.raw_bytes, rows,
        )  # fmt: skip
        out.sampling_rate[:] = rates[rows]
        out.exporter[:] = exporters[rows]
        _scale(out)
        return out

    def _run_jobs(
        self, buf: npt.NDArray[np.uint8], jobs: list[_Job], job_records: npt.NDArray[np.int64]
    ) -> FlowColumns:
        plans: dict[int, int] = {}
        templates: list[Template] = []
        job_plan = np.empty(len(jobs), np.int64)
        capacity = 0
        for j, job in enumerate(jobs):
            plan = plans.get(id(job.template))
            if plan is None:
                plan = plans[id(job.template)] = len(templates)
                templates.append(job.template)
            job_plan[j] = plan
            capacity += (job.end - job.start) // max(1, job.template.min_length)
        width = max(len(t.ids) for t in templates)
        plan_ids = np.zeros((len(templates), width), np.int64)
        plan_lens = np.zeros((len(templates), width), np.int64)
        for p, template in enumerate(templates):
            plan_ids[p, : len(template.ids)] = template.ids
            plan_lens[p, : len(template.lengths)] = template.lengths
        plan_nfields = np.array([len(t.ids) for t in templates], np.int64)
        plan_min = np.array([t.min_length for t in templates], np.int64)
        out = FlowColumns.empty(capacity)
        record_rate = np.empty(capacity, np.uint64)
        sampler = np.empty(capacity, np.int64)
        row_job = np.empty(capacity, np.int64)
        n, truncated = decode_template_sets(
            buf,
            np.array([job.start for job in jobs], np.int64),
            np.array([job.end for job in jobs], np.int64),
            job_plan,
            np.array([job.export_s for job in jobs], np.int64),
            np.array([job.uptime_ms for job in jobs], np.int64),
            np.array([job.flags for job in jobs], np.int64),
            plan_nfields, plan_ids, plan_lens, plan_min,
            out.first_ns, out.last_ns, out.src_ip, out.dst_ip, out.src_port, out.dst_port, out.protocol,
            out.ip_version, out.raw_packets, out.raw_bytes, record_rate, sampler, row_job, job_records,
        )  # fmt: skip
        if truncated:
            self.stats.malformed["truncated_record"] += int(truncated)
        out = out.head(n)
        record_rate, sampler, row_job = record_rate[:n], sampler[:n], row_job[:n]
        exporters = np.frombuffer(b"".join(job.exporter for job in jobs), np.uint8).reshape(len(jobs), 16)
        out.exporter[:] = exporters[row_job]
        rate = record_rate.copy()
        # the option data in effect, per job: the domain's rate, then per sampler id where one is named
        job_default = np.ones(len(jobs), np.uint64)
        job_override = np.zeros(len(jobs), np.uint64)
        per_sampler: list[int] = []
        if self.rates or self._overrides:
            for j, job in enumerate(jobs):
                rates = self.rates.get((job.exporter, 9 if job.flags & FLAG_V9 else 10, job.domain))
                if rates:
                    job_default[j] = rates.get(-1, 1)
                    if len(rates) > (1 if -1 in rates else 0):
                        per_sampler.append(j)
                job_override[j] = self._override(job.exporter)
        missing = rate == 0
        rate[missing] = job_default[row_job[missing]]
        for j in per_sampler:
            job = jobs[j]
            rates = self.rates[(job.exporter, 9 if job.flags & FLAG_V9 else 10, job.domain)]
            rows = np.flatnonzero((row_job == j) & missing & (sampler >= 0))
            for row in rows:
                rate[row] = rates.get(int(sampler[row]), rates.get(-1, 1))
        forced = job_override[row_job]
        rate = np.where(forced > 0, forced, rate)
        out.sampling_rate[:] = np.minimum(rate, 0xFFFFFFFF).astype(np.uint32)
        _scale(out)
        return out


def _scale(out: FlowColumns) -> None:
    """Renormalise: the estimate of the real traffic is the sampled count times the rate."""
    rate = out.sampling_rate.astype(np.uint64)
    np.multiply(out.raw_packets, rate, out=out.packets)
    np.multiply(out.raw_bytes, rate, out=out.bytes)


def allow_list(addresses: list[str] | None) -> frozenset[bytes] | None:
    """The exporter allow-list as column addresses (None: every exporter is accepted)."""
    if addresses is None:
        return None
    return frozenset(mapped_address(address) for address in addresses)
