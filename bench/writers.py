"""Benchmark: rows per second of each snapshot writer, against the 3 M rows/s of issue 12.

    python bench/writers.py [--flows 1000000] [--repeat 3] [--smoke]

One snapshot of ``flows`` five-tuple flows (10 % IPv6) plus a per-source task of a tenth of that,
and ``flows`` heavy hitters for the text writer, each written by, best of ``--repeat``:

* ``file`` (JSON Lines to a local file under /tmp; fsync included) against the per-row f-string
  formatting it replaced (``flow_lines``, written the same way), measured in the same run;
* ``text`` (sketch hitters as Go's text files);
* ``embedded`` (rows as Arrow columns, inserted into chdb with flow_latest's view);
* ``clickhouse`` (asynch columnar insert into the local clickhouse-server 18.16, started on a free
  port in a temporary directory; skipped when the binary is missing).

Rows/s is the writer's own time from snapshot in hand to rows stored (the engine never waits on
it: the store writers queue, the file writers run in a thread). ``--smoke``: 20 000 flows, one
run each (CI runs it so it cannot rot).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netspectra.model.fields import FIELD_ORDER, KeyField  # noqa: E402
from netspectra.model.snapshot import FlowTable, HeavyHitter, HitterKind, SketchResult, Snapshot  # noqa: E402

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


def best(repeat: int, run: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """(wall, process CPU) seconds of the fastest of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        asyncio.run(run())  # type: ignore[arg-type]
        times.append((time.perf_counter() - started, time.process_time() - cpu))
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--flows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.flows, args.repeat = 20_000, 1
    from netspectra.storage import file_writer
    from netspectra.storage.embedded import EmbeddedBackend
    from netspectra.storage.rows import snapshot_rows
    from netspectra.storage.sql import ensure_schema
    from netspectra.storage.text_writer import TextWriter

    exact, sketch = snapshots(args.flows)
    rows = sum(len(table) for table in exact.flows)
    work = Path(tempfile.mkdtemp(prefix="netspectra-bench-writers-"))
    results: list[tuple[str, int, tuple[float, float]]] = []
    try:
        writer = file_writer.FileWriter(work / "file")
        file_writer.flow_bytes(exact.flows[1])  # compile or load the kernel outside the timing

        async def write_file() -> None:
            writer.write_sync(exact)

        def lines_write(directory: Path, table: FlowTable) -> None:  # the formatting before issue 12
            path = directory / f"{table.task}.jsonl"
            with open(path, "w", encoding="utf-8") as handle:
                for line in file_writer.flow_lines(table):
                    handle.write(line)
                    handle.write("\n")
                handle.flush()
                import os

                os.fsync(handle.fileno())

        async def write_lines() -> None:
            directory = work / "lines"
            directory.mkdir(exist_ok=True)
            for table in exact.flows:
                lines_write(directory, table)

        results.append(("file: per-row f-strings (before; baseline)", rows, best(args.repeat, write_lines)))
        results.append(("file: JSON Lines kernel", rows, best(args.repeat, write_file)))
        text = TextWriter(work / "text")

        async def write_text() -> None:
            await text.write(sketch)

        results.append(
            ("text: heavy hitters", len(sketch.sketches[0].hitters), best(args.repeat, write_text))
        )

        async def write_embedded() -> None:
            backend = EmbeddedBackend(str(work / f"chdb-{time.monotonic_ns()}"))
            await ensure_schema(backend)
            started, cpu = time.perf_counter(), time.process_time()
            columns = snapshot_rows(exact, "bench").flows
            await backend.insert("flow_metrics", columns)
            timings.append((time.perf_counter() - started, time.process_time() - cpu))
            await backend.close()

        timings: list[tuple[float, float]] = []
        best(args.repeat, write_embedded)
        results.append(("embedded: Arrow rows + chdb insert (+ view)", rows, min(timings)))
        results.extend(clickhouse(exact, rows, args.repeat, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    baseline = results[0][2][0] / results[0][1]
    print(
        f"{rows:,} flow rows per snapshot ({args.flows:,} five-tuple + a tenth per source); "
        f"best of {args.repeat}"
    )
    print("rows/s per CPU second: this process's CPU (the clickhouse-server's own is not in it)")
    header = f"{'writer':48} {'rows':>10} {'wall s':>7} {'rows/s':>11} {'CPU s':>6} {'rows/CPU s':>11}"
    print(f"{header} {'vs 3 M/s':>9} {'vs before':>10}")
    for name, count, (seconds, cpu) in results:
        rate = count / seconds
        cpu_rate = count / max(cpu, 1e-9)
        print(
            f"{name:48} {count:10,} {seconds:7.3f} {rate:11,.0f} {cpu:6.3f} {cpu_rate:11,.0f} "
            f"{cpu_rate / TARGET:8.2f}x {baseline * count / seconds:9.2f}x"
        )


def clickhouse(
    exact: Snapshot, rows: int, repeat: int, work: Path
) -> list[tuple[str, int, tuple[float, float]]]:
    from netspectra.config.models import ClickHouseOptions
    from netspectra.storage.clickhouse import ClickHouseBackend
    from netspectra.storage.rows import snapshot_rows
    from netspectra.storage.sql import ensure_schema
    from tests.fixtures.clickhouse import ClickHouseServer, find_clickhouse_server

    binary = find_clickhouse_server()
    if binary is None:
        print("clickhouse-server not found: the clickhouse writer is not measured")
        return []
    server = ClickHouseServer(binary, work / "clickhouse")
    server.start()
    timings: list[tuple[float, float]] = []
    try:

        async def write() -> None:
            options = ClickHouseOptions.model_validate({"host": server.host, "port": server.tcp_port})
            backend = ClickHouseBackend(options)
            await ensure_schema(backend)
            await backend.execute("TRUNCATE TABLE flow_metrics")
            started, cpu = time.perf_counter(), time.process_time()
            await backend.insert("flow_metrics", snapshot_rows(exact, "bench").flows)
            timings.append((time.perf_counter() - started, time.process_time() - cpu))
            await backend.close()

        best(repeat, write)
    finally:
        server.stop()
    return [("clickhouse: Native block over asynch (+ view)", rows, min(timings))]


if __name__ == "__main__":
    main()
