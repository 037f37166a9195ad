"""Shared by the pipeline tests: settings for a probe/engine pair and truth comparison."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from netspectra.config.models import Settings
from netspectra.engine.snapshot import FlowTable
from netspectra.fields import KeyField, address_text

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


async def wait_for(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)
