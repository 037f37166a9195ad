"""`netspectra run --roles=engine,api` as a real process: grpcurl and grpcio answer, SIGTERM exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.processes import free_port, wait_for_port
from tests.fixtures.tools import venv_tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def engine_api_process(tmp_path: Path):
    grpc_port, http_port = free_port(), free_port()
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["api"] = {
        "grpc_listen_addr": f"127.0.0.1:{grpc_port}",
        "http_listen_addr": f"127.0.0.1:{http_port}",
    }
    for group in ("exact", "sketch"):
        for writer in config["aggregator"][group]["writers"]:
            if writer["type"] == "embedded":
                writer["embedded"]["path"] = str(tmp_path / "data")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "netspectra",
            "run",
            "--roles=engine,api",
            "--config",
            str(path),
            "--grace",
            "10",
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(grpc_port, process)
        yield process, grpc_port
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_engine_and_api_start_answer_health_checks_and_stop_cleanly(engine_api_process, official_protos):
    process, grpc_port = engine_api_process
    grpcurl = venv_tool("grpcurl")
    listed = subprocess.run(
        [grpcurl, "-plaintext", f"127.0.0.1:{grpc_port}", "list"], capture_output=True, text=True, timeout=30
    )
    assert listed.returncode == 0, listed.stderr
    assert "v1.QueryService" in listed.stdout.split()
    answer = subprocess.run(
        [grpcurl, "-plaintext", f"127.0.0.1:{grpc_port}", "v1.QueryService/HealthCheck"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert answer.returncode == 0, answer.stderr
    assert json.loads(answer.stdout) == {"status": "ok"}

    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = official_protos.query_pb2_grpc.QueryServiceStub(channel)
        reply = stub.HealthCheck(official_protos.query_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == "ok"

    os.kill(process.pid, signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
