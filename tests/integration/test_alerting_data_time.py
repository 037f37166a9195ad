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
import pytest

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


#: per group: its task, and the rule's metric over it (an exact flow, or a count_min hitter whose
#: rate is read from the engines' merged sketch states)
TASKS: dict[str, tuple[dict[str, Any], str]] = {
    "exact": ({"name": "per_dst_ip", "key_fields": ["DstIP"]}, "flow_packets"),
    "sketch": (
        {
            "name": "cm_dst",
            "algorithm": "count_min",
            "flow_fields": ["DstIP"],
            "element_fields": [],
            "width": 4096,
            "depth": 2,
            "count_thereshold": 100,
            "size_thereshold": 1 << 40,
        },
        "heavy_hitter_count",
    ),
}


def settings(tmp_path: Path, clickhouse: dict[str, Any], group: str = "exact") -> Settings:
    writer = {"type": "clickhouse", "snapshot_interval": f"{SNAPSHOT}s", "clickhouse": clickhouse}
    task, metric = TASKS[group]
    return Settings.model_validate(
        {
            "aggregator": {
                "types": [group],
                group: {"writers": [writer], "tasks": [task]},
            },
            "alerter": {
                "enabled": True,
                "check_interval": f"{CHECK}s",
                "state_dir": str(tmp_path / "alerts"),
                "rules": [
                    {
                        "name": "flood",
                        "task_name": task["name"],
                        "metric": metric,
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
        group = config.aggregator.types[0]
        configured = getattr(config.aggregator, group).writers
        self.writers = [build_writer(w, group, self.storage) for w in configured]
        self.engine = Engine(
            groups,
            {group: [(w, writer) for w, writer in zip(configured, self.writers, strict=True)]},
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


@pytest.mark.parametrize("group", ["exact", "sketch"])
async def test_a_flood_through_an_engine_restart_fires_once_and_resolves_after_it_ends(
    tmp_path: Path, clickhouse_server: Any, clickhouse_database: str, group: str
) -> None:
    clickhouse = {
        "host": clickhouse_server.host,
        "port": clickhouse_server.tcp_port,
        "database": clickhouse_database,
        "queue_dir": str(tmp_path / "spool"),
    }
    config = settings(tmp_path, clickhouse, group)
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

    key = "DstIP=198.18.0.1" if group == "exact" else "198.18.0.1"
    assert [(note.status, note.key) for _, note in made] == [("firing", key), ("resolved", key)]
    (fired, _), (resolved, _) = made
    # the first snapshot (60 s) shows the flood; the rate needs a second one or the first check
    assert FLOOD[0] < fired <= FLOOD[0] + 2 * SNAPSHOT + CHECK
    # the flood's last packets are in the snapshot at 600 s; the one at 660 s shows no growth
    assert FLOOD[1] < resolved <= FLOOD[1] + 2 * SNAPSHOT + CHECK
    assert np.all(flood.ts_ns < (T0 + FLOOD[1]) * NS)  # the truth: the flood ended at 600 s
