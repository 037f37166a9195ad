"""The ``text`` writer: sketch heavy hitters as plain text files, laid out as Go2NetSpectra does.

``<root_path>/<YYYY-MM-DD_HH-MM-SS>/<task>/count_hh.txt`` and ``size_hh.txt`` (count_min),
``spread_ss.txt`` (super_spread), one ``"<flow> <value>"`` line per hitter, descending. The
directory name is the snapshot's wall-clock time in local time (Go formats ``time.Now()``).
Files are written to a temporary name and renamed, so a reader never sees half a file.

Speed: the hitters arrive as objects, so they are read once into columns (flow text, value,
kind), ordered with numpy and written by one numba kernel into one byte buffer per file
(:func:`hitter_files`; the per-line f-strings are kept as :func:`hitter_texts`, the reference
and the path for what the columns cannot hold: a value outside uint64, a flow with a newline).
Ties in value are put in flow order by a kernel too
(:func:`~netspectra.storage.text_kernels.order_ties_by_flow`, a merge sort of each run of equal
values on the flows' UTF-8 bytes), not by Python's sort of a million strings. Reading the
objects' attributes is most of what is left (bench/writers.py prints the ratio).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from array import array
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from operator import attrgetter
from pathlib import Path

import numpy as np

from netspectra.config.models import WriterConfig
from netspectra.errors import ConfigError, StorageError
from netspectra.model.snapshot import HeavyHitter, HitterKind, SketchResult, Snapshot
from netspectra.storage.context import StorageContext

logger = logging.getLogger(__name__)

#: File name of each kind of hitter (Go's names).
FILE_OF_KIND: dict[HitterKind, str] = {
    HitterKind.COUNT: "count_hh.txt",
    HitterKind.SIZE: "size_hh.txt",
    HitterKind.SPREAD: "spread_ss.txt",
}
#: Kinds the built-ins always report, so an empty result still gets (empty) files, as in Go.
KINDS_OF_ALGORITHM: dict[str, tuple[HitterKind, ...]] = {
    "count_min": (HitterKind.COUNT, HitterKind.SIZE),
    "super_spread": (HitterKind.SPREAD,),
}
DIRECTORY_FORMAT = "%Y-%m-%d_%H-%M-%S"


def snapshot_directory_name(taken_at_ns: int) -> str:
    """``YYYY-MM-DD_HH-MM-SS`` of a wall-clock nanosecond timestamp, local time."""
    return time.strftime(DIRECTORY_FORMAT, time.localtime(taken_at_ns / 1e9))


def _kinds(result: SketchResult) -> list[HitterKind]:
    """The files of ``result``: its algorithm's kinds (even when empty), then others as they come."""
    kinds = list(KINDS_OF_ALGORITHM.get(result.algorithm, ()))
    return kinds + [
        kind for kind in dict.fromkeys(hitter.kind for hitter in result.hitters) if kind not in kinds
    ]


def hitter_texts(result: SketchResult) -> dict[HitterKind, str]:
    """Each file's text, line by line in Python: the reference :func:`hitter_files` must equal."""
    files = {}
    for kind in _kinds(result):
        hitters = sorted(
            (hitter for hitter in result.hitters if hitter.kind == kind),
            key=lambda hitter: (-hitter.value, hitter.flow),
        )
        files[kind] = "".join(f"{hitter.flow} {hitter.value}\n" for hitter in hitters)
    return files


#: Hitters of one file below which it is formatted on the calling thread (no pool to start).
_THREADED_HITTERS = 65_536


def _parts(ordered_values: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """``parts`` row ranges of about equal size, each cut where the value changes: a run of equal
    values (which :func:`order_ties_by_flow` sorts) stays within one range."""
    rows = ordered_values.shape[0]
    changes = np.flatnonzero(ordered_values[1:] != ordered_values[:-1]) + 1
    if not changes.shape[0]:
        return [(0, rows)]
    wanted = np.searchsorted(changes, np.arange(1, parts) * rows // parts)
    bounds = [0, *sorted(set(changes[np.minimum(wanted, len(changes) - 1)].tolist())), rows]
    return list(pairwise(bounds))


@dataclass(frozen=True, slots=True)
class _File:
    """One file's columns in value order (see :func:`hitter_parts`)."""

    text: np.ndarray
    positions: np.ndarray
    ordered_values: np.ndarray
    begin: np.ndarray
    end: np.ndarray
    scratch: np.ndarray
    #: ``sizes[i]``: the bound of the bytes of the first ``i`` lines
    sizes: np.ndarray

    def part(self, bounds: tuple[int, int]) -> memoryview:
        """Lines ``low..high`` (a range :func:`_parts` made): ties ordered, then formatted."""
        from netspectra.storage.text_kernels import WORD_ROOM, hitter_lines_kernel, order_ties_by_flow

        low, high = bounds
        positions = self.positions[low:high]
        order_ties_by_flow(
            positions, self.ordered_values[low:high], self.text, self.begin, self.end, self.scratch[low:high]
        )
        out = np.empty(int(self.sizes[high] - self.sizes[low]) + WORD_ROOM, np.uint8)
        written = hitter_lines_kernel(out, positions, self.text, self.begin, self.end, self.ordered_values)
        return memoryview(out[:written])  # type: ignore[arg-type]


def _kind_codes(hitters: tuple[HeavyHitter, ...]) -> np.ndarray:
    """Each hitter's kind as a number: ``bytes()`` reads the IntEnums (ints) in one C loop, a third
    of the time of ``np.fromiter`` over ``kind._value_`` (25 against 68 ms a million here)."""
    try:
        return np.frombuffer(bytes(map(attrgetter("kind"), hitters)), np.uint8).astype(np.int64)
    except ValueError:  # a kind past 255 (none today): read one by one
        return np.fromiter(map(attrgetter("kind._value_"), hitters), np.int64, len(hitters))


def hitter_parts(result: SketchResult, threads: int = 1) -> dict[HitterKind, list[memoryview | bytes]]:
    """Each file's bytes (kind → its pieces, in order), ordered by value descending then flow, as
    Go writes them; a large file's pieces are sorted and formatted on ``threads`` threads side by
    side (the kernels release the GIL)."""
    hitters = result.hitters
    rows = len(hitters)
    flows = list(map(attrgetter("flow"), hitters))
    try:  # array's C loop reads the ints at half np.fromiter's cost (25 ms a million here)
        values = np.frombuffer(array("Q", map(attrgetter("value"), hitters)), np.uint64)
    except (OverflowError, TypeError, ValueError):  # beyond uint64: Python's integers write it
        values = None
    # One newline after each flow: its bytes are where the flows end (a flow holding a newline
    # takes the reference path); 8 bytes after the last, which the kernel's word copies may read.
    text = np.frombuffer(("\n".join(flows) + "\n\0\0\0\0\0\0\0\0" if rows else "").encode(), np.uint8)
    ends = np.flatnonzero(text == 10)
    if values is None or ends.shape[0] != rows:
        return {kind: [body.encode()] for kind, body in hitter_texts(result).items()}
    starts = np.zeros(rows, np.int64)
    starts[1:] = ends[:-1] + 1
    kinds = _kind_codes(hitters)
    present = np.flatnonzero(np.bincount(kinds)) if rows else kinds  # kinds are small numbers
    first = np.array([np.argmax(kinds == code) for code in present], np.int64)
    known = list(KINDS_OF_ALGORITHM.get(result.algorithm, ()))
    others = [HitterKind(int(code)) for code in present[np.argsort(first)] if code not in known]
    descending = ~values  # uint64: the largest value first, in one ascending sort
    files: dict[HitterKind, list[memoryview | bytes]] = {}
    pool = ThreadPoolExecutor(threads, thread_name_prefix="netspectra-text") if threads > 1 else None
    try:
        for kind in known + others:
            of_kind = np.flatnonzero(kinds == int(kind))
            order = of_kind[np.argsort(descending[of_kind])]
            # the columns gathered in file order: the kernels then read only the flows' text at
            # random rows (reading every column at random rows, they waited on memory: the lines
            # ~190 ns a line, ~60 after)
            begin, end = starts[order], ends[order]
            sizes = np.zeros(order.shape[0] + 1, np.int64)
            np.cumsum(end - begin + 22, out=sizes[1:])  # a line's bound: its flow, " ", 20 digits, "\n"
            positions = np.arange(order.shape[0])
            file = _File(text, positions, values[order], begin, end, np.empty_like(positions), sizes)
            if pool is None or order.shape[0] < _THREADED_HITTERS:
                files[kind] = [file.part((0, order.shape[0]))]
            else:
                files[kind] = list(pool.map(file.part, _parts(file.ordered_values, threads)))
    finally:
        if pool is not None:
            pool.shutdown()
    return files


def hitter_files(result: SketchResult, threads: int = 1) -> dict[HitterKind, memoryview | bytes]:
    """Each file's bytes (kind → text), as :func:`hitter_parts` makes them, in one piece."""
    return {
        kind: pieces[0] if len(pieces) == 1 else b"".join(pieces)
        for kind, pieces in hitter_parts(result, threads).items()
    }


class TextWriter:
    """Writes each sketch snapshot to a new timestamped directory under ``root_path``."""

    #: hitters only, as Go writes them: never a sketch state (see SnapshotWriter)
    reads_sketch_state = False

    def __init__(self, root_path: str | os.PathLike[str], *, threads: int = 0) -> None:
        self.root_path = Path(root_path)
        #: Threads sorting and formatting a large file (0: one per core; 1: the calling thread).
        self.threads = threads
        self._closed = False

    @classmethod
    def from_config(cls, config: WriterConfig, *, group: str, context: StorageContext) -> TextWriter:
        if group != "sketch":
            raise ConfigError(
                f"aggregator.{group}.writers: the 'text' writer writes sketch heavy hitters only; "
                "use 'file' (or Go's 'gob') for exact flows"
            )
        return cls(config.path_options.root_path)

    async def write(self, snapshot: Snapshot) -> None:
        """Write every task's hitters (file IO in a worker thread)."""
        if self._closed:
            raise StorageError("text writer is closed")
        if not snapshot.sketches:
            return
        await asyncio.to_thread(self._write_files, snapshot)

    def _write_files(self, snapshot: Snapshot) -> None:
        directory = self.root_path / snapshot_directory_name(snapshot.taken_at_ns)
        total = 0
        try:
            for result in snapshot.sketches:
                total += self._write_task(directory / result.task, result)
        except OSError as error:
            raise StorageError(f"text writer cannot write under {directory}: {error}") from error
        logger.info("Wrote %d heavy hitters of %d tasks to %s", total, len(snapshot.sketches), directory)

    def _write_task(self, task_directory: Path, result: SketchResult) -> int:
        task_directory.mkdir(parents=True, exist_ok=True)
        for kind, pieces in hitter_parts(result, self.threads or os.cpu_count() or 1).items():
            target = task_directory / FILE_OF_KIND[kind]
            temporary = target.with_suffix(".tmp")
            with open(temporary, "wb") as handle:
                handle.writelines(pieces)
            temporary.replace(target)
        return len(result.hitters)

    async def close(self) -> None:
        """Nothing is buffered; further writes are refused."""
        self._closed = True
