"""Benchmark: how `netspectra analyze`'s time and peak memory grow with packets and with flows.

    python bench/cost_growth.py [--packets 1000000,10000000,50000000] [--flows 10000,1000000,10000000]
                                [--fixed-flows 200000] [--fixed-packets 20000000] [--smoke]

Two series on traces from the project's seeded generator (snap length 96, Zipf flow sizes):
packets grow at ``--fixed-flows`` flows, then flows grow at ``--fixed-packets`` packets (a
generator flow that draws no packet is not in the table: the five-tuple flows the analysis found
are printed). Each point is the CLI end to end (``python -m netspectra analyze --json``) with the
shipped default config (6 exact + 3 sketch tasks) and its writers off, as a user sizing a machine
runs it; wall time and the child's peak RSS (``getrusage`` of the one child). Time and memory are
printed against the series' first point, measured in the same run. Traces are cached under /tmp
(a 50 M-packet trace is ~5 GB). ``--smoke``: 20 k and 40 k packets, 1 k and 2 k flows.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.analyze import SNAPLEN, write_default_config


def trace(folder: Path, packets: int, flows: int) -> Path:
    from netspectra.synth.traffic import TrafficSpec, write_trace

    path = folder / f"netspectra-growth-{packets}-{flows}-snap{SNAPLEN}.pcap"
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        partial = path.with_suffix(".partial")
        write_trace(partial, TrafficSpec(packets=packets, flows=flows, seed=3, snaplen=SNAPLEN))
        partial.replace(path)
    return path


def analyze(path: Path, config: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, five-tuple flows) of one CLI run in its own child process."""
    command = [sys.executable, "-m", "netspectra", "analyze", str(path), "--config", str(config), "--json"]
    started = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not every child's maximum
    child.returncode = os.waitstatus_to_exitcode(status)
    child.stdout.close()
    elapsed = time.perf_counter() - started
    if child.returncode:
        raise SystemExit(f"analyze failed ({child.returncode}) on {path}")
    document = json.loads(output)
    flows = document["exact"].get("per_five_tuple", {}).get("flows", 0)
    return elapsed, usage.ru_maxrss / 1024, flows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", default="1000000,10000000,50000000")
    parser.add_argument("--flows", default="10000,1000000,10000000")
    parser.add_argument("--fixed-flows", type=int, default=200_000)
    parser.add_argument("--fixed-packets", type=int, default=20_000_000)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.packets, args.flows, args.fixed_flows, args.fixed_packets = (
            "20000,40000",
            "1000,2000",
            1000,
            40_000,
        )
    folder = Path(tempfile.mkdtemp(prefix="netspectra-bench-")) if args.smoke else Path(tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="netspectra-bench-"))
    config = write_default_config(work)
    series = [
        ("packets", [(int(p), args.fixed_flows) for p in args.packets.split(",")]),
        ("flows", [(args.fixed_packets, int(f)) for f in args.flows.split(",")]),
    ]
    analyze(trace(folder, 20_000, 1_000), config)  # kernels compiled or loaded before any timing
    columns = f"{'series':8} {'packets':>12} {'flows (gen)':>12} {'5-tuple flows':>14}"
    print(f"{columns} {'wall s':>8} {'peak MiB':>9} {'packets/s':>12} {'time':>7} {'memory':>7}")
    for name, points in series:
        first: tuple[float, float] | None = None
        for packets, flows in points:
            seconds, peak, found = analyze(trace(folder, packets, flows), config)
            first = first or (seconds, peak)
            point = f"{name:8} {packets:12,} {flows:12,} {found:14,}"
            growth = f"{seconds / first[0]:6.2f}x {peak / first[1]:6.2f}x"
            print(f"{point} {seconds:8.2f} {peak:9.0f} {packets / seconds:12,.0f} {growth}", flush=True)
    shutil.rmtree(work)
    if args.smoke:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
