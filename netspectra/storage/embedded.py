"""The embedded store: the same schema and SQL in-process through chdb, so no server is needed.

chdb allows one data directory per process and one process per directory, so every writer and
the API reader of a process share one :class:`EmbeddedBackend` through
:meth:`StorageContext.embedded_session`. Roles split across processes (engine here, API there) need the
ClickHouse server instead. chdb releases the GIL while a query runs; every call goes through
one worker thread, which also serialises access to the session.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from netspectra.config.models import WriterConfig
from netspectra.errors import StorageError, StorageRefusedError
from netspectra.storage.context import StorageContext
from netspectra.storage.rows import as_arrow, insert_blocks
from netspectra.storage.spool import QueuedWriter, SnapshotSpool
from netspectra.storage.sql import bind, insert_columns, quote_string

logger = logging.getLogger(__name__)

#: The database our tables live in inside the chdb data directory.
DATABASE = "netspectra"

#: Settings of an INSERT into flow_metrics (flow_latest's view runs inside it). A snapshot holds
#: one row per flow, so ReplacingMergeTree's merge of equal keys within the inserted block
#: (``optimize_on_insert``, on by default) finds nothing to merge and cost as much as the rest of
#: the insert: 0.69 against 0.40 CPU s for 330 k rows into flow_metrics with the view
#: (bench/writers.py). The queries take argMax, so no answer depends on what a merge collapsed.
#: The view's rows are written beside the table's instead of after them
#: (``parallel_view_processing``).
INSERT_SETTINGS = "optimize_on_insert = 0, parallel_view_processing = 1"

#: Most blocks of one flow_metrics insert inserted at once, each on its own chdb connection.
MAX_INSERT_STREAMS = 4


def default_insert_streams() -> int:
    """A block per core: an insert into flow_metrics with flow_latest's view runs on one core, and
    chdb runs queries of different connections in parallel (the GIL is released while they run)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MAX_INSERT_STREAMS, cores))


SPLIT_ROLES_HINT = (
    "the embedded store (chdb) serves one process per data directory; run the engine and the API "
    "in one process (`netspectra run`), or use a ClickHouse server (writer type 'clickhouse')"
)


class EmbeddedBackend:
    """A chdb session in ``path``; every call runs on one dedicated thread."""

    def __init__(
        self, path: str, *, insert_settings: str = INSERT_SETTINGS, insert_streams: int | None = None
    ) -> None:
        self.path = str(Path(path).resolve())
        self._insert_settings = insert_settings
        self._insert_streams = max(1, insert_streams or default_insert_streams())
        #: connections beside the session for blocks inserted at once (None: chdb has none)
        self._extra: list[Any] | None = []
        self._insert_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="chdb")
        self._session: Any = None
        self._closed = False

    def _open(self) -> Any:
        if self._session is None:
            from chdb import session

            Path(self.path).mkdir(parents=True, exist_ok=True)
            try:
                opened = session.Session(self.path)
                # chdb's "default" is an Overlay database that showed rows from other sessions
                # here; our own Atomic database keeps the store to this directory.
                opened.query(f"CREATE DATABASE IF NOT EXISTS {DATABASE} ENGINE = Atomic")
                opened.query(f"USE {DATABASE}")
                self._session = opened
            except Exception as error:
                raise StorageError(
                    f"cannot open the embedded store at {self.path}: {error}; {SPLIT_ROLES_HINT}"
                ) from error
        return self._session

    async def _call(self, function: Any, *args: Any) -> Any:
        if self._closed:
            raise StorageError(f"the embedded store at {self.path} is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, function, *args)
        except StorageError:
            raise
        except Exception as error:  # in-process: never unreachable, the statement was refused
            raise StorageRefusedError(f"embedded store at {self.path}: {error}") from error

    def _select(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        result = self._open().query(bind(sql, params), "JSONCompact")
        text = result.data() if hasattr(result, "data") else str(result)
        if not text.strip():
            return []
        return [tuple(row) for row in json.loads(text)["data"]]

    def _select_binary(self, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Rows from chdb's Arrow stream output, String columns as bytes (JSON would mangle them)."""
        import pyarrow as pa
        import pyarrow.ipc

        data = self._open().query(bind(sql, params), "ArrowStream").bytes()
        if not data:
            return []
        table = pyarrow.ipc.open_stream(data).read_all()
        columns = []
        for column in table.columns:
            # chdb writes String as Arrow utf8 (output_format_arrow_string_as_string); the bytes
            # are the stored ones, so a cast to binary hands them over without a UTF-8 check
            if pa.types.is_string(column.type):
                column = column.cast(pa.binary())
            elif pa.types.is_large_string(column.type):
                column = column.cast(pa.large_binary())
            columns.append(column.to_pylist())
        return list(zip(*columns, strict=True))

    def _insert(self, table: str, columns: Mapping[str, Any]) -> None:
        names = insert_columns(table, columns)
        settings = f" SETTINGS {self._insert_settings}" if table == "flow_metrics" else ""
        insert = f"INSERT INTO {table} ({', '.join(names)}){settings}"
        streams = self._insert_streams if table == "flow_metrics" else 1
        blocks, last = insert_blocks({name: columns[name] for name in names}, streams)
        session = self._open()
        if last is None:
            self._insert_block(session, insert, names, blocks[0])
            return
        # every block on a connection of its own: a query on the session and one on a connection
        # did not run at once (measured with chdb 4.4), two connections did
        connections = self._connections(len(blocks))
        if connections is None:  # no second connection: one block, as before
            self._insert_block(session, insert, names, {name: columns[name] for name in names})
            return
        assert self._insert_pool is not None
        landed = [
            self._insert_pool.submit(self._insert_block, connection, insert, names, block)
            for connection, block in zip(connections, blocks, strict=True)
        ]
        concurrent.futures.wait(landed)  # every block landed or failed before this returns
        for block in landed:
            block.result()
        self._insert_block(session, insert, names, last)

    def _connections(self, count: int) -> list[Any] | None:
        """``count`` chdb connections beside the session, opened once (None: chdb has none)."""
        if self._extra is None:
            return None
        try:
            import chdb

            while len(self._extra) < count:
                connection = chdb.connect(self.path)
                connection.query(f"USE {DATABASE}")
                self._extra.append(connection)
        except Exception as error:  # an older chdb: inserts stay on the session, one block each
            logger.info("embedded store at %s: one insert at a time (%s)", self.path, error)
            self._close_connections()
            self._extra = None
            return None
        if self._insert_pool is None:
            self._insert_pool = concurrent.futures.ThreadPoolExecutor(
                self._insert_streams, thread_name_prefix="chdb-insert"
            )
        return self._extra[:count]

    @staticmethod
    def _insert_block(connection: Any, insert: str, names: tuple[str, ...], block: Mapping[str, Any]) -> None:
        """One INSERT of ``block``'s rows from an Arrow stream file read by file() (~20 ms per
        million rows). chdb's Python() table function imports pandas (0.2-0.4 s of a short
        `analyze`); its streaming insert (``send_insert``, chdb 4.4) reported rows written into a
        store on a full disk that stored none (tests/integration/test_storage_full_disk.py).
        """
        import pyarrow as pa
        import pyarrow.ipc

        frame = pa.Table.from_arrays([as_arrow(name, block[name]) for name in names], names=list(names))
        listed = ", ".join(names)
        with tempfile.TemporaryDirectory(prefix="netspectra-insert-") as directory:
            path = Path(directory) / "block.arrows"
            with pa.OSFile(str(path), "wb") as sink, pyarrow.ipc.new_stream(sink, frame.schema) as stream:
                stream.write_table(frame)
            source = f"file({quote_string(str(path))}, 'ArrowStream')"
            connection.query(f"{insert} SELECT {listed} FROM {source}")  # noqa: S608

    def _execute(self, sql: str) -> None:
        self._open().query(sql)

    async def select(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return await self._call(self._select, sql, params or {})  # type: ignore[no-any-return]

    async def select_binary(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return await self._call(self._select_binary, sql, params or {})  # type: ignore[no-any-return]

    async def insert(self, table: str, columns: Mapping[str, Any]) -> None:
        await self._call(self._insert, table, columns)

    async def execute(self, sql: str) -> None:
        await self._call(self._execute, sql)

    def _close_connections(self) -> None:
        for connection in self._extra or ():
            connection.close()
        if self._extra:
            self._extra.clear()

    def _close_session(self) -> None:
        self._close_connections()
        if self._insert_pool is not None:
            self._insert_pool.shutdown(wait=True)
            self._insert_pool = None
        if self._session is not None:
            self._session.close()
            self._session = None

    async def close(self) -> None:
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close_session)
        self._closed = True
        self._executor.shutdown(wait=True)


class EmbeddedWriter(QueuedWriter):
    """Writes a group's snapshots into the embedded store (same rows as the ClickHouse writer)."""

    @classmethod
    def from_config(cls, config: WriterConfig, *, group: str, context: StorageContext) -> EmbeddedWriter:
        options = config.embedded_options
        backend = context.embedded_session(options.path)
        spool_dir = Path(backend.path).parent / (Path(backend.path).name + ".spool") / group
        return cls(
            backend,
            SnapshotSpool(spool_dir, options.max_queued_snapshots),
            engine_id=context.engine_id,
            incarnation=context.incarnation,
            group=group,
            store=f"embedded store {backend.path}",
            label=f"embedded writer {group}",
            retention_s=options.retention,
        )
