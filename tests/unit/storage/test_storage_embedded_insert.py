"""The embedded insert stores the Arrow columns as given, NULLs included, without importing pandas."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import asyncio, json, sys
import numpy as np
from netspectra.model.snapshot import FlowTable, Snapshot
from netspectra.model.fields import KeyField
from netspectra.storage.embedded import EmbeddedBackend
from netspectra.storage.rows import snapshot_rows
from netspectra.storage.sql import ensure_schema

src = np.zeros((2, 16), np.uint8); src[:, 10:12] = 255
src[0, 12:] = (10, 0, 0, 1); src[1, 12:] = (192, 168, 1, 255)
dst = np.zeros((2, 16), np.uint8); dst[0, 0:2] = (0x20, 0x01); dst[0, 15] = 1; dst[1, 15] = 1
table = FlowTable("pair", (KeyField.SRC_IP, KeyField.DST_IP), src, dst, np.zeros(2, np.uint16),
                  np.zeros(2, np.uint16), np.zeros(2, np.uint8), np.array([3, 4], np.uint64),
                  np.array([300, 2**40], np.uint64), np.array([10**18, 10**18], np.int64),
                  np.array([10**18 + 5 * 10**9] * 2, np.int64))

async def main():
    backend = EmbeddedBackend(sys.argv[1])
    await ensure_schema(backend)
    rows = snapshot_rows(Snapshot("exact", 10**18 + 6 * 10**9, 0, (table,)), "e")
    await backend.insert("flow_metrics", rows.flows)
    found = await backend.select(
        "SELECT toUInt32(Timestamp), TaskName, SrcIP, DstIP, SrcPort, DstPort, Protocol, toUInt32(StartTime),"
        " toUInt32(EndTime), ByteCount, PacketCount, EngineId FROM flow_metrics ORDER BY PacketCount")
    await backend.close()
    print(json.dumps({"rows": [list(row) for row in found], "pandas": "pandas" in sys.modules}))

asyncio.run(main())
"""


def test_insert_round_trip_without_pandas(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "db")], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["pandas"] is False
    assert result["rows"] == [
        [10**9 + 6, "pair", "10.0.0.1", "2001::1", None, None, None, 10**9, 10**9 + 5, 300, 3, "e"],
        [10**9 + 6, "pair", "192.168.1.255", "::1", None, None, None, 10**9, 10**9 + 5, 2**40, 4, "e"],
    ]
