"""All three roles in one process, as a user runs them: `netspectra run --pcap` → gRPC answers the truth.

probe (file replay) → embedded bus → engine → embedded store (chdb) → api; checked with grpcurl (no
proto files: reflection) against the generator's ground truth, then SIGTERM must exit 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from netspectra.model.fields import KeyField
from netspectra.synth.traffic import TrafficSpec, exact_truth, write_trace
from tests.fixtures.processes import free_port, wait_for_port
from tests.fixtures.tools import venv_tool


def grpcurl(port: int, method: str, request: dict) -> dict:
    result = subprocess.run(
        [
            venv_tool("grpcurl"),
            "-plaintext",
            "-d",
            json.dumps(request),
            f"127.0.0.1:{port}",
            method,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_probe_engine_api_in_one_process_answer_the_truth(tmp_path: Path) -> None:
    pcap = tmp_path / "trace.pcap"
    truth = write_trace(pcap, TrafficSpec(packets=30_000, flows=800, seed=5))
    per_dst_port = exact_truth(truth, (KeyField.DST_PORT,))
    grpc_port = free_port()
    config = {
        "aggregator": {
            "exact": {
                "writers": [{"type": "embedded", "snapshot_interval": "1s", "embedded": {"path": "store"}}],
                "tasks": [
                    {"name": "per_dst_port", "key_fields": ["DstPort"]},
                    {"name": "per_five_tuple", "key_fields": [f.value for f in KeyField]},
                ],
            },
            "types": ["exact"],
        },
        "api": {"grpc_listen_addr": f"127.0.0.1:{grpc_port}", "http_listen_addr": f"127.0.0.1:{free_port()}"},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [sys.executable, "-m", "netspectra", "run", "--config", "config.yaml", "--pcap", str(pcap)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(grpc_port, process)
        expected = {
            "taskName": "per_dst_port",
            "totalBytes": str(int(truth.packets.length.sum())),
            "totalPackets": str(len(truth.packets)),
            "flowCount": str(len(per_dst_port)),
        }
        deadline = time.monotonic() + 60
        summaries: list[dict] = []
        while time.monotonic() < deadline:
            summaries = grpcurl(
                grpc_port, "v1.QueryService/AggregateFlows", {"task_name": "per_dst_port"}
            ).get("summaries", [])
            if summaries and summaries[0].get("totalPackets") == expected["totalPackets"]:
                break
            time.sleep(0.5)
        assert summaries == [expected]

        (key, flow), *_ = sorted(
            exact_truth(truth, tuple(KeyField)).items(), key=lambda item: -item[1].packets
        )
        flow_keys = {field.value: str(value) for field, value in zip(KeyField, key, strict=True)}
        lifecycle = grpcurl(
            grpc_port, "v1.QueryService/TraceFlow", {"task_name": "per_five_tuple", "flow_keys": flow_keys}
        )["lifecycle"]
        assert (lifecycle["totalPackets"], lifecycle["totalBytes"]) == (str(flow.packets), str(flow.bytes))
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
