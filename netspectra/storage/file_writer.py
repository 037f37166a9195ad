"""The ``file`` writer (Go's ``gob`` writer's role): exact flows as JSON Lines, one file per task.

Layout: ``<root_path>/<YYYY-MM-DD_HH-MM-SS>/<task>.jsonl`` where the directory is the snapshot's
``taken_at`` in UTC, one object per flow::

    {"task": "per_src_ip", "fields": {"SrcIP": "10.0.0.1"}, "packets": 3, "bytes": 180,
     "first_seen": "2024-05-01T12:00:00.000000001Z", "last_seen": "2024-05-01T12:00:01.5Z"...}

A task fed flow records (NetFlow/IPFIX/sFlow) ends each object with the raw counts as the
exporters sent them, ``..., "raw_packets": 3, "raw_bytes": 180}``; ``packets`` and ``bytes`` are
then renormalised by the sampling rate. Tasks that counted only packets write no raw counts.

Times are RFC 3339 in UTC with all nine nanosecond digits; IPv4 is dotted, IPv6 compressed;
only the task's key fields appear, in its configured order. Each file is written to a temporary
name and renamed, so a reader never sees half a file. Sketch snapshots carry no flows and are
skipped (the ``text`` writer is theirs).

Speed: each task's file is formatted by one numba kernel into one byte buffer
(:func:`netspectra.storage.text_kernels.jsonl_kernel`, ~7.7 M five-tuple rows per CPU second,
~2.2 M before its pieces were written in line and copied by words, against ~0.19 M for the
per-row f-strings kept as :func:`flow_lines`, the reference and the path for times outside
1970-9999), in chunks of 4 k rows on as many threads as there are cores (one task's chunks
side by side too), written in order by one thread while another syncs and renames the files
already written, all off the event loop. A snapshot
handed over by the engine holds only the flows changed since this writer's previous one (see
:mod:`netspectra.engine.engine`), so each directory holds what changed; a flow's newest line
across the directories is its current count, as a flow's latest row is in the stores.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from netspectra.config.models import WriterConfig
from netspectra.model.fields import KeyField, address_text
from netspectra.model.snapshot import FlowTable, Snapshot
from netspectra.storage.context import StorageContext

logger = logging.getLogger(__name__)

_NS = 1_000_000_000
_DIRECTORY_FORMAT = "%Y-%m-%d_%H-%M-%S"


def rfc3339_ns(ns: int) -> str:
    """``2024-05-01T12:00:00.000000001Z``: UTC, always nine fractional digits."""
    seconds, fraction = divmod(int(ns), _NS)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{fraction:09d}Z"


def snapshot_directory_name(taken_at_ns: int) -> str:
    """The directory of one snapshot: its UTC time to the second, as the Go writer names it."""
    return datetime.fromtimestamp(taken_at_ns // _NS, UTC).strftime(_DIRECTORY_FORMAT)


class _TimeText:
    """RFC 3339 text of nanosecond stamps, caching the per-second part (flows share seconds)."""

    def __init__(self) -> None:
        self._seconds: dict[int, str] = {}

    def __call__(self, ns: int) -> str:
        seconds, fraction = divmod(ns, _NS)
        prefix = self._seconds.get(seconds)
        if prefix is None:
            prefix = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
            self._seconds[seconds] = prefix
        return f"{prefix}.{fraction:09d}Z"


def _address_texts(column_bytes: bytes, rows: int) -> list[str]:
    cache: dict[bytes, str] = {}
    texts = []
    for offset in range(0, rows * 16, 16):
        raw = column_bytes[offset : offset + 16]
        text = cache.get(raw)
        if text is None:
            text = address_text(raw)
            cache[raw] = text
        texts.append(text)
    return texts


def flow_lines(table: FlowTable) -> list[str]:
    """The JSON Lines of one task's flows (one string per flow, without newline)."""
    rows = len(table)
    columns: list[tuple[str, list[str] | list[int], bool]] = []
    for field in table.key_fields:
        if field is KeyField.SRC_IP:
            columns.append((field.value, _address_texts(table.src_ip.tobytes(), rows), True))
        elif field is KeyField.DST_IP:
            columns.append((field.value, _address_texts(table.dst_ip.tobytes(), rows), True))
        elif field is KeyField.SRC_PORT:
            columns.append((field.value, table.src_port.tolist(), False))
        elif field is KeyField.DST_PORT:
            columns.append((field.value, table.dst_port.tolist(), False))
        else:
            columns.append((field.value, table.protocol.tolist(), False))
    task = json.dumps(table.task)
    time_text = _TimeText()
    packets = table.packets.tolist()
    sizes = table.bytes.tolist()
    first = table.first_seen_ns.tolist()
    last = table.last_seen_ns.tolist()
    raw_packets, raw_bytes = (column.tolist() for column in table.raw_or_counted())
    lines = []
    for row in range(rows):
        fields = ", ".join(
            f'"{name}": "{values[row]}"' if quoted else f'"{name}": {values[row]}'
            for name, values, quoted in columns
        )
        raw = f', "raw_packets": {raw_packets[row]}, "raw_bytes": {raw_bytes[row]}' if table.sampled else ""
        lines.append(
            f'{{"task": {task}, "fields": {{{fields}}}, "packets": {packets[row]}, "bytes": {sizes[row]}, '
            f'"first_seen": "{time_text(first[row])}", "last_seen": "{time_text(last[row])}"{raw}}}'
        )
    return lines


_KIND = {
    KeyField.SRC_IP: 0,
    KeyField.DST_IP: 1,
    KeyField.SRC_PORT: 2,
    KeyField.DST_PORT: 3,
    KeyField.PROTOCOL: 4,
}
#: Longest text of each kind of key value (an address, a port, a protocol number).
_VALUE_WIDTH = {0: 40, 1: 40, 2: 5, 3: 5, 4: 3}
_TIME_WIDTH = 30
_COUNTER_WIDTH = 20


#: Rows formatted per kernel call. Small enough that a chunk's buffer (~1.3 MB for a five-tuple
#: task) stays in cache from the kernel's stores to the ``write`` that copies it out, and that
#: the few buffers in flight are reused instead of fresh pages: a 2 M-frame ``analyze`` with the
#: file writer on (457 k rows, 97 MB) spent 0.41-0.46 CPU s writing with 64 k-row chunks (~20 MB
#: buffers, each new one page-faulted) and 0.22 s with 4 k rows (2 k: the same; one buffer for
#: the whole table, before chunks, was worse than either).
_CHUNK_ROWS = 4_096
#: Below this many rows a snapshot is written on the calling thread (no pool to start).
_THREADED_ROWS = 65_536
#: Chunks formatted ahead of the writing thread, per formatting thread (bounds memory: each
#: in-flight chunk holds one buffer; enough lead to ride out a descheduled writer thread).
_AHEAD_PER_THREAD = 4
#: Sync and rename finished files on a thread of their own (False: in line, the path before,
#: kept as bench/analyze.py's baseline).
_SYNC_BEHIND = True
#: Bytes of a file after which the kernel is asked to start writing them to disk (0: never, the
#: path before). The closing fsync of a 300 MB file then finds ~nothing left to write: 0.13 s of
#: its wall time here went to the sync, ~0.01 s after (bench/writers.py prints both).
_WRITEBACK_BYTES = 16 << 20


class _Output:
    """A task's temporary file, asking the kernel to start writeback behind the writes.

    ``posix_fadvise(DONTNEED)`` on Linux starts writing the range's dirty pages without waiting
    for them (and drops them from the page cache once clean: a snapshot is read later, if ever).
    """

    def __init__(self, path: Path) -> None:
        self.handle: BinaryIO = open(path, "wb")  # noqa: SIM115  # closed by _finish
        self._written = 0
        self._started = 0

    def write(self, data: memoryview | bytes) -> None:
        self._written += self.handle.write(data)
        if _WRITEBACK_BYTES and self._written - self._started >= _WRITEBACK_BYTES and _FADVISE:
            self.handle.flush()
            os.posix_fadvise(
                self.handle.fileno(), self._started, self._written - self._started, os.POSIX_FADV_DONTNEED
            )
            self._started = self._written


_FADVISE = hasattr(os, "posix_fadvise") and hasattr(os, "POSIX_FADV_DONTNEED")


@dataclass(frozen=True, slots=True)
class _Formatter:
    """What :func:`jsonl_kernel` needs to format rows of one task (the constant text, columns)."""

    pieces: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]
    columns: tuple[npt.NDArray[Any] | bool, ...]
    #: the longest a record can be, in bytes
    widest: int

    def __call__(self, out: npt.NDArray[np.uint8], start: int, stop: int) -> int:
        from netspectra.storage.text_kernels import jsonl_kernel

        return int(jsonl_kernel(out, start, stop, self.pieces, self.offsets, *self.columns))


def _formatter(table: FlowTable) -> _Formatter | None:
    """The kernel's view of ``table``; None when its times need the Python path."""
    from netspectra.storage.text_kernels import times_in_range

    if not times_in_range(table.first_seen_ns, table.last_seen_ns):
        return None
    kinds = [_KIND[field] for field in table.key_fields]
    texts = [f'{{"task": {json.dumps(table.task)}, "fields": {{']
    for position, field in enumerate(table.key_fields):
        quote = '"' if _KIND[field] <= 1 else ""
        texts.append(f'{", " if position else ""}"{field.value}": {quote}')
    texts += ['}, "packets": ', ', "bytes": ', ', "first_seen": "', '", "last_seen": "']
    texts += ['", "raw_packets": ', ', "raw_bytes": ', "}\n"] if table.sampled else ['"}\n']
    encoded = [text.encode() for text in texts]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(piece) for piece in encoded], out=offsets[1:])
    pieces = np.frombuffer(b"".join(encoded) + bytes(8), np.uint8)  # room to copy the last word
    widest = int(offsets[-1]) + sum(_VALUE_WIDTH[kind] for kind in kinds) + 2 * (_TIME_WIDTH + _COUNTER_WIDTH)
    widest += 2 * _COUNTER_WIDTH * table.sampled
    raw_packets, raw_bytes = table.raw_or_counted()
    columns = (
        np.array(kinds, np.int64),
        np.ascontiguousarray(table.src_ip),
        np.ascontiguousarray(table.dst_ip),
        table.src_port,
        table.dst_port,
        table.protocol,
        table.packets,
        table.bytes,
        table.first_seen_ns,
        table.last_seen_ns,
        table.sampled,
        raw_packets,
        raw_bytes,
    )
    return _Formatter(pieces, offsets, columns, widest)


def _buffer_size(formatter: _Formatter, rows: int) -> int:
    """Bytes ``rows`` records may take, and the room the kernel's word copies need past them."""
    from netspectra.storage.text_kernels import WORD_ROOM

    return rows * formatter.widest + WORD_ROOM


def _python_text(table: FlowTable) -> bytes:
    return "".join(line + "\n" for line in flow_lines(table)).encode()


def flow_chunks(table: FlowTable) -> Iterator[memoryview]:
    """The JSON Lines file of one task's flows, in pieces (valid until the next is asked for)."""
    formatter = _formatter(table)
    if formatter is None:
        yield memoryview(_python_text(table))
        return
    rows = len(table)
    out = np.empty(_buffer_size(formatter, min(rows, _CHUNK_ROWS)), np.uint8)
    for start in range(0, rows, _CHUNK_ROWS):
        written = formatter(out, start, min(rows, start + _CHUNK_ROWS))
        yield memoryview(out[:written])  # type: ignore[arg-type]


def flow_bytes(table: FlowTable) -> bytes:
    """The JSON Lines file of one task's flows (a newline after each record), as :func:`flow_lines`."""
    return b"".join(bytes(chunk) for chunk in flow_chunks(table))


class _Buffers:
    """Output buffers handed back after their bytes are written: pages are touched once."""

    def __init__(self) -> None:
        self._free: list[npt.NDArray[np.uint8]] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> npt.NDArray[np.uint8]:
        with self._lock:
            buffer = self._free.pop() if self._free else None
        return buffer if buffer is not None and buffer.shape[0] >= size else np.empty(size, np.uint8)

    def give(self, buffer: npt.NDArray[np.uint8] | None) -> None:
        if buffer is not None:
            with self._lock:
                self._free.append(buffer)


def _format_chunk(
    buffers: _Buffers, table: FlowTable, formatter: _Formatter | None, start: int, stop: int
) -> tuple[npt.NDArray[np.uint8] | None, memoryview]:
    if formatter is None:
        return None, memoryview(_python_text(table))
    out = buffers.take(_buffer_size(formatter, stop - start))
    return out, memoryview(out[: formatter(out, start, stop)])  # type: ignore[arg-type]


def _chunk_jobs(tables: Sequence[FlowTable]) -> Iterator[tuple[int, FlowTable, _Formatter | None, int, int]]:
    """(table index, table, formatter, rows start, stop): at least one per table (an empty file)."""
    for index, table in enumerate(tables):
        formatter = _formatter(table)
        rows = len(table) if formatter is not None else 0
        for start in range(0, max(rows, 1), _CHUNK_ROWS):
            yield index, table, formatter, start, min(rows, start + _CHUNK_ROWS)


def _write_tables(directory: Path, tables: Sequence[FlowTable], threads: int) -> None:
    """Every task's file, its chunks formatted on ``threads`` threads (the kernel releases the
    GIL), at most ``_AHEAD_PER_THREAD`` per thread ahead of this one, which writes them in order.

    A finished file is synced and renamed on a thread of its own while this one writes the next
    file: with the sync in line, the writing thread waited for the disk once per task while the
    formatters, their lead used up, waited for it.
    """
    buffers = _Buffers()
    jobs = _chunk_jobs(tables)
    pending: deque[tuple[int, Future[tuple[npt.NDArray[np.uint8] | None, memoryview]]]] = deque()
    finishing: list[Future[None]] = []
    handle: _Output | None = None
    current = -1
    with (
        ThreadPoolExecutor(1, thread_name_prefix="netspectra-file-sync") as syncer,
        ThreadPoolExecutor(threads, thread_name_prefix="netspectra-file-writer") as pool,
    ):

        def submit() -> None:
            job = next(jobs, None)
            if job is not None:
                pending.append((job[0], pool.submit(_format_chunk, buffers, *job[1:])))

        def finish_current() -> None:
            nonlocal handle
            assert handle is not None
            if _SYNC_BEHIND:
                finishing.append(syncer.submit(_finish, handle.handle, directory, tables[current]))
            else:
                _finish(handle.handle, directory, tables[current])
            handle = None  # _finish owns it now (and closes it, whatever happens)

        for _ in range(_AHEAD_PER_THREAD * threads):
            submit()
        try:
            while pending:
                index, done = pending.popleft()
                buffer, data = done.result()
                if index != current:
                    if handle is not None:
                        finish_current()
                    current = index
                    handle = _Output(_temporary(directory, tables[index]))
                assert handle is not None
                handle.write(data)
                buffers.give(buffer)
                submit()
            if handle is not None:
                finish_current()
        finally:
            if handle is not None:
                handle.handle.close()
            for _, future in pending:
                future.cancel()
    for finished in finishing:  # every file synced and renamed (the pools are shut down): its error
        finished.result()


def _temporary(directory: Path, table: FlowTable) -> Path:
    return directory / f".{table.task}.jsonl.tmp"


def _finish(handle: BinaryIO, directory: Path, table: FlowTable) -> None:
    """Sync and close ``handle`` (the task's temporary file), then give it its name."""
    try:
        handle.flush()
        os.fsync(handle.fileno())
    finally:
        handle.close()
    os.replace(_temporary(directory, table), directory / f"{table.task}.jsonl")


def _write_task(directory: Path, table: FlowTable) -> None:
    output = _Output(_temporary(directory, table))
    try:
        for chunk in flow_chunks(table):
            output.write(chunk)
    except BaseException:
        output.handle.close()
        raise
    _finish(output.handle, directory, table)


class FileWriter:
    """Writes every exact task of a snapshot to its own JSON Lines file (see the module docstring)."""

    #: The engine hands this writer only the flows changed since its last written snapshot.
    writes_changes = True
    #: exact flows only: never a sketch state (see SnapshotWriter)
    reads_sketch_state = False

    def __init__(self, root_path: str | Path, group: str = "exact", *, threads: int = 0) -> None:
        self.root_path = Path(root_path)
        self.group = group
        #: Formatting threads for a large snapshot (0: one per core; 1: all on the calling thread).
        self.threads = threads
        self._last_directory: str | None = None
        self._warned_sketch = False

    @classmethod
    def from_config(cls, config: WriterConfig, *, group: str, context: StorageContext) -> FileWriter:
        return cls(config.path_options.root_path, group=group)

    async def write(self, snapshot: Snapshot) -> None:
        if not snapshot.flows:
            if snapshot.sketches and not self._warned_sketch:
                self._warned_sketch = True
                logger.warning(
                    "The file writer of group %r got sketch results; it writes exact flows only "
                    "(use the 'text' writer for sketches)",
                    self.group,
                )
            return
        directory = await asyncio.to_thread(self.write_sync, snapshot)
        logger.info("Wrote %d task file(s) of group %r to %s", len(snapshot.flows), self.group, directory)

    def write_sync(self, snapshot: Snapshot) -> Path:
        """Write the snapshot's flow tables; returns the snapshot directory."""
        name = snapshot_directory_name(snapshot.taken_at_ns)
        if name == self._last_directory or (
            self._last_directory is not None and self._last_directory.startswith(name + ".")
        ):
            # Two snapshots in one second (e.g. a period's closing one, then the final one):
            # keep both rather than let the later overwrite the earlier.
            name = f"{name}.{snapshot.taken_at_ns % _NS:09d}"
        directory = self.root_path / name
        directory.mkdir(parents=True, exist_ok=True)
        threads = self.threads or os.cpu_count() or 1
        if threads <= 1 or sum(len(table) for table in snapshot.flows) <= _THREADED_ROWS:
            for table in snapshot.flows:
                _write_task(directory, table)
        else:
            _write_tables(directory, snapshot.flows, threads)
        self._last_directory = name
        return directory

    async def close(self) -> None:
        """Nothing buffered: every accepted snapshot is on disk when write() returns."""
