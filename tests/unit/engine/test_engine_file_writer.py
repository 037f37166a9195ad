"""The JSON Lines file writer, parsed back with the standard library and compared to brute force."""

from __future__ import annotations

import json
import os
from calendar import timegm
from dataclasses import replace
from pathlib import Path
from time import strptime

import numpy as np
import pytest

from netspectra.config.models import ExactTaskConfig, WriterConfig
from netspectra.engine.exact import ExactGroup
from netspectra.model.fields import FIELD_ORDER, KeyField
from netspectra.model.snapshot import FlowTable, SketchResult, Snapshot
from netspectra.storage.context import StorageContext
from netspectra.storage.file_writer import FileWriter, flow_bytes, flow_lines
from tests.unit.engine.engine_helpers import brute_force, random_batch

S = 1_000_000_000
TASKS = {"per_src_ip": (KeyField.SRC_IP,), "per_five_tuple": FIELD_ORDER, "proto_dst": (KeyField.PROTOCOL,)}


def parse_time(text: str) -> int:
    """RFC 3339 ``...T..:..:...nnnnnnnnnZ`` → ns, by hand (strptime cannot hold nanoseconds)."""
    assert text.endswith("Z") and len(text.split(".")[1]) == 10
    whole, fraction = text[:-1].split(".")
    return timegm(strptime(whole, "%Y-%m-%dT%H:%M:%S")) * S + int(fraction)


def read_back(path: Path, task: str) -> dict[tuple, list[int]]:
    result = {}
    for line in path.read_text().splitlines():
        record = json.loads(line)
        assert record["task"] == task
        assert list(record["fields"]) == [field.value for field in TASKS[task]]
        key = tuple(record["fields"].values())
        result[key] = [
            record["packets"],
            record["bytes"],
            parse_time(record["first_seen"]),
            parse_time(record["last_seen"]),
        ]
    return result


async def test_written_files_equal_truth(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    batches = [random_batch(rng, 3000, hosts=80, ports=30) for _ in range(2)]
    group = ExactGroup([ExactTaskConfig(name=name, key_fields=fields) for name, fields in TASKS.items()])
    for batch in batches:
        group.insert(batch)
    config = WriterConfig(type="gob", gob={"root_path": str(tmp_path / "out")})
    writer = FileWriter.from_config(config, group="exact", context=StorageContext())
    taken = 1_714_564_800 * S + 123  # 2024-05-01 12:00:00 UTC
    await writer.write(group.snapshot(taken_at_ns=taken, period_start_ns=0))
    await writer.close()
    directory = tmp_path / "out" / "2024-05-01_12-00-00"
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{name}.jsonl" for name in TASKS)
    for name, fields in TASKS.items():
        assert read_back(directory / f"{name}.jsonl", name) == brute_force(batches, fields), name


async def test_same_second_snapshots_do_not_overwrite(tmp_path: Path) -> None:
    group = ExactGroup([ExactTaskConfig(name="t", key_fields=(KeyField.SRC_PORT,))])
    writer = FileWriter(tmp_path)
    first = random_batch(np.random.default_rng(1), 100)
    group.insert(first)
    await writer.write(group.snapshot(taken_at_ns=5 * S + 1, period_start_ns=0))
    group.reset()
    await writer.write(group.snapshot(taken_at_ns=5 * S + 2, period_start_ns=5 * S))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["1970-01-01_00-00-05", "1970-01-01_00-00-05.000000002"]
    assert len(read_back_lines(tmp_path / names[0] / "t.jsonl")) == len(set(first.src_port.tolist()))
    assert read_back_lines(tmp_path / names[1] / "t.jsonl") == []
    assert not list(tmp_path.rglob(".*.tmp"))


def read_back_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


async def test_sketch_snapshots_are_ignored(tmp_path: Path) -> None:
    writer = FileWriter(tmp_path, group="sketch")
    sketch = SketchResult(task="cm", algorithm="count_min", hitters=())
    await writer.write(Snapshot(group="sketch", taken_at_ns=0, period_start_ns=0, sketches=(sketch,)))
    assert list(tmp_path.iterdir()) == []


def random_table(rng: np.random.Generator, rows: int, fields: tuple[KeyField, ...]) -> FlowTable:
    """Addresses of every shape (IPv4-mapped, zero runs of every length, all-zero), extreme counters
    and times from 1970 to 2262 (the last year of int64 nanoseconds)."""
    addresses = rng.integers(0, 256, (rows, 16), dtype=np.uint8)
    shape = rng.integers(0, 4, rows)
    addresses[shape == 0, :10] = 0
    addresses[shape == 0, 10:12] = 0xFF
    for row in np.flatnonzero(shape == 1):
        start, stop = sorted(rng.integers(0, 9, 2) * 2)
        addresses[row, start:stop] = 0
    addresses[shape == 2] = 0
    seconds = rng.integers(0, 9_000_000_000, rows, dtype=np.int64)
    seconds[: rows // 2] = 1_700_000_000 + rng.integers(0, 3, rows // 2)
    first = seconds * S + rng.integers(0, S, rows)
    return FlowTable(
        't\u00e9sk "q"',
        fields,
        addresses,
        addresses[::-1].copy(),
        rng.integers(0, 1 << 16, rows).astype(np.uint16),
        rng.integers(0, 1 << 16, rows).astype(np.uint16),
        rng.integers(0, 256, rows).astype(np.uint8),
        rng.integers(0, 2**64 - 1, rows, dtype=np.uint64, endpoint=True),
        np.where(rng.random(rows) < 0.1, 0, rng.integers(0, 2**40, rows)).astype(np.uint64),
        first,
        first + rng.integers(0, 10 * S, rows),
    )


def test_kernel_lines_equal_the_python_lines() -> None:
    """The numba formatter against the per-row f-string reference, byte for byte."""
    rng = np.random.default_rng(5)
    for fields in (
        FIELD_ORDER,
        (KeyField.SRC_IP,),
        (KeyField.DST_PORT, KeyField.DST_IP),
        (KeyField.PROTOCOL,),
    ):
        table = random_table(rng, 70_000, fields)  # more than one kernel chunk
        assert flow_bytes(table) == "".join(line + "\n" for line in flow_lines(table)).encode(), fields
        assert flow_bytes(random_table(rng, 0, fields)) == b""


def test_kernel_without_room_past_its_text_writes_the_same_bytes() -> None:
    """A buffer exactly as long as the text: the word copies give way to byte copies at its end
    (and never write past it)."""
    from netspectra.storage.file_writer import _formatter

    rng = np.random.default_rng(8)
    for fields in (FIELD_ORDER, (KeyField.SRC_IP,), (KeyField.PROTOCOL, KeyField.DST_IP)):
        table = random_table(rng, 300, fields)
        for sampled in (table, replace(table, raw_packets=table.packets // 3, raw_bytes=table.bytes // 3)):
            expected = "".join(line + "\n" for line in flow_lines(sampled)).encode()
            formatter = _formatter(sampled)
            assert formatter is not None
            guard = np.full(len(expected) + 16, 0xAA, np.uint8)  # the text, then bytes to keep
            assert formatter(guard[: len(expected)], 0, len(sampled)) == len(expected)
            assert guard[: len(expected)].tobytes() == expected
            assert (guard[len(expected) :] == 0xAA).all()


def test_times_outside_the_kernels_years_take_the_python_path() -> None:
    table = random_table(np.random.default_rng(6), 10, FIELD_ORDER)
    early = FlowTable(
        **{
            **{name: getattr(table, name) for name in table.__slots__},
            "first_seen_ns": table.first_seen_ns - 2**62,
        }
    )
    assert flow_bytes(early) == "".join(line + "\n" for line in flow_lines(early)).encode()


def test_chunks_formatted_side_by_side_make_the_same_files(tmp_path: Path) -> None:
    """The threaded writer (chunks of several tasks in flight at once) writes each task's file
    exactly as the one-thread formatting does, the Python path and an empty task included."""
    rng = np.random.default_rng(8)
    big = random_table(rng, 200_000, FIELD_ORDER)  # four kernel chunks
    small = random_table(rng, 5, (KeyField.SRC_IP,))
    early = replace(small, first_seen_ns=small.first_seen_ns - 2**62)  # before 1970: Python's text
    tables = (
        replace(big, task="big"),
        replace(random_table(rng, 0, FIELD_ORDER), task="empty"),
        replace(early, task="early"),
        replace(random_table(rng, 70_000, (KeyField.DST_PORT, KeyField.DST_IP)), task="second"),
        replace(small, task="small"),
    )
    directory = FileWriter(tmp_path).write_sync(Snapshot("exact", 5 * S, 0, flows=tables))
    assert sorted(p.name for p in directory.iterdir()) == sorted(f"{t.task}.jsonl" for t in tables)
    for table in tables:
        expected = "".join(line + "\n" for line in flow_lines(table)).encode()
        assert (directory / f"{table.task}.jsonl").read_bytes() == expected, table.task


def test_a_failed_sync_fails_the_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files are synced and renamed on a thread of their own: a sync error still fails the write,
    and a file whose sync failed never gets its name (readers see no half-written file)."""
    real_fsync = os.fsync
    synced: list[int] = []

    def failing_second(fd: int) -> None:
        synced.append(fd)
        if len(synced) == 2:
            raise OSError(5, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_second)
    rng = np.random.default_rng(9)
    tables = tuple(replace(random_table(rng, 40_000, FIELD_ORDER), task=f"t{i}") for i in range(3))
    with pytest.raises(OSError, match="Input/output"):
        FileWriter(tmp_path).write_sync(Snapshot("exact", 5 * S, 0, flows=tables))
    (directory,) = tmp_path.iterdir()
    named = sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))
    assert "t1.jsonl" not in named and named == ["t0.jsonl", "t2.jsonl"]


def sampled(table: FlowTable, rng: np.random.Generator) -> FlowTable:
    """``table`` as a task fed flow records keeps it: raw counts beside the counts (extremes too)."""
    rows = len(table)
    raw_packets = rng.integers(0, 2**64 - 1, rows, dtype=np.uint64, endpoint=True)
    return replace(table, raw_packets=raw_packets, raw_bytes=raw_packets[::-1].copy())


def test_raw_counts_kernel_lines_equal_the_python_lines() -> None:
    rng = np.random.default_rng(9)
    for fields in (FIELD_ORDER, (KeyField.SRC_IP,), (KeyField.PROTOCOL,)):
        table = sampled(random_table(rng, 70_000, fields), rng)
        written = flow_bytes(table)
        assert written == "".join(line + "\n" for line in flow_lines(table)).encode(), fields
        records = [json.loads(line) for line in written.decode().splitlines()]
        assert [r["raw_packets"] for r in records] == table.raw_packets.tolist()
        assert [r["raw_bytes"] for r in records] == table.raw_bytes.tolist()
        assert [r["packets"] for r in records] == table.packets.tolist()
        early = replace(table, first_seen_ns=table.first_seen_ns - 2**62)  # the Python path
        assert json.loads(flow_bytes(early).splitlines()[0])["raw_bytes"] == int(table.raw_bytes[0])


def test_packet_tasks_write_no_raw_counts(tmp_path: Path) -> None:
    """Unchanged files for tasks that only counted packets: the keys Go's gob writer reader expects."""
    table = random_table(np.random.default_rng(10), 100, FIELD_ORDER)
    assert all(
        list(json.loads(line)) == ["task", "fields", "packets", "bytes", "first_seen", "last_seen"]
        for line in flow_bytes(table).decode().splitlines()
    )


async def test_flow_records_are_written_with_their_raw_counts(tmp_path: Path) -> None:
    from tests.unit.engine.test_engine_exact_weighted import random_flows, truth

    group = ExactGroup([ExactTaskConfig(name=name, key_fields=fields) for name, fields in TASKS.items()])
    flows = random_flows(4000, 12)
    for _label, job in group.insert_flow_jobs(flows):
        job()
    directory = FileWriter(tmp_path).write_sync(group.snapshot(taken_at_ns=5 * S, period_start_ns=0))
    for name, fields in TASKS.items():
        got = {}
        for line in (directory / f"{name}.jsonl").read_text().splitlines():
            record = json.loads(line)
            got[tuple(record["fields"].values())] = [
                record["packets"], record["bytes"], parse_time(record["first_seen"]),
                parse_time(record["last_seen"]), record["raw_packets"], record["raw_bytes"],
            ]  # fmt: skip
        assert got == truth(flows, fields, raw=True), name
