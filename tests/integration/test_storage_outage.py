"""No snapshot is lost when the ClickHouse server goes away: queued, spilled to disk, written later.

The server is stopped for two snapshot intervals while the writer keeps accepting snapshots;
queries meanwhile answer UNAVAILABLE; after the restart every snapshot is in the table. Truth is
read over ClickHouse's HTTP interface, a path the code under test does not use.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status

from netspectra.api.role import ApiRole
from netspectra.config.models import Settings, WriterConfig
from netspectra.storage.clickhouse import ClickHouseWriter
from netspectra.storage.context import StorageContext
from netspectra.storage.registry import build_writer
from netspectra.wire.generated import v1
from tests.fixtures.clickhouse import ClickHouseServer
from tests.integration.api_truth import EXACT_TASKS, make_packets, snapshots

INTERVAL = 0.5  # seconds between snapshots in this test


def rows_per_snapshot(server: ClickHouseServer, database: str) -> dict[int, tuple[int, int]]:
    text = server.query(
        f"SELECT toUInt32(Timestamp), count(), sum(PacketCount) FROM {database}.flow_metrics "
        "WHERE TaskName = 'per_src_ip' GROUP BY Timestamp ORDER BY Timestamp FORMAT TSV"
    )
    out = {}
    for line in text.splitlines():
        at, count, packets = (int(x) for x in line.split("\t"))
        out[at] = (count, packets)
    return out


def writer_config(server: ClickHouseServer, database: str, spool: Path) -> WriterConfig:
    return WriterConfig.model_validate(
        {
            "type": "clickhouse",
            "snapshot_interval": INTERVAL,
            "clickhouse": {
                "host": server.host,
                "port": server.tcp_port,
                "database": database,
                "queue_dir": str(spool),
                "max_queued_snapshots": 1,  # the second queued snapshot already goes to disk
            },
        }
    )


def shifted(snapshot, seconds: int):
    """The same snapshot taken ``seconds`` later (a later snapshot interval)."""
    from dataclasses import replace

    return replace(snapshot, taken_at_ns=snapshot.taken_at_ns + seconds * 10**9)


async def test_outage_of_two_intervals_loses_no_snapshot(
    clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    config = writer_config(clickhouse_server, clickhouse_database, tmp_path / "spool")
    context = StorageContext(engine_id="e1")
    writer = build_writer(config, "exact", context)
    assert isinstance(writer, ClickHouseWriter)
    writer.backoff_max = 0.3
    writer.close_grace = 1.0
    base, _, _, _ = snapshots(make_packets(count=600))
    settings = Settings.model_validate(
        {
            "api": {
                "grpc_listen_addr": "127.0.0.1:0",
                "http_listen_addr": "127.0.0.1:0",
                "store": {"type": "clickhouse", "clickhouse": config.clickhouse_options.model_dump()},
            }
        }
    )
    role = ApiRole(settings, context)
    stop = asyncio.Event()
    serving = asyncio.create_task(role.serve(stop))
    await asyncio.wait_for(role.ready.wait(), 30)
    channel = Channel("127.0.0.1", role.grpc_port)
    stub = v1.QueryServiceStub(channel, timeout=30)
    try:
        await writer.write(shifted(base, 0))
        await writer.flush(30)
        flows = len(base.flows[0])
        packets = int(base.flows[0].packets.sum())
        assert rows_per_snapshot(clickhouse_server, clickhouse_database) == {
            base.taken_at_ns // 10**9: (flows, packets)
        }

        clickhouse_server.stop()
        try:
            for step in (1, 2, 3):  # the server misses two whole intervals (and a bit)
                await asyncio.sleep(INTERVAL)
                await writer.write(shifted(base, 60 * step))
            assert writer.queued == 3
            spilled = sorted((tmp_path / "spool").rglob("*.snapshot"))
            assert len(spilled) == 3, "every accepted snapshot is on disk (memory only caches one)"
            with pytest.raises(GRPCError) as caught:
                await stub.aggregate_flows(v1.AggregationRequest())
            assert caught.value.status is Status.UNAVAILABLE
            assert "Traceback" not in (caught.value.message or "")
        finally:
            clickhouse_server.start()

        await writer.flush(60)
        expected = {(base.taken_at_ns // 10**9) + 60 * step: (flows, packets) for step in range(4)}
        assert rows_per_snapshot(clickhouse_server, clickhouse_database) == expected
        assert list((tmp_path / "spool").rglob("*.snapshot")) == []
        response = await stub.aggregate_flows(v1.AggregationRequest(task_name="per_src_ip"))
        assert [(s.total_packets, s.flow_count) for s in response.summaries] == [(packets, flows)]
    finally:
        channel.close()
        stop.set()
        await serving
        await writer.close()
        await context.close()


async def test_snapshots_queued_at_close_are_written_by_the_next_writer(
    clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    config = writer_config(clickhouse_server, clickhouse_database, tmp_path / "spool")
    base, _, _, _ = snapshots(make_packets(count=300))
    context = StorageContext()
    writer = build_writer(config, "exact", context)
    writer.close_grace = 0.5  # type: ignore[attr-defined]
    clickhouse_server.stop()
    try:
        for step in range(3):
            await writer.write(shifted(base, step))
        await writer.close()  # server down: everything goes to disk
        await context.close()
        assert len(list((tmp_path / "spool").rglob("*.snapshot"))) == 3
    finally:
        clickhouse_server.start()
    context = StorageContext()
    writer = build_writer(config, "exact", context)
    assert writer.queued == 3  # type: ignore[attr-defined]
    await writer.flush(60)  # type: ignore[attr-defined]
    await writer.close()
    await context.close()
    first = base.taken_at_ns // 10**9
    flows, packets = len(base.flows[0]), int(base.flows[0].packets.sum())
    assert rows_per_snapshot(clickhouse_server, clickhouse_database) == {
        first + step: (flows, packets) for step in range(3)
    }
    assert set(EXACT_TASKS) == {
        line
        for line in clickhouse_server.query(
            f"SELECT DISTINCT TaskName FROM {clickhouse_database}.flow_metrics FORMAT TSV"
        ).split()
    }
