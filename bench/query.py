"""Query latency through gRPC over 1 M stored flow rows, on the ClickHouse server and on chdb.

    python bench/query.py [--rows 1000000] [--requests 100] [--backend clickhouse|embedded|both] [--settle 10]
                          [--smoke]

Loads ``rows`` flow rows (10 snapshots of rows/10 five-tuple flows, cumulative counters like
the engine writes) plus 10 snapshots of 10 000 heavy hitters, starts the API on free ports and
times AggregateFlows (all tasks), TraceFlow (one flow) and QueryHeavyHitters (top 10) from a
betterproto2 client, one request at a time. Baseline in the same run: HealthCheck (a gRPC round
trip plus ``SELECT 1``), so the ratios show the cost of the query itself. Target: p99 ≤ 100 ms.

AggregateFlows and TraceFlow read flow_latest (the latest row per flow, fed by a materialized
view) whose size depends on background merges: each snapshot adds one row per flow until the
store merges them away (seconds). So every query is timed twice: right after the load (merges
pending, the worst case) and after ``--settle`` seconds (the steady state between snapshots).
The flow_latest size is printed with each round. "AggregateFlows end<newest" asks for a past end
time, which flow_latest cannot answer: it reads flow_metrics (the unchanged two-stage query).
"AggregateFlows window" sets start_time (half the snapshots): the window's per-row increments
over flow_metrics. The ClickHouse server is started from tests/fixtures/clickhouse.py on free
ports. ``--smoke``: 20 000 rows, 1 000 hitters per snapshot, 5 requests, no settling: seconds (CI).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grpclib.client import Channel

from netspectra.api.role import ApiRole
from netspectra.config.models import Settings
from netspectra.model.fields import FIELD_ORDER
from netspectra.model.snapshot import FlowTable, HeavyHitter, HitterKind, SketchResult, Snapshot
from netspectra.storage.context import StorageContext
from netspectra.storage.registry import build_writer
from netspectra.wire.generated import v1

SNAPSHOTS = 10
LATEST_STATE = "SELECT count(), sum(rows) FROM system.parts WHERE active AND table = 'flow_latest'"
T0 = 1_700_000_000


def flow_snapshot(flows: int, step: int, rng: np.random.Generator) -> Snapshot:
    src = np.zeros((flows, 16), np.uint8)
    src[:, 10:12] = 255
    src[:, 12] = 10
    src[:, 13:16] = np.arange(flows, dtype=np.uint32).view(np.uint8).reshape(flows, 4)[:, :3]
    dst = src.copy()
    dst[:, 12] = 192
    packets = np.arange(1, flows + 1, dtype=np.uint64) * (step + 1)
    seen = np.full(flows, T0 * 10**9, np.int64)
    table = FlowTable(
        "five_tuple",
        FIELD_ORDER,
        src,
        dst,
        (np.arange(flows) % 60000 + 1024).astype(np.uint16),
        np.full(flows, 443, np.uint16),
        np.full(flows, 6, np.uint8),
        packets,
        packets * 100,
        seen,
        seen + step * 60 * 10**9,
    )
    return Snapshot("exact", (T0 + 60 * step) * 10**9, T0 * 10**9, flows=(table,))


def hitter_snapshot(count: int, step: int) -> Snapshot:
    hitters = tuple(
        HeavyHitter(f"10.0.{i // 256 % 256}.{i % 256}", (i + 1) * (step + 1), HitterKind.COUNT)
        for i in range(count)
    )
    return Snapshot(
        "sketch", (T0 + 60 * step) * 10**9, T0 * 10**9, sketches=(SketchResult("cm", "count_min", hitters),)
    )


async def timed(call: Callable[[], Awaitable[object]], requests: int) -> tuple[float, float]:
    for _ in range(3):
        await call()  # warm up
    samples = []
    for _ in range(requests):
        start = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(len(samples) * 0.99))]


async def run_backend(
    kind: str, rows: int, requests: int, workdir: Path, settle: float, hitters: int = 10_000
) -> None:
    server = None
    if kind == "clickhouse":
        from tests.fixtures.clickhouse import ClickHouseServer, find_clickhouse_server

        binary = find_clickhouse_server()
        if binary is None:
            print("clickhouse: skipped (clickhouse-server not installed)")
            return
        server = ClickHouseServer(binary, workdir / "clickhouse")
        server.start()
        writer = {
            "type": "clickhouse",
            "clickhouse": {"host": server.host, "port": server.tcp_port, "queue_dir": str(workdir / "spool")},
        }
    else:
        writer = {"type": "embedded", "embedded": {"path": str(workdir / "embedded")}}
    settings = Settings.model_validate(
        {
            "aggregator": {"exact": {"writers": [writer]}, "sketch": {"writers": [writer]}},
            "api": {"grpc_listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0"},
        }
    )
    context = StorageContext()
    try:
        exact = build_writer(settings.aggregator.exact.writers[0], "exact", context)
        sketch = build_writer(settings.aggregator.sketch.writers[0], "sketch", context)
        rng = np.random.default_rng(1)
        start = time.perf_counter()
        for step in range(SNAPSHOTS):
            await exact.write(flow_snapshot(rows // SNAPSHOTS, step, rng))
            await sketch.write(hitter_snapshot(hitters, step))
        await exact.flush(600)  # type: ignore[attr-defined]
        await sketch.flush(600)  # type: ignore[attr-defined]
        load = time.perf_counter() - start
        print(
            f"{kind}: loaded {rows:,} flow rows + {SNAPSHOTS * hitters:,} hitter rows in {load:.1f} s "
            f"({rows / load:,.0f} rows/s, snapshot conversion included)"
        )
        role = ApiRole(settings, context)
        stop = asyncio.Event()
        serving = asyncio.create_task(role.serve(stop))
        await role.ready.wait()
        channel = Channel("127.0.0.1", role.grpc_port)
        stub = v1.QueryServiceStub(channel, timeout=60)
        flow = {
            "SrcIP": "10.7.0.0",
            "DstIP": "192.7.0.0",
            "SrcPort": "1031",
            "DstPort": "443",
            "Protocol": "6",
        }
        calls = {
            "HealthCheck (baseline)": lambda: stub.health_check(v1.HealthCheckRequest()),
            "AggregateFlows": lambda: stub.aggregate_flows(v1.AggregationRequest()),
            "TraceFlow": lambda: stub.trace_flow(v1.TraceFlowRequest(task_name="five_tuple", flow_keys=flow)),
            "QueryHeavyHitters": lambda: stub.query_heavy_hitters(
                v1.HeavyHittersRequest(task_name="cm", limit=10)
            ),
        }
        calls["AggregateFlows end<newest"] = lambda: stub.aggregate_flows(
            v1.AggregationRequest(end_time=datetime.fromtimestamp(T0 + 60 * (SNAPSHOTS - 2), UTC))
        )
        # a window over the last half of the snapshots (start_time set: reads flow_metrics' increments)
        calls["AggregateFlows window"] = lambda: stub.aggregate_flows(
            v1.AggregationRequest(start_time=datetime.fromtimestamp(T0 + 60 * (SNAPSHOTS // 2), UTC))
        )
        for label, wait in (("just loaded", 0.0), (f"after {settle:g} s", settle)):
            await asyncio.sleep(wait)
            parts, latest_rows = (await role.store.backend.select(LATEST_STATE))[0]
            print(f"  -- {label}: flow_latest {int(latest_rows):,} rows in {int(parts)} parts")
            baseline = None
            for name, call in calls.items():
                p50, p99 = await timed(call, requests)
                baseline = baseline or p50
                verdict = "" if name.startswith("Health") else ("  ok" if p99 <= 100 else "  ABOVE TARGET")
                print(f"  {name:27} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms  ({p50 / baseline:5.1f}x){verdict}")
        channel.close()
        stop.set()
        await serving
        await exact.close()
        await sketch.close()
    finally:
        await context.close()
        if server is not None:
            server.stop()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--backend", choices=["clickhouse", "embedded", "both"], default="both")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before the second round")
    parser.add_argument("--smoke", action="store_true", help="20 000 rows, 5 requests: seconds")
    args = parser.parse_args()
    hitters = 10_000
    if args.smoke:
        args.rows, args.requests, args.settle, hitters = 20_000, 5, 0.0, 1_000
    kinds = ["clickhouse", "embedded"] if args.backend == "both" else [args.backend]
    with tempfile.TemporaryDirectory(prefix="netspectra-bench-") as tmp:
        for kind in kinds:
            await run_backend(kind, args.rows, args.requests, Path(tmp) / kind, args.settle, hitters)


if __name__ == "__main__":
    asyncio.run(main())
