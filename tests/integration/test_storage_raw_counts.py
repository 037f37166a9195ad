"""The raw (as sent) counts of flow-export input, stored beside the renormalised ones, on both backends.

The rows are test_storage_latest's (two engines, a period reset, a late and a repeated batch), each
given raw counts that differ from its renormalised ones (as if every record had its own sampling
rate), plus a task written as Go's writers and our packet tasks write it: without raw counts. The
truth of the raw answers is the same brute force as the renormalised ones, run on the rows with
the raw counts in place of the counts: latest row per flow and engine, windows (the increments of
cumulative rows), several engines summed. A store made by the previous version (no raw columns,
the older flow_latest view) is migrated in place, its rows read as unsampled.
"""

from __future__ import annotations

from typing import Any

from netspectra.config.models import ClickHouseOptions
from netspectra.model.fields import KeyField
from netspectra.storage import sql
from netspectra.storage.clickhouse import ClickHouseBackend
from netspectra.storage.query import FlowFilter, QueryStore
from netspectra.storage.sql import EXTRAPOLATED_COLUMNS, FLOW_COLUMNS
from tests.fixtures.clickhouse import ClickHouseCluster
from tests.fixtures.schemas import previous_schema
from tests.integration.test_storage_latest import (
    RecordingBackend,
    Row,
    backend,
    latest_rows,
    make_rows,
    totals_truth,
)
from tests.integration.test_storage_windows import WINDOWS, totals, window_truth

__all__ = ["backend"]  # the fixture, parametrised over clickhouse-server and chdb


def sampled_batches() -> list[list[Row]]:
    """make_rows' batches, their counts taken as the raw ones and renormalised by a rate that
    varies with the count (3.5 on average; strictly monotone, so a window counts a flow by either
    alike), and a task ``go`` stored without raw counts (Go's writers, packet tasks: raw = counted)."""
    batches = [
        [
            {
                **row,
                "PacketCount": 3 * row["PacketCount"] + row["PacketCount"] // 2,
                "ByteCount": 3 * row["ByteCount"] + row["ByteCount"] // 2,
                "RawPacketCount": row["PacketCount"],
                "RawByteCount": row["ByteCount"],
            }
            for row in batch
        ]
        for batch in make_rows()
    ]
    go = [
        {**row, "TaskName": "go", "RawPacketCount": row["PacketCount"], "RawByteCount": row["ByteCount"]}
        for row in batches[0] + batches[3]
        if row["TaskName"] == "src"
    ]
    return [*batches, go]


async def load(backend: Any, batches: list[list[Row]]) -> list[Row]:
    """Insert as the writers do: a sampled task's rows with what renormalisation added."""
    store = QueryStore(backend, description="test")
    await store.tasks()  # creates the schema (and the view) before any row arrives
    for batch in batches:
        columns = {name: [row[name] for row in batch] for name in FLOW_COLUMNS}
        if batch[0]["TaskName"] != "go":
            columns["ExtrapolatedPackets"] = [row["PacketCount"] - row["RawPacketCount"] for row in batch]
            columns["ExtrapolatedBytes"] = [row["ByteCount"] - row["RawByteCount"] for row in batch]
        await backend.insert("flow_metrics", columns)
    return [row for batch in batches for row in batch]


def as_raw(rows: list[Row]) -> list[Row]:
    """The rows with their raw counts as the counts: the brute force of the raw answers."""
    return [{**row, "PacketCount": row["RawPacketCount"], "ByteCount": row["RawByteCount"]} for row in rows]


async def test_aggregate_flows_raw_counts_equal_brute_force(backend: RecordingBackend) -> None:
    rows = await load(backend, sampled_batches())
    store = QueryStore(backend, description="test")
    for query, keep in (
        (FlowFilter(), {}),  # flow_latest answers
        (FlowFilter(end=1060), {}),  # flow_metrics answers
        (FlowFilter(task="five", protocol=6), {"TaskName": "five", "Protocol": 6}),
    ):
        got = await store.aggregate_flows(query)
        assert got == totals_truth(rows, query.end, **keep), query
        raw = totals_truth(as_raw(rows), query.end, **keep)
        assert [(t.task, t.raw_packets, t.raw_bytes) for t in got] == [
            (t.task, t.total_packets, t.total_bytes) for t in raw
        ], query
    by_task = {t.task: t for t in await store.aggregate_flows(FlowFilter())}
    assert (by_task["go"].raw_packets, by_task["go"].raw_bytes) == (
        by_task["go"].total_packets,
        by_task["go"].total_bytes,
    )
    assert by_task["five"].raw_packets != by_task["five"].total_packets  # the test can fail


async def test_windows_raw_counts_equal_brute_force(backend: RecordingBackend) -> None:
    """A window is the difference of the cumulative rows at its two ends, for raw counts too."""
    rows = await load(backend, sampled_batches())
    store = QueryStore(backend, description="test")
    for start, end in WINDOWS:
        got = await store.aggregate_flows(FlowFilter(start=start, end=end))
        raw = {
            t.task: (t.total_packets, t.total_bytes)
            for t in totals(window_truth(as_raw(rows), start, end, {}))
        }
        assert {t.task: (t.raw_packets, t.raw_bytes) for t in got if t.raw_packets} == raw, (start, end)
        trace = await store.trace_flow("five", {KeyField.SRC_IP: "10.0.0.0"}, end, start)
        flow = window_truth(as_raw(rows), start, end, {"TaskName": "five", "SrcIP": "10.0.0.0"})
        if trace is not None and trace.raw_packets:
            assert (trace.raw_packets, trace.raw_bytes) == (
                sum(v[0] for v in flow.values()),
                sum(v[1] for v in flow.values()),
            ), (start, end)
        else:
            assert not flow, (start, end)


async def test_trace_flow_raw_counts_equal_brute_force(backend: RecordingBackend) -> None:
    rows = await load(backend, sampled_batches())
    store = QueryStore(backend, description="test")
    for keys, keep, end in (
        ({KeyField.SRC_IP: "10.0.0.0"}, {"SrcIP": "10.0.0.0"}, None),
        ({KeyField.DST_PORT: 0}, {"DstPort": 0}, None),
        ({KeyField.PROTOCOL: 0}, {"Protocol": 0}, 1060),  # from flow_metrics
    ):
        trace = await store.trace_flow("five", keys, end)
        chosen = latest_rows(rows, end, {"TaskName": "five", **keep})
        assert trace is not None and chosen
        assert (trace.packets, trace.raw_packets, trace.raw_bytes) == (
            sum(r["PacketCount"] for r in chosen),
            sum(r["RawPacketCount"] for r in chosen),
            sum(r["RawByteCount"] for r in chosen),
        ), keys


async def test_a_store_of_the_previous_version_is_migrated_in_place(backend: RecordingBackend) -> None:
    for statement in previous_schema():
        await backend.execute(statement)
    older_view = sql.LATEST_VIEW_SIPHASH.replace(", ExtrapolatedPackets, ExtrapolatedBytes FROM", " FROM")
    await backend.execute(older_view)
    await backend.execute(sql.LATEST_FILLED)
    batches = make_rows()
    for batch in batches[:3]:  # stored by the previous version
        await backend.insert("flow_metrics", {name: [row[name] for row in batch] for name in FLOW_COLUMNS})
    columns = await backend.select(sql.TABLE_COLUMNS_QUERY)
    assert not {name for _, name in columns} & set(EXTRAPOLATED_COLUMNS)  # it was the previous schema
    rows = await load(backend, [[{**row, "RawPacketCount": 1, "RawByteCount": 2} for row in batches[3]]])
    rows = as_stored_before(batches[:3]) + rows
    present = await backend.select(sql.TABLE_COLUMNS_QUERY)
    for table in ("flow_metrics", "flow_latest"):
        assert set(EXTRAPOLATED_COLUMNS) <= {name for t, name in present if t == table}
    store = QueryStore(backend, description="test")
    for query in (FlowFilter(), FlowFilter(end=1060)):  # flow_latest (view made again), flow_metrics
        got = await store.aggregate_flows(query)
        assert got == totals_truth(rows, query.end)
        raw = totals_truth(as_raw(rows), query.end)
        assert [(t.raw_packets, t.raw_bytes) for t in got] == [(t.total_packets, t.total_bytes) for t in raw]
    # the schema check again is a no-op: nothing is dropped or back-filled twice
    await sql.ensure_schema(backend)
    assert await store.aggregate_flows(FlowFilter()) == totals_truth(rows)


async def test_a_cluster_of_the_previous_version_is_migrated_in_place(
    clickhouse_cluster: ClickHouseCluster, cluster_database: str
) -> None:
    """Two shards (local tables + Distributed ones, the view on every node) made by the previous
    version: the ALTERs reach every node's local and Distributed tables, the view is made again on
    each, and the answers over the shards hold the raw counts of rows stored after and before."""
    first = clickhouse_cluster.servers[0]
    options = {"host": first.host, "port": first.tcp_port, "database": cluster_database}
    backend = ClickHouseBackend(
        ClickHouseOptions.model_validate({**options, "cluster": ClickHouseCluster.name})
    )
    try:
        for statement in previous_schema():
            await backend.execute(statement)
        await backend.execute(
            sql.LATEST_VIEW_SIPHASH.replace(", ExtrapolatedPackets, ExtrapolatedBytes FROM", " FROM")
        )
        await backend.execute(sql.LATEST_FILLED)
        batches = sampled_batches()
        old = batches[:3]
        for batch in old:
            await backend.insert(
                "flow_metrics", {name: [row[name] for row in batch] for name in FLOW_COLUMNS}
            )
        rows = await load(backend, batches[3:])
        rows = as_stored_before(old) + rows
        for server in clickhouse_cluster.servers:
            for table in ("flow_metrics", "flow_metrics_local", "flow_latest", "flow_latest_local"):
                where = f"database = '{cluster_database}' AND table = '{table}'"
                names = server.query(f"SELECT name FROM system.columns WHERE {where}").split()
                assert set(EXTRAPOLATED_COLUMNS) <= set(names), (server.tcp_port, table)
        store = QueryStore(backend, description="test")
        for query in (FlowFilter(), FlowFilter(end=1060)):
            got = await store.aggregate_flows(query)
            assert got == totals_truth(rows, query.end)
            raw = totals_truth(as_raw(rows), query.end)
            assert [(t.raw_packets, t.raw_bytes) for t in got] == [
                (t.total_packets, t.total_bytes) for t in raw
            ]
    finally:
        await backend.close()


def as_stored_before(batches: list[list[Row]]) -> list[Row]:
    """Rows a previous version stored (no raw counts): they read as unsampled."""
    return [
        {**row, "RawPacketCount": row["PacketCount"], "RawByteCount": row["ByteCount"]}
        for batch in batches
        for row in batch
    ]
