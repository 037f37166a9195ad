"""Counting on several kernel threads (lanes) gives exactly the serial result, against brute force."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from netspectra.config.models import ExactTaskConfig, SketchTaskConfig
from netspectra.engine.engine import Engine
from netspectra.engine.exact.group import ExactGroup
from netspectra.engine.lanes import KernelLanes
from netspectra.engine.sketch.group import SketchGroup
from netspectra.model.fields import KeyField as K
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import HitterKind
from tests.unit.engine.engine_helpers import brute_force, random_batch
from tests.unit.engine.test_engine_exact_table import table_as_dict

EXACT = [
    ("src", (K.SRC_IP,)),
    ("dport", (K.DST_PORT,)),
    ("proto", (K.PROTOCOL,)),
    ("five", (K.SRC_IP, K.DST_IP, K.SRC_PORT, K.DST_PORT, K.PROTOCOL)),
]


def sources_by_packets(batches: list[PacketColumns]) -> dict[str, int]:
    """Packets per source address, by a plain Python loop (IPv4 dotted, IPv6 compressed)."""
    return {key[0]: value[0] for key, value in brute_force(batches, (K.SRC_IP,)).items()}


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_lanes_equal_brute_force(threads: int) -> None:
    rng = np.random.default_rng(threads)
    batches = [random_batch(rng, size, hosts=30, ports=200) for size in (3000, 1, 5000, 2500, 4096, 700) * 3]
    exact = ExactGroup([ExactTaskConfig(name=name, key_fields=fields) for name, fields in EXACT])
    # 30 sources in 2^16 buckets: no collisions, so count_min's estimates are the exact counts.
    sketch = SketchGroup(
        [
            SketchTaskConfig(
                name="cm_src",
                algorithm="count_min",
                flow_fields=(K.SRC_IP,),
                element_fields=(K.DST_IP, K.DST_PORT),
                width=65536,
                depth=2,
                count_thereshold=1,
                size_thereshold=1,
            )
        ]
    )
    engine = Engine({"exact": exact, "sketch": sketch}, kernel_threads=threads)
    for batch in batches:
        engine.ingest_sync(batch)
    snapshots = engine.snapshot_all_sync()  # waits for the lanes
    for (name, fields), table in zip(EXACT, snapshots["exact"].flows, strict=True):
        assert table_as_dict(table) == brute_force(batches, fields), name
    (result,) = snapshots["sketch"].sketches
    counts = {hitter.flow: hitter.value for hitter in result.hitters if hitter.kind is HitterKind.COUNT}
    assert counts == sources_by_packets(batches)
    assert engine.stats.packets == sum(len(b) for b in batches)


class _FailingGroup:
    """A group whose second batch raises (a buggy third-party group)."""

    name = "failing"
    task_names = ("f",)

    def __init__(self) -> None:
        self.calls = 0

    def insert(self, batch: PacketColumns) -> None:
        self.calls += 1
        if self.calls == 2:
            raise RuntimeError("kernel bug (test)")

    def snapshot(self, taken_at_ns: int, period_start_ns: int):  # type: ignore[no-untyped-def]
        raise NotImplementedError

    def reset(self) -> None:
        pass


def test_a_failing_job_is_raised_by_the_next_ingest() -> None:
    rng = np.random.default_rng(5)
    failing = _FailingGroup()
    exact = ExactGroup([ExactTaskConfig(name="src", key_fields=(K.SRC_IP,))])
    engine = Engine({"failing": failing, "exact": exact}, kernel_threads=2)
    first, second, third = (random_batch(rng, 1000) for _ in range(3))
    engine.ingest_sync(first)
    engine.ingest_sync(second)  # queued; raises in its lane
    snapshot = engine._snapshot_groups(["exact"], 0, False)["exact"]  # waits, logs the error
    assert table_as_dict(snapshot.flows[0]) == brute_force([first, second], (K.SRC_IP,))
    engine.ingest_sync(third)  # the error was reported by the snapshot: not raised twice
    failing.calls = 1
    engine.ingest_sync(first)  # call 2 again: raises in the lane
    engine._lanes.wait()  # type: ignore[union-attr]
    with pytest.raises(RuntimeError, match="kernel bug"):
        engine.ingest_sync(third)


def test_each_label_runs_in_order_on_one_thread_and_lanes_are_balanced() -> None:
    lanes = KernelLanes(2)
    seen: dict[str, list[tuple[int, str]]] = {"slow": [], "a": [], "b": []}

    def job(label: str, sequence: int, seconds: float):  # type: ignore[no-untyped-def]
        def run() -> None:
            time.sleep(seconds)
            seen[label].append((sequence, threading.current_thread().name))

        return run

    for sequence in range(12):
        lanes.submit(
            [
                ("a", job("a", sequence, 0.001)),
                ("slow", job("slow", sequence, 0.004)),
                ("b", job("b", sequence, 0.001)),
            ]
        )
    assert lanes.drain() == []
    for label, runs in seen.items():
        assert [sequence for sequence, _ in runs] == list(range(12)), label
    # After the first measurements the slow label has a lane of its own.
    placement = lanes.placement()
    assert placement["a"] == placement["b"] != placement["slow"]
    lanes.close()
    assert lanes.close() == []  # idempotent
