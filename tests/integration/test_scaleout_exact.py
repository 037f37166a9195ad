"""N engines answer what one engine answers: AggregateFlows and TraceFlow equal the generator's truth.

Real processes: nats-server, clickhouse-server, ``netspectra run --roles=engine`` (1, 2 or 3 of
them in one queue group, each its own engine id) and ``netspectra run --roles=probe --pcap``;
the answers come through the api's gRPC service. The truth is the generator's
:func:`exact_truth` over the whole trace: packets, bytes and distinct flows per task, and first
and last seen of single flows. Before flow_count counted distinct flows, two engines answered
+45 % flows (a flow split between engines counted once per engine).

Two sites: two probes each replay one half of a trace (first and second half in time, so many
flows are seen at both sites) on two subjects, each heard by its own engine; the merged answer
equals one engine over the whole trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from grpclib.client import Channel

from netspectra.api.role import ApiRole
from netspectra.config.models import Settings
from netspectra.model.fields import KeyField
from netspectra.storage.context import StorageContext
from netspectra.synth.traffic import FlowTruth, GroundTruth, TrafficSpec, exact_truth, write_trace
from netspectra.wire.generated import v1
from tests.fixtures.clickhouse import ClickHouseServer
from tests.fixtures.nats import NatsServer
from tests.integration.durability_helpers import clickhouse_section, engine_config, start_engine, wait_until
from tests.integration.pipeline_helpers import TASKS, NetspectraProcess, pipeline_config

NS = 1_000_000_000


@contextlib.asynccontextmanager
async def api_stub(
    server: ClickHouseServer, database: str, tmp_path: Path
) -> AsyncIterator[v1.QueryServiceStub]:
    writer = {
        "type": "clickhouse",
        "clickhouse": clickhouse_section(server, database, tmp_path / "api-spool"),
    }
    settings = Settings.model_validate(
        {
            "aggregator": {
                "types": ["exact"],
                "exact": {
                    "writers": [writer],
                    "tasks": [{"name": name, "key_fields": fields} for name, fields in TASKS.items()],
                },
            },
            "api": {"grpc_listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0"},
        }
    )
    context = StorageContext()
    role = ApiRole(settings, context)
    stop = asyncio.Event()
    serving = asyncio.create_task(role.serve(stop))
    await asyncio.wait_for(role.ready.wait(), 60)
    channel = Channel("127.0.0.1", role.grpc_port)
    try:
        yield v1.QueryServiceStub(channel, timeout=60)
    finally:
        channel.close()
        stop.set()
        await serving
        await context.close()


def replay(workdir: Path, name: str, url: str, pcap: Path, packets: int, **probe: Any) -> None:
    """One probe process replaying ``pcap``; asserts it published every packet."""
    process = NetspectraProcess(
        workdir / name,
        name,
        pipeline_config(url=url, **probe),
        "--roles=probe",
        "--pcap",
        str(pcap),
        "--rate",
        "50000",
    )
    assert process.process.wait(120) == 0, process.tail()
    assert f"published {packets} packets" in process.wait_for_message("Probe stopped"), process.tail()


def stop_all(engines: list[NetspectraProcess], published: int) -> list[int]:
    """Wait until each engine heard the probes' final count, stop it (final snapshot); its packets."""
    shares = []
    for engine in engines:
        engine.wait_for_message(f"probes published {published};", timeout=120)
    for engine in engines:
        assert engine.stop(60) == 0, engine.tail()
        stopped = engine.wait_for_message("Engine role stopped")
        shares.append(int(stopped.split("Engine role stopped: ", 1)[1].split(" ", 1)[0]))
    return shares


async def assert_answers_equal_truth(stub: v1.QueryServiceStub, truth: GroundTruth) -> None:
    """AggregateFlows per task and TraceFlow of a few flows equal the generator's truth."""
    answer = await stub.aggregate_flows(v1.AggregationRequest())
    got = {s.task_name: (s.total_packets, s.total_bytes, s.flow_count) for s in answer.summaries}
    flows: dict[str, dict[tuple[object, ...], FlowTruth]] = {
        task: exact_truth(truth, [KeyField(name) for name in names]) for task, names in TASKS.items()
    }
    assert got == {
        task: (len(truth.packets), int(truth.packets.length.sum()), len(table))
        for task, table in flows.items()
    }
    rng = np.random.default_rng(3)
    for task in ("per_five_tuple", "per_src_ip"):
        table = flows[task]
        keys = sorted(table, key=lambda k: -table[k].packets)[:4]
        keys += [list(table)[i] for i in rng.choice(len(table), 4, replace=False)]
        for key in keys:
            request = v1.TraceFlowRequest(
                task_name=task,
                flow_keys={name: str(value) for name, value in zip(TASKS[task], key, strict=True)},
            )
            life = (await stub.trace_flow(request)).lifecycle
            assert life is not None and life.first_seen is not None and life.last_seen is not None
            flow = table[key]
            assert (
                life.total_packets,
                life.total_bytes,
                int(life.first_seen.timestamp()),
                int(life.last_seen.timestamp()),
            ) == (flow.packets, flow.bytes, flow.first_ns // NS, flow.last_ns // NS), (task, key)


@pytest.mark.parametrize("engines", [1, 2, 3])
async def test_one_two_three_engines_answer_the_truth(
    engines: int,
    nats_server: NatsServer,
    clickhouse_server: ClickHouseServer,
    clickhouse_database: str,
    tmp_path: Path,
) -> None:
    trace = tmp_path / "trace.pcap"
    truth = write_trace(trace, TrafficSpec(packets=30_000, flows=500, seed=29))
    processes = [
        start_engine(
            tmp_path,
            f"engine{i}",
            engine_config(
                nats_server.url,
                clickhouse_server,
                clickhouse_database,
                tmp_path / f"spool{i}",
                engine_id=f"e{i}",
            ),
        )
        for i in range(engines)
    ]
    try:
        replay(tmp_path, "probe", nats_server.url, trace, len(truth.packets))
        shares = stop_all(processes, len(truth.packets))
    finally:
        for process in processes:
            process.kill()
    # the queue group split the stream: every engine took part, nothing lost or counted twice
    assert sum(shares) == len(truth.packets) and all(share > 0 for share in shares), shares
    async with api_stub(clickhouse_server, clickhouse_database, tmp_path) as stub:
        await assert_answers_equal_truth(stub, truth)


def split_pcap(trace: Path, first: Path, second: Path) -> int:
    """Write the first half of ``trace``'s records to ``first``, the rest to ``second``; the cut."""
    data = trace.read_bytes()
    header, offset, records = data[:24], 24, []
    while offset < len(data):
        caplen = struct.unpack_from("<I", data, offset + 8)[0]
        records.append(data[offset : offset + 16 + caplen])
        offset += 16 + caplen
    cut = len(records) // 2
    first.write_bytes(header + b"".join(records[:cut]))
    second.write_bytes(header + b"".join(records[cut:]))
    return cut


async def test_two_sites_merge_to_the_answer_of_one_engine_over_the_whole_trace(
    nats_server: NatsServer, clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    trace = tmp_path / "trace.pcap"
    # no fragments, ARP or cut frames: every record is one packet, so the halves split the truth
    spec = TrafficSpec(packets=24_000, flows=300, seed=31, fragment_fraction=0.0, arp_fraction=0.0)
    truth = write_trace(trace, spec)
    assert len(truth.packets) == truth.frames
    halves = tmp_path / "site1.pcap", tmp_path / "site2.pcap"
    cut = split_pcap(trace, *halves)
    # many sources send at both sites: each of those flows must count once
    sources = [
        {bytes(row) for row in part} for part in (truth.packets.src_ip[:cut], truth.packets.src_ip[cut:])
    ]
    assert len(sources[0] & sources[1]) > 50
    processes = []
    try:
        for site in (1, 2):
            config = engine_config(
                nats_server.url,
                clickhouse_server,
                clickhouse_database,
                tmp_path / f"spool{site}",
                engine_id=f"site{site}",
            )
            config["engine"]["subject"] = f"site{site}.packets"
            processes.append(start_engine(tmp_path, f"engine-site{site}", config))
        for site, (pcap, count) in enumerate(((halves[0], cut), (halves[1], len(truth.packets) - cut)), 1):
            replay(tmp_path, f"probe{site}", nats_server.url, pcap, count, subject=f"site{site}.packets")
        for process, count in zip(processes, (cut, len(truth.packets) - cut), strict=True):
            assert stop_all([process], count) == [count]
    finally:
        for process in processes:
            process.kill()
    async with api_stub(clickhouse_server, clickhouse_database, tmp_path) as stub:
        await assert_answers_equal_truth(stub, truth)


async def test_a_restarted_engine_counts_each_flow_once_across_its_incarnations(
    nats_server: NatsServer, clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    """The same trace before and after a SIGKILL and restart: packets add up, every flow counts once."""
    trace = tmp_path / "trace.pcap"
    truth = write_trace(trace, TrafficSpec(packets=12_000, flows=200, seed=37))
    config = engine_config(nats_server.url, clickhouse_server, clickhouse_database, tmp_path / "spool")
    flows = {task: len(exact_truth(truth, [KeyField(n) for n in names])) for task, names in TASKS.items()}
    async with api_stub(clickhouse_server, clickhouse_database, tmp_path) as stub:

        async def stored() -> dict[str, tuple[int, int]]:
            answer = await stub.aggregate_flows(v1.AggregationRequest())
            return {s.task_name: (s.total_packets, s.flow_count) for s in answer.summaries}

        async def reaches(expected: dict[str, tuple[int, int]]) -> None:
            async def equal() -> bool:
                return await stored() == expected

            await wait_until(equal, f"stored totals {expected}", timeout=120)

        first = start_engine(tmp_path, "engine-first", config)
        try:
            replay(tmp_path, "probe-before", nats_server.url, trace, len(truth.packets))
            await reaches({task: (len(truth.packets), flows[task]) for task in TASKS})
            first.kill()  # SIGKILL after everything was stored: a new incarnation continues
        finally:
            first.kill()
        second = start_engine(tmp_path, "engine-second", config)
        try:
            replay(tmp_path, "probe-after", nats_server.url, trace, len(truth.packets))
            await reaches({task: (2 * len(truth.packets), flows[task]) for task in TASKS})
            assert second.stop(60) == 0, second.tail()
        finally:
            second.kill()
        engines = clickhouse_server.query(
            f"SELECT DISTINCT EngineId FROM {clickhouse_database}.flow_metrics FORMAT TSV"
        ).split()
        assert len(engines) == 2 and {e.partition("@")[0] for e in engines} == {"e1"}, engines
