"""The weighted entry point of the exact tables (flow records) against a brute-force dict."""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.config.models import ExactTaskConfig
from netspectra.engine.exact import ExactGroup
from netspectra.model.fields import FIELD_ORDER, KeyField
from netspectra.model.flows import FlowColumns
from tests.unit.engine.test_engine_exact_table import table_as_dict

K = KeyField


def random_flows(n: int, seed: int) -> FlowColumns:
    rng = np.random.default_rng(seed)
    flows = FlowColumns.empty(n)
    flows.src_ip[:] = 0
    flows.dst_ip[:] = 0
    flows.src_ip[:, 10:12] = 0xFF
    flows.dst_ip[:, 10:12] = 0xFF
    flows.src_ip[:, 15] = rng.integers(0, 40, n)
    flows.dst_ip[:, 15] = rng.integers(0, 40, n)
    flows.src_port[:] = rng.integers(0, 5, n)
    flows.dst_port[:] = rng.integers(0, 5, n)
    flows.protocol[:] = rng.choice([6, 17], n)
    flows.ip_version[:] = 4
    flows.first_ns[:] = rng.integers(1, 10**12, n)
    flows.last_ns[:] = flows.first_ns + rng.integers(0, 10**9, n)
    flows.raw_packets[:] = rng.integers(1, 1000, n)
    flows.raw_bytes[:] = flows.raw_packets * rng.integers(40, 1500, n).astype(np.uint64)
    flows.sampling_rate[:] = rng.choice([1, 100, 2048], n)
    flows.packets[:] = flows.raw_packets * flows.sampling_rate
    flows.bytes[:] = flows.raw_bytes * flows.sampling_rate
    flows.exporter[:] = 0
    return flows


def truth(flows: FlowColumns, fields: tuple[KeyField, ...]) -> dict[tuple, list[int]]:
    result: dict[tuple, list[int]] = {}
    for i in range(len(flows)):
        key = []
        for field in fields:
            if field is K.SRC_IP:
                key.append(f"0.0.0.{flows.src_ip[i, 15]}")
            elif field is K.DST_IP:
                key.append(f"0.0.0.{flows.dst_ip[i, 15]}")
            else:
                column = {K.SRC_PORT: flows.src_port, K.DST_PORT: flows.dst_port, K.PROTOCOL: flows.protocol}
                key.append(int(column[field][i]))
        row = result.setdefault(tuple(key), [0, 0, 2**63, -1])
        row[0] += int(flows.packets[i])
        row[1] += int(flows.bytes[i])
        row[2] = min(row[2], int(flows.first_ns[i]))
        row[3] = max(row[3], int(flows.last_ns[i]))
    return result


@pytest.mark.parametrize(
    "fields", [FIELD_ORDER, (K.SRC_IP,), (K.DST_PORT,), (K.PROTOCOL,), (K.SRC_IP, K.DST_PORT)], ids=str
)
def test_weighted_records_add_their_packets_and_bytes(fields: tuple[KeyField, ...]) -> None:
    group = ExactGroup([ExactTaskConfig(name="t", key_fields=list(fields))])
    batches = [random_flows(3000, seed) for seed in range(3)]  # enough flows to grow the table
    for batch in batches:
        for _label, job in group.insert_flow_jobs(batch):
            job()
    (table,) = group.snapshot(0, 0).flows
    assert table_as_dict(table) == truth(FlowColumns.concat(batches), fields)
