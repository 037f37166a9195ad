"""Benchmark: rows per second of each snapshot writer, against the 3 M rows/s of issue 12.

    python bench/writers.py [--flows 1000000] [--repeat 3] [--smoke]

One snapshot of ``flows`` five-tuple flows (10 % IPv6) plus a per-source task of a tenth of that,
and ``flows`` heavy hitters for the text writer, each written by, best of ``--repeat``:

* ``file`` (JSON Lines to a local file under /tmp; fsync included) against the per-row f-string
  formatting it replaced (``flow_lines``, written the same way), the kernel on one thread per
  task (its form before chunks were formatted on every core) and the writer with no writeback
  before its closing fsync (its form before ``_WRITEBACK_BYTES``), measured in the same run;
* ``text`` (sketch hitters as Go's text files) against the per-line f-strings (``hitter_texts``)
  and the same writer on one thread (its form before pieces were sorted and formatted on every
  core);
* ``embedded`` (rows as Arrow columns, inserted into chdb with flow_latest's view) with the
  insert settings of storage/embedded.py against chdb's defaults;
* ``clickhouse`` (asynch columnar insert into the local clickhouse-server 18.16, started on a free
  port in a temporary directory; skipped when the binary is missing).

Rows/s is the writer's own time from snapshot in hand to rows stored (the engine never waits on
it: the store writers queue, the file writers run in a thread). ``--smoke``: 20 000 flows, one
run each (CI runs it so it cannot rot).

Raw counts (flow-export input, issue 15): the file, embedded and clickhouse writers also write the
same snapshot as tasks fed flow records write it (raw counts beside the counts: two more numbers
per JSON Lines object, the two Extrapolated* columns), and the packet tasks' snapshot into the
schema of the version before them (no Extrapolated* columns), interleaved with this schema's runs;
the summary prints packet tasks on this schema against the previous one, and flow-record tasks
against packet tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netspectra.model.fields import FIELD_ORDER, KeyField  # noqa: E402
from netspectra.model.snapshot import FlowTable, HeavyHitter, HitterKind, SketchResult, Snapshot  # noqa: E402
from netspectra.storage.embedded import INSERT_SETTINGS  # noqa: E402

S = 1_000_000_000
TARGET = 3_000_000


def flow_table(rng: np.random.Generator, task: str, fields: tuple[KeyField, ...], rows: int) -> FlowTable:
    pool = np.zeros((50_000, 16), np.uint8)
    v6 = rng.random(len(pool)) < 0.1
    pool[~v6, 10:12] = 0xFF
    pool[~v6, 12:] = rng.integers(0, 256, (int((~v6).sum()), 4))
    pool[v6] = rng.integers(0, 256, (int(v6.sum()), 16))
    first = 1_700_000_000 * S + rng.integers(0, 60 * S, rows)
    return FlowTable(
        task,
        fields,
        pool[rng.integers(0, len(pool), rows)],
        pool[rng.integers(0, len(pool), rows)],
        rng.integers(0, 1 << 16, rows).astype(np.uint16),
        rng.integers(0, 1 << 16, rows).astype(np.uint16),
        rng.choice(np.array([6, 17], np.uint8), rows),
        rng.integers(1, 1000, rows).astype(np.uint64),
        rng.integers(60, 10**6, rows).astype(np.uint64),
        first,
        first + rng.integers(0, 10 * S, rows),
    )


def snapshots(flows: int) -> tuple[Snapshot, Snapshot]:
    rng = np.random.default_rng(1)
    tables = (
        flow_table(rng, "per_five_tuple", FIELD_ORDER, flows),
        flow_table(rng, "per_src_ip", (KeyField.SRC_IP,), flows // 10),
    )
    hitters = tuple(
        HeavyHitter(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", int(v), HitterKind.COUNT)
        for i, v in enumerate(rng.integers(1, 10**6, flows).tolist())
    )
    exact = Snapshot("exact", 1_700_000_060 * S, 1_700_000_000 * S, flows=tables)
    sketch = Snapshot(
        "sketch", 1_700_000_060 * S, 1_700_000_000 * S, sketches=(SketchResult("cm", "count_min", hitters),)
    )
    return exact, sketch


def sampled(snapshot: Snapshot) -> Snapshot:
    """``snapshot`` as tasks fed flow records (1-in-100 on average) hand it over: raw counts too."""
    tables = tuple(
        replace(table, raw_packets=table.packets // 100 + 1, raw_bytes=table.bytes // 100 + 1)
        for table in snapshot.flows
    )
    return replace(snapshot, flows=tables)


def previous_schema() -> list[str]:
    """The schema statements and flow_latest's view of the version before raw counts."""
    from netspectra.storage import sql

    statements = []
    for statement in sql.schema_statements():
        for column in sql.EXTRAPOLATED_COLUMNS:
            statement = "\n".join(line for line in statement.splitlines() if column not in line)
        statement = statement.replace("EngineId    String DEFAULT '',\n)", "EngineId    String DEFAULT ''\n)")
        statements.append(statement.replace("PacketCount UInt64,\n)", "PacketCount UInt64\n)"))
    return [*statements, sql.LATEST_VIEW.replace(", ExtrapolatedPackets, ExtrapolatedBytes FROM", " FROM")]


async def create_schema(backend: Any, previous: bool) -> None:
    """This version's schema (as the writers make it), or the previous version's."""
    from netspectra.storage.sql import ensure_schema

    if not previous:
        await ensure_schema(backend)
        return
    for statement in previous_schema():
        await backend.execute(statement)


def rotated(count: int, shift: int) -> list[int]:
    """``0..count`` starting at ``shift``: each variant runs first, middle and last in turn."""
    return [(index + shift) % count for index in range(count)]


def best(repeat: int, run: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(wall, process CPU) seconds of the fastest of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        asyncio.run(run())  # type: ignore[arg-type]
        times.append((time.perf_counter() - started, time.process_time() - cpu))
    return min(times)


Result = tuple[str, str, int, tuple[float, float]]  # writer, variant, rows, (wall, CPU) seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.flows, args.repeat = 20_000, 1
    from netspectra.storage import file_writer, text_writer
    from netspectra.storage.embedded import EmbeddedBackend
    from netspectra.storage.rows import snapshot_rows

    exact, sketch = snapshots(args.flows)
    rows = sum(len(table) for table in exact.flows)
    hitters = len(sketch.sketches[0].hitters)
    work = Path(tempfile.mkdtemp(prefix="netspectra-bench-writers-"))
    results: list[Result] = []
    load_before = os.getloadavg()
    try:
        writer = file_writer.FileWriter(work / "file")
        file_writer.flow_bytes(exact.flows[1])  # compile or load the kernels outside the timing
        text_writer.hitter_files(sketch.sketches[0])

        def lines_write(directory: Path, table: FlowTable) -> None:  # the formatting before issue 12
            path = directory / f"{table.task}.jsonl"
            with open(path, "w", encoding="utf-8") as handle:
                for line in file_writer.flow_lines(table):
                    handle.write(line)
                    handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())

        async def write_lines() -> None:
            directory = work / "lines"
            directory.mkdir(exist_ok=True)
            for table in exact.flows:
                lines_write(directory, table)

        async def write_per_task() -> None:  # session 3: the kernel, one thread per task
            directory = work / "per-task"
            directory.mkdir(exist_ok=True)
            with ThreadPoolExecutor(min(len(exact.flows), os.cpu_count() or 1)) as pool:
                for done in [pool.submit(file_writer._write_task, directory, t) for t in exact.flows]:
                    done.result()

        async def write_file() -> None:
            writer.write_sync(exact)

        async def write_file_sync_at_end() -> None:  # before: no writeback until the closing fsync
            writeback, file_writer._WRITEBACK_BYTES = file_writer._WRITEBACK_BYTES, 0
            try:
                writer.write_sync(exact)
            finally:
                file_writer._WRITEBACK_BYTES = writeback

        results.append(("file", "per-row f-strings (before issue 12)", rows, best(args.repeat, write_lines)))
        results.append(
            ("file", "kernel of now, a thread per task (before)", rows, best(args.repeat, write_per_task))
        )
        sync_at_end = best(args.repeat, write_file_sync_at_end)
        results.append(("file", "kernel, chunks on every core", rows, best(args.repeat, write_file)))
        results.append(("file", "same, fsync at the end only (before)", rows, sync_at_end))
        flow_records = sampled(exact)

        async def write_file_sampled() -> None:
            writer.write_sync(flow_records)

        results.append(
            ("file", "same, flow-record tasks (raw counts)", rows, best(args.repeat, write_file_sampled))
        )

        async def write_text_lines() -> None:  # before: per-line f-strings, Python's sort
            directory = work / "text-lines"
            directory.mkdir(exist_ok=True)
            for kind, text in text_writer.hitter_texts(sketch.sketches[0]).items():
                (directory / text_writer.FILE_OF_KIND[kind]).write_text(text)

        text = text_writer.TextWriter(work / "text")
        text_one_thread = text_writer.TextWriter(work / "text-one-thread", threads=1)

        async def write_text() -> None:
            await text.write(sketch)

        async def write_text_one_thread() -> None:  # before: sorted and formatted on one thread
            await text_one_thread.write(sketch)

        results.append(("text", "per-line f-strings (before)", hitters, best(args.repeat, write_text_lines)))
        one_thread = best(args.repeat, write_text_one_thread)
        results.append(("text", "columns + kernel, one thread (before)", hitters, one_thread))
        results.append(
            ("text", "columns + kernels, pieces on every core", hitters, best(args.repeat, write_text))
        )

        def embedded(settings: str, variants: list[tuple[Snapshot, bool]]) -> list[tuple[float, float]]:
            """Best (wall, CPU) of each (snapshot, previous schema) variant, runs interleaved."""
            timings: list[list[tuple[float, float]]] = [[] for _ in variants]

            rounds = [0]

            async def write_embedded() -> None:
                # a warm-up insert first, then the variants in a rotated order each round
                order = [0] * (rounds[0] == 0) + rotated(len(variants), rounds[0])
                rounds[0] += 1
                for position, index in enumerate(order):
                    snapshot, previous = variants[index]
                    backend = EmbeddedBackend(
                        str(work / f"chdb-{time.monotonic_ns()}"), insert_settings=settings
                    )
                    await create_schema(backend, previous)
                    started, cpu = time.perf_counter(), time.process_time()
                    await backend.insert("flow_metrics", snapshot_rows(snapshot, "bench").flows)
                    if position or rounds[0] > 1:
                        timings[index].append((time.perf_counter() - started, time.process_time() - cpu))
                    await backend.close()
                    shutil.rmtree(backend.path, ignore_errors=True)

            best(args.repeat, write_embedded)
            return [min(runs) for runs in timings]

        before = "optimize_on_insert = 1, parallel_view_processing = 0"
        (defaults,) = embedded(before, [(exact, False)])
        results.append(("embedded", "Arrow + view, chdb defaults (before)", rows, defaults))
        now, previous, raw = embedded(INSERT_SETTINGS, [(exact, False), (exact, True), (flow_records, False)])
        results.append(("embedded", "Arrow + view, no in-block merge", rows, now))
        results.append(("embedded", "same, schema before raw counts", rows, previous))
        results.append(("embedded", "same, flow-record tasks (raw counts)", rows, raw))
        results.extend(clickhouse(exact, rows, args.repeat, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    print(
        f"{rows:,} flow rows per snapshot ({args.flows:,} five-tuple + a tenth per source), {hitters:,} "
        f"heavy hitters; best of {args.repeat}; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after ({os.cpu_count()} cores)"
    )
    print("rows/CPU s: this process's CPU (the clickhouse-server's own is not in it); 'vs first': against")
    print("the writer's first variant (its path before this work), measured above in this run")
    print(
        f"{'writer':10} {'variant':41} {'rows':>10} {'wall s':>7} {'rows/s':>11} {'CPU s':>6}"
        f" {'rows/CPU s':>11} {'CPU vs 3 M/s':>12} {'wall vs first':>13} {'CPU vs first':>12}"
    )
    first_of: dict[str, tuple[float, float]] = {}
    for writer_name, variant, count, (seconds, cpu) in results:
        rate, cpu_rate = count / seconds, count / max(cpu, 1e-9)
        wall_first, cpu_first = first_of.setdefault(writer_name, (rate, cpu_rate))
        print(
            f"{writer_name:10} {variant:41} {count:10,} {seconds:7.3f} {rate:11,.0f} {cpu:6.3f}"
            f" {cpu_rate:11,.0f} {cpu_rate / TARGET:11.2f}x"
            f" {rate / wall_first:12.2f}x {cpu_rate / cpu_first:11.2f}x"
        )
    raw_counts_summary(results)


def raw_counts_summary(results: list[Result]) -> None:
    """Packet tasks on this schema vs the previous one, flow-record tasks vs packet tasks (rows/s)."""
    measured = {
        (writer, variant): (count / wall, count / max(cpu, 1e-9))
        for writer, variant, count, (wall, cpu) in results
    }
    packet_variant = {
        "file": "kernel, chunks on every core",
        "embedded": "Arrow + view, no in-block merge",
        "clickhouse": "Native block over asynch (+ view)",
    }
    for writer, now_variant, before_variant, what in (
        ("file", "kernel, chunks on every core", "same, fsync at the end only (before)", "writeback behind"),
        (
            "text",
            "columns + kernels, pieces on every core",
            "columns + kernel, one thread (before)",
            "pieces",
        ),
    ):
        now, before = measured.get((writer, now_variant)), measured.get((writer, before_variant))
        if now is not None and before is not None:
            ratios = f"{now[0] / before[0]:.2f}x / {now[1] / before[1]:.2f}x"
            print(f"{writer}: {what} vs before, rows/s wall / CPU: {ratios}")
    print("raw counts (issue 15), rows/s as wall / CPU ratios measured above in this run:")
    for writer, packets in packet_variant.items():
        base = measured.get((writer, packets))
        if base is None:
            continue
        previous = measured.get((writer, "same, schema before raw counts"))
        if previous is not None:
            print(
                f"  {writer:10} packet tasks, this schema vs the previous: "
                f"{base[0] / previous[0]:.2f}x / {base[1] / previous[1]:.2f}x"
            )
        raw = measured.get((writer, "same, flow-record tasks (raw counts)"))
        if raw is not None:
            ratios = f"{raw[0] / base[0]:.2f}x / {raw[1] / base[1]:.2f}x"
            print(f"  {writer:10} flow-record tasks vs packet tasks: {ratios}")


def clickhouse(exact: Snapshot, rows: int, repeat: int, work: Path) -> list[Result]:
    from netspectra.config.models import ClickHouseOptions
    from netspectra.storage.clickhouse import ClickHouseBackend
    from netspectra.storage.rows import snapshot_rows
    from tests.fixtures.clickhouse import ClickHouseServer, find_clickhouse_server

    binary = find_clickhouse_server()
    if binary is None:
        print("clickhouse-server not found: the clickhouse writer is not measured")
        return []
    server = ClickHouseServer(binary, work / "clickhouse")
    server.start()
    variants = [(exact, False), (exact, True), (sampled(exact), False)]
    timings: list[list[tuple[float, float]]] = [[] for _ in variants]
    try:
        rounds = [0]

        async def write() -> None:
            order = [0] * (rounds[0] == 0) + rotated(len(variants), rounds[0])  # as the embedded runs
            rounds[0] += 1
            for position, index in enumerate(order):
                snapshot, previous = variants[index]
                database = f"bench{index}"
                setup = ClickHouseBackend(
                    ClickHouseOptions.model_validate({"host": server.host, "port": server.tcp_port})
                )
                await setup.execute(f"DROP DATABASE IF EXISTS {database}")
                await setup.execute(f"CREATE DATABASE {database}")
                await setup.close()
                options = {"host": server.host, "port": server.tcp_port, "database": database}
                backend = ClickHouseBackend(ClickHouseOptions.model_validate(options))
                await create_schema(backend, previous)
                started, cpu = time.perf_counter(), time.process_time()
                await backend.insert("flow_metrics", snapshot_rows(snapshot, "bench").flows)
                if position or rounds[0] > 1:
                    timings[index].append((time.perf_counter() - started, time.process_time() - cpu))
                await backend.close()

        best(repeat, write)
    finally:
        server.stop()
    now, previous, raw = (min(runs) for runs in timings)
    return [
        ("clickhouse", "Native block over asynch (+ view)", rows, now),
        ("clickhouse", "same, schema before raw counts", rows, previous),
        ("clickhouse", "same, flow-record tasks (raw counts)", rows, raw),
    ]


if __name__ == "__main__":
    main()
