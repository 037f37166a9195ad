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
  insert settings of storage/embedded.py against chdb's defaults, as one INSERT (the writer before
  blocks) and as blocks inserted at once on connections of their own (the writer now), and that
  writer into a store made before 2026-12, whose view hashes FlowCheck with sipHash64;
* ``clickhouse`` (Native blocks over asynch into the local clickhouse-server 18.16, started on a
  free port in a temporary directory; skipped when the binary is missing), one block and blocks
  sent at once over pooled connections (also into a store whose view hashes with sipHash64).

Ceilings, measured in the same run so the gap to 3 M rows/s can be split into ours and
ClickHouse's own insert work: the same rows without flow_latest's view (flow_metrics alone); for
the server, a Native file of the rows handed to its HTTP input (no client: the server's own
parsing and insert) and to clickhouse-client (when installed), whole and as two halves at once;
for chdb, its other input paths (the Python() table function over the Arrow table, the streaming
insert of the Arrow stream's bytes). Each run checks that every row landed once; 'server CPU s'
is the clickhouse-server process's own CPU (/proc) during the insert.

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
    """The schema statements and flow_latest's view of the version before raw counts (the view
    hashing as this version's, so the two schemas differ only in the raw-count columns)."""
    from netspectra.storage import sql
    from tests.fixtures.schemas import previous_schema as previous_tables

    return [
        *previous_tables(),
        sql.LATEST_VIEW.replace(", ExtrapolatedPackets, ExtrapolatedBytes FROM", " FROM"),
    ]


async def create_schema(backend: Any, previous: bool) -> None:
    """This version's schema (as the writers make it), or the previous version's."""
    from netspectra.storage.sql import ensure_schema

    if not previous:
        await ensure_schema(backend)
        return
    for statement in previous_schema():
        await backend.execute(statement)


async def use_sip_hash_view(backend: Any) -> None:
    """flow_latest's view as it was before FlowCheck became cityHash64 (sipHash64 of the identity)."""
    from netspectra.storage import sql

    await backend.execute(sql.DROP_LATEST_VIEW)
    await backend.execute(sql.LATEST_VIEW_SIPHASH)


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

        results.extend(embedded(exact, flow_records, rows, args.repeat, work))
        results.extend(clickhouse(exact, rows, args.repeat, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = os.getloadavg()
    print(
        f"{rows:,} flow rows per snapshot ({args.flows:,} five-tuple + a tenth per source), {hitters:,} "
        f"heavy hitters; best of {args.repeat}; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after ({os.cpu_count()} cores)"
    )
    print(
        "rows/CPU s: this process's CPU (the clickhouse-server's own is 'server CPU s'); 'vs first': against"
    )
    print("the writer's first variant (its path before this work), 'vs prev': against the row above it,")
    print("both measured in this run; 'ceiling' rows are ClickHouse's own limits (see the closing note)")
    print(
        f"{'writer':10} {'variant':45} {'rows':>10} {'wall s':>7} {'rows/s':>11} {'CPU s':>6}"
        f" {'rows/CPU s':>11} {'CPU vs 3 M/s':>12} {'wall vs first':>13} {'CPU vs first':>12}"
        f" {'wall vs prev':>12} {'server CPU s':>12}"
    )
    first_of: dict[str, tuple[float, float]] = {}
    previous_of: dict[str, float] = {}
    for writer_name, variant, count, (seconds, cpu) in results:
        rate, cpu_rate = count / seconds, count / max(cpu, 1e-9)
        wall_first, cpu_first = first_of.setdefault(writer_name, (rate, cpu_rate))
        wall_previous = previous_of.get(writer_name, rate)
        previous_of[writer_name] = rate
        on_server = SERVER_CPU.get((writer_name, variant))
        print(
            f"{writer_name:10} {variant:45} {count:10,} {seconds:7.3f} {rate:11,.0f} {cpu:6.3f}"
            f" {cpu_rate:11,.0f} {cpu_rate / TARGET:11.2f}x"
            f" {rate / wall_first:12.2f}x {cpu_rate / cpu_first:11.2f}x {rate / wall_previous:11.2f}x"
            f" {'' if on_server is None else f'{on_server:12.3f}'}"
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


#: How a variant hands its rows to chdb: ``file`` (an Arrow stream file read by file(), one INSERT:
#: the embedded writer before it sent blocks at once), ``backend`` (EmbeddedBackend.insert as the
#: writer calls it), ``python`` (chdb's Python() table function over the Arrow table), ``stream``
#: (chdb's streaming insert of the Arrow stream's bytes).
EmbeddedVariant = tuple[str, Snapshot, bool, str, int, str, bool]  # label, snapshot, previous schema,
# settings, streams, path, with flow_latest's view


def embedded_file_insert(backend: Any, columns: dict[str, Any], settings: str) -> None:
    """The embedded writer's insert before blocks went at once: a file read by file(), one INSERT."""
    import pyarrow as pa
    import pyarrow.ipc

    from netspectra.storage.rows import as_arrow
    from netspectra.storage.sql import insert_columns, quote_string

    names = insert_columns("flow_metrics", columns)
    frame = pa.Table.from_arrays([as_arrow(name, columns[name]) for name in names], names=list(names))
    listed = ", ".join(names)
    path = Path(backend.path).parent / f"{Path(backend.path).name}.arrows"
    with pa.OSFile(str(path), "wb") as sink, pyarrow.ipc.new_stream(sink, frame.schema) as stream:
        stream.write_table(frame)
    source = f"file({quote_string(str(path))}, 'ArrowStream')"
    backend._open().query(
        f"INSERT INTO flow_metrics ({listed}) SETTINGS {settings} SELECT {listed} FROM {source}"  # noqa: S608
    )
    path.unlink()


def embedded_stream_insert(backend: Any, columns: dict[str, Any], settings: str) -> None:
    """chdb's streaming insert of the Arrow stream's bytes (no file). Not the writer's: on a full
    disk it reported the rows written and stored none (chdb 4.4)."""
    import pyarrow as pa
    import pyarrow.ipc

    from netspectra.storage.rows import as_arrow
    from netspectra.storage.sql import insert_columns

    names = insert_columns("flow_metrics", columns)
    frame = pa.Table.from_arrays([as_arrow(name, columns[name]) for name in names], names=list(names))
    sink = pa.BufferOutputStream()
    with pyarrow.ipc.new_stream(sink, frame.schema) as stream:
        stream.write_table(frame)
    inserter = backend._open().send_insert(
        f"INSERT INTO flow_metrics ({', '.join(names)}) SETTINGS {settings}", "ArrowStream"
    )
    inserter.append(sink.getvalue().to_pybytes())
    inserter.finish()


def embedded_python_insert(backend: Any, columns: dict[str, Any], settings: str) -> None:
    """chdb's Python() table function reading the Arrow table where it lies (it finds ``frame``
    among the caller's locals)."""
    import pyarrow as pa

    from netspectra.storage.rows import as_arrow
    from netspectra.storage.sql import insert_columns

    names = insert_columns("flow_metrics", columns)
    frame = pa.Table.from_arrays([as_arrow(name, columns[name]) for name in names], names=list(names))
    listed = ", ".join(names)
    backend._open().query(
        f"INSERT INTO flow_metrics ({listed}) SETTINGS {settings} SELECT {listed} FROM Python(frame)"  # noqa: S608
    )
    del frame


def embedded(exact: Snapshot, flow_records: Snapshot, rows: int, repeat: int, work: Path) -> list[Result]:
    """The embedded writer's variants and chdb's ceilings, best (wall, CPU) each, runs interleaved."""
    from netspectra.storage.embedded import EmbeddedBackend, default_insert_streams
    from netspectra.storage.rows import snapshot_rows
    from netspectra.storage.sql import DROP_LATEST_VIEW

    before = "optimize_on_insert = 1, parallel_view_processing = 0"
    streams = default_insert_streams()
    variants: list[EmbeddedVariant] = [
        ("Arrow + view, chdb defaults (before)", exact, False, before, 1, "file", True),
        (f"{streams} blocks, sipHash64 view", exact, False, INSERT_SETTINGS, streams, "backend", True),
        ("Arrow + view, no in-block merge", exact, False, INSERT_SETTINGS, 1, "file", True),
        ("same, schema before raw counts", exact, True, INSERT_SETTINGS, 1, "file", True),
        ("same, flow-record tasks (raw counts)", flow_records, False, INSERT_SETTINGS, 1, "file", True),
        (
            f"Arrow + view, up to {streams} blocks at once (now)",
            exact,
            False,
            INSERT_SETTINGS,
            streams,
            "backend",
            True,
        ),
        ("ceiling: streaming insert, one block", exact, False, INSERT_SETTINGS, 1, "stream", True),
        ("ceiling: Python() over the Arrow table", exact, False, INSERT_SETTINGS, 1, "python", True),
        ("ceiling: no flow_latest view, one block", exact, False, INSERT_SETTINGS, 1, "backend", False),
        (
            f"ceiling: no view, {streams} blocks at once",
            exact,
            False,
            INSERT_SETTINGS,
            streams,
            "backend",
            False,
        ),
    ]
    timings: list[list[tuple[float, float]]] = [[] for _ in variants]
    rounds = [0]

    async def write_embedded() -> None:
        # a warm-up insert first, then the variants in a rotated order each round
        order = [0] * (rounds[0] == 0) + rotated(len(variants), rounds[0])
        rounds[0] += 1
        for position, index in enumerate(order):
            _, snapshot, previous, settings, block_streams, path, view = variants[index]
            backend = EmbeddedBackend(
                str(work / f"chdb-{time.monotonic_ns()}"),
                insert_settings=settings,
                insert_streams=block_streams,
            )
            await create_schema(backend, previous)
            if not view:
                await backend.execute(DROP_LATEST_VIEW)
            elif "sipHash64" in variants[index][0]:
                await use_sip_hash_view(backend)
            started, cpu = time.perf_counter(), time.process_time()
            columns = snapshot_rows(snapshot, "bench").flows
            if path == "backend":
                await backend.insert("flow_metrics", columns)
            else:
                insert = {"file": embedded_file_insert, "python": embedded_python_insert}.get(
                    path, embedded_stream_insert
                )
                await backend._call(insert, backend, columns, settings)
            if position or rounds[0] > 1:
                timings[index].append((time.perf_counter() - started, time.process_time() - cpu))
            stored = await backend.select("SELECT count() FROM flow_metrics")
            assert stored == [(len(columns["Timestamp"]),)], stored  # every row landed, once
            await backend.close()
            shutil.rmtree(backend.path, ignore_errors=True)

    best(repeat, write_embedded)
    return [
        ("embedded", variant[0], rows, min(runs)) for variant, runs in zip(variants, timings, strict=True)
    ]


#: The clickhouse-server's own CPU seconds of a variant (its process, not ours), by (writer, variant).
SERVER_CPU: dict[tuple[str, str], float] = {}


def native_file(columns: dict[str, Any]) -> bytes:
    """``columns`` in ClickHouse's Native format (what `INSERT ... FORMAT Native` reads)."""
    from netspectra.storage.native_block import encode_column
    from netspectra.storage.sql import insert_columns

    def varint(value: int) -> bytes:
        out = bytearray()
        while value >= 0x80:
            out.append(value & 0x7F | 0x80)
            value >>= 7
        out.append(value)
        return bytes(out)

    def text(value: str) -> bytes:
        return varint(len(value.encode())) + value.encode()

    types = {"SrcIP": "Nullable(String)", "DstIP": "Nullable(String)", "SrcPort": "Nullable(UInt16)"}
    types |= {"DstPort": "Nullable(UInt16)", "Protocol": "Nullable(UInt8)", "TaskName": "String"}
    types |= {"EngineId": "String", "ByteCount": "UInt64", "PacketCount": "UInt64"}
    names = insert_columns("flow_metrics", columns)
    parts = [varint(len(names)), varint(len(columns["Timestamp"]))]
    for name in names:
        kind = types.get(name, "DateTime")
        parts += [text(name), text(kind), encode_column(name, kind, columns[name])]
    return b"".join(parts)


def find_clickhouse_client() -> str | None:
    found = shutil.which("clickhouse-client")
    return found or next((c for c in ("/usr/bin/clickhouse-client",) if os.access(c, os.X_OK)), None)


def clickhouse(exact: Snapshot, rows: int, repeat: int, work: Path) -> list[Result]:
    """The server writer's variants and the server's ceilings, best (wall, CPU) each, interleaved.

    The ceilings hand the server a Native file made before the timing (as a user would from a
    file): over its HTTP interface (no client at all: the server's own parsing and insert) and
    through clickhouse-client; with and without flow_latest's view.
    """
    import subprocess
    import urllib.parse
    import urllib.request

    from netspectra.config.models import ClickHouseOptions
    from netspectra.storage.clickhouse import MAX_INSERT_STREAMS, ClickHouseBackend
    from netspectra.storage.rows import snapshot_rows
    from netspectra.storage.sql import DROP_LATEST_VIEW, insert_columns
    from tests.fixtures.clickhouse import ClickHouseServer, find_clickhouse_server

    binary = find_clickhouse_server()
    if binary is None:
        print("clickhouse-server not found: the clickhouse writer is not measured")
        return []
    server = ClickHouseServer(binary, work / "clickhouse")
    server.start()
    columns = snapshot_rows(exact, "bench").flows
    listed = ", ".join(insert_columns("flow_metrics", columns))
    whole = native_file(columns)
    half = rows // 2
    halves = [
        native_file({name: column.slice(*bounds) for name, column in columns.items()})
        for bounds in ((0, half), (half,))
    ]
    client = find_clickhouse_client()
    streams = MAX_INSERT_STREAMS
    # label, snapshot, previous schema, insert streams (0: a ceiling, by its label), view
    variants: list[tuple[str, Snapshot, bool, int, bool]] = [
        ("Native block over asynch (+ view)", exact, False, 1, True),
        ("same, schema before raw counts", exact, True, 1, True),
        ("same, flow-record tasks (raw counts)", sampled(exact), False, 1, True),
        (f"same, up to {streams} blocks, view's FlowCheck sipHash64", exact, False, streams, True),
        (f"same, up to {streams} blocks at once (now)", exact, False, streams, True),
        ("ceiling: server's HTTP input, Native file", exact, False, 0, True),
        ("ceiling: HTTP, 2 halves at once", exact, False, 0, True),
        ("ceiling: no flow_latest view, ours 1 block", exact, False, 1, False),
        (f"ceiling: no view, ours {streams} blocks", exact, False, streams, False),
        ("ceiling: no view, server's HTTP input", exact, False, 0, False),
    ]
    if client is not None:
        variants.insert(6, ("ceiling: clickhouse-client, Native file", exact, False, 0, True))
    else:
        print("clickhouse-client not found: its ceiling is not measured")
    timings: list[list[tuple[float, float, float]]] = [[] for _ in variants]

    def server_cpu() -> float:
        assert server._process is not None
        fields = Path(f"/proc/{server._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def http(database: str, body: bytes) -> None:
        query = urllib.parse.urlencode(
            {"query": f"INSERT INTO flow_metrics ({listed}) FORMAT Native", "database": database}
        )
        request = urllib.request.Request(f"http://{server.host}:{server.http_port}/?{query}", data=body)
        with urllib.request.urlopen(request, timeout=300) as response:
            response.read()

    def ceiling(label: str, database: str) -> None:
        if label.startswith("ceiling: clickhouse-client"):
            assert client is not None
            command = [client, "--host", server.host, "--port", str(server.tcp_port), "--database", database]
            command += ["--query", f"INSERT INTO flow_metrics ({listed}) FORMAT Native"]
            subprocess.run(command, input=whole, check=True)
        elif "2 halves" in label:
            with ThreadPoolExecutor(2) as pool:
                for done in [pool.submit(http, database, half) for half in halves]:
                    done.result()
        else:
            http(database, whole)

    try:
        rounds = [0]

        async def write() -> None:
            order = [0] * (rounds[0] == 0) + rotated(len(variants), rounds[0])  # as the embedded runs
            rounds[0] += 1
            for position, index in enumerate(order):
                label, snapshot, previous, block_streams, view = variants[index]
                database = f"bench{index}"
                setup = ClickHouseBackend(
                    ClickHouseOptions.model_validate({"host": server.host, "port": server.tcp_port})
                )
                await setup.execute(f"DROP DATABASE IF EXISTS {database}")
                await setup.execute(f"CREATE DATABASE {database}")
                await setup.close()
                options = {"host": server.host, "port": server.tcp_port, "database": database}
                backend = ClickHouseBackend(
                    ClickHouseOptions.model_validate(options), insert_streams=block_streams
                )
                await create_schema(backend, previous)
                if not view:
                    await backend.execute(DROP_LATEST_VIEW)
                elif "sipHash64" in label:
                    await use_sip_hash_view(backend)
                started, cpu, server_started = time.perf_counter(), time.process_time(), server_cpu()
                if block_streams:
                    await backend.insert("flow_metrics", snapshot_rows(snapshot, "bench").flows)
                else:
                    await asyncio.to_thread(ceiling, label, database)
                if position or rounds[0] > 1:
                    timings[index].append(
                        (
                            time.perf_counter() - started,
                            time.process_time() - cpu,
                            server_cpu() - server_started,
                        )
                    )
                stored = await backend.select("SELECT count() FROM flow_metrics")
                assert stored == [(rows,)], stored  # every row landed, once
                await backend.close()

        best(repeat, write)
    finally:
        server.stop()
    results: list[Result] = []
    for variant, runs in zip(variants, timings, strict=True):
        wall, cpu, on_server = min(runs)
        SERVER_CPU["clickhouse", variant[0]] = on_server
        results.append(("clickhouse", variant[0], rows, (wall, cpu)))
    return results


if __name__ == "__main__":
    main()
