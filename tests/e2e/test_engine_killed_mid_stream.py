"""Restarts continue, never replace: an engine SIGKILLed mid-stream and started again loses only
what it reports.

Real processes: nats-server, clickhouse-server, a probe replaying a generated trace, and
``netspectra run --roles=engine`` killed by pid with SIGKILL while the probe publishes. The probe
goes on publishing into a bus nobody listens to, then the engine is started again with the same
config. Truth: the probe's own "published N packets"; the stored totals are read through the
query layer (AggregateFlows). The assertion is an equation, not a tolerance: every stored total
equals what was published minus the gap the restarted engine reports, and that gap is the loss
it reported for the restart.

The probe is paused (SIGSTOP) whenever the test waits on something of unknown duration (a
snapshot stored, an engine starting), so how long those take changes how much is lost, never
whether the equation holds.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

import nats

from netspectra.config.models import Settings
from netspectra.synth.traffic import TrafficSpec, write_trace
from netspectra.wire.subjects import count_subject, decode_probe_count
from tests.fixtures.clickhouse import ClickHouseServer
from tests.fixtures.nats import NatsServer
from tests.integration.durability_helpers import (
    engine_config,
    query_store,
    start_engine,
    stored_packets,
    wait_until,
)
from tests.integration.pipeline_helpers import TASKS, NetspectraProcess, pipeline_config

_FINAL = re.compile(
    r"Engine role stopped: (\d+) packets .*bus dropped (\d+).*probes published (\d+); gap (\d+)"
)
_RESTART_LOSS = re.compile(r"probe \S+: (\d+) packets lost across the restart")


async def test_an_engine_killed_mid_stream_stores_everything_published_but_the_reported_loss(
    nats_server: NatsServer, clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    config = engine_config(nats_server.url, clickhouse_server, clickhouse_database, tmp_path / "spool")
    subject = count_subject(Settings.model_validate(config).bus_subject)
    store = query_store(clickhouse_server, clickhouse_database)
    published_so_far: list[int] = [0]

    async def on_count(message: nats.aio.msg.Msg) -> None:
        published_so_far.append(decode_probe_count(message.data).packets)

    watcher = await nats.connect(nats_server.url)
    await watcher.subscribe(subject, cb=on_count)

    async def published_at_least(packets: int) -> bool:
        return max(published_so_far) >= packets

    trace = tmp_path / "trace.pcap"
    truth = write_trace(trace, TrafficSpec(packets=400_000, flows=200, seed=61))
    first = start_engine(tmp_path, "engine-first", config)
    probe = NetspectraProcess(
        tmp_path / "probe",
        "probe",
        pipeline_config(url=nats_server.url),
        "--roles=probe",
        "--pcap",
        str(trace),
        "--rate",
        "20000",
    )

    def pause_probe() -> None:
        os.kill(probe.process.pid, signal.SIGSTOP)

    def resume_probe() -> None:
        os.kill(probe.process.pid, signal.SIGCONT)

    second: NetspectraProcess | None = None
    try:
        await wait_until(lambda: published_at_least(20_000), "20,000 published", on_timeout=probe.tail)
        pause_probe()

        async def something_stored() -> bool:
            totals = await stored_packets(store)
            return len(totals) == len(TASKS) and min(totals.values()) > 0

        await wait_until(something_stored, "a first snapshot stored", on_timeout=first.tail)
        resume_probe()
        mark = max(published_so_far)
        await wait_until(lambda: published_at_least(mark + 20_000), "more published", on_timeout=probe.tail)
        first.kill()  # SIGKILL mid-stream: what it counted since its last snapshot is gone
        mark = max(published_so_far)
        # published while no engine listens: lost on a core-NATS bus, and must be reported
        await wait_until(lambda: published_at_least(mark + 10_000), "unheard", on_timeout=probe.tail)
        pause_probe()
        assert probe.process.poll() is None, "the trace ran out before the restart: make it longer"

        second = start_engine(tmp_path, "engine-second", config)  # same config, same spool
        assert any("resuming from the last snapshot" in line for line in second.messages()), second.tail()
        resume_probe()
        assert await asyncio.to_thread(probe.process.wait, 120) == 0, probe.tail()
        assert f"published {len(truth.packets)} packets" in probe.wait_for_message("Probe stopped")
        published = len(truth.packets)
        second.wait_for_message(f"probes published {published};", timeout=60)  # the final count arrived
        assert second.stop(60) == 0, second.tail()

        final = next(found for message in second.messages() if (found := _FINAL.search(message)))
        assert int(final[3]) == published
        dropped, gap = int(final[2]), int(final[4])
        restart_losses = [int(found[1]) for m in second.messages() if (found := _RESTART_LOSS.search(m))]
        assert len(restart_losses) == 1, second.tail()
        assert restart_losses[0] >= 10_000  # at least what was published while no engine listened
        # every lost packet accounted: the restart's, plus any the bus dropped for a slow engine
        assert gap == restart_losses[0] + dropped, second.tail()
        assert await stored_packets(store) == dict.fromkeys(TASKS, published - gap)
    finally:
        if probe.process.poll() is None:
            resume_probe()
            probe.kill()
        first.kill()
        if second is not None:
            second.kill()
        await watcher.close()
        await store.backend.close()
