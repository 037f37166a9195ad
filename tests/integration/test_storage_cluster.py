"""A ClickHouse cluster of two shards answers what one server answers, and what the truth says.

Two clickhouse-server 18.16 processes on loopback are the two shards of ``netspectra_test`` (no
replication, no ZooKeeper: the writers create the tables on each node). Two engines' snapshots
go through the writers into the cluster (``clickhouse.cluster``) and, the same snapshots, into one
server; then the same gRPC queries go to an api over each. The answers must be equal, and for the
engine whose traffic is known exactly they must equal the brute-force truth. The rows must really
be spread over both shards, with every flow's rows (flow_metrics and flow_latest) on one shard.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status

from netspectra.api.role import ApiRole
from netspectra.config.models import ClickHouseOptions, Settings
from netspectra.errors import StorageRefusedError
from netspectra.model.snapshot import HitterKind
from netspectra.storage.clickhouse import ClickHouseBackend
from netspectra.storage.context import StorageContext
from netspectra.storage.registry import build_writer
from netspectra.storage.sql import ensure_schema
from netspectra.wire.generated import v1
from tests.fixtures.clickhouse import ClickHouseCluster, ClickHouseServer
from tests.integration.api_truth import (
    EXACT_TASKS,
    SKETCH_TASKS,
    T0,
    flows_of,
    hitters_truth,
    make_packets,
    snapshots,
)

PACKETS = make_packets()  # engine e1's traffic: the truth the answers are checked against
OTHER = make_packets(seed=8, count=2000)  # engine e2's: the same queries must add it as one server does
#: A flow's identity as stored (NULL = a field its task does not key on; HTTP shows it as \N).
IDENTITY = "TaskName, EngineId, SrcIP, DstIP, SrcPort, DstPort, Protocol"


def ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def settings_for(store: dict[str, Any]) -> Settings:
    return Settings.model_validate(
        {
            "aggregator": {
                "exact": {
                    "writers": [store],
                    "tasks": [
                        {"name": n, "key_fields": [f.value for f in fs]} for n, fs in EXACT_TASKS.items()
                    ],
                },
                "sketch": {
                    "writers": [store],
                    "tasks": [
                        {"name": n, "algorithm": a, "flow_fields": ["SrcIP"], "element_fields": ["DstIP"]}
                        for n, a in SKETCH_TASKS.items()
                    ],
                },
            },
            "api": {"grpc_listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0"},
        }
    )


async def fill(settings: Settings) -> None:
    """Both engines' exact snapshots, e1's sketch snapshots, through the real writers (schema included).

    Hitter rows without sketch states answer for one engine only (a merge over several needs the
    states; tests/integration/test_sketch_states_store.py runs those on the cluster too).
    """
    for engine_id, packets in (("e1", PACKETS), ("e2", OTHER)):
        context = StorageContext(engine_id=engine_id)
        exact = build_writer(settings.aggregator.exact.writers[0], "exact", context)
        sketch = build_writer(settings.aggregator.sketch.writers[0], "sketch", context)
        exact0, exact1, sketch0, sketch1 = snapshots(packets)
        for snapshot in (exact0, exact1):
            await exact.write(snapshot)
        for snapshot in (sketch0, sketch1) if engine_id == "e1" else ():
            await sketch.write(snapshot)
        for writer in (exact, sketch):
            await writer.flush(60)  # type: ignore[attr-defined]
            await writer.close()
        await context.close()


@dataclass
class Answers:
    """Every query's answer, as plain values (so two stores' answers compare with ==)."""

    aggregate: dict[str, tuple[int, int, int]]
    aggregate_at_t0: dict[str, tuple[int, int, int]]
    aggregate_filtered: dict[str, tuple[int, int, int]]
    aggregate_window: dict[str, tuple[int, int, int]]  # after T0 (its rows the baseline) up to T1
    window_traces: list[tuple[int, int, datetime, datetime]]
    traces: list[tuple[int, int, datetime, datetime]]
    hitters: dict[tuple[str, int], list[tuple[str, int]]]
    hitters_at_t0: dict[tuple[str, int], list[tuple[str, int]]]
    tasks: dict[str, str]


TRACED = list(flows_of(PACKETS, EXACT_TASKS["five_tuple"]))[:8]


async def ask(stub: v1.QueryServiceStub) -> Answers:
    def totals(response: v1.AggregationResponse) -> dict[str, tuple[int, int, int]]:
        return {s.task_name: (s.total_bytes, s.total_packets, s.flow_count) for s in response.summaries}

    source = PACKETS[0].src
    filtered = v1.AggregationRequest(task_name="five_tuple", src_ip=source, protocol=6)
    traces, window_traces = [], []
    for key in TRACED:
        keys = {f.value: str(v) for f, v in zip(EXACT_TASKS["five_tuple"], key, strict=True)}
        for start, found in ((None, traces), (ts(T0), window_traces)):
            request = v1.TraceFlowRequest(task_name="five_tuple", flow_keys=keys, start_time=start)
            try:
                life = (await stub.trace_flow(request)).lifecycle
            except GRPCError as error:  # no packet of the flow in the window
                assert error.status is Status.NOT_FOUND and start is not None, error
                found.append((0, 0, ts(0), ts(0)))
                continue
            found.append((life.total_packets, life.total_bytes, life.first_seen, life.last_seen))
    hitters, hitters_at_t0 = {}, {}
    for kind in HitterKind:
        task = "ss_dst" if kind is HitterKind.SPREAD else "cm_src"
        request = v1.HeavyHittersRequest(task_name=task, type=int(kind), limit=10_000)
        hitters[task, int(kind)] = [
            (h.flow, h.value) for h in (await stub.query_heavy_hitters(request)).hitters
        ]
        request = v1.HeavyHittersRequest(task_name=task, type=int(kind), limit=10_000, end_time=ts(T0))
        hitters_at_t0[task, int(kind)] = [
            (h.flow, h.value) for h in (await stub.query_heavy_hitters(request)).hitters
        ]
    listed = await stub.search_tasks(v1.SearchTasksRequest())
    return Answers(
        aggregate=totals(await stub.aggregate_flows(v1.AggregationRequest())),
        aggregate_at_t0=totals(await stub.aggregate_flows(v1.AggregationRequest(end_time=ts(T0)))),
        aggregate_filtered=totals(await stub.aggregate_flows(filtered)),
        aggregate_window=totals(await stub.aggregate_flows(v1.AggregationRequest(start_time=ts(T0)))),
        window_traces=window_traces,
        traces=traces,
        hitters=hitters,
        hitters_at_t0=hitters_at_t0,
        tasks=dict(zip(listed.task_names, listed.task_kinds, strict=True)),
    )


async def answers_of(settings: Settings) -> Answers:
    context = StorageContext()
    role = ApiRole(settings, context)
    stop = asyncio.Event()
    serving = asyncio.create_task(role.serve(stop))
    await asyncio.wait_for(role.ready.wait(), 30)
    channel = Channel("127.0.0.1", role.grpc_port)
    try:
        return await ask(v1.QueryServiceStub(channel, timeout=60))
    finally:
        channel.close()
        stop.set()
        await serving
        await context.close()


def store(server: ClickHouseServer, database: str, spool: Path, cluster: str | None = None) -> dict[str, Any]:
    options: dict[str, Any] = {
        "host": server.host,
        "port": server.tcp_port,
        "database": database,
        "queue_dir": str(spool),
    }
    if cluster:
        options["cluster"] = cluster
    return {"type": "clickhouse", "snapshot_interval": "1h", "clickhouse": options}


@pytest.fixture
async def filled(
    clickhouse_cluster: ClickHouseCluster,
    cluster_database: str,
    clickhouse_server: ClickHouseServer,
    clickhouse_database: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[Settings, Settings]]:
    """(cluster settings, one-server settings), both stores holding the same two engines' snapshots."""
    first = clickhouse_cluster.servers[0]
    on_cluster = settings_for(store(first, cluster_database, tmp_path / "spool-c", ClickHouseCluster.name))
    on_one = settings_for(store(clickhouse_server, clickhouse_database, tmp_path / "spool-1"))
    await fill(on_cluster)
    await fill(on_one)
    yield on_cluster, on_one


def rows(server: ClickHouseServer, sql: str) -> list[list[str]]:
    return [line.split("\t") for line in server.query(sql).splitlines()]


async def test_the_cluster_answers_what_one_server_answers_and_the_truth(
    filled: tuple[Settings, Settings],
    clickhouse_cluster: ClickHouseCluster,
    cluster_database: str,
    tmp_path: Path,
) -> None:
    on_cluster, on_one = filled
    clustered, single = await answers_of(on_cluster), await answers_of(on_one)
    assert clustered == single
    # any node routes: the api over the second shard answers the same
    second = clickhouse_cluster.servers[1]
    via_second = settings_for(store(second, cluster_database, tmp_path / "s2", ClickHouseCluster.name))
    assert await answers_of(via_second) == single
    # a shard restarted re-attaches its tables as they were (the Distributed ones name the database)
    second.stop()
    await asyncio.get_running_loop().run_in_executor(None, second.start)
    assert await answers_of(on_cluster) == single

    # and the answers are the truth: e2's traffic adds to e1's as it does on one server
    # (a window after T0 holds the packets after the first snapshot, both engines')
    late = [p for p in PACKETS + OTHER if p.ts_ns >= T0 * 10**9]
    assert late and {task: totals[:2] for task, totals in clustered.aggregate_window.items()} == {
        task: (sum(p.length for p in late), len(late)) for task in EXACT_TASKS
    }
    both = PACKETS + OTHER
    for task, fields in EXACT_TASKS.items():
        total_bytes, packets, _ = clustered.aggregate[task]
        assert (total_bytes, packets) == (sum(p.length for p in both), len(both)), task
        assert clustered.aggregate[task][2] >= len(flows_of(PACKETS, fields)), task
    assert clustered.tasks == {
        **{task: "exact" for task in EXACT_TASKS},
        **{task: f"sketch:{algorithm}" for task, algorithm in SKETCH_TASKS.items()},
    }
    # e1's flows that e2 never sent trace to e1's exact truth
    others = flows_of(OTHER, EXACT_TASKS["five_tuple"])
    flows = flows_of(PACKETS, EXACT_TASKS["five_tuple"])
    checked = 0
    for key, (packets, total_bytes, first, last) in zip(TRACED, clustered.traces, strict=True):
        if key not in others:
            checked += 1
            assert (packets, total_bytes) == tuple(flows[key][:2])
            assert (first, last) == (ts(flows[key][2] // 10**9), ts(flows[key][3] // 10**9))
    assert checked > 0
    # heavy hitters: e1's, exactly (the snapshots carry exact values), now and at the first snapshot
    first_half = [p for p in PACKETS if p.ts_ns < T0 * 10**9]
    for kind in HitterKind:
        task = "ss_dst" if kind is HitterKind.SPREAD else "cm_src"
        for truth, answer in (
            (hitters_truth(PACKETS), clustered.hitters),
            (hitters_truth(first_half), clustered.hitters_at_t0),
        ):
            expected = sorted(truth[kind].items(), key=lambda item: (-item[1], item[0]))
            assert answer[task, int(kind)] == expected, kind


async def test_rows_are_spread_over_both_shards_and_a_flow_lives_on_one(
    filled: tuple[Settings, Settings], clickhouse_cluster: ClickHouseCluster, cluster_database: str
) -> None:
    shards = clickhouse_cluster.servers
    db = cluster_database
    for server in shards:
        engines = dict(rows(server, f"SELECT name, engine FROM system.tables WHERE database = '{db}'"))
        for table in ("flow_metrics", "heavy_hitters", "flow_latest", "engine_leases"):
            assert engines[table] == "Distributed", (table, engines)
            assert engines[f"{table}_local"].endswith("MergeTree"), (table, engines)
        assert engines["flow_latest_mv"] == "MaterializedView"

    per_shard = [int(server.query(f"SELECT count() FROM {db}.flow_metrics_local")) for server in shards]
    assert all(count > 0 for count in per_shard), per_shard  # really sharded
    assert sum(per_shard) == int(shards[0].query(f"SELECT count() FROM {db}.flow_metrics"))
    hitters = [int(server.query(f"SELECT count() FROM {db}.heavy_hitters_local")) for server in shards]
    assert all(count > 0 for count in hitters), hitters

    metrics_flows, latest_flows = [], []
    for server in shards:
        for table, found in (("flow_metrics_local", metrics_flows), ("flow_latest_local", latest_flows)):
            found.append(
                {tuple(row) for row in rows(server, f"SELECT DISTINCT {IDENTITY} FROM {db}.{table}")}
            )
    assert all(metrics_flows) and not metrics_flows[0] & metrics_flows[1]  # no flow has rows on both shards
    # flow_latest is filled on the shard the flow's rows landed on (the view reads the local table)
    assert latest_flows == metrics_flows


async def test_a_cluster_the_server_does_not_know_is_refused_by_name(
    clickhouse_cluster: ClickHouseCluster, cluster_database: str
) -> None:
    server = clickhouse_cluster.servers[0]
    options = ClickHouseOptions(
        host=server.host, port=server.tcp_port, database=cluster_database, cluster="nope"
    )
    backend = ClickHouseBackend(options)
    try:
        with pytest.raises(StorageRefusedError, match="no cluster 'nope' in its remote_servers") as caught:
            await ensure_schema(backend)
        assert ClickHouseCluster.name in str(caught.value)  # the clusters it does have are listed
    finally:
        await backend.close()
    tables = server.query(f"SELECT count() FROM system.tables WHERE database = '{cluster_database}'")
    assert tables.strip() == "0"  # nothing half-made
