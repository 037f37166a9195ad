"""Benchmark: how fast an alert fires after its event starts, and what 20 rules cost the engine.

    python bench/alerting.py [--seconds 360] [--packets 2000000] [--repeat 3] [--duration 30] [--smoke]

1. **Detection latency per rule kind.** A generated trace (200 packets/s of normal traffic) with a
   planted DDoS (one target, 1000 packets/s), a fast scan (one source, 3000 targets in 2.5 s) and
   a traffic stop is counted on trace time by the real engine into the embedded store, and the
   alerter checks after every snapshot (writers snapshot at the check interval), at the default
   ``check_interval`` (30 s) and at 1 s. Printed per rule kind: trace seconds from the event's
   first packet to the firing notification, and the wall time from that check's start to the
   notification leaving the channel (the check's store reads plus delivery). Ratio: 30 s / 1 s.
2. **Engine throughput with 20 rules, under sustained load.** The default config's tasks count a
   ``--packets`` trace over and over, back to back, for ``--duration`` seconds (batches of 65 536,
   store writers every 2 s): the engine is saturated the whole time, while the alerter of 20 rules
   over those tasks checks every second in the same process, reading the same store (so the
   run holds ``--duration`` checks, each reading what the writers stored meanwhile). Runs
   alternate, without and with the alerter, ``--repeat`` pairs in the same command; each pair's
   ratio is rate without / rate with (1.00x = free), and the median of the pairs is the figure.
   Printed beside it: the checks each run with the alerter made and how long they took (a check
   slower than its interval means the alerter never idles), and the load average before and
   after, since the machine is shared and absolute rates are upper bounds.

``--smoke``: a 50-second trace, 10 s and 2 s checks, 50 000 packets for 3 s, one pair.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from netspectra.alerting.state import Notification
from netspectra.app import build_alerter, build_engine, build_storage
from netspectra.config.loader import load_settings
from netspectra.config.models import Settings
from netspectra.synth.traffic import TrafficSpec, write_trace
from tests.integration.alerting_helpers import T0, TraceRig, base_traffic, concat, ddos, scan, without

KINDS = {
    "ddos": "per-flow rate (flow_packets/s of a target)",
    "surge": "task rate (total_packets/s)",
    "scan": "hitter (super_spreader_spread)",
    "stopped": "baseline (EWMA, traffic stopped)",
}


class StampedChannel:
    """Records the wall time each notification leaves."""

    name = "stamped"

    def __init__(self) -> None:
        self.sent: list[tuple[float, Notification]] = []

    async def send(self, notes: Sequence[Notification]) -> None:
        now = time.perf_counter()
        self.sent.extend((now, note) for note in notes)


def latency_settings(root: Path, interval: float, length: float) -> Settings:
    writer = {
        "type": "embedded",
        "snapshot_interval": f"{interval}s",
        "embedded": {"path": str(root / "store")},
    }
    window = f"{max(interval, 1.0)}s"
    rules = [
        {
            "name": "ddos",
            "task_name": "per_dst_ip",
            "metric": "flow_packets",
            "window": window,
            "threshold": 100,
        },
        {
            "name": "surge",
            "task_name": "per_dst_ip",
            "metric": "total_packets",
            "window": window,
            "threshold": 600,
        },
        {"name": "scan", "task_name": "ss_src_dst", "metric": "super_spreader_spread", "threshold": 1000},
        {
            "name": "stopped",
            "task_name": "per_src_ip",
            "metric": "total_packets",
            "window": window,
            "baseline": {"method": "ewma", "factor": 4, "direction": "below", "warmup": 3},
        },
    ]
    sketch = {
        "name": "ss_src_dst",
        "skt_type": 1,
        "flow_fields": ["SrcIP"],
        "element_fields": ["DstIP"],
        "width": 4096,
        "depth": 2,
        "count_thereshold": 50,
    }
    return Settings.model_validate(
        {
            "aggregator": {
                "period": f"{length * 2}s",
                "exact": {
                    "writers": [writer],
                    "tasks": [
                        {"name": "per_dst_ip", "key_fields": ["DstIP"]},
                        {"name": "per_src_ip", "key_fields": ["SrcIP"]},
                    ],
                },
                "sketch": {"writers": [writer], "tasks": [sketch]},
            },
            "alerter": {
                "enabled": True,
                "check_interval": f"{interval}s",
                "state_dir": str(root / "alerts"),
                "rules": rules,
            },
        }
    )


async def detection(root: Path, interval: float, length: float) -> dict[str, tuple[float, float]]:
    """Rule name → (trace seconds to fire, wall seconds from that check's start to the send)."""
    starts = {"ddos": 0.3 * length + 0.3, "scan": 0.55 * length + 0.3, "stopped": 0.8 * length + 0.3}
    starts["surge"] = starts["ddos"]
    base = base_traffic(root, seconds=int(length) + 10)
    packets = concat(
        [
            without(base, starts["stopped"], 0.95 * length),
            ddos(root, starts["ddos"], 0.1 * length, 1000),
            scan(root, starts["scan"], 2.5, 3000),
        ]
    )
    settings = latency_settings(root, interval, length)
    channel = StampedChannel()
    found: dict[str, tuple[float, float]] = {}
    async with TraceRig(settings) as rig:
        rig.alerter.outboxes.clear()
        from netspectra.alerting.delivery import Outbox

        rig.alerter.outboxes["stamped"] = Outbox(channel)
        stop = asyncio.Event()
        delivery = asyncio.create_task(rig.alerter.deliver(stop))
        try:
            while rig.now < T0 + length:
                began = time.perf_counter()
                made = await rig.step(packets, rig.now + interval)
                await rig.alerter.wait_delivered(60)
                for note in made:
                    if note.status == "firing" and note.rule not in found:
                        left = next(at for at, sent in channel.sent if sent.id == note.id)
                        found[note.rule] = (note.at - T0 - starts[note.rule], left - began)
        finally:
            stop.set()
            await delivery
    return found


def cost_settings(root: Path) -> Settings:
    default = Path(__file__).resolve().parents[1] / "netspectra" / "default_config.yaml"
    raw = load_settings(default, {}).model_dump(by_alias=False, mode="json")
    for group in ("exact", "sketch"):
        for writer in raw["aggregator"][group]["writers"]:
            if writer["type"] == "embedded":
                writer["snapshot_interval"] = "2s"
                writer["embedded"] = {"path": str(root / "store")}
    exact = [t["name"] for t in raw["aggregator"]["exact"]["tasks"]]
    rules: list[dict[str, Any]] = []
    for index in range(20):
        task = exact[index % len(exact)]
        kind = index % 4
        rule: dict[str, Any] = {"name": f"rule{index}", "task_name": task, "threshold": 1e12}
        if kind == 0:
            rule.update(metric="total_bytes")
        elif kind == 1:
            rule.update(metric="flow_packets", window="5s")
        elif kind == 2:
            rule.update(task_name="cm_src_left", metric="heavy_hitter_count")
        else:
            rule.update(metric="total_packets", window="5s", baseline={"direction": "both"})
        rules.append(rule)
    raw["alerter"] = {
        "enabled": True,
        "check_interval": "1s",
        "state_dir": str(root / "alerts"),
        "rules": rules,
    }
    raw.pop("smtp", None)
    raw.pop("ai", None)
    return Settings.model_validate(raw)


@dataclass
class Run:
    """One throughput run: packets/s, and the alerter's checks (seconds each) when it ran."""

    rate: float
    checks: list[float] = field(default_factory=list)


async def throughput(root: Path, packets: Any, with_alerter: bool, duration: float) -> Run:
    settings = cost_settings(root)
    storage = build_storage(settings, engine_id="bench", incarnation=str(time.time_ns()))
    engine = build_engine(settings, storage)
    stop = asyncio.Event()
    task = None
    checks: list[float] = []
    try:
        await engine.start()
        await engine.start_writers()
        if with_alerter:
            alerter = build_alerter(settings, storage)
            check = alerter.check

            async def timed(now: float | None = None) -> list[Notification]:
                began = time.perf_counter()
                try:
                    return await check(now)
                finally:
                    checks.append(time.perf_counter() - began)

            alerter.check = timed  # type: ignore[method-assign]
            task = asyncio.create_task(alerter.serve(stop))
        batch = 65_536
        batches = [cut(packets, start, batch) for start in range(0, len(packets), batch)]
        counted = 0
        began = time.perf_counter()
        while time.perf_counter() - began < duration:  # the trace again and again, for `duration`
            for one in batches:
                await engine.ingest(one)
                counted += len(one)
        elapsed = time.perf_counter() - began
    finally:
        stop.set()
        if task is not None:
            await task
        await engine.close()
        await storage.close()
    return Run(counted / elapsed, checks)


def cut(packets: Any, start: int, size: int) -> Any:
    from netspectra.model.packets import PacketColumns

    fields = ("ts_ns", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "length", "ip_version")
    return PacketColumns(*(getattr(packets, f)[start : start + size] for f in fields))


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=360.0, help="trace length for the latency part")
    parser.add_argument("--packets", type=int, default=2_000_000, help="packets for the throughput part")
    parser.add_argument("--repeat", type=int, default=3, help="alternating pairs of throughput runs")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of counting per throughput run")
    parser.add_argument("--smoke", action="store_true", help="a short trace, 50 000 packets, one short pair")
    args = parser.parse_args()
    intervals = (30.0, 1.0)
    if args.smoke:
        args.seconds, args.packets, args.repeat, args.duration = 50.0, 50_000, 1, 3.0
        intervals = (10.0, 2.0)
    with tempfile.TemporaryDirectory(prefix="bench-alerting-") as temporary:
        root = Path(temporary)
        results = {}
        for interval in intervals:
            (root / f"latency{interval:g}").mkdir()
            results[interval] = await detection(root / f"latency{interval:g}", interval, args.seconds)
        slow, fast = intervals
        print(
            "Detection latency (trace seconds from the event's first packet to the firing "
            "notification; for: 0)"
        )
        print(
            f"{'rule kind':46} {f'{slow:g} s checks':>16} {f'{fast:g} s checks':>16}  ratio   wall check+send"
        )
        for rule, kind in KINDS.items():
            a, b = results[slow].get(rule), results[fast].get(rule)
            if a is None or b is None:
                print(f"{kind:46} {'not fired' if a is None else f'{a[0]:.1f} s':>16} "
                      f"{'not fired' if b is None else f'{b[0]:.1f} s':>16}")  # fmt: skip
                continue
            ratio = a[0] / b[0] if b[0] > 0 else float("inf")
            print(
                f"{kind:46} {a[0]:>14.1f} s {b[0]:>14.1f} s  {ratio:5.1f}x  "
                f"{a[1] * 1000:.0f} / {b[1] * 1000:.0f} ms"
            )
        trace = write_trace(
            root / "cost.pcap", TrafficSpec(packets=args.packets, flows=20_000, seed=3)
        ).packets
        (root / "cost-warmup").mkdir()
        await throughput(root / "cost-warmup", trace, True, 1.0)  # numba caches, chdb, page cache
        load_before = os.getloadavg()
        pairs: list[tuple[Run, Run]] = []
        for attempt in range(args.repeat):
            runs = []
            for label in ("plain", "alerted"):
                run_root = root / f"cost-{label}-{attempt}"
                run_root.mkdir()
                runs.append(await throughput(run_root, trace, label == "alerted", args.duration))
            pairs.append((runs[0], runs[1]))
        load_after = os.getloadavg()
        print()
        print(
            f"Engine throughput under sustained load, default config tasks, {args.duration:g} s runs, "
            f"{args.repeat} alternating pair(s):"
        )
        print(f"  {'pair':>4} {'without':>14} {'with 20 rules':>14}  ratio  checks  check median / max")
        ratios = []
        for index, (plain, alerted) in enumerate(pairs, 1):
            ratio = plain.rate / alerted.rate
            ratios.append(ratio)
            times = sorted(alerted.checks) or [0.0]
            print(
                f"  {index:>4} {plain.rate:>10,.0f} p/s {alerted.rate:>10,.0f} p/s  {ratio:4.2f}x  "
                f"{len(alerted.checks):>6}  {statistics.median(times) * 1000:.0f} / {times[-1] * 1000:.0f} ms"
            )
        spread = f"{min(ratios):.2f}x .. {max(ratios):.2f}x"
        median = statistics.median(ratios)
        print(f"  cost of the alerter: {median:.2f}x median of the pairs ({spread}; 1.00x = free)")
        before, after = (" ".join(f"{v:.1f}" for v in load) for load in (load_before, load_after))
        print(f"  load average (1, 5, 15 min): {before} before, {after} after")


if __name__ == "__main__":
    asyncio.run(main())
