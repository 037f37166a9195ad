"""One decoder for every export protocol: the version is read per datagram.

NetFlow v5/v9 and IPFIX start with a 16-bit version (5, 9, 10); sFlow v5 with a 32-bit version
5 (``00 00 00 05``), whose first 16 bits (0) no NetFlow version has. So the split needs no
port convention, and NetFlow sent to sFlow's port (tcpdump's corpus has some) still decodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from netspectra.capture.flows.datagrams import DatagramBatch, ExporterTally
from netspectra.capture.flows.netflow import NetFlowDecoder
from netspectra.capture.flows.sflow import SFlowDecoder
from netspectra.model.flows import FlowColumns


def is_sflow(batch: DatagramBatch) -> np.ndarray:
    """Per datagram: True when it starts with sFlow's 32-bit version 5."""
    starts = batch.offsets
    ok = (batch.lengths >= 4) & (starts + 4 <= batch.buf.shape[0])
    head = np.zeros(len(batch), np.uint32)
    if ok.any():
        at = starts[ok]
        b = batch.buf
        head[ok] = (
            (b[at].astype(np.uint32) << 24)
            | (b[at + 1].astype(np.uint32) << 16)
            | (b[at + 2].astype(np.uint32) << 8)
            | b[at + 3]
        )
    return head == 5


#: Per-exporter totals kept beside the records: what was sent (raw) and what it estimates.
WEIGHT_TOTALS = ("raw_packets", "raw_bytes", "packets", "bytes")


def tally_weights(tally: ExporterTally, flows: FlowColumns) -> None:
    """Add each exporter's raw and renormalised packets/bytes of ``flows`` to ``tally``.

    Why here: the engine's tables and the store keep the renormalised estimates only (Go's
    flow_metrics columns); the raw values the exporter sent must stay readable somewhere, so they
    are kept as per-exporter totals (docs/flow-export.md, "Raw and renormalised"). One group-by
    per batch (a router's batch is one exporter: a single sum), exact in uint64.
    """
    n = len(flows)
    if not n:
        return
    keys = flows.exporter
    if (keys == keys[0]).all():
        exporter = keys[0].tobytes()
        for name in WEIGHT_TOTALS:
            tally.add(exporter, name, int(getattr(flows, name).sum(dtype=np.uint64)))
        return
    pairs = np.ascontiguousarray(keys).view(np.uint64).reshape(n, 2)
    order = np.lexsort((pairs[:, 1], pairs[:, 0]))
    ordered = pairs[order]
    starts = np.flatnonzero(np.r_[True, (ordered[1:] != ordered[:-1]).any(axis=1)])
    sums = {name: np.add.reduceat(getattr(flows, name)[order], starts) for name in WEIGHT_TOTALS}
    for k, start in enumerate(starts):
        exporter = keys[order[start]].tobytes()
        for name in WEIGHT_TOTALS:
            tally.add(exporter, name, int(sums[name][k]))


def _subset(batch: DatagramBatch, rows: np.ndarray) -> DatagramBatch:
    return DatagramBatch(
        batch.buf, batch.offsets[rows], batch.lengths[rows], batch.exporter[rows], batch.recv_ns[rows]
    )


class ExportDecoder:
    """NetFlow v5/v9/IPFIX and sFlow v5 in one; ``netflow`` and ``sflow`` keep their own stats."""

    def __init__(
        self,
        *,
        allow: frozenset[bytes] | None = None,
        sampling_overrides: Mapping[bytes, int] | None = None,
        pending_ttl_s: float = 60.0,
        max_pending: int = 4096,
        template_path: Path | None = None,
    ) -> None:
        self.netflow = NetFlowDecoder(
            allow=allow,
            sampling_overrides=sampling_overrides,
            pending_ttl_s=pending_ttl_s,
            max_pending=max_pending,
            template_path=template_path,
        )
        self.sflow = SFlowDecoder(allow=allow, sampling_overrides=sampling_overrides)

    def decode(self, batch: DatagramBatch) -> FlowColumns:
        """Every record of the batch: NetFlow/IPFIX first, then sFlow (each in arrival order)."""
        if not len(batch):
            return FlowColumns.empty(0)
        sflow = is_sflow(batch)
        if not sflow.any():
            return self._tallied(self.netflow.decode(batch), self.netflow.stats.exporters)
        if sflow.all():
            return self._tallied(self.sflow.decode(batch), self.sflow.stats.exporters)
        parts = [
            self._tallied(self.netflow.decode(_subset(batch, ~sflow)), self.netflow.stats.exporters),
            self._tallied(self.sflow.decode(_subset(batch, sflow)), self.sflow.stats.exporters),
        ]
        return FlowColumns.concat(parts)

    @staticmethod
    def _tallied(flows: FlowColumns, tally: ExporterTally) -> FlowColumns:
        tally_weights(tally, flows)
        return flows

    def stats(self) -> dict[str, object]:
        return {"netflow": self.netflow.stats.as_dict(), "sflow": self.sflow.stats.as_dict()}
