"""Benchmark: parse-only packets/s of CaptureReader vs dpkt and tshark, measured in the same run.

Generates (and caches under /tmp) a 2 M-packet trace with snap length 96 from
:mod:`netspectra.synth` (IPv4/IPv6, TCP/UDP/ICMP, VLAN/QinQ, extension headers, fragments, ARP),
reads it once to put it in the page cache, then times:

* CaptureReader over the whole file (best of 3; the numba JIT cache is warmed first);
* dpkt on a slice (Ethernet → IP/IPv6 → TCP/UDP ports, the least a Python parser must do);
* ``tshark -T fields`` on a slice (``-c``), process start included.

Run: ``python bench/parse.py [--packets N]``. Not a timed test; prints figures and ratios.
``--smoke``: the same measurements on a 20 k-packet trace in a temporary folder (seconds; CI).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from netspectra.capture import CaptureReader
from netspectra.synth import TrafficSpec, write_trace


def trace(packets: int, folder: Path | None = None) -> Path:
    path = (folder or Path("/tmp")) / f"netspectra-bench-parse-{packets}-snap96.pcap"
    if not path.exists():
        started = time.perf_counter()
        flows = 1_000 if folder else 200_000
        write_trace(path, TrafficSpec(packets=packets, flows=flows, spreaders=10, spreader_fanout=1000))
        print(f"generated {path} in {time.perf_counter() - started:.1f}s")
    path.read_bytes()  # page cache
    return path


def ours(path: Path) -> tuple[float, int]:
    best = float("inf")
    frames = 0
    for _ in range(3):
        started = time.perf_counter()
        with CaptureReader(path) as reader:
            for _batch in reader:
                pass
            frames = reader.frames
        best = min(best, time.perf_counter() - started)
    return frames / best, frames


def dpkt_rate(path: Path, limit: int) -> float:
    import dpkt

    started = time.perf_counter()
    count = 0
    with open(path, "rb") as handle:
        for _ts, frame in dpkt.pcap.Reader(handle):
            count += 1
            try:
                eth = dpkt.ethernet.Ethernet(frame)
                ip = eth.data
                if isinstance(ip, dpkt.ip.IP | dpkt.ip6.IP6):
                    layer = ip.data
                    _key = (ip.src, ip.dst, getattr(layer, "sport", 0), getattr(layer, "dport", 0), ip.p)
            except (dpkt.UnpackError, AttributeError):
                pass
            if count >= limit:
                break
    return count / (time.perf_counter() - started)


def tshark_rate(path: Path, limit: int) -> float | None:
    if shutil.which("tshark") is None:
        return None
    fields = ["ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "tcp.srcport", "udp.srcport", "frame.len"]
    started = time.perf_counter()
    subprocess.run(
        ["tshark", "-n", "-r", str(path), "-c", str(limit), "-T", "fields",
         *[a for f in fields for a in ("-e", f)]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
    )  # fmt: skip
    return limit / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=2_000_000)
    parser.add_argument("--dpkt-slice", type=int, default=200_000)
    parser.add_argument("--tshark-slice", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true", help="a 20 k-packet trace in a temporary folder")
    args = parser.parse_args()
    if args.smoke:
        args.packets, args.dpkt_slice, args.tshark_slice = 20_000, 5_000, 5_000
        with tempfile.TemporaryDirectory(prefix="netspectra-bench-") as folder:
            run(args, trace(args.packets, Path(folder)))
    else:
        run(args, trace(args.packets))


def run(args: argparse.Namespace, path: Path) -> None:
    size = path.stat().st_size
    with CaptureReader(path, batch_size=1024) as reader:  # JIT cache load / compile
        next(iter(reader), None)
    rate, frames = ours(path)
    print(f"trace: {frames:,} frames, {size / 1e6:.0f} MB, snap 96")
    print(
        f"netspectra CaptureReader : {rate / 1e6:7.2f} M packets/s ({size / (frames / rate) / 1e9:.2f} GB/s)"
    )
    slow = dpkt_rate(path, args.dpkt_slice)
    print(
        f"dpkt (slice {args.dpkt_slice:,})    : {slow / 1e6:7.3f} M packets/s"
        f"  -> netspectra is {rate / slow:.0f}x"
    )
    shark = tshark_rate(path, args.tshark_slice)
    if shark:
        print(
            f"tshark -T fields (slice) : {shark / 1e6:7.3f} M packets/s  -> netspectra is {rate / shark:.0f}x"
        )
    print(f"target >= 8 M packets/s: {'met' if rate >= 8e6 else 'NOT met'}")


if __name__ == "__main__":
    main()
