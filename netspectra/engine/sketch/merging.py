"""One answer from many sketch states: every engine's, every epoch's, checked and merged.

A query reads the states a window covers (one per engine and epoch) and needs one sketch to
read hitters from. Before anything is added cell by cell, every state is compared with the
first: same algorithm, same counting parameters (seeds included), same key fields. A difference
is refused with :class:`~netspectra.errors.PluginError` naming the task, the two states (engine
and epoch) and each differing value, so a config that drifted between engines says which key.

An algorithm class may offer ``merge_states(states) -> sketch`` (count_min does: it sums the
linear counters in place instead of building one full sketch per state); any other merges
pairwise with ``from_state``/``from_bytes`` and ``merge``, in the order given.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from netspectra.engine.sketch.protocol import SketchAlgorithm, SketchState, decode_state
from netspectra.errors import PluginError
from netspectra.model.snapshot import HeavyHitter, HitterKind


@dataclass(frozen=True, slots=True)
class LabelledState:
    """One stored state and where it came from (``label`` names engine and epoch in refusals)."""

    label: str
    raw: bytes
    state: SketchState


def _differences(first: dict[str, Any], other: dict[str, Any]) -> str:
    return ", ".join(
        f"{key} {first.get(key)!r} vs {other.get(key)!r}"
        for key in sorted({*first, *other})
        if first.get(key) != other.get(key)
    )


def check_compatible(task: str, states: Sequence[LabelledState]) -> None:
    """Raise PluginError unless every state has the first one's algorithm, parameters and fields."""
    if not states:
        return
    head = states[0]
    for item in states[1:]:
        where = f"sketch task {task!r}: cannot merge the state of {item.label} with that of {head.label}"
        if item.state.algorithm != head.state.algorithm:
            raise PluginError(
                f"{where}: different algorithms {item.state.algorithm!r} vs {head.state.algorithm!r}"
            )
        if item.state.params != head.state.params:
            raise PluginError(
                f"{where}: different parameters: {_differences(item.state.params, head.state.params)}"
            )
        for label, ours, theirs in (
            ("flow", item.state.flow_fields, head.state.flow_fields),
            ("element", item.state.element_fields, head.state.element_fields),
        ):
            if ours != theirs:
                mine, other = [f.value for f in ours], [f.value for f in theirs]
                raise PluginError(f"{where}: different {label} fields {mine} vs {other}")


def merge_states(
    task: str,
    algorithm: type[SketchAlgorithm],
    states: Sequence[LabelledState],
    kinds: Sequence[HitterKind] | None = None,
) -> SketchAlgorithm:
    """The merge of ``states`` (at least one) as one sketch of ``algorithm``; see the module docstring.

    ``kinds``: the hitter kinds the caller reads (a batch merge may skip the others).
    """
    if not states:
        raise ValueError("no states to merge")
    check_compatible(task, states)
    batch = getattr(algorithm, "merge_states", None)
    if batch is not None:
        if kinds is None:
            return batch([item.state for item in states])  # type: ignore[no-any-return]
        return batch([item.state for item in states], kinds=kinds)  # type: ignore[no-any-return]
    from_state = getattr(algorithm, "from_state", None)

    def load(item: LabelledState) -> SketchAlgorithm:
        if from_state is not None:
            return from_state(item.state)  # type: ignore[no-any-return]
        return algorithm.from_bytes(item.raw)

    merged = load(states[0])
    for item in states[1:]:
        merged.merge(load(item))
    return merged


def labelled(label: str, raw: bytes) -> LabelledState:
    """Decode ``raw`` (SketchStateError when it is truncated or corrupted)."""
    return LabelledState(label, raw, decode_state(raw))


def top_hitters(sketch: SketchAlgorithm, kind: HitterKind, limit: int) -> list[HeavyHitter]:
    """The ``limit`` largest hitters of ``kind`` (a sketch's own ``top_hitters`` when it has one)."""
    own = getattr(sketch, "top_hitters", None)
    if own is not None:
        return list(own(kind, limit))
    chosen = [hitter for hitter in sketch.heavy_hitters() if hitter.kind == kind]
    chosen.sort(key=lambda hitter: (-hitter.value, hitter.flow))
    return chosen[:limit]
