"""asynch's private surface used by netspectra/storage/asynch_internals.py, with a real ClickHouse."""

from __future__ import annotations

import inspect

from asynch.connection import Connection

from netspectra.storage.asynch_internals import execute_columnar
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
