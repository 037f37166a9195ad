"""Retention on both backends: old rows leave flow_metrics, heavy_hitters AND flow_latest, and the
answers equal a brute-force evaluation over the rows that are kept.

The ClickHouse server here is 18.16 (no TTL: monthly partitions are dropped); chdb has TTL, which
the server applies in its merges, so the test forces those merges (OPTIMIZE ... FINAL) before
reading, as time would. On a cluster of two 18.16 shards the partitions go from each shard's local
tables (the Distributed ones hold nothing), through the real writers too, and the api's answers
are the truth of the packets the kept snapshots counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from netspectra.config.models import ClickHouseOptions
from netspectra.model.snapshot import HitterKind
from netspectra.storage.clickhouse import ClickHouseBackend
from netspectra.storage.context import StorageContext
from netspectra.storage.query import FlowFilter, QueryStore
from netspectra.storage.registry import build_writer
from netspectra.storage.retention import (
    apply_retention,
    month_end,
    month_start,
    server_version,
    supports_ttl,
)
from netspectra.storage.sql import HITTER_COLUMNS, RUN_COLUMNS, STATE_COLUMNS, SqlBackend, ensure_schema
from tests.fixtures.clickhouse import ClickHouseCluster
from tests.integration.api_truth import EXACT_TASKS, T0, hitters_truth, snapshots
from tests.integration.test_storage_cluster import PACKETS, answers_of, settings_for, store
from tests.integration.test_storage_latest import RecordingBackend, backend, load, totals_truth

__all__ = ["backend"]  # the two-backend fixture

OLD = 1_577_836_800 + 3600  # 2020-01-01 01:00 UTC: a month long past
THIRTY_DAYS = 30 * 86_400


def rows_at(now: int) -> list[list[dict[str, Any]]]:
    """Flows only in the old month, flows in both, flows only recent (two snapshots each)."""
    batches = []
    for at in (OLD, OLD + 60, now - 120, now - 60):
        old = at < now - THIRTY_DAYS
        batch = []
        for i in range(12):
            if (old and i >= 8) or (not old and i < 4):
                continue  # 0-3 old only, 4-7 in both, 8-11 recent only
            batch.append(
                {
                    "Timestamp": at,
                    "TaskName": "src",
                    "SrcIP": f"10.0.0.{i}",
                    "DstIP": None,
                    "SrcPort": None,
                    "DstPort": None,
                    "Protocol": None,
                    "StartTime": at - 30,
                    "EndTime": at,
                    "ByteCount": 100 * (i + 1) + at % 7,
                    "PacketCount": i + 1 + at % 5,
                    "EngineId": "e",
                }
            )
        batches.append(batch)
    return batches


def state_rows(at_times: list[int], names: tuple[str, ...] = STATE_COLUMNS) -> dict[str, list[Any]]:
    """sketch_states (or, with RUN_COLUMNS, sketch_state_runs) rows ending at ``at_times`` (empty
    states: retention never reads them)."""
    values = {
        "TaskName": "cm", "EngineId": "e", "PeriodStart": 0, "Epoch": 0, "EpochStart": 0,
        "Timestamp": 0, "Algorithm": "count_min", "StateSize": 0, "StateCheck": 0, "State": b"",
        "FirstEpoch": 0, "LastEpoch": 1, "FirstTimestamp": 0, "Covers": 0,
    }  # fmt: skip
    columns: dict[str, list[Any]] = {name: [] for name in names}
    for epoch, at in enumerate(at_times):
        row = {**values, "PeriodStart": at - 60, "Epoch": epoch, "EpochStart": at - 60, "Timestamp": at,
               "FirstTimestamp": at - 60}  # fmt: skip
        for name in names:
            columns[name].append(row[name])
    return columns


async def fill_old_and_new(backend: SqlBackend, now: int) -> list[dict[str, Any]]:
    """rows_at's flow rows, a hitter and a sketch state in the old month and recent ones."""
    rows = await load(backend, rows_at(now))
    hitters = [(OLD, "old-flow", 5), (now - 60, "new-flow", 7)]
    await backend.insert(
        "heavy_hitters",
        {
            name: [
                {"Timestamp": at, "TaskName": "cm", "Flow": flow, "Value": value, "Type": 0, "EngineId": "e"}[
                    name
                ]
                for at, flow, value in hitters
            ]
            for name in HITTER_COLUMNS
        },
    )
    await backend.insert("sketch_states", state_rows([OLD, now - 60]))
    await backend.insert("sketch_state_runs", state_rows([OLD, now - 60], RUN_COLUMNS))
    return rows


async def check_kept(backend: SqlBackend, rows: list[dict[str, Any]], now: int) -> None:
    """The answers are those of the kept rows exactly, and no old row is left in any table."""
    store = QueryStore(backend, description="test")
    kept = [row for row in rows if row["Timestamp"] >= now - THIRTY_DAYS]
    assert await store.aggregate_flows(FlowFilter()) == totals_truth(kept)
    assert [t.flow_count for t in await store.aggregate_flows(FlowFilter())] == [8]
    for table in ("flow_metrics", "flow_latest", "heavy_hitters", "sketch_states", "sketch_state_runs"):
        stale = await backend.select(
            f"SELECT count() FROM {table} WHERE Timestamp < toDateTime({now - THIRTY_DAYS})"
        )
        assert int(stale[0][0]) == 0, table
    for table in ("sketch_states", "sketch_state_runs"):  # the recent rows stay
        assert int((await backend.select(f"SELECT count() FROM {table}"))[0][0]) == 1, table
    assert await store.heavy_hitters("cm", HitterKind.COUNT, 10, None) == [("new-flow", 7)]


async def test_retention_drops_old_rows_from_every_table(backend: RecordingBackend) -> None:
    now = int(time.time())
    rows = await fill_old_and_new(backend, now)
    store = QueryStore(backend, description="test")
    assert await store.aggregate_flows(FlowFilter()) == totals_truth(rows)  # nothing dropped yet

    done = await apply_retention(backend, THIRTY_DAYS, now_s=now)
    if await supports_ttl(backend):
        assert done.startswith("TTL")
        for table in ("flow_metrics", "heavy_hitters", "sketch_states", "sketch_state_runs", "flow_latest"):
            await backend.execute(f"OPTIMIZE TABLE {table} FINAL")  # the TTL merge, without waiting for it
    else:
        assert done.startswith("no table TTL on ClickHouse 18.16"), done  # the fallback says so
        for dropped in (
            "flow_metrics 202001",
            "heavy_hitters 202001",
            "sketch_states 202001",
            "sketch_state_runs 202001",
        ):
            assert dropped in done, done
    await check_kept(backend, rows, now)
    # a second pass finds nothing more to do, and answers stay the same
    again = await apply_retention(backend, THIRTY_DAYS, now_s=now)
    assert again.startswith("TTL") or again.endswith("nothing old enough to drop"), again
    await check_kept(backend, rows, now)


@pytest.fixture
async def on_cluster(
    clickhouse_cluster: ClickHouseCluster, cluster_database: str
) -> AsyncIterator[ClickHouseBackend]:
    """A backend over both shards (through the first), its schema created."""
    first = clickhouse_cluster.servers[0]
    options = ClickHouseOptions(
        host=first.host, port=first.tcp_port, database=cluster_database, cluster=ClickHouseCluster.name
    )
    backend = ClickHouseBackend(options)
    await ensure_schema(backend)
    try:
        yield backend
    finally:
        await backend.close()


def local_count(cluster: ClickHouseCluster, database: str, table: str, where: str = "1") -> list[int]:
    """Rows of ``table``'s local table on each shard, read over HTTP (not through the code under test)."""
    return [
        int(server.query(f"SELECT count() FROM {database}.{table}_local WHERE {where}"))
        for server in cluster.servers
    ]


async def test_retention_on_a_cluster_drops_old_rows_on_every_shard(
    on_cluster: ClickHouseBackend, clickhouse_cluster: ClickHouseCluster, cluster_database: str
) -> None:
    now = int(time.time())
    rows = await fill_old_and_new(on_cluster, now)
    old = f"Timestamp < toDateTime({now - THIRTY_DAYS})"
    for table in ("flow_metrics", "flow_latest"):
        assert all(local_count(clickhouse_cluster, cluster_database, table, old)), table  # on both shards

    done = await apply_retention(on_cluster, THIRTY_DAYS, now_s=now)
    assert done.count("no table TTL on ClickHouse 18.16") == 2, done  # each node names its fallback
    assert done.count("flow_metrics 202001") == 2 and "flow_latest: " in done, done
    for table in ("flow_metrics", "flow_latest", "heavy_hitters", "sketch_states", "sketch_state_runs"):
        assert local_count(clickhouse_cluster, cluster_database, table, old) == [0, 0], table
    assert all(local_count(clickhouse_cluster, cluster_database, "flow_metrics"))  # the recent rows stay
    await check_kept(on_cluster, rows, now)
    await apply_retention(on_cluster, THIRTY_DAYS, now_s=now)
    await check_kept(on_cluster, rows, now)


async def test_the_writers_retention_on_a_cluster_keeps_the_truth_of_the_kept_snapshots(
    clickhouse_cluster: ClickHouseCluster,
    cluster_database: str,
    on_cluster: ClickHouseBackend,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Rows of 2020 sit in the cluster; engine e1 writes its snapshots (of T0, late 2023) through
    writers whose retention keeps everything after 2022: the 2020 rows go from both shards, the log
    says the 18.16 fallback was taken, and the api answers the truth of e1's packets."""
    now = int(time.time())
    kept_from = 1_640_995_200  # 2022-01-01
    await fill_old_and_new(on_cluster, now)  # 2020 rows (and recent ones of other tasks)
    retention = now - kept_from
    config = store(
        clickhouse_cluster.servers[0], cluster_database, tmp_path / "spool", ClickHouseCluster.name
    )
    config["clickhouse"]["retention"] = f"{retention}s"
    settings = settings_for(config)
    context = StorageContext(engine_id="e1")
    exact = build_writer(settings.aggregator.exact.writers[0], "exact", context)
    sketch = build_writer(settings.aggregator.sketch.writers[0], "sketch", context)
    exact0, exact1, sketch0, sketch1 = snapshots(PACKETS)
    with caplog.at_level(logging.INFO, logger="netspectra.storage.spool"):
        for writer, written in ((exact, (exact0, exact1)), (sketch, (sketch0, sketch1))):
            for snapshot in written:
                await writer.write(snapshot)
            await writer.flush(60)  # type: ignore[attr-defined]
            await writer.close()
    await context.close()
    logged = [r.getMessage() for r in caplog.records if "retention" in r.getMessage()]
    assert logged and all("no table TTL on ClickHouse 18.16.1 (it came in 19.6)" in line for line in logged)

    before = f"Timestamp < toDateTime({kept_from})"
    for table in ("flow_metrics", "flow_latest", "heavy_hitters", "sketch_states", "sketch_state_runs"):
        assert local_count(clickhouse_cluster, cluster_database, table, before) == [0, 0], table
    assert month_start(now - retention) <= T0  # the snapshots' month is kept
    answers = await answers_of(settings)
    for task in EXACT_TASKS:
        assert answers.aggregate[task][:2] == (sum(p.length for p in PACKETS), len(PACKETS)), task
    truth = hitters_truth(PACKETS)
    for kind in HitterKind:
        task = "ss_dst" if kind is HitterKind.SPREAD else "cm_src"
        expected = sorted(truth[kind].items(), key=lambda item: (-item[1], item[0]))
        assert answers.hitters[task, int(kind)] == expected, kind


def test_month_end_and_version_parsing() -> None:
    assert month_end("202001") == 1_580_515_200  # 2020-02-01 00:00 UTC
    assert month_end("'202012'") == 1_609_459_200  # 2021-01-01
    assert month_end("tuple()") is None and month_end("202013") is None
    assert server_version("18.16.1") == (18, 16) and server_version("24.8.4.13") == (24, 8)
    assert server_version("unknown") == (0, 0)
    assert month_start(1_580_515_199) == 1_577_836_800 and month_start(1_580_515_200) == 1_580_515_200
