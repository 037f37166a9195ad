"""Shared by the pipeline tests: settings for a probe/engine pair and truth comparison."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspectra.config.models import Settings
from netspectra.model.fields import KeyField, address_text
from netspectra.model.snapshot import FlowTable

TASKS = {
    "per_five_tuple": ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"],
    "per_src_ip": ["SrcIP"],
    "per_dst_port": ["DstPort"],
}


def pipeline_settings(
    *, url: str, pcap: Path | None = None, out: Path | None = None, batch: int = 0, **probe: Any
) -> Settings:
    writers = [{"type": "file", "snapshot_interval": "1h", "file": {"root_path": str(out)}}] if out else []
    return Settings.model_validate(
        {
            "probe": {
                "nats_url": url,
                "source": "file",
                "pcap": str(pcap) if pcap else None,
                "batch": batch,
                **probe,
            },
            "engine": {"flush_interval": 0.02, "stats_interval": 1.0},
            "aggregator": {
                "types": ["exact"],
                "exact": {
                    "writers": writers,
                    "tasks": [{"name": name, "key_fields": fields} for name, fields in TASKS.items()],
                },
            },
        }
    )


def table_flows(table: FlowTable) -> dict[tuple[object, ...], tuple[int, int, int, int]]:
    """key tuple (truth's form) → (packets, bytes, first_ns, last_ns)."""
    columns = {
        KeyField.SRC_IP: lambda i: address_text(table.src_ip[i]),
        KeyField.DST_IP: lambda i: address_text(table.dst_ip[i]),
        KeyField.SRC_PORT: lambda i: int(table.src_port[i]),
        KeyField.DST_PORT: lambda i: int(table.dst_port[i]),
        KeyField.PROTOCOL: lambda i: int(table.protocol[i]),
    }
    fields = list(table.key_fields)
    return {
        tuple(columns[f](i) for f in fields): (
            int(table.packets[i]),
            int(table.bytes[i]),
            int(table.first_seen_ns[i]),
            int(table.last_seen_ns[i]),
        )
        for i in range(len(table))
    }


def jsonl_counts(root: Path, task: str) -> dict[tuple[object, ...], tuple[int, int]]:
    """key → (packets, bytes) from the newest ``<root>/<stamp>/<task>.jsonl``."""
    files = sorted(root.glob(f"*/{task}.jsonl"))
    assert files, f"no snapshot of {task} under {root}"
    flows: dict[tuple[object, ...], tuple[int, int]] = {}
    for line in files[-1].read_text().splitlines():
        row = json.loads(line)
        key = tuple(row["fields"][name] for name in TASKS[task])
        flows[key] = (row["packets"], row["bytes"])
    return flows


async def start_engine_role(role: Any, stop: asyncio.Event, timeout: float = 60.0) -> asyncio.Task[None]:
    """``role.serve(stop)`` as a task, returned once the server holds the role's subscriptions.

    The role logs "Engine subscribed" after its subscribe calls; a flush (PING/PONG) then proves
    the server processed the SUBs, so a publisher on another connection loses nothing to a race.
    """
    subscribed = asyncio.Event()

    class Subscribed(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("Engine subscribed"):
                subscribed.set()

    role_logger = logging.getLogger("netspectra.engine.role")
    handler, level = Subscribed(), role_logger.level
    role_logger.addHandler(handler)
    if not role_logger.isEnabledFor(logging.INFO):
        role_logger.setLevel(logging.INFO)
    task = asyncio.create_task(role.serve(stop))
    try:
        waiting = asyncio.ensure_future(subscribed.wait())
        await asyncio.wait({waiting, task}, timeout=timeout, return_when="FIRST_COMPLETED")
        waiting.cancel()
        if task.done():
            task.result()  # raises what the role died of
            raise AssertionError("the engine role returned before subscribing")
        if not subscribed.is_set():
            raise AssertionError(f"the engine role did not subscribe within {timeout} s")
    finally:
        role_logger.removeHandler(handler)
        role_logger.setLevel(level)
    await role.bus.flush()
    return task


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# --- netspectra as real processes ------------------------------------------------------------


def pipeline_config(
    *, url: str, out: Path | None = None, batch: int = 0, engine_id: str = "", **probe: Any
) -> dict[str, Any]:
    """The YAML document of :func:`pipeline_settings` (JSON logs, so tests can read them)."""
    writers = [{"type": "file", "snapshot_interval": "1h", "file": {"root_path": str(out)}}] if out else []
    return {
        "probe": {"nats_url": url, "batch": batch, **probe},
        "engine": {"flush_interval": 0.02, "stats_interval": 1.0, "engine_id": engine_id},
        "aggregator": {
            "types": ["exact"],
            "exact": {
                "writers": writers,
                "tasks": [{"name": name, "key_fields": fields} for name, fields in TASKS.items()],
            },
        },
        "logging": {"format": "json", "level": "INFO"},
    }


class NetspectraProcess:
    """``python -m netspectra run ...`` with its JSON log lines written to a file; ``program``
    (e.g. ``[venv_tool("netspectra")]``, the console script) replaces ``python -m netspectra``."""

    def __init__(
        self, workdir: Path, name: str, config: dict[str, Any], *args: str, program: list[str] | None = None
    ) -> None:
        import subprocess
        import sys

        import yaml

        workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"{name}.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [
                    *(program or [sys.executable, "-m", "netspectra"]),
                    "run",
                    "--config",
                    str(self.config_path),
                    *args,
                ],
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def records(self) -> list[dict[str, Any]]:
        records = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                records.append(json.loads(line))
        return records

    def messages(self) -> list[str]:
        return [record["message"] for record in self.records()]

    def wait_for_message(self, text: str, timeout: float = 30.0) -> str:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages():
                if text in message:
                    return message
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.name} exited ({self.process.returncode}) before {text!r}:\n{self.tail()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"{self.name} did not log {text!r} within {timeout} s:\n{self.tail()}")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (an orderly stop: drain, final snapshot) and wait for the exit code."""
        import signal
        import subprocess

        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"{self.name} did not stop within {timeout} s:\n{self.tail()}") from None
        return int(self.process.returncode)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
