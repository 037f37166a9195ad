"""Retention picks its mechanism node by node: a cluster being upgraded (one node with TTL, one
without) gets the TTL on the first node's local tables and partition drops on the second's, and
the Distributed tables are never altered."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from netspectra.storage.retention import apply_retention
from netspectra.storage.sql import SqlBackend

NOW = 1_700_000_000  # 2023-11-14
MONTH = 30 * 86_400


class FakeNode:
    """One node: its version, its local tables' partitions, the statements it was sent."""

    def __init__(self, version: str, partitions: list[str], stale_latest: int) -> None:
        self.version = version
        self.partitions = partitions
        self.stale_latest = stale_latest
        self.executed: list[str] = []

    async def select(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        if sql.startswith("SELECT version()"):
            return [(self.version,)]
        if "system.parts" in sql:
            assert params is not None and str(params["table"]).endswith("_local"), params
            return [(partition,) for partition in self.partitions]
        if "system.mutations" in sql:
            return [(0,)]
        assert "flow_latest_local" in sql, sql
        return [(self.stale_latest,)]

    async def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        raise AssertionError("retention inserts nothing")

    async def execute(self, sql: str) -> None:
        self.executed.append(sql)

    async def close(self) -> None:
        pass


class FakeCluster:
    def __init__(self, nodes: dict[str, FakeNode]) -> None:
        self.nodes = nodes

    async def shard_nodes(self) -> list[tuple[str, SqlBackend]] | None:
        return list(self.nodes.items())

    async def select(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        raise AssertionError("the cluster's Distributed tables are not where the rows are")

    async def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        raise AssertionError("retention inserts nothing")

    async def execute(self, sql: str) -> None:
        raise AssertionError(f"sent to every node in its cluster form: {sql}")

    async def close(self) -> None:
        pass


async def test_each_node_gets_the_mechanism_its_version_has() -> None:
    new = FakeNode("24.8.4.13", [], 0)
    old = FakeNode("18.16.1", ["202301", "202310", "202311"], 3)
    done = await apply_retention(FakeCluster({"ch1:9000": new, "ch2:9000": old}), MONTH, now_s=NOW)

    assert new.executed == [
        f"ALTER TABLE {table}_local MODIFY TTL Timestamp + INTERVAL {MONTH} SECOND"
        for table in ("flow_metrics", "heavy_hitters", "sketch_states", "sketch_state_runs", "flow_latest")
    ]
    # the cutoff (mid October 2023) keeps October and November; the rows before October 1 go
    drops = [
        f"ALTER TABLE {t}_local DROP PARTITION 202301"
        for t in ("flow_metrics", "heavy_hitters", "sketch_states", "sketch_state_runs")
    ]
    assert old.executed == [
        *drops,
        "ALTER TABLE flow_latest_local DELETE WHERE Timestamp < toDateTime(1696118400)",
    ]
    assert done.startswith("ch1:9000: TTL") and "ch2:9000: no table TTL on ClickHouse 18.16.1" in done, done
    assert not done.startswith("TTL")  # so the writer tries again next pass


async def test_a_cluster_with_ttl_on_every_node_is_done_once() -> None:
    nodes = {"ch1:9000": FakeNode("23.3", [], 0), "ch2:9000": FakeNode("24.8", [], 0)}
    done = await apply_retention(FakeCluster(nodes), MONTH, now_s=NOW)
    assert done.startswith("TTL") and "ch1:9000, ch2:9000" in done, done
