"""The parameter models of sketch algorithms: pydantic only, no numpy, no numba.

A config's sketch task is checked against its algorithm's ``Params`` by ``config check`` and
``run`` before anything counts. For NetSpectra's own algorithms that check imports only this
module (see :func:`netspectra.engine.sketch.registry.check_params`), so it does not pay the
~0.3 s of numpy and numba that importing the algorithms costs; each algorithm class names its
model here as ``Params``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class SketchParams(BaseModel):
    """Base of every algorithm's parameter model: frozen, unknown keys rejected (typos are caught)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    execution_fields: ClassVar[frozenset[str]] = frozenset()
    """Fields that change how a sketch runs but never what it counts (e.g. ``parallel_rows``):
    sketches differing only in these still merge."""

    def counting_params(self) -> dict[str, object]:
        """The parameters that decide the sketch's contents (what merge compatibility compares)."""
        return self.model_dump(exclude=set(self.execution_fields))


class CountMinParams(SketchParams):
    """Parameters of a ``count_min`` task (Go's spellings; ``*_threshold`` accepted too)."""

    execution_fields: ClassVar[frozenset[str]] = frozenset({"parallel_rows"})

    width: int = Field(1 << 20, ge=1, le=1 << 28, description="buckets per row")
    depth: int = Field(3, ge=1, le=16, description="rows")
    count_thereshold: int = Field(
        512,
        ge=1,
        validation_alias=AliasChoices("count_thereshold", "count_threshold"),
        description="report flows with at least this many packets",
    )
    size_thereshold: int = Field(
        512 * 1024,
        ge=1,
        validation_alias=AliasChoices("size_thereshold", "size_threshold"),
        description="report flows with at least this many bytes",
    )
    variant: Literal["decay", "go"] = Field(
        "decay", description="'go' = Go2NetSpectra's majority vote; 'decay' = HeavyKeeper-style decay"
    )
    b: float = Field(1.08, gt=1.0, le=2.0, description="decay base of the 'decay' variant")
    seed: int = Field(0, ge=0, description="derives the per-row hash seeds; equal seeds merge")
    candidates: int = Field(
        1024, ge=1, le=1 << 20, description="keys per kind kept in the mergeable state (top by count)"
    )
    parallel_rows: bool = Field(
        False,
        description="one thread per row for large batches (same result; pays only when a core is idle)",
    )


class SuperSpreadParams(SketchParams):
    """Parameters of a ``super_spread`` task (Go's names and defaults)."""

    execution_fields: ClassVar[frozenset[str]] = frozenset({"parallel_rows"})

    width: int = Field(1 << 20, ge=1, le=1 << 26, description="buckets per row")
    depth: int = Field(3, ge=1, le=16, description="rows")
    count_thereshold: int = Field(
        4096,
        ge=1,
        validation_alias=AliasChoices("count_thereshold", "count_threshold", "threshold"),
        description="report flows with at least this many distinct elements",
    )
    m: int = Field(128, ge=1, le=1 << 16, description="sampler registers per bucket")
    size: int = Field(5, ge=1, le=8, description="bits per register (values up to 2**size - 1)")
    base: float = Field(0.5, gt=0.0, lt=1.0, description="P(register value >= k+1) = base**k")
    b: float = Field(1.08, gt=1.0, le=2.0, description="resident-eviction base: P(decrement) = b**-counter")
    seed: int = Field(0, ge=0, description="derives the hash seeds")
    parallel_rows: bool = Field(
        False,
        description="one thread per row for large batches (same result; pays only when a core is idle)",
    )


class SpreadSketchParams(SketchParams):
    """Parameters of a ``spread_sketch`` task (``count_thereshold`` spelled as Go's tasks spell it)."""

    width: int = Field(1 << 13, ge=1, le=1 << 24, description="buckets per row")
    depth: int = Field(2, ge=1, le=16, description="rows")
    count_thereshold: int = Field(
        4096,
        ge=1,
        validation_alias=AliasChoices("count_thereshold", "count_threshold", "threshold"),
        description="report flows with at least this many distinct elements",
    )
    bits: int = Field(512, ge=64, le=1 << 14, multiple_of=64, description="bits of each MRB level")
    levels: int = Field(8, ge=2, le=32, description="MRB levels (range ~ bits*ln(bits)*2**(levels-1))")
    seed: int = Field(0, ge=0, description="derives the hash seeds; equal seeds merge")
