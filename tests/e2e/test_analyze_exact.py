"""Generated trace → `netspectra analyze` → every default exact task's JSON Lines equals the ground truth."""

from __future__ import annotations

import json
import subprocess
from calendar import timegm
from pathlib import Path
from time import strptime

import pytest

from netspectra.analysis import default_settings
from tests.fixtures.tools import venv_tool

traffic = pytest.importorskip("netspectra.synth.traffic", reason="the capture engineer's generator")

NETSPECTRA = venv_tool("netspectra")
S = 1_000_000_000


def nanoseconds(text: str) -> int:
    whole, fraction = text.rstrip("Z").split(".")
    return timegm(strptime(whole, "%Y-%m-%dT%H:%M:%S")) * S + int(fraction)


def test_every_default_exact_task_equals_truth(tmp_path: Path) -> None:
    tasks = default_settings().aggregator.exact.tasks
    assert len(tasks) >= 6, "the default config should carry the six Go exact tasks"
    pcap = tmp_path / "trace.pcap"
    truth = traffic.write_trace(pcap, traffic.TrafficSpec(packets=30_000, flows=2_000, seed=42))
    config = {
        "aggregator": {
            "types": ["exact"],
            "exact": {
                "writers": [{"type": "file", "file": {"root_path": str(tmp_path / "out")}}],
                "tasks": [task.model_dump(mode="json") for task in tasks],
            },
        }
    }
    config_path = tmp_path / "config.yaml"
    config_path.write_text(json.dumps(config))
    run = subprocess.run(
        [NETSPECTRA, "analyze", str(pcap), "--config", str(config_path), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["packets"] == len(truth.packets)
    (directory,) = (tmp_path / "out").iterdir()
    for task in tasks:
        fields = tuple(task.key_fields)
        written = {}
        for line in (directory / f"{task.name}.jsonl").read_text().splitlines():
            record = json.loads(line)
            assert list(record["fields"]) == [field.value for field in fields]
            written[tuple(record["fields"].values())] = (
                record["packets"],
                record["bytes"],
                nanoseconds(record["first_seen"]),
                nanoseconds(record["last_seen"]),
            )
        expected = {
            key: (flow.packets, flow.bytes, flow.first_ns, flow.last_ns)
            for key, flow in traffic.exact_truth(truth, fields).items()
        }
        assert written.keys() == expected.keys(), task.name
        assert written == expected, task.name
