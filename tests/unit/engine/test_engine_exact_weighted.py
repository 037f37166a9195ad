"""The weighted entry point of the exact tables (flow records) against a brute-force dict."""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.config.models import ExactTaskConfig
from netspectra.engine.exact import ExactGroup
from netspectra.model.fields import FIELD_ORDER, KeyField
from netspectra.model.flows import FlowColumns
from netspectra.model.snapshot import FlowTable
from tests.unit.engine.engine_helpers import brute_force, random_batch
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


def truth(flows: FlowColumns, fields: tuple[KeyField, ...], *, raw: bool = False) -> dict[tuple, list[int]]:
    """Per key: packets, bytes, first, last (and, with ``raw``, the raw packets and bytes)."""
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
        row = result.setdefault(tuple(key), [0, 0, 2**63, -1] + [0, 0] * raw)
        row[0] += int(flows.packets[i])
        row[1] += int(flows.bytes[i])
        row[2] = min(row[2], int(flows.first_ns[i]))
        row[3] = max(row[3], int(flows.last_ns[i]))
        if raw:
            row[4] += int(flows.raw_packets[i])
            row[5] += int(flows.raw_bytes[i])
    return result


def with_raw(table: FlowTable) -> dict[tuple, list[int]]:
    """table_as_dict plus each flow's raw packets and bytes (the counts when none were kept)."""
    raw_packets, raw_bytes = table.raw_or_counted()
    result = table_as_dict(table)
    for row, values in enumerate(result.values()):  # table_as_dict keeps the table's row order
        values.extend((int(raw_packets[row]), int(raw_bytes[row])))
    return result


def feed(group: ExactGroup, flows: FlowColumns) -> None:
    for _label, job in group.insert_flow_jobs(flows):
        job()


ALL_KINDS = [FIELD_ORDER, (K.SRC_IP,), (K.DST_PORT,), (K.PROTOCOL,), (K.SRC_IP, K.DST_PORT)]


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


@pytest.mark.parametrize("fields", ALL_KINDS, ids=str)
def test_raw_sums_are_kept_beside_the_renormalised_ones(fields: tuple[KeyField, ...]) -> None:
    """Records of one flow come with different rates (1, 100, 2048): the raw sums are exact."""
    group = ExactGroup([ExactTaskConfig(name="t", key_fields=list(fields))])
    batches = [random_flows(3000, seed) for seed in range(3)]
    for batch in batches:
        feed(group, batch)
    (table,) = group.snapshot(0, 0).flows
    assert table.sampled
    expected = truth(FlowColumns.concat(batches), fields, raw=True)
    assert with_raw(table) == expected
    assert any(values[0] != values[4] for values in expected.values())  # the test can fail


@pytest.mark.parametrize("fields", ALL_KINDS, ids=str)
def test_packets_and_records_in_one_table(fields: tuple[KeyField, ...]) -> None:
    """Captured packets are unsampled (raw = counted), before and after the first flow record."""
    rng = np.random.default_rng(7)
    before, after = random_flows(2000, 21).as_packets(), random_flows(2000, 22).as_packets()
    for packets in (before, after):  # packets over the same keys as the records
        packets.length[:] = rng.integers(42, 1500, len(packets))
    records = random_flows(3000, 11)
    group = ExactGroup([ExactTaskConfig(name="t", key_fields=list(fields))])
    group.insert(before)
    (unsampled,) = group.snapshot(0, 0).flows
    assert not unsampled.sampled
    feed(group, records)
    group.insert(after)
    (table,) = group.snapshot(0, 0).flows
    expected = truth(records, fields, raw=True)
    for key, (count, size, first, last) in brute_force([before, after], fields).items():
        row = expected.setdefault(key, [0, 0, 2**63, -1, 0, 0])
        row[0] += count
        row[1] += size
        row[2], row[3] = min(row[2], first), max(row[3], last)
        row[4] += count  # a captured packet is unsampled: raw = counted
        row[5] += size
    assert with_raw(table) == expected


@pytest.mark.parametrize("fields", ALL_KINDS, ids=str)
def test_change_snapshots_carry_the_flows_records_changed(fields: tuple[KeyField, ...]) -> None:
    """Flow records stamp the change epoch as packets do: a change snapshot holds exactly the flows
    a batch touched, with their cumulative raw and renormalised counts (the weighted kernels once
    left the epoch unset: garbage for new hashed rows, never updated for direct ones)."""
    group = ExactGroup([ExactTaskConfig(name="t", key_fields=list(fields))])
    first, second = random_flows(3000, 1), random_flows(40, 2)
    feed(group, first)
    taken = group.snapshot_changes(0, 0, 0)
    feed(group, second)
    (changed,) = group.snapshot_changes(0, 0, taken.epoch + 1).flows
    everything = truth(FlowColumns.concat([first, second]), fields, raw=True)
    touched = truth(second, fields)
    assert with_raw(changed) == {key: everything[key] for key in touched}


def test_a_reset_forgets_the_raw_values_and_packet_tasks_keep_none() -> None:
    group = ExactGroup([ExactTaskConfig(name="five", key_fields=list(FIELD_ORDER)),
                        ExactTaskConfig(name="dport", key_fields=[K.DST_PORT])])  # fmt: skip
    packets = random_batch(np.random.default_rng(3), 500)
    group.insert(packets)
    size = group.nbytes
    assert not any(table.sampled for table in group.snapshot(0, 0).flows)
    feed(group, random_flows(100, 4))
    assert all(table.sampled for table in group.snapshot(0, 0).flows)
    assert group.nbytes > size
    group.reset()
    group.insert(packets)
    assert not any(table.sampled for table in group.snapshot(0, 0).flows)
    assert group.nbytes == size
