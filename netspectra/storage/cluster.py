"""ClickHouse as shards: every table of schema.sql as a local table per shard + a Distributed table.

With ``clickhouse.cluster: NAME`` (a cluster of the servers' ``remote_servers``), each
MergeTree-family table ``T`` of the one schema becomes ``T_local`` (the same DDL, renamed) on
every node, and ``T`` itself becomes ``Distributed(NAME, <database>, T_local, <sharding key>)``
on every node. Everything else keeps its name: writers insert into ``T`` (the Distributed table
splits each block by the sharding key and, with ``insert_distributed_sync``, returns only once
every shard holds its part), queries read ``T`` (ClickHouse aggregates per shard and merges the
partial states, so ``argMax``/``sum``/``count`` answer as on one server), and a Go reader of
``flow_metrics`` reads the whole cluster. The transformation is mechanical, so a table added to
schema.sql gets its cluster form without a line here (sharded by ``EngineId`` when it has one).

What must stay on one shard: a materialized view fires on the local table its block landed in, so
``flow_latest_mv`` reads ``flow_metrics_local`` and writes ``flow_latest_local``; flow_metrics is
sharded by the hash flow_latest's ``FlowKey`` is (the flow identity, engine id included), so the
rows of one flow, in both tables, live on one shard and ReplacingMergeTree's merges (and the
writers' ``OPTIMIZE``, run on every node's local table) collapse them as on one server.

DDL runs on every node over its own connection (:func:`cluster_statements` says which), not as
``ON CLUSTER`` DDL, which needs ZooKeeper; inserts and queries go through the one server the
config names. See docs/deployment.md, "ClickHouse shards".
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from netspectra.storage.sql import FLOW_IDENTITY, quote_string, schema_statements

#: ``T`` → ``T_local``: the per-shard table behind the Distributed ``T``.
LOCAL_SUFFIX = "_local"

#: Where a table's rows go. flow_metrics and flow_latest use the same hash (flow_latest's FlowKey
#: is ``cityHash64(FLOW_IDENTITY)``): a flow's rows and its latest rows share a shard.
SHARDING_KEYS: dict[str, str] = {
    "flow_metrics": f"cityHash64({FLOW_IDENTITY})",
    "flow_latest": "FlowKey",
    "heavy_hitters": "cityHash64(TaskName, EngineId, Flow)",
    "engine_leases": "cityHash64(EngineId)",
}

_CREATE_TABLE = re.compile(
    r"^CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)\s*\((.*)\)\s*ENGINE\s*=\s*(\w+)",
    re.DOTALL | re.IGNORECASE,
)
_HAS_ENGINE_ID = re.compile(r"(?:^|,)\s*EngineId\s", re.IGNORECASE)
_DDL = re.compile(r"^\s*(CREATE|ALTER|OPTIMIZE|DROP|RENAME|TRUNCATE)\b", re.IGNORECASE)
_OPTIMIZE_OR_ALTER = re.compile(r"^\s*(OPTIMIZE|ALTER)\s+TABLE\s+(\w+)\b", re.IGNORECASE)
_CREATE_VIEW = re.compile(r"^\s*CREATE\s+MATERIALIZED\s+VIEW\b", re.IGNORECASE)


def sharded_tables(statements: list[str] | None = None) -> dict[str, str]:
    """The schema's MergeTree-family tables → their sharding keys (the tables that get sharded).

    Other engines (the TinyLog marker table) are left alone: one copy on each node.
    """
    keys: dict[str, str] = {}
    for statement in schema_statements() if statements is None else statements:
        match = _CREATE_TABLE.match(statement.strip())
        if match is None or not match.group(3).endswith("MergeTree"):
            continue
        name, columns = match.group(1), match.group(2)
        default = "cityHash64(EngineId)" if _HAS_ENGINE_ID.search(columns) else "rand()"
        keys[name] = SHARDING_KEYS.get(name, default)
    return keys


@dataclass(frozen=True, slots=True)
class ClusterStatement:
    """One statement of the cluster form; ``every_node`` for DDL, else run once (through here)."""

    sql: str
    every_node: bool


def _rename(sql: str, name: str, start: int, end: int) -> str:
    return sql[:start] + name + LOCAL_SUFFIX + sql[end:]


def cluster_statements(
    sql: str, cluster: str, database: str, tables: dict[str, str]
) -> list[ClusterStatement]:
    """``sql`` as it runs on ``cluster`` whose sharded tables are ``tables`` (see the module doc).

    The Distributed tables name ``database`` literally: ``currentDatabase()`` would be evaluated
    again when a server re-attaches the table at its start, in whatever database that is.

    - ``CREATE TABLE T (...) ENGINE = *MergeTree`` → the same as ``T_local``, then
      ``CREATE TABLE T AS T_local ENGINE = Distributed(...)``, both on every node;
    - ``CREATE MATERIALIZED VIEW``: its ``TO`` and ``FROM`` tables become the local ones;
    - ``OPTIMIZE TABLE T`` → ``T_local``; ``ALTER TABLE T`` → ``T_local``, then ``T``;
    - other DDL as it is, on every node; anything else (``INSERT ... SELECT``) once, unchanged.
    """
    text = sql.strip()
    if not _DDL.match(text):
        return [ClusterStatement(sql, every_node=False)]
    create = _CREATE_TABLE.match(text)
    if create is not None and create.group(1) in tables:
        name = create.group(1)
        local_name = quote_string(name + LOCAL_SUFFIX)
        distributed = (
            f"CREATE TABLE IF NOT EXISTS {name} AS {name}{LOCAL_SUFFIX} ENGINE = Distributed("
            f"{quote_string(cluster)}, {quote_string(database)}, {local_name}, {tables[name]})"
        )
        return [
            ClusterStatement(_rename(text, name, create.start(1), create.end(1)), every_node=True),
            ClusterStatement(distributed, every_node=True),
        ]
    if _CREATE_VIEW.match(text):
        pattern = r"\b(TO|FROM|JOIN)(\s+)(" + "|".join(map(re.escape, tables)) + r")\b"
        view = re.sub(pattern, rf"\1\2\3{LOCAL_SUFFIX}", text, flags=re.IGNORECASE) if tables else text
        return [ClusterStatement(view, every_node=True)]
    target = _OPTIMIZE_OR_ALTER.match(text)
    if target is not None and target.group(2) in tables:
        on_local = ClusterStatement(
            _rename(text, target.group(2), target.start(2), target.end(2)), every_node=True
        )
        if target.group(1).upper() == "OPTIMIZE":  # a Distributed table has nothing to merge
            return [on_local]
        return [on_local, ClusterStatement(text, every_node=True)]
    return [ClusterStatement(text, every_node=True)]
