"""Rates over the store's data time: a flood through an engine restart at the default snapshot
interval (60 s) and a one-minute window.

After a restart the new incarnation stores nothing until its first snapshot, up to an interval
later, while its predecessor's last counts stay in the alerter's view. Over check times those
frozen counts read as "no growth": the flood's alert resolved mid-flood (and fired again, under
its cooldown, once the new incarnation wrote). Over the data time the writers record with every
snapshot, the checks in between bring no new information and the alert is held.

Real parts: the engines' groups and writers into a ClickHouse server (each incarnation with its
lease, as ``netspectra run`` starts them), the query layer and the alerter that
``build_alerter`` makes. Time is the trace's (engines' clock and the alerter's ``now``), stepped
one check interval at a time; the truth is the test's own: when the flood began and ended.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from netspectra.alerting.state import Notification
from netspectra.app import build_alerter, build_storage
from netspectra.config.models import Settings
from netspectra.engine.engine import Engine
from netspectra.engine.groups import build_groups
from netspectra.storage.context import StorageContext
from netspectra.storage.registry import build_writer
from tests.integration.alerting_helpers import NS, T0, ddos, select, wait_until

SNAPSHOT, CHECK, WINDOW = 60.0, 10.0, 60.0
FLOOD = (0.0, 600.0)  # trace seconds: 100 packets/s to one target, 5 times the rule's bound
STOPPED, RESTARTED = 302.0, 305.0  # the engine stops 2 s after its snapshot at 300 s, is back at 305 s
END = 780.0


def settings(tmp_path: Path, clickhouse: dict[str, Any]) -> Settings:
    writer = {"type": "clickhouse", "snapshot_interval": f"{SNAPSHOT}s", "clickhouse": clickhouse}
    return Settings.model_validate(
        {
            "aggregator": {
                "types": ["exact"],
                "exact": {"writers": [writer], "tasks": [{"name": "per_dst_ip", "key_fields": ["DstIP"]}]},
            },
            "alerter": {
                "enabled": True,
                "check_interval": f"{CHECK}s",
                "state_dir": str(tmp_path / "alerts"),
                "rules": [
                    {
                        "name": "flood",
                        "task_name": "per_dst_ip",
                        "metric": "flow_packets",
                        "window": f"{WINDOW}s",
                        "operator": ">",
                        "threshold": 20,
                    }
                ],
            },
        }
    )


class Incarnation:
    """One engine process's worth: its storage context (engine id ``e``, its own incarnation and
    lease), its groups and writers, on the test's clock."""

    def __init__(self, config: Settings, name: str, clock: Any) -> None:
        self.storage: StorageContext = build_storage(config, engine_id="e", incarnation=name)
        groups = build_groups(config)
        self.writers = [build_writer(w, "exact", self.storage) for w in config.aggregator.exact.writers]
        self.engine = Engine(
            groups,
            {
                "exact": [
                    (w, writer)
                    for w, writer in zip(config.aggregator.exact.writers, self.writers, strict=True)
                ]
            },
            period_s=config.aggregator.period,
            clock=clock,
            kernel_threads=1,
        )

    async def start(self, now: float) -> None:
        self.started = now
        await self.engine.start(schedule=False)
        await self.engine.start_writers()

    async def snapshot(self, now: float) -> None:
        """Take the snapshots due at ``now`` and wait until the store has them (one every
        ``SNAPSHOT`` seconds since the start)."""
        await self.engine.run_due()
        due = int((now - self.started) // SNAPSHOT)
        for writer in self.writers:
            await wait_until(lambda w=writer: w.written >= due, 120)

    async def close(self) -> None:
        await self.engine.close()
        await self.storage.close()


async def test_a_flood_through_an_engine_restart_fires_once_and_resolves_after_it_ends(
    tmp_path: Path, clickhouse_server: Any, clickhouse_database: str
) -> None:
    clickhouse = {
        "host": clickhouse_server.host,
        "port": clickhouse_server.tcp_port,
        "database": clickhouse_database,
        "queue_dir": str(tmp_path / "spool"),
    }
    config = settings(tmp_path, clickhouse)
    flood = ddos(tmp_path, FLOOD[0], FLOOD[1] - FLOOD[0], 100)
    now = float(T0)

    def clock() -> int:
        return int(now * NS)

    alert_storage = build_storage(config, engine_id="alerter")
    alerter = build_alerter(config, alert_storage, clock=lambda: now)
    engine: Incarnation | None = Incarnation(config, "a", clock)
    assert engine is not None
    await engine.start(now)
    made: list[tuple[float, Notification]] = []
    counted = float(T0)
    try:
        while now < T0 + END:
            until = now + CHECK
            for stop_or_start in (STOPPED, RESTARTED):
                if now < T0 + stop_or_start <= until:
                    now = T0 + stop_or_start
                    if engine is not None:  # what it counted since its last snapshot is lost
                        await engine.close()
                        engine = None
                    else:
                        engine = Incarnation(config, "b", clock)
                        await engine.start(now)
                        counted = now  # packets while no engine ran were not counted by anyone
            now = until
            if engine is not None:
                t = flood.ts_ns
                batch = select(flood, (t >= int(counted * NS)) & (t < int(now * NS)))
                if len(batch):
                    engine.engine.ingest_sync(batch)
                counted = now
                await engine.snapshot(now)
            made += [(now - T0, note) for note in await alerter.check(now=now)]
    finally:
        if engine is not None:
            await engine.close()
        await alert_storage.close()

    assert [(note.status, note.key) for _, note in made] == [
        ("firing", "DstIP=198.18.0.1"),
        ("resolved", "DstIP=198.18.0.1"),
    ]
    (fired, _), (resolved, _) = made
    # the first snapshot (60 s) shows the flood; the rate needs a second one or the first check
    assert FLOOD[0] < fired <= FLOOD[0] + 2 * SNAPSHOT + CHECK
    # the flood's last packets are in the snapshot at 600 s; the one at 660 s shows no growth
    assert FLOOD[1] < resolved <= FLOOD[1] + 2 * SNAPSHOT + CHECK
    assert np.all(flood.ts_ns < (T0 + FLOOD[1]) * NS)  # the truth: the flood ended at 600 s
