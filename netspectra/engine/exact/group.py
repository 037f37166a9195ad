"""The ``exact`` aggregator group: one :class:`FlowHashTable` per configured task."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING

from netspectra.config.models import ExactTaskConfig, Settings
from netspectra.model.snapshot import Snapshot

if TYPE_CHECKING:
    from netspectra.engine.exact.table import DirectTable, FlowHashTable
    from netspectra.model.flows import FlowColumns
    from netspectra.model.packets import PacketColumns


class ExactGroup:
    """Counts packets, bytes, first and last seen per flow, for each task's key fields.

    ``num_shards`` (a Go setting) is accepted and ignored: one table per task, fed whole batches
    by one kernel call, needs no sharding to stay fast, and the engine serialises all calls.
    """

    name = "exact"

    def __init__(self, tasks: Sequence[ExactTaskConfig]) -> None:
        # the tables' numba kernels are imported here, not with the class: `config check` loads
        # the class to validate the type name and must not pay for numba
        from netspectra.engine.exact.table import make_table

        self._tables = tuple(make_table(task.name, task.key_fields) for task in tasks)
        #: The change epoch stamped on the flows batches touch; advanced after each snapshot.
        self._epoch = 1

    @classmethod
    def from_config(cls, settings: Settings) -> ExactGroup:
        """The group described by ``settings.aggregator.exact``."""
        return cls(settings.aggregator.exact.tasks)

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(table.task for table in self._tables)

    @property
    def tables(self) -> tuple[FlowHashTable | DirectTable, ...]:
        return self._tables

    def insert(self, batch: PacketColumns) -> None:
        """Feed the batch to every task (one kernel call per task; no per-packet Python)."""
        for _label, job in self.insert_jobs(batch):
            job()

    def insert_jobs(self, batch: PacketColumns) -> list[tuple[str, Callable[[], None]]]:
        """One job per task, for the engine to spread over its threads (tables share nothing)."""
        if not len(batch) or not self._tables:
            return []
        from netspectra.engine.exact.table import address_words

        src_words = address_words(batch.src_ip)
        dst_words = address_words(batch.dst_ip)
        columns = (
            src_words,
            dst_words,
            batch.src_port,
            batch.dst_port,
            batch.protocol,
            batch.ts_ns,
            batch.length,
            self._epoch,
        )
        return [(f"exact.{table.task}", partial(table.insert, *columns)) for table in self._tables]

    def insert_flow_jobs(self, flows: FlowColumns) -> list[tuple[str, Callable[[], None]]]:
        """One job per task for a batch of flow records: each adds its packets and bytes, renormalised
        and raw, stamped with the change epoch like packets (so change snapshots carry them)."""
        if not len(flows) or not self._tables:
            return []
        from netspectra.engine.exact.table import address_words, insert_weighted

        columns = (
            address_words(flows.src_ip),
            address_words(flows.dst_ip),
            flows.src_port,
            flows.dst_port,
            flows.protocol,
            flows.first_ns,
            flows.last_ns,
            flows.packets,
            flows.bytes,
            flows.raw_packets,
            flows.raw_bytes,
            self._epoch,
        )
        return [(f"exact.{table.task}", partial(insert_weighted, table, *columns)) for table in self._tables]

    def snapshot(self, taken_at_ns: int, period_start_ns: int) -> Snapshot:
        """Copies of every task's flows; the live tables are untouched."""
        return self.snapshot_changes(taken_at_ns, period_start_ns, 0)

    def snapshot_changes(self, taken_at_ns: int, period_start_ns: int, since_epoch: int) -> Snapshot:
        """Copies of the flows changed in epoch ``since_epoch`` or later (all when 0), then a new
        epoch begins: the cost is the rows copied plus one pass over the epoch column."""
        snapshot = Snapshot(
            group=self.name,
            taken_at_ns=taken_at_ns,
            period_start_ns=period_start_ns,
            flows=tuple(table.flow_table(since_epoch) for table in self._tables),
            epoch=self._epoch,
            since_epoch=since_epoch,
        )
        self._epoch += 1
        return snapshot

    def reset(self) -> None:
        for table in self._tables:
            table.reset()

    @property
    def nbytes(self) -> int:
        """Memory held by all tables (for the stats line)."""
        return sum(table.nbytes for table in self._tables)
