"""Offline analysis: one capture file through the same engine, groups and writers as live traffic.

``netspectra analyze`` is a thin shell over :func:`netspectra.app.analyze_capture`, which builds
the engine exactly as ``netspectra run`` does and hands it to :func:`analyze_file` (this module
builds nothing). The file is parsed in a reader
thread while the engine's kernel lanes (one thread per core, see :mod:`netspectra.engine.lanes`)
count the previous batches; all of them are numba kernels that release the GIL, so parsing and
the tasks' counting overlap on as many cores as there are. There is no
schedule: periodic snapshots and period resets follow the wall clock, which means nothing for a
file, so every writer gets exactly one snapshot — the final one, when the file is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

from netspectra.capture.reader import CaptureReader
from netspectra.config import Settings, load_settings
from netspectra.engine.engine import Engine
from netspectra.model.fields import KeyField, address_text
from netspectra.model.snapshot import FlowTable, Snapshot

#: Called after each batch with (bytes read, total bytes or None, packets so far).
ProgressCallback = Callable[[int, int | None, int], None]
DEFAULT_CONFIG_RESOURCE = "default_config.yaml"
_QUEUE_DEPTH = 4


def default_settings() -> Settings:
    """The project's default configuration: ``netspectra/default_config.yaml`` if shipped, else defaults."""
    resource = files("netspectra").joinpath(DEFAULT_CONFIG_RESOURCE)
    if resource.is_file():
        return load_settings(Path(str(resource)))
    return Settings()


@dataclass(slots=True)
class AnalysisResult:
    """What one file produced: the reader's counters and every group's final snapshot."""

    path: str
    frames: int
    packets: int
    bytes: int
    skips: dict[str, int]
    error: str | None
    bytes_read: int
    elapsed_s: float
    snapshots: dict[str, Snapshot] = field(default_factory=dict)
    #: From the first frame read to the last row written (writers done, engine closed); 0 if unknown
    written_s: float = 0.0
    interrupted: bool = False  # cancelled (Ctrl-C): the snapshots hold what was counted until then
    #: ``--flows`` only: per exporter (sFlow: agent) records, raw_packets/raw_bytes as sent and
    #: packets/bytes renormalised by the sampling rate (the engine's tables hold only the latter)
    exporters: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def packets_per_s(self) -> float:
        return self.packets / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def unreadable(self) -> bool:
        """True when not one frame could be read: the file is not a capture we understand."""
        return self.error is not None and self.frames == 0

    def flow_tables(self) -> list[FlowTable]:
        return [table for snapshot in self.snapshots.values() for table in snapshot.flows]

    def to_json(self, top: int) -> dict[str, Any]:
        """One JSON-ready document: counters, the top ``top`` flows per exact task, sketch hitters."""
        document = self._document(top)
        if self.exporters:
            document["exporters"] = self.exporters
        return document

    def _document(self, top: int) -> dict[str, Any]:
        return {
            "file": self.path,
            "frames": self.frames,
            "packets": self.packets,
            "bytes": self.bytes,
            "skips": dict(self.skips),
            "error": self.error,
            "interrupted": self.interrupted,
            "elapsed_s": round(self.elapsed_s, 6),
            "written_s": round(self.written_s, 6),
            "packets_per_s": round(self.packets_per_s, 1),
            "exact": {
                table.task: {"flows": len(table), "top": top_flows(table, top)}
                for table in self.flow_tables()
            },
            "sketch": {
                result.task: {
                    "algorithm": result.algorithm,
                    "hitters": [
                        {"flow": hitter.flow, "value": hitter.value, "kind": hitter.kind.name.lower()}
                        for hitter in result.hitters[:top]
                    ],
                }
                for snapshot in self.snapshots.values()
                for result in snapshot.sketches
            },
        }


def top_flows(table: FlowTable, top: int) -> list[dict[str, Any]]:
    """The ``top`` flows by packets (then bytes), with their key fields as text/ints."""
    if not len(table) or top <= 0:
        return []
    order = _top_rows(table.packets, table.bytes, top)
    flows = []
    for row in order.tolist():
        fields: dict[str, Any] = {}
        for key_field in table.key_fields:
            if key_field is KeyField.SRC_IP:
                fields[key_field.value] = address_text(table.src_ip[row])
            elif key_field is KeyField.DST_IP:
                fields[key_field.value] = address_text(table.dst_ip[row])
            elif key_field is KeyField.SRC_PORT:
                fields[key_field.value] = int(table.src_port[row])
            elif key_field is KeyField.DST_PORT:
                fields[key_field.value] = int(table.dst_port[row])
            else:
                fields[key_field.value] = int(table.protocol[row])
        flows.append(
            {
                "fields": fields,
                "packets": int(table.packets[row]),
                "bytes": int(table.bytes[row]),
                "first_seen_ns": int(table.first_seen_ns[row]),
                "last_seen_ns": int(table.last_seen_ns[row]),
            }
        )
    return flows


def _top_rows(packets: np.ndarray, nbytes: np.ndarray, top: int) -> np.ndarray:
    """Rows of the ``top`` largest (packets, bytes), descending, ties in row order.

    Only rows whose packets reach the ``top``-th largest count can qualify, so a partition picks
    those (a few, usually) and only they are sorted: a full sort of a million-flow table is
    ~100 ms, this is a few. The result equals a stable full sort by (-packets, -bytes).
    """
    rows = packets.shape[0]
    if top < rows:
        threshold = np.partition(packets, rows - top)[rows - top]
        candidates = np.flatnonzero(packets >= threshold)
    else:
        candidates = np.arange(rows)
    keys = (-nbytes[candidates].astype(np.float64), -packets[candidates].astype(np.float64))
    return candidates[np.lexsort(keys)[:top]]


def _pump(
    reader: CaptureReader, engine: Engine, progress: ProgressCallback | None, stop: threading.Event
) -> None:
    """Parse in a helper thread, count here until the file ends or ``stop``; re-raise a reader failure."""
    batches: queue.Queue[Any] = queue.Queue(maxsize=_QUEUE_DEPTH)
    done = object()

    def produce() -> None:
        try:
            for batch in reader:
                while not stop.is_set():
                    try:
                        batches.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            batches.put(done)
        except BaseException as error:  # handed to the consumer, which re-raises it
            batches.put(error)

    producer = threading.Thread(target=produce, name="netspectra-analyze-reader", daemon=True)
    producer.start()
    try:
        while not stop.is_set():
            try:
                item = batches.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is done:
                break
            if isinstance(item, BaseException):
                raise item
            engine.ingest_sync(item)
            if progress is not None:
                progress(reader.bytes_read, reader.total_bytes, engine.stats.packets)
    finally:
        stop.set()
        producer.join()


async def _run_pump(
    reader: CaptureReader, engine: Engine, progress: ProgressCallback | None, stop: threading.Event
) -> None:
    """The pump in a daemon thread; on cancellation set ``stop`` and wait for the batch in hand.

    Not ``asyncio.to_thread``: its thread cannot be told to stop, so a cancelled analysis kept
    ingesting into a closed engine, and its non-daemon thread held the process at exit.
    """
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if not finished.done():
            if error is None:
                finished.set_result(None)
            else:
                finished.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            _pump(reader, engine, progress, stop)
        except BaseException as raised:  # handed to the event loop, which re-raises it
            error = raised
        with contextlib.suppress(RuntimeError):  # the loop is gone: a forced exit, nobody waits
            loop.call_soon_threadsafe(settle, error)

    pump = threading.Thread(target=run, name="netspectra-analyze-pump", daemon=True)
    pump.start()
    try:
        await asyncio.shield(finished)
    except asyncio.CancelledError:
        stop.set()
        await finished  # the batch being counted, at most; a second Ctrl-C ends the process
        raise
    finally:
        if finished.done():
            # settling ``finished`` was the thread's last act, so this returns at once; without it
            # the caller could still see the thread alive (seen under load: "leaks no thread" failed)
            pump.join()


async def analyze_file(
    path: str | Path,
    engine: Engine,
    *,
    progress: ProgressCallback | None = None,
    batch_size: int = 65536,
    compat: str | None = None,
) -> AnalysisResult:
    """Run ``path`` through ``engine`` (not yet started); its writers get the final snapshot.

    The engine is started here without a schedule and closed here; the caller owns the storage
    context its writers share, and closes it after this returns.

    Cancelling it (Ctrl-C under ``asyncio.run``) stops reading, still gives the writers the final
    snapshot of what was counted, and returns that result with ``interrupted`` set.

    Raises :class:`~netspectra.errors.CaptureError` when the file cannot be opened. ``compat``:
    ``probe.compat`` (``"go"``: frames decoded as gopacket 1.1.19 decodes them).
    """
    with CaptureReader(path, batch_size=batch_size, compat=compat) as reader:
        await engine.start(schedule=False)
        started = time.perf_counter()
        stop = threading.Event()
        interrupted = False
        try:
            await _run_pump(reader, engine, progress, stop)
        except asyncio.CancelledError:
            interrupted = True
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()  # handled here: the caller gets the partial result
        finally:
            elapsed = time.perf_counter() - started
            snapshots = await engine.close()
            written = time.perf_counter() - started
    return AnalysisResult(
        path=str(path),
        frames=reader.frames,
        packets=reader.packets,
        bytes=reader.bytes,
        skips=dict(reader.skips),
        error=reader.error,
        bytes_read=reader.bytes_read,
        elapsed_s=elapsed,
        snapshots=snapshots,
        interrupted=interrupted,
        written_s=written,
    )


async def analyze_flow_file(
    path: str | Path, engine: Engine, *, batch_datagrams: int = 4096
) -> AnalysisResult:
    """A capture *of export packets* (NetFlow v5/v9, IPFIX, sFlow; any UDP port) through ``engine``.

    Each datagram's records are counted with their weights (see ``Engine.ingest_flows_sync``);
    ``frames`` are the UDP datagrams read, ``packets`` and ``bytes`` the records' renormalised
    totals, ``skips`` the decoders' counters (malformed reasons, held data, sequence gaps).
    """
    from netspectra.capture.flows import DatagramBatch, ExportDecoder, read_capture_datagrams
    from netspectra.errors import CaptureError

    decoder = ExportDecoder()
    try:
        datagrams = list(read_capture_datagrams(Path(path)))
    except (OSError, ValueError) as error:
        raise CaptureError(str(error)) from error
    await engine.start(schedule=False)
    started = time.perf_counter()
    records = 0
    try:
        for at in range(0, len(datagrams), batch_datagrams):
            chunk = datagrams[at : at + batch_datagrams]
            flows = decoder.decode(DatagramBatch.from_datagrams((d.payload, d.src, d.ts_ns) for d in chunk))
            records += len(flows)
            await engine.ingest_flows(flows)
    finally:
        elapsed = time.perf_counter() - started
        snapshots = await engine.close()
    stats = decoder.stats()
    skips = _flat_counts(stats)
    skips["records"] = records
    return AnalysisResult(
        path=str(path),
        frames=len(datagrams),
        packets=engine.stats.packets,
        bytes=engine.stats.bytes,
        skips=skips,
        error=None if datagrams else "no UDP datagram in the file",
        bytes_read=Path(path).stat().st_size,
        elapsed_s=elapsed,
        snapshots=snapshots,
        exporters=_exporter_weights(decoder),
    )


def _exporter_weights(decoder: Any) -> dict[str, dict[str, int]]:
    """Per exporter: records and the raw/renormalised totals (both protocols' tallies merged)."""
    from netspectra.capture.flows.collector import WEIGHT_TOTALS

    merged: dict[str, dict[str, int]] = {}
    for stats in (decoder.netflow.stats, decoder.sflow.stats):
        for exporter, counts in stats.exporters.as_dict().items():
            if not counts.get("records"):
                continue
            row = merged.setdefault(exporter, dict.fromkeys(("records", *WEIGHT_TOTALS), 0))
            for name in row:
                row[name] += counts.get(name, 0)
    return merged


def _flat_counts(stats: dict[str, Any], prefix: str = "") -> dict[str, int]:
    """Nested counters as dotted names (``netflow.malformed.bad_length``), the non-zero ones only."""
    flat: dict[str, int] = {}
    for name, value in stats.items():
        if isinstance(value, dict):
            flat.update(_flat_counts(value, f"{prefix}{name}."))
        elif isinstance(value, int) and value:
            flat[f"{prefix}{name}"] = value
    return flat
