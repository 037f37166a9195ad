"""What a command imports: the fixed cost of every ``netspectra`` invocation is its imports.

numba alone costs ~0.25 s to import, chdb and pyarrow ~0.2 s, the NATS and gRPC clients ~0.1 s;
``--help`` and ``config check`` need none of them (issue 12: ≤ 0.25 s each). Read from the
process's ``sys.modules`` at exit: deterministic, unlike a timing (the times themselves are
printed by ``bench/startup.py``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]

#: Libraries no command may import unless it uses them.
HEAVY = ("numba", "llvmlite", "chdb", "pyarrow", "grpclib", "nats", "asynch", "betterproto2", "grpc")


#: Runs ``python -m netspectra ARGS`` and, at exit, writes every module the process imported
#: (sys.modules: ``-X importtime`` misses what ``importlib.import_module`` loads, e.g. plugins).
_RUN = """
import atexit, json, runpy, sys
out = sys.argv.pop(1)
atexit.register(lambda: open(out, "w").write(json.dumps(sorted(sys.modules))))
runpy.run_module("netspectra", run_name="__main__", alter_sys=True)
"""


def imported_by(*args: str, cwd: Path = ROOT) -> set[str]:
    """Every module ``python -m netspectra ARGS`` imported (its exit code must be 0)."""
    with tempfile.TemporaryDirectory() as scratch:
        listing = Path(scratch) / "modules.json"
        done = subprocess.run(
            [sys.executable, "-c", _RUN, str(listing), *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return set(json.loads(listing.read_text()))


def heavy(modules: set[str]) -> list[str]:
    return sorted(name for name in modules if name.split(".")[0] in HEAVY)


@pytest.mark.parametrize(
    "args",
    [
        ("--help",),
        ("--version",),
        ("analyze", "--help"),
        ("run", "--help"),
        ("query", "--help"),
        ("tail", "--help"),
        ("config", "check", "config.yaml"),
        ("plugins", "list"),
    ],
    ids=" ".join,
)
def test_a_command_imports_no_heavy_library_it_does_not_use(args: tuple[str, ...]) -> None:
    assert heavy(imported_by(*args)) == []


def test_help_does_not_even_import_numpy_or_the_config_models() -> None:
    modules = imported_by("--help")
    assert "numpy" not in modules
    assert "asyncio" not in modules  # ~40 ms: imported by the commands that run a loop
    assert "netspectra.config.models" not in modules
    # typer's rich help formatter imports rich's markdown, syntax and traceback (~half of --help)
    assert not [name for name in modules if name.split(".")[0] == "rich"]


def test_config_check_validates_a_third_party_plugin_without_numba(tmp_path: Path) -> None:
    pytest.importorskip("netspectra_heavykeeper")
    config = tmp_path / "heavykeeper.yaml"
    config.write_text(
        "aggregator:\n"
        "  types: [sketch]\n"
        "  sketch:\n"
        "    tasks:\n"
        "      - {name: top, algorithm: heavykeeper, flow_fields: [SrcIP], k: 5}\n"
    )
    modules = imported_by("config", "check", str(config), "--roles", "engine")
    assert "netspectra_heavykeeper" in modules  # the plugin's class and Params were checked
    assert heavy(modules) == []


def test_config_check_does_not_import_numpy_for_the_built_in_groups_and_sketches() -> None:
    modules = imported_by("config", "check", "config.yaml")
    assert "numpy" not in modules
    assert "asyncio" not in modules
    assert "netspectra.engine.sketch.params" in modules  # the sketch parameters were validated


@pytest.mark.parametrize("name", ["count_min", "super_spread"])
def test_a_built_in_sketch_s_params_model_is_the_one_its_class_uses(name: str) -> None:
    """``config check`` validates a built-in against BUILTIN_PARAMS without importing the class."""
    from netspectra.engine.sketch.registry import BUILTIN_PARAMS, load_algorithm
    from netspectra.plugins import PluginSource

    model = PluginSource(name, BUILTIN_PARAMS[name], "netspectra", "").import_target()
    assert load_algorithm(name).Params is model


def test_the_built_in_group_types_load_and_build() -> None:
    """``config check`` looks built-in group types up without importing them; they do load."""
    from netspectra.config.models import Settings
    from netspectra.engine.groups import BUILTIN_GROUPS, build_groups

    settings = Settings.model_validate({"aggregator": {"types": list(BUILTIN_GROUPS)}})
    assert list(build_groups(settings)) == list(BUILTIN_GROUPS)


def _small_capture(tmp_path: Path) -> Path:
    """200 generated packets over 20 flows: enough for every task to have rows."""
    from netspectra.synth import TrafficSpec, write_trace

    capture = tmp_path / "small.pcap"
    write_trace(capture, TrafficSpec(packets=200, flows=20))
    return capture


def test_analyze_without_writers_imports_no_store_bus_or_api_library(tmp_path: Path) -> None:
    capture = _small_capture(tmp_path)
    config = tmp_path / "no-writers.yaml"
    config.write_text(
        "aggregator:\n"
        "  types: [exact]\n"
        "  exact:\n"
        "    writers: []\n"
        "    tasks: [{name: per_src, key_fields: [SrcIP]}]\n"
    )
    modules = imported_by("analyze", str(capture), "--config", str(config), "--json", cwd=tmp_path)
    from netspectra.jit import aot_state

    # it counts with the kernels: the ahead-of-time module's when built and current, else numba's
    assert ("numba" in modules) == (aot_state() is None)
    assert [name for name in heavy(modules) if name.split(".")[0] not in ("numba", "llvmlite")] == []


def test_analyze_with_go_s_file_writers_serialises_no_sketch_state(tmp_path: Path) -> None:
    """The JSON Lines and text writers never read a sketch's state, so an analysis writing only
    them skips its zstd (pyarrow) — and still writes the heavy hitters."""
    capture = _small_capture(tmp_path)
    config = tmp_path / "go-writers.yaml"
    config.write_text(
        "aggregator:\n"
        "  types: [exact, sketch]\n"
        "  exact:\n"
        f"    writers: [{{type: file, file: {{root_path: {tmp_path / 'exact'}}}}}]\n"
        "    tasks: [{name: per_src, key_fields: [SrcIP]}]\n"
        "  sketch:\n"
        f"    writers: [{{type: text, text: {{root_path: {tmp_path / 'sketch'}}}}}]\n"
        "    tasks: [{name: cm, algorithm: count_min, flow_fields: [SrcIP], element_fields: [DstIP],\n"
        "             width: 4096, depth: 2, count_thereshold: 1, size_thereshold: 1}]\n"
    )
    modules = imported_by("analyze", str(capture), "--config", str(config), "--json", cwd=tmp_path)
    assert "pyarrow" not in modules
    import dpkt

    with capture.open("rb") as handle:  # the truth: every source address that sent a frame
        sources = {
            ip.src
            for _, frame in dpkt.pcap.Reader(handle)
            if isinstance(ip := dpkt.ethernet.Ethernet(frame).data, dpkt.ip.IP | dpkt.ip6.IP6)
        }
    (count_file,) = (tmp_path / "sketch").glob("*/cm/count_hh.txt")
    assert len(count_file.read_text().splitlines()) == len(sources) > 0  # each sent a packet: above 1


def test_a_short_command_pauses_the_garbage_collector_only_while_it_runs() -> None:
    """``config check`` runs without cyclic collections (start-up builds no garbage) and leaves the
    collector enabled when it returns, as a test calling the CLI in-process needs."""
    import gc

    from typer.testing import CliRunner

    from netspectra.cli import config_cmd
    from netspectra.cli.main import app

    seen: list[bool] = []
    original = config_cmd.check_or_exit

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return original(*args, **kwargs)

    assert gc.isenabled()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(config_cmd, "check_or_exit", spy)
        result = CliRunner().invoke(app, ["config", "check", str(ROOT / "config.yaml")])
    assert result.exit_code == 0, result.output
    assert seen == [False]
    assert gc.isenabled()
