-- NetSpectra storage schema: one text for ClickHouse 18.16 (Debian) and current ClickHouse (chdb).
-- Column names, types, engine, partitioning and order are the Go2NetSpectra ones, so the Go
-- ns-api reads our tables and we read its tables. EngineId (several engines sharing one store)
-- has a default, so Go's writers, which do not send it, still insert. So do ExtrapolatedPackets and
-- ExtrapolatedBytes (flow_metrics, flow_latest): what renormalisation by the sampling rate added
-- to PacketCount/ByteCount (the renormalised estimates), so the counts as the exporters sent them
-- are PacketCount - ExtrapolatedPackets (bytes alike). Only a task fed flow records writes them;
-- every other row (ours from packets, Go's) gets 0: unsampled, raw = counted. A store made by an
-- older version gets them by ALTER (sql.ensure_schema).
-- Stay within 18.16: no LowCardinality, IPv6, DateTime64, TTL or CTEs.

CREATE TABLE IF NOT EXISTS flow_metrics (
    Timestamp   DateTime,
    TaskName    String,
    SrcIP       Nullable(String),
    DstIP       Nullable(String),
    SrcPort     Nullable(UInt16),
    DstPort     Nullable(UInt16),
    Protocol    Nullable(UInt8),
    StartTime   DateTime,
    EndTime     DateTime,
    ByteCount   UInt64,
    PacketCount UInt64,
    EngineId    String DEFAULT '',
    ExtrapolatedPackets UInt64 DEFAULT 0,
    ExtrapolatedBytes   UInt64 DEFAULT 0
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TaskName, Timestamp);

CREATE TABLE IF NOT EXISTS heavy_hitters (
    Timestamp   DateTime,
    TaskName    String,
    Flow        String,
    Value       UInt64,
    Type        UInt8,
    EngineId    String DEFAULT ''
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TaskName, Timestamp);

-- NetSpectra's own read-side table (Go never sees it): the latest row of every flow, so
-- AggregateFlows and TraceFlow group ~one row per flow instead of every snapshot's row.
-- Filled by the materialized view flow_latest_mv on every INSERT into flow_metrics (ours and
-- Go's alike) and back-filled once when created (see sql.ensure_schema). FlowKey/FlowCheck are
-- two 64-bit hashes of the flow identity (sql.FLOW_KEY, sql.FLOW_CHECK); the sort key ends with
-- the identity itself, so merges only ever collapse rows of one flow. Not partitioned: a merge must see every
-- row of a flow. ReplacingMergeTree(Timestamp) keeps the newest row; queries still take argMax,
-- so the answer never depends on how far background merges have got.
CREATE TABLE IF NOT EXISTS flow_latest (
    TaskName    String,
    FlowKey     UInt64,
    FlowCheck   UInt64,
    EngineId    String,
    SrcIP       Nullable(String),
    DstIP       Nullable(String),
    SrcPort     Nullable(UInt16),
    DstPort     Nullable(UInt16),
    Protocol    Nullable(UInt8),
    Timestamp   DateTime,
    StartTime   DateTime,
    EndTime     DateTime,
    ByteCount   UInt64,
    PacketCount UInt64,
    ExtrapolatedPackets UInt64 DEFAULT 0,
    ExtrapolatedBytes   UInt64 DEFAULT 0
) ENGINE = ReplacingMergeTree(Timestamp)
ORDER BY (TaskName, FlowKey, EngineId, isNull(SrcIP), ifNull(SrcIP, ''), isNull(DstIP), ifNull(DstIP, ''),
          ifNull(toInt32(SrcPort), -1), ifNull(toInt32(DstPort), -1), ifNull(toInt16(Protocol), -1));

-- NetSpectra's own: which incarnation of an engine id writes which group to this store (Go never
-- sees it). Each writer inserts a heartbeat row every few seconds and a Released row when it
-- stops; a writer starting under an engine id another live incarnation holds is refused (see
-- storage/lease.py). Holder names the spool directory (an id kept in it), so an engine restarted
-- on its own spool takes over from its killed predecessor at once. Merges keep the newest row.
CREATE TABLE IF NOT EXISTS engine_leases (
    EngineId    String,
    Writer      String,
    Incarnation String,
    Holder      String,
    Host        String,
    Pid         UInt32,
    Heartbeat   DateTime,
    Released    UInt8
) ENGINE = ReplacingMergeTree(Heartbeat)
ORDER BY (EngineId, Writer, Incarnation);

-- NetSpectra's own: the mergeable state of every sketch task, one row per (task, engine
-- incarnation, epoch), written by the sketch writers beside Go's heavy_hitters rows (which stay
-- as Go writes them). An epoch is what one engine counted between two snapshots of its sketch
-- group (EpochStart < packets <= Timestamp), so a window merges the epochs whose Timestamp lies
-- in it, of every engine (see docs/storage-and-api.md, "Sketch state"). State is the bytes of
-- SketchAlgorithm.to_bytes (versioned, CRC32-checked, parameters and seeds inside); empty when
-- the task's Algorithm cannot merge, so a query can say why it refuses a multi-engine or
-- windowed answer. StateSize and StateCheck (the state's own CRC32, its last 4 bytes) let a
-- query list the epochs and find them in its cache without reading State. Epoch (a
-- per-process counter) keeps two epochs ending in the same second apart; a row inserted twice
-- (a retried insert) has the same key and is read once.
CREATE TABLE IF NOT EXISTS sketch_states (
    TaskName    String,
    EngineId    String,
    PeriodStart DateTime,
    Epoch       UInt64,
    EpochStart  DateTime,
    Timestamp   DateTime,
    Algorithm   String,
    StateSize   UInt32,
    StateCheck  UInt32,
    State       String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TaskName, EngineId, PeriodStart, Epoch);

-- NetSpectra's own: the merged state of each closed run of epochs (the epochs of one engine
-- incarnation and period with the same Epoch div 8, FirstEpoch..LastEpoch; a period's end closes a
-- run early), written beside the run's sketch_states rows, which stay as they are (a reader that
-- knows no runs reads the epochs; runs are a table of their own so it never counts them twice).
-- Covers is the digest of the covered epochs' (Epoch, StateCheck) in epoch order: a query takes
-- the run instead of its epochs only when the epoch rows it sees give the same digest (see
-- netspectra/engine/sketch/runs.py, docs/storage-and-api.md "Runs of epochs"). Timestamp is the
-- last epoch's, FirstTimestamp and EpochStart the first's (a window holds the whole run when
-- FirstTimestamp and Timestamp lie in it); a row inserted twice has the same key and is read once.
CREATE TABLE IF NOT EXISTS sketch_state_runs (
    TaskName    String,
    EngineId    String,
    PeriodStart DateTime,
    FirstEpoch  UInt64,
    LastEpoch   UInt64,
    EpochStart  DateTime,
    FirstTimestamp DateTime,
    Timestamp   DateTime,
    Algorithm   String,
    Covers      UInt32,
    StateSize   UInt32,
    StateCheck  UInt32,
    State       String
) ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(Timestamp)
ORDER BY (TaskName, EngineId, PeriodStart, FirstEpoch);

-- NetSpectra's own: when each engine incarnation's period began (Go never sees it). Change
-- snapshots write only the flows changed since the last one, so the newest snapshot no longer
-- holds every flow of the running period; a flow's latest row belongs to the running period when
-- it is later than the period's start (the closing snapshot of the ended period is stamped at that
-- start). Each writer inserts a row before the first snapshot of a period it writes (see
-- storage/spool.py); a row inserted twice merges away. Read by the alerter (sql.CURRENT_FLOWS_BY).
CREATE TABLE IF NOT EXISTS engine_periods (
    EngineId    String,
    PeriodStart DateTime
) ENGINE = ReplacingMergeTree()
ORDER BY (EngineId, PeriodStart);

-- NetSpectra's own: when each engine incarnation's newest snapshot that wrote no row landed, per
-- group (Go never sees it). A change snapshot with no changed flow writes no row, so the flow rows
-- alone cannot say how recent the store's counts are; each writer inserts a row here for such a
-- snapshot (see storage/spool.py). The alerter makes rates over this data time, not over its own
-- check times (sql.ENGINE_DATA_TIMES). Merges keep the newest row.
CREATE TABLE IF NOT EXISTS engine_snapshots (
    EngineId    String,
    Writer      String,
    Timestamp   DateTime
) ENGINE = ReplacingMergeTree(Timestamp)
ORDER BY (EngineId, Writer);
