"""Cancelling an analysis (Ctrl-C) stops reading, keeps the final snapshot and leaks no thread."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from netspectra.app import analyze_capture
from netspectra.config import Settings
from netspectra.engine.engine import Engine
from netspectra.model.packets import PacketColumns
from netspectra.synth.traffic import TrafficSpec, write_trace


async def test_cancelled_analysis_returns_what_it_counted(tmp_path: Path) -> None:
    trace = tmp_path / "trace.pcap"
    truth = write_trace(trace, TrafficSpec(packets=300_000, flows=500, seed=3))
    settings = Settings.model_validate(
        {"aggregator": {"types": ["exact"], "exact": {"tasks": [{"name": "t", "key_fields": ["SrcIP"]}]}}}
    )
    seen: list[int] = []
    task = asyncio.create_task(
        analyze_capture(
            trace, settings, batch_size=1000, progress=lambda _r, _t, packets: seen.append(packets)
        )
    )
    while not seen:
        await asyncio.sleep(0.001)
    task.cancel()
    result = await task
    assert result.interrupted
    counted = sum(int(table.packets.sum()) for table in result.flow_tables())
    assert 0 < counted < len(truth.packets)  # stopped early, and the snapshot holds what was counted
    assert counted == seen[-1]  # nothing counted after the last progress report
    assert not [t for t in threading.enumerate() if t.name.startswith("netspectra-analyze")]


async def test_a_closed_engine_refuses_batches() -> None:
    engine = Engine({})
    await engine.close()
    with pytest.raises(RuntimeError, match="after close"):
        engine.ingest_sync(PacketColumns.empty(1))
