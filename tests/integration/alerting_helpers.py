"""Traces with planted events, and a rig that counts them at trace time and lets the alerter check.

The rig is the real path an alert takes: generator packets → the engine's groups → the store's
writers (embedded chdb, or one ClickHouse server shared by several engines) → the query layer's
merged view → the alerter. Only time is the test's: the engines' clock and the alerter's ``now``
are the trace's time, stepped one check interval at a time, so a 5-minute trace needs no
5-minute wait and no result depends on the machine's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from netspectra.alerting.alerter import Alerter
from netspectra.alerting.state import Notification
from netspectra.app import build_alerter, build_storage
from netspectra.config.models import Settings, WriterConfig
from netspectra.engine.engine import Engine
from netspectra.engine.groups import build_groups
from netspectra.model.packets import PacketColumns
from netspectra.storage.context import StorageContext
from netspectra.storage.registry import build_writer
from netspectra.synth.traffic import TrafficSpec, write_trace

NS = 1_000_000_000
T0 = 1_750_000_000  # trace start, epoch seconds (a whole check interval)


def generated(tmp: Any, name: str, spec: TrafficSpec) -> PacketColumns:
    """The generator's own truth packets of a trace it wrote (what an ideal parser reads)."""
    return write_trace(tmp / f"{name}.pcap", spec).packets


def concat(parts: Sequence[PacketColumns]) -> PacketColumns:
    fields = ("ts_ns", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "length", "ip_version")
    merged = {f: np.concatenate([getattr(p, f) for p in parts]) for f in fields}
    order = np.argsort(merged["ts_ns"], kind="stable")
    return PacketColumns(**{f: np.ascontiguousarray(v[order]) for f, v in merged.items()})


def select(packets: PacketColumns, mask: np.ndarray) -> PacketColumns:
    return PacketColumns(
        *(
            np.ascontiguousarray(getattr(packets, f)[mask])
            for f in ("ts_ns", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "length", "ip_version")
        )
    )


def base_traffic(tmp: Any, seconds: int = 330, rate: int = 200, seed: int = 5) -> PacketColumns:
    spec = TrafficSpec(
        packets=seconds * rate,
        flows=300,
        seed=seed,
        start_ns=T0 * NS,
        duration_s=float(seconds),
        arp_fraction=0.0,
    )
    return generated(tmp, f"base{seed}", spec)


def ddos(tmp: Any, start: float, seconds: float, rate: int) -> PacketColumns:
    """Many sources flooding one target (the generator's planted spreader 198.18.0.1)."""
    n = int(seconds * rate)
    spec = TrafficSpec(
        packets=n,
        flows=1,
        seed=11,
        spreaders=1,
        spreader_fanout=n,
        start_ns=int((T0 + start) * NS),
        duration_s=seconds,
        arp_fraction=0.0,
    )
    return generated(tmp, "ddos", spec)


def scan(tmp: Any, start: float, seconds: float, targets: int) -> PacketColumns:
    """One source probing many targets: a planted spreader with source and destination swapped."""
    flood = ddos(tmp, start, seconds, int(targets / seconds))
    return PacketColumns(
        flood.ts_ns,
        flood.dst_ip.copy(),
        flood.src_ip.copy(),
        flood.dst_port.copy(),
        flood.src_port.copy(),
        flood.protocol,
        flood.length,
        flood.ip_version,
    )


def without(packets: PacketColumns, start: float, end: float) -> PacketColumns:
    """``packets`` with nothing in [start, end) trace seconds: the traffic stopped."""
    t = packets.ts_ns
    return select(packets, (t < (T0 + start) * NS) | (t >= (T0 + end) * NS))


@dataclass
class _EngineSlot:
    engine: Engine
    writers: list[Any]
    storage: StorageContext


class TraceRig:
    """``engines`` engines (packets dealt round robin, as a queue group deals messages) writing to
    the store of ``settings``, and the alerter ``build_alerter`` makes, all on trace time."""

    def __init__(self, settings: Settings, engines: int = 1) -> None:
        self.settings = settings
        self.now = float(T0)
        self.slots: list[_EngineSlot] = []
        self.alert_storage = build_storage(settings, engine_id="alerter")
        for index in range(engines):
            storage = (
                build_storage(settings, engine_id=f"e{index}", incarnation="i1")
                if engines > 1
                else (self.alert_storage)
            )
            groups = build_groups(settings)
            writers: dict[str, list[tuple[WriterConfig, Any]]] = {}
            mine = []
            for name in groups:
                for config in getattr(settings.aggregator, name).writers:
                    if config.enabled:
                        writer = build_writer(config, name, storage)
                        writers.setdefault(name, []).append((config, writer))
                        mine.append(writer)
            engine = Engine(
                groups,
                writers,
                period_s=settings.aggregator.period,
                clock=lambda: int(self.now * NS),
                kernel_threads=1,
            )
            self.slots.append(_EngineSlot(engine, mine, storage))
        self.alerter: Alerter = build_alerter(settings, self.alert_storage, clock=lambda: self.now)
        self.snapshots = 0

    async def __aenter__(self) -> TraceRig:
        for slot in self.slots:
            await slot.engine.start(schedule=False)
            await slot.engine.start_writers()
        return self

    async def __aexit__(self, *exc: object) -> None:
        for slot in self.slots:
            await slot.engine.close()
        seen = set()
        for slot in [*self.slots, _EngineSlot(None, [], self.alert_storage)]:  # type: ignore[arg-type]
            if id(slot.storage) not in seen:
                seen.add(id(slot.storage))
                await slot.storage.close()

    async def step(self, packets: PacketColumns, until: float) -> list[Notification]:
        """Count the packets in [now, until), snapshot every writer at ``until``, wait until the
        store has them, then run one alert check at ``until``."""
        t = packets.ts_ns
        mask = (t >= int(self.now * NS)) & (t < int(until * NS))
        batch = select(packets, mask)
        for index, slot in enumerate(self.slots):
            share = select(batch, np.arange(len(batch)) % len(self.slots) == index)
            if len(share):
                slot.engine.ingest_sync(share)
        self.now = until
        self.snapshots += 1
        for slot in self.slots:
            await slot.engine.run_due()
        for slot in self.slots:
            for writer in slot.writers:
                await wait_until(lambda w=writer: w.written >= self.snapshots, 120)
        return await self.alerter.check(now=until)

    async def run(
        self, packets: PacketColumns, end: float, interval: float
    ) -> list[tuple[float, Notification]]:
        """Step to trace second ``end``; every notification with the trace second it was made."""
        made = []
        while self.now < T0 + end - 1e-9:
            until = self.now + interval
            made += [(until - T0, note) for note in await self.step(packets, until)]
        return made


async def wait_until(predicate: Any, timeout: float) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)
