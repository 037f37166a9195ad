"""``count_min``: the Go reference's heavy-hitter Count-Min, plus a decaying variant that beats it.

Layout (both variants, so they compare at equal memory): ``depth`` rows x ``width`` buckets;
each bucket holds a packet-count cell (flow key + counter) and, separately, a byte cell (flow
key + counter). A flow hashes to one bucket per row (32-bit MurmurHash3, fixed per-row seeds).

``variant="go"`` is Go2NetSpectra's ``statistic.CountMin.Insert`` exactly (majority vote):
  * count cell: empty → claim with 1; same key → +1; other key → -1, and at 0 the key is
    replaced (the counter stays 0, so the next packet of any flow claims it);
  * byte cell: empty → claim with the size; same key → +size; other key → if the new size
    exceeds the counter, replace key and counter with it, else subtract the size.

``variant="decay"`` (default) makes the vote against a resident *probabilistic*, as
HeavyKeeper does: another flow decrements a resident holding ``C`` packets only with
probability ``b**-C`` (replace at 0 with the newcomer at 1). Bytes decay the same way with
``C`` read as "how many packets of this size the resident holds" (``counter // size``). A large
resident is then almost never eroded by mice, which is where the Go variant loses both recall
(heavy flows evicted) and accuracy (counts under-estimated). Measured in ``bench/sketches.py``.

Counters are 64-bit (Go's are 32-bit and wrap after 4 GiB per bucket within a period).

Merging (several engines, several epochs). Each bucket also holds two *linear* counters, plain
Count-Min (every packet adds 1 and its size, whoever holds the cell): they add exactly, so the
merge of any split of a stream equals, cell by cell, the sketch of the whole stream, and their
minimum over rows is an upper bound ``U`` of a flow's count. ``U`` alone is too loose at Go's
2^13 x 2 (mice share every bucket: count F1 0.92 on the test trace), so the keys and their
values come from a mergeable summary, as Misra-Gries summaries merge (Agarwal et al., PODS 2012):

* each sketch's *candidates* per kind are its resident keys, each with its cell value, which is a
  lower bound of that flow's count here (a cell counts only its resident's packets), the
  ``candidates`` largest kept; ``floor`` is the largest value dropped (0 when none was): a key
  absent from the list counted at most about that much here;
* merging two lists adds ``lower`` per key and, for a key only one side lists, adds the other
  side's ``floor`` to its ``missing``; the merged ``floor`` is the sum of both (or the largest
  value dropped when the union is cut back to ``candidates``);
* a merged sketch reports a candidate with ``min(U, lower + missing)`` when that reaches the
  threshold. A flow above the threshold overall may be below it at every engine: it is still a
  candidate wherever it is among the ``candidates`` largest residents, so its parts add up.

Measured (tests/unit/sketch/test_sketch_merge.py): count F1 0.99 for a Zipf trace split 1, 2
and 3 ways at 2^13 x 2. A sketch that merged or was read from bytes answers ``query`` and
``heavy_hitters`` from its candidates; a sketch that only counted answers as Go does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

# numba-free: the kernels (count_min_kernels, murmur3) are imported where a sketch uses them
from netspectra.engine.sketch.params import CountMinParams
from netspectra.engine.sketch.protocol import (
    KeyMatrix,
    SketchAlgorithm,
    SketchBase,
    SketchParams,
    SketchState,
    SketchStateError,
    encode_state,
    sorted_unique_rows,
    unique_rows,
)
from netspectra.engine.sketch.rows import PARALLEL_MIN_BATCH, run_rows
from netspectra.model.fields import KeyField
from netspectra.model.snapshot import HeavyHitter, HitterKind

_VARIANT_CODE = {"go": 0, "decay": 1}


def decay_thresholds(base: float) -> npt.NDArray[np.uint64]:
    """``floor(base**-c * 2**32)`` for c = 0, 1, ... until it reaches 0 (compared to a 32-bit draw)."""
    length = math.ceil(32 * math.log(2) / math.log(base)) + 2
    values = [min(int(base**-c * 2**32), 2**32) for c in range(length)]
    values[-1] = 0
    return np.array(values, np.uint64)


@dataclass(frozen=True, slots=True)
class Candidates:
    """One kind's mergeable summary: keys with a lower bound and a missing-parts allowance each.

    Keys are kept sorted, so equal summaries serialise to equal bytes.
    """

    keys: npt.NDArray[np.uint8]  # (n, key width)
    lower: npt.NDArray[np.uint64]
    missing: npt.NDArray[np.uint64]
    floor: int

    @classmethod
    def empty(cls, width: int) -> Candidates:
        return cls(np.zeros((0, width), np.uint8), np.zeros(0, np.uint64), np.zeros(0, np.uint64), 0)

    def top(self, limit: int) -> Candidates:
        """At most ``limit`` entries, the largest by ``lower + missing``; the cut raises the floor."""
        if self.keys.shape[0] <= limit:
            return self
        bound = self.lower + self.missing
        order = np.argsort(-bound.astype(np.float64), kind="stable")
        kept, dropped = np.sort(order[:limit]), order[limit:]  # keys stay in sorted order
        floor = max(self.floor, int(bound[dropped].max()))
        return Candidates(self.keys[kept], self.lower[kept], self.missing[kept], floor)

    def merged(self, other: Candidates, limit: int) -> Candidates:
        """Both summaries as one (see the module docstring); commutative and associative up to the cut."""
        if other.keys.shape[0] == 0 and other.floor == 0:
            return self.top(limit)
        keys = np.concatenate((self.keys, other.keys))
        if keys.shape[0] == 0:
            return Candidates(keys, self.lower, self.missing, self.floor + other.floor)
        unique, inverse = unique_rows(keys)
        mine, theirs = inverse[: self.keys.shape[0]], inverse[self.keys.shape[0] :]
        lower = np.zeros(unique.shape[0], np.uint64)
        missing = np.zeros(unique.shape[0], np.uint64)
        np.add.at(lower, mine, self.lower)
        np.add.at(lower, theirs, other.lower)
        np.add.at(missing, mine, self.missing)
        np.add.at(missing, theirs, other.missing)
        in_mine = np.zeros(unique.shape[0], bool)
        in_theirs = np.zeros(unique.shape[0], bool)
        in_mine[mine] = True
        in_theirs[theirs] = True
        missing[~in_theirs] += np.uint64(other.floor)
        missing[~in_mine] += np.uint64(self.floor)
        return Candidates(unique, lower, missing, self.floor + other.floor).top(limit)


def merge_candidates(summaries: Sequence[Candidates], limit: int) -> Candidates:
    """All summaries merged at once, with one cut at the end (what pairwise :meth:`Candidates.merged`
    computes, without a cut after each pair): for every key, ``lower`` and ``missing`` summed over
    the summaries that list it, plus the ``floor`` of every summary that does not."""
    if not summaries:
        raise ValueError("no candidate summaries to merge")
    total_floor = sum(summary.floor for summary in summaries)
    keys = np.concatenate([summary.keys for summary in summaries])
    if keys.shape[0] == 0:
        return Candidates(keys, np.zeros(0, np.uint64), np.zeros(0, np.uint64), total_floor)
    lower = np.concatenate([summary.lower for summary in summaries])
    missing = np.concatenate([summary.missing for summary in summaries])
    floors = np.concatenate(
        [np.full(summary.keys.shape[0], summary.floor, np.uint64) for summary in summaries]
    )
    order, starts, _ = sorted_unique_rows(keys)
    merged_lower = np.add.reduceat(lower[order], starts)
    present_floors = np.add.reduceat(floors[order], starts)
    merged_missing = np.add.reduceat(missing[order], starts) + (np.uint64(total_floor) - present_floors)
    unique = keys[order[starts]]
    return Candidates(unique, merged_lower, merged_missing, total_floor).top(limit)


@dataclass(frozen=True, slots=True)
class CandidateSums:
    """Candidate summaries added up, before the cut: what :func:`merge_candidates` sums.

    ``present`` is, per key, the sum of the floors of the summaries that list it, ``floor`` the
    sum of every summary's floor. Sums of sums are sums (uint64 addition is exact, and keys stay
    in byte order), so parts of a merge can be kept and added later with the same answer
    (:meth:`finish`) bit for bit: a query over a sliding window adds only its new epochs.
    """

    keys: npt.NDArray[np.uint8]
    lower: npt.NDArray[np.uint64]
    missing: npt.NDArray[np.uint64]
    present: npt.NDArray[np.uint64]
    floor: int

    @classmethod
    def of(cls, summaries: Sequence[Candidates | CandidateSums]) -> CandidateSums:
        """The sums of ``summaries`` (at least one; each a summary or sums of some)."""
        if not summaries:
            raise ValueError("no candidate summaries to add")
        floor = sum(summary.floor for summary in summaries)
        keys = np.concatenate([summary.keys for summary in summaries])
        present = np.concatenate(
            [
                summary.present
                if isinstance(summary, CandidateSums)
                else np.full(summary.keys.shape[0], summary.floor, np.uint64)
                for summary in summaries
            ]
        )
        lower = np.concatenate([summary.lower for summary in summaries])
        missing = np.concatenate([summary.missing for summary in summaries])
        if keys.shape[0] == 0:
            return cls(keys, lower, missing, present, floor)
        order, starts, _ = sorted_unique_rows(keys)
        return cls(
            keys[order[starts]],
            np.add.reduceat(lower[order], starts),
            np.add.reduceat(missing[order], starts),
            np.add.reduceat(present[order], starts),
            floor,
        )

    def finish(self, limit: int | None) -> Candidates:
        """The merged summary (what :func:`merge_candidates` of every summary added returns).

        ``limit`` None keeps every key: a summary that, added to others, gives what adding its
        parts would (each listed key's ``missing`` already holds the floors of the parts that do
        not list it, and its floor is theirs all), bit for bit; a stored run of epochs is one.
        """
        if self.keys.shape[0] == 0:
            return Candidates(self.keys, np.zeros(0, np.uint64), np.zeros(0, np.uint64), self.floor)
        missing = self.missing + (np.uint64(self.floor) - self.present)
        merged = Candidates(self.keys, self.lower, missing, self.floor)
        return merged if limit is None else merged.top(limit)

    @property
    def nbytes(self) -> int:
        return int(self.keys.nbytes + self.lower.nbytes + self.missing.nbytes + self.present.nbytes)


@dataclass(frozen=True, slots=True)
class CountMinSums:
    """Part of a merge of count_min states: linear counters summed, candidates added, not cut."""

    linear: npt.NDArray[np.uint64]  # (2, depth, width): packets, bytes
    candidates: dict[HitterKind, CandidateSums]

    @property
    def nbytes(self) -> int:
        return int(self.linear.nbytes + sum(sums.nbytes for sums in self.candidates.values()))


_KIND_LABELS = (("count", HitterKind.COUNT), ("size", HitterKind.SIZE))


def _sum_linear(
    states: Sequence[SketchState], kinds: Sequence[HitterKind], parts: Sequence[npt.NDArray[np.uint64]]
) -> npt.NDArray[np.uint64]:
    """The linear counters of ``states`` and sums ``parts`` added, only the planes of ``kinds``
    (packets 0, bytes 1; the others stay zero). A version-2 state adds its planes straight from
    the stored bytes (:meth:`StateArrays.add_into`): 96 states of 32768 x 2 by packets add in a
    third of the time decoding them took."""
    if parts:
        shape = parts[0].shape
    else:  # StateArrays tells the shape without decompressing the array
        arrays = states[0].arrays
        shape_of = getattr(arrays, "shape_of", None)
        shape = shape_of("linear") if shape_of is not None else arrays["linear"].shape
    total = np.zeros(shape, np.uint64)
    planes = [index for index, (_, kind) in enumerate(_KIND_LABELS) if kind in kinds]
    sources: list[Any] = [*parts, *(state.arrays for state in states)]
    for linear in sources:
        add_into = getattr(linear, "add_into", None)
        for plane in planes:
            if add_into is not None:
                add_into("linear", total[plane], plane)
                continue
            found = linear if isinstance(linear, np.ndarray) else linear["linear"]
            if found.shape != total.shape:
                raise SketchStateError(
                    f"count_min state: linear counters {found.shape} do not fit {total.shape}"
                )
            total[plane] += found[plane]
    return total


class CountMin(SketchBase):
    """Heavy hitters by packets (``count``) and by bytes (``size``); see the module docstring."""

    Params = CountMinParams
    summary = "Count-Min heavy hitters by packets and bytes (Go2NetSpectra skt_type 0)"
    mergeable = True
    state_name = "count_min"

    def __init__(
        self,
        params: SketchParams,
        *,
        flow_fields: Sequence[KeyField],
        element_fields: Sequence[KeyField] = (),
    ) -> None:
        super().__init__(params, flow_fields=flow_fields, element_fields=element_fields)
        assert isinstance(params, CountMinParams)
        self.p: CountMinParams = params
        from netspectra.engine.sketch.murmur3 import row_seeds

        shape = (params.depth, params.width)
        self.seeds = row_seeds(params.seed, params.depth)
        words = self.key_words
        # one contiguous bucket: [byte key | bytes | count key | packets | linear packets, bytes];
        # the named views below are what query, merge and heavy-hitter extraction read
        self.cells = np.zeros((*shape, 2 * words + 4), np.uint64)
        self.size_keys = self.cells[:, :, :words]
        self.byte_counts = self.cells[:, :, words]
        self.count_keys = self.cells[:, :, words + 1 : 2 * words + 1]
        self.counts = self.cells[:, :, 2 * words + 1]
        self.linear_counts = self.cells[:, :, 2 * words + 2]
        self.linear_bytes = self.cells[:, :, 2 * words + 3]
        #: what this sketch took in by merging or reading state (None: it only counted itself)
        self._carried: dict[HitterKind, Candidates] | None = None
        #: candidates() of each kind since the last change (a snapshot asks for them 3 times)
        self._summaries: dict[HitterKind, Candidates] = {}
        self._variant = _VARIANT_CODE[params.variant]
        self._thresholds = decay_thresholds(params.b)
        # one splitmix64 stream per row: rows never share randomness, so running them in
        # parallel gives exactly the serial result
        self._random_states = row_seeds(params.seed ^ 0x5DEECE66D, params.depth).astype(np.uint64)

    def insert(self, flow_keys: KeyMatrix, element_keys: KeyMatrix, sizes: npt.NDArray[np.uint64]) -> None:
        """Hash the batch once (all rows), then update row by row; ``element_keys`` is ignored."""
        from netspectra.engine.sketch import count_min_kernels as kernels
        from netspectra.engine.sketch.murmur3 import as_words, hash_buckets

        if flow_keys.shape[0] == 0:
            return
        self._summaries.clear()
        words = as_words(flow_keys)
        buckets = np.empty((self.p.depth, words.shape[0]), np.uint32)
        hash_buckets(words, self.key_width, self.seeds, self.p.width, buckets)
        sizes = np.ascontiguousarray(sizes, dtype=np.uint64)
        states = self._random_states
        if self.p.parallel_rows and self.p.depth > 1 and words.shape[0] >= PARALLEL_MIN_BATCH:

            def update_row(r: int) -> None:
                states[r] = kernels.update_row(
                    words, sizes, buckets[r], self.cells[r], self._variant, self._thresholds, states[r]
                )

            run_rows(self.p.depth, update_row)
        else:
            kernels.update_rows(words, sizes, buckets, self.cells, self._variant, self._thresholds, states)

    def insert_weighted(
        self,
        flow_keys: KeyMatrix,
        element_keys: KeyMatrix,
        sizes: npt.NDArray[np.uint64],
        weights: npt.NDArray[np.uint64],
    ) -> None:
        """Flow records: key i adds ``weights[i]`` packets and ``sizes[i]`` bytes (rows in this thread)."""
        from netspectra.engine.sketch import count_min_kernels as kernels
        from netspectra.engine.sketch.murmur3 import as_words, hash_buckets

        if flow_keys.shape[0] == 0:
            return
        words = as_words(flow_keys)
        buckets = np.empty((self.p.depth, words.shape[0]), np.uint32)
        hash_buckets(words, self.key_width, self.seeds, self.p.width, buckets)
        sizes = np.ascontiguousarray(sizes, dtype=np.uint64)
        weights = np.ascontiguousarray(weights, dtype=np.uint64)
        for r in range(self.p.depth):
            self._random_states[r] = kernels.update_row_weighted(
                words, sizes, weights, buckets[r], self.cells[r], self._variant, self._thresholds,
                self._random_states[r],
            )  # fmt: skip

    def query(self, flow_keys: KeyMatrix) -> dict[HitterKind, npt.NDArray[np.uint64]]:
        """Max over rows of the cells that hold this flow (0 when none does), as in Go's Query.

        A merged sketch answers its candidates' merged estimates (0 for a key it does not list).
        """
        from netspectra.engine.sketch.murmur3 import as_words, best_matching_value

        if self._carried is not None:
            return {kind: self._merged_query(flow_keys, kind) for kind in (HitterKind.COUNT, HitterKind.SIZE)}
        n = flow_keys.shape[0]
        out_count = np.zeros(n, np.uint64)
        out_bytes = np.zeros(n, np.uint64)
        if n:
            words, width, seeds = as_words(flow_keys), self.key_width, self.seeds
            best_matching_value(words, width, seeds, self.count_keys, self.counts, out_count)
            best_matching_value(words, width, seeds, self.size_keys, self.byte_counts, out_bytes)
        return {HitterKind.COUNT: out_count, HitterKind.SIZE: out_bytes}

    def heavy_hitters(self) -> tuple[HeavyHitter, ...]:
        """Flows whose largest cell reaches ``count_thereshold`` / ``size_thereshold`` (Go's scan);
        for a merged sketch, candidates whose merged estimate does."""
        if self._carried is not None:
            hitters: list[HeavyHitter] = []
            for kind, threshold in (
                (HitterKind.COUNT, self.p.count_thereshold),
                (HitterKind.SIZE, self.p.size_thereshold),
            ):
                candidates = self.candidates(kind)
                estimates = self._estimates(candidates, kind)
                picked = estimates >= threshold
                hitters += self.hitters_from(candidates.keys[picked], estimates[picked], kind)
            return tuple(hitters)
        return tuple(
            self.cell_hitters(self.count_keys, self.counts, self.p.count_thereshold, HitterKind.COUNT)
            + self.cell_hitters(self.size_keys, self.byte_counts, self.p.size_thereshold, HitterKind.SIZE)
        )

    def top_hitters(self, kind: HitterKind, limit: int) -> list[HeavyHitter]:
        """At most ``limit`` of :meth:`heavy_hitters` of one kind, decoding only those to text."""
        if self._carried is None:
            return [hitter for hitter in self.heavy_hitters() if hitter.kind == kind][:limit]
        if kind not in (HitterKind.COUNT, HitterKind.SIZE):
            return []
        threshold = self.p.count_thereshold if kind == HitterKind.COUNT else self.p.size_thereshold
        candidates = self.candidates(kind)
        estimates = self._estimates(candidates, kind)
        picked = np.flatnonzero(estimates >= threshold)
        # the largest `limit` (ties broken by flow text in hitters_from): keep every tie at the cut
        if picked.size > limit:
            cut = np.sort(estimates[picked])[::-1][limit - 1]
            picked = picked[estimates[picked] >= cut]
        return self.hitters_from(candidates.keys[picked], estimates[picked], kind)[:limit]

    def reset(self) -> None:
        self.cells.fill(0)
        self._carried = None
        self._summaries.clear()

    def merge(self, other: SketchAlgorithm) -> None:
        """Linear counters add exactly; candidate summaries merge (see the module docstring).

        This sketch's own residents are folded into its summary and its vote cells cleared, so
        counting may go on after a merge without anything being counted twice.
        """
        self.check_mergeable(other)
        assert isinstance(other, CountMin)
        merged = {
            kind: self.candidates(kind).merged(other.candidates(kind), self.p.candidates)
            for kind in (HitterKind.COUNT, HitterKind.SIZE)
        }
        self.linear_counts += other.linear_counts
        self.linear_bytes += other.linear_bytes
        self.cells[:, :, : 2 * self.key_words + 2] = 0
        self._carried = merged
        self._summaries.clear()

    @classmethod
    def merge_states(
        cls, states: Sequence[SketchState], kinds: Sequence[HitterKind] = (HitterKind.COUNT, HitterKind.SIZE)
    ) -> CountMin:
        """One sketch holding the merge of ``states`` (already checked to be compatible).

        The same answer as reading each and merging them in turn, without building a full sketch
        (``cells``) per state: the linear counters are summed in place and the candidate lists
        merged in one pass (:func:`merge_candidates`), so 96 epochs of 32768 x 2 merge in tens of
        milliseconds (bench/sketch_state.py). ``kinds`` limits the candidate lists and linear
        counters merged to those a query reads (the other kinds then answer nothing).
        """
        sketch = cls.from_state(states[0])
        total = _sum_linear(states, kinds, ())
        sketch.linear_counts[...] = total[0]
        sketch.linear_bytes[...] = total[1]
        sketch._summaries.clear()
        sketch._carried = {
            kind: merge_candidates(
                [
                    Candidates(
                        state.arrays[f"{label}_keys"],
                        state.arrays[f"{label}_lower"],
                        state.arrays[f"{label}_missing"],
                        int(state.arrays[f"{label}_floor"][0]),
                    )
                    for state in states
                ],
                sketch.p.candidates,
            )
            for label, kind in (("count", HitterKind.COUNT), ("size", HitterKind.SIZE))
            if kind in kinds
        }
        return sketch

    @classmethod
    def sum_states(
        cls,
        states: Sequence[SketchState],
        kinds: Sequence[HitterKind] = (HitterKind.COUNT, HitterKind.SIZE),
        parts: Sequence[CountMinSums] = (),
    ) -> CountMinSums:
        """``states`` (already checked to be compatible) and earlier ``parts`` added up, uncut.

        :meth:`from_sums` of the sums of every state is :meth:`merge_states` of them, bit for bit
        for the ``kinds`` summed (the other kinds' counters stay zero, so they answer nothing),
        however the states were grouped into parts (the query store keeps parts of aligned epoch
        runs, so a sliding window re-reads only the epochs it has not summed before).
        """
        if not states and not parts:
            raise ValueError("no states to add")
        total = _sum_linear(states, kinds, [part.linear for part in parts])
        candidates = {
            kind: CandidateSums.of(
                [part.candidates[kind] for part in parts]
                + [
                    Candidates(
                        state.arrays[f"{label}_keys"],
                        state.arrays[f"{label}_lower"],
                        state.arrays[f"{label}_missing"],
                        int(state.arrays[f"{label}_floor"][0]),
                    )
                    for state in states
                ]
            )
            for label, kind in _KIND_LABELS
            if kind in kinds
        }
        return CountMinSums(total, candidates)

    @classmethod
    def from_sums(cls, first: SketchState, sums: CountMinSums) -> CountMin:
        """The merged sketch of every state in ``sums`` (``first``: one of them, for the parameters;
        its arrays are not read: the sums replace them all)."""
        sketch = cls.blank_like(first)
        sketch.linear_counts[...] = sums.linear[0]
        sketch.linear_bytes[...] = sums.linear[1]
        sketch._summaries.clear()
        sketch._carried = {kind: part.finish(sketch.p.candidates) for kind, part in sums.candidates.items()}
        return sketch

    @classmethod
    def sums_to_bytes(cls, first: SketchState, sums: CountMinSums) -> bytes:
        """The state of the merge ``sums`` holds, its candidate lists not cut back to ``candidates``.

        A stored run of epochs (see :mod:`netspectra.engine.sketch.runs`): :meth:`sum_states` of
        it and other states is the sum of its epochs and those states, bit for bit (the cut comes
        once, when the query's merged sketch is read), so a query reading the run answers as one
        reading its epochs. Both kinds must have been summed.
        """
        arrays: dict[str, npt.NDArray[Any]] = {"linear": sums.linear}
        for label, kind in _KIND_LABELS:
            summary = sums.candidates[kind].finish(None)
            arrays[f"{label}_keys"] = summary.keys
            arrays[f"{label}_lower"] = summary.lower
            arrays[f"{label}_missing"] = summary.missing
            arrays[f"{label}_floor"] = np.array([summary.floor], np.uint64)
        return encode_state(
            first.algorithm,
            first.params,
            first.flow_fields,
            first.element_fields,
            arrays,
            planes=cls.state_planes,
        )

    @property
    def merged(self) -> bool:
        """True once this sketch holds merged or deserialised state (it answers from candidates)."""
        return self._carried is not None

    def candidates(self, kind: HitterKind) -> Candidates:
        """This sketch's summary of ``kind``: what it carries merged with its own residents."""
        known = self._summaries.get(kind)
        if known is None:
            known = self._summaries[kind] = self._summary(kind)
        return known

    def _summary(self, kind: HitterKind) -> Candidates:
        keys, values = (
            (self.count_keys, self.counts) if kind == HitterKind.COUNT else (self.size_keys, self.byte_counts)
        )
        flat = values.reshape(-1)
        limit = self.p.candidates
        picked = np.flatnonzero(flat)
        own = self._residents(keys, flat, self._largest_cells(flat, picked, limit), limit)
        if own is None:  # the largest cells hold too few flows to fill the list: read every cell
            own = self._residents(keys, flat, picked, limit)
        assert own is not None
        carried = self._carried.get(kind) if self._carried is not None else None
        return own if carried is None else carried.merged(own, self.p.candidates)

    def _largest_cells(
        self, flat: npt.NDArray[np.uint64], picked: npt.NDArray[np.intp], limit: int
    ) -> npt.NDArray[np.intp]:
        """The non-empty cells holding at least the ``limit * depth``-th largest value (ties kept).

        A flow sits in at most ``depth`` cells, so when these cells hold more than ``limit``
        flows, the ``limit`` largest flows and the largest value dropped (the floor) are the ones
        reading every cell gives; only those few thousand keys are then sorted, not every cell.
        """
        enough = limit * self.p.depth
        if picked.size <= enough:
            return picked
        values = flat[picked]
        cut = np.partition(values, picked.size - enough)[picked.size - enough]
        return picked[values >= cut]

    def _residents(
        self,
        keys: npt.NDArray[np.uint64],
        flat: npt.NDArray[np.uint64],
        cells: npt.NDArray[np.intp],
        limit: int,
    ) -> Candidates | None:
        """The summary of the residents of ``cells``; None when ``cells`` is a part of the non-empty
        cells that holds ``limit`` flows or fewer (then the part cannot tell the floor)."""
        if cells.size == 0:
            return Candidates.empty(self.key_width)
        resident = keys.reshape(-1, keys.shape[-1])[cells].view(np.uint8)[:, : self.key_width]
        unique, inverse = unique_rows(resident)
        partial = cells.size < np.count_nonzero(flat)
        if partial and unique.shape[0] <= limit:
            return None
        best = np.zeros(unique.shape[0], np.uint64)
        np.maximum.at(best, inverse, flat[cells])
        return Candidates(unique, best, np.zeros_like(best), 0).top(limit)

    def upper_bounds(self, flow_keys: KeyMatrix, kind: HitterKind) -> npt.NDArray[np.uint64]:
        """Count-Min's estimate from the linear counters: never below the true count."""
        out = np.zeros(flow_keys.shape[0], np.uint64)
        if flow_keys.shape[0]:
            linear = self.linear_counts if kind == HitterKind.COUNT else self.linear_bytes
            from netspectra.engine.sketch import count_min_kernels as kernels
            from netspectra.engine.sketch.murmur3 import as_words

            kernels.linear_minimum(
                as_words(flow_keys), self.key_width, self.seeds, np.ascontiguousarray(linear), out
            )
        return out

    def _estimates(self, candidates: Candidates, kind: HitterKind) -> npt.NDArray[np.uint64]:
        return np.minimum(self.upper_bounds(candidates.keys, kind), candidates.lower + candidates.missing)

    def _merged_query(self, flow_keys: KeyMatrix, kind: HitterKind) -> npt.NDArray[np.uint64]:
        candidates = self.candidates(kind)
        estimates = self._estimates(candidates, kind)
        known = {candidates.keys[i].tobytes(): int(estimates[i]) for i in range(candidates.keys.shape[0])}
        return np.array([known.get(row.tobytes(), 0) for row in flow_keys], np.uint64)

    variable_state_arrays = frozenset(
        f"{kind}_{part}" for kind in ("count", "size") for part in ("keys", "lower", "missing")
    )
    #: packets and bytes stored apart: a query by packets decompresses only theirs
    state_planes = frozenset({"linear"})

    def state_arrays(self) -> dict[str, npt.NDArray[Any]]:
        """Linear counters (exact merge) and each kind's candidate summary."""
        arrays: dict[str, npt.NDArray[Any]] = {"linear": np.stack((self.linear_counts, self.linear_bytes))}
        for label, kind in (("count", HitterKind.COUNT), ("size", HitterKind.SIZE)):
            candidates = self.candidates(kind)
            arrays[f"{label}_keys"] = candidates.keys
            arrays[f"{label}_lower"] = candidates.lower
            arrays[f"{label}_missing"] = candidates.missing
            arrays[f"{label}_floor"] = np.array([candidates.floor], np.uint64)
        return arrays

    def load_state_arrays(self, arrays: dict[str, npt.NDArray[Any]]) -> None:
        self._summaries.clear()
        self.cells.fill(0)
        self.linear_counts[...] = arrays["linear"][0]
        self.linear_bytes[...] = arrays["linear"][1]
        self._carried = {
            kind: Candidates(
                arrays[f"{label}_keys"],
                arrays[f"{label}_lower"],
                arrays[f"{label}_missing"],
                int(arrays[f"{label}_floor"][0]),
            )
            for label, kind in (("count", HitterKind.COUNT), ("size", HitterKind.SIZE))
        }

    @property
    def memory_bytes(self) -> int:
        return int(self.cells.nbytes)
