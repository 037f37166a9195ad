"""What a writer receives: a consistent, read-only copy of one group's tasks at one instant.

Snapshots are plain data so every writer (file, text, ClickHouse, embedded) and the analyze
summary consume the same thing, and a writer can hold one across an outage without pinning
the engine's live tables.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt

from netspectra.model.fields import KeyField


class HitterKind(IntEnum):
    """The ``type`` of a heavy-hitter record, as the wire contract and the Go schema number it."""

    COUNT = 0
    SIZE = 1
    SPREAD = 2


@dataclass(frozen=True, slots=True)
class FlowTable:
    """Every flow of one exact task, as columns; fields a task does not key on are zero."""

    task: str
    key_fields: tuple[KeyField, ...]
    src_ip: npt.NDArray[np.uint8]  # (n, 16), IPv4 mapped
    dst_ip: npt.NDArray[np.uint8]  # (n, 16)
    src_port: npt.NDArray[np.uint16]
    dst_port: npt.NDArray[np.uint16]
    protocol: npt.NDArray[np.uint8]
    packets: npt.NDArray[np.uint64]
    bytes: npt.NDArray[np.uint64]
    first_seen_ns: npt.NDArray[np.int64]
    last_seen_ns: npt.NDArray[np.int64]
    #: Each flow's last change epoch (see :class:`Snapshot`); None from a table that keeps none.
    changed_epoch: npt.NDArray[np.uint64] | None = None
    #: The packets and bytes as sent, before renormalisation by the sampling rate (``packets`` and
    #: ``bytes`` are the renormalised estimates): kept by a task fed flow records; None when the
    #: task counted only packets in this period (then raw = ``packets`` / ``bytes``: unsampled).
    raw_packets: npt.NDArray[np.uint64] | None = None
    raw_bytes: npt.NDArray[np.uint64] | None = None

    def __len__(self) -> int:
        return int(self.packets.shape[0])

    @property
    def sampled(self) -> bool:
        """True when the task kept raw values (it was fed flow records this period)."""
        return self.raw_packets is not None

    def raw_or_counted(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """(raw packets, raw bytes): the kept raw values, else the counts (unsampled: the same)."""
        if self.raw_packets is None or self.raw_bytes is None:
            return self.packets, self.bytes
        return self.raw_packets, self.raw_bytes

    def changed_since(self, epoch: int) -> FlowTable:
        """Only the flows changed in ``epoch`` or later (all of them without change epochs)."""
        if self.changed_epoch is None or epoch <= 0:
            return self
        keep = self.changed_epoch >= np.uint64(epoch)
        if bool(keep.all()):
            return self
        return FlowTable(
            self.task,
            self.key_fields,
            self.src_ip[keep],
            self.dst_ip[keep],
            self.src_port[keep],
            self.dst_port[keep],
            self.protocol[keep],
            self.packets[keep],
            self.bytes[keep],
            self.first_seen_ns[keep],
            self.last_seen_ns[keep],
            self.changed_epoch[keep],
            None if self.raw_packets is None else self.raw_packets[keep],
            None if self.raw_bytes is None else self.raw_bytes[keep],
        )


@dataclass(frozen=True, slots=True)
class HeavyHitter:
    """One reported flow of a sketch: ``flow`` is the Go text form, e.g. ``"10.0.0.1 443"``."""

    flow: str
    value: int
    kind: HitterKind


class DeferredState:
    """State bytes made on first use, once, by whichever thread asks first (a writer's thread).

    Serialising a sketch (shuffle and zstd over megabytes, ~6 ms per MB; zlib took ~18) is the
    costly part of a snapshot; the engine takes snapshots under its counting lock, so the epoch's
    sketch is handed over detached and turned into bytes later, off the lock. ``make`` returns None
    when the sketch cannot be serialised.
    """

    __slots__ = ("_done", "_lock", "_make", "_value")

    def __init__(self, make: Callable[[], bytes | None]) -> None:
        self._make: Callable[[], bytes | None] | None = make
        self._value: bytes | None = None
        self._done = False
        self._lock = threading.Lock()

    def __call__(self) -> bytes | None:
        with self._lock:
            if not self._done:
                assert self._make is not None
                self._value, self._make, self._done = self._make(), None, True
            return self._value


@dataclass(frozen=True, slots=True)
class RunState:
    """A closed run of epochs (see :mod:`netspectra.engine.sketch.runs`): the merge of their states.

    ``epochs`` are the run's epochs in order, each with its state as the epoch's own row stores it
    (the same DeferredState, so both rows hold the same bytes); ``state`` merges them, in the
    writer's thread like an epoch's state (None when an epoch's state is missing: no run row).
    """

    first_epoch: int
    last_epoch: int
    #: when the run's first epoch began (the run row's EpochStart) and ended (its FirstTimestamp)
    epoch_start_ns: int
    first_timestamp_ns: int
    epochs: tuple[tuple[int, Callable[[], bytes | None]], ...]
    state: DeferredState = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class SketchResult:
    """The heavy hitters of one sketch task, each kind sorted by value, descending.

    ``hitters`` are cumulative since the period began (what Go writes). ``state`` is the task's
    mergeable state (``SketchAlgorithm.to_bytes``) of ONE epoch only, what was counted since the
    group's previous snapshot (``epoch_start_ns``, or the period's start) until this one: a store
    keeps it beside Go's hitter rows and a query merges the epochs of its window, of every
    engine. None for an algorithm that cannot merge (or whose ``to_bytes`` failed). ``epoch``
    numbers the group's snapshots since the engine started, so two epochs ending in the same
    second stay apart.
    """

    task: str
    algorithm: str
    hitters: tuple[HeavyHitter, ...]
    state: bytes | None = None
    epoch: int = 0
    epoch_start_ns: int = 0
    #: the state when it is made off the engine's lock (read it with :meth:`state_bytes`)
    deferred_state: DeferredState | None = field(default=None, compare=False, repr=False)
    #: the run of epochs this epoch closes, merged (a ``sketch_state_runs`` row); None mid-run
    run: RunState | None = field(default=None, compare=False, repr=False)

    def state_bytes(self) -> bytes | None:
        """``state``, or the deferred state's bytes (made on the first call)."""
        if self.state is not None or self.deferred_state is None:
            return self.state
        return self.deferred_state()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One group's state at ``taken_at_ns`` (wall clock), within the period begun at ``period_start_ns``.

    Change epochs (groups that keep them: exact): ``epoch`` is the group's epoch when the snapshot
    was taken (every change counted so far is stamped ``<= epoch``), and the flows are those changed
    in ``since_epoch`` or later — every flow of the period when 0. A writer that stored this
    snapshot is up to date with every flow changed up to ``epoch``: its next snapshot need only
    hold the flows changed from ``epoch + 1`` (the engine's rule; see netspectra.engine.engine).
    A flow left out is unchanged since a row the writer already wrote, so "the latest row ≤ t
    per flow" reads the same counts as from full snapshots.
    """

    group: str
    taken_at_ns: int
    period_start_ns: int
    flows: tuple[FlowTable, ...] = field(default_factory=tuple)
    sketches: tuple[SketchResult, ...] = field(default_factory=tuple)
    #: What the bus had delivered when it was taken (the engine role's probe accounting, JSON-able;
    #: None outside ``run``): a store writer keeps the latest it accepted so a restart resumes it.
    progress: Mapping[str, Any] | None = None
    epoch: int = 0
    since_epoch: int = 0

    def changed_since(self, epoch: int) -> Snapshot:
        """The same snapshot holding only the flows changed in ``epoch`` or later."""
        if epoch <= self.since_epoch:
            return self
        flows = tuple(table.changed_since(epoch) for table in self.flows)
        return dataclasses.replace(self, flows=flows, since_epoch=epoch)
