"""Planted events in generated traffic, counted on trace time: each alert fires within its rule's
``for`` plus one check interval of the event, resolves after it, and nothing fires without it.

The truth is the plan of the trace (when each event starts and ends) and the generator's packets,
never the engine: the no-false-alarm precondition (no normal flow near a threshold) is computed
from the packets themselves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from netspectra.config.models import Settings
from netspectra.model.fields import address_text
from tests.integration.alerting_helpers import (
    NS,
    T0,
    TraceRig,
    base_traffic,
    concat,
    ddos,
    scan,
    without,
)

INTERVAL = 5.0
DDOS = (62.5, 82.5)  # trace seconds: 1000 packets/s to one target
SCAN = (102.5, 105.0)  # one source to 3000 targets in 2.5 s (a fast nmap sweep)
STOP = (200.0, 240.0)  # no traffic at all
PERIOD = 150.0  # the scan's spread is cumulative: it ends with the period (resolved at 150)
END = 300.0
FOR = {"ddos": 10.0, "scan": 5.0, "stopped": 5.0}


def settings(tmp_path: Path, *, clickhouse: dict[str, Any] | None = None, spread: bool = True) -> Settings:
    writer: dict[str, Any] = {"type": "embedded", "snapshot_interval": f"{INTERVAL}s"}
    writer["embedded"] = {"path": str(tmp_path / "store")}
    if clickhouse is not None:
        writer = {"type": "clickhouse", "snapshot_interval": f"{INTERVAL}s", "clickhouse": clickhouse}
    rules = [
        {
            "name": "ddos",
            "task_name": "per_dst_ip",
            "metric": "flow_packets",
            "window": f"{INTERVAL}s",
            "operator": ">",
            "threshold": 100,
            "for": f"{FOR['ddos']}s",
            "severity": "critical",
            "labels": {"kind": "ddos"},
        },
        {
            "name": "stopped",
            "task_name": "per_src_ip",
            "metric": "total_packets",
            "window": f"{INTERVAL}s",
            "baseline": {"method": "ewma", "alpha": 0.2, "factor": 4, "direction": "below", "warmup": 5},
            "for": f"{FOR['stopped']}s",
        },
    ]
    if spread:  # spreads do not add up across engines (max): one engine only
        rules.append(
            {
                "name": "scan",
                "task_name": "ss_src_dst",
                "metric": "super_spreader_spread",
                "operator": ">",
                "threshold": 1000,
                "for": f"{FOR['scan']}s",
            }
        )
    sketch_tasks = [
        {
            "name": "ss_src_dst",
            "skt_type": 1,
            "flow_fields": ["SrcIP"],
            "element_fields": ["DstIP"],
            "width": 4096,
            "depth": 2,
            "count_thereshold": 50,
        }
    ]
    return Settings.model_validate(
        {
            "aggregator": {
                "types": ["exact", "sketch"] if spread else ["exact"],
                "period": f"{PERIOD}s",
                "exact": {
                    "writers": [writer],
                    "tasks": [
                        {"name": "per_dst_ip", "key_fields": ["DstIP"]},
                        {"name": "per_src_ip", "key_fields": ["SrcIP"]},
                    ],
                },
                "sketch": {"writers": [writer] if spread else [], "tasks": sketch_tasks},
            },
            "alerter": {
                "enabled": True,
                "check_interval": f"{INTERVAL}s",
                "state_dir": str(tmp_path / "alerts"),
                "rules": rules,
            },
        }
    )


def traffic(tmp_path: Path, *, planted: bool) -> Any:
    base = base_traffic(tmp_path, seconds=int(END) + 10)
    # the no-false-alarm precondition, from the packets: no target of normal traffic is anywhere
    # near 100 packets/s in any check interval (else the test would prove nothing)
    buckets = (base.ts_ns // NS - T0) // int(INTERVAL)
    targets = [address_text(row) for row in base.dst_ip]
    per_bucket: dict[tuple[int, str], int] = {}
    for bucket, target in zip(buckets.tolist(), targets, strict=True):
        per_bucket[(bucket, target)] = per_bucket.get((bucket, target), 0) + 1
    assert max(per_bucket.values()) / INTERVAL < 50
    if not planted:
        return base
    return concat(
        [
            without(base, *STOP),
            ddos(tmp_path, DDOS[0], DDOS[1] - DDOS[0], 1000),
            scan(tmp_path, SCAN[0], SCAN[1] - SCAN[0], 3000),
        ]
    )


def timeline(made: list[tuple[float, Any]]) -> dict[str, list[tuple[str, float, str]]]:
    found: dict[str, list[tuple[str, float, str]]] = {}
    for at, note in made:
        found.setdefault(note.rule, []).append((note.status, at, note.key))
    return found


def check_planted(found: dict[str, list[tuple[str, float, str]]], rules: set[str]) -> None:
    ddos_events = found.pop("ddos")
    assert [(s, k) for s, _, k in ddos_events] == [
        ("firing", "DstIP=198.18.0.1"),
        ("resolved", "DstIP=198.18.0.1"),
    ]
    fired, resolved = ddos_events[0][1], ddos_events[1][1]
    assert DDOS[0] < fired <= DDOS[0] + FOR["ddos"] + INTERVAL
    assert DDOS[1] < resolved <= DDOS[1] + 2 * INTERVAL
    stopped = found.pop("stopped")
    assert [s for s, _, _ in stopped] == ["firing", "resolved"]
    assert STOP[0] < stopped[0][1] <= STOP[0] + FOR["stopped"] + INTERVAL
    assert STOP[1] < stopped[1][1] <= STOP[1] + 2 * INTERVAL
    if "scan" in rules:
        scans = found.pop("scan")
        assert [s for s, _, _ in scans] == ["firing", "resolved"]
        assert scans[0][2] == "198.18.0.1"  # the swapped spreader: the scanning source
        assert SCAN[0] < scans[0][1] <= SCAN[0] + FOR["scan"] + INTERVAL
        # the period ended: the spread starts from zero (a hitter counts as reported for 1.5 intervals)
        assert PERIOD < scans[1][1] <= PERIOD + 2 * INTERVAL
    assert found == {}


async def test_planted_ddos_scan_and_traffic_stop_fire_in_time_and_resolve(tmp_path: Path) -> None:
    config = settings(tmp_path)
    async with TraceRig(config) as rig:
        made = await rig.run(traffic(tmp_path, planted=True), END, INTERVAL)
    check_planted(timeline(made), {"ddos", "stopped", "scan"})


async def test_the_same_traffic_without_the_events_fires_nothing(tmp_path: Path) -> None:
    async with TraceRig(settings(tmp_path)) as rig:
        made = await rig.run(traffic(tmp_path, planted=False), END, INTERVAL)
        assert made == []
        assert rig.alerter.book.active == {}


async def test_two_engines_in_a_queue_group_fire_what_one_engine_fires(
    tmp_path: Path, clickhouse_server: Any, clickhouse_database: str
) -> None:
    """One engine on the embedded store against two engines (packets dealt round robin, as a queue
    group deals messages) writing to one ClickHouse server: the same notifications, at the same
    trace times, for the same flows."""
    store = {
        "host": clickhouse_server.host,
        "port": clickhouse_server.tcp_port,
        "database": clickhouse_database,
    }
    store["queue_dir"] = str(tmp_path / "spool")
    packets = traffic(tmp_path, planted=True)
    found = {}
    for engines in (1, 2):
        (tmp_path / f"run{engines}").mkdir()
        clickhouse = store if engines == 2 else None
        config = settings(tmp_path / f"run{engines}", clickhouse=clickhouse, spread=False)
        async with TraceRig(config, engines=engines) as rig:
            made = await rig.run(packets, STOP[1] + 3 * INTERVAL, INTERVAL)
        found[engines] = timeline(made)
    assert found[1] == found[2]
    check_planted(found[2], {"ddos", "stopped"})
