"""Benchmark: the fixed cost of every ``netspectra`` command, and the first run after an install.

Issue 12's bars, measured in one run against ``python -c pass`` (the interpreter's own start,
the floor no command can go under) on this machine:

* ``netspectra --help`` and ``netspectra config check config.yaml``: ≤ 0.25 s wall;
* ``netspectra analyze`` of a 1 000-frame capture, warm caches: ≤ 0.35 s wall (shown with the
  default config, whose embedded store is written, and with the writers off);
* first run after an install within 1.5x of a warm run: the demo analyze (``scripts/dev demo``'s
  trace) in an empty ``NUMBA_CACHE_DIR`` (numba sees a fresh install; the repository's own
  caches are left alone) against the same command once cached: the rate it reports, and its wall
  time with and without the compile it announces.

Other engineers share this machine, so each figure is the best of ``--repeat`` runs, with the
slowest next to it. ``--smoke`` (seconds): one run each, no first-run measurement.
Run: ``python bench/startup.py [--repeat R] [--demo-packets N] [--smoke]``. Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config.yaml"
OLD_CHAIN = "import numba, numpy, nats, grpclib, betterproto2, pydantic, typer, rich.progress, yaml"
NETSPECTRA = (sys.executable, "-m", "netspectra")
_RATE = re.compile(r" in (?P<elapsed>[\d.]+)s = (?P<rate>[\d,]+) packets/s")


def wall(command: tuple[str, ...], *, cwd: Path, env: dict[str, str] | None = None) -> float:
    """Seconds from spawn to exit (the command must succeed)."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    return elapsed


def best_and_worst(command: tuple[str, ...], repeat: int, *, cwd: Path) -> tuple[float, float]:
    wall(command, cwd=cwd)  # page cache, __pycache__, numba cache, store directory
    runs = [wall(command, cwd=cwd) for _ in range(repeat)]
    return min(runs), max(runs)


def generate(path: Path, packets: int, flows: int, spreaders: int = 0, seed: int = 1) -> Path:
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        wall((*NETSPECTRA, "generate", str(path), "--packets", str(packets), "--flows", str(flows),
              "--spreaders", str(spreaders), "--seed", str(seed)), cwd=ROOT)  # fmt: skip
    return path


def writers_off_config(directory: Path) -> Path:
    """The default config's tasks with every writer removed (what analyze costs without storage)."""
    import yaml

    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    for group in ("exact", "sketch"):
        config["aggregator"][group]["writers"] = []
    path = directory / "writers-off.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def fixed_costs(repeat: int, scratch: Path) -> None:
    small = generate(scratch / "frames-1000.pcap", 1000, 100)
    config_off = writers_off_config(scratch)
    rows = [
        ("python -c pass (baseline)", (sys.executable, "-c", "pass"), None),
        ("netspectra --help", (*NETSPECTRA, "--help"), 0.25),
        ("netspectra config check config.yaml", (*NETSPECTRA, "config", "check", str(CONFIG)), 0.25),
        ("netspectra analyze 1 000 frames (default config)", (*NETSPECTRA, "analyze", str(small)), 0.35),
        ("netspectra analyze 1 000 frames (writers off)",
         (*NETSPECTRA, "analyze", str(small), "--config", str(config_off)), 0.35),
        ("python -c 'import numba' (for scale)", (sys.executable, "-c", "import numba"), None),
        # what every command imported before issue 12 (--help took 0.8-1.3 s here, under load)
        ("old --help imports (numba, nats, grpclib, ...)", (sys.executable, "-c", OLD_CHAIN), None),
    ]  # fmt: skip
    print(f"fixed cost: best of {repeat} runs (wall seconds, process start to exit)")
    print(f"{'':50} {'best':>7} {'slowest':>8} {'vs python':>10} {'target':>7}")
    baseline = 0.0
    for name, command, target in rows:
        best, worst = best_and_worst(command, repeat, cwd=scratch)
        baseline = baseline or best
        verdict = "" if target is None else f"{target:6.2f}s {'ok' if best <= target else 'OVER'}"
        print(f"{name:50} {best:6.3f}s {worst:7.3f}s {best / baseline:9.2f}x {verdict}")


def analyze_once(capture: Path, cwd: Path, cache: Path) -> tuple[float, float, float, str]:
    """(wall s, reported elapsed s, reported packets/s, compile line or "") of one analyze."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache)}
    started = time.perf_counter()
    done = subprocess.run((*NETSPECTRA, "analyze", str(capture), "--top", "1"), cwd=cwd, env=env,
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"analyze failed:\n{done.stdout}{done.stderr}")
    match = _RATE.search(done.stdout)
    if match is None:
        raise SystemExit(f"no rate in analyze's summary:\n{done.stdout}")
    compiled = next((line for line in done.stderr.splitlines() if "compiling kernels" in line), "")
    return seconds, float(match["elapsed"]), float(match["rate"].replace(",", "")), compiled


def first_run(demo_packets: int, repeat: int, scratch: Path) -> None:
    demo = generate(Path(tempfile.gettempdir()) / f"netspectra-demo-{demo_packets}.pcap", demo_packets,
                    50_000, spreaders=5, seed=7)  # fmt: skip
    cache = scratch / "numba-cache"  # empty: numba has compiled nothing, as after an install
    first_wall, first_elapsed, first_rate, compiled = analyze_once(demo, scratch, cache)
    warm = [analyze_once(demo, scratch, cache) for _ in range(repeat)]
    warm_wall = min(run[0] for run in warm)
    warm_elapsed = min(run[1] for run in warm)
    warm_rate = max(run[2] for run in warm)
    compile_s = float(m[1]) if (m := re.search(r": ([\d.]+) s", compiled)) else 0.0
    print()
    print(f"first run after install: the demo analyze ({demo_packets:,} packets), empty NUMBA_CACHE_DIR; "
          f"warm = best of {repeat}")  # fmt: skip
    print(f"  first run said: {compiled or '(nothing: no kernel compiled)'}")
    print(f"{'':50} {'first':>10} {'warm':>10} {'first/warm':>11}")
    print(f"{'reported rate (packets/s)':50} {first_rate:10,.0f} {warm_rate:10,.0f} "
          f"{warm_rate / first_rate:10.2f}x  (target <= 1.5x)")  # fmt: skip
    print(f"{'reported elapsed (s)':50} {first_elapsed:10.2f} {warm_elapsed:10.2f} "
          f"{first_elapsed / warm_elapsed:10.2f}x")  # fmt: skip
    print(f"{'wall, compile excluded (s)':50} {first_wall - compile_s:10.2f} {warm_wall:10.2f} "
          f"{(first_wall - compile_s) / warm_wall:10.2f}x  (target <= 1.5x)")  # fmt: skip
    print(f"{'wall, compile included (s)':50} {first_wall:10.2f} {warm_wall:10.2f} "
          f"{first_wall / warm_wall:10.2f}x  (what `netspectra warmup` after pip install saves)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10, help="runs per figure (best is shown)")
    parser.add_argument("--demo-packets", type=int, default=1_000_000, help="packets of the demo trace")
    parser.add_argument("--smoke", action="store_true", help="one run each, no first-run measurement")
    args = parser.parse_args()
    repeat = 1 if args.smoke else args.repeat
    with tempfile.TemporaryDirectory(prefix="netspectra-bench-startup-") as directory:
        scratch = Path(directory)
        fixed_costs(repeat, scratch)
        if not args.smoke:
            first_run(args.demo_packets, min(repeat, 3), scratch)


if __name__ == "__main__":
    main()
