"""Shared by the storage/API tests: random packets, their brute-force truth, snapshots built from it.

Truth is computed with plain Python dicts over the packet list; the code under test only ever
sees the snapshots (as the engine would hand them over) and answers through SQL and gRPC.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

import numpy as np

from netspectra.model.fields import FIELD_ORDER, KeyField
from netspectra.model.snapshot import FlowTable, HeavyHitter, HitterKind, SketchResult, Snapshot

T0 = 1_700_000_100  # first snapshot (epoch seconds)
T1 = 1_700_000_160  # second snapshot
EXACT_TASKS: dict[str, tuple[KeyField, ...]] = {
    "per_src_ip": (KeyField.SRC_IP,),
    "per_dst_port": (KeyField.DST_PORT,),
    "five_tuple": FIELD_ORDER,
}
SKETCH_TASKS = {"cm_src": "count_min", "ss_dst": "super_spread"}


@dataclass(frozen=True)
class Packet:
    ts_ns: int
    src: str
    dst: str
    sport: int
    dport: int
    proto: int
    length: int

    def value(self, field: KeyField) -> str | int:
        return {
            KeyField.SRC_IP: self.src,
            KeyField.DST_IP: self.dst,
            KeyField.SRC_PORT: self.sport,
            KeyField.DST_PORT: self.dport,
            KeyField.PROTOCOL: self.proto,
        }[field]


def make_packets(seed: int = 7, count: int = 3000) -> list[Packet]:
    rng = random.Random(seed)
    sources = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{i}" for i in range(40)] + ["2001:db8::1"]
    targets = [f"192.168.{i}.{rng.randrange(1, 255)}" for i in range(25)]
    packets = []
    for i in range(count):
        # first half before T0, second half in [T0, T1)
        base = (T0 - 100) if i < count // 2 else T0
        ts = base * 10**9 + rng.randrange(0, 59 * 10**9)
        packets.append(
            Packet(
                ts,
                rng.choice(sources[:10]) if rng.random() < 0.5 else rng.choice(sources),
                rng.choice(targets),
                rng.randrange(1024, 65536),
                rng.choice([53, 80, 443, 8080]),
                rng.choice([6, 17]),
                rng.randrange(60, 1500),
            )
        )
    return packets


def flows_of(packets: list[Packet], fields: tuple[KeyField, ...]) -> dict[tuple, list[int]]:
    """key → [packets, bytes, first_ns, last_ns]."""
    table: dict[tuple, list[int]] = {}
    for p in packets:
        key = tuple(p.value(f) for f in fields)
        entry = table.setdefault(key, [0, 0, p.ts_ns, p.ts_ns])
        entry[0] += 1
        entry[1] += p.length
        entry[2] = min(entry[2], p.ts_ns)
        entry[3] = max(entry[3], p.ts_ns)
    return table


def _ip16(text: str) -> bytes:
    address = ipaddress.ip_address(text)
    return (bytes(10) + b"\xff\xff" + address.packed) if address.version == 4 else address.packed


def flow_table(task: str, fields: tuple[KeyField, ...], packets: list[Packet]) -> FlowTable:
    flows = flows_of(packets, fields)
    n = len(flows)
    columns: dict[KeyField, list] = {f: [] for f in FIELD_ORDER}
    stats = []
    for key, entry in flows.items():
        values = dict(zip(fields, key, strict=True))
        for f in FIELD_ORDER:
            columns[f].append(values.get(f, "::" if f in (KeyField.SRC_IP, KeyField.DST_IP) else 0))
        stats.append(entry)
    ips = {
        f: np.frombuffer(b"".join(_ip16(t) for t in columns[f]), np.uint8).reshape(n, 16)
        for f in (KeyField.SRC_IP, KeyField.DST_IP)
    }
    s = np.array(stats, dtype=np.int64).reshape(n, 4)
    return FlowTable(
        task,
        fields,
        ips[KeyField.SRC_IP],
        ips[KeyField.DST_IP],
        np.array(columns[KeyField.SRC_PORT], np.uint16),
        np.array(columns[KeyField.DST_PORT], np.uint16),
        np.array(columns[KeyField.PROTOCOL], np.uint8),
        s[:, 0].astype(np.uint64),
        s[:, 1].astype(np.uint64),
        s[:, 2],
        s[:, 3],
    )


def hitters_truth(packets: list[Packet]) -> dict[HitterKind, dict[str, int]]:
    """Exact per-source counts and sizes, and distinct destinations per source (as if sketches were exact)."""
    count: dict[str, int] = {}
    size: dict[str, int] = {}
    spread: dict[str, set[str]] = {}
    for p in packets:
        count[p.src] = count.get(p.src, 0) + 1
        size[p.src] = size.get(p.src, 0) + p.length
        spread.setdefault(p.dst, set()).add(p.src)
    return {
        HitterKind.COUNT: count,
        HitterKind.SIZE: size,
        HitterKind.SPREAD: {dst: len(srcs) for dst, srcs in spread.items()},
    }


def snapshots(packets: list[Packet]) -> tuple[Snapshot, Snapshot, Snapshot, Snapshot]:
    """(exact@T0, exact@T1, sketch@T0, sketch@T1): cumulative within one period, as the engine sends."""
    first = [p for p in packets if p.ts_ns < T0 * 10**9]
    out = []
    for at, subset in ((T0, first), (T1, packets)):
        tables = tuple(flow_table(task, fields, subset) for task, fields in EXACT_TASKS.items())
        out.append(Snapshot("exact", at * 10**9, (T0 - 100) * 10**9, flows=tables))
    for at, subset in ((T0, first), (T1, packets)):
        truth = hitters_truth(subset)
        cm = tuple(
            HeavyHitter(flow, value, kind)
            for kind in (HitterKind.COUNT, HitterKind.SIZE)
            for flow, value in truth[kind].items()
        )
        ss = tuple(
            HeavyHitter(flow, value, HitterKind.SPREAD) for flow, value in truth[HitterKind.SPREAD].items()
        )
        out.append(
            Snapshot(
                "sketch",
                at * 10**9,
                (T0 - 100) * 10**9,
                sketches=(
                    SketchResult("cm_src", "count_min", cm),
                    SketchResult("ss_dst", "super_spread", ss),
                ),
            )
        )
    return out[0], out[1], out[2], out[3]
