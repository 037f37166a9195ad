"""The ``file`` writer (Go's ``gob`` writer's role): exact flows as JSON Lines, one file per task.

Layout: ``<root_path>/<YYYY-MM-DD_HH-MM-SS>/<task>.jsonl`` where the directory is the snapshot's
``taken_at`` in UTC, one object per flow::

    {"task": "per_src_ip", "fields": {"SrcIP": "10.0.0.1"}, "packets": 3, "bytes": 180,
     "first_seen": "2024-05-01T12:00:00.000000001Z", "last_seen": "2024-05-01T12:00:01.5Z"...}

Times are RFC 3339 in UTC with all nine nanosecond digits; IPv4 is dotted, IPv6 compressed;
only the task's key fields appear, in its configured order. Each file is written to a temporary
name and renamed, so a reader never sees half a file. Sketch snapshots carry no flows and are
skipped (the ``text`` writer is theirs).

Speed: each task's file is formatted by one numba kernel into one byte buffer
(:func:`netspectra.storage.text_kernels.jsonl_kernel`, ~10 M rows/s against ~0.2 M/s for the
per-row f-strings kept as :func:`flow_lines`, the reference and the path for times outside
1970-9999), tasks on as many threads as there are cores, all off the event loop. A snapshot
handed over by the engine holds only the flows changed since this writer's previous one (see
:mod:`netspectra.engine.engine`), so each directory holds what changed; a flow's newest line
across the directories is its current count, as a flow's latest row is in the stores.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

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
    lines = []
    for row in range(rows):
        fields = ", ".join(
            f'"{name}": "{values[row]}"' if quoted else f'"{name}": {values[row]}'
            for name, values, quoted in columns
        )
        lines.append(
            f'{{"task": {task}, "fields": {{{fields}}}, "packets": {packets[row]}, "bytes": {sizes[row]}, '
            f'"first_seen": "{time_text(first[row])}", "last_seen": "{time_text(last[row])}"}}'
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


#: Rows formatted per kernel call: the buffer (~25 MB) is reused, so pages are touched once
#: (one buffer for a million flows cost as much in page faults and the copy out as formatting).
_CHUNK_ROWS = 65_536


def flow_chunks(table: FlowTable) -> Iterator[memoryview]:
    """The JSON Lines file of one task's flows, in pieces (valid until the next is asked for)."""
    from netspectra.storage.text_kernels import jsonl_kernel, times_in_range

    if not times_in_range(table.first_seen_ns, table.last_seen_ns):
        yield memoryview("".join(line + "\n" for line in flow_lines(table)).encode())
        return
    kinds = [_KIND[field] for field in table.key_fields]
    texts = [f'{{"task": {json.dumps(table.task)}, "fields": {{']
    for position, field in enumerate(table.key_fields):
        quote = '"' if _KIND[field] <= 1 else ""
        texts.append(f'{", " if position else ""}"{field.value}": {quote}')
    texts += ['}, "packets": ', ', "bytes": ', ', "first_seen": "', '", "last_seen": "', '"}\n']
    encoded = [text.encode() for text in texts]
    offsets = np.zeros(len(encoded) + 1, np.int64)
    np.cumsum([len(piece) for piece in encoded], out=offsets[1:])
    pieces = np.frombuffer(b"".join(encoded), np.uint8)
    widest = int(offsets[-1]) + sum(_VALUE_WIDTH[kind] for kind in kinds) + 2 * (_TIME_WIDTH + _COUNTER_WIDTH)
    rows = len(table)
    out = np.empty(min(rows, _CHUNK_ROWS) * widest, np.uint8)
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
    )
    for start in range(0, rows, _CHUNK_ROWS):
        written = jsonl_kernel(out, start, min(rows, start + _CHUNK_ROWS), pieces, offsets, *columns)
        yield memoryview(out[:written])  # type: ignore[arg-type]


def flow_bytes(table: FlowTable) -> bytes:
    """The JSON Lines file of one task's flows (a newline after each record), as :func:`flow_lines`."""
    return b"".join(bytes(chunk) for chunk in flow_chunks(table))


def _write_task(directory: Path, table: FlowTable) -> None:
    path = directory / f"{table.task}.jsonl"
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        for chunk in flow_chunks(table):
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


class FileWriter:
    """Writes every exact task of a snapshot to its own JSON Lines file (see the module docstring)."""

    #: The engine hands this writer only the flows changed since its last written snapshot.
    writes_changes = True

    def __init__(self, root_path: str | Path, group: str = "exact") -> None:
        self.root_path = Path(root_path)
        self.group = group
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
        threads = min(len(snapshot.flows), os.cpu_count() or 1)
        if threads <= 1:
            for table in snapshot.flows:
                _write_task(directory, table)
        else:  # the kernel releases the GIL: tasks format (and fsync) side by side
            with ThreadPoolExecutor(threads, thread_name_prefix="netspectra-file-writer") as pool:
                for done in [pool.submit(_write_task, directory, table) for table in snapshot.flows]:
                    done.result()
        self._last_directory = name
        return directory

    async def close(self) -> None:
        """Nothing buffered: every accepted snapshot is on disk when write() returns."""
