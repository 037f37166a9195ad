"""Sketch state: merge + query cost, the engine's cost of storing state, state size, accuracy.

    python bench/sketch_state.py [--smoke] [--clickhouse HOST:PORT/DATABASE]

1. QueryHeavyHitters over 4 engines x 24 epochs of a count_min at width 32768, depth 2 (the
   default count tasks), through the store (embedded chdb unless --clickhouse): p50/p99 of the
   cold query (a fresh query store: every state read, decoded, merged, hitters scanned) and of
   the warm one (state keys read, the merged sketch the query store keeps), beside the
   single-epoch query (1 engine x 1 epoch) as a ratio. The epochs are stored with their runs of
   8 (sketch_state_runs, made by engine/sketch/runs.py as the engine makes them): the cold query
   reads 12 run states instead of 96 epochs; the same epochs without runs (``epochs only``) are
   queried interleaved with it, as a ratio. The same cold query over the same states stored in
   format version 1 (zlib), without runs, read as hex, as the query store read them before
   (``old path``), interleaved too. The target is p99 <= 100 ms, cold.
   A window of 12 epochs sliding by one epoch (a fresh query store: each step reads, decodes and
   merges the new epochs and re-adds the kept sums of aligned runs) is printed beside it, with
   runs and without (with runs, the first window reads a run where it can, so the step that first
   cuts that run reads its epochs then).
2. Engine throughput with the whole default config (6 exact + 3 sketch tasks) with state
   snapshots (epochs, and a run state every 8th) vs without (include_state=False), best of
   --repeat alternating runs; the trace is fed 8 times with a snapshot every 2^22 packets (~3 s
   here; the default interval is 60 s), so the 8th snapshot closes a run of 8 epochs per task,
   and the extra time per snapshot is printed with what it costs at the 60 s default.
3. State bytes per task per snapshot (format 2: shuffled, zstd; as stored) from that run, and
   per run state.
4. Accuracy at equal memory on one Zipf trace with planted spreaders, on 1 and 4 engines
   (packet-by-packet split): count_min (merged states) vs Go's variant (hitter rows summed
   across engines, as Go's readers do); spread_sketch (merged states) vs super_spread (rows:
   max across engines) at the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from netspectra.config.models import Settings
from netspectra.engine.engine import Engine
from netspectra.engine.groups import build_groups
from netspectra.engine.sketch.count_min import CountMin, CountMinParams
from netspectra.engine.sketch.group import SketchGroup
from netspectra.engine.sketch.merging import labelled, merge_states
from netspectra.engine.sketch.protocol import encode_state
from netspectra.engine.sketch.runs import RUN_EPOCHS, closes_run, covers, run_state, state_check
from netspectra.engine.sketch.spread_sketch import SpreadSketch, SpreadSketchParams
from netspectra.engine.sketch.super_spread import SuperSpread, SuperSpreadParams
from netspectra.model.fields import KeyField, address_text
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import HitterKind, Snapshot
from netspectra.storage.sql import RUN_COLUMNS, STATE_COLUMNS
from netspectra.synth.traffic import TrafficSpec, write_trace
from netspectra.wire.generated import v1

T = 1_760_000_000
NS = 1_000_000_000
ROOT = Path(__file__).resolve().parents[1]


def zipf_keys(rng: np.random.Generator, packets: int, flows: int) -> tuple[np.ndarray, np.ndarray]:
    weights = np.arange(1, flows + 1, dtype=np.float64) ** -1.1
    ids = rng.choice(flows, size=packets, p=weights / weights.sum())
    keys = np.zeros((packets, 16), np.uint8)
    keys[:, 10:12] = 0xFF
    keys[:, 12:16] = (ids.astype(np.uint32) + (10 << 24)).astype(">u4").view(np.uint8).reshape(-1, 4)
    return keys, rng.integers(60, 1500, packets).astype(np.uint64)


# --- 1. merge + query ---------------------------------------------------------------------------


async def store_states(backend: Any, engines: int, epochs: int, packets: int, params: CountMinParams) -> None:
    """Each engine's epoch states of one count_min task (and one single-epoch task), stored with
    their runs of RUN_EPOCHS (``cm_many``) and without (``cm_many_epochs``, the same bytes); each
    also in format version 1 under the task's name + ``_v1`` (the old path's rows, no runs)."""
    rng = np.random.default_rng(7)
    columns: dict[str, list[Any]] = {name: [] for name in STATE_COLUMNS}
    run_columns: dict[str, list[Any]] = {name: [] for name in RUN_COLUMNS}

    def add_run(task: str, engine: int, run: list[tuple[int, bytes]]) -> None:
        """The run's row as the engine writes it (engine/sketch/group.py, storage/rows.py)."""
        first, last = run[0][0], run[-1][0]
        state = run_state(task, CountMin, [labelled(f"epoch {epoch}", data) for epoch, data in run])
        for name, value in (
            ("TaskName", task), ("EngineId", f"e{engine}"), ("PeriodStart", T), ("FirstEpoch", first),
            ("LastEpoch", last), ("EpochStart", T + 60 * first), ("FirstTimestamp", T + 60 * (first + 1)),
            ("Timestamp", T + 60 * (last + 1)),
            ("Algorithm", "count_min"), ("Covers", covers((epoch, state_check(data)) for epoch, data in run)),
            ("StateSize", len(state)), ("StateCheck", state_check(state)), ("State", state),
        ):  # fmt: skip
            run_columns[name].append(value)

    def add(task: str, engine: int, epoch: int, state: bytes) -> None:
        for name, value in (
            ("TaskName", task), ("EngineId", f"e{engine}"), ("PeriodStart", T), ("Epoch", epoch),
            ("EpochStart", T + 60 * epoch), ("Timestamp", T + 60 * (epoch + 1)), ("Algorithm", "count_min"),
            ("StateSize", len(state)), ("StateCheck", int.from_bytes(state[-4:], "little")), ("State", state),
        ):  # fmt: skip
            columns[name].append(value)

    for engine in range(engines):
        run: list[tuple[int, bytes]] = []
        for epoch in range(epochs):
            sketch = CountMin(params, flow_fields=(KeyField.SRC_IP,))
            keys, sizes = zipf_keys(rng, packets, 200_000)
            sketch.insert(keys, keys, sizes)
            state = sketch.to_bytes()
            old = encode_state(
                sketch.algorithm_name(), sketch.params.counting_params(), sketch.flow_fields,
                sketch.element_fields, sketch.state_arrays(), version=1,
            )  # fmt: skip
            add("cm_many", engine, epoch, state)
            add("cm_many_epochs", engine, epoch, state)
            add("cm_many_v1", engine, epoch, old)
            run.append((epoch, state))
            if closes_run(epoch) or epoch == epochs - 1:  # the last: the period ends (a short run)
                if len(run) > 1:
                    add_run("cm_many", engine, run)
                run = []
            if engine == 0 and epoch == 0:
                add("cm_single", 0, 0, state)
                add("cm_single_v1", 0, 0, old)
    from netspectra.storage.sql import ensure_schema

    await ensure_schema(backend)
    await backend.insert("sketch_states", columns)
    await backend.insert("sketch_state_runs", run_columns)


def window_request(task: str) -> v1.HeavyHittersRequest:
    """QueryHeavyHitters by count over every stored epoch."""
    return v1.HeavyHittersRequest(
        task_name=task, type=0, limit=100, start_time=datetime.fromtimestamp(T - 1, UTC)
    )


def fresh_service(backend: Any, *, old_path: bool = False) -> tuple[Any, Any]:
    """(QueryService, QueryStore) with nothing cached; ``old_path``: the reader fetches State as hex
    through the text select (what it did before the binary fetch), whatever the backend offers."""
    from netspectra.api.service import QueryService
    from netspectra.storage.query import QueryStore
    from netspectra.storage.states import SketchStateReader

    store = QueryStore(backend, description="bench")
    if old_path:
        store.states = SketchStateReader(store._select)
    return QueryService(store, {}), store


async def cold_times(
    backend: Any, tasks: dict[str, bool], runs: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds of the first query of each task (value: through the old path) in a fresh query
    store, ``runs`` times, the tasks interleaved so each sees the same load: (wall clock, CPU of
    this process, every thread; chdb's included, a ClickHouse server's not)."""
    times: dict[str, list[float]] = {task: [] for task in tasks}
    cpu: dict[str, list[float]] = {task: [] for task in tasks}
    for _ in range(runs):
        for task, old_path in tasks.items():
            service, store = fresh_service(backend, old_path=old_path)
            await store.tasks()  # the schema check a query store makes once is not part of a query
            start, start_cpu = time.perf_counter(), time.process_time()
            answer = await service.query_heavy_hitters(window_request(task))
            times[task].append(time.perf_counter() - start)
            cpu[task].append(time.process_time() - start_cpu)
            assert answer.hitters, f"{task}: no hitters"
    return times, cpu


async def warm_times(backend: Any, task: str, runs: int) -> list[float]:
    """Seconds of each of ``runs`` repeats of the query (after a first one, not counted)."""
    service, _ = fresh_service(backend)
    assert (await service.query_heavy_hitters(window_request(task))).hitters, f"{task}: no hitters"
    warm = []
    for _ in range(runs):
        start = time.perf_counter()
        await service.query_heavy_hitters(window_request(task))
        warm.append(time.perf_counter() - start)
    return warm


async def sliding_times(backend: Any, task: str, epochs: int) -> list[float]:
    """Seconds of each step of a window of half the epochs sliding by one epoch, in a fresh query
    store (after the first window): each step reads, decodes and merges one new epoch per engine."""
    service, _ = fresh_service(backend)
    span = epochs // 2

    def window(last: int) -> v1.HeavyHittersRequest:  # epochs last-span+1 .. last (Timestamp T+60(e+1))
        return v1.HeavyHittersRequest(
            task_name=task,
            type=0,
            limit=100,
            start_time=datetime.fromtimestamp(T + 60 * (last - span + 1), UTC),
            end_time=datetime.fromtimestamp(T + 60 * (last + 1), UTC),
        )

    assert (await service.query_heavy_hitters(window(span - 1))).hitters, f"{task}: no hitters"
    steps = []
    for last in range(span, epochs):
        start = time.perf_counter()
        await service.query_heavy_hitters(window(last))
        steps.append(time.perf_counter() - start)
    return steps


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def bench_query(args: argparse.Namespace, directory: Path) -> None:
    engines, epochs = (2, 3) if args.smoke else (4, 24)
    packets = 5_000 if args.smoke else 100_000
    runs = 5 if args.smoke else 100
    # the default count tasks' memory; their threshold scaled to the epoch's traffic
    params = CountMinParams(width=32768, depth=2, count_thereshold=packets // 200, size_thereshold=1 << 40)
    if args.clickhouse:
        from netspectra.config.models import ClickHouseOptions
        from netspectra.storage.clickhouse import ClickHouseBackend

        location, _, database = args.clickhouse.partition("/")
        host, _, port = location.partition(":")
        backend: Any = ClickHouseBackend(
            ClickHouseOptions(host=host, port=int(port or 9000), database=database or "default")
        )
        where = f"clickhouse {args.clickhouse}"
    else:
        from netspectra.storage.embedded import EmbeddedBackend

        backend = EmbeddedBackend(str(directory / "store"))
        where = "embedded chdb"
    cold_runs = 2 if args.smoke else 21
    try:
        await store_states(backend, engines, epochs, packets, params)
        await warm_times(backend, "cm_single", 1)  # imports, kernels and the schema check, once
        await warm_times(backend, "cm_single_v1", 1)
        cold, cpu = await cold_times(
            backend,
            {"cm_single": False, "cm_many": False, "cm_many_epochs": False, "cm_many_v1": True},
            cold_runs,
        )
        old_only, _ = await cold_times(backend, {"cm_single_v1": True}, cold_runs)
        single, many = (
            await warm_times(backend, "cm_single", runs),
            await warm_times(backend, "cm_many", runs),
        )
        sliding = await sliding_times(backend, "cm_many", epochs)
        sliding_epochs = await sliding_times(backend, "cm_many_epochs", epochs)
    finally:
        await backend.close()

    def ms(values: Sequence[float]) -> str:
        return f"p50 {percentile(values, 50) * 1e3:6.1f} ms  p99 {percentile(values, 99) * 1e3:6.1f} ms"

    def ratio(values: Sequence[float], base: Sequence[float]) -> str:
        return f"{percentile(values, 99) / max(percentile(base, 99), 1e-9):.2f}x"

    load = " ".join(f"{value:.1f}" for value in os.getloadavg())
    print(
        f"QueryHeavyHitters, count_min 32768 x 2, {where}; cold: {cold_runs} fresh query stores, "
        f"warm: {runs} repeats (load average {load}):"
    )
    print(f"  1 engine x 1 epoch:       cold {ms(cold['cm_single'])}   warm {ms(single)}")
    print(
        f"  {engines} engines x {epochs} epochs:   cold {ms(cold['cm_many'])}   warm {ms(many)}   "
        f"cold p99 = {ratio(cold['cm_many'], cold['cm_single'])} the single epoch's"
    )
    print(
        f"  epochs only (no runs):    cold {ms(cold['cm_many_epochs'])}   "
        f"with runs of {RUN_EPOCHS}/epochs only cold p50 = "
        f"{percentile(cold['cm_many'], 50) / max(percentile(cold['cm_many_epochs'], 50), 1e-9):.2f}x, "
        f"p99 = {ratio(cold['cm_many'], cold['cm_many_epochs'])}"
    )
    print(
        f"  old path (format 1, hex): cold {ms(cold['cm_many_v1'])}   "
        f"(1 x 1: cold {ms(old_only['cm_single_v1'])}); "
        f"new/old cold p99 = {ratio(cold['cm_many'], cold['cm_many_v1'])}"
    )
    print(
        f"  CPU of the cold query (this process): {engines} x {epochs} {ms(cpu['cm_many'])}, epochs "
        f"only {ms(cpu['cm_many_epochs'])}, old path {ms(cpu['cm_many_v1'])}; runs/epochs only p50 = "
        f"{percentile(cpu['cm_many'], 50) / max(percentile(cpu['cm_many_epochs'], 50), 1e-9):.2f}x, "
        "new/old p50 = "
        f"{percentile(cpu['cm_many'], 50) / max(percentile(cpu['cm_many_v1'], 50), 1e-9):.2f}x"
    )
    p99 = percentile(cold["cm_many"], 99)
    print(f"  target cold p99 <= 100 ms: {'met' if p99 <= 0.1 else 'NOT met'} ({p99 * 1e3:.0f} ms)")
    print(
        f"  {engines} engines x {epochs // 2} epochs sliding by one epoch ({engines} new states each, "
        f"{len(sliding)} steps): {ms(sliding)}; epochs only {ms(sliding_epochs)}, with runs/epochs only "
        f"sum of the steps = {sum(sliding) / max(sum(sliding_epochs), 1e-9):.2f}x"
    )


# --- 2, 3. engine cost of storing state; state sizes --------------------------------------------


class Recorder:
    """A writer that keeps only the sizes of the states it is handed."""

    def __init__(self) -> None:
        self.sizes: dict[str, list[int]] = {}

    async def write(self, snapshot: Snapshot) -> None:
        # the store writers read the states in a worker thread (snapshot_rows), off the engine's
        # lock: each epoch's, and the run's where the snapshot closes one
        def read() -> list[tuple[str, bytes | None]]:
            out = [(r.task, r.state_bytes()) for r in snapshot.sketches]
            return out + [(f"{r.task} (run)", r.run.state()) for r in snapshot.sketches if r.run is not None]

        for task, state in await asyncio.to_thread(read):
            if state is not None:
                self.sizes.setdefault(task, []).append(len(state))

    async def close(self) -> None:
        return None


def default_settings() -> Settings:
    config = yaml.safe_load((ROOT / "netspectra" / "default_config.yaml").read_text())
    for group in ("exact", "sketch"):
        for writer in config["aggregator"][group]["writers"]:
            writer["enabled"] = False
    return Settings.model_validate(config)


async def engine_rate(
    settings: Settings, batches: list[PacketColumns], every: int, with_state: bool, passes: int = 1
) -> tuple[float, Recorder]:
    groups = build_groups(settings)
    sketches = groups["sketch"]
    assert isinstance(sketches, SketchGroup)
    sketches.include_state = with_state
    recorder = Recorder()
    writer_config = settings.aggregator.sketch.writers[0].model_copy(update={"snapshot_interval": 1.0})
    now = [T * NS]
    engine = Engine(
        groups,
        {"exact": [(writer_config, recorder)], "sketch": [(writer_config, recorder)]},
        clock=lambda: now[0],
        kernel_threads=settings.engine.kernel_threads,
    )
    await engine.start(schedule=False)
    packets = 0
    start = time.perf_counter()
    for index, batch in enumerate(batches * passes, start=1):
        engine.ingest_sync(batch)
        packets += len(batch)
        if index % every == 0:
            now[0] += NS
            await engine.run_due()
    await engine.close()
    return packets / (time.perf_counter() - start), recorder


def cut(columns: PacketColumns, size: int) -> list[PacketColumns]:
    names = ("ts_ns", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "length", "ip_version")
    return [
        PacketColumns(**{name: getattr(columns, name)[at : at + size].copy() for name in names})
        for at in range(0, len(columns), size)
    ]


async def bench_engine(args: argparse.Namespace, directory: Path) -> None:
    packets = 200_000 if args.smoke else 4_000_000
    spec = TrafficSpec(packets=packets, flows=packets // 20, seed=3, spreaders=5, spreader_fanout=2_000)
    truth = write_trace(directory / "engine.pcap", spec)
    batches = cut(truth.packets, 8192)
    # 8 snapshots of 2^22 packets: the 8th closes a run of 8 epochs per task (RUN_EPOCHS)
    every, passes = (8, 1) if args.smoke else ((1 << 22) // 8192, 8)
    settings = default_settings()
    with_rates, without_rates = [], []
    await engine_rate(settings, batches[: every * 2], every, True)  # compile and cache the kernels first
    recorder = Recorder()
    for _ in range(1 if args.smoke else args.repeat):
        rate, recorder = await engine_rate(settings, batches, every, True, passes)
        with_rates.append(rate)
        without_rates.append((await engine_rate(settings, batches, every, False, passes))[0])
    best_with, best_without = max(with_rates), max(without_rates)
    fed = len(truth.packets) * passes
    snapshots = fed // (every * 8192) + 1  # and the final one
    extra = max(0.0, (fed / best_with - fed / best_without) / snapshots)
    print(f"Engine, whole default config, {fed} packets, a snapshot every {every * 8192} packets:")
    print(f"  without state snapshots: {best_without:12,.0f} packets/s")
    print(
        f"  with state snapshots:    {best_with:12,.0f} packets/s = {best_with / best_without:.3f}x "
        f"(target >= 0.95x: {'met' if best_with >= 0.95 * best_without else 'NOT met'})"
    )
    print(
        f"  state costs {extra * 1e3:.0f} ms per snapshot: at the default 60 s interval "
        f"{60 / (60 + extra):.4f}x the throughput without"
    )
    print("State bytes per task per snapshot (format 2: shuffled, zstd; as stored), and per run state:")
    for task, sizes in sorted(recorder.sizes.items()):
        mean, largest = np.mean(sizes), max(sizes)
        what = "runs" if task.endswith("(run)") else "snapshots"
        print(f"  {task:20s} mean {mean:12,.0f} B  max {largest:12,.0f} B  over {len(sizes)} {what}")


# --- 4. accuracy at equal memory ------------------------------------------------------------------


def f1(reported: set[Any], truth: set[Any]) -> float:
    hits = len(reported & truth)
    return 0.0 if not hits else 2 * hits / (len(reported) + len(truth))


def bench_accuracy(args: argparse.Namespace) -> None:
    packets = 200_000 if args.smoke else 2_000_000
    rng = np.random.default_rng(11)
    flows, sizes = zipf_keys(rng, packets, packets // 10)
    # planted spreaders: 5 destinations each heard by 2000-10000 distinct sources
    fanouts = [2_000, 4_000, 6_000, 8_000, 10_000]
    dst = np.zeros((packets, 16), np.uint8)
    dst[:, 10:12] = 0xFF
    dst[:, 12:16] = rng.integers(0, 256, (packets, 4), dtype=np.uint8)
    spread_src, spread_dst, planted = [], [], {}
    for index, fanout in enumerate(fanouts):
        target = np.zeros(16, np.uint8)
        target[10:12] = 0xFF
        target[12:16] = (198, 18, index, 1)
        sources = np.zeros((fanout, 16), np.uint8)
        sources[:, 10:12] = 0xFF
        sources[:, 12:16] = rng.integers(0, 256, (fanout, 4), dtype=np.uint8)  # nearly all distinct
        spread_src.append(sources)
        spread_dst.append(np.tile(target, (fanout, 1)))
        planted[address_text(target.tobytes())] = len(np.unique(sources, axis=0))
    src_all = np.vstack([flows, *spread_src])
    dst_all = np.vstack([dst, *spread_dst])
    order = rng.permutation(src_all.shape[0])
    src_all, dst_all = src_all[order], dst_all[order]
    ids, counts = np.unique(flows, axis=0, return_counts=True)
    threshold = int(np.sort(counts)[-100])
    heavy = {address_text(ids[i].tobytes()) for i in np.flatnonzero(counts >= threshold)}
    cm = CountMinParams(width=1 << 13, depth=2, count_thereshold=threshold, size_thereshold=1 << 40)
    go = cm.model_copy(update={"variant": "go"})
    spread = SpreadSketchParams(width=1 << 13, depth=2, count_thereshold=1_000)
    bucket = SuperSpread(SuperSpreadParams(width=1, depth=2), flow_fields=(KeyField.DST_IP,),
                         element_fields=(KeyField.SRC_IP,)).memory_bytes / 2  # fmt: skip
    spread_bytes = SpreadSketch(
        spread, flow_fields=(KeyField.DST_IP,), element_fields=(KeyField.SRC_IP,)
    ).memory_bytes
    go_spread = SuperSpreadParams(
        width=max(1, int(spread_bytes / 2 / bucket)), depth=2, count_thereshold=1_000
    )
    print(
        f"Accuracy at equal memory ({packets} packets; count top-100 threshold {threshold}; "
        f"spread_sketch {spread_bytes / 1e6:.1f} MB vs super_spread width {go_spread.width}):"
    )
    for engines in (1, 4):
        owner = rng.integers(0, engines, packets)
        results: dict[str, float] = {}
        # count: merged states (count_min) vs summed hitter rows (Go's variant, Go's readers)
        merged_states, summed = [], {}
        for part in range(engines):
            rows = np.flatnonzero(owner == part)
            ours = CountMin(cm, flow_fields=(KeyField.SRC_IP,))
            ours.insert(flows[rows], flows[rows], sizes[rows])
            merged_states.append(labelled(str(part), ours.to_bytes()))
            theirs = CountMin(go, flow_fields=(KeyField.SRC_IP,))
            theirs.insert(flows[rows], flows[rows], sizes[rows])
            # what each Go engine writes: its own hitters at or above the threshold
            for hitter in theirs.cell_hitters(theirs.count_keys, theirs.counts, threshold, HitterKind.COUNT):
                summed[hitter.flow] = summed.get(hitter.flow, 0) + hitter.value
        merged = merge_states("cm", CountMin, merged_states)
        reported = {h.flow for h in merged.heavy_hitters() if h.kind == HitterKind.COUNT}
        results["count_min F1"] = f1(reported, heavy)
        results["go variant F1"] = f1({flow for flow, value in summed.items() if value >= threshold}, heavy)
        # spread: merged spread_sketch states vs max of super_spread rows
        src_owner = rng.integers(0, engines, src_all.shape[0])
        spread_states, maxima = [], {}
        for part in range(engines):
            rows = np.flatnonzero(src_owner == part)
            ours_s = SpreadSketch(spread, flow_fields=(KeyField.DST_IP,), element_fields=(KeyField.SRC_IP,))
            theirs_s = SuperSpread(
                go_spread, flow_fields=(KeyField.DST_IP,), element_fields=(KeyField.SRC_IP,)
            )
            for at in range(0, rows.shape[0], 65_536):
                chunk = rows[at : at + 65_536]
                ours_s.insert(dst_all[chunk], src_all[chunk], np.zeros(chunk.shape[0], np.uint64))
                theirs_s.insert(dst_all[chunk], src_all[chunk], np.zeros(chunk.shape[0], np.uint64))
            spread_states.append(labelled(str(part), ours_s.to_bytes()))
            for hitter in theirs_s.heavy_hitters():
                maxima[hitter.flow] = max(maxima.get(hitter.flow, 0), hitter.value)
        spreads = {h.flow: h.value for h in merge_states("ss", SpreadSketch, spread_states).heavy_hitters()}
        results["spread_sketch error"] = float(
            np.mean([abs(spreads.get(k, 0) - v) / v for k, v in planted.items()])
        )
        results["super_spread error"] = float(
            np.mean([abs(maxima.get(k, 0) - v) / v for k, v in planted.items()])
        )
        ours_f1, go_f1 = results["count_min F1"], results["go variant F1"]
        print(
            f"  {engines} engine(s): count F1 count_min {ours_f1:.3f} vs Go variant "
            f"{go_f1:.3f} = {ours_f1 / max(go_f1, 1e-9):.2f}x; "
            f"planted spread mean error spread_sketch {results['spread_sketch error']:.1%} vs super_spread "
            f"{results['super_spread error']:.1%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny inputs, one pass: seconds")
    parser.add_argument(
        "--clickhouse", help="HOST:PORT/DATABASE of a ClickHouse server (default: embedded chdb)"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="alternating engine runs per arm (best is kept)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-sketch-state-") as name:
        directory = Path(name)
        asyncio.run(bench_query(args, directory))
        asyncio.run(bench_engine(args, directory))
    bench_accuracy(args)


if __name__ == "__main__":
    main()
