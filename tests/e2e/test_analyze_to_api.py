"""A generated capture → `netspectra analyze` → storage → gRPC, against the generator's truth.

Both backends: a real clickhouse-server and the embedded chdb store. The client is grpcio code
compiled from proto/ at test time, so it shares nothing with the server under test.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml

from netspectra.api.role import ApiRole
from netspectra.config import load_settings
from netspectra.model.fields import KeyField, address_text
from netspectra.storage.context import StorageContext
from netspectra.synth.traffic import TrafficSpec, exact_truth, write_trace

ROOT = Path(__file__).resolve().parents[2]
SPEC = TrafficSpec(packets=60_000, flows=2_000, seed=11, spreaders=3, spreader_fanout=400)
FIVE = tuple(KeyField)
COUNT_THRESHOLD = 600  # packets: a few dozen flows of this Zipf trace reach it


@pytest.fixture(scope="module")
def trace(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("trace") / "trace.pcap"
    return path, write_trace(path, SPEC)


def _config(tmp_path: Path, writer: dict) -> Path:
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for group in ("exact", "sketch"):
        config["aggregator"][group]["writers"] = [writer]
    for task in config["aggregator"]["sketch"]["tasks"]:
        if task["algorithm"] == "count_min":
            task["count_thereshold"] = COUNT_THRESHOLD
            task["size_thereshold"] = COUNT_THRESHOLD * 700
        else:
            task["count_thereshold"] = 100
    config["api"] = {"grpc_listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0"}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(params=["embedded", "clickhouse"])
def stored(request: pytest.FixtureRequest, tmp_path: Path, trace):
    """The trace analyzed into one backend; returns the config path and the analyze summary."""
    if request.param == "clickhouse":
        server = request.getfixturevalue("clickhouse_server")
        database = request.getfixturevalue("clickhouse_database")
        options = {"host": server.host, "port": server.tcp_port, "database": database}
        options["queue_dir"] = str(tmp_path / "spool")
        writer = {"type": "clickhouse", "snapshot_interval": "60s", "clickhouse": options}
    else:
        writer = {"type": "embedded", "snapshot_interval": "60s", "embedded": {"path": str(tmp_path / "db")}}
    config = _config(tmp_path, writer)
    pcap, _ = trace
    result = subprocess.run(
        [sys.executable, "-m", "netspectra", "analyze", str(pcap), "--config", str(config), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    return config, json.loads(result.stdout)


async def _with_api(config: Path, ask):
    settings = load_settings(config)
    context = StorageContext()
    role = ApiRole(settings, context)
    stop = asyncio.Event()
    serving = asyncio.create_task(role.serve(stop))
    try:
        await asyncio.wait_for(role.ready.wait(), 60)
        return await asyncio.to_thread(ask, f"127.0.0.1:{role.grpc_port}")
    finally:
        stop.set()
        await serving
        await context.close()


async def test_every_answer_equals_the_generator_truth(stored, trace, official_protos):
    config, summary = stored
    _, truth = trace
    pb, pb_grpc = official_protos.query_pb2, official_protos.query_pb2_grpc
    assert summary["packets"] == len(truth.packets)

    five_tuple_truth = exact_truth(truth, FIVE)
    chosen = sorted(five_tuple_truth.items(), key=lambda item: -item[1].packets)[:3]
    by_source = exact_truth(truth, (KeyField.SRC_IP,))
    heavy_sources = {
        key[0]: flow.packets for key, flow in by_source.items() if flow.packets >= COUNT_THRESHOLD
    }
    assert heavy_sources, "the trace must have heavy hitters to find"

    def ask(address: str):
        with grpc.insecure_channel(address) as channel:
            stub = pb_grpc.QueryServiceStub(channel)
            aggregates = {
                task: stub.AggregateFlows(pb.AggregationRequest(task_name=task), timeout=60).summaries
                for task in ("per_src_ip", "per_dst_port", "per_five_tuple")
            }
            traces = [
                stub.TraceFlow(
                    pb.TraceFlowRequest(
                        task_name="per_five_tuple",
                        flow_keys={field.value: str(value) for field, value in zip(FIVE, key, strict=True)},
                    ),
                    timeout=60,
                ).lifecycle
                for key, _ in chosen
            ]
            hitters = stub.QueryHeavyHitters(
                pb.HeavyHittersRequest(task_name="cm_src_left", type=0, limit=1000), timeout=60
            ).hitters
            spreaders = stub.QueryHeavyHitters(
                pb.HeavyHittersRequest(task_name="ss_dst_src", type=2, limit=100), timeout=60
            ).hitters
            tasks = stub.SearchTasks(pb.SearchTasksRequest(), timeout=60).task_names
        return aggregates, traces, hitters, spreaders, tasks

    aggregates, traces, hitters, spreaders, tasks = await _with_api(config, ask)

    total_bytes = int(truth.packets.length.sum())
    for task, fields in (("per_src_ip", (KeyField.SRC_IP,)), ("per_dst_port", (KeyField.DST_PORT,))):
        [summary_row] = aggregates[task]
        assert (summary_row.task_name, summary_row.total_packets, summary_row.total_bytes) == (
            task,
            len(truth.packets),
            total_bytes,
        )
        assert summary_row.flow_count == len(exact_truth(truth, fields))
    assert aggregates["per_five_tuple"][0].flow_count == len(five_tuple_truth)

    for lifecycle, (_, flow) in zip(traces, chosen, strict=True):
        assert (lifecycle.total_packets, lifecycle.total_bytes) == (flow.packets, flow.bytes)
        assert lifecycle.first_seen.seconds == flow.first_ns // 10**9
        assert lifecycle.last_seen.seconds == flow.last_ns // 10**9

    reported = {hitter.flow: hitter.value for hitter in hitters}
    assert set(heavy_sources) <= set(reported)
    for source, packets in heavy_sources.items():
        assert abs(reported[source] - packets) <= 0.02 * packets, source

    planted = {address_text(np.frombuffer(raw, np.uint8)) for raw in truth.spreaders}
    by_destination = exact_truth(truth, (KeyField.DST_IP, KeyField.SRC_IP))
    true_spread = {target: sum(1 for key in by_destination if key[0] == target) for target in planted}
    found = {hitter.flow: hitter.value for hitter in spreaders}
    assert planted <= set(found)
    errors = [abs(found[target] - spread) / spread for target, spread in true_spread.items()]
    assert sum(errors) / len(errors) <= 0.15

    assert {"per_src_ip", "per_five_tuple", "cm_src_left", "ss_dst_src"} <= set(tasks)
