"""Windows over snapshots taken in trace time equal a brute-force count of exactly the window's packets.

Real engines (the Engine with its exact group and store writers, clocked by the trace: a
snapshot every 5 s of trace time, a period reset every 25 s) write to a real clickhouse-server
and to the embedded store. On the server two engines share the stream (each packet goes to one
at random, as a queue group splits it) and one of them is restarted mid-trace as a new
incarnation of its engine id. Every window's AggregateFlows and TraceFlow is compared with a
plain Python count over the generator's packets in that window; the query never sees the
packets, only the snapshot rows.

What a window (start, end] counts: every packet counted after the latest snapshot at or before
``start`` and up to the latest at or before ``end`` — with snapshots on 5 s boundaries of trace
time, the packets with ``snap(start) <= ts < snap(end)``. First seen is the flow's first packet in
the window unless one of its engines had already counted it earlier in the same period (then
the window's start); last seen is its last packet in the window.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from netspectra.config.models import Settings
from netspectra.engine.engine import Engine
from netspectra.engine.groups import build_groups
from netspectra.model.fields import KeyField, address_text
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import Snapshot
from netspectra.model.writer import SnapshotWriter
from netspectra.storage.context import StorageContext
from netspectra.storage.query import FlowFilter, QueryStore, TaskTotals
from netspectra.storage.registry import build_writer
from netspectra.synth.traffic import TrafficSpec, write_trace
from tests.fixtures.clickhouse import ClickHouseServer
from tests.integration.durability_helpers import clickhouse_section, query_store
from tests.integration.pipeline_helpers import TASKS, wait_for

NS = 1_000_000_000
T = 1_700_000_000  # the trace's first second (TrafficSpec.start_ns)
STEP = 5  # seconds of trace time between snapshots
PERIOD = 25  # seconds of trace time between period resets
DURATION = 60
RESTART_AT = T + 30  # the restarted engine's new incarnation starts here


class Recorder:
    """Passes snapshots on to a store writer; the test waits on ``seen`` before the next step.

    The engine replaces a snapshot still waiting in its queue by a newer one of the same period;
    waiting for each one to be handed over keeps every 5 s snapshot, so windows are exact.
    """

    def __init__(self, inner: SnapshotWriter) -> None:
        self.inner = inner
        self.seen: list[int] = []

    async def write(self, snapshot: Snapshot) -> None:
        await self.inner.write(snapshot)
        self.seen.append(snapshot.taken_at_ns // NS)

    async def close(self) -> None:
        await self.inner.close()

    def __getattr__(self, name: str) -> Any:  # start, stats, flush
        return getattr(self.inner, name)


@dataclass
class Incarnation:
    """One engine incarnation and the trace time from which it counts."""

    engine: Engine
    recorder: Recorder
    context: StorageContext
    started: int
    label: str


def settings_for(writer: dict[str, Any]) -> Settings:
    return Settings.model_validate(
        {
            "aggregator": {
                "types": ["exact"],
                "period": f"{PERIOD}s",
                "exact": {
                    "writers": [writer],
                    "tasks": [{"name": name, "key_fields": fields} for name, fields in TASKS.items()],
                },
            },
            "engine": {"kernel_threads": 1},
        }
    )


async def start_incarnation(
    settings: Settings, context: StorageContext, clock: list[int], label: str
) -> Incarnation:
    config = settings.aggregator.exact.writers[0]
    recorder = Recorder(build_writer(config, "exact", context))
    engine = Engine(
        build_groups(settings),
        {"exact": [(config, recorder)]},
        period_s=settings.aggregator.period,
        clock=lambda: clock[0] * NS,
        kernel_threads=1,
    )
    await engine.start(schedule=False)
    await engine.start_writers()
    return Incarnation(engine, recorder, context, clock[0], label)


def select(packets: PacketColumns, mask: np.ndarray) -> PacketColumns:
    return PacketColumns(
        **{f.name: getattr(packets, f.name)[mask].copy() for f in dataclasses.fields(PacketColumns)}
    )


@dataclass
class Run:
    store: QueryStore
    #: per packet: (ts seconds, packet length, key of each task, the engine incarnation that
    #: counted it and which of its periods)
    packets: list[tuple[int, int, dict[str, tuple[object, ...]], tuple[str, int]]]
    contexts: list[StorageContext] = field(default_factory=list)


def packet_keys(packets: PacketColumns) -> list[dict[str, tuple[object, ...]]]:
    value = {
        "SrcIP": lambda i: address_text(packets.src_ip[i]),
        "DstIP": lambda i: address_text(packets.dst_ip[i]),
        "SrcPort": lambda i: int(packets.src_port[i]),
        "DstPort": lambda i: int(packets.dst_port[i]),
        "Protocol": lambda i: int(packets.protocol[i]),
    }
    return [
        {task: tuple(value[name](i) for name in names) for task, names in TASKS.items()}
        for i in range(len(packets))
    ]


async def replay(
    trace: Path, settings: Settings, contexts: dict[str, StorageContext], restart: str | None
) -> tuple[list[tuple[int, int, dict[str, tuple[object, ...]], tuple[str, int]]], list[StorageContext]]:
    """Feed the trace 5 s at a time to the engines, snapshot at each step; restart one at RESTART_AT."""
    packets = write_trace(trace, TrafficSpec(packets=24_000, flows=300, seed=57, duration_s=59.0)).packets
    ts = packets.ts_ns // NS
    assert int(ts.min()) >= T and int(ts.max()) < T + DURATION
    clock = [T]
    running = {name: await start_incarnation(settings, ctx, clock, name) for name, ctx in contexts.items()}
    opened = list(contexts.values())
    names = list(running)
    owner = np.random.default_rng(5).integers(0, len(names), len(packets))  # as a queue group splits
    segment: list[tuple[str, int]] = [("", 0)] * len(packets)
    for step_end in range(T + STEP, T + DURATION + 1, STEP):
        in_step = (ts >= step_end - STEP) & (ts < step_end)
        for index, name in enumerate(names):
            mask = in_step & (owner == index)
            live = running[name]
            for row in np.flatnonzero(mask):
                segment[row] = (live.label, (int(ts[row]) - live.started) // PERIOD)
            await live.engine.ingest(select(packets, mask))
        clock[0] = step_end
        for live in running.values():
            await live.engine.run_due()
        for live in running.values():
            await wait_for(lambda live=live, at=step_end: at in live.recorder.seen, timeout=60)
        if restart is not None and step_end == RESTART_AT:
            await running[restart].engine.close()  # final snapshot at RESTART_AT, lease released
            again = StorageContext(engine_id=restart, incarnation="second")
            opened.append(again)
            running[restart] = await start_incarnation(settings, again, clock, f"{restart}-again")
    for live in running.values():
        await live.engine.close()
    keys = packet_keys(packets)
    rows = [(int(ts[i]), int(packets.length[i]), keys[i], segment[i]) for i in range(len(packets))]
    return rows, opened


@pytest.fixture(params=["clickhouse", "embedded"])
async def run(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Run]:
    if request.param == "clickhouse":
        server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
        database = request.getfixturevalue("clickhouse_database")
        writer = {
            "type": "clickhouse",
            "snapshot_interval": f"{STEP}s",
            "clickhouse": clickhouse_section(server, database, tmp_path / "spool"),
        }
        contexts = {
            "a": StorageContext(engine_id="a", incarnation="first"),
            "b": StorageContext(engine_id="b", incarnation="first"),
        }
        restart: str | None = "a"
    else:  # one process, one chdb session: one engine
        writer = {
            "type": "embedded",
            "snapshot_interval": f"{STEP}s",
            "embedded": {"path": str(tmp_path / "db")},
        }
        contexts = {"a": StorageContext(engine_id="a")}
        restart = None
    settings = settings_for(writer)
    packets, opened = await replay(tmp_path / "trace.pcap", settings, contexts, restart)
    if request.param == "clickhouse":
        store = query_store(server, database)
    else:
        store = QueryStore(contexts["a"].embedded_session(tmp_path / "db"), description="embedded")
    try:
        yield Run(store, packets, opened)
    finally:
        if request.param == "clickhouse":
            await store.backend.close()
        for context in opened:
            await context.close()


def snapped(moment: int) -> int:
    """The latest snapshot at or before ``moment`` (every STEP seconds from T)."""
    return T + (moment - T) // STEP * STEP


Truth = dict[tuple[object, ...], list[int]]  # key → [packets, bytes, first, last]


def window_truth(run: Run, task: str, start: int, end: int) -> Truth:
    """Per flow: its packets in the window, bytes, first seen and last seen (see the module doc).

    First seen per engine incarnation: its first packet in the window, unless that packet's
    period had already counted the flow before the window (then the start, never after that
    engine's last packet in the window); the flow's is the earliest over its engines.
    """
    lower, upper = snapped(start), snapped(end)
    active_before = {(keys[task], seg) for ts, _, keys, seg in run.packets if ts < lower}
    per_engine: dict[tuple[object, ...], dict[str, list[int]]] = {}
    for ts, size, keys, seg in sorted(run.packets, key=lambda p: p[0]):
        if not lower <= ts < upper:
            continue
        key = keys[task]
        entry = per_engine.setdefault(key, {}).get(seg[0])
        if entry is None:  # [packets, bytes, first packet, last packet, continues]
            entry = per_engine[key][seg[0]] = [0, 0, ts, ts, int((key, seg) in active_before)]
        entry[0] += 1
        entry[1] += size
        entry[3] = ts
    flows: Truth = {}
    for key, engines in per_engine.items():
        firsts = [min(start, e[3]) if e[4] else e[2] for e in engines.values()]
        flows[key] = [
            sum(e[0] for e in engines.values()),
            sum(e[1] for e in engines.values()),
            min(firsts),
            max(e[3] for e in engines.values()),
        ]
    return flows


#: Within a period, across resets (25, 50), across the restart (30), off the snapshot grid.
WINDOWS = [(T, T + 60), (T + 5, T + 20), (T + 10, T + 35), (T + 20, T + 30), (T + 25, T + 50),
           (T + 30, T + 45), (T + 45, T + 60), (T + 12, T + 43), (T + 30, T + 30)]  # fmt: skip


async def test_aggregate_flows_over_windows_equal_the_windows_packets(run: Run) -> None:
    for start, end in WINDOWS:
        expected = []
        for task in sorted(TASKS):
            flows = window_truth(run, task, start, end)
            if flows:
                expected.append(
                    TaskTotals(
                        task, sum(f[1] for f in flows.values()), sum(f[0] for f in flows.values()), len(flows)
                    )
                )
        assert await run.store.aggregate_flows(FlowFilter(start=start, end=end)) == expected, (start, end)
    # the whole trace as one window: every flow once, though two engines and two incarnations of one
    # counted it, across two period resets
    whole = {
        t.task: (t.total_packets, t.flow_count) for t in await run.store.aggregate_flows(FlowFilter(start=T))
    }
    assert whole == {
        task: (len(run.packets), len({keys[task] for _, _, keys, _ in run.packets})) for task in TASKS
    }


async def test_trace_flow_over_windows_equals_the_windows_packets(run: Run) -> None:
    rng = np.random.default_rng(9)
    fields = {name: KeyField(name) for names in TASKS.values() for name in names}
    for start, end in WINDOWS[:-1]:
        for task in ("per_five_tuple", "per_src_ip"):
            flows = window_truth(run, task, start, end)
            everything = window_truth(run, task, T, T + DURATION)
            chosen = sorted(flows, key=lambda k: -flows[k][0])[:3]
            chosen += [list(flows)[i] for i in rng.choice(len(flows), 3, replace=False)]
            absent = [key for key in everything if key not in flows][:1]
            for key in chosen + absent:
                query = {fields[name]: value for name, value in zip(TASKS[task], key, strict=True)}
                trace = await run.store.trace_flow(task, query, end, start)  # type: ignore[arg-type]
                if key in absent:
                    assert trace is None, (task, key, start, end)
                    continue
                assert trace is not None, (task, key, start, end)
                packets, size, first, last = flows[key]
                assert (trace.packets, trace.bytes, trace.first_seen, trace.last_seen) == (
                    packets,
                    size,
                    first,
                    last,
                ), (task, key, start, end)
