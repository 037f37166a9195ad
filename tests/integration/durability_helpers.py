"""Shared by the durability tests: engine processes writing to a real ClickHouse, and its totals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspectra.config.models import ClickHouseOptions
from netspectra.storage.clickhouse import ClickHouseBackend
from netspectra.storage.query import FlowFilter, QueryStore
from netspectra.synth.traffic import TrafficSpec, write_trace
from tests.fixtures.clickhouse import ClickHouseServer
from tests.integration.pipeline_helpers import TASKS, NetspectraProcess, pipeline_config

SNAPSHOT_INTERVAL = 0.5


def clickhouse_section(server: ClickHouseServer, database: str, spool: Path, **extra: Any) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.tcp_port,
        "database": database,
        "queue_dir": str(spool),
        **extra,
    }


def engine_config(
    nats_url: str,
    server: ClickHouseServer,
    database: str,
    spool: Path,
    *,
    engine_id: str = "e1",
    **extra: Any,
) -> dict[str, Any]:
    """An engine whose exact group writes to ClickHouse every :data:`SNAPSHOT_INTERVAL` seconds."""
    config = pipeline_config(url=nats_url, engine_id=engine_id)
    config["aggregator"]["exact"]["writers"] = [
        {
            "type": "clickhouse",
            "snapshot_interval": SNAPSHOT_INTERVAL,
            "clickhouse": clickhouse_section(server, database, spool, **extra),
        }
    ]
    return config


def start_engine(workdir: Path, name: str, config: dict[str, Any]) -> NetspectraProcess:
    engine = NetspectraProcess(workdir, name, config, "--roles=engine")
    engine.wait_for_message("Engine subscribed to", timeout=60)
    return engine


def publish_trace(workdir: Path, name: str, nats_url: str, packets: int, seed: int) -> int:
    """Replay a generated trace through a probe process; returns the packets it published (all)."""
    trace = workdir / f"{name}.pcap"
    truth = write_trace(trace, TrafficSpec(packets=packets, flows=200, seed=seed))
    probe = NetspectraProcess(
        workdir / name,
        name,
        pipeline_config(url=nats_url),
        "--roles=probe",
        "--pcap",
        str(trace),
        "--rate",
        "50000",
    )
    assert probe.process.wait(60) == 0, probe.tail()
    assert f"published {len(truth.packets)} packets" in probe.wait_for_message("Probe stopped"), probe.tail()
    return len(truth.packets)


def query_store(server: ClickHouseServer, database: str) -> QueryStore:
    options = ClickHouseOptions(host=server.host, port=server.tcp_port, database=database)
    return QueryStore(ClickHouseBackend(options), description="test")


async def stored_packets(store: QueryStore) -> dict[str, int]:
    """Per task: AggregateFlows' packet total (the query layer, as the API answers it)."""
    return {total.task: total.total_packets for total in await store.aggregate_flows(FlowFilter())}


async def wait_until(
    condition: Callable[[], Any], what: str, timeout: float = 60.0, on_timeout: Callable[[], str] = lambda: ""
) -> Any:
    """Poll the async ``condition()`` until it returns a true value; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await condition()
        if last:
            return last
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} not reached within {timeout} s (last: {last!r})\n{on_timeout()}")


def every_task(packets: int) -> dict[str, int]:
    return dict.fromkeys(TASKS, packets)
