"""Accepted means durable: a snapshot the engine accepted survives SIGKILL and is stored exactly once.

Real clickhouse-server (stopped and started again, as an outage), real engine processes killed
by pid, probe processes replaying generated traces. Truth: what the probes published; stored
totals through the query layer (AggregateFlows) and row counts over ClickHouse's HTTP interface
(a path the code under test does not use).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from pathlib import Path

from netspectra.config.models import WriterConfig
from netspectra.errors import StorageError
from netspectra.storage.clickhouse import ClickHouseWriter
from netspectra.storage.context import StorageContext
from netspectra.storage.registry import build_writer
from tests.fixtures.clickhouse import ClickHouseServer
from tests.fixtures.nats import NatsServer
from tests.integration.api_truth import make_packets, snapshots
from tests.integration.durability_helpers import (
    clickhouse_section,
    engine_config,
    every_task,
    publish_trace,
    query_store,
    start_engine,
    stored_packets,
    wait_until,
)
from tests.integration.pipeline_helpers import NetspectraProcess

_STATS = re.compile(r"Engine stats: (\d+) packets .*?(\d+) (?:written|accepted)")


def wait_for_accepted_snapshot_of(engine: NetspectraProcess, packets: int, timeout: float = 60.0) -> None:
    """Until a snapshot taken after ``packets`` were counted is accepted by the writer.

    The stats line names the packets counted and the snapshots accepted; a line showing more
    accepted snapshots than the first line that counted everything proves one such snapshot.
    """
    deadline = time.monotonic() + timeout
    baseline: int | None = None
    while time.monotonic() < deadline:
        for message in engine.messages():
            found = _STATS.search(message)
            if found is None or int(found[1]) != packets:
                continue
            if baseline is None:
                baseline = int(found[2])
            elif int(found[2]) > baseline:
                return
        time.sleep(0.05)
    raise AssertionError(f"no snapshot of {packets} packets accepted within {timeout} s\n{engine.tail()}")


async def test_snapshots_accepted_while_the_store_is_down_survive_sigkill(
    nats_server: NatsServer, clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    config = engine_config(nats_server.url, clickhouse_server, clickhouse_database, tmp_path / "spool")
    store = query_store(clickhouse_server, clickhouse_database)
    first = start_engine(tmp_path, "engine-first", config)
    try:
        before = publish_trace(tmp_path, "probe-a", nats_server.url, 10_000, seed=51)

        async def first_stored() -> bool:
            return await stored_packets(store) == every_task(before)

        await wait_until(first_stored, "the first trace stored", on_timeout=first.tail)
        clickhouse_server.stop()
        try:
            during = publish_trace(tmp_path, "probe-b", nats_server.url, 12_000, seed=53)
            wait_for_accepted_snapshot_of(first, before + during)
            first.kill()  # SIGKILL while the store is away: only the spool holds the second trace
        finally:
            clickhouse_server.start()
        second = start_engine(tmp_path, "engine-second", config)
        try:

            async def both_stored() -> dict[str, int] | None:
                totals = await stored_packets(store)
                return totals if totals == every_task(before + during) else None

            await wait_until(both_stored, "the spooled trace stored", on_timeout=second.tail)
            assert second.stop() == 0, second.tail()
            assert await stored_packets(store) == every_task(before + during)  # once, not twice
            assert list((tmp_path / "spool").rglob("*.snapshot")) == []
        finally:
            second.kill()
    finally:
        first.kill()
        await store.backend.close()


def rows_per_second(server: ClickHouseServer, database: str) -> dict[int, int]:
    """Rows of per_src_ip per snapshot second; empty while the table does not exist yet."""
    if server.query(f"EXISTS TABLE {database}.flow_metrics").strip() != "1":
        return {}
    text = server.query(
        f"SELECT toUInt32(Timestamp), count() FROM {database}.flow_metrics "
        "WHERE TaskName = 'per_src_ip' GROUP BY Timestamp ORDER BY Timestamp FORMAT TSV"
    )
    return {int(at): int(count) for at, count in (line.split("\t") for line in text.splitlines())}


def clickhouse_writer(server: ClickHouseServer, database: str, spool: Path, context: StorageContext):
    config = WriterConfig.model_validate(
        {
            "type": "clickhouse",
            "snapshot_interval": 1,
            "clickhouse": clickhouse_section(server, database, spool),
        }
    )
    writer = build_writer(config, "exact", context)
    assert isinstance(writer, ClickHouseWriter)
    writer.backoff_initial = writer.backoff_max = 0.05
    writer.close_grace = 2.0
    return writer


async def test_a_snapshot_stored_just_before_a_crash_is_not_stored_again(
    clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    base, _, _, _ = snapshots(make_packets(count=400))
    flows = len(next(table for table in base.flows if table.task == "per_src_ip"))
    context = StorageContext(engine_id="e1", incarnation="first")
    writer = clickhouse_writer(clickhouse_server, clickhouse_database, tmp_path / "spool", context)
    spool = writer._spool

    def killed_before_removing_the_file() -> None:
        raise asyncio.CancelledError  # the drain stops right after the insert, as under SIGKILL

    spool.pop = killed_before_removing_the_file  # type: ignore[method-assign]
    await writer.write(base)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(writer._drainer, 30)
    assert rows_per_second(clickhouse_server, clickhouse_database) == {base.taken_at_ns // 10**9: flows}
    spool.close()
    await context.close()
    assert len(list((tmp_path / "spool").rglob("*.snapshot"))) == 1

    context = StorageContext(engine_id="e1", incarnation="second")
    writer = clickhouse_writer(clickhouse_server, clickhouse_database, tmp_path / "spool", context)
    assert writer.queued == 1
    await writer.flush(30)
    await writer.close()
    await context.close()
    assert rows_per_second(clickhouse_server, clickhouse_database) == {base.taken_at_ns // 10**9: flows}
    assert list((tmp_path / "spool").rglob("*.snapshot")) == []


async def test_an_insert_that_fails_after_landing_is_not_repeated(
    clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    base, _, _, _ = snapshots(make_packets(count=400))
    flows = len(next(table for table in base.flows if table.task == "per_src_ip"))
    context = StorageContext(engine_id="e1", incarnation="only")
    writer = clickhouse_writer(clickhouse_server, clickhouse_database, tmp_path / "spool", context)
    backend = writer._backend
    real_insert = backend.insert
    lost_acks = []

    async def insert_then_lose_the_answer(table, columns):  # type: ignore[no-untyped-def]
        await real_insert(table, columns)
        if table == "flow_metrics" and not lost_acks:
            lost_acks.append(table)
            raise StorageError("connection reset after the insert was sent")

    backend.insert = insert_then_lose_the_answer  # type: ignore[method-assign]
    try:
        await writer.write(base)
        await writer.flush(30)
    finally:
        backend.insert = real_insert  # type: ignore[method-assign]
        await writer.close()
        await context.close()
    assert lost_acks == ["flow_metrics"]
    assert rows_per_second(clickhouse_server, clickhouse_database) == {base.taken_at_ns // 10**9: flows}
