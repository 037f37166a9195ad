"""The seam between the engine and storage: what a snapshot writer must offer.

It lives below both: storage implements it, the engine consumes it, and neither imports the
other. Writers are chosen by their ``type`` through :mod:`netspectra.storage.registry`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # the composition root imports this, and `config check` must not load numpy
    from netspectra.model.snapshot import Snapshot


@runtime_checkable
class SnapshotWriter(Protocol):
    """Persists snapshots of one group; must not lose a snapshot it has accepted."""

    async def write(self, snapshot: Snapshot) -> None: ...

    async def close(self) -> None: ...
