"""The contract every sketch algorithm (built-in or third-party) fulfils.

An algorithm is a class registered under the entry-point group ``netspectra.sketches``. It
declares ``Params`` (a pydantic model of its own config keys, validated when the task is
built, so a typo fails at start-up naming the task), and works on whole batches: the group
hands it numpy key matrices built once per batch, never single packets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from netspectra.engine.sketch.params import SketchParams
from netspectra.errors import PluginError
from netspectra.model.fields import KeyField
from netspectra.model.keys import flow_text, key_width
from netspectra.model.snapshot import HeavyHitter, HitterKind

KeyMatrix = npt.NDArray[np.uint8]
"""A ``(n, key_width)`` uint8 matrix, one key per row (see :mod:`netspectra.model.keys`)."""


@runtime_checkable
class SketchAlgorithm(Protocol):
    """One sketch instance; the engine calls it from one thread at a time.

    Class attributes: ``Params`` (a :class:`SketchParams` subclass), ``summary`` (one line for
    ``netspectra plugins list``) and ``mergeable``.
    """

    Params: ClassVar[type[SketchParams]]
    summary: ClassVar[str]
    mergeable: ClassVar[bool]

    def __init__(
        self,
        params: SketchParams,
        *,
        flow_fields: Sequence[KeyField],
        element_fields: Sequence[KeyField],
    ) -> None: ...

    def insert(self, flow_keys: KeyMatrix, element_keys: KeyMatrix, sizes: npt.NDArray[np.uint64]) -> None:
        """Count one batch: row ``i`` of each array is one packet."""

    def query(self, flow_keys: KeyMatrix) -> dict[HitterKind, npt.NDArray[np.uint64]]:
        """The current estimate of each flow, per kind this algorithm reports."""
        ...

    def heavy_hitters(self) -> tuple[HeavyHitter, ...]:
        """Flows at or above the thresholds, flow decoded to text, each kind sorted descending."""
        ...

    def reset(self) -> None:
        """Forget everything counted (start of a new period); parameters and seeds stay."""

    def merge(self, other: SketchAlgorithm) -> None:
        """Add ``other``'s counts into this sketch; raises :class:`PluginError` when incompatible."""

    @property
    def memory_bytes(self) -> int:
        """Bytes of sketch state (the number compared across algorithms at equal memory)."""
        ...


class SketchBase:
    """Optional helper base: stores params and fields, decodes flows, checks merge compatibility."""

    Params: ClassVar[type[SketchParams]] = SketchParams
    summary: ClassVar[str] = ""
    mergeable: ClassVar[bool] = False

    def __init__(
        self,
        params: SketchParams,
        *,
        flow_fields: Sequence[KeyField],
        element_fields: Sequence[KeyField] = (),
    ) -> None:
        self.params = params
        self.flow_fields = tuple(KeyField(f) for f in flow_fields)
        self.element_fields = tuple(KeyField(f) for f in element_fields)
        #: bytes of one flow key, and the little-endian uint64 words (zero-padded) kernels compare
        self.key_width = key_width(self.flow_fields)
        self.key_words = max(1, -(-self.key_width // 8))

    def decode_flow(self, key: bytes | npt.NDArray[np.uint8]) -> str:
        """The Go text form of one flow key, e.g. ``"10.0.0.1 443"``."""
        return flow_text(key, self.flow_fields)

    def hitters_from(
        self, keys: KeyMatrix, values: npt.NDArray[np.uint64], kind: HitterKind
    ) -> list[HeavyHitter]:
        """Records for (key, value) rows, sorted by value descending (ties: flow text, for stable files)."""
        records = [
            HeavyHitter(flow=self.decode_flow(keys[i]), value=int(values[i]), kind=kind)
            for i in range(keys.shape[0])
        ]
        records.sort(key=lambda hitter: (-hitter.value, hitter.flow))
        return records

    def cell_hitters(
        self,
        cell_keys: npt.NDArray[np.uint64],
        cell_values: npt.NDArray[np.uint64],
        threshold: int,
        kind: HitterKind,
    ) -> list[HeavyHitter]:
        """Heavy hitters from a table of cells: the distinct flows of the cells at or above
        ``threshold``, each with its largest cell value, sorted as :meth:`hitters_from` does.

        ``cell_keys`` holds each cell's flow key packed into uint64 words (last axis), ``cell_values``
        the cell values with the same leading shape. A flow may sit in several rows' cells (one per
        hash row): it is reported once, with its best estimate (Go's scan does the same).
        """
        flat_values = cell_values.reshape(-1)
        picked = np.flatnonzero(flat_values >= threshold)
        if picked.size == 0:
            return []
        width = self.key_width
        keys = cell_keys.reshape(-1, cell_keys.shape[-1])[picked].view(np.uint8)[:, :width]
        unique, inverse = np.unique(keys, axis=0, return_inverse=True)
        best = np.zeros(unique.shape[0], np.uint64)
        np.maximum.at(best, inverse.reshape(-1), flat_values[picked])
        return self.hitters_from(unique, best, kind)

    def check_mergeable(self, other: object) -> None:
        """Raise unless ``other`` has this exact type, parameters and key fields."""
        name = type(self).__name__
        if not self.mergeable:
            raise PluginError(f"{name} sketches cannot be merged")
        if type(other) is not type(self):
            raise PluginError(f"cannot merge {type(other).__name__} into {name}: different algorithms")
        assert isinstance(other, SketchBase)
        if type(other.params) is not type(self.params) or (
            other.params.counting_params() != self.params.counting_params()
        ):
            raise PluginError(
                f"cannot merge {name} sketches with different parameters: {self.params!r} vs {other.params!r}"
            )
        if other.flow_fields != self.flow_fields or other.element_fields != self.element_fields:
            raise PluginError(f"cannot merge {name} sketches over different key fields")
