"""The SQL NetSpectra runs, once for both backends, and the seam each backend implements.

Every statement is a constant text; request values are written ``{name:Type}`` and bound by
:func:`bind`, the ONE place a value becomes SQL, for both backends: each value is checked against
its type and quoted by :func:`quote_string` as ClickHouse parses a string literal. Both backends
used to bind differently (asynch escaping client-side for the 18.16 server, chdb's server-side
parameters, which read escape sequences in the value: a task named ``per\\x5fsrc\\x5fip``
answered as ``per_src_ip``, a trailing backslash failed with "Cannot parse escape sequence").
Optional filters choose among constant fragments; nothing is ever concatenated from a request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, Protocol, runtime_checkable

from netspectra.errors import StorageError

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
#: What renormalisation by the sampling rate added to a flow row's counts (renormalised minus raw:
#: raw = PacketCount - ExtrapolatedPackets, bytes alike). Inserted only by tasks fed flow records;
#: the default 0 (unsampled: raw = counted) fills every other row, ours from packets and Go's. The
#: difference, not the raw counts, is stored so that the default costs nothing: a column of
#: zeros is nearly free to write, a copy of PacketCount is not (bench note in docs/flow-export.md).
EXTRAPOLATED_COLUMNS: tuple[str, ...] = ("ExtrapolatedPackets", "ExtrapolatedBytes")
HITTER_COLUMNS: tuple[str, ...] = ("Timestamp", "TaskName", "Flow", "Value", "Type", "EngineId")
LEASE_COLUMNS: tuple[str, ...] = (
    "EngineId",
    "Writer",
    "Incarnation",
    "Holder",
    "Host",
    "Pid",
    "Heartbeat",
    "Released",
)
STATE_COLUMNS: tuple[str, ...] = (
    "TaskName",
    "EngineId",
    "PeriodStart",
    "Epoch",
    "EpochStart",
    "Timestamp",
    "Algorithm",
    "StateSize",
    "StateCheck",
    "State",
)
RUN_COLUMNS: tuple[str, ...] = (
    "TaskName",
    "EngineId",
    "PeriodStart",
    "FirstEpoch",
    "LastEpoch",
    "EpochStart",
    "FirstTimestamp",
    "Timestamp",
    "Algorithm",
    "Covers",
    "StateSize",
    "StateCheck",
    "State",
)
PERIOD_COLUMNS: tuple[str, ...] = ("EngineId", "PeriodStart")
SNAPSHOT_COLUMNS: tuple[str, ...] = ("EngineId", "Writer", "Timestamp")
TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "flow_metrics": FLOW_COLUMNS,
    "heavy_hitters": HITTER_COLUMNS,
    "engine_leases": LEASE_COLUMNS,
    "sketch_states": STATE_COLUMNS,
    "sketch_state_runs": RUN_COLUMNS,
    "engine_periods": PERIOD_COLUMNS,
    "engine_snapshots": SNAPSHOT_COLUMNS,
}

#: Columns of a table whose insert may leave them out (their defaults fill them).
OPTIONAL_COLUMNS: dict[str, tuple[str, ...]] = {"flow_metrics": EXTRAPOLATED_COLUMNS}


def insert_columns(table: str, columns: Mapping[str, Any]) -> tuple[str, ...]:
    """The columns an insert of ``columns`` into ``table`` names: every required one, in table
    order, then the optional ones present (a packet task's flows carry no raw counts)."""
    return TABLE_COLUMNS[table] + tuple(name for name in OPTIONAL_COLUMNS.get(table, ()) if name in columns)


#: Added to a table created by Go2NetSpectra (which lacks it); the text is a constant.
ADD_ENGINE_ID = {
    "flow_metrics": "ALTER TABLE flow_metrics ADD COLUMN EngineId String DEFAULT ''",
    "heavy_hitters": "ALTER TABLE heavy_hitters ADD COLUMN EngineId String DEFAULT ''",
}
#: Added to a store made by Go2NetSpectra or an older NetSpectra (its rows read as unsampled).
#: 18.16 has no ADD COLUMN IF NOT EXISTS: system.columns says which are missing.
ADD_EXTRAPOLATED: dict[str, tuple[tuple[str, str], ...]] = {
    table: tuple(
        (column, f"ALTER TABLE {table} ADD COLUMN {column} UInt64 DEFAULT 0")
        for column in EXTRAPOLATED_COLUMNS
    )
    for table in ("flow_metrics", "flow_latest")
}
TABLE_COLUMNS_QUERY = (
    "SELECT table, name FROM system.columns WHERE database = currentDatabase() "
    "AND table IN ('flow_metrics', 'heavy_hitters', 'flow_latest')"
)
LATEST_FILLED_QUERY = (
    "SELECT name FROM system.tables WHERE database = currentDatabase()"
    " AND name IN ('flow_latest_filled', 'flow_latest_cityhash')"
)

# --- the latest-row table (flow_latest in schema.sql) -------------------------------------------
# The flow identity, as the raw queries group it: task, engine and the five key fields, where a
# NULL (a field the task does not key on) differs from every value. Two hashes of it: the queries
# group by FlowKey and treat FlowCheck varying inside a group as a collision, so a store only needs
# FlowCheck to be one function of the identity throughout. FlowKey is cityHash64. FlowCheck is
# cityHash64 of the arguments in reverse order in a store made since 2026-12: ClickHouse hashes each
# argument and folds the hashes together from the first, so the two folds differ from their first
# step: two flows collide in both when they collide in the hash of each argument's own text where
# they differ, else only by two coincidences at once (~2^-128 a pair, as with sipHash64). In a
# store made before, it stays sipHash64, which cost its view half its time (bench/writers.py, 1.1
# M rows into chdb, snapshot to stored: 0.78-0.81 s with it, 0.53-0.57 s with cityHash64); hashing
# such a store's flows again would mean reading all of flow_metrics once (see ensure_schema).
_FLOW_ARGUMENTS = (
    "TaskName",
    "EngineId",
    "isNull(SrcIP)",
    "ifNull(SrcIP, '')",
    "isNull(DstIP)",
    "ifNull(DstIP, '')",
    "ifNull(toInt32(SrcPort), -1)",
    "ifNull(toInt32(DstPort), -1)",
    "ifNull(toInt16(Protocol), -1)",
)
_FLOW_IDENTITY = ", ".join(_FLOW_ARGUMENTS)
#: Also flow_metrics' sharding key on a ClickHouse cluster (storage/cluster.py): a flow's rows and
#: its flow_latest rows (FlowKey is the same hash) then share a shard.
FLOW_IDENTITY = _FLOW_IDENTITY
FLOW_KEY = f"cityHash64({_FLOW_IDENTITY})"
FLOW_CHECK = f"cityHash64({', '.join(reversed(_FLOW_ARGUMENTS))})"
#: FlowCheck of a store made before FLOW_CHECK (one whose back-fill marker predates it).
FLOW_CHECK_SIPHASH = f"sipHash64({_FLOW_IDENTITY})"


def _latest_select(check: str) -> str:
    return (  # constant text (no request value in it)
        f"SELECT TaskName, {FLOW_KEY} AS FlowKey, {check} AS FlowCheck,"  # noqa: S608
        " EngineId, SrcIP, DstIP, SrcPort, DstPort, Protocol, Timestamp, StartTime, EndTime, ByteCount,"
        " PacketCount, ExtrapolatedPackets, ExtrapolatedBytes FROM flow_metrics"
    )


LATEST_SELECT = _latest_select(FLOW_CHECK)
#: Every INSERT into flow_metrics (ours or Go's) also lands in flow_latest.
LATEST_VIEW = f"CREATE MATERIALIZED VIEW IF NOT EXISTS flow_latest_mv TO flow_latest AS {LATEST_SELECT}"
#: The same for a store made before FLOW_CHECK.
LATEST_VIEW_SIPHASH = (
    "CREATE MATERIALIZED VIEW IF NOT EXISTS flow_latest_mv TO flow_latest AS"
    f" {_latest_select(FLOW_CHECK_SIPHASH)}"
)
#: A view made by an older version selects no Extrapolated*: it is made again (then back-filled).
DROP_LATEST_VIEW = "DROP TABLE IF EXISTS flow_latest_mv"
#: Rows stored before the view existed (a Go-made store, an older NetSpectra). Run once, after the
#: view is created, so nothing inserted meanwhile is missed; a row seen twice is harmless (the
#: queries take the latest row per flow, and identical rows merge away).
LATEST_BACKFILL = f"INSERT INTO flow_latest {LATEST_SELECT}"
LATEST_BACKFILL_SIPHASH = f"INSERT INTO flow_latest {_latest_select(FLOW_CHECK_SIPHASH)}"
#: Run by the writers after a snapshot: merges flow_latest's parts (see QueuedWriter).
LATEST_COMPACT = "OPTIMIZE TABLE flow_latest"
#: Created once the back-fill is done: an interrupted back-fill is simply run again next time.
LATEST_FILLED = "CREATE TABLE IF NOT EXISTS flow_latest_filled (Done UInt8) ENGINE = TinyLog"
#: Created before a new store's view: its FlowCheck is FLOW_CHECK. A store with the back-fill
#: marker and without this one was made before, and keeps FLOW_CHECK_SIPHASH.
LATEST_CITYHASH = "CREATE TABLE IF NOT EXISTS flow_latest_cityhash (Done UInt8) ENGINE = TinyLog"

_MARKER = re.compile(r"\{(\w+):([^{}]+)\}")


def schema_statements() -> list[str]:
    """The CREATE TABLE statements of schema.sql, comments stripped, one per list item."""
    text = resources.files("netspectra.storage").joinpath("schema.sql").read_text()
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    return [statement.strip() for statement in "\n".join(lines).split(";") if statement.strip()]


#: What a ClickHouse string literal must escape (the set clickhouse-driver and asynch use).
_STRING_ESCAPES = {
    "\\": "\\\\",
    "'": "\\'",
    "\0": "\\0",
    "\b": "\\b",
    "\f": "\\f",
    "\r": "\\r",
    "\n": "\\n",
    "\t": "\\t",
    "\a": "\\a",
    "\v": "\\v",
}
_STRING_ESCAPE_TABLE = str.maketrans(_STRING_ESCAPES)
_UNSIGNED_BITS = {"UInt8": 8, "UInt16": 16, "UInt32": 32, "UInt64": 64}


def quote_string(value: str) -> str:
    """``value`` as a ClickHouse string literal that parses back to exactly ``value``."""
    return "'" + value.translate(_STRING_ESCAPE_TABLE) + "'"


def literal(value: Any, type_name: str) -> str:
    """One bound value as SQL text of ``type_name``; TypeError/ValueError when it is not one."""
    if type_name == "String":
        if not isinstance(value, str):
            raise TypeError(f"a String parameter needs str, not {type(value).__name__}")
        return quote_string(value)
    bits = _UNSIGNED_BITS.get(type_name)
    if bits is None:
        raise ValueError(f"no literal for parameter type {type_name}")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{value!r} is not a {type_name}")
    return str(value)


def bind(sql: str, params: Mapping[str, Any] | None = None) -> str:
    """``sql`` with every ``{name:Type}`` marker replaced by the quoted value of ``params[name]``."""
    values = params or {}

    def replace(match: re.Match[str]) -> str:
        return literal(values[match.group(1)], match.group(2))

    return _MARKER.sub(replace, sql)


# --- queries -----------------------------------------------------------------------------------
# Latest row of every flow (argMax over Timestamp: counters are cumulative within a period), then
# sums. EngineId is part of the flow identity: engines sharing a queue group count disjoint packets.
# Timestamp has whole seconds, and two snapshots of one engine can share one (a sub-second
# snapshot_interval, or a periodic snapshot and the final one at a stop): "latest" is therefore
# the greatest (Timestamp, EndTime, PacketCount, ByteCount), as the counters of a period only grow
# (argMax over Timestamp alone picked either row of a tie: a flow's TraceFlow came out short), and
# a window's rows are sorted the same way. Hitter rows: (Timestamp, Value), cumulative alike.

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


# Per flow and EngineId the latest row, then per task the sums and the number of distinct flows:
# uniqExact over the key columns (EngineId left out), so a flow counted by several engines or
# incarnations adds its packets but is one flow. (uniqExact of several arguments keeps 128-bit
# SipHashes: exact unless two of the task's flows collide in 128 bits.) Within a task a field is
# NULL in every row or in none, so ifNull only makes NULLs countable.
_DISTINCT_FLOWS = (
    "uniqExact(ifNull({s}, ''), ifNull({d}, ''), ifNull(toInt32({sp}), -1), ifNull(toInt32({dp}), -1),"
    " ifNull(toInt16({pr}), -1))"
)
_FLOW_COLUMNS = "TaskName, SrcIP, DstIP, SrcPort, DstPort, Protocol"
# Every flow answer ends with the raw (as sent) sums, the same way as the renormalised ones: a
# row's raw counts are its counts minus what renormalisation added (EXTRAPOLATED_COLUMNS).
_LATEST_RAW = (
    " argMax(toUInt64(ByteCount - ExtrapolatedBytes),"
    " (Timestamp, EndTime, PacketCount, ByteCount)) AS LatestRawBytes,"
    " argMax(toUInt64(PacketCount - ExtrapolatedPackets),"
    " (Timestamp, EndTime, PacketCount, ByteCount)) AS LatestRawPackets"
)
AGGREGATE_FLOWS = (
    "SELECT TaskName, sum(LatestBytes), sum(LatestPackets),"  # noqa: S608
    f" {_DISTINCT_FLOWS.format(s='SrcIP', d='DstIP', sp='SrcPort', dp='DstPort', pr='Protocol')},"
    " sum(LatestRawBytes), sum(LatestRawPackets) FROM ("
    f" SELECT {_FLOW_COLUMNS},"
    " argMax(ByteCount, (Timestamp, EndTime, PacketCount, ByteCount)) AS LatestBytes, argMax(PacketCount,"
    " (Timestamp, EndTime, PacketCount, ByteCount)) AS LatestPackets,"
    f"{_LATEST_RAW}"
    f" FROM flow_metrics {{where}} GROUP BY {_FLOW_COLUMNS}, EngineId)"
    " GROUP BY TaskName ORDER BY TaskName"
)

# The same answers from flow_latest (a few rows per flow instead of one per snapshot). The end
# time is NOT a filter here: flow_latest holds only each flow's newest row, so these answer
# "latest row ≤ end" only when no matching flow's newest row is later than end. Latest (the
# newest timestamp seen) and Collided (two flows sharing a FlowKey) tell QueryStore when to
# answer from flow_metrics instead.
_LATEST_PER_ENGINE = (
    "SELECT any(TaskName) AS Task, any(SrcIP) AS S, any(DstIP) AS D, any(SrcPort) AS SP,"
    " any(DstPort) AS DP, any(Protocol) AS PR,"
    " argMax(ByteCount, (Timestamp, EndTime, PacketCount, ByteCount)) AS LatestBytes, argMax(PacketCount,"
    " (Timestamp, EndTime, PacketCount, ByteCount)) AS LatestPackets,{more}"
    " argMax(toUInt64(ByteCount - ExtrapolatedBytes),"
    " (Timestamp, EndTime, PacketCount, ByteCount)) AS LatestRawBytes,"
    " argMax(toUInt64(PacketCount - ExtrapolatedPackets),"
    " (Timestamp, EndTime, PacketCount, ByteCount)) AS LatestRawPackets,"
    " max(Timestamp) AS Latest, max(FlowCheck) != min(FlowCheck) AS Collided"
    " FROM flow_latest {{where}} GROUP BY FlowKey"
)
_LATEST_DISTINCT = _DISTINCT_FLOWS.format(s="S", d="D", sp="SP", dp="DP", pr="PR")
LATEST_AGGREGATE_FLOWS = (
    f"SELECT Task, sum(LatestBytes), sum(LatestPackets), {_LATEST_DISTINCT},"  # noqa: S608
    " sum(LatestRawBytes), sum(LatestRawPackets),"
    f" toUInt32(max(Latest)), max(Collided) FROM ({_LATEST_PER_ENGINE.format(more='')})"
    " GROUP BY Task ORDER BY Task"
)

_LATEST_SEEN = (
    " argMax(StartTime, (Timestamp, EndTime, PacketCount, ByteCount)) AS First,"
    " argMax(EndTime, (Timestamp, EndTime, PacketCount, ByteCount)) AS Last,"
)
LATEST_TRACE_FLOW = (
    f"SELECT {_LATEST_DISTINCT}, toUInt32(min(First)), toUInt32(max(Last)), sum(LatestPackets),"  # noqa: S608
    " sum(LatestBytes), sum(LatestRawPackets), sum(LatestRawBytes), toUInt32(max(Latest)), max(Collided)"
    f" FROM ({_LATEST_PER_ENGINE.format(more=_LATEST_SEEN)})"
)

TRACE_FLOW = (
    "SELECT "  # noqa: S608
    f"{_DISTINCT_FLOWS.format(s='SrcIP', d='DstIP', sp='SrcPort', dp='DstPort', pr='Protocol')},"
    " toUInt32(min(First)), toUInt32(max(Last)), sum(LatestPackets), sum(LatestBytes),"
    " sum(LatestRawPackets), sum(LatestRawBytes) FROM ("
    f" SELECT {_FLOW_COLUMNS},"
    " argMax(StartTime, (Timestamp, EndTime, PacketCount, ByteCount)) AS First, argMax(EndTime,"
    " (Timestamp, EndTime, PacketCount, ByteCount)) AS Last,"
    " argMax(PacketCount, (Timestamp, EndTime, PacketCount, ByteCount)) AS LatestPackets, argMax(ByteCount,"
    " (Timestamp, EndTime, PacketCount, ByteCount)) AS LatestBytes,"
    f"{_LATEST_RAW}"
    f" FROM flow_metrics {{where}} GROUP BY {_FLOW_COLUMNS}, EngineId)"
)

# --- windows: what was counted in (start, end] -------------------------------------------------
# Rows are cumulative within a period, per flow and EngineId (one engine incarnation). Each row's
# increment is its counters minus the previous row's of the same flow and EngineId, unless the
# row starts a new period: its first packet (StartTime) is later than the previous row's last
# packet (EndTime), or a counter went down; then the increment is the whole row. A window's
# traffic is the sum of the increments of the rows stamped in (start, end]: with no reset that is
# the difference of the cumulative rows at the two ends, and a reset inside the window costs
# nothing. Only "the latest row ≤ t per flow" is relied on: a flow absent from a snapshot (not
# written because unchanged) simply has no row, and the next row's increment covers the gap.
# The raw counts (counts minus Extrapolated*) are cumulative alike and take the same increments
# (RawPackets, RawBytes). R: the (Timestamp, PacketCount, ByteCount, StartTime, EndTime, raw
# packets, raw bytes) rows, sorted by Timestamp.
_WINDOW_PER_ENGINE = (
    "SELECT TaskName, SrcIP, DstIP, SrcPort, DstPort, Protocol,"
    " arraySort(r -> (r.1, r.5, r.2, r.3), groupArray((toUInt32(Timestamp), PacketCount, ByteCount,"
    " toUInt32(StartTime), toUInt32(EndTime), toUInt64(PacketCount - ExtrapolatedPackets),"
    " toUInt64(ByteCount - ExtrapolatedBytes)))) AS R,"
    # one array per column, and each shifted by one (the previous row): every lambda below reads
    # only its own arguments, as a lambda reading a whole array copies it for every element
    " arrayMap(r -> r.1, R) AS Stamps, arrayMap(r -> r.2, R) AS P, arrayMap(r -> r.3, R) AS B,"
    " arrayMap(r -> r.4, R) AS Firsts, arrayMap(r -> r.5, R) AS Lasts,"
    " arrayMap(r -> r.6, R) AS RP, arrayMap(r -> r.7, R) AS RB,"
    " arrayPushFront(arrayPopBack(P), toUInt64(0)) AS PrevP,"
    " arrayPushFront(arrayPopBack(B), toUInt64(0)) AS PrevB,"
    " arrayPushFront(arrayPopBack(RP), toUInt64(0)) AS PrevRP,"
    " arrayPushFront(arrayPopBack(RB), toUInt64(0)) AS PrevRB,"
    " arrayPushFront(arrayPopBack(Lasts), toUInt32(0)) AS PrevLasts,"
    " arrayMap((i, f, pl, p, pp, b, pb) -> i > 1 AND f <= pl AND p >= pp AND b >= pb,"
    " arrayEnumerate(R), Firsts, PrevLasts, P, PrevP, B, PrevB) AS Continues,"
    " arrayMap((c, p, pp) -> if(c, toUInt64(p - pp), p), Continues, P, PrevP) AS AddedPackets,"
    " arrayMap((c, b, pb) -> if(c, toUInt64(b - pb), b), Continues, B, PrevB) AS AddedBytes,"
    " arrayMap((c, p, pp) -> if(c AND p >= pp, toUInt64(p - pp), p), Continues, RP, PrevRP)"
    " AS AddedRawPackets,"
    " arrayMap((c, b, pb) -> if(c AND b >= pb, toUInt64(b - pb), b), Continues, RB, PrevRB) AS AddedRawBytes,"
    " arrayMap((t, a) -> t > {start:UInt32} AND a > 0, Stamps, AddedPackets) AS Counted,"
    " arraySum(arrayMap((c, a) -> if(c, a, 0), Counted, AddedPackets)) AS Packets,"
    " arraySum(arrayMap((c, a) -> if(c, a, 0), Counted, AddedBytes)) AS Bytes,"
    " arraySum(arrayMap((c, a) -> if(c, a, 0), Counted, AddedRawPackets)) AS RawPackets,"
    " arraySum(arrayMap((c, a) -> if(c, a, 0), Counted, AddedRawBytes)) AS RawBytes,"
    " arrayFirstIndex(c -> c, Counted) AS FirstCounted,"
    " arrayReduce('max', arrayMap((c, l) -> if(c, l, 0), Counted, Lasts)) AS Last,"
    # a flow already counting when the window began: its first packet in the window is not
    # recorded, so first seen is the window's start (never after its last packet in the window)
    " if(Continues[FirstCounted], least({start:UInt32}, Last), Firsts[FirstCounted]) AS First"
    " FROM flow_metrics {where} GROUP BY TaskName, EngineId, SrcIP, DstIP, SrcPort, DstPort, Protocol"
    " HAVING Packets > 0"
)
_WINDOW_DISTINCT = _DISTINCT_FLOWS.format(s="SrcIP", d="DstIP", sp="SrcPort", dp="DstPort", pr="Protocol")
WINDOW_AGGREGATE_FLOWS = (
    f"SELECT TaskName, sum(Bytes), sum(Packets), {_WINDOW_DISTINCT}, sum(RawBytes), sum(RawPackets)"  # noqa: S608
    f" FROM ({_WINDOW_PER_ENGINE}) GROUP BY TaskName ORDER BY TaskName"
)
WINDOW_TRACE_FLOW = (
    f"SELECT {_WINDOW_DISTINCT}, toUInt32(min(First)), toUInt32(max(Last)), sum(Packets), sum(Bytes),"  # noqa: S608
    " sum(RawPackets), sum(RawBytes)"
    f" FROM ({_WINDOW_PER_ENGINE})"
)
#: The Grafana series: per snapshot second in (start, end], what every engine counted then.
WINDOW_TASK_INCREMENTS = (
    "SELECT Rows AS At, sum(AddedP), sum(AddedB) FROM ("  # noqa: S608
    " SELECT arrayFilter((t, c) -> c, Stamps, Counted) AS Rows,"
    " arrayFilter((p, c) -> c, AddedPackets, Counted) AS AddedP,"
    " arrayFilter((b, c) -> c, AddedBytes, Counted) AS AddedB"
    f" FROM ({_WINDOW_PER_ENGINE})) ARRAY JOIN Rows, AddedP, AddedB"
    " GROUP BY At ORDER BY At"
)

_HITTERS = (
    "SELECT Flow, {combine}(Latest) AS Total FROM ("
    " SELECT EngineId, Flow, argMax(Value, (Timestamp, Value)) AS Latest FROM heavy_hitters"
    " WHERE TaskName = {{task:String}} AND Type = {{type:UInt8}}{end}"
    " GROUP BY EngineId, Flow)"
    " GROUP BY Flow ORDER BY Total DESC, Flow ASC LIMIT {{limit:UInt32}}"
)
_HITTERS_END = " AND Timestamp <= toDateTime({end:UInt32})"


def heavy_hitters_sql(*, spread: bool, bounded: bool) -> str:
    """Counts and sizes of one flow add up across engines; a spread estimate does not (max)."""
    return _HITTERS.format(combine="max" if spread else "sum", end=_HITTERS_END if bounded else "")


# --- sketch states (sketch_states in schema.sql; see storage/query.py) --------------------------
# One row per (engine, period, epoch), whatever duplicates a retried insert left (any(): equal
# rows). StateSize/StateCheck let the query store keep decoded states across queries without
# reading State again. The State bytes come from STATE_BYTES through a backend's select_binary
# (chdb's Arrow output, asynch's strings_as_bytes); a backend without it gets them as hex here
# (chdb's JSON output would mangle raw bytes; hex doubled them and cost ~2 ms per 100 kB state).
_STATES = (
    "SELECT EngineId, toUInt32(PeriodStart), Epoch, toUInt32(any(Timestamp)), any(Algorithm),"
    " any(StateSize), any(StateCheck){state} FROM sketch_states"
    " WHERE TaskName = {{task:String}}{end}{start}"
    " GROUP BY EngineId, PeriodStart, Epoch ORDER BY EngineId, PeriodStart, Epoch"
)
_STATES_END = " AND Timestamp <= toDateTime({end:UInt32})"
_STATES_START = " AND Timestamp > toDateTime({start:UInt32})"


def sketch_states_sql(*, with_state: bool, bounded: bool, windowed: bool) -> str:
    """The epochs of one task (Timestamp in (start, end]); ``with_state`` adds hex(State)."""
    return _STATES.format(
        state=", any(hex(State))" if with_state else "",
        end=_STATES_END if bounded else "",
        start=_STATES_START if windowed else "",
    )


#: The stored state rows of one task with Timestamp in (start, end], as stored (a row a retried
#: insert wrote twice comes twice), for :meth:`BinarySelect.select_binary`: only what the reader
#: matches against the epochs it asked for, and the State bytes.
STATE_BYTES = (
    "SELECT EngineId, toUInt32(PeriodStart), Epoch, StateCheck, State FROM sketch_states"
    " WHERE TaskName = {task:String} AND Timestamp > toDateTime({start:UInt32})"
    " AND Timestamp <= toDateTime({end:UInt32})"
)

#: The stored runs of epochs of one task (sketch_state_runs) whose epochs' Timestamps all lie in
#: (start, end], as stored, for :meth:`BinarySelect.select_binary`: what the reader matches
#: against the epoch rows it sees (their digest, Covers), and the State bytes. RUN_TEXT: State as
#: hex, for a backend without select_binary.
_RUNS = (
    "SELECT EngineId, toUInt32(PeriodStart), FirstEpoch, LastEpoch, Covers, StateCheck, {state}"
    " FROM sketch_state_runs WHERE TaskName = {{task:String}} AND Timestamp > toDateTime({{start:UInt32}})"
    " AND Timestamp <= toDateTime({{end:UInt32}}) AND FirstTimestamp > toDateTime({{start:UInt32}})"
)
RUN_BYTES = _RUNS.format(state="State")
RUN_TEXT = _RUNS.format(state="hex(State)")

#: Does the task have Go-style hitter rows at all (a windowed query of a task without states)?
HITTER_ROWS_OF_TASK = "SELECT count() FROM heavy_hitters WHERE TaskName = {task:String}"
STATE_ROWS_OF_TASK = "SELECT count() FROM sketch_states WHERE TaskName = {task:String}"

TASKS = (
    "SELECT TaskName, 'exact' FROM flow_metrics GROUP BY TaskName"
    " UNION ALL SELECT TaskName, 'sketch' FROM heavy_hitters GROUP BY TaskName"
    " UNION ALL SELECT TaskName, 'sketch' FROM sketch_states GROUP BY TaskName"
)

# The console's top talkers of one exact task: each flow's latest row ≤ end, minus its latest row
# before start (a counter that went down was reset by a period: the later value is the window's).
_TOP_FLOWS = (
    "SELECT SrcIP, DstIP, SrcPort, DstPort, Protocol, sum(P) AS Packets, sum(B) AS Bytes,"
    " toUInt32(min(F)), toUInt32(max(L)) FROM ("
    " SELECT EngineId, SrcIP, DstIP, SrcPort, DstPort, Protocol,"
    " argMax(PacketCount, (Timestamp, EndTime, PacketCount, ByteCount)) AS P1, argMax(ByteCount,"
    " (Timestamp, EndTime, PacketCount, ByteCount)) AS B1,"
    " argMaxIf(PacketCount,"
    " (Timestamp, EndTime, PacketCount, ByteCount), Timestamp < toDateTime({{start:UInt32}})) AS P0,"
    " argMaxIf(ByteCount,"
    " (Timestamp, EndTime, PacketCount, ByteCount), Timestamp < toDateTime({{start:UInt32}})) AS B0,"
    " if(P1 >= P0, toUInt64(P1 - P0), P1) AS P, if(B1 >= B0, toUInt64(B1 - B0), B1) AS B,"
    " argMax(StartTime, (Timestamp, EndTime, PacketCount, ByteCount)) AS F, argMax(EndTime,"
    " (Timestamp, EndTime, PacketCount, ByteCount)) AS L"
    " FROM flow_metrics {{where}} GROUP BY EngineId, SrcIP, DstIP, SrcPort, DstPort, Protocol)"
    " WHERE P > 0"
    " GROUP BY SrcIP, DstIP, SrcPort, DstPort, Protocol"
    " ORDER BY {order} DESC, SrcIP, DstIP, SrcPort, DstPort, Protocol LIMIT {{limit:UInt32}}"
)
TOP_FLOWS_BY = {order: _TOP_FLOWS.format(order=order) for order in ("Packets", "Bytes")}


def _top_window(order: str) -> str:
    """Top talkers of a window (start, end]: each flow's increments there, as WINDOW_AGGREGATE_FLOWS."""
    return (
        "SELECT SrcIP, DstIP, SrcPort, DstPort, Protocol, sum(Packets) AS P, sum(Bytes) AS B,"  # noqa: S608
        f" toUInt32(min(First)), toUInt32(max(Last)) FROM ({_WINDOW_PER_ENGINE})"
        " GROUP BY SrcIP, DstIP, SrcPort, DstPort, Protocol"
        f" ORDER BY {order} DESC, SrcIP, DstIP, SrcPort, DstPort, Protocol LIMIT {{limit:UInt32}}"
    )


TOP_WINDOW_FLOWS_BY = {"Packets": _top_window("P"), "Bytes": _top_window("B")}

# --- the current period, for the alerter ------------------------------------------------------
# Go's alerter reads the engine's snapshot of the running period. Writers get change snapshots
# (only the flows changed since the last one written), so the store's equivalent is, per engine
# incarnation, each flow's latest row when it is later than the start of that engine's running
# period (engine_periods: the closing snapshot of the ended period is stamped at that start, so
# its rows are left out, and so is a flow quiet since the reset). An engine with no recorded
# period (Go's writers, older NetSpectra: full snapshots) keeps the rule for full snapshots: its
# rows at its newest Timestamp. An engine (incarnation) whose newest flow row, newest snapshot that
# wrote nothing (engine_snapshots) and lease heartbeat are all older than {since} is gone and left
# out: one without a lease stays while it snapshots, quiet or not. Flows are then summed over engines by their
# key fields: the merged view. One JOIN per SELECT (18.16), and ALL, not ANY: ANY INNER JOIN keeps one
# left row per key in current ClickHouse (chdb). The right side has one row per EngineId.
# Constant text; ``{order}`` is one of two constant column names.
_CURRENT_ENGINES = (
    "SELECT E AS EngineId, max(PS) AS PeriodStart, max(N) AS Newest, max(F) AS NewestFlow FROM ("
    " SELECT EngineId AS E, toUInt32(0) AS PS, toUInt32(max(Timestamp)) AS N, toUInt32(max(Timestamp)) AS F"
    " FROM flow_latest WHERE TaskName = {task:String} GROUP BY EngineId"
    " UNION ALL SELECT EngineId AS E, toUInt32(max(PeriodStart)) AS PS, toUInt32(0) AS N, toUInt32(0) AS F"
    " FROM engine_periods GROUP BY EngineId"
    " UNION ALL SELECT EngineId AS E, toUInt32(0) AS PS, toUInt32(max(Timestamp)) AS N, toUInt32(0) AS F"
    " FROM engine_snapshots GROUP BY EngineId"
    " UNION ALL SELECT concat(EngineId, '@', Incarnation) AS E, toUInt32(0) AS PS,"
    " toUInt32(max(Heartbeat)) AS N, toUInt32(0) AS F FROM engine_leases GROUP BY EngineId, Incarnation)"
    " GROUP BY E HAVING Newest >= {since:UInt32}"
)
_CURRENT_FLOWS = (
    "SELECT S, D, SP, DP, PR, sum(Packets) AS P, sum(Bytes) AS B FROM ("  # noqa: S608
    " SELECT EngineId, any(SrcIP) AS S, any(DstIP) AS D, any(SrcPort) AS SP, any(DstPort) AS DP,"
    " any(Protocol) AS PR, argMax(PacketCount, (Timestamp, EndTime, PacketCount, ByteCount)) AS Packets,"
    " argMax(ByteCount, (Timestamp, EndTime, PacketCount, ByteCount)) AS Bytes,"
    " toUInt32(max(Timestamp)) AS Latest"
    " FROM flow_latest WHERE TaskName = {task:String} GROUP BY FlowKey, EngineId) AS Flows"
    f" ALL INNER JOIN ({_CURRENT_ENGINES}) AS Engines USING EngineId"
    " WHERE if(PeriodStart > 0, Latest > PeriodStart, Latest = NewestFlow)"
    " GROUP BY S, D, SP, DP, PR"
)
CURRENT_FLOWS_BY = {
    "packets": _CURRENT_FLOWS + " ORDER BY P DESC LIMIT {limit:UInt32}",
    "bytes": _CURRENT_FLOWS + " ORDER BY B DESC LIMIT {limit:UInt32}",
}
CURRENT_TOTALS = f"SELECT sum(P), sum(B), count() FROM ({_CURRENT_FLOWS})"  # noqa: S608
#: Hitters reported since {since} (a snapshot with no hitter writes no row, so "newest snapshot"
#: cannot be told from the table; the alerter passes a little over one snapshot interval).
CURRENT_HITTERS = (
    "SELECT Flow, {combine}(Latest) AS Total FROM ("
    " SELECT EngineId, Flow, argMax(Value, (Timestamp, Value)) AS Latest FROM heavy_hitters"
    " WHERE TaskName = {{task:String}} AND Type = {{type:UInt8}}"
    " AND Timestamp >= toDateTime({{since:UInt32}})"
    " GROUP BY EngineId, Flow)"
    " GROUP BY Flow ORDER BY Total DESC, Flow ASC LIMIT {{limit:UInt32}}"
)
#: Per engine incarnation in the alerter's view of ``task`` (as in _CURRENT_ENGINES: newest flow
#: row or heartbeat since {since}): the time of its newest snapshot of {group} that landed (its
#: newest flow row of ``task``, or the engine_snapshots row of a snapshot that wrote nothing; 0:
#: none yet), and whether it is alive: no lease (Go's writers, one-shot runs) or a lease neither
#: released nor silent for {lapse} seconds of the store's clock. Every packet counts in every
#: exact task, so a snapshot that wrote rows wrote some of ``task``'s.
_DATA_TIMES = (
    "SELECT E, max(M) AS Marked, if(max(K) = 1, max(L), 1) AS Live FROM ("
    "{rows}"
    " UNION ALL SELECT EngineId AS E, toUInt32(max(Timestamp)) AS N,"
    " toUInt32(maxIf(Timestamp, Writer = {group:String})) AS M, toUInt8(0) AS L, toUInt8(0) AS K"
    " FROM engine_snapshots GROUP BY EngineId"
    " UNION ALL SELECT concat(EngineId, '@', Incarnation) AS E, toUInt32(max(Heartbeat)) AS N,"
    " toUInt32(0) AS M,"
    " toUInt8(argMax(Released, Heartbeat) = 0 AND max(Heartbeat) >= now() - {lapse:UInt32}) AS L,"
    " toUInt8(1) AS K FROM engine_leases GROUP BY EngineId, Incarnation)"
    " GROUP BY E HAVING max(N) >= {since:UInt32}"
)
_NEWEST_ROWS = (
    " SELECT EngineId AS E, toUInt32(max(Timestamp)) AS N, toUInt32(max(Timestamp)) AS M, toUInt8(0) AS L,"
    " toUInt8(0) AS K FROM {table} WHERE TaskName = {{task:String}} GROUP BY EngineId"
)
#: Per engine (incl. incarnation): its newest snapshot of an exact task, from the flow rows or the
#: engine_snapshots row of a snapshot that wrote none; its lease's liveness (QueryStore.current_data_time).
ENGINE_DATA_TIMES = _DATA_TIMES.replace("{rows}", _NEWEST_ROWS.format(table="flow_latest"))
#: The same for a sketch task: its newest epoch state or hitter row (a snapshot writes one of them,
#: or the engine_snapshots row).
SKETCH_DATA_TIMES = _DATA_TIMES.replace(
    "{rows}",
    _NEWEST_ROWS.format(table="sketch_states") + " UNION ALL" + _NEWEST_ROWS.format(table="heavy_hitters"),
)

PING = "SELECT 1"

# --- engine-id leases (engine_leases in schema.sql; see storage/lease.py) ---------------------
#: Every incarnation that ever wrote ``writer`` under ``engine``: its newest heartbeat and state.
LEASE_HOLDERS = (
    "SELECT Incarnation, argMax(Holder, Heartbeat), argMax(Host, Heartbeat), argMax(Pid, Heartbeat),"
    " toUInt32(max(Heartbeat)), argMax(Released, Heartbeat) FROM engine_leases"
    " WHERE EngineId = {engine:String} AND Writer = {writer:String} GROUP BY Incarnation"
)
#: The store's clock: leases are compared in its time, so hosts' clocks need not agree.
STORE_NOW = "SELECT toUInt32(now())"

# --- exactly once: is this snapshot already stored? --------------------------------------------
#: Rows of one task of one snapshot (one EngineId incl. incarnation, one second): a snapshot whose
#: insert may have happened (a crash, or an error after the insert was sent) is inserted only when
#: its first task has fewer rows stored than it carries (an INSERT block lands whole or not at all).
STORED_FLOW_ROWS = (
    "SELECT count() FROM flow_metrics WHERE EngineId = {engine:String}"
    " AND Timestamp = toDateTime({at:UInt32}) AND TaskName = {task:String}"
)
STORED_HITTER_ROWS = (
    "SELECT count() FROM heavy_hitters WHERE EngineId = {engine:String}"
    " AND Timestamp = toDateTime({at:UInt32}) AND TaskName = {task:String}"
)


class SqlBackend(Protocol):
    """What the writers and the query store need from a ClickHouse: the server or chdb."""

    async def select(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows of a SELECT whose ``{name:Type}`` markers are bound from ``params`` by :func:`bind`."""

    async def insert(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Append rows given as equal-length columns named as in :data:`TABLE_COLUMNS`."""

    async def execute(self, sql: str) -> None:
        """Run a constant DDL statement."""

    async def close(self) -> None: ...


@runtime_checkable
class BinarySelect(Protocol):
    """A backend that can return String columns as bytes (both of ours can; a test's fake may not)."""

    async def select_binary(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """Rows as :meth:`SqlBackend.select` returns them, every String column as ``bytes``."""
        ...


async def _present_columns(backend: SqlBackend) -> dict[str, set[str]]:
    present: dict[str, set[str]] = {}
    for table, column in await backend.select(TABLE_COLUMNS_QUERY):
        present.setdefault(table, set()).add(column)
    return present


async def _add_column(backend: SqlBackend, table: str, column: str, alter: str) -> None:
    """Run ``alter``; an error is fine when the column is there after all (another process added it)."""
    try:
        await backend.execute(alter)
    except StorageError:
        if column not in (await _present_columns(backend)).get(table, set()):
            raise


async def ensure_schema(backend: SqlBackend) -> None:
    """Create the tables if missing, add the columns older stores lack (EngineId to tables
    Go2NetSpectra created, Extrapolated* to those of Go and of older NetSpectra versions), then
    create flow_latest's view and back-fill flow_latest unless a back-fill has completed before.

    The view reads EngineId and Extrapolated*, so it comes after the ALTERs; the back-fill comes
    after the view, so no insert falls between the two. A flow_latest without Extrapolated* has an
    older view, which selects none: it is dropped first, then made again and the back-fill runs
    again (the rows inserted while no view existed are back-filled; rows back-filled twice are
    harmless). The view and the back-fill hash FlowCheck as the store always has: FLOW_CHECK in a
    store that the flow_latest_cityhash marker says was made with it, or that has no back-fill
    yet (a new store, a Go-made one: the marker is made before its view), FLOW_CHECK_SIPHASH in
    one made before (re-hashing it would read all of flow_metrics and rewrite flow_latest, too much
    to do at a writer's start). The marker tables keep restarts cheap; a back-fill run twice (two
    processes at once, or a crash before the marker) only repeats rows, which is harmless.
    """
    markers = {str(row[0]) for row in await backend.select(LATEST_FILLED_QUERY)}
    filled = "flow_latest_filled" in markers
    cityhash = "flow_latest_cityhash" in markers or not filled
    for statement in schema_statements():
        await backend.execute(statement)
    present = await _present_columns(backend)
    for table, alter in ADD_ENGINE_ID.items():
        if "EngineId" not in present.get(table, set()):
            await backend.execute(alter)
    if not filled or not set(EXTRAPOLATED_COLUMNS) <= present.get("flow_latest", set()):
        # no back-fill yet (an older version's view may be left from an interrupted one), or an
        # older view that selects no Extrapolated*
        await backend.execute(DROP_LATEST_VIEW)
        filled = False
    for table, alters in ADD_EXTRAPOLATED.items():
        for column, alter in alters:
            if column not in present.get(table, set()):
                await _add_column(backend, table, column, alter)
    if cityhash:
        await backend.execute(LATEST_CITYHASH)
    await backend.execute(LATEST_VIEW if cityhash else LATEST_VIEW_SIPHASH)
    if not filled:
        await backend.execute(LATEST_BACKFILL if cityhash else LATEST_BACKFILL_SIPHASH)
        await backend.execute(LATEST_FILLED)
