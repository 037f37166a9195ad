"""The store handles one process shares: one chdb session per data directory, one pool per server.

chdb allows one data directory per process, so every embedded writer and the API's reader in
one process must share one session; ClickHouse writers and the reader of one server share one
connection pool. :class:`StorageContext` owns those handles: the composition root builds it,
hands it to whatever builds writers or readers (:mod:`netspectra.storage.registry`), and closes
it last. It knows nothing of writers or query stores, so it imports neither.

It also names who writes: ``engine_id`` (configured, stable across restarts) and
``incarnation`` (new at every start of ``netspectra run``). Rows carry both in ``EngineId`` as
``<engine_id>@<incarnation>`` (:attr:`StorageContext.stored_engine_id`): the queries take the
latest row per flow *and* EngineId, so a restarted engine's rows add to what its previous
incarnations stored instead of replacing it (see docs/storage-and-api.md, "Restarts").
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:  # imported when first asked for: a process without ClickHouse never loads asynch
    from netspectra.config.models import ClickHouseOptions
    from netspectra.storage.clickhouse import ClickHouseBackend
    from netspectra.storage.embedded import EmbeddedBackend


class SharedHandle(Protocol):
    """What the context needs of a handle: closing it when the process is done."""

    async def close(self) -> None: ...


HandleT = TypeVar("HandleT", bound=SharedHandle)


def new_incarnation() -> str:
    """A fresh incarnation id: UTC start time (sorts by start) and 32 random bits (unique)."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(4)


def stored_engine_id(engine_id: str, incarnation: str) -> str:
    """The ``EngineId`` value written: ``engine_id`` alone when there is no incarnation (analyze)."""
    return f"{engine_id}@{incarnation}" if incarnation else engine_id


class StorageContext:
    """Owns the store handles of one process; each handle is made once, on first use.

    ``incarnation`` is empty for one-shot runs (``analyze``, tests): their rows carry the bare
    ``engine_id`` and a rerun replaces them, as before incarnations existed.
    """

    def __init__(self, engine_id: str = "", incarnation: str = "") -> None:
        self.engine_id = engine_id
        self.incarnation = incarnation
        self._shared: dict[tuple[type[SharedHandle], str], SharedHandle] = {}

    @property
    def stored_engine_id(self) -> str:
        return stored_engine_id(self.engine_id, self.incarnation)

    def shared(self, handle_type: type[HandleT], location: str, factory: Callable[[], HandleT]) -> HandleT:
        """The one ``handle_type`` at ``location`` in this process, made by ``factory()`` once.

        For writer types that bring their own store; the built-in stores have typed accessors below.
        """
        key: tuple[type[SharedHandle], str] = (handle_type, location)
        handle = self._shared.get(key)
        if handle is None:
            handle = self._shared[key] = factory()
        if not isinstance(handle, handle_type):
            raise TypeError(f"shared handle for {location!r} is a {type(handle).__name__}, not {handle_type}")
        return handle

    def embedded_session(self, path: str | Path) -> EmbeddedBackend:
        """The process's one chdb session for the data directory ``path``."""
        from netspectra.storage.embedded import EmbeddedBackend

        resolved = str(Path(path).resolve())
        return self.shared(EmbeddedBackend, resolved, lambda: EmbeddedBackend(resolved))

    def clickhouse_pool(self, options: ClickHouseOptions) -> ClickHouseBackend:
        """The process's one connection pool to this server and database."""
        from netspectra.storage.clickhouse import ClickHouseBackend

        location = f"{options.username}@{options.host}:{options.port}/{options.database}"
        return self.shared(ClickHouseBackend, location, lambda: ClickHouseBackend(options))

    async def close(self) -> None:
        """Close every handle, newest first (stores flush their queues first)."""
        for handle in reversed(list(self._shared.values())):
            await handle.close()
        self._shared.clear()
