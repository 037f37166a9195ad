"""The seam between the engine and storage: what a snapshot writer must offer.

It lives below both: storage implements it, the engine consumes it, and neither imports the
other. Writers are chosen by their ``type`` through :mod:`netspectra.storage.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # the composition root imports this, and `config check` must not load numpy
    from netspectra.model.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class WriterStats:
    """A queued writer's own account (the engine's stats line shows it; "accepted" is the engine's).

    ``failed`` counts failed attempts (spool writes and inserts), never successes; ``stored``
    counts only snapshots the store took.
    """

    stored: int
    queued: int
    failed: int
    dropped: int
    memory_only: int


@runtime_checkable
class SnapshotWriter(Protocol):
    """Persists snapshots of one group; must not lose a snapshot it has accepted.

    A writer may also offer ``async start()``, awaited while the engine role starts counting (the
    store writers claim their engine-id lease there; an error stops the role), and a ``stats``
    property (:class:`WriterStats`) that the engine's stats line reports instead of its own tally.

    ``reads_sketch_state = False`` (a class attribute) says the writer never reads a sketch
    result's mergeable state: an analysis whose writers all say so skips serialising sketches
    (zstd through pyarrow, ~80 ms to import). A writer that does not say so is assumed to read it.
    """

    async def write(self, snapshot: Snapshot) -> None: ...

    async def close(self) -> None: ...
