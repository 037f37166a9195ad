"""Benchmark: parse-only packets/s of CaptureReader vs dpkt and tshark, measured in the same run.

Generates (and caches under /tmp) a 2 M-packet trace with snap length 96 from
:mod:`netspectra.synth` (IPv4/IPv6, TCP/UDP/ICMP, VLAN/QinQ, extension headers, fragments, ARP),
reads it once to put it in the page cache, then times:

* CaptureReader over the whole file (best of 3; the numba JIT cache is warmed first);
* dpkt on a slice (Ethernet → IP/IPv6 → TCP/UDP ports, the least a Python parser must do);
* ``tshark -T fields`` on a slice (``-c``), process start included.

and the ``probe.compat: go`` question (does the option cost the default path anything?): the pcap
walker alone over the whole file, best of 5 runs interleaved, for the previous revision's default
walker (``--baseline REV``, its ``capture/kernel.py`` from git, compiled by numba's JIT), this
revision's default walker and its compat walker (both under the JIT too, so the three compare
like with like; and the default one ahead-of-time compiled, when that module is current).

The same row also compiles both default walkers afresh (numba's cache keeps no assembly) in a
child process and compares their machine code, labels and symbol names aside: identical means the
option costs the default path nothing at all, not merely nothing measurable.

Run: ``python bench/parse.py [--packets N] [--baseline REV]``. Not a timed test; prints figures
and ratios.
``--smoke``: the same measurements on a 20 k-packet trace in a temporary folder (seconds; CI).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from netspectra.capture import CaptureReader
from netspectra.synth import TrafficSpec, write_trace

#: The revision before ``probe.compat`` existed (main when it was written): the "before" of the
#: default walker's rate.
BASELINE = "a9bc1cc"


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


def _walk_seconds(walk, counter_size: int, buf: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """One pass of a pcap walker over the whole file (24-byte header, microseconds, Ethernet)."""
    from netspectra.capture.stream import MAX_CAPLEN
    from netspectra.model.packets import PacketColumns

    columns = PacketColumns.empty(65536).arrays()
    counters = np.zeros(counter_size, np.int64)
    pos, end = 24, buf.shape[0]
    started = time.perf_counter()
    while pos < end:
        pos, _n, reason = walk(buf, pos, end, False, 1000, 16, MAX_CAPLEN, 1, *columns, 0, 65536, counters)
        if reason == 0:  # NEED_MORE: only the file's end
            break
    return time.perf_counter() - started


def _baseline_kernel(revision: str, scratch: Path):  # type: ignore[no-untyped-def]
    """``netspectra/capture/kernel.py`` of ``revision`` as a module of its own (None: not in git)."""
    root = Path(__file__).resolve().parents[1]
    try:
        source = subprocess.run(
            ["git", "show", f"{revision}:netspectra/capture/kernel.py"],
            cwd=root, capture_output=True, check=True, timeout=60,
        ).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    path = scratch / "netspectra_bench_baseline_kernel.py"
    path.write_bytes(source)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def compat_cost(path: Path, revision: str, rounds: int) -> None:
    """The default walker before and after ``probe.compat``, and the compat walker, as ratios."""
    from netspectra import jit
    from netspectra.capture import kernel

    buf = np.fromfile(path, np.uint8)
    with tempfile.TemporaryDirectory(prefix="netspectra-bench-compat-") as scratch:
        old = _baseline_kernel(revision, Path(scratch))
        walkers: dict[str, tuple] = {}  # type: ignore[type-arg]
        if old is not None:
            old_walk = (
                old.walk_pcap.dispatcher() if isinstance(old.walk_pcap, jit.AotKernel) else old.walk_pcap
            )
            walkers[f"default walker, {revision} (JIT)"] = (old_walk, old.COUNTER_SIZE)
        now = {name: getattr(kernel, name) for name in ("walk_pcap", "walk_pcap_go")}
        jitted = {name: w.dispatcher() if isinstance(w, jit.AotKernel) else w for name, w in now.items()}
        walkers["default walker, this revision (JIT)"] = (jitted["walk_pcap"], kernel.COUNTER_SIZE)
        walkers["compat: go walker (JIT)"] = (jitted["walk_pcap_go"], kernel.COUNTER_SIZE)
        if isinstance(now["walk_pcap"], jit.AotKernel):
            walkers["default walker, this revision (AOT)"] = (now["walk_pcap"], kernel.COUNTER_SIZE)
            walkers["compat: go walker (AOT)"] = (now["walk_pcap_go"], kernel.COUNTER_SIZE)
        best = dict.fromkeys(walkers, float("inf"))
        for walk, size in walkers.values():
            _walk_seconds(walk, size, buf[: min(buf.shape[0], 1 << 16)])  # compile / load outside the timing
        for _ in range(rounds):  # interleaved: a load change on the shared machine hits every row
            for name, (walk, size) in walkers.items():
                best[name] = min(best[name], _walk_seconds(walk, size, buf))
    load = os.getloadavg()[0]
    print(f"probe.compat cost: pcap walker alone, best of {rounds} interleaved (load average {load:.1f})")
    reference = best.get(f"default walker, {revision} (JIT)")
    for name, seconds in best.items():
        ratio = f"  {reference / seconds:.3f}x the {revision} default walker" if reference else ""
        print(f"  {name:40}: {seconds * 1e3:8.1f} ms{ratio}")
    if reference is None:
        print(f"  (no {revision} in git here: no before/after ratio)")
        return
    with tempfile.TemporaryDirectory(prefix="netspectra-bench-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "NETSPECTRA_AOT": "0"}
        subprocess.run(
            [sys.executable, __file__, "--compare-machine-code", str(path), "--baseline", revision],
            env=env, check=True, timeout=600,
        )  # fmt: skip


def _instructions(dispatcher) -> list[str]:  # type: ignore[no-untyped-def]
    (signature,) = dispatcher.signatures
    lines = [line.split("#")[0].strip() for line in dispatcher.inspect_asm(signature).splitlines()]
    code = [line for line in lines if line and not line.startswith(".") and not line.endswith(":")]
    return [re.sub(r"\.L\w+|_ZN\S+", "L", line) for line in code]


def compare_machine_code(path: Path, revision: str) -> None:
    """(Child process, fresh numba cache, JIT.) Print whether the default walkers' code is equal."""
    from netspectra.capture import kernel

    with tempfile.TemporaryDirectory(prefix="netspectra-bench-asm-") as scratch:
        old = _baseline_kernel(revision, Path(scratch))
        if old is None:
            print(f"  (no {revision} in git here: machine code not compared)")
            return
        buf = np.fromfile(path, np.uint8)[: 1 << 16]
        for walk, size in ((old.walk_pcap, old.COUNTER_SIZE), (kernel.walk_pcap, kernel.COUNTER_SIZE),
                           (kernel.walk_pcap_go, kernel.COUNTER_SIZE)):  # fmt: skip
            _walk_seconds(walk, size, buf)
        before, after = _instructions(old.walk_pcap), _instructions(kernel.walk_pcap)
        compat = _instructions(kernel.walk_pcap_go)
        same = "identical" if before == after else "DIFFERENT"
        print(f"  default walker machine code vs {revision}: {same} ({len(after)} vs {len(before)} "
              f"instructions; the compat walker: {len(compat)})")  # fmt: skip


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
    parser.add_argument("--baseline", default=BASELINE, metavar="REV", help="the 'before' of the compat row")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compare-machine-code", type=Path, metavar="TRACE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.compare_machine_code:
        compare_machine_code(args.compare_machine_code, args.baseline)
        return
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
    compat_cost(path, args.baseline, 2 if args.smoke else args.rounds)


if __name__ == "__main__":
    main()
