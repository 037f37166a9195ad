"""A NATS cluster loses a node mid-stream: probe and engine fail over, and the loss is reported.

Three Debian nats-servers joined by routes on loopback; ``probe.nats_url`` lists all three. Both
clients start on the first node (server order kept, so the test knows which node to kill); it is
SIGKILLed while the probe is held at a packet count, and both clients must carry on through a
surviving node without a restart of anything. Whatever the dead node swallowed is owed by the
accounting: for every task, the packets counted == the trace's packets - the engine's gap - the
publishes the probe saw refused, exactly; no flow gains a packet it did not send; and when the
reported loss is zero, every flow equals the generator's truth.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from netspectra.app import build_engine
from netspectra.bus.nats import NatsBus
from netspectra.engine.role import EngineRole
from netspectra.model.fields import KeyField
from netspectra.model.packets import PacketColumns
from netspectra.probe.role import ProbeRole
from netspectra.storage.context import StorageContext
from netspectra.synth.traffic import TrafficSpec, exact_truth, write_trace
from tests.fixtures.nats import NatsCluster
from tests.integration.pipeline_helpers import (
    TASKS,
    pipeline_settings,
    start_engine_role,
    table_flows,
    wait_for,
)

CRASH_AT = 20_000  # packets the probe has handed to the bus when the node is killed
RESUME_AT = 30_000  # ... when it is held again, until both clients have failed over


@pytest.mark.parametrize("batch", [0, 200], ids=["per-message", "batched"])
async def test_node_killed_mid_stream_clients_fail_over_and_loss_is_reported(
    nats_cluster: NatsCluster, tmp_path: Path, batch: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    trace = tmp_path / "trace.pcap"
    truth = write_trace(trace, TrafficSpec(packets=60_000, flows=300, seed=37))
    n = len(truth.packets)
    settings = pipeline_settings(url=nats_cluster.url, pcap=trace, batch=batch, rate=20_000)
    assert settings.probe.nats_url.count(",") == 2
    engine_bus = NatsBus(settings.bus_url, randomize=False)
    probe_bus = NatsBus(settings.probe.nats_url, randomize=False)
    engine = build_engine(settings, StorageContext())
    engine_role = EngineRole(settings, engine_bus, engine)
    probe_role = ProbeRole(settings, probe_bus)
    at_crash, node_down = asyncio.Event(), asyncio.Event()
    at_resume, failed_over = asyncio.Event(), asyncio.Event()
    publish = probe_role.publisher.publish

    async def held_publish(columns: PacketColumns) -> None:
        handed = probe_role.publisher.packets + probe_role.publisher.failed_packets
        if handed >= CRASH_AT and not node_down.is_set():
            at_crash.set()
            await node_down.wait()
        if handed >= RESUME_AT and not failed_over.is_set():
            at_resume.set()
            await failed_over.wait()
        await publish(columns)

    probe_role.publisher.publish = held_publish  # type: ignore[method-assign]
    engine_stop = asyncio.Event()
    engine_task = await start_engine_role(engine_role, engine_stop)
    probe_task = asyncio.create_task(probe_role.serve(asyncio.Event()))
    try:
        await asyncio.wait_for(at_crash.wait(), 60)
        first = nats_cluster.nodes[0]
        assert probe_bus.connected_url == engine_bus.connected_url == first.url
        first.kill()
        await wait_for(lambda: probe_bus.stats.disconnects >= 1 and engine_bus.stats.disconnects >= 1, 60)
        node_down.set()  # the probe publishes on while its client fails over (reconnect buffer)
        await wait_for(lambda: at_resume.is_set() or probe_task.done(), 60)
        # a reconnect is reported after nats-py replayed the subscriptions on the new node
        await wait_for(lambda: probe_bus.stats.reconnects >= 1 and engine_bus.stats.reconnects >= 1, 60)
        failed_over.set()
        survivors = {node.url for node in nats_cluster.nodes[1:]}
        assert probe_bus.connected_url in survivors and engine_bus.connected_url in survivors
        before_resume = engine_role.stats.packets
        await asyncio.wait_for(probe_task, 60)  # the replay runs to its end on the survivors
        # the probe's final count reaches the engine, after everything it sent before on that path
        await wait_for(lambda: engine_role.stats.published == probe_role.publisher.packets, 60)
    finally:
        engine_stop.set()
        await engine_task  # drains the subscriptions and ingests what they hold
        await probe_bus.close()
        await engine_bus.close()
    publisher, stats = probe_role.publisher, engine_role.stats
    assert stats.packets > before_resume + 20_000, "the engine stopped receiving after the failover"
    assert publisher.packets + publisher.failed_packets == n
    assert stats.rejected == 0
    gap = stats.gap
    assert gap is not None and gap >= 0
    lost = gap + publisher.failed_packets
    snapshots = {t.task: t for t in engine.final_snapshots["exact"].flows}
    for task, fields in TASKS.items():
        flows = table_flows(snapshots[task])
        expected = exact_truth(truth, [KeyField(f) for f in fields])
        # the answers are the truth minus exactly the reported loss ...
        assert sum(packets for packets, _, _, _ in flows.values()) == n - lost, task
        # ... taken from real flows only, none counted twice
        for key, (packets, byte_count, _, _) in flows.items():
            assert packets <= expected[key].packets and byte_count <= expected[key].bytes, (task, key)
        if lost == 0:
            assert {key: (p, b) for key, (p, b, _, _) in flows.items()} == {
                key: (flow.packets, flow.bytes) for key, flow in expected.items()
            }, task
    final = [r.getMessage() for r in caplog.records if "Engine role stopped" in r.getMessage()]
    assert final and final[-1].endswith(f"probes published {publisher.packets}; gap {gap}"), final
