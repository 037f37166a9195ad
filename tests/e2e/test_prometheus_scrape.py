"""Debian's Prometheus scrapes a real run: probe → NATS → engine → ClickHouse → api, as processes.

Process one runs the probe and the engine (the probe replays a generated trace through a real
nats-server; the engine counts what arrives and writes snapshots to a real clickhouse-server)
and serves /metrics on ``metrics.listen_addr``; process two is the api over that ClickHouse,
serving /metrics on its HTTP port. Prometheus, started on a free port with a scrape config
naming both, is asked through its own HTTP query API: the packets the probe published, the
engine received and every task counted equal the generator's total, nothing is rejected or
missing, the store took rows, and the api's query latency counts the query this test made.
Every wait is on a condition (Prometheus answering the expected value), never a sleep.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from netspectra.synth.traffic import TrafficSpec, write_trace
from tests.fixtures.clickhouse import ClickHouseServer
from tests.fixtures.nats import NatsServer
from tests.fixtures.processes import free_port
from tests.integration.durability_helpers import clickhouse_section
from tests.integration.pipeline_helpers import TASKS, NetspectraProcess, pipeline_config

pytestmark = pytest.mark.slow
WAIT_S = 120.0


class Prometheus:
    """A prometheus process on a free port, scraping ``targets`` (job → host:port) every second."""

    def __init__(self, workdir: Path, targets: dict[str, str]) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            pytest.fail("prometheus is not installed: run scripts/dev test (it installs Debian's prometheus)")
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]}
                for job, target in targets.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.log = workdir / "prometheus.log"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as answer:
            return answer.read()

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector of ``promql`` (Prometheus' own /api/v1/query)."""
        answer = json.loads(self.get("/api/v1/query?" + urllib.parse.urlencode({"query": promql})))
        assert answer["status"] == "success", answer
        return list(answer["data"]["result"])

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if len(result) == 1 else None

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_until(what: str, condition: Callable[[], bool], *watched: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        for process in watched:
            if isinstance(process, NetspectraProcess) and process.process.poll() is not None:
                raise AssertionError(f"{process.name} exited while waiting for {what}:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {WAIT_S} s")
        time.sleep(0.1)


def ready(prometheus: Prometheus) -> bool:
    try:
        prometheus.get("/-/ready")
        return True
    except OSError:
        return False


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Prometheus]]:
    started: list[Prometheus] = []

    def start(targets: dict[str, str]) -> Prometheus:
        server = Prometheus(tmp_path / "prometheus", targets)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_prometheus_reads_the_traces_truth_from_every_process(
    tmp_path: Path,
    nats_server: NatsServer,
    clickhouse_server: ClickHouseServer,
    clickhouse_database: str,
    prometheus_factory: Callable[[dict[str, str]], Prometheus],
) -> None:
    trace = tmp_path / "trace.pcap"
    truth = len(write_trace(trace, TrafficSpec(packets=20_000, flows=300, seed=11)).packets)
    store = clickhouse_section(clickhouse_server, clickhouse_database, tmp_path / "spool")
    metrics_port, http_port = free_port(), free_port()
    config = pipeline_config(url=nats_server.url, engine_id="prom")
    config["aggregator"]["exact"]["writers"] = [
        {"type": "clickhouse", "snapshot_interval": 0.5, "clickhouse": store}
    ]
    config["metrics"] = {"listen_addr": f"127.0.0.1:{metrics_port}"}
    pipeline = NetspectraProcess(
        tmp_path / "pipeline", "pipeline", config, "--roles=probe,engine", "--pcap", str(trace)
    )
    api_config = {
        "api": {
            "grpc_listen_addr": "127.0.0.1:0",
            "http_listen_addr": f"127.0.0.1:{http_port}",
            "store": {"type": "clickhouse", "clickhouse": store},
        },
        "aggregator": {"types": ["exact"], "exact": {"tasks": config["aggregator"]["exact"]["tasks"]}},
        "logging": {"format": "json", "level": "INFO"},
    }
    api = NetspectraProcess(tmp_path / "api", "api", api_config, "--roles=api")
    try:
        pipeline.wait_for_message("Serving Prometheus metrics on", timeout=60)
        api.wait_for_message("Started api", timeout=60)
        prometheus = prometheus_factory(
            {"pipeline": f"127.0.0.1:{metrics_port}", "api": f"127.0.0.1:{http_port}"}
        )
        wait_until("prometheus ready", lambda: ready(prometheus))
        wait_until("both targets up", lambda: prometheus.value("sum(up)") == 2.0, pipeline, api)

        def equals(promql: str, expected: float) -> Callable[[], bool]:
            return lambda: prometheus.value(promql) == expected

        for promql in (
            'netspectra_probe_published_packets_total{role="probe"}',
            'netspectra_engine_received_packets_total{role="engine"}',
            'netspectra_engine_counted_packets_total{role="engine"}',
            'netspectra_engine_probe_published_packets{role="engine"}',
            *(f'netspectra_task_counted_packets_total{{task="{task}"}}' for task in TASKS),
        ):
            wait_until(f"{promql} = {truth}", equals(promql, truth), pipeline, api)
        assert prometheus.value("netspectra_probe_captured_packets_total") == truth
        assert prometheus.value("netspectra_engine_gap_packets") == 0
        assert prometheus.value("sum(netspectra_engine_rejected_packets_total)") == 0
        assert prometheus.value("sum(netspectra_probe_bus_refused_packets_total)") == 0
        assert prometheus.value("sum(netspectra_engine_pending_dropped_messages_total)") == 0
        flows = {r["metric"]["task"]: float(r["value"][1]) for r in prometheus.query("netspectra_task_flows")}
        assert set(flows) == set(TASKS) and all(count > 0 for count in flows.values())
        wait_until(
            "rows in the store",
            lambda: (prometheus.value("sum(netspectra_store_rows_inserted_total)") or 0) > 0,
            pipeline,
        )
        wait_until(
            "batch kernel time observed",
            lambda: (prometheus.value('sum(netspectra_engine_batch_seconds_count{stage="count"})') or 0) > 0,
        )

        # the api: once the store holds every packet, a query is counted in its latency histogram
        def stored_total() -> int:
            body = json.dumps({"task": "per_src_ip"}).encode()
            request = urllib.request.Request(
                f"http://127.0.0.1:{http_port}/api/v1/totals", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=30) as answer:
                totals = json.loads(answer.read())["totals"]
            return int(totals[0]["packets"]) if totals else 0

        wait_until("the store holds the trace", lambda: stored_total() == truth, pipeline, api)
        wait_until(
            "api query latency scraped",
            lambda: (prometheus.value('netspectra_api_query_seconds_count{rpc="AggregateFlows"}') or 0) >= 1,
            api,
        )
        assert prometheus.value('up{job="api"}') == 1
    finally:
        exits = {"pipeline": pipeline.stop(), "api": api.stop()}
    assert exits == {"pipeline": 0, "api": 0}, pipeline.tail() + "\n" + api.tail()
