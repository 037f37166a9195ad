"""Probe (file replay, unpaced) → nats-server → engine (exact tasks): sustained packets/s and loss.

    python bench/pipeline.py [--packets N] [--modes per-message,batched]

Baseline in the same run: the codec alone (encode + decode) on the same packets, so the ratio
shows what the bus and Python around it cost. One process only (two-process runs: TODO).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from netspectra.bus.nats import NatsBus
from netspectra.capture.reader import CaptureReader
from netspectra.config.models import Settings
from netspectra.engine.engine import Engine
from netspectra.engine.role import EngineRole
from netspectra.packets import PacketColumns
from netspectra.probe.role import ProbeRole
from netspectra.storage.registry import StorageContext
from netspectra.synth.traffic import TrafficSpec, write_trace
from netspectra.wire.codec import decode_packet_batch, decode_packet_infos, encode_packets

FIVE_TUPLE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")


def start_nats(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("nats-server")
    assert binary, "nats-server not on PATH"
    process = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", str(workdir)])
    for _ in range(500):
        files = list(workdir.glob("*.ports"))
        if files and files[0].stat().st_size:
            return process, json.loads(files[0].read_text())["nats"][0]
        time.sleep(0.01)
    raise RuntimeError("nats-server did not start")


def settings_for(url: str, pcap: Path, batch: int) -> Settings:
    return Settings.model_validate(
        {
            "probe": {"nats_url": url, "source": "file", "pcap": str(pcap), "batch": batch},
            "engine": {"flush_interval": 0.02, "stats_interval": 3600},
            "aggregator": {
                "types": ["exact"],
                "exact": {
                    "tasks": [
                        {
                            "name": "five_tuple",
                            "key_fields": ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"],
                        },
                        {"name": "per_src_ip", "key_fields": ["SrcIP"]},
                        {"name": "per_dst_port", "key_fields": ["DstPort"]},
                    ]
                },
            },
        }
    )


async def one_process(url: str, pcap: Path, batch: int, packets: int) -> tuple[float, int, dict[str, int]]:
    settings = settings_for(url, pcap, batch)
    engine_bus, probe_bus = NatsBus(url), NatsBus(url)
    role = EngineRole(settings, engine_bus, Engine.from_settings(settings, StorageContext()))
    stop = asyncio.Event()
    task = asyncio.create_task(role.serve(stop))
    while engine_bus._client is None:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)
    probe = ProbeRole(settings, probe_bus)
    start = time.perf_counter()
    await probe.serve(asyncio.Event())
    deadline = time.perf_counter() + 60
    while role.stats.packets + role.stats.rejected < packets and time.perf_counter() < deadline:
        if role.stats.gap is not None and role.stats.published == packets and engine_bus.stats.dropped:
            break
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - start
    stop.set()
    await task
    await probe_bus.close()
    await engine_bus.close()
    return elapsed, role.stats.packets, {"bus_dropped": engine_bus.stats.dropped, "gap": role.stats.gap or 0}


def codec_baseline(pcap: Path) -> float:
    columns = PacketColumns.concat(list(CaptureReader(pcap)))
    start = time.perf_counter()
    encoded = encode_packets(columns)
    decode_packet_infos(encoded.messages())
    decode_packet_batch(encoded.data)
    return len(columns) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--packets", type=int, default=300_000)
    parser.add_argument("--batched-packets", type=int, default=2_000_000)
    parser.add_argument("--modes", default="per-message,batched")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        process, url = start_nats(work)
        try:
            for mode in args.modes.split(","):
                n = args.packets if mode == "per-message" else args.batched_packets
                pcap = work / f"{mode}.pcap"
                write_trace(pcap, TrafficSpec(packets=n, flows=10_000, seed=7))
                packets_parsed = sum(len(b) for b in CaptureReader(pcap))
                base = codec_baseline(pcap)
                elapsed, received, loss = asyncio.run(
                    one_process(url, pcap, 0 if mode == "per-message" else 1000, packets_parsed)
                )
                rate = received / elapsed
                print(
                    f"{mode:12s} one process: {received}/{packets_parsed} packets in {elapsed:.2f}s = "
                    f"{rate / 1e3:.0f} k packets/s; lost {packets_parsed - received} {loss}; "
                    f"codec alone {base / 1e6:.2f} M/s (pipeline = {rate / base:.2%} of it)"
                )
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
