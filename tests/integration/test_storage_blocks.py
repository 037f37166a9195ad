"""A snapshot inserted as blocks at once is stored whole, once, and a failed block loses nothing.

Both store writers cut a large flow_metrics insert into blocks sent at once (storage/rows.py,
``insert_blocks``); the tests lower the block size so a few thousand rows take that path. Real
chdb, a real clickhouse-server and the two-shard cluster. Truth: the rows handed to the insert,
compared row by row with what flow_metrics and flow_latest hold, and the totals the query layer
answers against the sums over those rows.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from netspectra.config.models import ClickHouseOptions
from netspectra.errors import StorageError
from netspectra.storage import rows as rows_module
from netspectra.storage.clickhouse import ClickHouseBackend
from netspectra.storage.embedded import EmbeddedBackend
from netspectra.storage.query import FlowFilter, QueryStore
from netspectra.storage.rows import as_arrow
from netspectra.storage.sql import FLOW_COLUMNS, STORED_FLOW_ROWS, SqlBackend, ensure_schema
from tests.fixtures.clickhouse import ClickHouseCluster, ClickHouseServer

AT = 1_700_000_000
#: Rows of the first task ("five") and the second ("src"): cut in two blocks, the second holds the
#: second task's rows and no other.
FIVE, SOURCES = 1_000, 1_000
NUMBERS = ("Timestamp", "SrcPort", "DstPort", "Protocol", "StartTime", "EndTime", "ByteCount", "PacketCount")
STORED = (
    "SELECT toUInt32(Timestamp), TaskName, SrcIP, DstIP, SrcPort, DstPort, Protocol, toUInt32(StartTime),"
    " toUInt32(EndTime), ByteCount, PacketCount, EngineId FROM {table}"
)


def snapshot_columns() -> dict[str, Any]:
    """One snapshot's flow rows of two tasks (every flow once), as Arrow columns like the writers'."""
    rows: list[dict[str, Any]] = []
    for index in range(FIVE + SOURCES):
        five = index < FIVE
        rows.append(
            {
                "Timestamp": AT,
                "TaskName": "five" if five else "src",
                "SrcIP": f"10.{index >> 8 & 255}.{index & 255}.1" if index % 9 else f"2001:db8::{index:x}",
                "DstIP": f"192.168.{index % 7}.{index % 250}" if five else None,
                "SrcPort": 1024 + index if five else None,
                "DstPort": (53, 443, 0)[index % 3] if five else None,
                "Protocol": (6, 17)[index % 2] if five else None,
                "StartTime": AT - 60 + index % 50,
                "EndTime": AT - index % 5,
                "ByteCount": 60 * (index + 1) + index % 13,
                "PacketCount": index % 97 + 1,
                "EngineId": "e1",
            }
        )
    return {name: as_arrow(name, [row[name] for row in rows]) for name in FLOW_COLUMNS}


def as_rows(columns: dict[str, Any]) -> list[tuple[Any, ...]]:
    return list(zip(*(as_arrow(name, columns[name]).to_pylist() for name in FLOW_COLUMNS), strict=True))


def normal(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """A stored row as the inserted one reads (chdb's JSON quotes 64-bit numbers)."""
    return tuple(
        None if value is None else int(value) if name in NUMBERS else value
        for name, value in zip(FLOW_COLUMNS, row, strict=True)
    )


async def stored(backend: SqlBackend, table: str) -> Counter[tuple[Any, ...]]:
    return Counter(normal(row) for row in await backend.select(STORED.format(table=table)))


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Blocks of a few hundred rows, so this snapshot is cut as a million-row one is."""
    monkeypatch.setattr(rows_module, "MIN_INSERT_BLOCK_ROWS", 300)


@pytest.fixture(params=["embedded", "clickhouse", "cluster"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path, small_blocks: None) -> AsyncIterator[Any]:
    made: EmbeddedBackend | ClickHouseBackend
    if request.param == "embedded":
        made = EmbeddedBackend(str(tmp_path / "store"), insert_streams=2)
    else:
        options: dict[str, Any]
        if request.param == "clickhouse":
            server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
            options = {"database": request.getfixturevalue("clickhouse_database")}
        else:
            cluster: ClickHouseCluster = request.getfixturevalue("clickhouse_cluster")
            server = cluster.servers[0]
            options = {"database": request.getfixturevalue("cluster_database"), "cluster": cluster.name}
        options |= {"host": server.host, "port": server.tcp_port}
        made = ClickHouseBackend(ClickHouseOptions.model_validate(options), insert_streams=2)
    await ensure_schema(made)
    try:
        yield made
    finally:
        await made.close()


async def test_a_snapshot_in_blocks_at_once_is_stored_whole_and_once(backend: Any) -> None:
    columns = snapshot_columns()
    blocks, last = rows_module.insert_blocks(columns, backend._insert_streams)
    assert len(blocks) >= 2 and last is not None  # the path under test
    await backend.insert("flow_metrics", columns)
    truth = Counter(as_rows(columns))
    assert await stored(backend, "flow_metrics") == truth
    assert await stored(backend, "flow_latest") == truth  # every flow's one row, through the view
    totals = await QueryStore(backend, description="test").aggregate_flows(FlowFilter())
    expected = {
        task: (sum(r[9] for r in truth if r[1] == task), sum(r[10] for r in truth if r[1] == task))
        for task in ("five", "src")
    }
    assert {t.task: (t.total_bytes, t.total_packets) for t in totals} == expected
    assert {t.task: t.flow_count for t in totals} == {"five": FIVE, "src": SOURCES}


@pytest.mark.parametrize("kind", ["embedded", "clickhouse"])
async def test_a_failed_block_leaves_the_snapshot_unstored_and_the_retry_stores_it(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, small_blocks: None
) -> None:
    """The second task's rows are the last block: when it fails, the first task's rows must not all
    be in (the writer's exactly-once check would take the snapshot for stored and drop
    them), and inserting the snapshot again leaves every row in, repeats changing no answer."""
    columns = snapshot_columns()
    backend: EmbeddedBackend | ClickHouseBackend
    if kind == "embedded":
        backend = EmbeddedBackend(str(tmp_path / "store"), insert_streams=2)
    else:
        server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
        options = {"host": server.host, "port": server.tcp_port}
        options["database"] = request.getfixturevalue("clickhouse_database")
        backend = ClickHouseBackend(ClickHouseOptions.model_validate(options), insert_streams=2)
    await ensure_schema(backend)
    real = backend._insert_block
    failed: list[int] = []

    def fails_on_the_second_task(block: Any) -> bool:
        return not failed and set(as_arrow("TaskName", block["TaskName"]).to_pylist()) == {"src"}

    if isinstance(backend, EmbeddedBackend):

        def embedded_block(connection: Any, insert: str, names: Any, block: Any) -> None:
            if fails_on_the_second_task(block):
                failed.append(len(block["TaskName"]))
                raise RuntimeError("the disk went away")
            real(connection, insert, names, block)  # type: ignore[call-arg]

        backend._insert_block = embedded_block  # type: ignore[method-assign]
    else:

        async def server_block(table: str, names: Any, block: Any) -> None:
            if fails_on_the_second_task(block):
                failed.append(len(block["TaskName"]))
                raise StorageError("connection reset")
            await real(table, names, block)  # type: ignore[call-arg]

        backend._insert_block = server_block  # type: ignore[method-assign]
    try:
        with pytest.raises(StorageError):
            await backend.insert("flow_metrics", columns)
        assert failed
        params = {"engine": "e1", "at": AT, "task": "five"}
        [(first_task_rows,)] = await backend.select(STORED_FLOW_ROWS, params)
        assert int(first_task_rows) < FIVE  # not "stored": the writer inserts it again
        await backend.insert("flow_metrics", columns)  # the writer's retry
        truth = Counter(as_rows(columns))
        again = await stored(backend, "flow_metrics")
        assert set(again) == set(truth) and all(again[row] in (1, 2) for row in truth)
        totals = await QueryStore(backend, description="test").aggregate_flows(FlowFilter())
        assert {t.task: t.total_packets for t in totals} == {
            task: sum(r[10] for r in truth if r[1] == task) for task in ("five", "src")
        }
    finally:
        await backend.close()
