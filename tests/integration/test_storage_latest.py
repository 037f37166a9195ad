"""flow_latest answers exactly what the two-stage query over flow_metrics answers, on both backends.

Rows are written straight into flow_metrics (several engines, a period reset that leaves old
flows behind, a repeated insert, batches out of time order, NULL fields, port and protocol 0), and
every answer is compared with a brute-force Python evaluation of the Go semantics over those
rows: per flow the row with the largest Timestamp ≤ end, then sums. A recording wrapper around
the backend shows which table answered, so the fast path and each fallback are known to run.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from netspectra.config.models import ClickHouseOptions
from netspectra.model.fields import KeyField
from netspectra.storage import sql
from netspectra.storage.clickhouse import ClickHouseBackend
from netspectra.storage.embedded import EmbeddedBackend
from netspectra.storage.query import FlowFilter, FlowTrace, QueryStore, TaskTotals
from netspectra.storage.sql import FLOW_COLUMNS, SqlBackend
from tests.fixtures.clickhouse import ClickHouseServer
from tests.fixtures.schemas import previous_schema

IDENTITY = ("TaskName", "EngineId", "SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")
Row = dict[str, Any]


class RecordingBackend:
    """Passes every call through; remembers the SELECT texts so a test can tell which table answered."""

    def __init__(self, inner: SqlBackend) -> None:
        self.inner = inner
        self.selects: list[str] = []

    async def select(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        self.selects.append(sql)
        return await self.inner.select(sql, params)

    async def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        await self.inner.insert(table, columns)

    async def execute(self, sql: str) -> None:
        await self.inner.execute(sql)

    async def close(self) -> None:
        await self.inner.close()

    def tables_read(self) -> list[str]:
        """For each query of the last call: 'latest' or 'metrics' (the schema checks are left out)."""
        out = []
        for text in self.selects:
            if "GROUP BY FlowKey" in text:
                out.append("latest")
            elif "argMax" in text and "FROM flow_metrics" in text:
                out.append("metrics")
        self.selects.clear()
        return out


@pytest.fixture(params=["clickhouse", "embedded"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RecordingBackend]:
    inner: SqlBackend
    if request.param == "clickhouse":
        server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
        database = request.getfixturevalue("clickhouse_database")
        inner = ClickHouseBackend(
            ClickHouseOptions.model_validate(
                {"host": server.host, "port": server.tcp_port, "database": database}
            )
        )
    else:
        inner = EmbeddedBackend(str(tmp_path / "db"))
    recording = RecordingBackend(inner)
    try:
        yield recording
    finally:
        await recording.close()


def make_rows(seed: int = 3) -> list[list[Row]]:
    """Insert batches: two engines, snapshots at 1000/1060 (period 1) and 1120/1180 (period 2,
    counters restarted, only a third of the flows come back)."""
    rng = random.Random(seed)
    five = [
        (
            f"10.0.{i % 7}.{i}",
            f"192.168.1.{i % 5}",
            rng.choice([0, 1024 + i]),
            rng.choice([0, 53, 443]),
            i % 3 * 6,
        )
        for i in range(60)
    ] + [("2001:db8::1", "2001:db8::2", 5, 6, 17)]
    sources = [f"172.16.0.{i}" for i in range(20)] + ["2001:db8::7"]
    batches: list[list[Row]] = []
    for engine in ("a", "b"):
        counters: dict[tuple, list[int]] = {}
        for at in (1000, 1060, 1120, 1180):
            if at == 1120:
                counters.clear()  # period reset: the new period starts from zero
            batch: list[Row] = []
            keys: list[tuple[str, tuple]] = [("five", k) for k in five] + [("src", (s,)) for s in sources]
            if at >= 1120:
                keys = keys[::3]
            for task, key in keys:
                entry = counters.setdefault((task, key), [0, 0, at - 30 + rng.randrange(5)])
                entry[0] += rng.randrange(1, 9)
                entry[1] += rng.randrange(60, 9000)
                row: Row = {
                    "Timestamp": at,
                    "TaskName": task,
                    "SrcIP": key[0],
                    "DstIP": key[1] if task == "five" else None,
                    "SrcPort": key[2] if task == "five" else None,
                    "DstPort": key[3] if task == "five" else None,
                    "Protocol": key[4] if task == "five" else None,
                    "StartTime": entry[2],
                    "EndTime": at - rng.randrange(3),
                    "ByteCount": entry[1],
                    "PacketCount": entry[0],
                    "EngineId": engine,
                }
                batch.append(row)
            batches.append(batch)
    # engine b's 1060 batch arrives last (late), and engine a's 1000 batch is inserted twice (a retry)
    late = batches.pop(5)
    return [*batches, late, batches[0]]


def latest_rows(rows: list[Row], end: int | None, keep: Mapping[str, Any]) -> list[Row]:
    """Brute force: per flow identity, the row with the largest Timestamp ≤ end."""
    best: dict[tuple, Row] = {}
    for row in rows:
        if end is not None and row["Timestamp"] > end:
            continue
        if any(row[name] != value for name, value in keep.items()):
            continue
        identity = tuple(row[name] for name in IDENTITY)
        if identity not in best or row["Timestamp"] > best[identity]["Timestamp"]:
            best[identity] = row
    return list(best.values())


def distinct_flows(rows: list[Row]) -> int:
    """Flows counted once however many engines (EngineId) counted them."""
    return len({tuple(row[name] for name in IDENTITY if name != "EngineId") for row in rows})


def totals_truth(rows: list[Row], end: int | None = None, **keep: Any) -> list[TaskTotals]:
    per_task: dict[str, list[int]] = {}
    chosen = latest_rows(rows, end, keep)
    for row in chosen:
        entry = per_task.setdefault(row["TaskName"], [0, 0])
        entry[0] += row["ByteCount"]
        entry[1] += row["PacketCount"]
    return [
        TaskTotals(task, *entry, distinct_flows([row for row in chosen if row["TaskName"] == task]))
        for task, entry in sorted(per_task.items())
    ]


async def load(backend: SqlBackend, batches: list[list[Row]]) -> list[Row]:
    store = QueryStore(backend, description="test")
    await store.tasks()  # creates the schema (and the view) before any row arrives
    for batch in batches:
        await backend.insert("flow_metrics", {name: [row[name] for row in batch] for name in FLOW_COLUMNS})
    return [row for batch in batches for row in batch]


async def test_aggregate_flows_from_flow_latest_equal_brute_force(backend: RecordingBackend) -> None:
    rows = await load(backend, make_rows())
    store = QueryStore(backend, description="test")
    backend.tables_read()

    cases: list[tuple[FlowFilter, dict[str, Any], list[str]]] = [
        (FlowFilter(), {}, ["latest"]),
        (FlowFilter(end=1180), {}, ["latest"]),  # end at the newest snapshot: flow_latest still answers
        (FlowFilter(end=5000), {}, ["latest"]),
        (FlowFilter(task="five"), {"TaskName": "five"}, ["latest"]),
        (
            FlowFilter(task="five", dst_port=443, protocol=6),
            {"TaskName": "five", "DstPort": 443, "Protocol": 6},
            ["latest"],
        ),
        (FlowFilter(src_ip="172.16.0.3"), {"SrcIP": "172.16.0.3"}, ["latest"]),
        (
            FlowFilter(task="src", src_ip="2001:db8::7"),
            {"TaskName": "src", "SrcIP": "2001:db8::7"},
            ["latest"],
        ),
        # an end before the newest rows: flow_latest cannot answer, flow_metrics does
        (FlowFilter(end=1060), {}, ["latest", "metrics"]),
        (FlowFilter(end=1119, task="src"), {"TaskName": "src"}, ["latest", "metrics"]),
        (FlowFilter(end=999), {}, ["latest", "metrics"]),
    ]
    for query, keep, path in cases:
        expected = totals_truth(rows, query.end, **keep)
        assert await store.aggregate_flows(query) == expected, query
        assert backend.tables_read() == path, query
    # the period reset left flows behind whose latest row is from period 1: they still count, and
    # each flow counts once though both engines counted it
    everything = totals_truth(rows)
    assert {t.task: t.flow_count for t in everything} == {"five": 61, "src": 21}


async def test_trace_flow_from_flow_latest_equal_brute_force(backend: RecordingBackend) -> None:
    rows = await load(backend, make_rows())
    store = QueryStore(backend, description="test")
    backend.tables_read()
    cases: list[tuple[dict[KeyField, str | int], dict[str, Any], int | None, list[str]]] = [
        ({KeyField.SRC_IP: "10.0.0.0"}, {"SrcIP": "10.0.0.0"}, None, ["latest"]),  # back in period 2
        ({KeyField.SRC_IP: "10.0.1.1"}, {"SrcIP": "10.0.1.1"}, None, ["latest"]),  # period 1 only
        (
            {KeyField.SRC_IP: "2001:db8::1", KeyField.PROTOCOL: 17},
            {"SrcIP": "2001:db8::1", "Protocol": 17},
            None,
            ["latest"],
        ),
        ({KeyField.DST_PORT: 0}, {"DstPort": 0}, None, ["latest"]),
        ({KeyField.PROTOCOL: 0}, {"Protocol": 0}, 1060, ["latest", "metrics"]),
    ]
    for keys, keep, end, path in cases:
        chosen = latest_rows(rows, end, {"TaskName": "five", **keep})
        assert chosen
        trace = await store.trace_flow("five", keys, end)
        assert trace is not None
        assert (trace.flows, trace.first_seen, trace.last_seen, trace.packets, trace.bytes) == (
            distinct_flows(chosen),
            min(r["StartTime"] for r in chosen),
            max(r["EndTime"] for r in chosen),
            sum(r["PacketCount"] for r in chosen),
            sum(r["ByteCount"] for r in chosen),
        ), keys
        assert backend.tables_read() == path, keys
    assert await store.trace_flow("five", {KeyField.SRC_IP: "10.9.9.9"}, None) is None


async def test_a_flow_key_collision_falls_back_to_flow_metrics(backend: RecordingBackend) -> None:
    rows = await load(backend, make_rows())
    store = QueryStore(backend, description="test")
    # Forge what a cityHash64 collision looks like: another flow (not in flow_metrics) under an
    # existing flow's FlowKey, with a different FlowCheck. The answer must ignore the forgery.
    await backend.execute(
        "INSERT INTO flow_latest SELECT TaskName, FlowKey, FlowCheck + 1, EngineId, '203.0.113.9', DstIP,"
        " SrcPort, DstPort, Protocol, Timestamp, StartTime, EndTime, 7, 7, 7, 7 FROM flow_latest"
        " WHERE TaskName = 'five' AND SrcIP = '10.0.0.0' AND EngineId = 'a' LIMIT 1"
    )
    backend.tables_read()
    assert await store.aggregate_flows(FlowFilter()) == totals_truth(rows)
    assert backend.tables_read() == ["latest", "metrics"]
    # the forged row keeps the real flow's DstIP, so a trace by DstIP sees the collision too
    trace = await store.trace_flow("five", {KeyField.DST_IP: "192.168.1.0"}, None)
    chosen = latest_rows(rows, None, {"TaskName": "five", "DstIP": "192.168.1.0"})
    assert trace is not None and (trace.flows, trace.bytes) == (
        distinct_flows(chosen),
        sum(r["ByteCount"] for r in chosen),
    )
    assert backend.tables_read() == ["latest", "metrics"]
    # tasks the forgery does not touch still come from flow_latest
    assert await store.aggregate_flows(FlowFilter(task="src")) == totals_truth(rows, TaskName="src")
    assert backend.tables_read() == ["latest"]


async def test_two_snapshots_in_one_second_answer_the_later_one(backend: RecordingBackend) -> None:
    """Timestamp has whole seconds: a sub-second snapshot_interval (or a periodic snapshot and the
    final one at a stop) stamps two snapshots of one engine alike. The later one, inserted after
    the earlier as the engine writes them, holds every packet: each answer must take it, on the
    flow_latest path, the flow_metrics path (an end) and a window. (argMax over Timestamp alone
    keeps the first row of a tie: 3 packets instead of 7 here.)"""
    flow = {"TaskName": "src", "SrcIP": "10.9.9.9", "DstIP": None, "SrcPort": None, "DstPort": None}
    base = {**flow, "Protocol": None, "EngineId": "e", "StartTime": 1990}
    earlier = {**base, "Timestamp": 2000, "EndTime": 1999, "PacketCount": 3, "ByteCount": 300}
    later = {**base, "Timestamp": 2000, "EndTime": 2000, "PacketCount": 7, "ByteCount": 700}
    newer_elsewhere = {**base, "SrcIP": "10.9.9.10", "Timestamp": 2100, "EndTime": 2100,
                       "PacketCount": 1, "ByteCount": 60}  # fmt: skip
    await load(backend, [[earlier], [later], [newer_elsewhere]])
    store = QueryStore(backend, description="test")
    one = {KeyField.SRC_IP: "10.9.9.9"}
    expected = FlowTrace(first_seen=1990, last_seen=2000, packets=7, bytes=700, flows=1)
    assert await store.trace_flow("src", one, None) == expected  # flow_latest
    assert await store.trace_flow("src", one, 2050) == expected  # flow_metrics (an end before 2100)
    assert await store.trace_flow("src", one, 2050, start=1000) == expected  # a window
    totals = [TaskTotals("src", 700, 7, 1)]
    assert await store.aggregate_flows(FlowFilter(src_ip="10.9.9.9")) == totals
    assert await store.aggregate_flows(FlowFilter(end=2050)) == totals
    assert await store.aggregate_flows(FlowFilter(end=2050, start=1000)) == totals


async def test_a_new_store_hashes_flow_check_with_city_hash(backend: RecordingBackend) -> None:
    """flow_latest's FlowCheck is cityHash64 of the flow identity in reverse order in a store made
    now (half the view's cost of sipHash64), and stays sipHash64 in a store made before: the queries
    read a FlowCheck varying inside a FlowKey group as a collision, so a store whose rows were hashed
    two ways would answer everything the slow way, from flow_metrics."""
    rows = await load(backend, make_rows()[:4])  # a new store
    reverse = (  # the identity backwards, written out here rather than taken from sql.FLOW_CHECK
        "ifNull(toInt16(Protocol), -1), ifNull(toInt32(DstPort), -1), ifNull(toInt32(SrcPort), -1),"
        " ifNull(DstIP, ''), isNull(DstIP), ifNull(SrcIP, ''), isNull(SrcIP), EngineId, TaskName"
    )
    hashed = await backend.select(
        f"SELECT countIf(FlowCheck = cityHash64({reverse})), count() FROM flow_latest"
    )
    assert hashed[0][0] == hashed[0][1] > 0  # every row
    store = QueryStore(backend, description="test")
    backend.tables_read()
    assert await store.aggregate_flows(FlowFilter()) == totals_truth(rows)
    assert backend.tables_read() == ["latest"]


async def test_a_store_made_before_keeps_its_flow_check(backend: RecordingBackend) -> None:
    """A store of the version before (its sipHash64 view without Extrapolated*, its back-fill
    marker, rows) upgraded by ensure_schema, which makes its view again (the Extrapolated*
    migration): it answers as the brute force does, from flow_latest alone, every row sipHash64."""
    older_view = sql.LATEST_VIEW_SIPHASH.replace(", ExtrapolatedPackets, ExtrapolatedBytes FROM", " FROM")
    for statement in previous_schema():
        await backend.execute(statement)
    await backend.execute(older_view)
    await backend.execute(sql.LATEST_FILLED)  # the older version's back-fill marker
    batches = make_rows()
    for batch in batches[:4]:  # stored by the version before
        await backend.insert("flow_metrics", {name: [row[name] for row in batch] for name in FLOW_COLUMNS})
    rows = await load(backend, batches[4:])  # the upgrade (ensure_schema), then rows of this version
    rows = [row for batch in batches[:4] for row in batch] + rows
    sip = await backend.select(
        f"SELECT countIf(FlowCheck = sipHash64({sql.FLOW_IDENTITY})), count() FROM flow_latest"
    )
    assert sip[0][0] == sip[0][1] > 0  # every row, old and new (and the back-fill's), sipHash64
    store = QueryStore(backend, description="test")
    backend.tables_read()
    for query in (FlowFilter(), FlowFilter(task="five"), FlowFilter(src_ip="172.16.0.3")):
        keep = {"TaskName": query.task} if query.task else {"SrcIP": query.src_ip} if query.src_ip else {}
        assert await store.aggregate_flows(query) == totals_truth(rows, query.end, **keep), query
        assert backend.tables_read() == ["latest"], query  # no collision: no fallback
    assert not await backend.select("SELECT name FROM system.tables WHERE database = currentDatabase()"
                                    " AND name = 'flow_latest_cityhash'")  # fmt: skip
