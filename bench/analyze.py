"""Benchmark: `netspectra analyze` with the six default exact tasks vs tshark fields and dpkt.

Generates (and caches under /tmp) a 2 M-packet Ethernet/IPv4 TCP+UDP trace with snap length 96,
then measures on the same file, in the same run:

* netspectra parse only (CaptureReader, in process);
* netspectra analyze, six exact tasks, in process (file in page cache) and as the CLI end to end
  (process start, JIT cache load, parse, count, summary);
* tshark -T fields (on a slice, extrapolated) and dpkt (on a slice, extrapolated: parse plus a
  five-tuple dict, the least a Python flow counter must do).

Run: ``python bench/analyze.py [--packets N]``. Not a timed test; prints figures and ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

SNAPLEN = 96
SIX_TASKS = {
    "per_src_ip": ["SrcIP"],
    "per_dst_ip": ["DstIP"],
    "per_src_port": ["SrcPort"],
    "per_dst_port": ["DstPort"],
    "per_protocol": ["Protocol"],
    "per_five_tuple": ["SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"],
}


def generate_trace(path: Path, packets: int, flows: int = 200_000, seed: int = 1) -> None:
    """Ethernet/IPv4 TCP and UDP packets over ``flows`` Zipf-popular five-tuples, snap 96."""
    rng = np.random.default_rng(seed)
    flow_src = rng.integers(0x0A000000, 0x0A00FFFF, flows, dtype=np.uint32)
    flow_dst = rng.integers(0xC0A80000, 0xC0A8FFFF, flows, dtype=np.uint32)
    flow_sport = rng.integers(1024, 65535, flows, dtype=np.uint16)
    flow_dport = rng.choice(np.array([80, 443, 53, 22, 8080, 123], np.uint16), flows)
    flow_proto = np.where(rng.random(flows) < 0.8, 6, 17).astype(np.uint8)
    which = (rng.zipf(1.3, packets) - 1) % flows
    orig = rng.integers(SNAPLEN, 1515, packets).astype(np.uint32)
    ts_us = 1_700_000_000_000_000 + np.cumsum(rng.integers(0, 20, packets)).astype(np.int64)

    record = np.zeros((packets, 16 + SNAPLEN), np.uint8)

    def put(offset: int, values: np.ndarray, width: int, big: bool = True) -> None:
        data = values.astype(">u4" if big else "<u4").view(np.uint8).reshape(packets, 4)
        record[:, offset : offset + width] = data[:, 4 - width :] if big else data[:, :width]

    put(0, (ts_us // 1_000_000).astype(np.uint32), 4, big=False)
    put(4, (ts_us % 1_000_000).astype(np.uint32), 4, big=False)
    put(8, np.full(packets, SNAPLEN, np.uint32), 4, big=False)
    put(12, orig, 4, big=False)
    frame = 16
    record[:, frame : frame + 12] = np.frombuffer(bytes.fromhex("020000000001020000000002"), np.uint8)
    record[:, frame + 12] = 0x08  # IPv4 ethertype
    ip = frame + 14
    record[:, ip] = 0x45
    put(ip + 2, orig - 14, 2)
    record[:, ip + 8] = 64
    record[:, ip + 9] = flow_proto[which]
    put(ip + 12, flow_src[which], 4)
    put(ip + 16, flow_dst[which], 4)
    l4 = ip + 20
    put(l4, flow_sport[which].astype(np.uint32), 2)
    put(l4 + 2, flow_dport[which].astype(np.uint32), 2)
    tcp = flow_proto[which] == 6
    record[tcp, l4 + 12] = 0x50
    udp_len = (orig - 34).astype(np.uint32)
    record[~tcp, l4 + 4] = (udp_len[~tcp] >> 8).astype(np.uint8)
    record[~tcp, l4 + 5] = (udp_len[~tcp] & 0xFF).astype(np.uint8)
    header = (
        np.array([0xA1B2C3D4], "<u4").tobytes()
        + np.array([2, 4], "<u2").tobytes()
        + np.array([0, 0, SNAPLEN, 1], "<u4").tobytes()
    )
    temporary = path.with_suffix(".tmp")
    with open(temporary, "wb") as handle:
        handle.write(header)
        handle.write(record.tobytes())
    os.replace(temporary, path)


def write_config(directory: Path) -> Path:
    tasks = [{"name": name, "key_fields": fields} for name, fields in SIX_TASKS.items()]
    config = {"aggregator": {"types": ["exact"], "exact": {"writers": [], "tasks": tasks}}}
    path = directory / "six-exact.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def slice_trace(path: Path, out: Path, packets: int) -> None:
    with open(path, "rb") as handle:
        data = handle.read(24 + packets * (16 + SNAPLEN))
    out.write_bytes(data)


def bench_parse(path: Path) -> float:
    from netspectra.capture.reader import CaptureReader

    started = time.perf_counter()
    with CaptureReader(path) as reader:
        for _ in reader:
            pass
    return reader.packets / (time.perf_counter() - started)


def bench_analyze_in_process(path: Path, config: Path) -> tuple[float, int]:
    from netspectra.analysis import analyze_file
    from netspectra.config import load_settings

    settings = load_settings(config)
    started = time.perf_counter()
    result = asyncio.run(analyze_file(path, settings))
    elapsed = time.perf_counter() - started
    return result.packets / elapsed, len(next(t for t in result.flow_tables() if t.task == "per_five_tuple"))


def bench_cli(path: Path, config: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    output = subprocess.run(
        [shutil.which("netspectra") or "netspectra", "analyze", str(path), "--config", str(config), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    elapsed = time.perf_counter() - started
    document = json.loads(output)
    return document["packets"] / elapsed, document


def bench_tshark(path: Path) -> float:
    fields = ["ip.src", "ip.dst", "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport", "ip.proto"]
    command = ["tshark", "-n", "-r", str(path), "-T", "fields"]
    for name in fields:
        command += ["-e", name]
    started = time.perf_counter()
    output = subprocess.run(command, check=True, capture_output=True).stdout
    elapsed = time.perf_counter() - started
    return output.count(b"\n") / elapsed


def bench_dpkt(path: Path) -> float:
    import socket

    import dpkt

    flows: dict[tuple, list[int]] = {}
    count = 0
    started = time.perf_counter()
    with open(path, "rb") as handle:
        for _ts, buffer in dpkt.pcap.Reader(handle):
            eth = dpkt.ethernet.Ethernet(buffer)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            l4 = ip.data
            sport = getattr(l4, "sport", 0)
            dport = getattr(l4, "dport", 0)
            key = (socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst), sport, dport, ip.p)
            entry = flows.get(key)
            if entry is None:
                flows[key] = [1, ip.len + 14]
            else:
                entry[0] += 1
                entry[1] += ip.len + 14
            count += 1
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=2_000_000)
    parser.add_argument("--slice", type=int, default=100_000, help="packets given to tshark and dpkt")
    args = parser.parse_args()

    trace = Path(tempfile.gettempdir()) / f"netspectra-bench-{args.packets}-snap{SNAPLEN}.pcap"
    if not trace.exists():
        print(f"generating {trace} ...", flush=True)
        generate_trace(trace, args.packets)
    work = Path(tempfile.mkdtemp(prefix="netspectra-bench-"))
    config = write_config(work)
    sliced = work / "slice.pcap"
    slice_trace(trace, sliced, args.slice)
    size_mb = trace.stat().st_size / 1e6
    print(f"trace: {trace} ({args.packets:,} packets, {size_mb:.0f} MB, snap {SNAPLEN})")

    bench_analyze_in_process(sliced, config)  # warm the JIT cache and the page cache
    parse = bench_parse(trace)
    analyze_rate, five_tuples = bench_analyze_in_process(trace, config)
    cli_rate, document = bench_cli(trace, config)
    tshark = bench_tshark(sliced)
    dpkt_rate = bench_dpkt(sliced)

    assert document["packets"] == args.packets, document["packets"]
    rows = [
        ("netspectra parse only (in process)", parse),
        ("netspectra analyze, 6 exact tasks (in process)", analyze_rate),
        ("netspectra analyze, 6 exact tasks (CLI end to end)", cli_rate),
        (f"tshark -T fields (first {args.slice:,} packets)", tshark),
        (f"dpkt parse + 5-tuple dict (first {args.slice:,} packets)", dpkt_rate),
    ]
    print(f"five-tuple flows: {five_tuples:,}")
    print(f"{'':55} {'packets/s':>14} {'vs tshark':>10} {'vs dpkt':>10}")
    for name, rate in rows:
        print(f"{name:55} {rate:14,.0f} {rate / tshark:9.1f}x {rate / dpkt_rate:9.1f}x")


if __name__ == "__main__":
    main()
