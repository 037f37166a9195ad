"""Writers and query stores chosen by name: the backends over the handles a StorageContext owns.

A writer type is a class with ``from_config(config, *, group, context) -> SnapshotWriter``,
imported only when a config uses it; a query store type is a function opening the reader over
the shared backend, so the API reads the very store the engine's writers fill.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from netspectra.config.models import ClickHouseOptions, EmbeddedStoreOptions, StoreConfig, WriterConfig
from netspectra.errors import ConfigError
from netspectra.model.writer import SnapshotWriter
from netspectra.plugins import PluginRegistry, UnknownPluginError
from netspectra.storage.context import StorageContext

if TYPE_CHECKING:  # the reader's SQL and state decoding (~8 ms): a writer-only run never loads it
    from netspectra.storage.query import QueryStore

#: Writer type → "module:class"; imported only when a config uses it. Built-ins only: the config
#: model names the writer types it accepts, so there is no entry-point group for writers yet.
WRITER_CLASSES: dict[str, str] = {
    "file": "netspectra.storage.file_writer:FileWriter",
    "text": "netspectra.storage.text_writer:TextWriter",
    "clickhouse": "netspectra.storage.clickhouse:ClickHouseWriter",
    "embedded": "netspectra.storage.embedded:EmbeddedWriter",
}
WRITERS = PluginRegistry("writer type", None, WRITER_CLASSES)


def build_writer(config: WriterConfig, group: str, context: StorageContext) -> SnapshotWriter:
    """A writer for ``group`` as ``config`` describes it, sharing ``context``'s store handles."""
    try:
        writer_class = WRITERS.load(config.kind)
    except UnknownPluginError as error:
        raise ConfigError(f"aggregator.{group}.writers: {error}") from None
    writer = writer_class.from_config(config, group=group, context=context)
    if not isinstance(writer, SnapshotWriter):
        raise ConfigError(
            f"writer type {config.type!r} ({WRITER_CLASSES[config.kind]}) built "
            f"{type(writer).__name__}, not a SnapshotWriter"
        )
    return writer


def _clickhouse_store(config: StoreConfig, context: StorageContext) -> QueryStore:
    from netspectra.storage.query import QueryStore

    options = config.clickhouse or ClickHouseOptions()
    return QueryStore(
        context.clickhouse_pool(options), description=f"clickhouse {options.host}:{options.port}"
    )


def _embedded_store(config: StoreConfig, context: StorageContext) -> QueryStore:
    from netspectra.storage.query import QueryStore

    options = config.embedded or EmbeddedStoreOptions()
    backend = context.embedded_session(options.path)
    return QueryStore(backend, description=f"embedded {backend.path}")


#: Store type → the function opening its reader.
QUERY_STORES: dict[str, Callable[[StoreConfig, StorageContext], QueryStore]] = {
    "clickhouse": _clickhouse_store,
    "embedded": _embedded_store,
}


def open_query_store(config: StoreConfig, context: StorageContext) -> QueryStore:
    """The reader the API and ``netspectra query`` use, sharing the process's backend with its writers."""
    opener = QUERY_STORES.get(config.type)
    if opener is None:
        raise ConfigError(
            f"api.store: unknown store type {config.type!r}; available: {', '.join(sorted(QUERY_STORES))}"
        )
    return opener(config, context)
