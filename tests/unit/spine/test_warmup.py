"""``netspectra warmup`` compiles every cached kernel, so the first ``analyze`` compiles nothing.

Each process gets its own empty ``NUMBA_CACHE_DIR`` (a fresh install, as far as numba can tell)
and reports what numba did through the dispatchers' own counters: a cache miss is a compile.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from netspectra.warmup import KERNEL_MODULES

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / "netspectra"


def _is_cached_njit(decorator: ast.expr) -> bool:
    if not isinstance(decorator, ast.Call):
        return False
    name = (
        decorator.func.attr
        if isinstance(decorator.func, ast.Attribute)
        else getattr(decorator.func, "id", "")
    )
    cached = any(
        keyword.arg == "cache" and isinstance(keyword.value, ast.Constant) and keyword.value.value is True
        for keyword in decorator.keywords
    )
    return name == "njit" and cached


def test_the_warm_up_knows_every_module_with_a_cached_kernel() -> None:
    found = set()
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        functions = (node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef))
        if any(_is_cached_njit(decorator) for function in functions for decorator in function.decorator_list):
            found.add(".".join(path.relative_to(ROOT).with_suffix("").parts))
    assert found == set(KERNEL_MODULES)


_CACHE_STATE = """
import json, sys
from netspectra.warmup import cached_kernels, missing_kernels
json.dump({"kernels": [name for name, _ in cached_kernels()], "missing": missing_kernels()}, sys.stdout)
"""

#: ``python -m netspectra ARGS``, then at exit the kernels numba compiled (cache misses) as JSON.
_RUN_AND_COUNT_COMPILES = """
import atexit, json, runpy, sys
out = sys.argv.pop(1)

def report():
    from netspectra.warmup import cached_kernels
    compiled = {name: sum(d.stats.cache_misses.values()) for name, d in cached_kernels()}
    with open(out, "w") as handle:
        json.dump({name: count for name, count in compiled.items() if count}, handle)

atexit.register(report)
runpy.run_module("netspectra", run_name="__main__", alter_sys=True)
"""


def _python(code: str, *args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    # numba's cache is under test, not the ahead-of-time module (netspectra/jit.py)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "NETSPECTRA_AOT": "0"}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.mark.slow
def test_the_first_analyze_compiles_before_timing_and_says_so_then_nothing_compiles_again(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "numba-cache"
    capture = tmp_path / "small.pcap"
    generate = ("generate", str(capture), "--packets", "2000", "--flows", "50", "--spreaders", "1")
    _python(_RUN_AND_COUNT_COMPILES, str(tmp_path / "gen.json"), *generate, cwd=tmp_path, cache=cache)

    fresh = json.loads(_python(_CACHE_STATE, cwd=tmp_path, cache=cache).stdout)
    assert set(fresh["missing"]) >= {name for name in fresh["kernels"] if ".capture." in name}

    # first run: compiles outside the timed part, and says so on stderr
    first = _python(_RUN_AND_COUNT_COMPILES, str(tmp_path / "first.json"), "analyze", str(capture),
                    cwd=tmp_path, cache=cache)  # fmt: skip
    assert "compiling kernels (first run after install): " in first.stderr
    assert json.loads((tmp_path / "first.json").read_text())  # it did compile

    # every kernel is cached now (the warm-up ran all of them, not only what analyze uses) ...
    warm = json.loads(_python(_CACHE_STATE, cwd=tmp_path, cache=cache).stdout)
    assert warm["missing"] == []
    assert len(list(cache.rglob("*.nbi"))) >= len(warm["kernels"])

    # ... so the next run compiles nothing and prints no compile line
    second = _python(_RUN_AND_COUNT_COMPILES, str(tmp_path / "second.json"), "analyze", str(capture),
                     cwd=tmp_path, cache=cache)  # fmt: skip
    assert "compiling kernels" not in second.stderr
    assert json.loads((tmp_path / "second.json").read_text()) == {}
    assert first.stdout.splitlines()[0].split(" in ")[0] == second.stdout.splitlines()[0].split(" in ")[0]

    # and the step scripts/dev runs after pip install finds nothing left to compile
    total = len(warm["kernels"])
    done = _python("import runpy; runpy.run_module('netspectra.warmup', run_name='__main__')",
                   cwd=tmp_path, cache=cache)  # fmt: skip
    assert f"0 of {total} kernels compiled" in done.stdout


_SIGNATURES_AFTER_WARM_UP = """
import importlib, json, sys
from numba.core.registry import CPUDispatcher
from netspectra.jit import AOT_MODULES
from netspectra.warmup import warm_up

warm_up()
found = {}
for module_name in AOT_MODULES:
    for name, value in vars(importlib.import_module(module_name)).items():
        if isinstance(value, CPUDispatcher) and value.__module__ == module_name:
            if value.targetoptions.get("inline") != "always":  # inlined helpers have no entry of their own
                found[f"{module_name}.{name}"] = len(value.signatures)
json.dump(found, sys.stdout)
"""


@pytest.mark.slow
def test_the_warm_up_gives_every_ahead_of_time_kernel_a_signature_from_a_warm_cache(tmp_path: Path) -> None:
    """The ahead-of-time build compiles the signatures the warm-up's process holds. A kernel that
    only another kernel calls in the warm-up (count_min's one-row kernel, which ``parallel_rows``
    calls from Python) got one only when its caller was compiled, not loaded from the cache: a
    rebuild on a warm cache then left it out, and the first parallel batch compiled it under numba.
    Run twice on the package's own cache (``scripts/dev`` filled it: both runs only load), the
    second must still hold every kernel's signature."""
    env = {**os.environ, "NETSPECTRA_AOT": "0"}
    env.pop("NUMBA_CACHE_DIR", None)
    runs = [
        subprocess.run(
            [sys.executable, "-c", _SIGNATURES_AFTER_WARM_UP],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=600,
        )
        for _ in range(2)
    ]
    assert all(run.returncode == 0 for run in runs), [run.stderr for run in runs]
    found = json.loads(runs[1].stdout)
    assert "netspectra.engine.sketch.count_min_kernels.update_row" in found
    assert {name: count for name, count in found.items() if count == 0} == {}
