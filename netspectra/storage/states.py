"""Heavy hitters from stored sketch states: every engine's epochs in a window, merged, then read.

Engines in one queue group each count part of every flow; a flow above the threshold overall
can be below it at every engine, so the hitter rows each engine writes (Go's ``heavy_hitters``)
cannot be combined into the right answer. Every snapshot therefore also stores each sketch
task's state of one epoch (``sketch_states``; see schema.sql): this module reads the epochs a
query covers, merges them (:mod:`netspectra.engine.sketch.merging`) and reads the hitters from
the merged sketch, so the answer is the one a single engine would give, for any window.

Which epochs: an epoch holds the packets an engine counted in (EpochStart, Timestamp]. A window
(start, end] takes the epochs whose Timestamp lies in it, of every engine and period; without
``start``, each engine's latest period up to ``end`` (Go's "since the period began").

What is refused or skipped:

* a task whose algorithm cannot merge (its rows have an empty State): one engine without a
  window is answered from the hitter rows, as before; several engines or a window raise
  :class:`MergeRefusedError` naming the algorithm and the reason (FAILED_PRECONDITION);
* states that disagree (widths, seeds, fields): :class:`MergeRefusedError` naming the task, the
  two states and each difference;
* a state that does not decode (truncated, CRC32 mismatch): skipped, counted in
  :attr:`SketchStateReader.corrupt_states` and logged once; the answer merges the others.

Runs of epochs (``sketch_state_runs``; :mod:`netspectra.engine.sketch.runs`). A cold query over
4 engines x 24 epochs read 96 states (~10 MB; p50 106 ms, p99 163 ms at load 2.2, most of it the
fetch and the merge): less data was what a cold query needed, not faster code. So the engine
also stores, when a run of :data:`RUN_EPOCHS` aligned epochs of one engine and period closes
(or the period ends), the merge of those epochs, and this reader takes that one state instead of
the epochs when it covers exactly the epoch rows the query sees there: the same first and last
epoch, and the digest of every epoch's (Epoch, StateCheck) equal to the run's ``Covers``. A
window that cuts a run, a run never closed (its engine stopped mid-run), a run row missing,
different or unreadable (skipped, counted in :attr:`SketchStateReader.corrupt_states`, logged)
all read the epochs, as before. A run merges as its epochs would, bit for bit (count_min's
candidate lists are stored uncut), so the answer never depends on which were read: 12 states of
~170 kB instead of 96 of ~100 kB, measured in bench/sketch_state.py. The reader fetches only runs
whose every epoch lies in the rows' span (FirstTimestamp and Timestamp), in one more query.

Stored epochs never change, so their decoded states are kept (an LRU bounded in bytes): a
repeated or sliding query reads only the rows' keys and the epochs it has not seen. The merged
sketch of a query is kept too (a small LRU keyed by the task, the kind and every row's key with
its StateCheck): the same set of epochs merges to the same sketch, so a repeated query (a
dashboard refreshing, several panels over one window) reads the rows' keys and the hitters only.
Measured in bench/sketch_state.py: 4 engines x 24 epochs at 32768 x 2 merge in 35-70 ms, a
repeated query skips that.

A cold query (no state kept) reads the State bytes as stored (``select_binary``: chdb's Arrow
output, asynch's ``strings_as_bytes``; hex text doubled them and cost ~2 ms per state to make and
parse), verifies each state's CRC32 and header in :data:`DECODE_THREADS` threads, and leaves the
arrays compressed until the merge uses them (format version 2, :mod:`~netspectra.engine.sketch.protocol`):
a merge by packets decompresses each state's packet counters and candidates only, adding the
counters straight from the stored bytes. Measured in bench/sketch_state.py: ~0.3x the CPU and the
wall-clock time of the hex + zlib path it replaced.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from netspectra.engine.sketch.merging import (
    LabelledState,
    check_compatible,
    labelled,
    merge_states,
    top_hitters,
)
from netspectra.engine.sketch.protocol import SketchAlgorithm, SketchStateError
from netspectra.engine.sketch.registry import load_algorithm
from netspectra.engine.sketch.runs import RUN_EPOCHS as RUN_EPOCHS  # the readers' tests align to it
from netspectra.engine.sketch.runs import covers, run_index
from netspectra.errors import MergeRefusedError, PluginError
from netspectra.model.snapshot import HitterKind
from netspectra.storage import sql

logger = logging.getLogger(__name__)

Select = Callable[[str, Mapping[str, Any] | None], Awaitable[list[tuple[Any, ...]]]]

#: Decoded states kept across queries (4 engines x 24 epochs of a 32768 x 2 count_min: ~110 MB).
DEFAULT_CACHE_BYTES = 256 << 20
#: Merged sketches kept across queries (a merged 32768 x 2 count_min: ~5 MB).
DEFAULT_MERGED_BYTES = 64 << 20

#: Sums of runs of epochs kept across queries (a run of 32768 x 2 count_min epochs: ~1.4 MB).
DEFAULT_RUN_BYTES = 64 << 20
#: Threads that decode the states one query fetched (the machine this was measured on has 2 cores).
DECODE_THREADS = 2

StateKey = tuple[str, str, int, int, int]
#: a stored run's decoded state in the state cache: (task, engine, period, first, last, StateCheck)
RunStateKey = tuple[str, str, int, int, int, int]
MergedKey = tuple[str, HitterKind, tuple[tuple[str, int, int, int], ...]]
RunKey = MergedKey
#: an aligned run of one engine and period: (engine, period start, epoch // RUN_EPOCHS)
RunSlot = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class EpochRow:
    """One stored epoch of one engine (its key, without the state bytes)."""

    engine: str
    period_start: int
    epoch: int
    timestamp: int
    algorithm: str
    size: int
    digest: int

    @property
    def label(self) -> str:
        return f"engine {self.engine!r} epoch {self.epoch} (period {self.period_start}, at {self.timestamp})"


@dataclass(slots=True)
class _Merged:
    """One merged sketch in the LRU, with the answers already read from it (by limit)."""

    sketch: SketchAlgorithm | None
    size: int
    answers: dict[int, list[tuple[str, int]]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Run:
    """The sums of one run of epochs (``sum_states``) and its first state (parameters, checks)."""

    head: LabelledState
    sums: Any
    size: int


def _state_key(task: str, row: EpochRow) -> StateKey:
    return (task, row.engine, row.period_start, row.epoch, row.digest)


def _run_key(task: str, kind: HitterKind, run: Sequence[EpochRow]) -> RunKey:
    return (task, kind, tuple((row.engine, row.period_start, row.epoch, row.digest) for row in run))


def _base_engine(engine: str) -> str:
    """The configured engine id of a stored EngineId (``id@incarnation``): restarts are one engine."""
    return engine.rpartition("@")[0] if "@" in engine else engine


class SketchStateReader:
    """Reads, caches and merges one store's sketch states; see the module docstring."""

    def __init__(
        self,
        select: Select,
        *,
        select_binary: Select | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
        merged_bytes: int = DEFAULT_MERGED_BYTES,
        run_bytes: int = DEFAULT_RUN_BYTES,
    ) -> None:
        self._select = select
        #: reads State as bytes (both backends have it); without it State is read as hex
        self._select_binary = select_binary
        self._cache: OrderedDict[StateKey | RunStateKey, LabelledState | None] = OrderedDict()
        self._cache_bytes = cache_bytes
        self._cached_bytes = 0
        self._merged: OrderedDict[MergedKey, _Merged] = OrderedDict()
        self._merged_limit = merged_bytes
        self._merged_bytes = 0
        self._runs: OrderedDict[RunKey, _Run | None] = OrderedDict()
        self._run_limit = run_bytes
        self._run_bytes = 0
        #: stored states that did not decode (each counted once)
        self.corrupt_states = 0
        #: stored runs of epochs read in place of their epochs (a run kept in the run cache: once)
        self.runs_read = 0
        self._algorithms: dict[str, type[SketchAlgorithm]] = {}

    async def epochs(self, task: str, end: int | None, start: int | None) -> list[EpochRow]:
        """The epochs of ``task`` a query covers (see the module docstring), state bytes not read."""
        params: dict[str, Any] = {"task": task}
        if end is not None:
            params["end"] = end
        if start is not None:
            params["start"] = start
        text = sql.sketch_states_sql(with_state=False, bounded=end is not None, windowed=start is not None)
        rows = [
            EpochRow(str(e), int(p), int(n), int(t), str(a), int(size), int(digest))
            for e, p, n, t, a, size, digest in await self._select(text, params)
        ]
        if start is None:  # each engine's latest period only
            latest: dict[str, int] = {}
            for row in rows:
                latest[row.engine] = max(latest.get(row.engine, 0), row.period_start)
            rows = [row for row in rows if row.period_start == latest[row.engine]]
        return rows

    async def heavy_hitters(
        self, task: str, kind: HitterKind, limit: int, end: int | None, start: int | None
    ) -> list[tuple[str, int]] | None:
        """Hitters from merged states; None when the hitter rows answer instead (no states stored,
        or one engine of an algorithm that cannot merge, without a window)."""
        rows = await self.epochs(task, end, start)
        if not rows:
            if start is None:
                return None
            if await self._count(sql.STATE_ROWS_OF_TASK, task):
                return []  # the task has states, none in this window
            if await self._count(sql.HITTER_ROWS_OF_TASK, task):
                raise MergeRefusedError(
                    f"task {task!r} has no sketch states in the store (its rows come from "
                    "Go2NetSpectra or an older NetSpectra), and a windowed answer merges states; "
                    "ask without start_time"
                )
            return []
        unmergeable = [row for row in rows if row.size == 0]
        if unmergeable:
            engines = sorted({_base_engine(row.engine) for row in rows})
            if start is None and len(engines) <= 1:
                return None
            listed = ", ".join(engines[:4])
            scope = "a time window" if start is not None else f"{len(engines)} engines ({listed})"
            raise MergeRefusedError(
                f"task {task!r} uses {unmergeable[0].algorithm!r}, whose state cannot be merged (or "
                f"was not written: {unmergeable[0].label}); an answer over {scope} merges states. "
                "Ask without start_time with one engine counting, or give the task a mergeable "
                "algorithm (netspectra plugins list shows which merge)"
            )
        merged = await self._merged_sketch(task, kind, rows, end, start)
        if merged.sketch is None:
            return []
        answer = merged.answers.get(limit)
        if answer is None:
            hitters = await asyncio.to_thread(top_hitters, merged.sketch, kind, limit)
            answer = merged.answers[limit] = [(hitter.flow, hitter.value) for hitter in hitters]
        return list(answer)

    async def _merged_sketch(
        self, task: str, kind: HitterKind, rows: Sequence[EpochRow], end: int | None, start: int | None
    ) -> _Merged:
        """The merge of ``rows``' states (sketch None: none decodes), from the merged LRU if there."""
        key: MergedKey = _run_key(task, kind, rows)
        known = self._merged.get(key)
        if known is not None:
            self._merged.move_to_end(key)
            return known
        sketch: SketchAlgorithm | None = None
        try:
            algorithm = self._algorithm(rows[0].algorithm)
        except PluginError as error:
            raise MergeRefusedError(f"task {task!r}: cannot read its states: {error}") from error
        try:
            if hasattr(algorithm, "sum_states") and hasattr(algorithm, "from_sums"):
                sketch = await self._merge_runs(task, kind, algorithm, rows, end, start)
            else:
                states = await self._states_by_run(task, rows, end, start)
                if states:
                    sketch = await asyncio.to_thread(merge_states, task, algorithm, states, [kind])
            if sketch is not None:
                # the sketch fills its own caches (candidate summaries) here, before it is shared
                await asyncio.to_thread(top_hitters, sketch, kind, 1)
        except PluginError as error:  # the states disagree (widths, seeds, fields)
            raise MergeRefusedError(str(error)) from error
        merged = _Merged(sketch, int(getattr(sketch, "memory_bytes", 0) or 0) + 4096)
        self._merged[key] = merged
        self._merged_bytes += merged.size
        while self._merged_bytes > self._merged_limit and len(self._merged) > 1:
            _, dropped = self._merged.popitem(last=False)
            self._merged_bytes -= dropped.size
        return merged

    async def _merge_runs(
        self,
        task: str,
        kind: HitterKind,
        algorithm: Any,
        rows: Sequence[EpochRow],
        end: int | None,
        start: int | None,
    ) -> SketchAlgorithm | None:
        """Merge by runs of :data:`RUN_EPOCHS` aligned epochs of one engine and period, each run's
        sums kept (``sum_states``/``from_sums``: the same sketch as ``merge_states``, bit for bit),
        so a window that moves or grows adds the sums of the runs it shares with earlier queries
        and sums only the epochs of the others."""
        slots = _slots(rows)
        keyed = [(_run_key(task, kind, run), slot, run) for slot, run in slots.items()]
        known = {key: self._runs[key] for key, _, _ in keyed if key in self._runs}
        for key in known:
            self._runs.move_to_end(key)
        stored = await self._stored_runs(task, {slot: run for key, slot, run in keyed if key not in known})
        missing = [row for key, slot, run in keyed if key not in known and slot not in stored for row in run]
        found = await self._state_map(task, missing, end, start) if missing else {}
        # in row order: a cached run's first state stands for the run (its states were checked
        # against it), a stored run's state for its epochs, the others' states are checked one by
        # one, as merge_states checks them
        order: list[tuple[RunKey, _Run | None, list[LabelledState]]] = []
        for key, slot, run in keyed:
            if key in known:
                order.append((key, known[key], []))
            elif slot in stored:
                order.append((key, None, [stored[slot]]))
            else:
                states = [s for row in run if (s := found.get(_state_key(task, row))) is not None]
                order.append((key, None, states))

        def merge() -> tuple[dict[RunKey, _Run | None], SketchAlgorithm | None]:
            heads = [
                item
                for _, cached, states in order
                for item in ([cached.head] if cached is not None else states)
            ]
            check_compatible(task, heads)
            made: dict[RunKey, _Run | None] = {}
            parts = []
            for key, cached, states in order:
                if cached is None:
                    if not states:
                        made[key] = None
                        continue
                    sums = algorithm.sum_states([item.state for item in states], [kind])
                    cached = made[key] = _Run(states[0], sums, int(sums.nbytes) + 4096)
                parts.append(cached.sums)
            if not heads:
                return made, None
            total = algorithm.sum_states([], [kind], parts)
            return made, algorithm.from_sums(heads[0].state, total)

        made, sketch = await asyncio.to_thread(merge)
        for key, entry in made.items():
            if key in self._runs:  # a query beside this one summed it too
                continue
            self._runs[key] = entry
            self._run_bytes += entry.size if entry is not None else 64
        while self._run_bytes > self._run_limit and len(self._runs) > 1:
            _, dropped = self._runs.popitem(last=False)
            self._run_bytes -= dropped.size if dropped is not None else 64
        return sketch

    async def _states_by_run(
        self, task: str, rows: Sequence[EpochRow], end: int | None, start: int | None
    ) -> list[LabelledState]:
        """The states to merge for ``rows`` (an algorithm without ``sum_states``): each stored run
        that covers exactly its rows there stands for them, the other rows' epoch states as stored."""
        slots = _slots(rows)
        stored = await self._stored_runs(task, slots)
        rest = [row for slot, run in slots.items() if slot not in stored for row in run]
        found = await self._state_map(task, rest, end, start) if rest else {}
        out: list[LabelledState] = []
        for slot, run in slots.items():
            if slot in stored:
                out.append(stored[slot])
                continue
            out.extend(s for row in run if (s := found.get(_state_key(task, row))) is not None)
        return out

    async def _stored_runs(
        self, task: str, slots: Mapping[RunSlot, Sequence[EpochRow]]
    ) -> dict[RunSlot, LabelledState]:
        """The decoded stored run (sketch_state_runs) of each of ``slots`` that covers exactly the
        epoch rows the query sees there: the same first and last epoch and the same digest of every
        epoch's (Epoch, StateCheck), so a window that cuts the run, an epoch missing or changed, or
        a run not closed (its engine stopped mid-run) reads the epochs. A run that does not decode
        is skipped, counted in :attr:`corrupt_states` and logged, and its epochs are read instead.

        Only runs whose first and last epochs lie in the span of the rows asked for are fetched:
        one the window cuts at its start would come with its bytes to be thrown away (every step
        of a sliding window has one per engine).
        """
        wanted = {slot: run for slot, run in slots.items() if len(run) > 1}
        if not wanted:
            return {}
        stamps = [row.timestamp for run in wanted.values() for row in run]
        params: dict[str, Any] = {"task": task, "start": min(stamps) - 1, "end": max(stamps)}
        if self._select_binary is not None:
            fetched = await self._select_binary(sql.RUN_BYTES, params)
        else:
            fetched = await self._select(sql.RUN_TEXT, params)
        todo: dict[RunSlot, tuple[RunStateKey, str, Any]] = {}
        for engine_id, period, first, last, digest, check, data in fetched:
            engine = bytes(engine_id).decode() if isinstance(engine_id, _BINARY) else str(engine_id)
            slot = (engine, int(period), run_index(int(first)))
            run = wanted.get(slot)
            if run is None or slot in todo:  # not asked for, or a row a retried insert stored twice
                continue
            if (int(first), int(last)) != (run[0].epoch, run[-1].epoch) or int(digest) != covers(
                (row.epoch, row.digest) for row in run
            ):
                continue  # the window cuts the run, or an epoch row differs from the one it merged
            label = f"engine {engine!r} epochs {first}-{last} (period {int(period)}, a stored run)"
            todo[slot] = ((task, engine, int(period), int(first), int(last), int(check)), label, data)
        out: dict[RunSlot, LabelledState] = {}
        items = []
        for slot, (key, label, data) in todo.items():
            if key not in self._cache:
                items.append((slot, label, data))
                continue
            self._cache.move_to_end(key)
            known = self._cache[key]
            if known is not None:  # None: it did not decode before (counted then)
                out[slot] = known
        for slot, label, state in await self._decode(items):
            if isinstance(state, Exception):
                self._report_corrupt(task, label, state)
                self._remember(todo[slot][0], None)
            else:
                out[slot] = state
                self._remember(todo[slot][0], state)
        self.runs_read += len(out)
        return out

    async def _decode(
        self, items: Sequence[tuple[Any, str, Any]]
    ) -> list[tuple[Any, str, LabelledState | Exception]]:
        """Decode stored states in :data:`DECODE_THREADS` threads (zstd, CRC32 and the unshuffle
        kernel release the GIL)."""
        if not items:
            return []
        parts = [items[at::DECODE_THREADS] for at in range(DECODE_THREADS)] if len(items) > 8 else [items]
        decoded = await asyncio.gather(*(asyncio.to_thread(_decode_part, part) for part in parts))
        return [item for part in decoded for item in part]

    def _report_corrupt(self, task: str, label: str, error: Exception) -> None:
        self.corrupt_states += 1
        logger.warning(
            "Sketch task %r: the stored state of %s is unreadable and skipped (%s); %d such state(s) so far",
            task,
            label,
            error,
            self.corrupt_states,
        )

    async def _count(self, query: str, task: str) -> int:
        found = await self._select(query, {"task": task})
        return int(found[0][0]) if found else 0

    def _algorithm(self, name: str) -> type[SketchAlgorithm]:
        """The class of ``name``, looked up once (entry-point discovery reads package metadata)."""
        known = self._algorithms.get(name)
        if known is None:
            known = self._algorithms[name] = load_algorithm(name)
        return known

    async def _states(
        self, task: str, rows: Sequence[EpochRow], end: int | None, start: int | None
    ) -> list[LabelledState]:
        found = await self._state_map(task, rows, end, start)
        keys = [_state_key(task, row) for row in rows]
        return [state for key in keys if (state := found.get(key)) is not None]

    async def _state_map(
        self, task: str, rows: Sequence[EpochRow], end: int | None, start: int | None
    ) -> dict[StateKey, LabelledState | None]:
        """The decoded state of each of ``rows`` (None: it does not decode), read once, then kept."""
        keys = [_state_key(task, row) for row in rows]
        found: dict[StateKey, LabelledState | None] = {}
        for key in keys:
            if key in self._cache:
                self._cache.move_to_end(key)
                found[key] = self._cache[key]
        if len(found) < len(keys):
            for key, state in await self._fetch(task, rows, set(found)):
                found[key] = state
                self._remember(key, state)
        return found

    async def _fetch(
        self, task: str, rows: Sequence[EpochRow], known: set[Any]
    ) -> list[tuple[StateKey, LabelledState | None]]:
        """Read the state bytes of ``rows`` not in ``known`` (one query) and decode them.

        The query asks for the Timestamps those rows span, not the whole window: a window that
        slid by one epoch reads that epoch's bytes, not every epoch's again. With a binary select
        it reads the stored rows as they are (no GROUP BY: aggregating 96 states of 100 kB took
        chdb 2-4x as long as reading them) and a row a retried insert stored twice is decoded once.
        The states are decoded in :data:`DECODE_THREADS` threads (zstd, CRC32 and the unshuffle
        kernel release the GIL).
        """
        needed = [row.timestamp for row in rows if _state_key(task, row) not in known]
        if not needed:
            return []
        params: dict[str, Any] = {"task": task, "start": min(needed) - 1, "end": max(needed)}
        wanted = {(row.engine, row.period_start, row.epoch, row.digest): row for row in rows}
        todo: dict[StateKey, tuple[EpochRow, Any]] = {}
        if self._select_binary is not None:
            fetched = await self._select_binary(sql.STATE_BYTES, params)
            picked = (
                (engine, period, epoch, digest, data) for engine, period, epoch, digest, data in fetched
            )
        else:
            text = sql.sketch_states_sql(with_state=True, bounded=True, windowed=True)
            fetched = await self._select(text, params)
            picked = (
                (engine, period, epoch, digest, data)
                for engine, period, epoch, _, _, _, digest, data in fetched
            )
        for engine_id, period, epoch, digest, data in picked:
            # a binary select returns every String as bytes (EngineId too; asynch hands some values
            # over as bytearray), the other one hex text
            engine = bytes(engine_id).decode() if isinstance(engine_id, _BINARY) else str(engine_id)
            row = wanted.get((engine, int(period), int(epoch), int(digest)))
            key = (task, engine, int(period), int(epoch), int(digest))
            if row is not None and key not in known and key not in todo:
                todo[key] = (row, data)
        items = [(key, row.label, data) for key, (row, data) in todo.items()]
        out: list[tuple[StateKey, LabelledState | None]] = []
        for key, label, state in await self._decode(items):
            if isinstance(state, Exception):
                self._report_corrupt(task, label, state)
                out.append((key, None))
            else:
                out.append((key, state))
        return out

    def _remember(self, key: StateKey | RunStateKey, state: LabelledState | None) -> None:
        self._cache[key] = state
        self._cached_bytes += _footprint(state)
        while self._cached_bytes > self._cache_bytes and len(self._cache) > 1:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= _footprint(dropped)


_BINARY = (bytes, bytearray, memoryview)


def _slots(rows: Sequence[EpochRow]) -> dict[RunSlot, list[EpochRow]]:
    """``rows`` by aligned run of one engine and period, each in epoch order (as the rows come)."""
    slots: dict[RunSlot, list[EpochRow]] = {}
    for row in rows:
        slots.setdefault((row.engine, row.period_start, run_index(row.epoch)), []).append(row)
    return slots


def _decode_part(items: Sequence[tuple[Any, str, Any]]) -> list[tuple[Any, str, LabelledState | Exception]]:
    """Decode stored states (bytes, or hex text); an unreadable one yields its error, not a raise."""
    out: list[tuple[Any, str, LabelledState | Exception]] = []
    for key, label, data in items:
        try:
            raw = bytes(data) if isinstance(data, _BINARY) else bytes.fromhex(str(data))
            out.append((key, label, labelled(label, raw)))
        except (SketchStateError, ValueError) as error:
            out.append((key, label, error))
    return out


def _footprint(state: LabelledState | None) -> int:
    if state is None:
        return 64
    arrays = state.state.arrays
    decoded = getattr(arrays, "nbytes", None)  # StateArrays: without decompressing them to count
    if decoded is None:
        decoded = sum(array.nbytes for array in arrays.values())
    return len(state.raw) + int(decoded)
