"""Schema compatibility with Go2NetSpectra, on both backends.

Go's own CREATE TABLE text (no EngineId) is run first, as if its writer had made the tables; our
writer then adds EngineId with a default, Go's column list still inserts, and our rows store
NULL for the fields a task does not key on, exactly as Go's writer does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netspectra.config.models import WriterConfig
from netspectra.storage.context import StorageContext
from netspectra.storage.query import FlowFilter, QueryStore, TaskTotals
from netspectra.storage.registry import build_writer
from netspectra.storage.sql import SqlBackend, ensure_schema
from tests.fixtures.clickhouse import ClickHouseServer
from tests.integration.api_truth import make_packets, snapshots

# Verbatim from Go2NetSpectra internal/engine/impl/exact/writer_clickhouse.go and the issue's
# heavy_hitters definition.
GO_FLOW_METRICS = """CREATE TABLE IF NOT EXISTS flow_metrics (
    Timestamp   DateTime, TaskName    String, SrcIP       Nullable(String), DstIP       Nullable(String),
    SrcPort     Nullable(UInt16), DstPort     Nullable(UInt16), Protocol    Nullable(UInt8),
    StartTime   DateTime, EndTime     DateTime, ByteCount   UInt64, PacketCount UInt64
) ENGINE = MergeTree() PARTITION BY toYYYYMM(Timestamp) ORDER BY (TaskName, Timestamp)"""
GO_HEAVY_HITTERS = """CREATE TABLE IF NOT EXISTS heavy_hitters (
    Timestamp DateTime, TaskName String, Flow String, Value UInt64, Type UInt8
) ENGINE = MergeTree() PARTITION BY toYYYYMM(Timestamp) ORDER BY (TaskName, Timestamp)"""
GO_INSERT = (
    "INSERT INTO flow_metrics (Timestamp, TaskName, SrcIP, DstIP, SrcPort, DstPort, Protocol, StartTime,"
    " EndTime, ByteCount, PacketCount) VALUES (toDateTime(1700000000), 'go_task', '1.1.1.1', NULL, NULL,"
    " NULL, NULL, toDateTime(1700000000), toDateTime(1700000000), 10, 1)"
)


@pytest.fixture(params=["clickhouse", "embedded"])
async def writer_and_backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[tuple]:
    if request.param == "clickhouse":
        server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
        database = request.getfixturevalue("clickhouse_database")
        options = {
            "host": server.host,
            "port": server.tcp_port,
            "database": database,
            "queue_dir": str(tmp_path),
        }
        config = WriterConfig.model_validate({"type": "clickhouse", "clickhouse": options})
    else:
        config = WriterConfig.model_validate({"type": "embedded", "embedded": {"path": str(tmp_path / "db")}})
    context = StorageContext(engine_id="engine-7")
    writer = build_writer(config, "exact", context)
    try:
        if request.param == "clickhouse":
            # Over HTTP: asynch's native INSERT waits for a data block, inline VALUES would hang.
            def run_go(sql: str) -> None:
                server.query(sql.replace("INTO flow_metrics", f"INTO {database}.flow_metrics"))
        else:

            def run_go(sql: str) -> None:
                writer._backend._open().query(sql)  # type: ignore[attr-defined]

        yield writer, writer._backend, run_go  # type: ignore[attr-defined]
    finally:
        await writer.close()
        await context.close()


async def test_go_tables_gain_engine_id_and_keep_accepting_go_inserts(writer_and_backend: tuple) -> None:
    writer, backend, run_go = writer_and_backend
    backend: SqlBackend
    await backend.execute(GO_FLOW_METRICS)
    await backend.execute(GO_HEAVY_HITTERS)
    exact0, _, sketch0, _ = snapshots(make_packets(count=200))
    await writer.write(exact0)
    await writer.write(sketch0)
    await writer.flush(60)
    run_go(GO_INSERT)
    columns = await backend.select(
        "SELECT table, name, default_expression FROM system.columns WHERE database = currentDatabase() "
        "AND name = 'EngineId' AND table IN ('flow_metrics', 'heavy_hitters') ORDER BY table"
    )
    assert [tuple(row) for row in columns] == [
        ("flow_metrics", "EngineId", "''"),
        ("heavy_hitters", "EngineId", "''"),
    ]
    rows = await backend.select(
        "SELECT TaskName, EngineId, countIf(SrcIP IS NULL), countIf(DstIP IS NULL), countIf(SrcPort IS NULL),"
        " countIf(DstPort IS NULL), countIf(Protocol IS NULL), count() FROM flow_metrics"
        " GROUP BY TaskName, EngineId ORDER BY TaskName"
    )
    by_task = {row[0]: tuple(int(x) if not isinstance(x, str) else x for x in row[1:]) for row in rows}
    n = {table.task: len(table) for table in exact0.flows}
    assert by_task == {
        "five_tuple": ("engine-7", 0, 0, 0, 0, 0, n["five_tuple"]),
        "go_task": ("", 0, 1, 1, 1, 1, 1),
        "per_dst_port": (
            "engine-7",
            n["per_dst_port"],
            n["per_dst_port"],
            n["per_dst_port"],
            0,
            n["per_dst_port"],
            n["per_dst_port"],
        ),
        "per_src_ip": (
            "engine-7",
            0,
            n["per_src_ip"],
            n["per_src_ip"],
            n["per_src_ip"],
            n["per_src_ip"],
            n["per_src_ip"],
        ),
    }
    hitters = await backend.select("SELECT count(), uniqExact(EngineId) FROM heavy_hitters")
    assert [tuple(int(x) for x in row) for row in hitters] == [
        (sum(len(result.hitters) for result in sketch0.sketches), 1)
    ]


GO_INSERT_LATER = GO_INSERT.replace(
    "toDateTime(1700000000), 'go_task'", "toDateTime(1700000060), 'go_task'"
).replace("10, 1)", "30, 3)")
GO_INSERT_OTHER = GO_INSERT.replace("'1.1.1.1'", "'2.2.2.2'").replace("10, 1)", "5, 2)")


async def test_rows_go_stored_before_us_are_back_filled_into_flow_latest(writer_and_backend: tuple) -> None:
    _, backend, run_go = writer_and_backend
    backend: SqlBackend
    await backend.execute(GO_FLOW_METRICS)
    await backend.execute(GO_HEAVY_HITTERS)
    run_go(GO_INSERT)  # Go wrote these before NetSpectra ever opened the store
    run_go(GO_INSERT_OTHER)
    tables = await backend.select(
        "SELECT name FROM system.tables WHERE database = currentDatabase()"
        " AND startsWith(name, 'flow_latest')"
    )
    assert tables == []  # so the rows above can only reach flow_latest through the back-fill
    store = QueryStore(backend, description="test")
    # go_task: flow 1.1.1.1 (10 B, 1 pkt) and flow 2.2.2.2 (5 B, 2 pkts), both stored by Go
    assert await store.aggregate_flows(FlowFilter()) == [TaskTotals("go_task", 15, 3, 2)]
    # Go keeps writing after the view exists: its rows reach flow_latest through the view
    run_go(GO_INSERT_LATER)
    assert await store.aggregate_flows(FlowFilter()) == [TaskTotals("go_task", 35, 5, 2)]
    # a second start does not back-fill again (the marker table records the first one)
    await ensure_schema(backend)
    counted = await backend.select("SELECT count() FROM flow_latest")
    assert [int(row[0]) for row in counted] == [3]
    # and every answer above came from flow_latest: no end time, no collision
    rows = await backend.select("SELECT count(), uniqExact(FlowKey), uniqExact(FlowCheck) FROM flow_latest")
    assert [tuple(int(x) for x in row) for row in rows] == [(3, 2, 2)]
