"""Benchmark: `netspectra analyze` with the six default exact tasks vs tshark fields and dpkt.

Generates (and caches under /tmp) a 2 M-packet trace with the project's seeded generator (IPv4 and
IPv6, VLAN/QinQ, fragments, ICMP, ARP; snap length 96), then measures on the same file, in one run:

* netspectra parse only (CaptureReader, in process);
* netspectra analyze, six exact tasks, in process (file in page cache; parse, count, final
  snapshot), with the engine's default kernel threads (one per core) and with one, and as the
  CLI end to end (process start, imports, JIT cache load, parse, count, summary);
* the CLI's fixed start-up: the same command on the small ``--slice`` trace;
* netspectra analyze with the whole default config (6 exact + 3 sketch tasks), in process;
* tshark -T fields and dpkt (parse plus a five-tuple dict, the least a Python flow counter must
  do) on a smaller trace of the same generator (``--slice``), as their rates;
* the six exact tasks' CLI with the writers on through main's file writer (before the cores work)
  and through this one, and with the writers off, interleaved: wall, user + sys CPU and the work
  part (first frame to last row written) of each, with the load average;
* the CLI with the writers on (JSON Lines ``file`` writer for the exact tasks, ``text`` for the
  sketch tasks: the writers Go's ``pcap-analyzer`` runs by default) against the same command
  with the writers off, and both against Go2NetSpectra's figures from issue 12 (Go cannot be
  built here: no Go toolchain; measured on this machine from the seed's commit, 2 M frames:
  160 k frames/s for 6 exact tasks, 139 k/s for 6 exact + 3 sketch tasks, writers on).

Other engineers share this machine, so every netspectra figure is the best of ``--repeat`` runs,
with the slowest run next to it. Run: ``python bench/analyze.py [--packets N] [--repeat R]``.
Not a timed test; prints figures and ratios. ``--smoke``: the same measurements on 20 k packets,
one run each, traces in a temporary folder (seconds; CI runs it so the bench cannot rot).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

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
    """The project's seeded generator (IPv4/IPv6, VLANs, fragments, ICMP, ARP), snap 96."""
    from netspectra.synth.traffic import TrafficSpec, write_trace

    write_trace(path, TrafficSpec(packets=packets, flows=flows, seed=seed, snaplen=SNAPLEN))


#: Go2NetSpectra's pcap-analyzer on the 2 M-frame trace, writers on (gob + text), issue 12.
GO_FRAMES_PER_S = {"six exact": 160_000, "exact + sketch": 139_000}


def file_writers(directory: Path, group: str) -> list[dict]:
    """Go's default writers: JSON Lines (Go's gob) for exact flows, text for sketch hitters."""
    kind = "file" if group == "exact" else "text"
    return [{"type": kind, "enabled": True, kind: {"root_path": str(directory / "out")}}]


def write_config(directory: Path, kernel_threads: int = 0, *, writers: bool = False) -> Path:
    tasks = [{"name": name, "key_fields": fields} for name, fields in SIX_TASKS.items()]
    config = {
        "engine": {"kernel_threads": kernel_threads},
        "aggregator": {
            "types": ["exact"],
            "exact": {"writers": file_writers(directory, "exact") if writers else [], "tasks": tasks},
        },
    }
    path = directory / f"six-exact-k{kernel_threads}{'-writers' if writers else ''}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def write_default_config(directory: Path, kernel_threads: int = 0, *, writers: bool = False) -> Path:
    """The shipped default config (6 exact + 3 sketch tasks), its writers off or Go's file writers on."""
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    for group in ("exact", "sketch"):
        config["aggregator"][group]["writers"] = file_writers(directory, group) if writers else []
    config.setdefault("engine", {})["kernel_threads"] = kernel_threads
    path = directory / f"default-k{kernel_threads}{'-writers' if writers else '-no-writers'}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def best_of(repeat: int, measure) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(best, worst) packets/s of ``repeat`` runs of ``measure() -> packets/s``."""
    rates = [measure() for _ in range(repeat)]
    return max(rates), min(rates)


def bench_parse(path: Path) -> float:
    from netspectra.capture.reader import CaptureReader

    started = time.perf_counter()
    with CaptureReader(path) as reader:
        for _ in reader:
            pass
    return reader.packets / (time.perf_counter() - started)


def bench_analyze_in_process(path: Path, config: Path) -> tuple[float, int]:
    from netspectra.app import analyze_capture
    from netspectra.config import load_settings

    settings = load_settings(config)
    started = time.perf_counter()
    result = asyncio.run(analyze_capture(path, settings))
    elapsed = time.perf_counter() - started
    five_tuples = next((t for t in result.flow_tables() if t.task == "per_five_tuple"), None)
    return result.packets / elapsed, len(five_tuples) if five_tuples is not None else 0


def bench_cli(path: Path, config: Path) -> tuple[float, dict]:
    """The installed CLI as a user runs it (``python -m netspectra``: no pyenv shim in the timing)."""
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, "-m", "netspectra", "analyze", str(path), "--config", str(config), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    elapsed = time.perf_counter() - started
    document = json.loads(output)
    return document["packets"] / elapsed, document


#: Run in the child before the CLI: the file writer as on main before the cores work (64 k-row
#: chunks, two per thread in flight, each file synced in line), the baseline of the work table.
MAIN_FILE_WRITER = (
    "import netspectra.storage.file_writer as w; "
    "w._CHUNK_ROWS = 65_536; w._AHEAD_PER_THREAD = 2; w._SYNC_BEHIND = False; "
    "from netspectra.cli.main import app; app()"
)


@dataclass
class Run:
    """One CLI run: wall and CPU seconds of the whole process, the work part's seconds, frames."""

    wall: float
    cpu: float
    work: float
    frames: int


def cli_run(path: Path, config: Path, *, baseline: bool = False) -> Run:
    """The CLI end to end, as in :func:`bench_cli`; CPU is the child's user + sys time."""
    entry = ["-c", MAIN_FILE_WRITER] if baseline else ["-m", "netspectra"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    output = subprocess.run(
        [sys.executable, *entry, "analyze", str(path), "--config", str(config), "--json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    document = json.loads(output)
    return Run(wall, cpu, document["written_s"], document["frames"])


def bench_work_part(trace: Path, off: Path, on: Path, repeat: int) -> None:
    """Writers on through main's file writer and this one, and writers off, runs interleaved.

    The work part is the analysis's own ``written_s``: from the first frame read to the last row
    written (start-up excluded). Medians of ``repeat`` rounds; the machine is shared, so the
    load average is printed before and after.
    """
    variants = {
        "writers on, main's file writer": (on, True),
        "writers on": (on, False),
        "writers off": (off, False),
    }
    runs: dict[str, list[Run]] = {name: [] for name in variants}
    load_before = os.getloadavg()
    for _ in range(repeat):
        for name, (config, baseline) in variants.items():
            runs[name].append(cli_run(trace, config, baseline=baseline))
            shutil.rmtree(config.parent / "out", ignore_errors=True)  # ~100 MB a run
    load_after = os.getloadavg()
    medians = {
        name: Run(
            *(
                statistics.median(getattr(run, key) for run in done)
                for key in ("wall", "cpu", "work", "frames")
            )
        )
        for name, done in runs.items()
    }
    go = GO_FRAMES_PER_S["six exact"]
    print()
    print(f"CLI end to end, six exact tasks, median of {repeat} interleaved runs; work = first frame to")
    print(f"last row written; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after:")
    heads = (
        ("wall s", 7),
        ("user+sys", 9),
        ("work s", 7),
        ("frames/s", 11),
        ("work frames/s", 14),
        ("vs Go", 6),
    )
    print(f"{'':32} " + " ".join(f"{head:>{width}}" for head, width in heads))
    for name, run in medians.items():
        print(
            f"{name:32} {run.wall:7.3f} {run.cpu:9.3f} {run.work:7.3f} {run.frames / run.wall:11,.0f} "
            f"{run.frames / run.work:14,.0f} {run.frames / run.wall / go:5.1f}x"
        )
    main, now, off_run = medians.values()
    print(
        f"writers on vs main's file writer: whole process {main.wall / now.wall:.2f}x, work part "
        f"{main.work / now.work:.2f}x, CPU {main.cpu / now.cpu:.2f}x; "
        f"writers on/off {now.wall / off_run.wall:.2f}x"
    )


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
    parser.add_argument("--repeat", type=int, default=3, help="runs per netspectra figure (best is shown)")
    parser.add_argument("--smoke", action="store_true", help="20 k packets, one run each: seconds")
    parser.add_argument("--work-only", action="store_true", help="only the interleaved writers-on/off table")
    args = parser.parse_args()
    if args.smoke:
        args.packets, args.slice, args.repeat = 20_000, 5_000, 1
    repeat = max(1, args.repeat)

    # smoke traces go to a fresh folder: parallel runs never read a half-written cached trace
    folder = Path(tempfile.mkdtemp(prefix="netspectra-bench-")) if args.smoke else Path(tempfile.gettempdir())
    traces = {}
    for count in (args.packets, args.slice):
        traces[count] = folder / f"netspectra-bench-synth-{count}-snap{SNAPLEN}.pcap"
        if not traces[count].exists():
            print(f"generating {traces[count]} ...", flush=True)
            generate_trace(traces[count], count, flows=1_000 if args.smoke else 200_000)
    trace, sliced = traces[args.packets], traces[args.slice]
    work = Path(tempfile.mkdtemp(prefix="netspectra-bench-"))
    config = write_config(work)
    config_one = write_config(work, kernel_threads=1)
    default_config = write_default_config(work)
    default_one = write_default_config(work, kernel_threads=1)
    size_mb = trace.stat().st_size / 1e6
    print(f"trace: {trace} ({args.packets:,} packets, {size_mb:.0f} MB, snap {SNAPLEN}); best of {repeat}")

    if args.work_only:
        bench_work_part(trace, config, write_config(work, writers=True), 1 if args.smoke else max(3, repeat))
        shutil.rmtree(work)
        return
    for warm in (default_config, write_default_config(work, writers=True)):
        bench_analyze_in_process(sliced, warm)  # warm the JIT cache (writers' kernels too) and the page cache
    parse = best_of(repeat, lambda: bench_parse(trace))
    five_tuples = bench_analyze_in_process(trace, config)[1]
    analyze_rate = best_of(repeat, lambda: bench_analyze_in_process(trace, config)[0])
    analyze_one = best_of(repeat, lambda: bench_analyze_in_process(trace, config_one)[0])
    default_rate = best_of(repeat, lambda: bench_analyze_in_process(trace, default_config)[0])
    default_rate_one = best_of(repeat, lambda: bench_analyze_in_process(trace, default_one)[0])
    documents: list[dict] = []

    def cli() -> float:
        rate, document = bench_cli(trace, config)
        documents.append(document)
        return rate

    cli_rate = best_of(repeat, cli)
    with_writers = {
        "six exact": (config, write_config(work, writers=True)),
        "exact + sketch": (default_config, write_default_config(work, writers=True)),
    }
    writer_rows = []
    for name, (off, on) in with_writers.items():
        rate_off = best_of(repeat, lambda off=off: bench_cli(trace, off)[0])
        rate_on = best_of(repeat, lambda on=on: bench_cli(trace, on)[0])
        writer_rows.append((name, rate_off, rate_on))
    bench_work_part(trace, config, write_config(work, writers=True), 1 if args.smoke else max(3, repeat))
    startup_s = min(args.slice / bench_cli(sliced, config)[0] for _ in range(repeat))
    tshark = bench_tshark(sliced)
    dpkt_rate = bench_dpkt(sliced)

    assert all(document["packets"] <= args.packets for document in documents)
    rows = [
        ("netspectra parse only (in process)", parse),
        ("netspectra analyze, 6 exact tasks (in process)", analyze_rate),
        ("  ... on one kernel thread", analyze_one),
        ("netspectra analyze, default config: 6 exact + 3 sketch", default_rate),
        ("  ... on one kernel thread", default_rate_one),
        ("netspectra analyze, 6 exact tasks (CLI end to end)", cli_rate),
        (f"tshark -T fields ({args.slice:,}-packet trace)", (tshark, tshark)),
        (f"dpkt parse + 5-tuple dict ({args.slice:,}-packet trace)", (dpkt_rate, dpkt_rate)),
    ]
    print(f"five-tuple flows: {five_tuples:,}")
    print(
        f"CLI fixed start-up (the {args.slice:,}-packet trace end to end, best): {startup_s:.2f}s of the "
        f"{args.packets / cli_rate[0]:.2f}s the best {args.packets:,}-packet CLI run took"
    )
    print(f"{'':55} {'packets/s':>14} {'slowest run':>12} {'vs tshark':>10} {'vs dpkt':>10}")
    for name, (best, worst) in rows:
        print(f"{name:55} {best:14,.0f} {worst:12,.0f} {best / tshark:9.1f}x {best / dpkt_rate:9.1f}x")
    print()
    print("CLI end to end, writers off vs on (file + text, Go's default writers); Go2NetSpectra's")
    print("pcap-analyzer with its writers on, from issue 12 (2 M frames; not buildable here):")
    print(f"{'':18} {'writers off':>12} {'writers on':>12} {'off/on':>8} {'Go':>10} {'on vs Go':>9}")
    for name, (off_best, _), (on_best, _) in writer_rows:
        go = GO_FRAMES_PER_S[name]
        print(
            f"{name:18} {off_best:12,.0f} {on_best:12,.0f} {off_best / on_best:7.2f}x "
            f"{go:10,.0f} {on_best / go:8.1f}x"
        )
    if args.smoke:
        shutil.rmtree(folder)
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
