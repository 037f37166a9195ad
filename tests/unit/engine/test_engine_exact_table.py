"""The exact flow table against a brute-force Python dict on random packets (incl. growth)."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from netspectra.config.models import ExactTaskConfig
from netspectra.engine.exact import ExactGroup
from netspectra.model.fields import FIELD_ORDER, KeyField
from netspectra.model.snapshot import FlowTable
from tests.unit.engine.engine_helpers import brute_force, random_batch

K = KeyField


def table_as_dict(table: FlowTable) -> dict[tuple, list[int]]:
    """Decode a FlowTable with the standard library only (independent of the engine's code)."""
    result: dict[tuple, list[int]] = {}
    for row in range(len(table)):
        key = []
        for field in table.key_fields:
            if field in (K.SRC_IP, K.DST_IP):
                raw = bytes((table.src_ip if field is K.SRC_IP else table.dst_ip)[row])
                address = ipaddress.IPv6Address(raw)
                key.append(str(address.ipv4_mapped) if address.ipv4_mapped else str(address))
            else:
                column = {K.SRC_PORT: table.src_port, K.DST_PORT: table.dst_port, K.PROTOCOL: table.protocol}
                key.append(int(column[field][row]))
        assert tuple(key) not in result, "a flow appears twice"
        result[tuple(key)] = [
            int(table.packets[row]),
            int(table.bytes[row]),
            int(table.first_seen_ns[row]),
            int(table.last_seen_ns[row]),
        ]
    return result


TASKS = [
    ("src", (K.SRC_IP,)),
    ("dport", (K.DST_PORT,)),
    ("proto", (K.PROTOCOL,)),
    ("sport", (K.SRC_PORT,)),
    ("proto_sport", (K.PROTOCOL, K.SRC_PORT)),
    ("dst_src", (K.DST_IP, K.SRC_IP)),
    ("five", FIELD_ORDER),
    ("five_shuffled", (K.PROTOCOL, K.DST_PORT, K.SRC_IP, K.SRC_PORT, K.DST_IP)),
]


@pytest.mark.parametrize("hosts,ports", [(20, 10), (400, 3000)])
def test_every_task_equals_brute_force(hosts: int, ports: int) -> None:
    rng = np.random.default_rng(hosts)
    group = ExactGroup([ExactTaskConfig(name=name, key_fields=fields) for name, fields in TASKS])
    # Start tiny so the five-tuple task grows (rows and index) many times mid-batch.
    batches = [random_batch(rng, size, hosts=hosts, ports=ports) for size in (1, 5000, 20000, 7)]
    for batch in batches:
        group.insert(batch)
    snapshot = group.snapshot(taken_at_ns=5, period_start_ns=1)
    assert [t.task for t in snapshot.flows] == [name for name, _ in TASKS]
    for (name, fields), table in zip(TASKS, snapshot.flows, strict=True):
        assert table.key_fields == fields
        truth = brute_force(batches, fields)
        assert table_as_dict(table) == truth, name
    five = snapshot.flows[6]
    assert len(five) > 10_000  # growth really happened (initial capacity is 1024 rows)


def test_fields_outside_the_key_are_zero() -> None:
    rng = np.random.default_rng(3)
    group = ExactGroup([ExactTaskConfig(name="sport", key_fields=(K.SRC_PORT,))])
    group.insert(random_batch(rng, 1000))
    table = group.snapshot(0, 0).flows[0]
    assert not table.src_ip.any() and not table.dst_ip.any()
    assert not table.dst_port.any() and not table.protocol.any()


def test_snapshot_is_a_copy_and_reset_forgets() -> None:
    rng = np.random.default_rng(4)
    group = ExactGroup([ExactTaskConfig(name="five", key_fields=FIELD_ORDER)])
    first, second = random_batch(rng, 3000, hosts=300), random_batch(rng, 3000, hosts=300)
    group.insert(first)
    before = group.snapshot(0, 0).flows[0]
    frozen = table_as_dict(before)
    group.insert(second)
    assert table_as_dict(before) == frozen == brute_force([first], FIELD_ORDER)
    assert table_as_dict(group.snapshot(0, 0).flows[0]) == brute_force([first, second], FIELD_ORDER)
    group.reset()
    assert len(group.snapshot(0, 0).flows[0]) == 0
    group.insert(second)
    assert table_as_dict(group.snapshot(0, 0).flows[0]) == brute_force([second], FIELD_ORDER)


def test_negative_and_equal_timestamps() -> None:
    rng = np.random.default_rng(5)
    batch = random_batch(rng, 2000, hosts=5, ports=2)
    batch.ts_ns[:] = rng.integers(-(10**12), 10**12, len(batch))
    group = ExactGroup(
        [
            ExactTaskConfig(name="src", key_fields=(K.SRC_IP,)),
            ExactTaskConfig(name="dport", key_fields=(K.DST_PORT,)),
        ]
    )
    group.insert(batch)
    hashed, direct = group.snapshot(0, 0).flows
    assert table_as_dict(hashed) == brute_force([batch], (K.SRC_IP,))
    assert table_as_dict(direct) == brute_force([batch], (K.DST_PORT,))
