"""Per-exporter raw and renormalised totals (the raw values the engine's tables do not keep).

Against a brute-force dict over the same records, for a batch from one exporter (the fast path)
and for batches mixing many (the group-by), with values past 2**53 where a float sum would lose.
"""

from __future__ import annotations

import numpy as np
import pytest

from netspectra.capture.flows.collector import WEIGHT_TOTALS, tally_weights
from netspectra.capture.flows.datagrams import ExporterTally, address_text
from netspectra.model.flows import FlowColumns


def _flows(exporters: list[bytes], seed: int) -> FlowColumns:
    rng = np.random.default_rng(seed)
    n = len(exporters)
    flows = FlowColumns.empty(n)
    flows.raw_packets[:] = rng.integers(1, 1000, n)
    # a batch sum past 2**53, where float64 would round, and within uint64 (as real byte counts are)
    flows.raw_bytes[:] = rng.integers(2**44, 2**45, n, dtype=np.uint64)
    flows.sampling_rate[:] = rng.choice([1, 10, 100], n)
    flows.packets[:] = flows.raw_packets * flows.sampling_rate
    flows.bytes[:] = flows.raw_bytes * flows.sampling_rate.astype(np.uint64)
    flows.exporter[:] = np.frombuffer(b"".join(exporters), np.uint8).reshape(n, 16)
    return flows


def _brute(flows: FlowColumns) -> dict[str, dict[str, int]]:
    want: dict[str, dict[str, int]] = {}
    for i in range(len(flows)):
        row = want.setdefault(address_text(flows.exporter[i].tobytes()), dict.fromkeys(WEIGHT_TOTALS, 0))
        for name in WEIGHT_TOTALS:
            row[name] += int(getattr(flows, name)[i])
    return want


@pytest.mark.parametrize("distinct", [1, 2, 7])
def test_totals_per_exporter_equal_a_brute_force_sum(distinct: int) -> None:
    addresses = [bytes(10) + b"\xff\xff" + bytes([192, 0, 2, k]) for k in range(distinct - 1)]
    addresses.append(bytes.fromhex("20010db8000000000000000000000001"))  # an IPv6 exporter
    rng = np.random.default_rng(distinct)
    tally = ExporterTally()
    want: dict[str, dict[str, int]] = {}
    for seed in range(3):  # several batches add up
        flows = _flows([addresses[int(k)] for k in rng.integers(0, distinct, 500)], seed)
        tally_weights(tally, flows)
        for exporter, row in _brute(flows).items():
            total = want.setdefault(exporter, dict.fromkeys(WEIGHT_TOTALS, 0))
            for name, value in row.items():
                total[name] += value
    assert tally.as_dict() == want


def test_an_empty_batch_adds_nothing() -> None:
    tally = ExporterTally()
    tally_weights(tally, FlowColumns.empty(0))
    assert tally.as_dict() == {}
