"""asynch's private surface used by netspectra/storage/asynch_internals.py, with a real ClickHouse."""

from __future__ import annotations

import inspect

from asynch.connection import Connection

from netspectra.storage.asynch_internals import execute_columnar, execute_native, uses_compression
from netspectra.storage.native_block import encode_column
from tests.fixtures.clickhouse import ClickHouseServer
from tests.unit.contracts.contract import Contract

ASYNCH = Contract("asynch", "netspectra/storage/asynch_internals.py")


def test_version_is_within_the_pin() -> None:
    ASYNCH.check(ASYNCH.version.startswith("0.4."), "the code was written for asynch 0.4.x")


def test_protocol_connection_takes_columns() -> None:
    connection = Connection(host="127.0.0.1", port=9)  # never connected
    proto = ASYNCH.attribute(connection, "_connection")
    ASYNCH.parameters(type(proto), "execute", ["self", "query", "args"])
    ASYNCH.check(
        "columnar" in inspect.signature(type(proto).execute).parameters,
        "Connection._connection.execute has no 'columnar' parameter",
    )


async def test_columnar_insert_round_trips(
    clickhouse_server: ClickHouseServer, clickhouse_database: str
) -> None:
    clickhouse_server.query(f"CREATE TABLE {clickhouse_database}.t (a UInt32, b String) ENGINE = Memory")
    connection = Connection(
        host=clickhouse_server.host, port=clickhouse_server.tcp_port, database=clickhouse_database
    )
    await connection.connect()
    try:
        await execute_columnar(connection, "INSERT INTO t (a, b) VALUES", [[1, 2, 3], ["x", "y", "z"]])
    finally:
        await connection.close()
    rows = clickhouse_server.query(f"SELECT a, b FROM {clickhouse_database}.t ORDER BY a FORMAT TSV")
    ASYNCH.check(rows == "1\tx\n2\ty\n3\tz\n", f"a columnar insert stored {rows!r}, not the three rows given")


def test_protocol_connection_offers_what_the_native_insert_calls() -> None:
    connection = Connection(host="127.0.0.1", port=9)  # never connected
    proto = ASYNCH.attribute(connection, "_connection")
    for name in (
        "send_query",
        "send_external_tables",
        "receive_sample_block",
        "send_block",
        "_receive_packet",
    ):
        ASYNCH.attribute(proto, name)
    ASYNCH.attribute(proto, "compression")
    ASYNCH.check(
        not uses_compression(connection), "a connection opened without compression reports compression"
    )
    from asynch.proto import block, context, protocol

    for module, name in ((block, "BlockInfo"), (block, "ColumnOrientedBlock"), (context, "ExecuteContext")):
        ASYNCH.attribute(module, name)
    ASYNCH.check(protocol.ClientPacket.DATA == 2, "ClientPacket.DATA is no longer 2")


async def test_native_insert_round_trips(
    clickhouse_server: ClickHouseServer, clickhouse_database: str
) -> None:
    """Every type our tables use, NULLs, a long and a non-ASCII string, the largest UInt64."""
    clickhouse_server.query(
        f"CREATE TABLE {clickhouse_database}.n (a UInt64, b String, c Nullable(String), d Nullable(UInt16),"
        " e DateTime, f UInt8) ENGINE = Memory"
    )
    columns = {
        "ByteCount": [2**64 - 1, 0, 7],
        "TaskName": ["x" * 300, "t\u00e9\u00df", ""],
        "SrcIP": [None, "10.0.0.1", "::1"],
        "SrcPort": [None, 443, 0],
        "StartTime": [0, 1_700_000_000, 2**32 - 1],
        "Protocol": [6, 17, 255],
    }
    names = dict(zip("abcdef", columns, strict=True))
    connection = Connection(
        host=clickhouse_server.host, port=clickhouse_server.tcp_port, database=clickhouse_database
    )
    await connection.connect()
    try:
        await execute_native(
            connection,
            "INSERT INTO n (a, b, c, d, e, f) VALUES",
            3,
            lambda name, type_name: encode_column(names[name], type_name, columns[names[name]]),
        )
    finally:
        await connection.close()
    rows = clickhouse_server.query(
        f"SELECT a, length(b), countEqual(splitByString('x', b), '') = 301, c, d, toUInt32(e), f"
        f" FROM {clickhouse_database}.n FORMAT TSV"
    )
    accented = len(columns["TaskName"][1].encode())  # type: ignore[union-attr]
    expected = (
        f"{2**64 - 1}\t300\t1\t\\N\t\\N\t0\t6\n"
        f"0\t{accented}\t0\t10.0.0.1\t443\t1700000000\t17\n"
        f"7\t0\t0\t::1\t0\t{2**32 - 1}\t255\n"
    )
    ASYNCH.check(rows == expected, f"a native insert stored {rows!r}, not {expected!r}")
