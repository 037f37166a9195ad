"""Plugin discovery through real entry points (a temporary dist-info on sys.path) and the group."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from netspectra.cli.main import app
from netspectra.config.models import Settings
from netspectra.engine.sketch.count_min import CountMin
from netspectra.engine.sketch.group import SketchGroup
from netspectra.engine.sketch.registry import describe_all, discover, load_algorithm, validate_params
from netspectra.errors import PluginError
from netspectra.model.fields import KeyField, address_bytes
from netspectra.model.key_kernel import build_keys
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import HitterKind

BROKEN_MODULE = "netspectra_test_missing_module_xyz"


@pytest.fixture
def broken_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Install, for this test only, a distribution whose entry points are broken in two ways."""
    info = tmp_path / "broken_sketches-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-sketches\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(
        f"[netspectra.sketches]\nghost = {BROKEN_MODULE}:Sketch\nnot_a_sketch = json:dumps\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))


def settings_with(tasks: list[dict]) -> Settings:  # type: ignore[type-arg]
    return Settings.model_validate({"aggregator": {"sketch": {"tasks": tasks}}})


def batch_of(sources: list[bytes], sizes: list[int]) -> PacketColumns:
    batch = PacketColumns.empty(len(sources))
    for column in (
        batch.dst_ip,
        batch.src_port,
        batch.dst_port,
        batch.protocol,
        batch.ts_ns,
        batch.ip_version,
    ):
        column[:] = 0
    batch.src_ip[:] = np.array([list(s) for s in sources], np.uint8)
    batch.length[:] = sizes
    return batch


def test_builtins_are_discovered_through_entry_points() -> None:
    points = discover()
    assert points["count_min"].target == "netspectra.engine.sketch.count_min:CountMin"
    assert load_algorithm("count_min") is CountMin


def test_unknown_name_suggests_and_lists() -> None:
    with pytest.raises(PluginError) as error:
        load_algorithm("count_mn")
    message = str(error.value)
    assert "did you mean 'count_min'" in message and "available:" in message and "super_spread" in message


def test_bad_params_error_names_task_and_field() -> None:
    with pytest.raises(PluginError, match=r"sketch task 'cm_src'.*width.*greater than or equal to 1"):
        validate_params(CountMin, {"width": 0}, "cm_src")
    with pytest.raises(PluginError, match=r"sketch task 'cm_src'.*depht"):
        validate_params(CountMin, {"depht": 2}, "cm_src")


def test_broken_plugins_are_reported_with_distribution(broken_plugins: None) -> None:
    infos = {info.name: info for info in describe_all()}
    assert infos["ghost"].distribution == "broken-sketches" and infos["ghost"].version == "0.3"
    assert "failed to import" in (infos["ghost"].error or "")
    assert BROKEN_MODULE in (infos["ghost"].error or "")
    assert "is not a class" in (infos["not_a_sketch"].error or "")
    assert infos["count_min"].error is None and infos["count_min"].distribution == "netspectra"
    assert dict((p.name, p.default) for p in infos["count_min"].params)["width"] == 1 << 20


def test_broken_plugin_does_not_take_the_group_down(
    broken_plugins: None, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_with(
        [
            {"name": "cm", "skt_type": 0, "flow_fields": ["SrcIP"], "width": 256, "depth": 2,
             "count_thereshold": 3, "size_thereshold": 250},
            {"name": "ghost_task", "algorithm": "ghost", "flow_fields": ["SrcIP"]},
            {"name": "bad_params", "algorithm": "count_min", "flow_fields": ["SrcIP"], "width": -5},
            {"name": "ss", "skt_type": 1, "flow_fields": ["SrcIP"], "element_fields": ["DstIP"],
             "width": 64, "depth": 2, "count_thereshold": 1},
        ]
    )  # fmt: skip
    with caplog.at_level(logging.ERROR):
        group = SketchGroup.from_config(settings)
    assert group.task_names == ("cm", "ss")
    assert set(group.failed_tasks) == {"ghost_task", "bad_params"}
    assert "failed to import" in group.failed_tasks["ghost_task"]
    assert "sketch task 'bad_params'" in group.failed_tasks["bad_params"]
    ghost_line = next(r.getMessage() for r in caplog.records if "ghost_task" in r.getMessage())
    assert "'ghost'" in ghost_line and "broken-sketches 0.3" in ghost_line

    a = address_bytes("10.0.0.1")
    b = address_bytes("2001:db8::7")
    group.insert(batch_of([a, a, a, b], [100, 100, 100, 60]))
    snapshot = group.snapshot(taken_at_ns=5, period_start_ns=1)
    assert snapshot.group == "sketch" and snapshot.taken_at_ns == 5
    results = {result.task: result for result in snapshot.sketches}
    cm_hitters = [(h.flow, h.value, h.kind) for h in results["cm"].hitters]
    assert cm_hitters == [("10.0.0.1", 3, HitterKind.COUNT), ("10.0.0.1", 300, HitterKind.SIZE)]
    assert results["ss"].algorithm == "super_spread"
    group.reset()
    assert all(not result.hitters for result in group.snapshot(6, 6).sketches)


def test_group_builds_keys_in_task_field_order() -> None:
    settings = settings_with(
        [{"name": "pair", "algorithm": "count_min", "flow_fields": ["SrcPort", "SrcIP"], "width": 64,
          "depth": 1, "count_thereshold": 1, "size_thereshold": 1}]
    )  # fmt: skip
    group = SketchGroup.from_config(settings)
    batch = batch_of([address_bytes("192.0.2.9")], [77])
    batch.src_port[:] = 443
    group.insert(batch)
    flows = {h.flow for h in group.snapshot(1, 0).sketches[0].hitters}
    assert flows == {"443 192.0.2.9"}
    assert build_keys(batch, (KeyField.SRC_PORT,)).tolist() == [[1, 187]]


def test_plugins_list_command_shows_builtins_and_failures(broken_plugins: None) -> None:
    result = CliRunner().invoke(app, ["plugins", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in (
        "count_min",
        "super_spread",
        "netspectra",
        "width=1048576",
        "ghost",
        "FAILED",
        "broken-sketches",
    ):
        assert text in result.output


def test_snapshot_carries_the_state_of_tasks_that_merge() -> None:
    """Two engines' snapshot states merge into the answer one engine gives for both batches."""
    tasks = [
        {"name": "cm", "algorithm": "count_min", "flow_fields": ["SrcIP"], "width": 256, "depth": 2,
         "count_thereshold": 4, "size_thereshold": 400},
        {"name": "spread", "algorithm": "spread_sketch", "flow_fields": ["SrcIP"],
         "element_fields": ["DstIP"], "width": 64, "count_thereshold": 1},
        {"name": "go_spread", "skt_type": 1, "flow_fields": ["SrcIP"], "element_fields": ["DstIP"],
         "width": 64, "depth": 2, "count_thereshold": 1},
    ]  # fmt: skip
    a, b = address_bytes("10.0.0.1"), address_bytes("10.0.0.2")
    first, second = (
        SketchGroup.from_config(settings_with(tasks)),
        SketchGroup.from_config(settings_with(tasks)),
    )
    first.insert(batch_of([a, a, b], [100, 100, 60]))
    second.insert(batch_of([a, a, a], [100, 100, 100]))
    states = [{r.task: r for r in group.snapshot(1, 0).sketches} for group in (first, second)]
    assert states[0]["go_spread"].state is None  # super_spread cannot merge: hitters only
    merged = CountMin.from_bytes(states[0]["cm"].state or b"")
    merged.merge(CountMin.from_bytes(states[1]["cm"].state or b""))
    assert [(h.flow, h.value) for h in merged.heavy_hitters()] == [("10.0.0.1", 5), ("10.0.0.1", 500)]
    # per engine, 10.0.0.1 (2 and 3 packets) is below the threshold of 4: only the merge finds it
    assert not [h for h in states[0]["cm"].hitters if h.kind == HitterKind.COUNT]
    assert states[0]["spread"].state is not None and states[0]["spread"].algorithm == "spread_sketch"
    quiet = SketchGroup(settings_with(tasks).aggregator.sketch.tasks, include_state=False)
    assert all(result.state is None for result in quiet.snapshot(1, 0).sketches)
