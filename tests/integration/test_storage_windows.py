"""Window answers (start_time set) equal a brute-force evaluation over the same rows, on both backends.

The rows are test_storage_latest's: two engines, snapshots at 1000/1060 (period 1) and 1120/1180
(period 2, counters restarted, a third of the flows back), a late batch and a repeated one, NULL
fields, port and protocol 0. The truth uses what the generator knows and the query does not:
where the period boundary lies. Per flow and engine, a window's traffic is, per period, the
period's latest row ≤ end minus its latest row ≤ start; then summed over engines, each flow once.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from netspectra.errors import QueryError
from netspectra.model.fields import KeyField
from netspectra.storage.query import FlowFilter, QueryStore, TaskTotals
from tests.integration.test_storage_latest import IDENTITY, RecordingBackend, Row, backend, load, make_rows

__all__ = ["backend"]  # the fixture, parametrised over clickhouse-server and chdb

PERIOD_2 = 1120  # first snapshot of the second period (make_rows)
Flow = tuple[Any, ...]


def _latest(rows: list[Row], upto: int, period: int) -> Row | None:
    chosen = [r for r in rows if r["Timestamp"] <= upto and (r["Timestamp"] >= PERIOD_2) == (period == 2)]
    return max(chosen, key=lambda r: r["Timestamp"]) if chosen else None


def window_truth(
    rows: list[Row], start: int, end: int, keep: dict[str, Any]
) -> dict[Flow, tuple[int, int, int, int]]:
    """flow (without EngineId) → (packets, bytes, first seen, last seen) counted in (start, end]."""
    per_engine: dict[tuple[Any, ...], list[Row]] = {}
    for row in rows:
        if all(row[name] == value for name, value in keep.items()):
            per_engine.setdefault(tuple(row[name] for name in IDENTITY), []).append(row)
    flows: dict[Flow, tuple[int, int, int, int]] = {}
    for identity, own in per_engine.items():
        packets = size = 0
        first: int | None = None
        last = 0
        for period in (1, 2):
            at_end, at_start = _latest(own, end, period), _latest(own, start, period)
            if at_end is None:
                continue
            added = at_end["PacketCount"] - (at_start["PacketCount"] if at_start else 0)
            if added == 0:
                continue
            packets += added
            size += at_end["ByteCount"] - (at_start["ByteCount"] if at_start else 0)
            last = max(last, at_end["EndTime"])
            if first is None:  # already active at the start: the window's start; else its first packet
                first = -1 if at_start else at_end["StartTime"]
        if packets == 0:
            continue
        assert first is not None
        first = min(start, last) if first == -1 else first
        flow = tuple(value for name, value in zip(IDENTITY, identity, strict=True) if name != "EngineId")
        before = flows.get(flow)
        if before is not None:
            first = min(first, before[2])
            last = max(last, before[3])
            packets += before[0]
            size += before[1]
        flows[flow] = (packets, size, first, last)
    return flows


def totals(flows: dict[Flow, tuple[int, int, int, int]]) -> list[TaskTotals]:
    per_task: dict[str, list[int]] = {}
    for flow, (packets, size, _, _) in flows.items():
        entry = per_task.setdefault(str(flow[0]), [0, 0, 0])
        entry[0] += size
        entry[1] += packets
        entry[2] += 1
    return [TaskTotals(task, *entry) for task, entry in sorted(per_task.items())]


#: Inside a period, across the reset, between snapshots, at snapshots, before and after every row.
WINDOWS = [
    (0, 999),
    (0, 1000),
    (999, 1060),
    (1000, 1060),
    (1030, 1100),
    (1000, 1120),
    (1060, 1150),
    (1030, 1180),
    (1120, 1180),
    (1150, 1180),
    (1180, 5000),
    (0, 5000),
]


async def test_aggregate_flows_windows_equal_brute_force(backend: RecordingBackend) -> None:
    rows = await load(backend, make_rows())
    store = QueryStore(backend, description="test")
    for start, end in WINDOWS:
        for query, keep in (
            (FlowFilter(start=start, end=end), {}),
            (FlowFilter(start=start, end=end, task="five", protocol=0), {"TaskName": "five", "Protocol": 0}),
            (FlowFilter(start=start, end=end, src_ip="172.16.0.3"), {"SrcIP": "172.16.0.3"}),
        ):
            assert await store.aggregate_flows(query) == totals(window_truth(rows, start, end, keep)), query
    # the whole store as one window is the unbounded answer (every flow once)
    whole = await store.aggregate_flows(FlowFilter(start=1, end=5000))
    assert [(t.task, t.flow_count) for t in whole] == [("five", 61), ("src", 21)]
    across = await store.aggregate_flows(FlowFilter(start=1060, end=1120))  # the reset's closing rows
    assert across and all(t.total_packets > 0 for t in across)
    # a start without an end: up to now
    assert await store.aggregate_flows(FlowFilter(start=1100)) == totals(window_truth(rows, 1100, 9999, {}))


async def test_trace_flow_windows_equal_brute_force(backend: RecordingBackend) -> None:
    rows = await load(backend, make_rows())
    store = QueryStore(backend, description="test")
    keys_cases: list[tuple[dict[KeyField, str | int], dict[str, Any]]] = [
        ({KeyField.SRC_IP: "10.0.0.0"}, {"SrcIP": "10.0.0.0"}),  # back in period 2
        ({KeyField.SRC_IP: "10.0.1.1"}, {"SrcIP": "10.0.1.1"}),  # period 1 only
        ({KeyField.DST_PORT: 0}, {"DstPort": 0}),
        ({KeyField.DST_IP: "192.168.1.3"}, {"DstIP": "192.168.1.3"}),
    ]
    for (start, end), (keys, keep) in itertools.product(WINDOWS, keys_cases):
        truth = window_truth(rows, start, end, {"TaskName": "five", **keep})
        trace = await store.trace_flow("five", keys, end, start)
        if not truth:
            assert trace is None, (start, end, keys)
            continue
        assert trace is not None, (start, end, keys)
        assert (trace.flows, trace.packets, trace.bytes, trace.first_seen, trace.last_seen) == (
            len(truth),
            sum(v[0] for v in truth.values()),
            sum(v[1] for v in truth.values()),
            min(v[2] for v in truth.values()),
            max(v[3] for v in truth.values()),
        ), (start, end, keys)


async def test_a_window_ending_before_it_starts_is_refused(backend: RecordingBackend) -> None:
    store = QueryStore(backend, description="test")
    with pytest.raises(QueryError, match=r"start_time .* is after end_time"):
        await store.aggregate_flows(FlowFilter(start=1100, end=1000))
    with pytest.raises(QueryError, match=r"start_time .* is after end_time"):
        await store.trace_flow("five", {KeyField.SRC_IP: "10.0.0.0"}, 1000, 1100)
    assert await store.aggregate_flows(FlowFilter(start=1060, end=1060)) == []  # empty, not an error
