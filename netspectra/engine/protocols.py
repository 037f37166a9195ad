"""The seam of the engine on the counting side: what an aggregator group must offer.

Groups are chosen by name from ``aggregator.types`` through the entry-point group
``netspectra.aggregators`` (built-ins ``exact`` and ``sketch`` register there too). The other
seam, the snapshot writer, is :class:`netspectra.model.writer.SnapshotWriter`: storage
implements it, so it lives below both.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # annotations only: the registries import this, and config check must not load numpy
    from netspectra.model.packets import PacketColumns
    from netspectra.model.snapshot import Snapshot


@runtime_checkable
class AggregatorGroup(Protocol):
    """A set of tasks fed the same packets; the engine calls these from one thread at a time."""

    name: str

    @property
    def task_names(self) -> tuple[str, ...]: ...

    def insert(self, batch: PacketColumns) -> None:
        """Feed one batch to every task (numba kernels; may run in a worker thread)."""

    def snapshot(self, taken_at_ns: int, period_start_ns: int) -> Snapshot:
        """A consistent read-only copy of every task; never resets anything."""

    def reset(self) -> None:
        """Start a fresh period: every task forgets what it counted."""
