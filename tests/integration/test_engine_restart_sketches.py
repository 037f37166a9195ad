"""Restarts continue for sketch state too: an engine SIGKILLed and started again under its id.

Real processes: nats-server, clickhouse-server, ``netspectra run --roles=engine`` (killed by pid
with SIGKILL) and probe processes replaying generated traces. The sketch group stores its epoch
states every half second; the restarted engine is a new incarnation whose states merge with the
killed one's. Truth is the generator's packets per source over both traces (never our engine):
QueryHeavyHitters, merged from the states of both incarnations, must equal it for every source,
before the kill for the first trace and after the restart for both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netspectra.model.fields import KeyField
from netspectra.model.snapshot import HitterKind
from netspectra.synth.traffic import TrafficSpec, exact_truth, write_trace
from tests.fixtures.clickhouse import ClickHouseServer
from tests.fixtures.nats import NatsServer
from tests.integration.durability_helpers import (
    SNAPSHOT_INTERVAL,
    clickhouse_section,
    publish_trace,
    query_store,
    start_engine,
    wait_until,
)
from tests.integration.pipeline_helpers import pipeline_config

FLOWS = 200


def sketch_engine_config(
    nats_url: str, server: ClickHouseServer, database: str, spool: Path
) -> dict[str, Any]:
    """One count_min task by source, wide enough (2^15 x 2 for <= 200 sources) to count exactly."""
    config = pipeline_config(url=nats_url, engine_id="e1")
    config["aggregator"] = {
        "types": ["sketch"],
        "sketch": {
            "writers": [
                {
                    "type": "clickhouse",
                    "snapshot_interval": SNAPSHOT_INTERVAL,
                    "clickhouse": clickhouse_section(server, database, spool),
                }
            ],
            "tasks": [
                {
                    "name": "cm_src",
                    "algorithm": "count_min",
                    "flow_fields": ["SrcIP"],
                    "width": 1 << 15,
                    "depth": 2,
                    "count_thereshold": 1,
                    "size_thereshold": 1 << 40,
                }
            ],
        },
    }
    return config


def per_source(tmp_path: Path, *seeds_and_packets: tuple[int, int]) -> dict[str, int]:
    """Packets per source address over the traces publish_trace generates for these seeds."""
    totals: dict[str, int] = {}
    for seed, packets in seeds_and_packets:
        truth = write_trace(
            tmp_path / f"truth-{seed}.pcap", TrafficSpec(packets=packets, flows=FLOWS, seed=seed)
        )
        for key, flow in exact_truth(truth, [KeyField.SRC_IP]).items():
            totals[key[0]] = totals.get(key[0], 0) + flow.packets
    return totals


async def test_a_killed_engine_restarted_under_its_id_keeps_its_sketch_state(
    nats_server: NatsServer, clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    config = sketch_engine_config(nats_server.url, clickhouse_server, clickhouse_database, tmp_path / "spool")
    store = query_store(clickhouse_server, clickhouse_database)

    async def hitters() -> dict[str, int]:
        try:
            return dict(await store.heavy_hitters("cm_src", HitterKind.COUNT, 10_000, None))
        except Exception:
            return {}

    first = start_engine(tmp_path, "engine-first", config)
    try:
        publish_trace(tmp_path, "probe-a", nats_server.url, 20_000, seed=41)
        before = per_source(tmp_path, (41, 20_000))
        seen: list[dict[str, int]] = []

        async def first_stored() -> bool:
            seen.append(await hitters())
            return seen[-1] == before

        await wait_until(first_stored, "the first trace's sketch state stored", on_timeout=first.tail)
        first.kill()  # SIGKILL: no final snapshot, no lease release

        second = start_engine(tmp_path, "engine-second", config)
        try:
            publish_trace(tmp_path, "probe-c", nats_server.url, 15_000, seed=43)
            both = per_source(tmp_path, (41, 20_000), (43, 15_000))
            assert both != before

            after: list[dict[str, int]] = []

            async def both_stored() -> bool:
                after.append(await hitters())
                return after[-1] == both

            await wait_until(both_stored, "both traces' sketch states merged", on_timeout=second.tail)
            # the new incarnation's states add to the killed one's: no answer after the restart
            # ever fell below a source's count from the first trace (a replace would)
            assert all(answer.get(source, 0) >= count for answer in after for source, count in before.items())
            assert second.stop() == 0, second.tail()
            assert dict(await store.heavy_hitters("cm_src", HitterKind.COUNT, 10_000, None)) == both
        finally:
            second.kill()
    finally:
        first.kill()
        await store.backend.close()
