"""The ahead-of-time kernels (netspectra/jit.py) against numba's JIT of the same source.

The truth here is numba's JIT, which the rest of the suite checks against tshark and brute force:
the compiled module must give the same bits on the same inputs — packets parsed from generated
pcap and pcapng files (VLAN, QinQ, IPv6 extension headers, fragments, several link types), every
exact table, the sketches with their queries and state bytes, and the writers' text columns. The
dispatch must also decide exactly as numba's ``typeof`` does, or a call could run an entry
compiled for other types.

These run against the module ``netspectra warmup`` built (``scripts/dev`` builds it at install);
without a current one they are skipped, saying why, and the suite runs under the JIT.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netspectra import jit

_STATE = jit.aot_state()
needs_module = pytest.mark.skipif(
    _STATE is None, reason="no current ahead-of-time module (`python -m netspectra.warmup` builds it)"
)


def _values() -> list[Any]:
    grid = np.arange(24, dtype=np.uint64).reshape(4, 6)
    readonly = np.frombuffer(b"abcdefgh", np.uint8)
    return [
        np.zeros(5, np.uint8),
        np.zeros(0, np.int64),
        grid,
        grid.T,  # F-contiguous
        grid[:, ::2],  # neither
        grid[::2],  # rows sliced: not contiguous
        np.zeros((2, 3, 4), np.uint32),
        readonly,
        np.zeros(3, np.bool_),
        np.zeros(4, np.float64),
        np.zeros(4, np.int32)[::2],
        True,
        np.bool_(False),
        7,
        -(1 << 63),
        np.uint64(3),
        np.uint32(3),
        np.int64(-3),
        2.5,
    ]


def test_the_dispatch_key_is_what_numba_types_each_argument_as() -> None:
    from numba import typeof

    from netspectra.aot import numba_key

    for value in _values():
        expected = numba_key(typeof(value))
        expected = tuple(expected) if isinstance(expected, list) else expected
        assert jit.arg_key(value) == expected, (value, typeof(value))


def test_values_numba_would_not_type_as_a_compiled_entry_have_no_key() -> None:
    assert jit.arg_key(1 << 63) is None  # numba: uint64; no entry takes a Python int that large
    assert jit.arg_key(b"bytes") is None
    assert jit.arg_key((1, 2)) is None


def _traces(directory: Path) -> list[Path]:
    from netspectra.synth import TrafficSpec, write_trace

    specs = {
        "plain.pcap": TrafficSpec(packets=30_000, flows=3_000, spreaders=2, spreader_fanout=300),
        "odd.pcap": TrafficSpec(
            packets=20_000, flows=500, seed=5, snaplen=60, ipv6_fraction=0.5, vlan_fraction=0.3,
            qinq_fraction=0.2, ext_header_fraction=0.2, fragment_fraction=0.1, nanosecond=True,
            big_endian=True,
        ),
        "links.pcapng": TrafficSpec(
            packets=20_000, flows=2_000, seed=9, format="pcapng", linktypes=(1, 101, 113, 276, 0, 108)
        ),
    }  # fmt: skip
    paths = []
    for name, spec in specs.items():
        write_trace(directory / name, spec)
        paths.append(directory / name)
    return paths


def _everything(paths: list[Path]) -> list[Any]:
    """Every output of the analyze path's kernels over ``paths``: packets, skips, tables, sketches."""
    from netspectra.analysis import default_settings
    from netspectra.capture.reader import CaptureReader
    from netspectra.engine.groups import build_groups
    from netspectra.model.fields import FIELD_ORDER
    from netspectra.model.key_kernel import build_keys
    from netspectra.model.packets import PacketColumns
    from netspectra.storage.file_writer import flow_bytes
    from netspectra.storage.rows import addresses_arrow
    from netspectra.storage.text_writer import hitter_files

    outputs: list[Any] = []
    for path in paths:
        with CaptureReader(path, batch_size=4096) as reader:
            batches = list(reader)
        batch = PacketColumns.concat(batches)
        outputs += [*batch.arrays(), dict(reader.skips), reader.frames, reader.error]
        outputs.append(build_keys(batch, FIELD_ORDER))
        groups = build_groups(default_settings())
        for group in groups.values():
            for part in batches:
                group.insert(part)
            snapshot = group.snapshot(0, 0)
            for table in snapshot.flows:
                outputs += [table.src_ip, table.dst_ip, table.src_port, table.dst_port, table.protocol]
                outputs += [table.packets, table.bytes, table.first_seen_ns, table.last_seen_ns]
                outputs.append(flow_bytes(table))
                outputs.append(addresses_arrow(table.src_ip).to_pylist())
            for result in snapshot.sketches:
                outputs.append([(hitter.flow, hitter.value, hitter.kind) for hitter in result.hitters])
                outputs.append(hitter_files(result))
        sketches = groups["sketch"]
        for task in sketches.tasks:  # type: ignore[attr-defined]
            outputs.append(task.sketch.query(build_keys(batch, task.flow_fields)))
            outputs.append(task.sketch.to_bytes())
    return outputs


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, np.ndarray):
        return isinstance(right, np.ndarray) and left.dtype == right.dtype and np.array_equal(left, right)
    if isinstance(left, dict):
        return (
            isinstance(right, dict)
            and left.keys() == right.keys()
            and all(_same(left[k], right[k]) for k in left)
        )
    if isinstance(left, memoryview):
        return isinstance(right, memoryview) and left.tobytes() == right.tobytes()
    if isinstance(left, list | tuple):
        return type(left) is type(right) and len(left) == len(right) and all(map(_same, left, right))
    return bool(left == right)


@needs_module
def test_the_compiled_kernels_give_the_jit_s_bits_on_generated_traffic(tmp_path: Path) -> None:
    assert _STATE is not None
    paths = _traces(tmp_path)
    before, fell_back_before = dict(_STATE.calls), dict(_STATE.fallback_calls)
    compiled = _everything(paths)
    ran = {name: count - before.get(name, 0) for name, count in _STATE.calls.items()}
    fell_back = {
        name: count - fell_back_before.get(name, 0)
        for name, count in _STATE.fallback_calls.items()
        if count > fell_back_before.get(name, 0)
    }
    with jit.forced_jit():
        jitted = _everything(paths)
    assert len(compiled) == len(jitted)
    different = [index for index, (a, b) in enumerate(zip(compiled, jitted, strict=True)) if not _same(a, b)]
    assert different == []
    # the compiled entries did run (no silent fallback): the walkers, the tables, the sketches, text
    for kernel in (
        "netspectra.capture.kernel.walk_pcap",
        "netspectra.capture.kernel.walk_pcapng",
        "netspectra.engine.exact.table._insert_kernel",
        "netspectra.engine.exact.table._direct_kernel",
        "netspectra.engine.exact.table._rehash_kernel",
        "netspectra.model.key_kernel._build_keys",
        "netspectra.engine.sketch.count_min_kernels.update_rows",
        "netspectra.engine.sketch.spread_sketch_kernels.update",
        "netspectra.storage.text_kernels.jsonl_kernel",
        "netspectra.storage.text_kernels.address_text_kernel",
    ):
        assert ran.get(kernel, 0) > 0, kernel
    assert fell_back == {}


@needs_module
def test_a_call_without_a_compiled_entry_runs_under_numba_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from netspectra.engine.sketch import state_kernels

    shuffle: Callable[..., Any] = state_kernels.shuffle_into
    assert isinstance(shuffle, jit.AotKernel)
    words = np.arange(64, dtype=np.uint64)
    out = np.zeros(words.nbytes, np.uint8)
    assert shuffle.aot_entry(words, 8, out) is not None  # type: ignore[attr-defined]
    halves = np.arange(64, dtype=np.uint32)  # a dtype no entry was compiled for
    out_jit = np.zeros(halves.nbytes, np.uint8)
    assert shuffle.aot_entry(halves, 4, out_jit) is None  # type: ignore[attr-defined]
    with caplog.at_level("INFO", logger="netspectra.jit"):
        shuffle(halves, 4, out_jit)
    with jit.forced_jit():
        expected = np.zeros(halves.nbytes, np.uint8)
        shuffle(halves, 4, expected)
    assert np.array_equal(out_jit, expected)
    assert "no ahead-of-time entry" in caplog.text
