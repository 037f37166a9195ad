"""The SQL NetSpectra runs, once for both backends, and the seam each backend implements.

Every statement is a constant text; request values only ever travel as bound parameters written
``{name:Type}`` (ClickHouse's server-side parameter syntax, which chdb binds natively). For the
18.16 server, which predates that syntax, :func:`to_pyformat` rewrites the markers to asynch's
``%(name)s``, which asynch escapes client-side. Optional filters choose among constant
fragments; nothing is ever concatenated from a request string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Protocol

#: Columns we insert, in table order (EngineId last: it is the one column Go's tables lack).
FLOW_COLUMNS: tuple[str, ...] = (
    "Timestamp",
    "TaskName",
    "SrcIP",
    "DstIP",
    "SrcPort",
    "DstPort",
    "Protocol",
    "StartTime",
    "EndTime",
    "ByteCount",
    "PacketCount",
    "EngineId",
)
HITTER_COLUMNS: tuple[str, ...] = ("Timestamp", "TaskName", "Flow", "Value", "Type", "EngineId")
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {"flow_metrics": FLOW_COLUMNS, "heavy_hitters": HITTER_COLUMNS}

#: Added to a table created by Go2NetSpectra (which lacks it); the text is a constant.
ADD_ENGINE_ID = {
    "flow_metrics": "ALTER TABLE flow_metrics ADD COLUMN EngineId String DEFAULT ''",
    "heavy_hitters": "ALTER TABLE heavy_hitters ADD COLUMN EngineId String DEFAULT ''",
}
TABLE_COLUMNS_QUERY = (
    "SELECT table, name FROM system.columns WHERE database = currentDatabase() "
    "AND table IN ('flow_metrics', 'heavy_hitters')"
)

_MARKER = re.compile(r"\{(\w+):[^{}]+\}")


def schema_statements() -> list[str]:
    """The CREATE TABLE statements of schema.sql, comments stripped, one per list item."""
    text = resources.files("netspectra.storage").joinpath("schema.sql").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


def to_pyformat(sql: str) -> str:
    """``{name:Type}`` markers → asynch's ``%(name)s`` (asynch escapes each value client-side)."""
    return _MARKER.sub(r"%(\1)s", sql)


# --- queries -----------------------------------------------------------------------------------
# Latest row of every flow (argMax over Timestamp: counters are cumulative within a period), then
# sums. EngineId is part of the flow identity: engines sharing a queue group count disjoint packets.

FLOW_FILTERS: dict[str, str] = {
    "task": " AND TaskName = {task:String}",
    "end": " AND Timestamp <= toDateTime({end:UInt32})",
    "SrcIP": " AND SrcIP = {SrcIP:String}",
    "DstIP": " AND DstIP = {DstIP:String}",
    "SrcPort": " AND SrcPort = {SrcPort:UInt16}",
    "DstPort": " AND DstPort = {DstPort:UInt16}",
    "Protocol": " AND Protocol = {Protocol:UInt8}",
}


def flow_where(present: Sequence[str]) -> str:
    """The WHERE clause for these filter names (constant fragments from :data:`FLOW_FILTERS`)."""
    return "WHERE 1 = 1" + "".join(FLOW_FILTERS[name] for name in present)


AGGREGATE_FLOWS = (
    "SELECT TaskName, sum(LatestBytes), sum(LatestPackets), count() FROM ("
    " SELECT TaskName, argMax(ByteCount, Timestamp) AS LatestBytes,"
    " argMax(PacketCount, Timestamp) AS LatestPackets"
    " FROM flow_metrics {where} GROUP BY TaskName, EngineId, SrcIP, DstIP, SrcPort, DstPort, Protocol)"
    " GROUP BY TaskName ORDER BY TaskName"
)

TRACE_FLOW = (
    "SELECT count(), toUInt32(min(First)), toUInt32(max(Last)), sum(Packets), sum(Bytes) FROM ("
    " SELECT argMax(StartTime, Timestamp) AS First, argMax(EndTime, Timestamp) AS Last,"
    " argMax(PacketCount, Timestamp) AS Packets, argMax(ByteCount, Timestamp) AS Bytes"
    " FROM flow_metrics {where} GROUP BY EngineId, SrcIP, DstIP, SrcPort, DstPort, Protocol)"
)

_HITTERS = (
    "SELECT Flow, {combine}(Latest) AS Total FROM ("
    " SELECT EngineId, Flow, argMax(Value, Timestamp) AS Latest FROM heavy_hitters"
    " WHERE TaskName = {{task:String}} AND Type = {{type:UInt8}}{end}"
    " GROUP BY EngineId, Flow)"
    " GROUP BY Flow ORDER BY Total DESC, Flow ASC LIMIT {{limit:UInt32}}"
)
_HITTERS_END = " AND Timestamp <= toDateTime({end:UInt32})"


def heavy_hitters_sql(*, spread: bool, bounded: bool) -> str:
    """Counts and sizes of one flow add up across engines; a spread estimate does not (max)."""
    return _HITTERS.format(combine="max" if spread else "sum", end=_HITTERS_END if bounded else "")


TASKS = (
    "SELECT TaskName, 'exact' FROM flow_metrics GROUP BY TaskName"
    " UNION ALL SELECT TaskName, 'sketch' FROM heavy_hitters GROUP BY TaskName"
)

TASK_SERIES = (
    "SELECT toUInt32(Timestamp) AS At, sum(PacketCount), sum(ByteCount) FROM flow_metrics"
    " WHERE TaskName = {task:String} AND Timestamp >= toDateTime({start:UInt32})"
    " AND Timestamp <= toDateTime({end:UInt32}) GROUP BY At ORDER BY At"
)

PING = "SELECT 1"


class SqlBackend(Protocol):
    """What the writers and the query store need from a ClickHouse: the server or chdb."""

    async def select(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a SELECT whose ``{name:Type}`` markers are bound from ``params``."""

    async def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Append rows given as equal-length columns named as in :data:`TABLE_COLUMNS`."""

    async def execute(self, sql: str) -> None:
        """Run a constant DDL statement."""

    async def close(self) -> None: ...


async def ensure_schema(backend: SqlBackend) -> None:
    """Create the tables if missing and add EngineId to tables Go2NetSpectra created."""
    for statement in schema_statements():
        await backend.execute(statement)
    present: dict[str, set[str]] = {}
    for table, column in await backend.select(TABLE_COLUMNS_QUERY):
        present.setdefault(table, set()).add(column)
    for table, alter in ADD_ENGINE_ID.items():
        if "EngineId" not in present.get(table, set()):
            await backend.execute(alter)
