"""Benchmark: how `netspectra analyze`'s time and peak memory grow with packets and with flows.

    python bench/cost_growth.py [--packets 1000000,10000000,50000000] [--flows 10000,1000000,10000000]
                                [--fixed-flows 200000] [--fixed-packets 20000000] [--flows-zipf 0] [--smoke]

Two series on traces from the project's seeded generator (:func:`netspectra.synth.write_trace`,
seed 3, snap length 96), each written by its own child process: packets grow at ``--fixed-flows``
flows with Zipf-1.1 flow sizes (``netspectra generate``'s default: a heavy head, and more packets
reach more of the long tail), then flows grow at ``--fixed-packets`` packets with uniform flow
sizes (``--flows-zipf 0``), so that nearly every generated flow draws packets and the table holds
about the flows asked for (under Zipf 1.1, 20 M packets over 10 M flows reach only 1.8 M of them).
The five-tuple flows the analysis found are printed beside the generated ones. Each point is the
CLI end to end (``netspectra analyze --json``) with the shipped default config (6 exact + 3
sketch tasks) and its writers off, as a user sizing a machine runs it: wall time, the analysis's
own parse-and-count time (``elapsed_s``), and the child's peak RSS. Time and memory are printed
against the series' first point, measured in the same run, as one Markdown table (docs/sizing.md
is its output), with the load average before and after. Traces are cached under /tmp (a
50 M-packet trace is ~5 GB; generating it takes ~14 GiB of memory for a few minutes).
``--smoke``: 20 k and 40 k packets, 1 k and 2 k flows, in a temporary folder.

Why peak RSS is the child's own ``VmHWM``, read at its exit, and traces are generated in their own
process: on Linux a child's ``ru_maxrss`` (what ``wait4`` and ``getrusage(RUSAGE_CHILDREN)``
report) starts at its parent's high-water mark, inherited through ``fork``. The
first version of this bench generated each trace inside its own process (the generator holds every
packet's columns: ~14 GiB for 50 M packets) and then reported that figure as analyze's peak
(491 MiB / 2,945 MiB / 13,984 MiB at 1 M / 10 M / 50 M packets, where analyze itself peaks at
349 / 428 / 434 MiB). ``VmHWM`` belongs to the memory map ``exec`` made, so it is the analysis's
alone whatever the parent did.
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

#: Runs the CLI as ``python -m netspectra`` does, then writes the process's own peak RSS (kB, the
#: ``VmHWM`` of /proc/self/status) to the file named by its first argument.
CLI_WITH_PEAK = """
import atexit, sys
report = sys.argv.pop(1)
def write_peak():
    with open("/proc/self/status") as status:
        peak = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    with open(report, "w") as out:
        out.write(peak)
atexit.register(write_peak)
sys.argv[0] = "netspectra"
from netspectra.cli.main import app
app()
"""


#: Writes one trace (path, packets, flows, Zipf exponent, snap length) in a process of its own.
GENERATE = """
import sys
from netspectra.synth.traffic import TrafficSpec, write_trace
path, packets, flows, zipf, snaplen = sys.argv[1:]
spec = TrafficSpec(packets=int(packets), flows=int(flows), seed=3, snaplen=int(snaplen), zipf=float(zipf))
write_trace(path, spec)
"""
DEFAULT_ZIPF = 1.1


def trace(folder: Path, packets: int, flows: int, zipf: float = DEFAULT_ZIPF) -> Path:
    """The cached trace of (packets, flows, zipf), generated in a child so this process stays small."""
    shape = "" if zipf == DEFAULT_ZIPF else f"-zipf{zipf:g}"
    path = folder / f"netspectra-growth-{packets}-{flows}{shape}-snap{SNAPLEN}.pcap"
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        partial = path.with_suffix(".partial")
        command = [sys.executable, "-c", GENERATE, str(partial), str(packets), str(flows), str(zipf)]
        subprocess.run([*command, str(SNAPLEN)], check=True)
        partial.replace(path)
    return path


def analyze(path: Path, config: Path, work: Path) -> tuple[float, float, float, int]:
    """(wall s, analysis elapsed_s, peak RSS MiB, five-tuple flows) of one CLI run in its own process."""
    report = work / "peak-kb"
    report.unlink(missing_ok=True)
    command = [sys.executable, "-c", CLI_WITH_PEAK, str(report)]
    command += ["analyze", str(path), "--config", str(config), "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"analyze failed ({done.returncode}) on {path}")
    document = json.loads(done.stdout)
    flows = document["exact"].get("per_five_tuple", {}).get("flows", 0)
    return elapsed, float(document["elapsed_s"]), int(report.read_text()) / 1024, flows


def load_average() -> str:
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", default="1000000,10000000,50000000")
    parser.add_argument("--flows", default="10000,1000000,10000000")
    parser.add_argument("--fixed-flows", type=int, default=200_000)
    parser.add_argument("--fixed-packets", type=int, default=20_000_000)
    parser.add_argument("--flows-zipf", type=float, default=0.0, help="flow-size Zipf exponent, flows series")
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
        ("packets", [(int(p), args.fixed_flows, DEFAULT_ZIPF) for p in args.packets.split(",")]),
        ("flows", [(args.fixed_packets, int(f), args.flows_zipf) for f in args.flows.split(",")]),
    ]
    for _, points in series:  # every trace first: generating one must not load the timed runs
        for packets, flows, zipf in points:
            trace(folder, packets, flows, zipf)
    analyze(trace(folder, 20_000, 1_000), config, work)  # kernels compiled or loaded before any timing
    print(f"load average before: {load_average()}")
    print(
        "| series | packets | flows (generated) | flow sizes | 5-tuple flows found | wall s | analyze s "
        "| peak RSS MiB | packets/s (wall) | time | memory |"
    )
    print("|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|")
    for name, points in series:
        first: tuple[float, float] | None = None
        for packets, flows, zipf in points:
            seconds, counting, peak, found = analyze(trace(folder, packets, flows, zipf), config, work)
            first = first or (seconds, peak)
            sizes = f"Zipf {zipf:g}" if zipf else "uniform"
            point = (
                f"| {name} | {packets:,} | {flows:,} | {sizes} | {found:,} | {seconds:.2f} | {counting:.2f}"
            )
            growth = f"{seconds / first[0]:.2f}x | {peak / first[1]:.2f}x"
            print(f"{point} | {peak:,.0f} | {packets / seconds:,.0f} | {growth} |", flush=True)
    print(f"load average after: {load_average()}")
    shutil.rmtree(work)
    if args.smoke:
        shutil.rmtree(folder)


if __name__ == "__main__":
    main()
