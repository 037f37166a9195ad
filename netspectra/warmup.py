"""Compile every cached numba kernel before the work that is timed: ``netspectra warmup``.

numba compiles a kernel on its first call and, with ``cache=True``, keeps the machine code in
its on-disk cache (``__pycache__/*.nbi|*.nbc`` next to the source, or ``NUMBA_CACHE_DIR``). On a
fresh install nothing is cached, so the first ``analyze`` spent ~10 s compiling inside its
timed part and reported a rate 15x too low (issue 12). :func:`warm_up` instead runs a tiny input
through every path that owns a kernel (capture of pcap and pcapng, the exact tables including a
rehash, the key builder, both sketches with query and merge, the wire codec, the probe's pcap
writer, the NATS frame builder, the store's address text and Native columns, JSON Lines and the
hitter files) with the very argument types the real paths use, so each kernel's cache entry is
the one a real run loads. ``scripts/dev`` runs it after ``pip install``; ``analyze`` runs it when
:func:`missing_kernels` finds a kernel it needs uncached, says so, and starts timing afterwards.

Third-party sketch plugins are not warmed (their parameters are theirs to choose): their kernels
compile on their first batch, once per machine.
"""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from netspectra.numba_internals import has_valid_cache

#: Every module defining a ``cache=True`` kernel (``tests/unit/spine/test_warmup.py`` checks
#: the list against the source).
KERNEL_MODULES = (
    "netspectra.capture.kernel",
    "netspectra.model.key_kernel",
    "netspectra.engine.exact.table",
    "netspectra.engine.sketch.murmur3",
    "netspectra.engine.sketch.count_min_kernels",
    "netspectra.engine.sketch.super_spread_kernels",
    "netspectra.engine.sketch.spread_sketch_kernels",
    "netspectra.wire.codec",
    "netspectra.bus.nats",
    "netspectra.probe.persistence",
    "netspectra.capture.flows.netflow_kernels",
    "netspectra.capture.flows.sflow",
    "netspectra.wire.flow_codec",
    "netspectra.storage.text_kernels",
    "netspectra.engine.sketch.state_kernels",
)
#: What ``analyze`` runs: the kernels checked before a file is read (the capture, the tables and
#: sketches, and the writers' text columns: the embedded store's addresses, JSON Lines).
ANALYZE_WRITER_KERNEL_MODULE = "netspectra.storage.text_kernels"
ANALYZE_KERNEL_MODULES = (*KERNEL_MODULES[:7], ANALYZE_WRITER_KERNEL_MODULE)
#: What ``analyze --flows`` adds: the export decoders and their records' codec.
ANALYZE_FLOWS_KERNEL_MODULES = (
    "netspectra.capture.flows.netflow_kernels",
    "netspectra.capture.flows.sflow",
    "netspectra.wire.flow_codec",
)


def cached_kernels(modules: Iterable[str] = KERNEL_MODULES) -> Iterator[tuple[str, Any]]:
    """``("module.function", dispatcher)`` of every ``cache=True`` kernel a Python caller runs.

    ``inline="always"`` functions are left out: they are compiled into their callers and never
    get a cache entry of their own.
    """
    from numba.core.registry import CPUDispatcher

    for name in modules:
        module: ModuleType = importlib.import_module(name)
        for attribute, value in sorted(vars(module).items()):
            if not isinstance(value, CPUDispatcher) or value.py_func.__module__ != name:
                continue
            cached = value.stats.cache_path is not None  # None: a NullCache, cache=False
            if cached and value.targetoptions.get("inline", "never") != "always":
                yield f"{name}.{attribute}", value


def missing_kernels(modules: Iterable[str] = KERNEL_MODULES) -> list[str]:
    """The kernels without a cache entry valid for their current source (they would compile)."""
    return [name for name, dispatcher in cached_kernels(modules) if not has_valid_cache(dispatcher)]


def warm_up() -> float:
    """Run every kernel once on tiny inputs (compiling or loading each); returns the seconds taken."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="netspectra-warmup-") as scratch:
        batches = [_read_trace(Path(scratch), capture_format) for capture_format in ("pcap", "pcapng")]
        for capture_format in ("pcap", "pcapng"):  # probe.compat: go walks with its own kernels
            _read_trace(Path(scratch), capture_format, compat="go")
    for batch in batches:
        _count(batch)
    _parse_one_frame()
    _exact_rehash(batches[0])
    _wire_and_outputs(batches[0])
    _flow_decoders()
    return time.perf_counter() - started


def compile_if_needed(modules: Iterable[str] = ANALYZE_KERNEL_MODULES) -> float | None:
    """Warm up when a kernel of ``modules`` is not cached; the seconds it took, or None if all were."""
    return warm_up() if missing_kernels(modules) else None


def _read_trace(scratch: Path, capture_format: str, compat: str | None = None) -> Any:
    from netspectra.capture.reader import CaptureReader
    from netspectra.model.packets import PacketColumns
    from netspectra.synth import TrafficSpec, write_trace

    path = scratch / f"warmup.{capture_format}"
    spec = TrafficSpec(packets=256, flows=32, spreaders=1, spreader_fanout=8, format=capture_format)  # type: ignore[arg-type]
    write_trace(path, spec)
    with CaptureReader(path, compat=compat) as reader:
        return PacketColumns.concat(list(reader))


def _warmup_settings() -> Any:
    from netspectra.config.models import Settings

    small = {"width": 64, "depth": 2}
    return Settings.model_validate(
        {
            "aggregator": {
                "types": ["exact", "sketch"],
                "exact": {
                    "tasks": [
                        {
                            "name": "five_tuple",
                            "key_fields": ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"],
                        },
                        {"name": "dst_port", "key_fields": ["DstPort"]},
                    ]
                },
                "sketch": {
                    "tasks": [
                        {
                            "name": "cm_decay",
                            "algorithm": "count_min",
                            "flow_fields": ["SrcIP"],
                            "parallel_rows": True,
                            **small,
                        },
                        {
                            "name": "cm_go",
                            "algorithm": "count_min",
                            "flow_fields": ["SrcIP", "DstPort"],
                            "variant": "go",
                            **small,
                        },
                        {
                            "name": "spread",
                            "algorithm": "super_spread",
                            "flow_fields": ["DstIP"],
                            "element_fields": ["SrcIP"],
                            "m": 16,
                            "parallel_rows": True,
                            **small,
                        },
                        {
                            "name": "spread_merging",
                            "algorithm": "spread_sketch",
                            "flow_fields": ["DstIP"],
                            "element_fields": ["SrcIP"],
                            "bits": 64,
                            "levels": 4,
                            **small,
                        },
                    ]
                },
            }
        }
    )


def _count(batch: Any) -> None:
    """Both groups as the engine runs them, then what readers of a sketch call."""
    from netspectra.engine.groups import build_groups
    from netspectra.engine.sketch.group import SketchGroup
    from netspectra.engine.sketch.rows import PARALLEL_MIN_BATCH
    from netspectra.model.key_kernel import build_keys
    from netspectra.model.packets import PacketColumns
    from netspectra.storage.file_writer import flow_bytes
    from netspectra.storage.text_writer import hitter_files

    settings = _warmup_settings()
    groups = build_groups(settings)
    for group in groups.values():
        group.insert(batch)
        snapshot = group.snapshot(0, 0)
        for table in snapshot.flows:
            flow_bytes(table)
        for result in snapshot.sketches:
            hitter_files(result)
    sketches = groups["sketch"]
    assert isinstance(sketches, SketchGroup), sketches
    # a batch large enough for parallel_rows' one-row kernels, which a cached update_rows does
    # not compile (without this, the ahead-of-time build lacked them whenever numba's cache was warm)
    sketches.insert(PacketColumns.concat([batch] * -(-PARALLEL_MIN_BATCH // len(batch))))
    assert not sketches.failed_tasks, sketches.failed_tasks
    twin = SketchGroup.from_config(settings)
    twin.insert(batch)
    for task, other in zip(sketches.tasks, twin.tasks, strict=True):
        task.sketch.query(build_keys(batch, task.flow_fields))
        if task.sketch.mergeable:
            task.sketch.merge(other.sketch)
            task.sketch.heavy_hitters()  # a merged sketch reads its candidates' bounds
            _state_round_trip(task.sketch)


def _state_round_trip(sketch: Any) -> None:
    """What a snapshot writes and a query reads: the state kernels (shuffle, unshuffle, add)."""
    state = type(sketch).from_bytes(sketch.to_bytes())
    sum_states = getattr(type(sketch), "sum_states", None)
    if sum_states is not None:  # adds a state's counters straight from its bytes
        from netspectra.engine.sketch.protocol import decode_state

        sum_states([decode_state(sketch.to_bytes())])
    state.heavy_hitters()


def _parse_one_frame() -> None:
    """The per-frame kernel other njit code calls (the file walkers inline its decoder instead)."""
    import numpy as np

    from netspectra.capture.kernel import parse_frame
    from netspectra.model.packets import PacketColumns

    frame = np.zeros(64, np.uint8)
    parse_frame(frame, 0, 64, 64, 1, 0, 0, *PacketColumns.empty(1).arrays())


def _flow_decoders() -> None:
    """NetFlow v5, a v9 template and its data, and an sFlow flow sample (its header: parse_frames)."""
    import struct

    from netspectra.capture.flows.datagrams import DatagramBatch
    from netspectra.capture.flows.netflow import NetFlowDecoder
    from netspectra.capture.flows.sflow import SFlowDecoder

    v5 = struct.pack("!HHIIIIBBH", 5, 1, 0, 0, 0, 0, 0, 0, 0) + bytes(48)
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4)]
    template = struct.pack("!HH", 256, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)
    data = bytes(21)
    sets = struct.pack("!HH", 0, 4 + len(template)) + template + struct.pack("!HH", 256, 4 + len(data)) + data
    v9 = struct.pack("!HHIIII", 9, 2, 0, 0, 0, 0) + sets
    frame = bytes(12) + b"\x08\x00" + bytes([0x45]) + bytes(19)
    raw = struct.pack("!IIII", 1, len(frame), 0, len(frame)) + frame
    record = struct.pack("!II", 1, len(raw)) + raw
    sample = struct.pack("!IIIIIIII", 0, 0, 1, 1, 0, 0, 0, 1) + record
    sflow = struct.pack("!II4sIIII", 5, 1, bytes(4), 0, 0, 0, 1) + struct.pack("!II", 1, len(sample)) + sample
    exports = DatagramBatch.from_datagrams([(v5, "127.0.0.1", 0), (v9, "127.0.0.1", 0)])
    flows = NetFlowDecoder().decode(exports)
    SFlowDecoder().decode(DatagramBatch.from_datagrams([(sflow, "127.0.0.1", 0)]))
    # the exact tables' weighted entry points (hashed and direct)
    from netspectra.config.models import ExactTaskConfig
    from netspectra.engine.exact.group import ExactGroup
    from netspectra.model.fields import FIELD_ORDER, KeyField

    tasks = [
        ExactTaskConfig(name="five_tuple", key_fields=list(FIELD_ORDER)),
        ExactTaskConfig(name="protocol", key_fields=[KeyField.PROTOCOL]),
    ]
    for _label, job in ExactGroup(tasks).insert_flow_jobs(flows):
        job()
    from netspectra.engine.sketch.count_min import CountMin, CountMinParams

    sketch = CountMin(CountMinParams(width=64, depth=2), flow_fields=(KeyField.SRC_IP,))
    sketch.insert_weighted(flows.src_ip, flows.src_ip, flows.bytes, flows.packets)
    from netspectra.wire.flow_codec import decode_flow_batch, encode_flow_batch

    decode_flow_batch(encode_flow_batch(flows))


def _exact_rehash(batch: Any) -> None:
    """A table that starts small, so the batch makes it grow (the rehash kernel)."""
    from netspectra.engine.exact.table import FlowHashTable, address_words
    from netspectra.model.fields import FIELD_ORDER

    table = FlowHashTable("rehash", FIELD_ORDER, initial_rows=16)
    columns = (batch.src_port, batch.dst_port, batch.protocol, batch.ts_ns, batch.length)
    table.insert(address_words(batch.src_ip), address_words(batch.dst_ip), *columns)
    table.flow_table()


def _wire_and_outputs(batch: Any) -> None:
    """The probe → bus → engine codec, the probe's pcap spool, NATS frames, the store's text columns."""
    import numpy as np

    from netspectra.bus.nats import pub_frames
    from netspectra.engine.sketch.murmur3 import murmur3_rows
    from netspectra.model.fields import FIELD_ORDER
    from netspectra.model.key_kernel import build_keys
    from netspectra.probe.persistence import pcap_records
    from netspectra.probe.sources.afpacket import warm_up_kernel as afpacket_warm_up
    from netspectra.storage.native_block import encode_column
    from netspectra.storage.rows import addresses_arrow
    from netspectra.wire.codec import (
        decode_packet_batch,
        decode_packet_infos,
        encode_packet_batch,
        encode_packet_infos,
    )

    decode_packet_batch(encode_packet_batch(batch))
    messages = encode_packet_infos(batch)
    decode_packet_infos(messages)
    lengths = np.array([len(message) for message in messages], np.int64)
    ends = np.cumsum(lengths)
    pub_frames(b"warmup", np.frombuffer(b"".join(messages), np.uint8), ends - lengths, ends)
    pcap_records(batch)
    encode_column("SrcIP", "Nullable(String)", addresses_arrow(batch.src_ip))
    murmur3_rows(build_keys(batch, FIELD_ORDER), 1)
    afpacket_warm_up()
    afpacket_warm_up(compat="go")


def main() -> int:
    """``python -m netspectra.warmup``: compile (or load) every kernel, print what it took; then
    build the ahead-of-time module from the signatures the warm-up compiled, unless it is current.

    Runs under the JIT whatever is on disk (``NETSPECTRA_AOT=0``): numba's cache is what a stale
    module falls back to, and the build reads the JIT's signatures. A failed build is reported
    and is not an error: the kernels then run under the JIT, as without it.
    """
    from netspectra.jit import ENV_SWITCH

    os.environ[ENV_SWITCH] = "0"
    before = len(missing_kernels())
    seconds = warm_up()
    total = len(list(cached_kernels()))
    cached = f", {total - before} already cached" if before < total else ""
    print(f"netspectra warmup: {before} of {total} kernels compiled{cached} ({seconds:.1f} s)", flush=True)
    from netspectra import aot

    if aot.is_up_to_date():
        print("netspectra warmup: the ahead-of-time kernels are up to date")
        return 0
    print("netspectra warmup: compiling the analyze kernels ahead of time ...", flush=True)
    result = aot.build()
    print(f"netspectra warmup: {result.message}" + (f" ({result.seconds:.0f} s)" if result.built else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
