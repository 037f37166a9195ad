-- NetSpectra storage schema: one text for ClickHouse 18.16 (Debian) and current ClickHouse (chdb).
-- Column names, types, engine, partitioning and order are the Go2NetSpectra ones, so the Go
-- ns-api reads our tables and we read its tables. EngineId (several engines sharing one store)
-- has a default, so Go's writers, which do not send it, still insert.
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
    EngineId    String DEFAULT ''
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
