"""Benchmark: the fixed cost of every ``netspectra`` command, and the first run after an install.

Issue 12's bars, each printed against its target and as a ratio to baselines measured in the same
run: ``python -c pass`` (the interpreter's own start, the floor no command goes under) and, for
``analyze``, numba's own floor (``import numba`` and the first call of one cached kernel, which
initialises numba's CPU target: what any process that counts with the kernels pays before
NetSpectra's own code runs).

* ``netspectra --help`` and ``netspectra config check config.yaml``: ≤ 0.25 s wall;
* ``netspectra analyze`` of a 1 000-frame capture, warm caches: ≤ 0.35 s wall (with the default
  config, whose embedded store is written, and with the writers off);
* the same two analyze runs under numba's JIT (``NETSPECTRA_AOT=0``) beside the ahead-of-time
  kernels (``netspectra/jit.py``; built by ``netspectra warmup``), and their ratio;
* first run after install within 1.5x of a warm run, on the demo trace (``scripts/dev demo``'s),
  in an empty ``NUMBA_CACHE_DIR`` (numba sees a fresh install; the repository's caches are left
  alone), three ways: with the ahead-of-time module ``netspectra warmup`` built (what
  ``scripts/dev`` leaves), under the JIT after ``netspectra warmup``, and under the JIT without
  it, where the first run must compile, says so, and reports a rate without the compile.

Other engineers share this machine: each figure is the median of ``--repeat`` runs (after one
unmeasured run that fills the page cache), with the best beside it, and the load average is
printed with every table. CPU seconds (user + system of the child) are shown too: under load they
stay near what the command costs, while wall time includes waiting for a core.
``--smoke`` (seconds): one run each, no first-run measurement.
``--baseline PYTHON``: the two 1 000-frame analyze runs also beside another checkout's (its venv's
python, e.g. main's), alternating, with new/old ratios of wall and CPU time (``--only-baseline``:
nothing else).
Run: ``python bench/startup.py [--repeat R] [--demo-packets N] [--skip-first-run] [--smoke]
[--baseline PYTHON [--only-baseline]]``.
Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config.yaml"
OLD_CHAIN = "import numba, numpy, nats, grpclib, betterproto2, pydantic, typer, rich.progress, yaml"
NETSPECTRA = (sys.executable, "-m", "netspectra")
JIT_ROW = "same analyze under the JIT (NETSPECTRA_AOT=0)"
_RATE = re.compile(r" in (?P<elapsed>[\d.]+)s = (?P<rate>[\d,]+) packets/s")
#: One cached kernel: run once to fill the cache, then timed (numba's import + target start-up).
_NUMBA_FLOOR = """
import numba

@numba.njit(cache=True)
def one(x):
    return x + 1

one(1)
"""


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


#: The environment of a run under numba's JIT, whatever ahead-of-time module is built.
JIT_ENV = {**os.environ, "NETSPECTRA_AOT": "0"}


def run(command: tuple[str, ...], *, cwd: Path, env: dict[str, str] | None = None) -> tuple[Timing, str, str]:
    """Wall and CPU seconds of ``command`` from spawn to exit, its stdout and stderr (it must succeed)."""
    env = bytecode_cached(os.environ if env is None else env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Timing(elapsed, cpu), done.stdout, done.stderr


#: where every child keeps its compiled bytecode (set by main: a directory of the run's scratch)
PYCACHE: Path | None = None


def bytecode_cached(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` for a warm run: bytecode written and read again (under :data:`PYCACHE`, so neither
    checkout's tree is written). With ``PYTHONDONTWRITEBYTECODE`` set (as in some shells and CI
    images) an editable install recompiles every NetSpectra module from source on every run:
    ~0.1 s of a 1 000-frame analyze here, which an installed package (pip compiles at install)
    never pays."""
    cached = {key: value for key, value in env.items() if key != "PYTHONDONTWRITEBYTECODE"}
    if PYCACHE is not None:
        cached["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return cached


def repeated(
    command: tuple[str, ...], repeat: int, *, cwd: Path, env: dict[str, str] | None = None
) -> list[Timing]:
    run(command, cwd=cwd, env=env)  # page cache, __pycache__, numba cache, store directory
    return [run(command, cwd=cwd, env=env)[0] for _ in range(repeat)]


def aot_status() -> str:
    """Whether this checkout's ahead-of-time module is built and current (the default runs use it)."""
    from netspectra.jit import aot_state

    if aot_state() is None:
        return (
            "ahead-of-time kernels: NOT built or stale (`python -m netspectra.warmup`): both rows run the JIT"
        )
    return "ahead-of-time kernels: built and current"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} (2 cores: above 2 means others wait too)"


def generate(path: Path, packets: int, flows: int, spreaders: int = 0, seed: int = 1) -> Path:
    if not path.exists():
        print(f"generating {path} ...", flush=True)
        run((*NETSPECTRA, "generate", str(path), "--packets", str(packets), "--flows", str(flows),
             "--spreaders", str(spreaders), "--seed", str(seed)), cwd=ROOT)  # fmt: skip
    return path


def writers_off_config(directory: Path) -> Path:
    """The default config's tasks with every writer removed (what analyze costs without storage)."""
    import yaml

    config = yaml.safe_load(CONFIG.read_text())
    for group in ("exact", "sketch"):
        config["aggregator"][group]["writers"] = []
    path = directory / "writers-off.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def fixed_costs(repeat: int, scratch: Path) -> None:
    small = generate(scratch / "frames-1000.pcap", 1000, 100)
    config_off = writers_off_config(scratch)
    floor = scratch / "numba_floor.py"
    floor.write_text(_NUMBA_FLOOR)
    pass_row = "python -c pass (baseline)"
    numba_row = "numba floor: import + one cached kernel"
    rows = [
        (pass_row, (sys.executable, "-c", "pass"), None, None),
        ("python -c 'import numba' (for scale)", (sys.executable, "-c", "import numba"), None, None),
        (numba_row, (sys.executable, str(floor)), None, None),
        ("netspectra --help", (*NETSPECTRA, "--help"), 0.25, pass_row),
        ("netspectra config check config.yaml", (*NETSPECTRA, "config", "check", str(CONFIG)), 0.25,
         pass_row),
        ("netspectra analyze 1 000 frames (default config)", (*NETSPECTRA, "analyze", str(small)), 0.35,
         numba_row),
        ("netspectra analyze 1 000 frames (writers off)",
         (*NETSPECTRA, "analyze", str(small), "--config", str(config_off)), 0.35, numba_row),
        (f"{JIT_ROW} (default config)", (*NETSPECTRA, "analyze", str(small)), None, numba_row),
        (f"{JIT_ROW} (writers off)", (*NETSPECTRA, "analyze", str(small), "--config", str(config_off)),
         None, numba_row),
        # what every command imported before issue 12 (--help took 0.8-1.3 s here, under load)
        ("old --help imports (numba, nats, grpclib, ...)", (sys.executable, "-c", OLD_CHAIN), None, None),
    ]  # fmt: skip
    print(f"fixed cost: median of {repeat} runs (best beside it), wall seconds from process start to exit")
    print(f"  {aot_status()}")
    print(f"  {load()}")
    print(f"{'':50} {'median':>7} {'best':>7} {'cpu':>6} {'vs pass':>8} {'vs floor':>9} {'target':>7}")
    medians: dict[str, float] = {}
    for name, command, target, floor_row in rows:
        timings = repeated(command, repeat, cwd=scratch, env=JIT_ENV if name.startswith(JIT_ROW) else None)
        wall = statistics.median(timing.wall for timing in timings)
        medians[name] = wall
        best = min(timing.wall for timing in timings)
        cpu = statistics.median(timing.cpu for timing in timings)
        versus_floor = f"{wall / medians[floor_row]:8.2f}x" if floor_row and floor_row != pass_row else ""
        verdict = "" if target is None else f"{target:6.2f}s {'ok' if wall <= target else 'OVER'}"
        print(f"{name:50} {wall:6.3f}s {best:6.3f}s {cpu:5.2f}s {wall / medians[pass_row]:7.2f}x "
              f"{versus_floor:>9} {verdict}")  # fmt: skip
    for config in ("default config", "writers off"):
        aot, jitted = medians[f"netspectra analyze 1 000 frames ({config})"], medians[f"{JIT_ROW} ({config})"]
        print(f"analyze 1 000 frames, {config}: ahead-of-time {aot:.3f}s vs JIT {jitted:.3f}s = "
              f"{aot / jitted:.2f}x the JIT's wall time")  # fmt: skip
    print(f"  {load()}")


def versus_baseline(baseline: str, repeat: int, scratch: Path) -> None:
    """This checkout's 1 000-frame analyze beside another checkout's (``--baseline``: its venv's
    python, e.g. main's before a change), runs alternating so both see the same load."""
    small = generate(scratch / "frames-1000.pcap", 1000, 100)
    config_off = writers_off_config(scratch)
    asked = "from netspectra.jit import aot_state; print(aot_state() is not None)"
    state = subprocess.run((baseline, "-c", asked), cwd=scratch, capture_output=True, text=True,
                           env=bytecode_cached(os.environ))  # fmt: skip
    print()
    print(f"this checkout (new) vs --baseline {baseline} (old; its ahead-of-time kernels built and current: "
          f"{state.stdout.strip()}), median of {repeat} runs each, alternating")  # fmt: skip
    print(f"  {load()}")
    print(
        f"{'':40} {'old wall':>9} {'new wall':>9} {'new/old':>8} {'old cpu':>8} {'new cpu':>8} {'new/old':>8}"
    )
    cases = {
        "analyze 1 000 frames (default config)": ("analyze", str(small)),
        "analyze 1 000 frames (writers off)": ("analyze", str(small), "--config", str(config_off)),
    }
    for name, args in cases.items():
        old_command, new_command = (baseline, "-m", "netspectra", *args), (*NETSPECTRA, *args)
        run(old_command, cwd=scratch)  # page cache, __pycache__, the store directory
        run(new_command, cwd=scratch)
        old: list[Timing] = []
        new: list[Timing] = []
        for _ in range(repeat):
            old.append(run(old_command, cwd=scratch)[0])
            new.append(run(new_command, cwd=scratch)[0])
        old_wall, new_wall = (statistics.median(t.wall for t in ts) for ts in (old, new))
        old_cpu, new_cpu = (statistics.median(t.cpu for t in ts) for ts in (old, new))
        print(f"{name:40} {old_wall:8.3f}s {new_wall:8.3f}s {new_wall / old_wall:7.2f}x "
              f"{old_cpu:7.3f}s {new_cpu:7.3f}s {new_cpu / old_cpu:7.2f}x  (target 0.35 s wall)")  # fmt: skip
    print(f"  {load()}")


def analyze_once(capture: Path, cwd: Path, cache: Path, *, jit: bool) -> tuple[float, float, float, str]:
    """(wall s, reported elapsed s, reported packets/s, compile line or "") of one analyze."""
    env = {**(JIT_ENV if jit else os.environ), "NUMBA_CACHE_DIR": str(cache)}
    timing, stdout, stderr = run((*NETSPECTRA, "analyze", str(capture), "--top", "1"), cwd=cwd, env=env)
    match = _RATE.search(stdout)
    if match is None:
        raise SystemExit(f"no rate in analyze's summary:\n{stdout}")
    compiled = next((line for line in stderr.splitlines() if "compiling kernels" in line), "")
    return timing.wall, float(match["elapsed"]), float(match["rate"].replace(",", "")), compiled


def first_and_warm(capture: Path, repeat: int, scratch: Path, cache: Path, title: str, *, jit: bool) -> None:
    first_wall, first_elapsed, first_rate, compiled = analyze_once(capture, scratch, cache, jit=jit)
    warm = [analyze_once(capture, scratch, cache, jit=jit) for _ in range(repeat)]
    warm_wall = statistics.median(run[0] for run in warm)
    warm_elapsed = statistics.median(run[1] for run in warm)
    warm_rate = statistics.median(run[2] for run in warm)
    compile_s = float(m[1]) if (m := re.search(r": ([\d.]+) s", compiled)) else 0.0
    print()
    print(f"{title}; warm = median of {repeat}")
    print(f"  first run said: {compiled or '(nothing: no kernel compiled)'}")
    print(f"  {load()}")
    print(f"{'':50} {'first':>10} {'warm':>10} {'first/warm':>11}")
    print(f"{'reported rate (packets/s)':50} {first_rate:10,.0f} {warm_rate:10,.0f} "
          f"{warm_rate / first_rate:10.2f}x  (target <= 1.5x)")  # fmt: skip
    print(f"{'reported elapsed (s)':50} {first_elapsed:10.2f} {warm_elapsed:10.2f} "
          f"{first_elapsed / warm_elapsed:10.2f}x")  # fmt: skip
    if compiled:
        print(f"{'wall, compile excluded (s)':50} {first_wall - compile_s:10.2f} {warm_wall:10.2f} "
              f"{(first_wall - compile_s) / warm_wall:10.2f}x  (target <= 1.5x)")  # fmt: skip
        print(f"{'wall, compile included (s)':50} {first_wall:10.2f} {warm_wall:10.2f} "
              f"{first_wall / warm_wall:10.2f}x  (what `netspectra warmup` after pip saves)")  # fmt: skip
    else:
        print(f"{'wall (s)':50} {first_wall:10.2f} {warm_wall:10.2f} "
              f"{first_wall / warm_wall:10.2f}x  (target <= 1.5x)")  # fmt: skip


def first_run(demo_packets: int, repeat: int, scratch: Path) -> None:
    demo = generate(Path(tempfile.gettempdir()) / f"netspectra-demo-{demo_packets}.pcap", demo_packets,
                    50_000, spreaders=5, seed=7)  # fmt: skip
    title = f"the demo analyze ({demo_packets:,} packets)"
    # as scripts/dev leaves a fresh install: pip, then `python -m netspectra.warmup` (which builds the
    # ahead-of-time module); an empty numba cache, which the compiled kernels do not need
    aot_title = f"first run after install, {aot_status()}: {title}"
    first_and_warm(demo, repeat, scratch, scratch / "numba-cache-aot", aot_title, jit=False)
    warmed = scratch / "numba-cache-warmed"
    timing, stdout, _ = run((sys.executable, "-m", "netspectra.warmup"), cwd=scratch,
                            env={**os.environ, "NUMBA_CACHE_DIR": str(warmed)})  # fmt: skip
    print()
    print(f"python -m netspectra.warmup, empty NUMBA_CACHE_DIR: {stdout.strip()}, {timing.wall:.1f} s wall")
    first_and_warm(demo, repeat, scratch, warmed, f"JIT: first run after install + warmup: {title}", jit=True)
    # a user who skipped the warm-up: the first analyze compiles, says so, and times without it
    cold = scratch / "numba-cache-cold"
    first_and_warm(demo, repeat, scratch, cold, f"JIT: first run after install, no warmup: {title}", jit=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=11, help="runs per figure (the median is shown)")
    parser.add_argument("--demo-packets", type=int, default=1_000_000, help="packets of the demo trace")
    parser.add_argument("--skip-first-run", action="store_true", help="only the fixed costs")
    parser.add_argument("--smoke", action="store_true", help="one run each, no first-run measurement")
    parser.add_argument("--baseline", metavar="PYTHON", help="also analyze beside this python's netspectra")
    parser.add_argument("--only-baseline", action="store_true", help="with --baseline: only that comparison")
    args = parser.parse_args()
    repeat = 1 if args.smoke else args.repeat
    with tempfile.TemporaryDirectory(prefix="netspectra-bench-startup-") as directory:
        scratch = Path(directory)
        global PYCACHE
        PYCACHE = scratch / "pycache"
        print(f"bytecode cached under {PYCACHE} (the first, unmeasured run of each command fills it)")
        if not (args.baseline and args.only_baseline):
            fixed_costs(repeat, scratch)
        if args.baseline:
            versus_baseline(args.baseline, repeat, scratch)
        if not (args.smoke or args.skip_first_run or args.only_baseline):
            first_run(args.demo_packets, min(repeat, 3), scratch)


if __name__ == "__main__":
    main()
