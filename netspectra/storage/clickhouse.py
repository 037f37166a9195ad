"""The ClickHouse server backend (asynch, native protocol) and its snapshot writer.

asynch quirks handled here, all measured against 18.16: time-zone-aware datetimes are
formatted without conversion, so every time travels as epoch seconds (``toDateTime({x:UInt32})``
in SQL; also ~7x faster to insert); after a server-side error the next query on the same
connection fails once, so a connection that raised is closed and the pool opens a fresh one.

With ``clickhouse.cluster`` the backend speaks to a cluster of shards (:mod:`netspectra.storage.cluster`):
DDL runs on every node of the cluster, found in ``system.clusters`` of the configured server, each
over a pool of its own with the same credentials; inserts and queries go through the configured
server's Distributed tables, inserts synchronously (``insert_distributed_sync``) so an insert that
returned is on its shards, as the writers' exactly-once check and the next query expect.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from asynch import Pool
from asynch.errors import NetworkError, ServerException, SocketTimeoutError

from netspectra.config.models import ClickHouseOptions, WriterConfig
from netspectra.errors import StorageAuthError, StorageError, StorageRefusedError
from netspectra.storage.asynch_internals import execute_columnar, execute_native, uses_compression
from netspectra.storage.cluster import cluster_statements, sharded_tables
from netspectra.storage.context import StorageContext
from netspectra.storage.native_block import encode_column
from netspectra.storage.rows import as_arrow, as_list, insert_blocks
from netspectra.storage.spool import QueuedWriter, SnapshotSpool
from netspectra.storage.sql import SqlBackend, bind, insert_columns

logger = logging.getLogger(__name__)

#: Seconds to wait for a TCP connection; an unreachable server must fail fast, not hang a query.
CONNECT_TIMEOUT = 3.0
QUERY_TIMEOUT = 60.0
#: Server error codes meaning "these credentials are refused": UNKNOWN_USER, WRONG_PASSWORD,
#: REQUIRED_PASSWORD, IP_ADDRESS_NOT_ALLOWED (18.16), AUTHENTICATION_FAILED (later servers).
AUTH_ERROR_CODES = frozenset({192, 193, 194, 195, 516})
#: The nodes of a cluster, as the configured server knows them (its ``remote_servers``).
CLUSTER_NODES = (
    "SELECT host_name, toUInt16(port), max(is_local) FROM system.clusters WHERE cluster = {cluster:String}"
    " GROUP BY host_name, port ORDER BY host_name, port"
)
CLUSTER_NAMES = "SELECT DISTINCT cluster FROM system.clusters ORDER BY cluster"
#: Most blocks of one flow_metrics insert sent at once (bench/writers.py measured 2 against 1 and 4
#: on this 2-core machine with the server on it).
MAX_INSERT_STREAMS = 2


def _location(options: ClickHouseOptions) -> str:
    return f"{options.username}@{options.host}:{options.port}/{options.database}"


class ClickHouseBackend:
    """A pool of asynch connections to one server and database; opened lazily, safe to share."""

    def __init__(self, options: ClickHouseOptions, *, insert_streams: int | None = None) -> None:
        if options.cloud and not options.secure:
            logger.info("clickhouse.cloud is a Go setting (HTTP); we use the native protocol")
        self.options = options
        self.location = _location(options)
        # a Distributed insert is queued on the server and sent later unless it is synchronous
        settings = {"insert_distributed_sync": 1} if options.cluster else {}
        self._nodes: list[ClickHouseBackend] | None = None  # the cluster's nodes, found once
        self._nodes_lock = asyncio.Lock()
        self._pool = Pool(
            minsize=0,
            maxsize=options.pool_size,
            host=options.host,
            port=options.port,
            database=options.database,
            user=options.username,
            password=options.password.get_secret_value(),
            secure=options.secure,
            connect_timeout=CONNECT_TIMEOUT,
            settings=settings,
        )
        self._started = False
        self._lock = asyncio.Lock()
        #: blocks of one flow_metrics insert sent at once: the server inserts each on a thread of its
        #: own (with flow_latest's view, one core per insert on 18.16), and our encoding of one
        #: overlaps the server's work on another; at most one per pooled connection
        self._insert_streams = max(1, min(options.pool_size, insert_streams or MAX_INSERT_STREAMS))

    async def _ensure_pool(self) -> None:
        async with self._lock:
            if not self._started:
                await self._pool.startup()
                self._started = True

    async def _run(
        self,
        sql: str,
        args: Any,
        *,
        columnar: bool = False,
        fetch: bool = False,
        native: Any = None,
        settings: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            await self._ensure_pool()
            async with self._pool.connection() as connection:
                try:
                    if native is not None and not uses_compression(connection):
                        rows, encode, _ = native
                        return await asyncio.wait_for(
                            execute_native(connection, sql, rows, encode), QUERY_TIMEOUT
                        )
                    if native is not None:
                        columnar, args = True, native[2]()
                    if columnar:
                        # the cursor API only takes rows; see execute_columnar
                        return await asyncio.wait_for(execute_columnar(connection, sql, args), QUERY_TIMEOUT)
                    async with connection.cursor() as cursor:
                        if settings:
                            cursor.set_settings(dict(settings))
                        await asyncio.wait_for(cursor.execute(sql, args), QUERY_TIMEOUT)
                        return await cursor.fetchall() if fetch else None
                except BaseException:
                    await connection.close()  # never reuse a connection that just failed
                    raise
        except (OSError, TimeoutError, ConnectionError, NetworkError, SocketTimeoutError) as error:
            raise StorageError(
                f"ClickHouse at {self.location} is unreachable ({error or type(error).__name__}); "
                "check that the server runs and clickhouse.host/port"
            ) from error
        except StorageError:
            raise
        except Exception as error:
            if isinstance(error, ServerException) and error.code in AUTH_ERROR_CODES:
                raise StorageAuthError(
                    f"ClickHouse at {self.location} refused the credentials (code {error.code}: "
                    f"{error.message.strip()[:200]}); check clickhouse.username/password"
                ) from error
            refused = f"ClickHouse at {self.location} refused the request: {error}"
            raise StorageRefusedError(refused) from error

    async def select(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        rows = await self._run(bind(sql, params), None, fetch=True)
        return [tuple(row) for row in rows]

    async def select_binary(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """:meth:`select` with every String column as bytes (asynch's client setting
        ``strings_as_bytes``, for this query only), so sketch states travel as stored, not as hex."""
        rows = await self._run(bind(sql, params), None, fetch=True, settings={"strings_as_bytes": True})
        return [tuple(row) for row in rows]

    async def insert(self, table: str, columns: Mapping[str, Any]) -> None:
        """flow_metrics in blocks sent at once, each over a connection of its own (see
        :func:`insert_blocks`: the first row lands last), every other table as one block."""
        names = insert_columns(table, columns)
        selected = {name: columns[name] for name in names}
        streams = self._insert_streams if table == "flow_metrics" else 1
        blocks, last = insert_blocks(selected, streams)
        if last is None:
            await self._insert_block(table, names, selected)
            return
        landed = await asyncio.gather(
            *(self._insert_block(table, names, block) for block in blocks), return_exceptions=True
        )
        for outcome in landed:  # every block landed or failed before this raises
            if isinstance(outcome, BaseException):
                raise outcome
        await self._insert_block(table, names, last)

    async def _insert_block(self, table: str, names: tuple[str, ...], columns: Mapping[str, Any]) -> None:
        """One Native block built from the Arrow columns (see storage/native_block.py); asynch's
        own value-by-value columnar insert only on a compressed connection."""
        sql = f"INSERT INTO {table} ({', '.join(names)}) VALUES"
        rows = len(as_arrow(names[0], columns[names[0]]))

        def encode(name: str, type_name: str) -> bytes:
            if name not in columns:
                raise StorageError(f"{table}: the server asks for column {name}, which we do not insert")
            return encode_column(name, type_name, columns[name])

        def as_lists() -> list[list[Any]]:
            return [as_list(columns[name]) for name in names]

        await self._run(sql, None, native=(rows, encode, as_lists))

    async def execute(self, sql: str) -> None:
        cluster = self.options.cluster
        if not cluster:
            await self._run(sql, None)
            return
        for statement in cluster_statements(sql, cluster, self.options.database, sharded_tables()):
            if not statement.every_node:
                await self._run(statement.sql, None)
                continue
            for node in await self._cluster_nodes():
                await node._run(statement.sql, None)

    async def shard_nodes(self) -> list[tuple[str, SqlBackend]] | None:
        """Every node of the cluster, each running SQL as written there (for the retention, which
        alters the local tables node by node); None on one server. Closed with this backend."""
        if not self.options.cluster:
            return None
        nodes = await self._cluster_nodes()
        return [(f"{node.options.host}:{node.options.port}", _OneNode(node)) for node in nodes]

    async def _cluster_nodes(self) -> list[ClickHouseBackend]:
        """Every node of the cluster (this server's own pool for itself), found once.

        Under a lock: the writers of a process share this backend and create the schema at the
        same time, and pools opened twice would leave one set unclosed.
        """
        async with self._nodes_lock:
            if self._nodes is None:
                self._nodes = await self._find_nodes(self.options.cluster or "")
            return self._nodes

    async def _find_nodes(self, cluster: str) -> list[ClickHouseBackend]:
        rows = await self.select(CLUSTER_NODES, {"cluster": cluster})
        if not rows:
            known = [name for (name,) in await self.select(CLUSTER_NAMES)]
            raise StorageRefusedError(
                f"ClickHouse at {self.location} has no cluster {cluster!r} in its remote_servers "
                f"(clickhouse.cluster); it has: {', '.join(known) or 'none'}"
            )
        nodes: list[ClickHouseBackend] = []
        for host, port, is_local in rows:
            if int(is_local) and port == self.options.port:
                nodes.append(self)
            else:
                update = {"host": host, "port": int(port), "cluster": None}
                nodes.append(ClickHouseBackend(self.options.model_copy(update=update)))
        if self not in nodes:  # the configured server is not one of the shards: it only routes
            nodes.insert(0, self)
        logger.info(
            "ClickHouse cluster %s: %d nodes (%s)",
            cluster,
            len(nodes),
            ", ".join(node.location for node in nodes),
        )
        return nodes

    async def close(self) -> None:
        async with self._nodes_lock:
            nodes, self._nodes = self._nodes or [], None
        for node in nodes:
            if node is not self:
                await node.close()
        if self._started:
            self._started = False
            await self._pool.shutdown()


class _OneNode:
    """One node of a cluster as a plain server: statements run on it as written, not in their
    cluster form (which would go to every node and to the Distributed tables too)."""

    def __init__(self, node: ClickHouseBackend) -> None:
        self._node = node

    async def select(self, sql: str, params: Mapping[str, Any] | None = None) -> list[tuple[Any, ...]]:
        return await self._node.select(sql, params)

    async def insert(self, table: str, columns: Mapping[str, Any]) -> None:
        await self._node.insert(table, columns)

    async def execute(self, sql: str) -> None:
        await self._node._run(sql, None)

    async def close(self) -> None:
        """Nothing: the node's pool belongs to the cluster's backend."""


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text) or "default"


class ClickHouseWriter(QueuedWriter):
    """Writes a group's snapshots to a ClickHouse server; survives outages without losing any."""

    @classmethod
    def from_config(cls, config: WriterConfig, *, group: str, context: StorageContext) -> ClickHouseWriter:
        options = config.clickhouse_options
        spool_dir = Path(options.queue_dir) / _safe_name(f"{options.host}_{options.port}_{options.database}")
        spool = SnapshotSpool(spool_dir / _safe_name(group), options.max_queued_snapshots)
        return cls(
            context.clickhouse_pool(options),
            spool,
            engine_id=context.engine_id,
            incarnation=context.incarnation,
            group=group,
            store=_location(options),
            label=f"clickhouse writer {group} → {_location(options)}",
            retention_s=options.retention,
        )
