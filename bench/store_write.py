"""Writer cost of one snapshot: rows building and the embedded (chdb) insert, before and after.

    python bench/store_write.py [--flows 1000000] [--ipv6 0.1] [--repeat 3] [--smoke]

Builds a snapshot of ``flows`` five-tuple flows over 50 000 source and destination addresses
(``--ipv6`` of them IPv6), then times, best of ``--repeat``:

* address text for one 16-byte column: per row with ``ipaddress`` (baseline), np.unique on the
  rows then a mapped take of the unique texts, and the numba kernel writing an Arrow buffer;
* rows building: the previous per-row Python lists (baseline, copied here) and snapshot_rows;
* the embedded insert into flow_metrics: the previous pandas frame built from lists (baseline)
  and the Arrow stream file read by file(), each into the real schema (whose materialized view also fills
  flow_latest) and into a schema without that view (the insert alone).

``--smoke``: 20 000 flows, one pass each, in seconds (CI runs it so the bench cannot rot).
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netspectra.model.fields import KeyField, address_text
from netspectra.model.packets import IPV4_MAPPED_PREFIX
from netspectra.model.snapshot import FlowTable, Snapshot
from netspectra.storage.embedded import EmbeddedBackend
from netspectra.storage.rows import addresses_arrow, snapshot_rows
from netspectra.storage.sql import FLOW_COLUMNS, TABLE_COLUMNS, ensure_schema

_MAPPED = np.frombuffer(IPV4_MAPPED_PREFIX, np.uint8)


def addresses(rng: np.random.Generator, count: int, distinct: int, ipv6_share: float) -> np.ndarray:
    pool = np.zeros((distinct, 16), np.uint8)
    pool[:, :12] = _MAPPED
    pool[:, 12:] = rng.integers(0, 256, (distinct, 4))
    v6 = rng.random(distinct) < ipv6_share
    pool[v6] = rng.integers(0, 256, (int(v6.sum()), 16))
    pool[v6, 0:4] = (0x20, 0x01, 0x0D, 0xB8)
    pool[v6, 4:10] = 0  # a zero run, so the compression path is exercised
    return pool[rng.integers(0, distinct, count)]


def snapshot(count: int, ipv6_share: float) -> Snapshot:
    rng = np.random.default_rng(7)
    table = FlowTable(
        "five_tuple",
        tuple(KeyField),
        addresses(rng, count, 50_000, ipv6_share),
        addresses(rng, count, 50_000, ipv6_share),
        rng.integers(0, 65536, count).astype(np.uint16),
        rng.integers(0, 65536, count).astype(np.uint16),
        rng.choice(np.array([6, 17], np.uint8), count),
        rng.integers(1, 1000, count).astype(np.uint64),
        rng.integers(60, 1_000_000, count).astype(np.uint64),
        np.full(count, 1_700_000_000 * 10**9, np.int64),
        np.full(count, 1_700_000_060 * 10**9, np.int64),
    )
    return Snapshot("exact", 1_700_000_060 * 10**9, 0, (table,))


# --- the previous implementation (per-row lists, pandas), kept as the baseline ----------------------
def text_per_row(raw: np.ndarray) -> list[str]:
    mapped = np.all(raw[:, :12] == _MAPPED, axis=1)
    return [
        f"{r[12]}.{r[13]}.{r[14]}.{r[15]}" if v4 else address_text(r)
        for r, v4 in zip(raw, mapped.tolist(), strict=True)
    ]


def text_unique(raw: np.ndarray) -> list[str]:
    rows = np.ascontiguousarray(raw).view(np.dtype((np.void, 16))).ravel()
    unique, inverse = np.unique(rows, return_inverse=True)
    texts = np.array([str(ipaddress.IPv6Address(bytes(u))) for u in unique], dtype=object)
    texts[[bytes(u)[:12] == IPV4_MAPPED_PREFIX for u in unique]] = [
        str(ipaddress.IPv4Address(bytes(u)[12:])) for u in unique if bytes(u)[:12] == IPV4_MAPPED_PREFIX
    ]
    return texts[inverse].tolist()  # type: ignore[no-any-return]


def rows_before(snap: Snapshot) -> dict[str, list[Any]]:
    (table,) = snap.flows
    n, seconds = len(table), snap.taken_at_ns // 10**9
    return {
        "Timestamp": [seconds] * n,
        "TaskName": [table.task] * n,
        "SrcIP": text_per_row(table.src_ip),
        "DstIP": text_per_row(table.dst_ip),
        "SrcPort": table.src_port.tolist(),
        "DstPort": table.dst_port.tolist(),
        "Protocol": table.protocol.tolist(),
        "StartTime": (table.first_seen_ns // 10**9).tolist(),
        "EndTime": (table.last_seen_ns // 10**9).tolist(),
        "ByteCount": table.bytes.tolist(),
        "PacketCount": table.packets.tolist(),
        "EngineId": [""] * n,
    }


_DTYPES = {"Timestamp": "uint32", "StartTime": "uint32", "EndTime": "uint32", "SrcPort": "UInt16"}
_DTYPES |= {"DstPort": "UInt16", "Protocol": "UInt8", "ByteCount": "uint64", "PacketCount": "uint64"}


def insert_before(backend: EmbeddedBackend, columns: dict[str, list[Any]]) -> None:
    import pandas as pd

    frame = pd.DataFrame(  # noqa: F841 - read by chdb's Python()
        {
            name: pd.array(columns[name], dtype=_DTYPES[name])
            if name in _DTYPES
            else pd.Series(columns[name], dtype=object)
            for name in FLOW_COLUMNS
        }
    )
    listed = ", ".join(TABLE_COLUMNS["flow_metrics"])
    backend._open().query(f"INSERT INTO flow_metrics ({listed}) SELECT {listed} FROM Python(frame)")  # noqa: S608


def best(repeat: int, run: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--ipv6", type=float, default=0.1, help="share of IPv6 addresses")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="20 000 flows, one pass: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.flows, args.repeat = 20_000, 1
    snap = snapshot(args.flows, args.ipv6)
    raw = snap.flows[0].src_ip
    addresses_arrow(raw[:10])  # load the kernel from numba's cache before timing
    print(f"{args.flows:,} flows, {args.ipv6:.0%} IPv6, best of {args.repeat}")

    assert (
        text_per_row(raw[:20_000]) == addresses_arrow(raw[:20_000]).to_pylist() == text_unique(raw[:20_000])
    )
    base = best(args.repeat, lambda: text_per_row(raw))
    print(f"address text, one column: per row {base:.3f} s (1.00x)")
    for name, run in (("np.unique + map", text_unique), ("numba -> Arrow", addresses_arrow)):
        took = best(args.repeat, lambda run=run: run(raw))
        print(f"address text, one column: {name} {took:.3f} s ({base / took:.1f}x faster)")

    base = best(args.repeat, lambda: rows_before(snap))
    after = best(args.repeat, lambda: snapshot_rows(snap))
    print(f"rows building: lists {base:.3f} s, Arrow {after:.3f} s ({base / after:.1f}x faster)")

    lists, arrow = rows_before(snap), snapshot_rows(snap).flows

    async def inserts(with_view: bool) -> tuple[float, float]:
        backend = EmbeddedBackend(tempfile.mkdtemp(prefix="store-write-") + "/db")
        await ensure_schema(backend)
        if not with_view:
            await backend.execute("DROP VIEW flow_latest_mv")
        started = time.perf_counter()
        await backend._call(insert_before, backend, lists)
        before = time.perf_counter() - started
        started = time.perf_counter()
        await backend.insert("flow_metrics", arrow)
        after = time.perf_counter() - started
        await backend.close()
        return before, after

    for with_view in (True, False):
        before, after = asyncio.run(inserts(with_view))
        label = "with flow_latest view" if with_view else "flow_metrics alone   "
        print(
            f"embedded insert {label}: pandas {before:.3f} s, Arrow {after:.3f} s"
            f" ({before / after:.1f}x faster)"
        )


if __name__ == "__main__":
    main()
