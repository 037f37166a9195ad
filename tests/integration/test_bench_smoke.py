"""Every bench/ script runs in its smoke mode, so none rots between the runs that take figures.

Parametrised over the files found by glob: a new bench is covered without touching this file,
and fails here until it has a ``--smoke`` mode. A smoke run is the bench's own code path on a
tiny input (seconds); it must exit 0 and print its ratio lines (a figure against the baseline
measured in the same run, written ``12.3x`` or ``x 12.3``). Exit status 77 means the bench cannot
run on this machine (bench/live.py without root) and is reported as a skip with its reason.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = sorted((ROOT / "bench").glob("*.py"))
RATIO = re.compile(r"\d(?:\.\d+)?\s*x\b|\bx\s*\d")
SKIPPED = 77


def test_there_are_benches() -> None:
    assert BENCHES, f"no bench/*.py under {ROOT}"


@pytest.mark.slow
@pytest.mark.parametrize("bench", BENCHES, ids=[path.name for path in BENCHES])
def test_bench_smoke_run_prints_its_ratios(bench: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(bench), "--smoke"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    if done.returncode == SKIPPED:
        pytest.skip(done.stdout.strip() or done.stderr.strip())
    assert done.returncode == 0, f"{bench.name} --smoke exited {done.returncode}:\n{done.stderr[-3000:]}"
    ratios = [line for line in done.stdout.splitlines() if RATIO.search(line)]
    assert ratios, f"{bench.name} --smoke printed no ratio line:\n{done.stdout}"
