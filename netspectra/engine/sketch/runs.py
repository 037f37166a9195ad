"""Runs of epochs: the merged state of :data:`RUN_EPOCHS` aligned epochs, stored once, read as one.

A cold heavy-hitter query over 4 engines x 24 epochs read, decoded and merged 96 epoch states
(~10 MB; bench/sketch_state.py measured p99 163 ms, most of it the fetch and the merge). A run is
the epochs ``n`` of one engine incarnation and one period with the same ``n // RUN_EPOCHS``
(aligned, so windows that move share runs); a period boundary ends a run early. When a run
closes, the engine stores the merge of its epochs' states beside them (``sketch_state_runs``),
and a query whose window covers every epoch of the run reads that one state instead of its
epochs: 12 states instead of 96.

Both sides run the code here: the engine (:mod:`netspectra.engine.sketch.group`) and
bench/sketch_state.py build run states with :func:`run_state` from the epochs' stored bytes, and
the query store (:mod:`netspectra.storage.states`) recomputes :func:`covers` from the epoch rows
it sees, taking the run only when it matches (every epoch there, none changed). A run state
merges as its epochs would, bit for bit: count_min keeps its candidate lists uncut
(``sums_to_bytes``), spread_sketch merges exactly anyway, so an answer never depends on whether
runs were read.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

from netspectra.engine.sketch.merging import LabelledState, check_compatible, merge_states
from netspectra.engine.sketch.protocol import SketchAlgorithm

#: Epochs per run: 8 keeps a 24-epoch window at 3 runs per engine, and a run that a window cuts
#: costs at most 7 epochs read one by one at each end.
RUN_EPOCHS = 8

_COVERED = struct.Struct("<QI")  # epoch, its state's StateCheck


def run_index(epoch: int) -> int:
    """The aligned run ``epoch`` belongs to (within its engine incarnation and period)."""
    return epoch // RUN_EPOCHS


def closes_run(epoch: int) -> bool:
    """Is ``epoch`` the last of its aligned run?"""
    return (epoch + 1) % RUN_EPOCHS == 0


def state_check(state: bytes) -> int:
    """A state's own CRC32 (its last 4 bytes): the StateCheck column of an epoch or run row."""
    return int.from_bytes(state[-4:], "little") if len(state) >= 4 else 0


def covers(epochs: Iterable[tuple[int, int]]) -> int:
    """The digest of a run's epochs, ``(epoch, StateCheck)`` in epoch order (the Covers column).

    Equal digests mean the same epochs with the same states: a reader that recomputes it from the
    epoch rows it sees knows the run holds exactly those (a window that cuts the run, a missing
    or a rewritten epoch all change it).
    """
    digest = 0
    for epoch, check in epochs:
        digest = zlib.crc32(_COVERED.pack(epoch, check), digest)
    return digest


def run_state(task: str, algorithm: type[SketchAlgorithm], states: Sequence[LabelledState]) -> bytes:
    """The state of the merge of ``states`` (a run's epochs, in epoch order), merging as they would.

    count_min sums them (``sum_states``) and keeps every candidate (``sums_to_bytes``); any other
    mergeable algorithm merges them (:func:`~netspectra.engine.sketch.merging.merge_states`) and
    writes the merged sketch's state. PluginError when they disagree (names the task and epochs).
    """
    if not states:
        raise ValueError("a run has at least one epoch")
    check_compatible(task, states)
    chosen: Any = algorithm
    if hasattr(chosen, "sum_states") and hasattr(chosen, "sums_to_bytes"):
        return bytes(
            chosen.sums_to_bytes(states[0].state, chosen.sum_states([item.state for item in states]))
        )
    return bytes(merge_states(task, algorithm, states).to_bytes())
