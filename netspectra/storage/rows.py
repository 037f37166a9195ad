"""Snapshots as insertable columns: the one conversion both ClickHouse writers share.

The Go writer stores a field a task does not key on as NULL, addresses as text and times as
whole seconds; we do the same, so either project reads the other's rows. Conversion is per
snapshot (not per packet) and whole-column: every column is a pyarrow array (numbers straight
from the table's numpy arrays, addresses as text written by one numba kernel into an Arrow
string buffer), so a snapshot of a million flows never becomes a million Python objects.
chdb reads the arrays as they are; the ClickHouse server writer turns them into lists.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from netspectra.engine.sketch.runs import covers, state_check
from netspectra.model.fields import KeyField
from netspectra.model.snapshot import FlowTable, Snapshot
from netspectra.storage.sql import (
    EXTRAPOLATED_COLUMNS,
    FLOW_COLUMNS,
    HITTER_COLUMNS,
    RUN_COLUMNS,
    STATE_COLUMNS,
)
from netspectra.storage.text_kernels import HEX_DIGITS, MAX_ADDRESS_TEXT, WORD_ROOM, address_text_kernel

_NS = 1_000_000_000

#: Arrow type of every column we insert; a list (a spool file from an older version) is
#: converted with it, so old and new spooled snapshots insert alike.
COLUMN_TYPES: dict[str, pa.DataType] = {
    "Timestamp": pa.uint32(),
    "TaskName": pa.string(),
    "SrcIP": pa.string(),
    "DstIP": pa.string(),
    "SrcPort": pa.uint16(),
    "DstPort": pa.uint16(),
    "Protocol": pa.uint8(),
    "StartTime": pa.uint32(),
    "EndTime": pa.uint32(),
    "ByteCount": pa.uint64(),
    "PacketCount": pa.uint64(),
    "ExtrapolatedPackets": pa.uint64(),
    "ExtrapolatedBytes": pa.uint64(),
    "Flow": pa.string(),
    "Value": pa.uint64(),
    "Type": pa.uint8(),
    "EngineId": pa.string(),
    # engine_leases
    "Writer": pa.string(),
    "Incarnation": pa.string(),
    "Holder": pa.string(),
    "Host": pa.string(),
    "Pid": pa.uint32(),
    "Heartbeat": pa.uint32(),
    "Released": pa.uint8(),
    # sketch_states
    "PeriodStart": pa.uint32(),
    "Epoch": pa.uint64(),
    "EpochStart": pa.uint32(),
    "Algorithm": pa.string(),
    "StateSize": pa.uint32(),
    "StateCheck": pa.uint32(),
    "State": pa.binary(),
    # sketch_state_runs
    "FirstEpoch": pa.uint64(),
    "LastEpoch": pa.uint64(),
    "Covers": pa.uint32(),
    "FirstTimestamp": pa.uint32(),
}


@dataclass(slots=True)
class SnapshotRows:
    """One snapshot ready to insert; ``flows_written`` lets a retry skip the table already done.

    Columns are pyarrow arrays (lists in snapshots spooled by older versions; :func:`as_arrow`
    reads both).
    """

    group: str
    taken_at_ns: int
    flows: dict[str, Any] = field(default_factory=dict)
    hitters: dict[str, Any] = field(default_factory=dict)
    flows_written: bool = False
    #: The flows are a change snapshot's (see Snapshot.since_epoch), not every flow of the period.
    changes: bool = False
    #: The snapshot's :attr:`Snapshot.progress` (absent from files spooled by older versions).
    progress: dict[str, Any] | None = None
    #: sketch_states rows (absent from snapshots spooled by older versions: read with getattr)
    states: dict[str, Any] = field(default_factory=dict)
    #: The snapshot's period start in seconds, for engine_periods (absent from older spools: 0)
    period_start: int = 0
    #: sketch_state_runs rows (absent from snapshots spooled by older versions: read with getattr)
    runs: dict[str, Any] = field(default_factory=dict)

    @property
    def flow_count(self) -> int:
        return len(self.flows.get("Timestamp", ()))

    @property
    def hitter_count(self) -> int:
        return len(self.hitters.get("Timestamp", ()))


logger = logging.getLogger(__name__)
_DATETIME_COLUMNS = frozenset(
    {"Timestamp", "StartTime", "EndTime", "PeriodStart", "EpochStart", "FirstTimestamp"}
)
_DATETIME_MAX = 2**32 - 1


def _numeric(name: str, values: npt.ArrayLike, valid: npt.NDArray[np.bool_] | None = None) -> pa.Array:
    """Integer column from numpy, built from buffers: ``pa.array`` would import pandas (~0.2 s)."""
    arrow_type = COLUMN_TYPES[name]
    if name in _DATETIME_COLUMNS:
        # ClickHouse DateTime is 32-bit seconds (1970-2106): clamp a corrupt capture's times, never wrap.
        seconds = np.asarray(values, dtype=np.int64)
        clamped = np.clip(seconds, 0, _DATETIME_MAX)
        if not np.array_equal(clamped, seconds):
            logger.warning(
                "%s: %d time(s) outside ClickHouse DateTime (1970-2106) were clamped",
                name,
                int(np.count_nonzero(clamped != seconds)),
            )
        values = clamped
    data = np.ascontiguousarray(values, dtype=arrow_type.to_pandas_dtype())
    bitmap = None
    if valid is not None and not bool(valid.all()):
        bitmap = pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(arrow_type, len(data), [bitmap, pa.py_buffer(data)])


def _strings(values: Sequence[str | None]) -> pa.Array:
    """String column from Python text (short columns: hitters, old spool files), no pandas."""
    encoded = [b"" if value is None else value.encode() for value in values]
    offsets = np.zeros(len(encoded) + 1, np.int32)
    np.cumsum([len(item) for item in encoded], out=offsets[1:])
    valid = np.array([value is not None for value in values], bool)
    bitmap = None if bool(valid.all()) else pa.py_buffer(np.packbits(valid, bitorder="little"))
    buffers = [bitmap, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(encoded), buffers)


def _binaries(values: Sequence[bytes]) -> pa.Array:
    """Binary column from Python bytes (sketch states), built from buffers like :func:`_strings`.

    Built as ``binary`` (32-bit offsets) directly: a ``large_binary`` cast to it imported
    pyarrow.compute, which parses every compute function's docstring (~25-80 ms of every process
    that stores a sketch state). Only a column past 2 GiB takes the large type and the cast.
    """
    offsets = np.zeros(len(values) + 1, np.int64)
    np.cumsum([len(item) for item in values], out=offsets[1:])
    data = pa.py_buffer(b"".join(values))
    if offsets[-1] <= np.iinfo(np.int32).max:
        return pa.Array.from_buffers(
            pa.binary(), len(values), [None, pa.py_buffer(offsets.astype(np.int32)), data]
        )
    return pa.Array.from_buffers(pa.large_binary(), len(values), [None, pa.py_buffer(offsets), data]).cast(
        pa.binary()
    )


def as_arrow(name: str, values: pa.Array | Sequence[Any]) -> pa.Array:
    """Column ``name`` as a pyarrow array of its schema type (lists from old spool files too)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        return values
    if COLUMN_TYPES[name] == pa.binary():
        return _binaries(values)
    if COLUMN_TYPES[name] == pa.string():
        return _strings(values)
    valid = np.array([value is not None for value in values], bool)
    return _numeric(name, [0 if value is None else value for value in values], valid)


def as_list(values: pa.Array | Sequence[Any]) -> list[Any]:
    """Column as a Python list (None for NULL), for drivers that take lists (asynch)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        return list(values)
    if values.null_count == 0 and pa.types.is_integer(values.type):
        return values.to_numpy().tolist()  # type: ignore[no-any-return]  # ~10x to_pylist()
    if values.null_count == len(values):
        return [None] * len(values)
    return values.to_pylist()  # type: ignore[no-any-return]


def addresses_arrow(raw: npt.NDArray[np.uint8]) -> pa.StringArray:
    """Text of every 16-byte address row as one Arrow string array (no Python str per row)."""
    rows = np.ascontiguousarray(raw, dtype=np.uint8).reshape(-1, 16)
    count = rows.shape[0]
    out = np.empty(count * MAX_ADDRESS_TEXT + WORD_ROOM, np.uint8)  # room for the last row's words
    offsets = np.empty(count + 1, np.int32)
    address_text_kernel(rows, HEX_DIGITS, out, offsets)
    data = out[: int(offsets[-1])]
    return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data.copy()))


def addresses_text(raw: npt.NDArray[np.uint8]) -> list[str]:
    """Text of every 16-byte address row: dotted IPv4 for mapped rows, compressed IPv6 else."""
    return addresses_arrow(raw).to_pylist()  # type: ignore[no-any-return]


def _repeat(name: str, value: Any, count: int) -> pa.Array:
    """A column holding ``value`` ``count`` times, built from buffers (no per-row objects)."""
    if isinstance(value, str):
        encoded = value.encode()
        offsets = np.arange(count + 1, dtype=np.int32) * len(encoded)
        return pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(encoded * count))
    return _numeric(name, np.full(count, value))


def _flow_columns(table: FlowTable, seconds: int, engine_id: str, raw: bool) -> dict[str, pa.Array]:
    """Go's columns of ``table``; with ``raw``, what renormalisation added too (renormalised minus
    raw; 0 for a table that kept no raw counts: it counted packets, unsampled)."""
    n = len(table)
    keyed = set(table.key_fields)

    def nullable(name: str, key: KeyField, values: npt.NDArray[Any]) -> pa.Array:
        if key not in keyed:
            return pa.nulls(n, COLUMN_TYPES[name])
        if values.ndim == 2:
            return addresses_arrow(values)
        return _numeric(name, values)

    columns = {
        "Timestamp": _repeat("Timestamp", seconds, n),
        "TaskName": _repeat("TaskName", table.task, n),
        "SrcIP": nullable("SrcIP", KeyField.SRC_IP, table.src_ip),
        "DstIP": nullable("DstIP", KeyField.DST_IP, table.dst_ip),
        "SrcPort": nullable("SrcPort", KeyField.SRC_PORT, table.src_port),
        "DstPort": nullable("DstPort", KeyField.DST_PORT, table.dst_port),
        "Protocol": nullable("Protocol", KeyField.PROTOCOL, table.protocol),
        "StartTime": _numeric("StartTime", table.first_seen_ns // _NS),
        "EndTime": _numeric("EndTime", table.last_seen_ns // _NS),
        "ByteCount": _numeric("ByteCount", table.bytes),
        "PacketCount": _numeric("PacketCount", table.packets),
        "EngineId": _repeat("EngineId", engine_id, n),
    }
    if raw:
        raw_packets, raw_bytes = table.raw_or_counted()
        columns["ExtrapolatedPackets"] = _numeric("ExtrapolatedPackets", table.packets - raw_packets)
        columns["ExtrapolatedBytes"] = _numeric("ExtrapolatedBytes", table.bytes - raw_bytes)
    return columns


def snapshot_rows(snapshot: Snapshot, engine_id: str = "") -> SnapshotRows:
    """Every flow and heavy hitter of ``snapshot`` as columns named as in the schema; Extrapolated*
    only when a task kept raw counts (fed flow records), so packet tasks insert what they did."""
    seconds = snapshot.taken_at_ns // _NS
    raw = any(table.sampled for table in snapshot.flows)
    tables = [_flow_columns(table, seconds, engine_id, raw) for table in snapshot.flows]
    flows: dict[str, Any] = {
        name: pa.concat_arrays([columns[name] for columns in tables]) if tables else as_arrow(name, [])
        for name in FLOW_COLUMNS + (EXTRAPOLATED_COLUMNS if raw else ())
    }
    hitters: dict[str, list[Any]] = {name: [] for name in HITTER_COLUMNS}
    for result in snapshot.sketches:
        for hitter in result.hitters:
            hitters["Timestamp"].append(seconds)
            hitters["TaskName"].append(result.task)
            hitters["Flow"].append(hitter.flow)
            hitters["Value"].append(int(hitter.value))
            hitters["Type"].append(int(hitter.kind))
            hitters["EngineId"].append(engine_id)
    hitter_columns = {name: as_arrow(name, values) for name, values in hitters.items()}
    rows = SnapshotRows(snapshot.group, snapshot.taken_at_ns, flows, hitter_columns)
    rows.states = state_rows(snapshot, engine_id)
    rows.runs = run_rows(snapshot, engine_id)
    rows.period_start = snapshot.period_start_ns // _NS
    return rows


def state_rows(snapshot: Snapshot, engine_id: str = "") -> dict[str, pa.Array]:
    """One sketch_states row per sketch task of ``snapshot`` (empty State: cannot merge)."""
    columns: dict[str, list[Any]] = {name: [] for name in STATE_COLUMNS}
    for result in snapshot.sketches:
        columns["TaskName"].append(result.task)
        columns["EngineId"].append(engine_id)
        columns["PeriodStart"].append(snapshot.period_start_ns // _NS)
        columns["Epoch"].append(result.epoch)
        columns["EpochStart"].append(result.epoch_start_ns // _NS)
        columns["Timestamp"].append(snapshot.taken_at_ns // _NS)
        columns["Algorithm"].append(result.algorithm)
        state = result.state_bytes() or b""
        columns["StateSize"].append(len(state))
        columns["StateCheck"].append(state_check(state))
        columns["State"].append(state)
    return {name: as_arrow(name, values) for name, values in columns.items()}


def run_rows(snapshot: Snapshot, engine_id: str = "") -> dict[str, pa.Array]:
    """One sketch_state_runs row per task whose run of epochs ``snapshot`` closes (none without a
    state: a run of which an epoch's state is missing is not written; queries read its epochs)."""
    columns: dict[str, list[Any]] = {name: [] for name in RUN_COLUMNS}
    for result in snapshot.sketches:
        run = result.run
        if run is None:
            continue
        state = run.state()
        if not state:
            continue
        columns["TaskName"].append(result.task)
        columns["EngineId"].append(engine_id)
        columns["PeriodStart"].append(snapshot.period_start_ns // _NS)
        columns["FirstEpoch"].append(run.first_epoch)
        columns["LastEpoch"].append(run.last_epoch)
        columns["EpochStart"].append(run.epoch_start_ns // _NS)
        columns["FirstTimestamp"].append(run.first_timestamp_ns // _NS)
        columns["Timestamp"].append(snapshot.taken_at_ns // _NS)
        columns["Algorithm"].append(result.algorithm)
        # the epochs' states were made before the run's (it merged them): this reads their bytes
        columns["Covers"].append(covers((epoch, state_check(made() or b"")) for epoch, made in run.epochs))
        columns["StateSize"].append(len(state))
        columns["StateCheck"].append(state_check(state))
        columns["State"].append(state)
    return {name: as_arrow(name, values) for name, values in columns.items()}


#: The fewest rows of one concurrently inserted block: below this a block's fixed cost (a part per
#: table, a run of flow_latest's view) outweighs what a second core saves.
MIN_INSERT_BLOCK_ROWS = 131_072
#: Rows of the block that lands last (see :func:`insert_blocks`).
SENTINEL_ROWS = 1


def insert_blocks(
    columns: dict[str, Any], streams: int
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """``columns`` cut into at most ``streams`` blocks to insert at once, and the block to insert
    after all of them (None: insert ``columns`` whole, as one block).

    The writers' exactly-once check (spool's ``_already_stored``) counts the stored rows of a
    snapshot's first task and takes the full count for "the snapshot is stored". Blocks inserted
    at once land each on its own, so the snapshot's first row (of that task) is held back and
    inserted alone once every other block has landed: the count is full only when every row is in.
    A retry after some blocks landed inserts them again; a repeated identical row changes no answer
    (every query takes each flow's latest row, a window's increment over an equal row is 0).
    """
    rows = len(as_arrow("Timestamp", columns["Timestamp"])) if "Timestamp" in columns else 0
    streams = min(streams, (rows - SENTINEL_ROWS) // MIN_INSERT_BLOCK_ROWS)
    if streams < 2:
        return [columns], None
    arrays = {name: as_arrow(name, values) for name, values in columns.items()}
    sentinel = {name: array.slice(0, SENTINEL_ROWS) for name, array in arrays.items()}
    bounds = np.linspace(SENTINEL_ROWS, rows, streams + 1).astype(np.int64)
    blocks = [
        {name: array.slice(start, stop - start) for name, array in arrays.items()}
        for start, stop in itertools.pairwise(bounds.tolist())
    ]
    return blocks, sentinel
