"""Seeded Zipf traffic with planted spreaders, and brute-force truth, for the sketch tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass
class ZipfTrace:
    flow_keys: npt.NDArray[np.uint8]  # (packets, width): key of each packet
    element_keys: npt.NDArray[np.uint8]
    sizes: npt.NDArray[np.uint64]
    universe: npt.NDArray[np.uint8]  # (flows, width): key of each flow id
    flow_ids: npt.NDArray[np.int64]


def zipf_trace(packets: int, flows: int, alpha: float, seed: int, key_width: int = 16) -> ZipfTrace:
    """Packets of ``flows`` distinct random keys drawn Zipf(alpha); per-flow mean sizes 64..1500."""
    rng = np.random.default_rng(seed)
    weights = np.arange(1, flows + 1, dtype=np.float64) ** -alpha
    flow_ids = rng.choice(flows, size=packets, p=weights / weights.sum())
    universe = np.unique(rng.integers(0, 256, size=(flows * 2, key_width), dtype=np.uint8), axis=0)
    universe = universe[rng.permutation(universe.shape[0])[:flows]]
    mean_size = rng.integers(64, 1500, size=flows)
    jitter = rng.integers(-40, 41, size=packets)
    sizes = np.clip(mean_size[flow_ids] + jitter, 40, 1514).astype(np.uint64)
    elements = rng.integers(0, 256, size=(packets, 16), dtype=np.uint8)
    return ZipfTrace(universe[flow_ids], elements, sizes, universe, flow_ids)


def exact_totals(trace: ZipfTrace) -> tuple[dict[bytes, int], dict[bytes, int]]:
    """Packets and bytes per flow key, counted one packet at a time in plain Python."""
    counts: dict[bytes, int] = {}
    volume: dict[bytes, int] = {}
    for key, size in zip(trace.flow_keys, trace.sizes.tolist(), strict=True):
        raw = key.tobytes()
        counts[raw] = counts.get(raw, 0) + 1
        volume[raw] = volume.get(raw, 0) + size
    return counts, volume


def f1_and_are(reported: dict[bytes, int], truth: dict[bytes, int], threshold: int) -> tuple[float, float]:
    """F1 of reported vs true heavy hitters and the mean relative error over the true positives."""
    heavy = {key for key, value in truth.items() if value >= threshold}
    hits = heavy & reported.keys()
    precision = len(hits) / len(reported) if reported else 0.0
    recall = len(hits) / len(heavy) if heavy else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    are = sum(abs(reported[key] - truth[key]) / truth[key] for key in hits) / max(len(hits), 1)
    return f1, are
