"""Random packet batches and a brute-force Python truth, shared by the engine tests."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import numpy as np

from netspectra.model.fields import KeyField
from netspectra.model.packets import PacketColumns


def random_batch(rng: np.random.Generator, count: int, *, hosts: int = 50, ports: int = 40) -> PacketColumns:
    """Packets over a small random population (IPv4 and IPv6) so flows repeat."""
    batch = PacketColumns.empty(count)
    pool = np.zeros((hosts, 16), np.uint8)
    v6 = rng.random(hosts) < 0.3
    pool[~v6, 10:12] = 0xFF
    pool[~v6, 12:] = rng.integers(0, 256, (int((~v6).sum()), 4))
    pool[v6] = rng.integers(0, 256, (int(v6.sum()), 16))
    pool[v6, 0] = 0x20
    src = rng.integers(0, hosts, count)
    dst = rng.integers(0, hosts, count)
    batch.src_ip[:] = pool[src]
    batch.dst_ip[:] = pool[dst]
    batch.ip_version[:] = np.where(v6[src], 6, 4)
    port_pool = rng.integers(0, 65536, ports).astype(np.uint16)
    batch.src_port[:] = port_pool[rng.integers(0, ports, count)]
    batch.dst_port[:] = port_pool[rng.integers(0, ports, count)]
    batch.protocol[:] = rng.choice(np.array([1, 6, 17, 58], np.uint8), count)
    batch.length[:] = rng.integers(42, 9000, count)
    batch.ts_ns[:] = rng.integers(1_600_000_000 * 10**9, 1_700_000_000 * 10**9, count)
    return batch


def _value(batch: PacketColumns, row: int, field: KeyField) -> str | int:
    if field is KeyField.SRC_IP or field is KeyField.DST_IP:
        raw = bytes(batch.src_ip[row] if field is KeyField.SRC_IP else batch.dst_ip[row])
        address = ipaddress.IPv6Address(raw)
        return str(address.ipv4_mapped) if address.ipv4_mapped else str(address)
    if field is KeyField.SRC_PORT:
        return int(batch.src_port[row])
    if field is KeyField.DST_PORT:
        return int(batch.dst_port[row])
    return int(batch.protocol[row])


def brute_force(batches: Sequence[PacketColumns], fields: Sequence[KeyField]) -> dict[tuple, list[int]]:
    """{key values: [packets, bytes, first_ns, last_ns]} by a plain Python loop over every packet."""
    truth: dict[tuple, list[int]] = {}
    for batch in batches:
        for row in range(len(batch)):
            key = tuple(_value(batch, row, field) for field in fields)
            ts = int(batch.ts_ns[row])
            size = int(batch.length[row])
            entry = truth.get(key)
            if entry is None:
                truth[key] = [1, size, ts, ts]
            else:
                entry[0] += 1
                entry[1] += size
                entry[2] = min(entry[2], ts)
                entry[3] = max(entry[3], ts)
    return truth
