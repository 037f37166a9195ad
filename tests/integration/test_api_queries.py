"""Snapshots → store → gRPC answers equal brute-force truth, on both backends.

Parametrised over a real clickhouse-server (started by tests/fixtures/clickhouse.py) and the
embedded chdb store. Clients: our betterproto2 stub, grpcio code generated from proto/ at test
time, grpcurl (no proto files: reflection), and plain HTTP for Grafana.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status

from netspectra.api.role import ApiRole
from netspectra.config.models import Settings
from netspectra.model.fields import KeyField
from netspectra.model.snapshot import HitterKind
from netspectra.storage.context import StorageContext
from netspectra.storage.registry import build_writer
from netspectra.wire.generated import v1
from tests.fixtures.clickhouse import ClickHouseServer
from tests.fixtures.tools import venv_tool
from tests.integration.api_truth import (
    EXACT_TASKS,
    SKETCH_TASKS,
    T0,
    T1,
    Packet,
    flows_of,
    hitters_truth,
    make_packets,
    snapshots,
)

PACKETS = make_packets()
FIRST_HALF = [p for p in PACKETS if p.ts_ns < T0 * 10**9]


@dataclass
class Api:
    kind: str
    grpc_port: int
    http_port: int
    stub: v1.QueryServiceStub


def store_settings(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict:
    if kind == "clickhouse":
        server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
        database = request.getfixturevalue("clickhouse_database")
        options = {
            "host": server.host,
            "port": server.tcp_port,
            "database": database,
            "queue_dir": str(tmp_path / "spool"),
        }
        return {"type": "clickhouse", "clickhouse": options}
    return {"type": "embedded", "embedded": {"path": str(tmp_path / "store")}}


def settings_for(writer: dict) -> Settings:
    return Settings.model_validate(
        {
            "aggregator": {
                "exact": {
                    "writers": [writer],
                    "tasks": [
                        {"name": n, "key_fields": [f.value for f in fs]} for n, fs in EXACT_TASKS.items()
                    ],
                },
                "sketch": {
                    "writers": [writer],
                    "tasks": [
                        {"name": n, "algorithm": a, "flow_fields": ["SrcIP"], "element_fields": ["DstIP"]}
                        for n, a in SKETCH_TASKS.items()
                    ],
                },
            },
            "api": {"grpc_listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0"},
        }
    )


@pytest.fixture(params=["clickhouse", "embedded"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Api]:
    writer = store_settings(request.param, tmp_path, request)
    settings = settings_for(writer)
    context = StorageContext(engine_id="e1")
    exact_writer = build_writer(settings.aggregator.exact.writers[0], "exact", context)
    sketch_writer = build_writer(settings.aggregator.sketch.writers[0], "sketch", context)
    exact0, exact1, sketch0, sketch1 = snapshots(PACKETS)
    for snapshot in (exact0, exact1):
        await exact_writer.write(snapshot)
    for snapshot in (sketch0, sketch1):
        await sketch_writer.write(snapshot)
    await exact_writer.flush(60)  # type: ignore[attr-defined]
    await sketch_writer.flush(60)  # type: ignore[attr-defined]
    role = ApiRole(settings, context)
    stop = asyncio.Event()
    serving = asyncio.create_task(role.serve(stop))
    await asyncio.wait_for(role.ready.wait(), 30)
    channel = Channel("127.0.0.1", role.grpc_port)
    try:
        yield Api(request.param, role.grpc_port, role.http_port, v1.QueryServiceStub(channel, timeout=30))
    finally:
        channel.close()
        stop.set()
        await serving
        await exact_writer.close()
        await sketch_writer.close()
        await context.close()


def ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def aggregate_truth(packets: list[Packet], task: str, keep=lambda p: True) -> tuple[int, int, int]:
    chosen = [p for p in packets if keep(p)]
    return sum(p.length for p in chosen), len(chosen), len(flows_of(chosen, EXACT_TASKS[task]))


async def test_aggregate_flows_equal_truth_all_tasks_and_time_bound(api: Api) -> None:
    response = await api.stub.aggregate_flows(v1.AggregationRequest())
    got = {s.task_name: (s.total_bytes, s.total_packets, s.flow_count) for s in response.summaries}
    assert got == {task: aggregate_truth(PACKETS, task) for task in EXACT_TASKS}

    # end_time at the first snapshot: only what it held
    response = await api.stub.aggregate_flows(v1.AggregationRequest(task_name="five_tuple", end_time=ts(T0)))
    assert [(s.task_name, s.total_bytes, s.total_packets, s.flow_count) for s in response.summaries] == [
        ("five_tuple", *aggregate_truth(FIRST_HALF, "five_tuple"))
    ]


async def test_aggregate_flows_filters(api: Api) -> None:
    source = PACKETS[0].src
    response = await api.stub.aggregate_flows(
        v1.AggregationRequest(task_name="five_tuple", src_ip=source, dst_port=443, protocol=6)
    )
    expected = aggregate_truth(
        PACKETS, "five_tuple", lambda p: p.src == source and p.dport == 443 and p.proto == 6
    )
    assert expected[1] > 0
    assert [(s.total_bytes, s.total_packets, s.flow_count) for s in response.summaries] == [expected]
    # IPv6 source, written in a non-canonical form: normalised before querying
    response = await api.stub.aggregate_flows(
        v1.AggregationRequest(task_name="per_src_ip", src_ip="2001:DB8:0:0::1")
    )
    expected = aggregate_truth(PACKETS, "per_src_ip", lambda p: p.src == "2001:db8::1")
    assert [(s.total_bytes, s.total_packets, s.flow_count) for s in response.summaries] == [expected]


async def test_trace_flow_equals_truth(api: Api) -> None:
    flows = flows_of(PACKETS, EXACT_TASKS["five_tuple"])
    for key in list(flows)[:5]:
        packets, total_bytes, first_ns, last_ns = flows[key]
        keys = {f.value: str(v) for f, v in zip(EXACT_TASKS["five_tuple"], key, strict=True)}
        response = await api.stub.trace_flow(v1.TraceFlowRequest(task_name="five_tuple", flow_keys=keys))
        life = response.lifecycle
        assert (life.total_packets, life.total_bytes) == (packets, total_bytes)
        assert (life.first_seen, life.last_seen) == (ts(first_ns // 10**9), ts(last_ns // 10**9))
    # a one-field task, key given in lower case, value with spaces
    per_port = flows_of(PACKETS, (KeyField.DST_PORT,))
    response = await api.stub.trace_flow(
        v1.TraceFlowRequest(task_name="per_dst_port", flow_keys={"dstport": " 443 "})
    )
    assert (response.lifecycle.total_packets, response.lifecycle.total_bytes) == tuple(per_port[(443,)][:2])


@pytest.mark.parametrize("kind", list(HitterKind))
async def test_heavy_hitters_latest_value_desc_limited(api: Api, kind: HitterKind) -> None:
    task = "ss_dst" if kind is HitterKind.SPREAD else "cm_src"
    truth = hitters_truth(PACKETS)[kind]
    expected = sorted(truth.items(), key=lambda item: (-item[1], item[0]))
    response = await api.stub.query_heavy_hitters(v1.HeavyHittersRequest(task_name=task, type=int(kind)))
    assert [(h.flow, h.value) for h in response.hitters] == expected[:10]  # default limit 10
    response = await api.stub.query_heavy_hitters(
        v1.HeavyHittersRequest(task_name=task, type=int(kind), limit=10_000)
    )
    assert [(h.flow, h.value) for h in response.hitters] == expected
    first = sorted(hitters_truth(FIRST_HALF)[kind].items(), key=lambda item: (-item[1], item[0]))
    response = await api.stub.query_heavy_hitters(
        v1.HeavyHittersRequest(task_name=task, type=int(kind), limit=3, end_time=ts(T0))
    )
    assert [(h.flow, h.value) for h in response.hitters] == first[:3]


async def test_search_tasks_lists_exact_and_sketch_with_kinds(api: Api) -> None:
    response = await api.stub.search_tasks(v1.SearchTasksRequest())
    assert dict(zip(response.task_names, response.task_kinds, strict=True)) == {
        **{task: "exact" for task in EXACT_TASKS},
        **{task: f"sketch:{algorithm}" for task, algorithm in SKETCH_TASKS.items()},
    }
    assert (await api.stub.health_check(v1.HealthCheckRequest())).status == "ok"


BAD, GONE = Status.INVALID_ARGUMENT, Status.NOT_FOUND
FT = {"task_name": "five_tuple"}
DROP = "x'; DROP TABLE flow_metrics; --"
ABUSE = [
    ("trace bad key name", "trace", {**FT, "flow_keys": {"SrcIP' OR 1=1 --": "1"}}, BAD),
    ("trace injected ip", "trace", {**FT, "flow_keys": {"SrcIP": "1.2.3.4' OR '1'='1"}}, BAD),
    ("trace injected port", "trace", {**FT, "flow_keys": {"DstPort": "443 OR 1=1"}}, BAD),
    ("trace port range", "trace", {**FT, "flow_keys": {"DstPort": "70000"}}, BAD),
    ("trace protocol range", "trace", {**FT, "flow_keys": {"Protocol": "256"}}, BAD),
    ("trace no keys", "trace", {**FT, "flow_keys": {}}, BAD),
    ("trace unknown task", "trace", {"task_name": DROP, "flow_keys": {"SrcIP": "1.2.3.4"}}, GONE),
    ("trace no such flow", "trace", {**FT, "flow_keys": {"SrcIP": "203.0.113.9"}}, GONE),
    ("aggregate bad ip", "aggregate", {"src_ip": "999.1.1.1"}, BAD),
    ("aggregate port range", "aggregate", {"dst_port": 70000}, BAD),
    ("aggregate unknown task", "aggregate", {"task_name": "' OR 1=1 --"}, GONE),
    ("hitters huge limit", "hitters", {"task_name": "cm_src", "limit": 2_000_000_000}, BAD),
    ("hitters negative limit", "hitters", {"task_name": "cm_src", "limit": -1}, BAD),
    ("hitters bad type", "hitters", {"task_name": "cm_src", "type": 7}, BAD),
    ("hitters unknown task", "hitters", {"task_name": "nope\\' --"}, GONE),
]  # fmt: skip


async def test_abuse_gets_the_right_status_and_the_server_keeps_serving(api: Api) -> None:
    calls = {
        "trace": lambda kw: api.stub.trace_flow(v1.TraceFlowRequest(**kw)),
        "aggregate": lambda kw: api.stub.aggregate_flows(v1.AggregationRequest(**kw)),
        "hitters": lambda kw: api.stub.query_heavy_hitters(v1.HeavyHittersRequest(**kw)),
    }
    for label, call, kwargs, status in ABUSE:
        with pytest.raises(GRPCError) as caught:
            await calls[call](kwargs)
        assert caught.value.status is status, (label, caught.value.message)
        assert "Traceback" not in (caught.value.message or "")
    response = await api.stub.aggregate_flows(v1.AggregationRequest())
    assert {s.task_name: s.total_packets for s in response.summaries} == {
        t: len(PACKETS) for t in EXACT_TASKS
    }


async def test_grpcio_client_generated_from_proto(api: Api, official_protos) -> None:
    pb, pb_grpc = official_protos.query_pb2, official_protos.query_pb2_grpc

    def run() -> tuple:
        with grpc.insecure_channel(f"127.0.0.1:{api.grpc_port}") as channel:
            stub = pb_grpc.QueryServiceStub(channel)
            totals = stub.AggregateFlows(pb.AggregationRequest(task_name="per_src_ip"), timeout=30)
            hitters = stub.QueryHeavyHitters(
                pb.HeavyHittersRequest(task_name="cm_src", type=1, limit=2), timeout=30
            )
            with pytest.raises(grpc.RpcError) as bad:
                stub.TraceFlow(
                    pb.TraceFlowRequest(task_name="five_tuple", flow_keys={"Nope": "1"}), timeout=30
                )
            unimplemented = channel.unary_unary("/v1.QueryService/NoSuchMethod")
            with pytest.raises(grpc.RpcError) as missing:
                unimplemented(b"", timeout=30)
            return totals, hitters, bad.value.code(), missing.value.code()

    totals, hitters, bad, missing = await asyncio.to_thread(run)
    assert [(s.task_name, s.total_bytes, s.total_packets, s.flow_count) for s in totals.summaries] == [
        ("per_src_ip", *aggregate_truth(PACKETS, "per_src_ip"))
    ]
    size = sorted(hitters_truth(PACKETS)[HitterKind.SIZE].items(), key=lambda item: (-item[1], item[0]))[:2]
    assert [(h.flow, h.value) for h in hitters.hitters] == size
    assert bad == grpc.StatusCode.INVALID_ARGUMENT
    assert missing == grpc.StatusCode.UNIMPLEMENTED


async def test_grpcurl_list_describe_call_and_unimplemented(api: Api, tmp_path: Path) -> None:
    address = f"127.0.0.1:{api.grpc_port}"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [venv_tool("grpcurl"), "-plaintext", *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60)

    listed = await asyncio.to_thread(run, address, "list")
    assert listed.returncode == 0, listed.stderr
    assert {"v1.QueryService", "grpc.health.v1.Health"} <= set(listed.stdout.split())
    described = await asyncio.to_thread(run, address, "describe", "v1.QueryService")
    assert described.returncode == 0, described.stderr
    assert "rpc TraceFlow ( .v1.TraceFlowRequest ) returns ( .v1.TraceFlowResponse );" in described.stdout
    health = await asyncio.to_thread(run, address, "grpc.health.v1.Health/Check")
    assert json.loads(health.stdout) == {"status": "SERVING"}
    called = await asyncio.to_thread(
        run, "-d", '{"task_name": "per_dst_port"}', address, "v1.QueryService/AggregateFlows"
    )
    assert called.returncode == 0, called.stderr
    summary = json.loads(called.stdout)["summaries"][0]
    total_bytes, packets, flows = aggregate_truth(PACKETS, "per_dst_port")
    assert summary == {
        "taskName": "per_dst_port",
        "totalBytes": str(total_bytes),
        "totalPackets": str(packets),
        "flowCount": str(flows),
    }
    bad = await asyncio.to_thread(
        run, "-d", '{"task_name": "cm_src", "limit": 100000}', address, "v1.QueryService/QueryHeavyHitters"
    )
    assert "Code: InvalidArgument" in bad.stderr, bad.stderr
    # grpcurl checks names against reflection; a proto file lets it call a method we do not serve.
    (tmp_path / "gone.proto").write_text(
        'syntax = "proto3"; package v1; message Nothing {}\n'
        "service QueryService { rpc Gone(Nothing) returns (Nothing); }\n"
    )
    missing = await asyncio.to_thread(
        run,
        "-import-path",
        str(tmp_path),
        "-proto",
        "gone.proto",
        "-d",
        "{}",
        address,
        "v1.QueryService/Gone",
    )
    assert "Code: Unimplemented" in missing.stderr, missing.stderr


async def test_grafana_http_endpoints(api: Api) -> None:
    base = f"http://127.0.0.1:{api.http_port}"

    def fetch(path: str, body: dict | None = None) -> tuple[int, object]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())

    assert await asyncio.to_thread(fetch, "/") == (200, {"status": "ok"})
    status, names = await asyncio.to_thread(fetch, "/search", {"target": ""})
    assert status == 200 and set(names) == set(EXACT_TASKS) | set(SKETCH_TASKS)
    query = {
        "range": {"from": "2023-11-14T22:00:00Z", "to": "2023-11-14T23:00:00Z"},
        "targets": [{"target": "per_src_ip"}],
    }
    status, series = await asyncio.to_thread(fetch, "/query", query)
    first = [p for p in PACKETS if p.ts_ns < T0 * 10**9]
    assert status == 200
    assert series == [
        {"target": "per_src_ip packets", "datapoints": [[len(first), T0 * 1000], [len(PACKETS), T1 * 1000]]},
        {
            "target": "per_src_ip bytes",
            "datapoints": [
                [sum(p.length for p in first), T0 * 1000],
                [sum(p.length for p in PACKETS), T1 * 1000],
            ],
        },
    ]
    # the panel's range is the window: from T0 on, only what was counted after the T0 snapshot
    later = {
        "range": {"from": T0 * 1000, "to": "2023-11-14T23:00:00Z"},
        "targets": [{"target": "five_tuple"}],
    }
    second = [p for p in PACKETS if p.ts_ns >= T0 * 10**9]
    assert (await asyncio.to_thread(fetch, "/query", later)) == (
        200,
        [
            {"target": "five_tuple packets", "datapoints": [[len(second), T1 * 1000]]},
            {"target": "five_tuple bytes", "datapoints": [[sum(p.length for p in second), T1 * 1000]]},
        ],
    )
    before = {
        "range": {"from": "2023-11-14T20:00:00Z", "to": "2023-11-14T21:00:00Z"},
        "targets": later["targets"],
    }
    assert (await asyncio.to_thread(fetch, "/query", before)) == (
        200,
        [
            {"target": "five_tuple packets", "datapoints": []},
            {"target": "five_tuple bytes", "datapoints": []},
        ],
    )
    only_bytes = {**query, "targets": [{"target": "per_src_ip", "payload": {"metric": "bytes"}}]}
    assert (await asyncio.to_thread(fetch, "/query", only_bytes)) == (200, series[1:])
    assert (await asyncio.to_thread(fetch, "/query", {"range": "x"}))[0] == 400
    assert (await asyncio.to_thread(fetch, "/nope", {}))[0] == 404


async def test_grafana_http_bad_ranges_big_headers_and_idle_connections(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Non-finite ranges and non-list targets are 400 (not 500); 16 KiB+ headers get 431; idle closes."""
    import netspectra.api.http as http

    async def exchange(raw: bytes) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", api.http_port)
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 10)  # Connection: close → read to EOF
        writer.close()
        return answer

    def post(body: str) -> bytes:
        head = (
            "POST /query HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return (head + body).encode()

    for body in (
        '{"range": {"from": NaN, "to": 1}, "targets": []}',
        '{"range": {"from": 0, "to": Infinity}, "targets": []}',
        '{"range": {"from": 0, "to": -Infinity}, "targets": []}',
        '{"range": {"from": 0, "to": 1}, "targets": 5}',
        '{"range": {"from": 0, "to": 1}, "targets": {"target": "per_src_ip"}}',
    ):
        assert (await exchange(post(body))).startswith(b"HTTP/1.1 400 Bad Request\r\n"), body
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (http.MAX_HEADER + 10) + b"\r\n\r\n"
    assert (await exchange(big)).startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n")
    monkeypatch.setattr(http, "IDLE_TIMEOUT", 0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.http_port)
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
    await writer.drain()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed by the server, no answer
    writer.close()
    assert (await exchange(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")).startswith(b"HTTP/1.1 200 OK")
