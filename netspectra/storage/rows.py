"""Snapshots as insertable columns: the one conversion both ClickHouse writers share.

The Go writer stores a field a task does not key on as NULL, addresses as text and times as
whole seconds; we do the same, so either project reads the other's rows. Conversion is
per snapshot (not per packet) and vectorised where it matters: IPv4 text is built from the
byte matrix in one pass, IPv6 rows (rare) go through :func:`address_text`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from netspectra.engine.snapshot import FlowTable, Snapshot
from netspectra.fields import KeyField, address_text
from netspectra.packets import IPV4_MAPPED_PREFIX
from netspectra.storage.sql import FLOW_COLUMNS, HITTER_COLUMNS

_NS = 1_000_000_000
_MAPPED = np.frombuffer(IPV4_MAPPED_PREFIX, np.uint8)


@dataclass(slots=True)
class SnapshotRows:
    """One snapshot ready to insert; ``flows_written`` lets a retry skip the table already done."""

    group: str
    taken_at_ns: int
    flows: dict[str, list[Any]] = field(default_factory=dict)
    hitters: dict[str, list[Any]] = field(default_factory=dict)
    flows_written: bool = False

    @property
    def flow_count(self) -> int:
        return len(self.flows.get("Timestamp", ()))

    @property
    def hitter_count(self) -> int:
        return len(self.hitters.get("Timestamp", ()))


def addresses_text(raw: npt.NDArray[np.uint8]) -> list[str]:
    """Text of every 16-byte address row: dotted IPv4 for mapped rows, compressed IPv6 else."""
    if raw.shape[0] == 0:
        return []
    mapped = np.all(raw[:, :12] == _MAPPED, axis=1)
    if bool(mapped.all()):
        return [f"{a}.{b}.{c}.{d}" for a, b, c, d in raw[:, 12:].tolist()]
    out: list[str] = []
    for row, is_v4 in zip(raw, mapped.tolist(), strict=True):
        out.append(f"{row[12]}.{row[13]}.{row[14]}.{row[15]}" if is_v4 else address_text(row))
    return out


def _flow_columns(table: FlowTable, seconds: int, engine_id: str) -> dict[str, list[Any]]:
    n = len(table)
    keyed = set(table.key_fields)

    def nullable(key: KeyField, values: Any) -> list[Any]:
        if key not in keyed:
            return [None] * n
        return addresses_text(values) if values.ndim == 2 else values.tolist()

    return {
        "Timestamp": [seconds] * n,
        "TaskName": [table.task] * n,
        "SrcIP": nullable(KeyField.SRC_IP, table.src_ip),
        "DstIP": nullable(KeyField.DST_IP, table.dst_ip),
        "SrcPort": nullable(KeyField.SRC_PORT, table.src_port),
        "DstPort": nullable(KeyField.DST_PORT, table.dst_port),
        "Protocol": nullable(KeyField.PROTOCOL, table.protocol),
        "StartTime": (table.first_seen_ns // _NS).tolist(),
        "EndTime": (table.last_seen_ns // _NS).tolist(),
        "ByteCount": table.bytes.tolist(),
        "PacketCount": table.packets.tolist(),
        "EngineId": [engine_id] * n,
    }


def snapshot_rows(snapshot: Snapshot, engine_id: str = "") -> SnapshotRows:
    """Every flow and heavy hitter of ``snapshot`` as columns named as in the schema."""
    seconds = snapshot.taken_at_ns // _NS
    flows: dict[str, list[Any]] = {name: [] for name in FLOW_COLUMNS}
    for table in snapshot.flows:
        for name, values in _flow_columns(table, seconds, engine_id).items():
            flows[name].extend(values)
    hitters: dict[str, list[Any]] = {name: [] for name in HITTER_COLUMNS}
    for result in snapshot.sketches:
        for hitter in result.hitters:
            hitters["Timestamp"].append(seconds)
            hitters["TaskName"].append(result.task)
            hitters["Flow"].append(hitter.flow)
            hitters["Value"].append(int(hitter.value))
            hitters["Type"].append(int(hitter.kind))
            hitters["EngineId"].append(engine_id)
    return SnapshotRows(snapshot.group, snapshot.taken_at_ns, flows, hitters)
