"""The seam between the engine and storage: what a snapshot writer must offer.

It lives below both: storage implements it, the engine consumes it, and neither imports the
other. Writers are chosen by their ``type`` through :mod:`netspectra.storage.registry`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from netspectra.model.snapshot import Snapshot


@runtime_checkable
class SnapshotWriter(Protocol):
    """Persists snapshots of one group; must not lose a snapshot it has accepted.

    A writer may also offer ``async start()``: the engine awaits it before counting (the store
    writers claim their engine-id lease there; an error stops the engine).
    """

    async def write(self, snapshot: Snapshot) -> None: ...

    async def close(self) -> None: ...
