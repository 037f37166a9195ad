"""Benchmark: snapshot cost per interval when only the changed flows are written, vs every flow.

    python bench/snapshot_delta.py [--flows 1000000,10000000] [--active 0.01,1] [--smoke]

For each table size (five-tuple flows in one exact task) and each active fraction, one interval
counts a batch touching that fraction of the flows, then takes the snapshot a writer gets:

* baseline, measured in the same run: every flow (what each interval wrote before issue 12);
* changes: only the flows changed since the writer's last snapshot (``snapshot_changes``).

Each is timed as the snapshot copy plus the JSON Lines text of the ``file`` writer (formatted in
memory by its kernel, not written to disk, so a 10 M-flow figure does not write 2.6 GB here), and
its bytes are that text's size. ``--smoke``: 20 000 flows, seconds (CI runs it so it cannot rot).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netspectra.config.models import ExactTaskConfig
from netspectra.engine.exact import ExactGroup
from netspectra.model.fields import FIELD_ORDER
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import Snapshot
from netspectra.storage.file_writer import flow_chunks

S = 1_000_000_000


def flows_batch(ids: np.ndarray, stamp_s: int) -> PacketColumns:
    """One packet of each flow numbered in ``ids`` (distinct IPv4 source/destination pairs)."""
    count = len(ids)
    batch = PacketColumns.empty(count)
    ids = ids.astype(np.uint64)
    batch.src_ip[:] = 0  # empty() does not clear: the IPv4-mapped prefix is written in full
    batch.dst_ip[:] = 0
    batch.src_ip[:, 10:12] = 0xFF
    batch.dst_ip[:, 10:12] = 0xFF
    batch.src_ip[:, 12:] = (ids >> np.uint64(8)).astype(">u4").view(np.uint8).reshape(-1, 4)
    batch.dst_ip[:, 12:] = (ids & np.uint64(0xFF)).astype(">u4").view(np.uint8).reshape(-1, 4)
    batch.src_port[:] = (ids % np.uint64(60000)).astype(np.uint16)
    batch.dst_port[:] = 443
    batch.protocol[:] = 6
    batch.ip_version[:] = 4
    batch.length[:] = 100
    batch.ts_ns[:] = stamp_s * S + np.arange(count, dtype=np.int64)
    return batch


def write_cost(snapshot: Snapshot) -> tuple[int, int]:
    """(rows, bytes) of the snapshot's JSON Lines text."""
    rows = sum(len(table) for table in snapshot.flows)
    size = sum(len(chunk) for table in snapshot.flows for chunk in flow_chunks(table))
    return rows, size


def measure(flows: int, active: float, chunk: int) -> tuple[float, int, float, int, int]:
    """(every-flow seconds, bytes, changed-only seconds, rows, bytes) of one interval."""
    group = ExactGroup([ExactTaskConfig(name="five", key_fields=FIELD_ORDER)])
    for first in range(0, flows, chunk):
        group.insert(flows_batch(np.arange(first, min(flows, first + chunk)), 1_700_000_000))
    since = group.snapshot(0, 0).epoch + 1  # the writer's previous snapshot
    touched = np.arange(0, flows, max(1, round(1 / active)))  # every k-th flow gets one more packet
    for first in range(0, len(touched), chunk):
        group.insert(flows_batch(touched[first : first + chunk], 1_700_000_060))
    started = time.perf_counter()
    full = group.snapshot(60 * S, 0)
    _, full_bytes = write_cost(full)
    full_s = time.perf_counter() - started
    del full
    started = time.perf_counter()
    changes = group.snapshot_changes(60 * S, 0, since)
    rows, size = write_cost(changes)
    changes_s = time.perf_counter() - started
    assert rows == len(touched), (rows, len(touched))
    return full_s, full_bytes, changes_s, rows, size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", default="1000000,10000000")
    parser.add_argument("--active", default="0.01,1")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    sizes = [20_000] if args.smoke else [int(text) for text in args.flows.split(",")]
    fractions = [float(text) for text in args.active.split(",")]
    measure(2_000, 0.5, 1 << 16)  # compile or load the kernels outside the timing
    print(
        f"{'flows':>11} {'active':>7} {'every flow':>22} {'changed flows only':>26} {'time':>8} {'bytes':>8}"
    )
    print(f"{'':>11} {'':>7} {'s':>9} {'MB':>12} {'s':>9} {'rows':>9} {'MB':>7} {'ratio':>8} {'ratio':>8}")
    for flows in sizes:
        for active in fractions:
            full_s, full_bytes, changes_s, rows, size = measure(flows, active, 1 << 20)
            print(
                f"{flows:11,} {active:7.0%} {full_s:9.3f} {full_bytes / 1e6:12.1f} {changes_s:9.3f} "
                f"{rows:9,} {size / 1e6:7.1f} {full_s / changes_s:7.1f}x {full_bytes / max(1, size):7.1f}x"
            )


if __name__ == "__main__":
    main()
