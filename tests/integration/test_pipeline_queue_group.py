"""Two engine processes in one queue group share a stream; their JSONL outputs add up to the truth.

Everything is a real process: nats-server, two ``netspectra run --roles=engine`` with the file
writer, and one ``netspectra run --roles=probe --pcap`` replaying a generated trace. The truth is
the generator's :func:`exact_truth`, never our engine.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from netspectra.model.fields import KeyField
from netspectra.synth.traffic import TrafficSpec, exact_truth, write_trace
from tests.fixtures.nats import NatsServer
from tests.integration.pipeline_helpers import TASKS, NetspectraProcess, jsonl_counts, pipeline_config

_STOPPED = re.compile(r"Engine role stopped: (\d+) packets from (\d+) messages \+ (\d+) batch messages")
_PUBLISHED = re.compile(r"Probe stopped: published (\d+) packets in (\d+) messages; lost (\d+)")


@pytest.mark.parametrize("batch", [0, 500], ids=["per-message", "batched"])
def test_two_engine_processes_add_up_to_truth(nats_server: NatsServer, tmp_path: Path, batch: int) -> None:
    trace = tmp_path / "trace.pcap"
    truth = write_trace(trace, TrafficSpec(packets=30_000, flows=400, seed=23))
    engines = [
        NetspectraProcess(
            tmp_path / f"engine{i}",
            f"engine{i}",
            pipeline_config(url=nats_server.url, out=tmp_path / f"out{i}", engine_id=f"e{i}"),
            "--roles=engine",
        )
        for i in range(2)
    ]
    try:
        for engine in engines:
            engine.wait_for_message("Engine subscribed to")
        probe = NetspectraProcess(
            tmp_path / "probe",
            "probe",
            pipeline_config(url=nats_server.url, batch=batch),
            "--roles=probe",
            "--pcap",
            str(trace),
            "--rate",
            "60000",
        )
        assert probe.process.wait(30) == 0, probe.tail()
        published = _PUBLISHED.search(probe.wait_for_message("Probe stopped"))
        assert published is not None
        assert (int(published[1]), int(published[3])) == (len(truth.packets), 0)
        # every engine hears every probe count message: wait until each one has seen the final one
        for engine in engines:
            engine.wait_for_message(f"probes published {len(truth.packets)};")
        received = []
        for engine in engines:
            assert engine.stop() == 0, engine.tail()
            stopped = _STOPPED.search(engine.wait_for_message("Engine role stopped"))
            assert stopped is not None
            received.append(int(stopped[1]))
    finally:
        for engine in engines:
            engine.kill()
    # the queue group split the stream: both engines took part, and nothing was lost or repeated
    assert all(share > 0 for share in received), received
    assert sum(received) == len(truth.packets)
    for task, names in TASKS.items():
        total: Counter[tuple[object, ...]] = Counter()
        total_bytes: Counter[tuple[object, ...]] = Counter()
        for i in range(2):
            for key, (packets, byte_count) in jsonl_counts(tmp_path / f"out{i}", task).items():
                total[key] += packets
                total_bytes[key] += byte_count
        expected = exact_truth(truth, [KeyField(name) for name in names])
        assert dict(total) == {key: flow.packets for key, flow in expected.items()}, task
        assert dict(total_bytes) == {key: flow.bytes for key, flow in expected.items()}, task
