"""Writers and query stores chosen by name, and the process-wide store handles they share.

chdb allows one data directory per process, so every embedded writer and the API's reader in
one process must share one session: :class:`StorageContext` owns those shared handles, is built
by the composition root, and is closed by it.
"""

from __future__ import annotations

import importlib
from typing import Any

from netspectra.config.models import StoreConfig, WriterConfig
from netspectra.errors import ConfigError
from netspectra.model.writer import SnapshotWriter

#: Writer type → "module:class"; imported only when a config uses it.
WRITER_CLASSES: dict[str, str] = {
    "file": "netspectra.storage.file_writer:FileWriter",
    "text": "netspectra.storage.text_writer:TextWriter",
    "clickhouse": "netspectra.storage.clickhouse:ClickHouseWriter",
    "embedded": "netspectra.storage.embedded:EmbeddedWriter",
}


def load_attribute(target: str) -> Any:
    """Import ``"module:attr"``."""
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


class StorageContext:
    """Owns the store handles of one process; hand it to whatever builds writers or readers."""

    def __init__(self, engine_id: str = "") -> None:
        self.engine_id = engine_id
        self._shared: dict[tuple[str, str], Any] = {}

    def shared(self, kind: str, location: str, factory: Any) -> Any:
        """The one handle of ``kind`` at ``location`` in this process, made by ``factory()`` once."""
        key = (kind, location)
        if key not in self._shared:
            self._shared[key] = factory()
        return self._shared[key]

    def build_writer(self, config: WriterConfig, group: str) -> SnapshotWriter:
        """A writer for ``group`` as ``config`` describes it."""
        target = WRITER_CLASSES.get(config.kind)
        if target is None:
            raise ConfigError(
                f"aggregator.{group}.writers: unknown writer type {config.type!r}; "
                f"available: {', '.join(sorted(WRITER_CLASSES))}"
            )
        writer_class = load_attribute(target)
        writer: SnapshotWriter = writer_class.from_config(config, group=group, context=self)
        return writer

    def open_query_store(self, config: StoreConfig) -> Any:
        """The reader the API and ``netspectra query`` use (see netspectra.storage.query)."""
        from netspectra.storage.query import open_query_store

        return open_query_store(config, context=self)

    async def close(self) -> None:
        """Close every shared handle (stores flush their queues first)."""
        for handle in reversed(list(self._shared.values())):
            close = getattr(handle, "close", None)
            if close is not None:
                result = close()
                if hasattr(result, "__await__"):
                    await result
        self._shared.clear()
