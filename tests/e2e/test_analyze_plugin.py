"""`netspectra analyze` with a third-party sketch plugin (netspectra-heavykeeper) as a task.

The plugin is found only through its entry point, runs inside the real CLI over a generated
trace, and its top-k is checked against the generator's exact per-flow counts. Bounds are the
plugin's documented error (its README: at least 95 % of the true top-k found, mean relative
error at most 2 %) plus HeavyKeeper's defining property: a count only grows while the flow's
fingerprint holds the bucket, so no flow is ever reported above its true packet count.
"""

from __future__ import annotations

import json
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from netspectra.model.fields import KeyField
from netspectra.synth.traffic import TrafficSpec, exact_truth, write_trace
from tests.fixtures.tools import venv_tool

NETSPECTRA = venv_tool("netspectra")
K = 50
TASKS = {
    "top_sources": (KeyField.SRC_IP,),
    "top_five_tuples": (
        KeyField.SRC_IP,
        KeyField.DST_IP,
        KeyField.SRC_PORT,
        KeyField.DST_PORT,
        KeyField.PROTOCOL,
    ),
}


def plugin_installed() -> bool:
    try:
        version("netspectra-heavykeeper")
    except PackageNotFoundError:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not plugin_installed(),
    reason="netspectra-heavykeeper is not installed (pip install -e plugins/netspectra-heavykeeper)",
)


def flow_text(key: tuple[object, ...]) -> str:
    """The Go flow string: key fields as text, joined by single spaces."""
    return " ".join(str(part) for part in key)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict[str, dict[str, int]], Path]:  # type: ignore[type-arg]
    """One analyze run over a 200 k-packet trace; returns its JSON, the truth per task and tmp dir."""
    root = tmp_path_factory.mktemp("analyze_plugin")
    pcap = root / "zipf.pcap"
    truth = write_trace(pcap, TrafficSpec(packets=200_000, flows=15_000, seed=7))
    tasks = [
        {
            "name": name,
            "algorithm": "heavykeeper",
            "flow_fields": [f.value for f in fields],
            "k": K,
            "width": 4096,
            "depth": 2,
        }
        for name, fields in TASKS.items()
    ]
    document = {
        "aggregator": {
            "types": ["sketch"],
            "sketch": {
                "writers": [
                    {"type": "text", "text": {"root_path": str(root / "text")}},
                    {"type": "file", "enabled": False, "file": {"root_path": str(root / "disabled")}},
                ],
                "tasks": tasks,
            },
        }
    }
    config = root / "config.yaml"
    config.write_text(json.dumps(document))
    process = subprocess.run(
        [NETSPECTRA, "analyze", str(pcap), "--config", str(config), "--json", "--top", str(K)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=root,  # anything written relative to the working directory stays in tmp
    )
    assert process.returncode == 0, process.stderr
    expected = {
        name: {flow_text(key): flow.packets for key, flow in exact_truth(truth, fields).items()}
        for name, fields in TASKS.items()
    }
    assert json.loads(process.stdout)["packets"] == len(truth.packets)
    return json.loads(process.stdout), expected, root


@pytest.mark.parametrize("task", list(TASKS))
def test_top_k_matches_ground_truth(run, task: str) -> None:  # type: ignore[no-untyped-def]
    summary, expected, _ = run
    result = summary["sketch"][task]
    assert result["algorithm"] == "heavykeeper"
    hitters = result["hitters"]
    assert len(hitters) == K and {h["kind"] for h in hitters} == {"count"}
    values = [h["value"] for h in hitters]
    assert values == sorted(values, reverse=True)
    truth = expected[task]
    reported = {h["flow"]: h["value"] for h in hitters}
    assert len(reported) == K, "a flow is reported twice"
    true_top = sorted(truth, key=truth.__getitem__, reverse=True)[:K]
    found = set(true_top) & reported.keys()
    assert len(found) >= 0.95 * K, f"only {len(found)} of the true top {K} reported"
    unknown = reported.keys() - truth.keys()
    assert not unknown, f"flows that never occurred: {sorted(unknown)[:3]}"
    over = {flow: (value, truth[flow]) for flow, value in reported.items() if value > truth[flow]}
    assert not over, f"reported above the true count: {over}"
    errors = [abs(value - truth[flow]) / truth[flow] for flow, value in reported.items()]
    assert sum(errors) / len(errors) <= 0.02
    # the largest flow is far above the rest: its count must be exact or nearly so
    largest = true_top[0]
    assert hitters[0]["flow"] == largest and reported[largest] >= 0.99 * truth[largest]


def test_text_writer_holds_the_same_hitters_and_disabled_writer_wrote_nothing(run) -> None:  # type: ignore[no-untyped-def]
    summary, _, root = run
    (snapshot_dir,) = (root / "text").iterdir()
    for task in TASKS:
        lines = (snapshot_dir / task / "count_hh.txt").read_text().splitlines()
        written = [(line.rsplit(" ", 1)[0], int(line.rsplit(" ", 1)[1])) for line in lines]
        assert written == [(h["flow"], h["value"]) for h in summary["sketch"][task]["hitters"]]
    assert not (root / "disabled").exists()
