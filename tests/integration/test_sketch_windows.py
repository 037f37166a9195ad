"""Windows: heavy hitters and spreaders that change per time slice, asked for several windows.

The trace has four 10 s slices of trace time, each its own Zipf flows (other heavy sources) and
its own planted spreaders (slices 0 and 1 share one, heard by the same sources, so a window
over both must count its sources once, not twice). The engine runs on trace time (its clock is
injected: snapshots every 5 s of trace time, at exact slice boundaries), its sketch group
writes to a real clickhouse-server, and the api's QueryHeavyHitters is asked for windows of
one, two and three slices. Truth is the generator's packets of exactly those slices.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from netspectra.api.service import QueryService
from netspectra.config.models import ClickHouseOptions, Settings
from netspectra.engine.engine import Engine
from netspectra.engine.sketch.group import SketchGroup
from netspectra.model.fields import address_text
from netspectra.model.packets import PacketColumns
from netspectra.storage.clickhouse import ClickHouseBackend
from netspectra.storage.query import QueryStore
from netspectra.storage.spool import QueuedWriter, SnapshotSpool
from netspectra.synth.traffic import GroundTruth, TrafficSpec, write_trace
from netspectra.wire.generated import v1
from tests.fixtures.clickhouse import ClickHouseServer

T = 1_750_000_000
NS = 1_000_000_000
SLICE_S, EPOCH_S, SLICES = 10, 5, 4
COUNT, SPREAD = 400, 600
GO_MEMORY = {"width": 1 << 13, "depth": 2}


def slice_spec(index: int) -> TrafficSpec:
    return TrafficSpec(
        packets=40_000,
        flows=4_000,
        seed=100 + index,
        zipf=1.15,
        spreaders=2,
        spreader_fanout=1_500 + 500 * index,
        spreader_base=index,
        start_ns=(T + SLICE_S * index) * NS,
        duration_s=SLICE_S - 0.001,
    )


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> list[GroundTruth]:
    directory = tmp_path_factory.mktemp("slices")
    return [write_trace(directory / f"slice{i}.pcap", slice_spec(i)) for i in range(SLICES)]


def concatenated(parts: list[PacketColumns]) -> PacketColumns:
    names = ("ts_ns", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "length", "ip_version")
    return PacketColumns(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in names})


def take(batch: PacketColumns, rows: np.ndarray) -> PacketColumns:
    names = ("ts_ns", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "length", "ip_version")
    return PacketColumns(**{name: getattr(batch, name)[rows].copy() for name in names})


def truth_of(slices: list[GroundTruth], chosen: range) -> tuple[dict[str, int], dict[str, int]]:
    """Packets per source and distinct sources per destination, over the chosen slices."""
    packets = concatenated([slices[i].packets for i in chosen])
    sources, counts = np.unique(packets.src_ip, axis=0, return_counts=True)
    per_source = {address_text(bytes(s)): int(c) for s, c in zip(sources, counts, strict=True)}
    pairs = np.unique(np.hstack((packets.dst_ip, packets.src_ip)), axis=0)
    destinations, spread = np.unique(pairs[:, :16], axis=0, return_counts=True)
    per_destination = {address_text(bytes(d)): int(c) for d, c in zip(destinations, spread, strict=True)}
    return per_source, per_destination


async def test_top_k_over_several_windows_equals_the_truth_of_those_windows(
    slices: list[GroundTruth], clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    settings = Settings.model_validate(
        {
            "aggregator": {
                "sketch": {
                    "writers": [{"type": "clickhouse", "snapshot_interval": f"{EPOCH_S}s"}],
                    "tasks": [
                        {"name": "cm_src", "algorithm": "count_min", "flow_fields": ["SrcIP"], **GO_MEMORY,
                         "count_thereshold": COUNT, "size_thereshold": 1 << 40},
                        {"name": "ss_dst", "algorithm": "spread_sketch", "flow_fields": ["DstIP"],
                         "element_fields": ["SrcIP"], **GO_MEMORY, "count_thereshold": SPREAD},
                    ],
                }
            }
        }
    )  # fmt: skip
    options = ClickHouseOptions(
        host=clickhouse_server.host, port=clickhouse_server.tcp_port, database=clickhouse_database
    )
    backend = ClickHouseBackend(options)
    writer = QueuedWriter(backend, SnapshotSpool(tmp_path / "spool", 8), engine_id="w", label="windows")
    now = [T * NS]
    engine = Engine(
        {"sketch": SketchGroup(settings.aggregator.sketch.tasks)},
        {"sketch": [(settings.aggregator.sketch.writers[0], writer)]},
        clock=lambda: now[0],
        kernel_threads=1,
    )
    await engine.start(schedule=False)
    stream = concatenated([part.packets for part in slices])
    for boundary in range(T + EPOCH_S, T + SLICE_S * SLICES + 1, EPOCH_S):
        # every packet before the boundary, then the snapshot at exactly the boundary
        rows = np.flatnonzero((stream.ts_ns >= now[0]) & (stream.ts_ns < boundary * NS))
        await engine.ingest(take(stream, rows))
        now[0] = boundary * NS
        await engine.run_due()
    await engine.close()
    service = QueryService(QueryStore(backend, description="windows"), {})

    async def asked(task: str, kind: int, first: int, last: int) -> dict[str, int]:
        request = v1.HeavyHittersRequest(
            task_name=task,
            type=kind,
            limit=10_000,
            start_time=datetime.fromtimestamp(T + SLICE_S * first, UTC),
            end_time=datetime.fromtimestamp(T + SLICE_S * (last + 1), UTC),
        )
        reply = await service.query_heavy_hitters(request)
        return {hitter.flow: hitter.value for hitter in reply.hitters}

    try:
        for first, last in ((0, 0), (1, 1), (3, 3), (0, 1), (1, 2), (1, 3)):
            per_source, per_destination = truth_of(slices, range(first, last + 1))
            # top-K by packets: the K largest of the truth, where the truth's rank K and K+1 are
            # further apart than the sketch's error (so the top-K is well defined)
            ranked = sorted(per_source.items(), key=lambda item: -item[1])
            k = max(k for k in range(3, 11) if ranked[k - 1][1] >= 1.05 * ranked[k][1])
            counts = await asked("cm_src", 0, first, last)
            top = sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]
            assert {flow for flow, _ in top} == {flow for flow, _ in ranked[:k]}, (first, last, k)
            for flow, value in top:
                assert abs(value - per_source[flow]) <= 0.03 * per_source[flow], (first, last, flow)
            # spreaders: exactly the planted ones of these slices, each within 10 %
            spreads = await asked("ss_dst", 2, first, last)
            planted = {flow: spread for flow, spread in per_destination.items() if spread >= SPREAD}
            assert set(spreads) == set(planted), (first, last, spreads, planted)
            for flow, spread in planted.items():
                assert abs(spreads[flow] - spread) <= 0.10 * spread, (
                    first,
                    last,
                    flow,
                    spreads[flow],
                    spread,
                )
        # 198.18.1.1 is heard in slices 0 and 1 by the same sources: the window counts them once
        both = await asked("ss_dst", 2, 0, 1)
        assert abs(both["198.18.1.1"] - 2_000) <= 200, both
    finally:
        await backend.close()
