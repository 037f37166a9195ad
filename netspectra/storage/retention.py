"""Retention: ``flow_metrics``, ``heavy_hitters``, ``sketch_states`` and ``sketch_state_runs`` keep
``retention`` seconds, and ``flow_latest`` forgets with them (it used to keep flows whose
partitions were dropped, and answered for them).

Two mechanisms, chosen by the server's version:

* ClickHouse 19.6 and later (chdb, current servers) have table TTL: every table gets ``TTL
  Timestamp + INTERVAL retention SECOND``, row-precise, applied by the server's merges (a TTL
  merge runs at most every ``merge_with_ttl_timeout``, 4 h by default, each table on its own, so
  an expired flow can still be counted until both tables have merged).
* ClickHouse 18.16 (Debian's) has none: whole monthly partitions (``toYYYYMM(Timestamp)``, Go's
  partitioning) are dropped once their month ended more than ``retention`` ago, and the
  unpartitioned ``flow_latest`` loses every row older than the first month kept, through a
  mutation that is awaited, so both tables agree when :func:`apply_retention` returns. The
  granularity is a month: rows live between ``retention`` and ``retention`` + one month. The
  result (and so the writer's log line) says the fallback was taken and why.

On a cluster (``clickhouse.cluster``, storage/cluster.py) the rows live in each shard's
``T_local`` tables behind the Distributed ``T`` (which holds nothing and takes no TTL), so the
retention is applied on every node, to its local tables, over that node's own connection, as the
cluster's other DDL is (``ON CLUSTER`` needs ZooKeeper, which plain shards do not have). Each node
picks its mechanism by its own version, so a cluster being upgraded node by node keeps its
retention; a flow's rows and its flow_latest rows share a shard, so pruning flow_latest_local
with its own shard's flow_metrics_local keeps the two in step.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import re
import time
from typing import Protocol, runtime_checkable

from netspectra.errors import StorageError
from netspectra.storage.cluster import LOCAL_SUFFIX
from netspectra.storage.sql import SqlBackend

logger = logging.getLogger(__name__)

#: The tables retention applies to; flow_latest follows flow_metrics.
RETAINED = ("flow_metrics", "heavy_hitters", "sketch_states", "sketch_state_runs")
_TTL_TABLES = (*RETAINED, "flow_latest")
#: The first version with table TTL (MergeTree ... TTL, ALTER TABLE ... MODIFY TTL).
TTL_VERSION = (19, 6)
_VERSION = "SELECT version()"
_PARTITIONS = (
    "SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase()"
    " AND table = {table:String} AND active"
)
_PENDING_MUTATIONS = (
    "SELECT count() FROM system.mutations WHERE database = currentDatabase()"
    " AND table = {table:String} AND is_done = 0"
)
#: How long to wait for flow_latest's DELETE mutation before giving up (the next pass retries).
MUTATION_TIMEOUT_S = 120.0


@runtime_checkable
class ShardedBackend(Protocol):
    """A backend that may be a cluster of shards (the ClickHouse server backend)."""

    async def shard_nodes(self) -> list[tuple[str, SqlBackend]] | None:
        """Every node as (its name for logs, a backend running SQL as written on that node alone);
        None when the backend is one server."""
        ...


def server_version(text: str) -> tuple[int, int]:
    """``"18.16.1"`` → ``(18, 16)``; ``(0, 0)`` when unreadable (treated as without TTL)."""
    match = re.match(r"(\d+)\.(\d+)", text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def month_end(partition: str) -> int | None:
    """Epoch seconds when the ``YYYYMM`` partition's month ends (UTC); None for another shape."""
    text = partition.strip().strip("'")
    if not re.fullmatch(r"\d{6}", text):
        return None
    year, month = int(text[:4]), int(text[4:])
    if not 1 <= month <= 12:
        return None
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


def month_start(epoch_s: int) -> int:
    """Epoch seconds of the start (UTC) of the month ``epoch_s`` falls in."""
    moment = time.gmtime(epoch_s)
    return calendar.timegm((moment.tm_year, moment.tm_mon, 1, 0, 0, 0))


async def _version_text(backend: SqlBackend) -> str:
    rows = await backend.select(_VERSION)
    return str(rows[0][0]) if rows else "unknown"


async def supports_ttl(backend: SqlBackend) -> bool:
    return server_version(await _version_text(backend)) >= TTL_VERSION


async def retention_nodes(backend: SqlBackend) -> tuple[list[tuple[str, SqlBackend]], str]:
    """Where the rows live: each node with the suffix of its tables (``_local`` on a cluster)."""
    if isinstance(backend, ShardedBackend):
        nodes = await backend.shard_nodes()
        if nodes is not None:
            return nodes, LOCAL_SUFFIX
    return [("", backend)], ""


async def apply_retention(backend: SqlBackend, retention_s: float, *, now_s: int | None = None) -> str:
    """Apply a retention of ``retention_s`` seconds to the store; returns what was done (for logs).

    The text starts with ``TTL`` only when every node now has the TTL (nothing left to do later).
    """
    seconds = int(retention_s)
    if seconds <= 0:
        return "kept forever"
    cutoff = (int(time.time()) if now_s is None else now_s) - seconds
    nodes, suffix = await retention_nodes(backend)
    done = [(name, await _apply_on_node(node, seconds, cutoff, suffix)) for name, node in nodes]
    if len(done) == 1 and not done[0][0]:
        return done[0][1]
    if all(text.startswith("TTL") for _, text in done):
        return f"TTL {seconds} s on the local tables of every node ({', '.join(name for name, _ in done)})"
    return "; ".join(f"{name}: {text}" for name, text in done)


async def _apply_on_node(node: SqlBackend, seconds: int, cutoff: int, suffix: str) -> str:
    version = await _version_text(node)
    if server_version(version) >= TTL_VERSION:
        for table in _TTL_TABLES:
            await node.execute(
                f"ALTER TABLE {table}{suffix} MODIFY TTL Timestamp + INTERVAL {seconds} SECOND"
            )
        return f"TTL {seconds} s"
    dropped: list[str] = []
    for table in RETAINED:
        for (partition,) in await node.select(_PARTITIONS, {"table": table + suffix}):
            end = month_end(str(partition))
            if end is not None and end <= cutoff:
                await node.execute(
                    f"ALTER TABLE {table}{suffix} DROP PARTITION {int(str(partition).strip(chr(39)))}"
                )
                dropped.append(f"{table} {partition}")
    # every row older than the first month kept was in a dropped partition; flow_latest loses the
    # same rows. Asked afresh each pass, so a DELETE that did not finish last time is redone.
    pruned = await _prune_latest(node, f"flow_latest{suffix}", month_start(cutoff))
    fallback = f"no table TTL on ClickHouse {version} (it came in 19.6), so monthly partitions"
    if not dropped and not pruned:
        return f"{fallback}: nothing old enough to drop"
    latest = f"; flow_latest: {pruned} rows of dropped months deleted" if pruned else ""
    return f"{fallback}: dropped {', '.join(dropped) or 'none'}{latest}"


async def _prune_latest(node: SqlBackend, table: str, boundary: int) -> int:
    """Delete ``table``'s rows older than ``boundary`` and wait for it; returns how many there were."""
    # ``table`` is flow_latest or flow_latest_local, ``boundary`` an int: nothing from outside
    rows = await node.select(f"SELECT count() FROM {table} WHERE Timestamp < toDateTime({boundary})")  # noqa: S608
    stale = int(rows[0][0]) if rows else 0
    if stale:
        await node.execute(f"ALTER TABLE {table} DELETE WHERE Timestamp < toDateTime({boundary})")
        await _await_mutations(node, table)
    return stale


async def _await_mutations(backend: SqlBackend, table: str) -> None:
    deadline = time.monotonic() + MUTATION_TIMEOUT_S
    delay = 0.05
    while True:
        rows = await backend.select(_PENDING_MUTATIONS, {"table": table})
        if not rows or int(rows[0][0]) == 0:
            return
        if time.monotonic() > deadline:
            raise StorageError(f"{table}'s retention DELETE is still running; the next pass checks again")
        await asyncio.sleep(delay)  # a server-side mutation: nothing to await but its state
        delay = min(1.0, delay * 2)
