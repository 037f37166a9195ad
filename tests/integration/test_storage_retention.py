"""Retention on both backends: old rows leave flow_metrics, heavy_hitters AND flow_latest, and the
answers equal a brute-force evaluation over the rows that are kept.

The ClickHouse server here is 18.16 (no TTL: monthly partitions are dropped); chdb has TTL, which
the server applies in its merges, so the test forces those merges (OPTIMIZE ... FINAL) before
reading, as time would.
"""

from __future__ import annotations

import time
from typing import Any

from netspectra.model.snapshot import HitterKind
from netspectra.storage.query import FlowFilter, QueryStore
from netspectra.storage.retention import apply_retention, month_end, server_version, supports_ttl
from netspectra.storage.sql import HITTER_COLUMNS, RUN_COLUMNS, STATE_COLUMNS
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


async def test_retention_drops_old_rows_from_every_table(backend: RecordingBackend) -> None:
    now = int(time.time())
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
    # an old and a recent epoch state and run of epochs (their contents do not matter here)
    sketch_values = {"TaskName": "cm", "EngineId": "e", "PeriodStart": OLD, "Epoch": 0, "FirstEpoch": 0,
                     "LastEpoch": 1, "EpochStart": OLD, "FirstTimestamp": OLD, "Algorithm": "count_min",
                     "Covers": 0, "StateSize": 0, "StateCheck": 0, "State": b""}  # fmt: skip
    for table, columns in (("sketch_states", STATE_COLUMNS), ("sketch_state_runs", RUN_COLUMNS)):
        await backend.insert(
            table,
            {name: [{**sketch_values, "Timestamp": at}[name] for at in (OLD, now - 60)] for name in columns},
        )
    store = QueryStore(backend, description="test")
    assert await store.aggregate_flows(FlowFilter()) == totals_truth(rows)  # nothing dropped yet

    done = await apply_retention(backend, THIRTY_DAYS, now_s=now)
    if await supports_ttl(backend):
        assert done.startswith("TTL")
        for table in ("flow_metrics", "heavy_hitters", "flow_latest", "sketch_states", "sketch_state_runs"):
            await backend.execute(f"OPTIMIZE TABLE {table} FINAL")  # the TTL merge, without waiting for it
    else:
        assert "flow_metrics 202001" in done and "heavy_hitters 202001" in done, done
        assert "sketch_states 202001" in done and "sketch_state_runs 202001" in done, done

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
    # a second pass finds nothing more to do, and answers stay the same
    await apply_retention(backend, THIRTY_DAYS, now_s=now)
    assert await store.aggregate_flows(FlowFilter()) == totals_truth(kept)


def test_month_end_and_version_parsing() -> None:
    assert month_end("202001") == 1_580_515_200  # 2020-02-01 00:00 UTC
    assert month_end("'202012'") == 1_609_459_200  # 2021-01-01
    assert month_end("tuple()") is None and month_end("202013") is None
    assert server_version("18.16.1") == (18, 16) and server_version("24.8.4.13") == (24, 8)
    assert server_version("unknown") == (0, 0)
