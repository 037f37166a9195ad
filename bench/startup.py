"""Benchmark: the fixed cost of every ``netspectra`` command, and the first run after an install.

Issue 12's bars, each printed against its target and as a ratio to baselines measured in the same
run: ``python -c pass`` (the interpreter's own start, the floor no command goes under) and, for
``analyze``, numba's own floor (``import numba`` and the first call of one cached kernel, which
initialises numba's CPU target: what any process that counts with the kernels pays before
NetSpectra's own code runs).

* ``netspectra --help`` and ``netspectra config check config.yaml``: ≤ 0.25 s wall;
* ``netspectra analyze`` of a 1 000-frame capture, warm caches: ≤ 0.35 s wall (with the default
  config, whose embedded store is written, shown against chdb's own floor: its import, a session
  and one insert; with Go's ``pcap-analyzer`` writers, JSON Lines and text files, the config issue
  12's side-by-side measured; and with the writers off);
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

The children run with the bytecode cache on (``PYTHONDONTWRITEBYTECODE`` dropped from their
environment), so the unmeasured first run leaves the ``.pyc`` files an installed package has from
pip; without them every command compiles NetSpectra's sources again (a ``config check`` ran ~15 %
more instructions so, measured with callgrind). ``config check`` is also shown against its own
floor, the libraries it cannot do without (typer, pydantic, PyYAML, importlib.metadata), and with
``--baseline REV`` against the same commands of an older revision (``git archive REV`` of the
package, run in the same loop, interleaved), so a change is measured as a ratio in one run (the
three analyze runs too: the old tree gets this tree's ahead-of-time module, which it uses only when
its kernels' sources are the same).
Run: ``python bench/startup.py [--repeat R] [--demo-packets N] [--skip-first-run] [--baseline REV]
[--smoke]``.
Not a timed test.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config.yaml"
OLD_CHAIN = "import numba, numpy, nats, grpclib, betterproto2, pydantic, typer, rich.progress, yaml"
#: What `config check` imports before any line of NetSpectra's own runs: typer parses (and, from
#: 0.29, imports pydantic to convert every parameter), pydantic validates, PyYAML reads,
#: importlib.metadata finds plugins (ours, and pydantic's own plugin loader).
CONFIG_FLOOR = "import typer, pydantic.fields, pydantic.main, yaml, importlib.metadata"
#: The children's environment: the bytecode cache on, as an installed package has it.
CHILD_ENV = {name: value for name, value in os.environ.items() if name != "PYTHONDONTWRITEBYTECODE"}
NETSPECTRA = (sys.executable, "-m", "netspectra")
JIT_ROW = "same analyze under the JIT (NETSPECTRA_AOT=0)"
AOT_IN_USE = "from netspectra.jit import aot_state; print(aot_state() is not None)"
GO_WRITERS_ROW = "netspectra analyze 1 000 frames (Go's writers)"
#: What the default config's embedded store costs before any of ours runs: chdb's import starts
#: (and stops) a ClickHouse engine of its own to read its version, then ours opens a session.
CHDB_ROW = "chdb floor: import + session + one insert"
CHDB_FLOOR = """
from chdb import session
s = session.Session({path!r})
s.query("CREATE TABLE IF NOT EXISTS t (a UInt64) ENGINE = MergeTree ORDER BY a")
s.query("INSERT INTO t VALUES (1)")
s.close()
"""
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
JIT_ENV = {**CHILD_ENV, "NETSPECTRA_AOT": "0"}


def run(command: tuple[str, ...], *, cwd: Path, env: dict[str, str] | None = None) -> tuple[Timing, str, str]:
    """Wall and CPU seconds of ``command`` from spawn to exit, its stdout and stderr (it must succeed)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    env = CHILD_ENV if env is None else env
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Timing(elapsed, cpu), done.stdout, done.stderr


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


def go_writers_config(directory: Path) -> Path:
    """The default config's tasks with Go's ``pcap-analyzer`` writers: JSON Lines (Go's gob) for the
    exact tasks, text for the sketch tasks (issue 12's side-by-side measured the fixed cost so)."""
    import yaml

    config = yaml.safe_load(CONFIG.read_text())
    for group, kind in (("exact", "file"), ("sketch", "text")):
        root = directory / "go-writers-out" / group
        writer = {"type": kind, "enabled": True, kind: {"root_path": str(root)}}
        config["aggregator"][group]["writers"] = [writer]
    path = directory / "go-writers.yaml"
    path.write_text(json.dumps(config))
    return path


def fixed_costs(repeat: int, scratch: Path) -> None:
    small = generate(scratch / "frames-1000.pcap", 1000, 100)
    config_off = writers_off_config(scratch)
    config_go = go_writers_config(scratch)
    floor = scratch / "numba_floor.py"
    floor.write_text(_NUMBA_FLOOR)
    pass_row = "python -c pass (baseline)"
    numba_row = "numba floor: import + one cached kernel"
    config_floor_row = "config check's libraries (typer, pydantic, ...)"
    rows = [
        (pass_row, (sys.executable, "-c", "pass"), None, None),
        ("python -c 'import numba' (for scale)", (sys.executable, "-c", "import numba"), None, None),
        (numba_row, (sys.executable, str(floor)), None, None),
        ("netspectra --help", (*NETSPECTRA, "--help"), 0.25, pass_row),
        (config_floor_row, (sys.executable, "-c", CONFIG_FLOOR), None, None),
        ("netspectra config check config.yaml", (*NETSPECTRA, "config", "check", str(CONFIG)), 0.25,
         config_floor_row),
        (CHDB_ROW, (sys.executable, "-c", CHDB_FLOOR.format(path=str(scratch / "chdb-floor"))), None, None),
        ("netspectra analyze 1 000 frames (default config)", (*NETSPECTRA, "analyze", str(small)), 0.35,
         CHDB_ROW),
        (GO_WRITERS_ROW, (*NETSPECTRA, "analyze", str(small), "--config", str(config_go)), 0.35, numba_row),
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


def against_baseline(revision: str, repeat: int, scratch: Path) -> None:
    """``--help`` and ``config check`` of this tree and of ``revision``, interleaved, as ratios."""
    old = scratch / "baseline"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "netspectra"], capture_output=True,
                             check=True).stdout  # fmt: skip
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    # the ahead-of-time module is built, not committed: the old tree gets this one, which its own
    # manifest check accepts only when the kernels' sources are the same (else it runs the JIT)
    for built in (ROOT / "netspectra").glob("_aot_kernels*"):
        shutil.copy2(built, old / "netspectra" / built.name)
    small = generate(scratch / "frames-1000.pcap", 1000, 100)
    # `python -m netspectra` takes the package of its working directory first: ROOT's, or the old one
    commands = [("netspectra --help", ("--help",)),
                ("netspectra config check config.yaml", ("config", "check", str(CONFIG))),
                ("netspectra analyze 1 000 frames (writers off)",
                 ("analyze", str(small), "--config", str(writers_off_config(scratch)))),
                (GO_WRITERS_ROW, ("analyze", str(small), "--config", str(go_writers_config(scratch)))),
                ("netspectra analyze 1 000 frames (default config)", ("analyze", str(small)))]  # fmt: skip
    print()
    print(f"this tree against {revision} (its package from git archive), interleaved, median of {repeat}")
    for tree, label in ((ROOT, "this tree"), (old, revision)):
        state = subprocess.run((sys.executable, "-c", AOT_IN_USE), cwd=tree, env=CHILD_ENV,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        print(f"  {label}: ahead-of-time kernels {'in use' if state == 'True' else 'NOT in use (JIT)'}")
    print(f"  {load()}")
    print(f"{'':50} {'this':>7} {revision[:12]:>12} {'this/old':>9} {'cpu this':>9} {'cpu old':>8}")
    for name, arguments in commands:
        command = (*NETSPECTRA, *arguments)
        for tree in (ROOT, old):
            run(command, cwd=tree)  # bytecode, page cache
        timings: dict[Path, list[Timing]] = {ROOT: [], old: []}
        for _ in range(repeat):
            for tree in (ROOT, old):
                timings[tree].append(run(command, cwd=tree)[0])
        new_wall, old_wall = (statistics.median(t.wall for t in timings[tree]) for tree in (ROOT, old))
        new_cpu, old_cpu = (statistics.median(t.cpu for t in timings[tree]) for tree in (ROOT, old))
        print(f"{name:50} {new_wall:6.3f}s {old_wall:11.3f}s {new_wall / old_wall:8.2f}x "
              f"{new_cpu:8.2f}s {old_cpu:7.2f}s")  # fmt: skip
    print(f"  {load()}")


def analyze_once(capture: Path, cwd: Path, cache: Path, *, jit: bool) -> tuple[float, float, float, str]:
    """(wall s, reported elapsed s, reported packets/s, compile line or "") of one analyze."""
    env = {**(JIT_ENV if jit else CHILD_ENV), "NUMBA_CACHE_DIR": str(cache)}
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
                            env={**CHILD_ENV, "NUMBA_CACHE_DIR": str(warmed)})  # fmt: skip
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
    parser.add_argument("--baseline", metavar="REV", help="also --help and config check of this git revision")
    args = parser.parse_args()
    repeat = 1 if args.smoke else args.repeat
    with tempfile.TemporaryDirectory(prefix="netspectra-bench-startup-") as directory:
        scratch = Path(directory)
        fixed_costs(repeat, scratch)
        if args.baseline:
            against_baseline(args.baseline, repeat, scratch)
        if not (args.smoke or args.skip_first_run):
            first_run(args.demo_packets, min(repeat, 3), scratch)


if __name__ == "__main__":
    main()
