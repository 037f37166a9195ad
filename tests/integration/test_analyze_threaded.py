"""The threaded analysis equals the sequential one: counting on kernel lanes beside the reader
thread, the file writer's chunks formatted on several threads and synced on another, against one
kernel thread and the writer on the calling thread, on a generated trace with many flows.

Nothing may be lost or reordered where order matters: a table's rows (and so each JSON Lines
file's lines) are in first-seen order, which is checked against a brute-force pass over the
generator's ground truth, in file order.
"""

from __future__ import annotations

import json
from calendar import timegm
from pathlib import Path
from time import strptime

import numpy as np
import pytest

from netspectra.analysis import AnalysisResult, analyze_file, default_settings
from netspectra.config.models import WriterConfig
from netspectra.engine.engine import Engine
from netspectra.engine.exact import ExactGroup
from netspectra.model.fields import KeyField
from netspectra.storage.file_writer import FileWriter
from tests.unit.engine.engine_helpers import brute_force

traffic = pytest.importorskip("netspectra.synth.traffic", reason="the capture engineer's generator")

S = 1_000_000_000
COLUMNS = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol", "packets", "bytes")
TIMES = ("first_seen_ns", "last_seen_ns")


def nanoseconds(text: str) -> int:
    whole, fraction = text.rstrip("Z").split(".")
    return timegm(strptime(whole, "%Y-%m-%dT%H:%M:%S")) * S + int(fraction)


async def analyze(pcap: Path, root: Path, *, threads: int, batch_size: int) -> tuple[AnalysisResult, Path]:
    tasks = default_settings().aggregator.exact.tasks
    config = WriterConfig(type="file", file={"root_path": str(root)})
    writer = FileWriter(root, threads=threads)
    engine = Engine({"exact": ExactGroup(tasks)}, {"exact": [(config, writer)]}, kernel_threads=threads)
    result = await analyze_file(pcap, engine, batch_size=batch_size)
    (directory,) = root.iterdir()
    return result, directory


async def test_threaded_analysis_equals_the_sequential_one(tmp_path: Path) -> None:
    pcap = tmp_path / "trace.pcap"
    truth = traffic.write_trace(pcap, traffic.TrafficSpec(packets=200_000, flows=80_000, seed=23))
    # small batches: many of them queued on the lanes at once, and re-balanced between tasks
    threaded, threaded_dir = await analyze(pcap, tmp_path / "threaded", threads=2, batch_size=4096)
    sequential, sequential_dir = await analyze(pcap, tmp_path / "sequential", threads=1, batch_size=65536)
    assert threaded.packets == sequential.packets == len(truth.packets)
    tables = {table.task: table for table in threaded.flow_tables()}
    assert len(tables) == 6
    assert sum(len(table) for table in tables.values()) > 65_536, "the threaded file writer must run"
    for reference in sequential.flow_tables():
        table = tables[reference.task]
        assert len(table) == len(reference), table.task
        for column in (*COLUMNS, *TIMES):
            assert np.array_equal(getattr(table, column), getattr(reference, column)), (table.task, column)
        name = f"{table.task}.jsonl"
        assert (threaded_dir / name).read_bytes() == (sequential_dir / name).read_bytes(), name
        assert int(table.packets.sum()) == len(truth.packets)

    # the five-tuple file, line by line, against brute force in first-seen (file) order
    five_tuple = next(t for t in default_settings().aggregator.exact.tasks if len(t.key_fields) == 5)
    expected = brute_force([truth.packets], tuple(KeyField(field) for field in five_tuple.key_fields))
    written = []
    for line in (threaded_dir / f"{five_tuple.name}.jsonl").read_text().splitlines():
        record = json.loads(line)
        values = [record["packets"], record["bytes"], nanoseconds(record["first_seen"])]
        written.append((tuple(record["fields"].values()), [*values, nanoseconds(record["last_seen"])]))
    assert written == list(expected.items())
