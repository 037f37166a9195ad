"""An analysis's memory is flat in packets for a fixed set of flows: nothing keeps per-batch data.

The sketches are fixed-size by design and the exact tables grow with flows only, so eight times
the packets over the same flows must peak at the same traced memory. tracemalloc sees every numpy
array Python allocates (tables, sketch cells, candidate lists, batches, key lists); arrays a numba
kernel allocates are outside its view, and bench/cost_growth.py measures the process's RSS.
"""

from __future__ import annotations

import asyncio
import tracemalloc
from pathlib import Path

import yaml

from netspectra.app import analyze_capture
from netspectra.config import Settings
from netspectra.synth.traffic import TrafficSpec, write_trace

DEFAULT_CONFIG = Path(__file__).resolve().parents[2] / "netspectra" / "default_config.yaml"


def traced_peak(trace: Path, settings: Settings) -> tuple[int, int]:
    """(peak traced bytes of one analysis, packets it counted in the first exact task)."""
    tracemalloc.start()
    try:
        result = asyncio.run(analyze_capture(trace, settings, batch_size=8192))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak, int(result.flow_tables()[0].packets.sum())


def test_eight_times_the_packets_over_the_same_flows_peaks_at_the_same_memory(tmp_path: Path) -> None:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())  # 6 exact + 3 sketch tasks, as shipped
    for group in ("exact", "sketch"):
        raw["aggregator"][group]["writers"] = []
    settings = Settings.model_validate(raw)
    small, large = tmp_path / "small.pcap", tmp_path / "large.pcap"
    write_trace(small, TrafficSpec(packets=100_000, flows=2_000, seed=3))
    write_trace(large, TrafficSpec(packets=800_000, flows=2_000, seed=3))
    traced_peak(small, settings)  # kernels loaded and first-use caches filled outside the measure
    small_peak, small_packets = traced_peak(small, settings)
    large_peak, large_packets = traced_peak(large, settings)
    assert large_packets > 7 * small_packets  # the large run did count eight times the packets
    # ~56 MiB each when written; 800 k packets of keys kept would add tens of MiB
    assert large_peak < small_peak * 1.05 + (1 << 20), (small_peak, large_peak)
