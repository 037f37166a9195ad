"""Fault: nats-server is SIGKILLed and restarted mid-stream.

The probe (file replay, paced) and the engine each hold their own NATS connection, as in two
processes. Both must reconnect and keep going, and whatever the crash swallowed must show up in
the numbers: packets delivered (counted from the engine's final snapshot) + the gap the engine
reports + publishes the probe saw refused == packets in the trace (the generator's truth).
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
from tests.fixtures.nats import NatsServer
from tests.integration.pipeline_helpers import pipeline_settings, start_engine_role, table_flows, wait_for

CRASH_AT = 20_000  # packets the probe has handed to the bus when the server is killed
RESUME_AT = 30_000  # ... when it is held again, until both clients have reconnected


@pytest.mark.parametrize("batch", [0, 200], ids=["per-message", "batched"])
async def test_server_restart_mid_stream_loss_is_reported(
    nats_server: NatsServer, tmp_path: Path, batch: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The replay is held at fixed packet counts, not paced against the clock.

    Under load a clock-paced replay could end while the server was down (no restart mid-stream
    left to test), so the test opens each hold when the condition it waits for is observed:
    the probe reaches CRASH_AT → kill → both clients report the disconnect → the probe keeps
    capturing through the outage up to RESUME_AT → restart → both report the reconnect → the
    replay runs to its end.
    """
    caplog.set_level(logging.INFO)
    trace = tmp_path / "trace.pcap"
    truth = write_trace(trace, TrafficSpec(packets=60_000, flows=300, seed=31))
    n = len(truth.packets)
    settings = pipeline_settings(url=nats_server.url, pcap=trace, batch=batch, rate=20_000)
    engine_bus, probe_bus = NatsBus(settings.bus_url), NatsBus(settings.probe.nats_url)
    engine = build_engine(settings, StorageContext())
    engine_role = EngineRole(settings, engine_bus, engine)
    probe_role = ProbeRole(settings, probe_bus)
    at_crash, server_down = asyncio.Event(), asyncio.Event()
    at_resume, server_back = asyncio.Event(), asyncio.Event()
    publish = probe_role.publisher.publish

    async def held_publish(columns: PacketColumns) -> None:
        handed = probe_role.publisher.packets + probe_role.publisher.failed_packets
        if handed >= CRASH_AT and not server_down.is_set():
            at_crash.set()
            await server_down.wait()
        if handed >= RESUME_AT and not server_back.is_set():
            at_resume.set()
            await server_back.wait()
        await publish(columns)

    probe_role.publisher.publish = held_publish  # type: ignore[method-assign]
    engine_stop = asyncio.Event()
    engine_task = await start_engine_role(engine_role, engine_stop)
    probe_task = asyncio.create_task(probe_role.serve(asyncio.Event()))
    try:
        await asyncio.wait_for(at_crash.wait(), 60)
        nats_server.kill()
        await wait_for(lambda: probe_bus.stats.disconnects >= 1 and engine_bus.stats.disconnects >= 1)
        server_down.set()
        await asyncio.wait_for(at_resume.wait(), 60)  # the probe captured through the outage
        assert not probe_task.done() and not engine_task.done()
        await asyncio.get_running_loop().run_in_executor(None, nats_server.restart)
        # a reconnect is reported after nats-py replayed the subscriptions and flushed them
        await wait_for(lambda: probe_bus.stats.reconnects >= 1 and engine_bus.stats.reconnects >= 1, 60)
        before_restart = engine_role.stats.packets
        server_back.set()
        await asyncio.wait_for(probe_task, 60)  # the replay runs to its end after the restart
        # the probe's final count message reaches the engine: it now knows what was published;
        # everything published before it on the same connection has reached the engine too
        await wait_for(lambda: engine_role.stats.published == probe_role.publisher.packets, 60)
    finally:
        engine_stop.set()
        await engine_task  # drains the subscriptions and ingests what they hold
        await probe_bus.close()
        await engine_bus.close()
    assert engine_role.stats.packets > before_restart + 10_000, "the engine stopped receiving"
    publisher, stats = probe_role.publisher, engine_role.stats
    assert probe_bus.stats.disconnects >= 1 and engine_bus.stats.disconnects >= 1
    # the probe accounts for every packet of the trace: handed to the bus, or refused and counted
    assert publisher.packets + publisher.failed_packets == n
    assert stats.rejected == 0
    # delivered, counted independently of the role's counters: the final exact snapshot
    flows = table_flows({t.task: t for t in engine.final_snapshots["exact"].flows}["per_five_tuple"])
    delivered = sum(packets for packets, _, _, _ in flows.values())
    assert delivered == stats.packets
    expected = exact_truth(truth, [KeyField(f) for f in ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")])
    for key, (packets, byte_count, _, _) in flows.items():  # nothing invented, nothing repeated
        assert packets <= expected[key].packets and byte_count <= expected[key].bytes, key
    gap = stats.gap
    assert gap is not None and gap >= 0
    assert delivered + gap + publisher.failed_packets == n
    # ... and the loss is reported, not hidden: the engine's final stats line names the gap
    final = [r.getMessage() for r in caplog.records if "Engine role stopped" in r.getMessage()]
    assert final and final[-1].endswith(f"probes published {publisher.packets}; gap {gap}"), final
    if gap:
        assert any(
            r.levelno == logging.WARNING for r in caplog.records if "Engine role stopped" in r.getMessage()
        )
