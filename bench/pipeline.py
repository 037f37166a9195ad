"""Probe (file replay, unpaced) → nats-server → engine (exact tasks): sustained packets/s and loss.

    python bench/pipeline.py [--packets N] [--batched-packets N] [--modes per-message,batched]
                             [--processes 1,2] [--smoke]

* one process: ProbeRole and EngineRole in this process, each with its own NATS connection;
* two processes: ``netspectra run --roles=engine`` and ``netspectra run --roles=probe --pcap``,
  timed from the probe's first stats line with packets out (process start-up excluded) to the
  engine's stats line that reaches every packet (both log every 50 ms: a slight underestimate).

Loss is what did not arrive (packets published minus received), next to what the engine itself
reports (bus drops, gap against the probe's counts). Baseline in the same run: the codec alone
(encode + decode) on the same packets, so the ratio shows what the bus and Python around it cost.
``--smoke``: 20 k packets per mode, both modes, both process layouts, in seconds (CI).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from netspectra.app import build_engine
from netspectra.bus.nats import NatsBus
from netspectra.capture.reader import CaptureReader
from netspectra.config.models import Settings
from netspectra.engine.role import EngineRole
from netspectra.model.packets import PacketColumns
from netspectra.probe.role import ProbeRole
from netspectra.storage.context import StorageContext
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


def config_for(url: str, pcap: Path, batch: int, stats_interval: float = 3600) -> dict:  # type: ignore[type-arg]
    return {
        "probe": {"nats_url": url, "source": "file", "pcap": str(pcap), "batch": batch},
        "engine": {"flush_interval": 0.02, "stats_interval": stats_interval},
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
        "logging": {"format": "json", "level": "INFO"},
    }


def settings_for(url: str, pcap: Path, batch: int) -> Settings:
    return Settings.model_validate(config_for(url, pcap, batch))


_STATS = re.compile(
    r"^Engine role(?: stopped)?: (\d+) packets .*bus dropped (\d+)[^;]*; probes published (\S+); gap (\S+)"
)


def _records(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]


def _stamp(record: dict) -> float:  # type: ignore[type-arg]
    return datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def two_processes(
    url: str, pcap: Path, batch: int, packets: int, work: Path
) -> tuple[float, int, dict[str, int]]:
    """Engine and probe as separate ``netspectra run`` processes; times come from their JSON logs."""
    config = work / f"two-{batch}.yaml"
    config.write_text(yaml.safe_dump(config_for(url, pcap, batch, stats_interval=0.05)))
    base = [sys.executable, "-m", "netspectra", "run", "--config", str(config)]
    engine_log, probe_log = work / f"engine-{batch}.log", work / f"probe-{batch}.log"
    with open(engine_log, "wb") as out:
        engine = subprocess.Popen([*base, "--roles=engine"], stdout=out, stderr=subprocess.STDOUT)
    try:
        while not any("subscribed" in r["message"] for r in _records(engine_log)):
            if engine.poll() is not None:
                raise RuntimeError(engine_log.read_text())
            time.sleep(0.05)
        with open(probe_log, "wb") as out:
            probe = subprocess.run(
                [*base, "--roles=probe", "--pcap", str(pcap)], stdout=out, stderr=subprocess.STDOUT
            )
        if probe.returncode:
            raise RuntimeError(probe_log.read_text())
        # the clock starts at the probe's first stats line with packets out (its start-up excluded)
        first = next(
            (r, int(m[1]))
            for r in _records(probe_log)
            if (m := re.match(r"Probe: published (\d+) packets", r["message"])) and int(m[1]) > 0
        )
        start, already = _stamp(first[0]), first[1]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = [(r, _STATS.match(r["message"])) for r in _records(engine_log)]
            if any(m and int(m[1]) >= packets for _, m in rows):
                break
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        engine.send_signal(signal.SIGTERM)
        engine.wait(30)
    rows = [(r, m) for r in _records(engine_log) if (m := _STATS.match(r["message"]))]
    done = next(((r, m) for r, m in rows if int(m[1]) >= packets), None)
    last = rows[-1][1]
    end = _stamp(done[0]) if done else _stamp(rows[-1][0])
    gap = 0 if last[4].startswith("unknown") else int(last[4])
    timed = max(1, packets - already) / max(end - start, 1e-3)
    return packets / timed, int(last[1]), {"bus_dropped": int(last[2]), "gap": gap}


async def one_process(url: str, pcap: Path, batch: int, packets: int) -> tuple[float, int, dict[str, int]]:
    settings = settings_for(url, pcap, batch)
    engine_bus, probe_bus = NatsBus(url), NatsBus(url)
    role = EngineRole(settings, engine_bus, build_engine(settings, StorageContext()))
    stop = asyncio.Event()
    subscribed = asyncio.Event()

    class Subscribed(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("Engine subscribed"):
                subscribed.set()

    role_logger = logging.getLogger("netspectra.engine.role")
    handler, level = Subscribed(), role_logger.level
    role_logger.addHandler(handler)
    role_logger.setLevel(logging.INFO)
    task = asyncio.create_task(role.serve(stop))
    try:
        await asyncio.wait_for(subscribed.wait(), 60)
    finally:
        role_logger.removeHandler(handler)
        role_logger.setLevel(level)
    await engine_bus.flush()  # the server has the subscriptions before the probe publishes
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
    parser.add_argument("--processes", default="1,2", help="1: one process; 2: probe and engine apart")
    parser.add_argument("--smoke", action="store_true", help="20 k packets per mode: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.packets = args.batched_packets = 20_000
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
                batch = 0 if mode == "per-message" else 1000
                for processes in args.processes.split(","):
                    if processes == "1":
                        elapsed, received, loss = asyncio.run(one_process(url, pcap, batch, packets_parsed))
                    else:
                        elapsed, received, loss = two_processes(url, pcap, batch, packets_parsed, work)
                    rate = received / elapsed
                    where = "one process" if processes == "1" else "two processes"
                    print(
                        f"{mode:12s} {where:13s}: {received}/{packets_parsed} packets in {elapsed:.2f}s = "
                        f"{rate / 1e3:.0f} k packets/s; lost {packets_parsed - received} {loss}; "
                        f"codec alone {base / 1e6:.2f} M/s (pipeline = {rate / base:.2%} of it, "
                        f"{rate / base:.3f}x)",
                        flush=True,
                    )
        finally:
            process.terminate()
            process.wait()


if __name__ == "__main__":
    main()
