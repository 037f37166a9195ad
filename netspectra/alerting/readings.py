"""What a rule's metric is at this moment, read from the store's merged view.

The query layer's answers already merge every engine's rows (counts and sizes add up, a spread
is the largest estimate), so the alerter sees one network whichever engine counted a packet.
Every value is the period's cumulative figure, as Go's alerter reads the engine's snapshot; rates
are made from successive readings by :mod:`.evaluation`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from netspectra.config.models import AlertRuleConfig
from netspectra.model.snapshot import HitterKind
from netspectra.storage.query import FlowFilter, QueryStore

_HITTER_KINDS = {
    "heavy_hitter_count": HitterKind.COUNT,
    "heavy_hitter_size": HitterKind.SIZE,
    "super_spreader_spread": HitterKind.SPREAD,
}


@dataclass(frozen=True, slots=True)
class Reading:
    """One series of a rule: ``key`` names the flow ("" for a task-wide metric)."""

    key: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()


class StoreReader:
    """Reads rule metrics through :class:`QueryStore`'s public queries; ``limit`` caps per-flow reads."""

    def __init__(self, store: QueryStore, *, limit: int = 100, flow_scan: int = 10_000) -> None:
        self.store = store
        self.limit = limit
        self.flow_scan = flow_scan

    async def read(self, rule: AlertRuleConfig) -> list[Reading]:
        """Raises StorageError when the store cannot answer (the check is then skipped, not resolved)."""
        metric = rule.metric
        if metric in ("total_packets", "total_bytes", "total_flows"):
            totals = await self.store.aggregate_flows(FlowFilter(task=rule.task_name))
            found = next((t for t in totals if t.task == rule.task_name), None)
            value = 0
            if found is not None:
                value = {
                    "total_packets": found.total_packets,
                    "total_bytes": found.total_bytes,
                    "total_flows": found.flow_count,
                }[metric]
            return [Reading("", float(value))]
        if metric in _HITTER_KINDS:
            # With a window the rate of any hitter matters, so read more than the largest few.
            limit = self.flow_scan if rule.window is not None else self.limit
            hitters = await self.store.heavy_hitters(rule.task_name, _HITTER_KINDS[metric], limit, None)
            return [Reading(flow, float(value), (("flow", flow),)) for flow, value in hitters]
        by = "packets" if metric == "flow_packets" else "bytes"
        limit = self.flow_scan if rule.window is not None else self.limit
        flows = await self.store.flow_counters(rule.task_name, by=by, limit=limit)
        readings = []
        for keys, packets, size in flows:
            key = flow_key(keys)
            readings.append(Reading(key, float(packets if by == "packets" else size), tuple(keys.items())))
        return readings


def flow_key(keys: Mapping[str, str]) -> str:
    """``SrcIP=10.0.0.1,DstPort=80`` (fields in key order): the flow part of an alert's identity."""
    return ",".join(f"{name}={value}" for name, value in keys.items())
