"""asynch's private internals NetSpectra relies on; nothing else touches them.

Written against asynch 0.4 (0.4.0 checked; pyproject pins ``asynch<0.5``). Each use is
checked by ``tests/unit/contracts/test_asynch_internals.py``, which names the attribute and the
installed version when an upgrade breaks it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from asynch.connection import Connection


async def execute_columnar(connection: Connection, sql: str, columns: Sequence[Any]) -> Any:
    """``INSERT ... VALUES`` from whole columns (one sequence per column, in the statement's order).

    asynch's public cursor takes rows only; its protocol connection (``Connection._connection``)
    takes columns and skips building a tuple per row, which is most of an insert's cost.
    """
    return await connection._connection.execute(sql, columns, columnar=True)


async def execute_native(
    connection: Connection, sql: str, rows: int, encode: Callable[[str, str], bytes]
) -> None:
    """``INSERT ... VALUES`` sending one block whose column bytes ``encode(name, type)`` builds.

    The server's sample block names each column's type; the block goes out as asynch's own
    ``send_block`` writes one (packet type, table name, block info, columns), then the empty block
    that ends the data. Uses the protocol connection's ``send_query``, ``send_external_tables``,
    ``receive_sample_block``, ``send_block``, ``_receive_packet``, ``writer`` and ``compression``
    (uncompressed only: the caller falls back to :func:`execute_columnar` otherwise).
    """
    from asynch.proto.block import BlockInfo, ColumnOrientedBlock
    from asynch.proto.context import ExecuteContext
    from asynch.proto.protocol import ClientPacket

    protocol: Any = connection._connection  # the stubs leave out writer, compression, _receive_packet
    async with ExecuteContext(protocol, sql, None):
        await protocol.send_query(sql)
        await protocol.send_external_tables(None)
        sample = await protocol.receive_sample_block()
        # in a worker thread: a snapshot's columns take ~0.1 s per million rows to encode, which
        # the event loop (the engine's bus reader, the API) must not wait out
        columns = await asyncio.to_thread(
            lambda: [(name, kind, encode(name, kind)) for name, kind in sample.columns_with_types]
        )
        writer = protocol.writer
        await writer.write_varint(ClientPacket.DATA)
        await writer.write_str("")
        await BlockInfo().write(writer)
        await writer.write_varint(len(columns))
        await writer.write_varint(rows)
        for name, type_name, data in columns:
            await writer.write_str(name)
            await writer.write_str(type_name)
            await writer.write_bytes(data)
        await writer.flush()
        await protocol.send_block(ColumnOrientedBlock())
        packet = await protocol._receive_packet()
        if packet.exception:
            raise packet.exception


def uses_compression(connection: Connection) -> bool:
    """True when blocks on this connection must be compressed (execute_native sends them raw)."""
    protocol: Any = connection._connection
    return bool(protocol.compression)
