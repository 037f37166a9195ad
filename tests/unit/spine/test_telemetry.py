"""Self-metrics in one process: the collector reads the roles' own stats, /metrics serves them.

A probe replays a generated trace over the embedded bus into an engine (one Application, as
``netspectra run --roles=probe,engine`` builds it); what /metrics says is compared with the
generator's truth and with the stats objects the log lines print.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from netspectra.api.console import rates
from netspectra.app import Application
from netspectra.config.models import Settings
from netspectra.model.fields import KeyField
from netspectra.synth.traffic import TrafficSpec, exact_truth, write_trace

TASKS = {"per_src_ip": ["SrcIP"], "per_dst_port": ["DstPort"]}


def settings_for(pcap: Path, listen: str) -> Settings:
    return Settings.model_validate(
        {
            "probe": {"source": "file", "pcap": str(pcap)},
            "engine": {"flush_interval": 0.02, "stats_interval": 60},
            "aggregator": {
                "types": ["exact"],
                "exact": {"tasks": [{"name": name, "key_fields": fields} for name, fields in TASKS.items()]},
            },
            "metrics": {"listen_addr": listen},
        }
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def fetch(port: int, path: str) -> tuple[str, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head.decode().split("\r\n")[0], body


async def wait_for(condition, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.02)


async def test_metrics_equal_the_generators_truth_and_the_stats_objects(tmp_path: Path) -> None:
    pcap = tmp_path / "trace.pcap"
    truth = write_trace(pcap, TrafficSpec(packets=5000, flows=120, seed=4))
    total = len(truth.packets)
    app = Application(settings_for(pcap, "127.0.0.1:0"), ["probe", "engine"])
    stop = asyncio.Event()
    running = asyncio.create_task(app.run(stop))
    try:
        await wait_for(lambda: app.metrics_server is not None and "engine" in app.built)
        engine_role = app.built["engine"]
        await wait_for(lambda: engine_role.engine.stats.packets == total)  # type: ignore[attr-defined]
        # stats count a batch once it is queued on the kernel lanes; netspectra_task_flows reads
        # the tables, which may still be a batch behind. A snapshot drains the lanes (under the
        # engine lock), so after it every counted batch is in the tables the gauge reads.
        await asyncio.to_thread(engine_role.engine.snapshot_all_sync)  # type: ignore[attr-defined]
        assert app.metrics_server is not None
        status, body = await fetch(app.metrics_server.port, "/metrics")
        assert status == "HTTP/1.1 200 OK"
        values = samples(body.decode())
        engine = (("role", "engine"),)
        assert values[("netspectra_probe_published_packets_total", (("role", "probe"),))] == total
        assert values[("netspectra_probe_captured_packets_total", (("role", "probe"),))] == total
        assert values[("netspectra_engine_received_packets_total", engine)] == total
        assert values[("netspectra_engine_counted_packets_total", engine)] == total
        assert values[("netspectra_engine_counted_bytes_total", engine)] == int(truth.packets.length.sum())
        skipped = {
            labels: v
            for (name, labels), v in values.items()
            if name == "netspectra_probe_skipped_packets_total"
        }
        assert {dict(labels)["reason"]: v for labels, v in skipped.items()} == {
            reason: count for reason, count in truth.skipped.items() if count
        }
        for task, fields in TASKS.items():
            key = (("group", "exact"), ("role", "engine"), ("task", task))
            assert values[("netspectra_task_counted_packets_total", key)] == total
            flows = len(exact_truth(truth, [KeyField(f) for f in fields]))
            assert values[("netspectra_task_flows", (("role", "engine"), ("task", task)))] == flows
        assert values[("netspectra_engine_gap_packets", engine)] == 0
        assert (
            sum(v for (name, _), v in values.items() if name == "netspectra_engine_rejected_packets_total")
            == 0
        )
        batches = values[("netspectra_engine_batch_seconds_count", (("role", "engine"), ("stage", "count")))]
        assert batches >= 1
        status, _ = await fetch(app.metrics_server.port, "/other")
        assert status == "HTTP/1.1 404 Not Found"
    finally:
        stop.set()
        assert await running == 0


async def test_a_taken_metrics_port_is_a_warning_and_counting_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pcap = tmp_path / "trace.pcap"
    truth = write_trace(pcap, TrafficSpec(packets=1000, flows=20, seed=5))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = Application(settings_for(pcap, f"127.0.0.1:{port}"), ["probe", "engine"])
        stop = asyncio.Event()
        with caplog.at_level(logging.WARNING, logger="netspectra.app"):
            running = asyncio.create_task(app.run(stop))
            await wait_for(lambda: "engine" in app.built)
            engine = app.built["engine"].engine  # type: ignore[attr-defined]
            await wait_for(lambda: engine.stats.packets == len(truth.packets))
            stop.set()
            assert await running == 0
    assert app.metrics_server is None
    assert any("metrics.listen_addr" in record.getMessage() for record in caplog.records)


def test_rates_take_a_fallen_counter_as_a_new_period() -> None:
    points = [(100, 10, 1000), (110, 30, 3000), (110, 30, 3000), (120, 5, 500)]
    assert rates(points) == [
        {"time": 110, "packets_per_s": 2.0, "bytes_per_s": 200.0},
        {"time": 120, "packets_per_s": 0.5, "bytes_per_s": 50.0},
    ]
