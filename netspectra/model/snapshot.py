"""What a writer receives: a consistent, read-only copy of one group's tasks at one instant.

Snapshots are plain data so every writer (file, text, ClickHouse, embedded) and the analyze
summary consume the same thing, and a writer can hold one across an outage without pinning
the engine's live tables.
"""

from __future__ import annotations

from collections.abc import Mapping
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

    def __len__(self) -> int:
        return int(self.packets.shape[0])


@dataclass(frozen=True, slots=True)
class HeavyHitter:
    """One reported flow of a sketch: ``flow`` is the Go text form, e.g. ``"10.0.0.1 443"``."""

    flow: str
    value: int
    kind: HitterKind


@dataclass(frozen=True, slots=True)
class SketchResult:
    """The heavy hitters of one sketch task, each kind sorted by value, descending.

    ``state`` is the task's mergeable state (``SketchAlgorithm.to_bytes``) when its algorithm
    merges, so a store can keep it beside Go's hitter rows and a query can merge engines and
    epochs; None for an algorithm that cannot merge.
    """

    task: str
    algorithm: str
    hitters: tuple[HeavyHitter, ...]
    state: bytes | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One group's state at ``taken_at_ns`` (wall clock), within the period begun at ``period_start_ns``."""

    group: str
    taken_at_ns: int
    period_start_ns: int
    flows: tuple[FlowTable, ...] = field(default_factory=tuple)
    sketches: tuple[SketchResult, ...] = field(default_factory=tuple)
    #: What the bus had delivered when it was taken (the engine role's probe accounting, JSON-able;
    #: None outside ``run``): a store writer keeps the latest it accepted so a restart resumes it.
    progress: Mapping[str, Any] | None = None
