"""The one entry-point loader, against real distributions: plain ``.dist-info`` directories on sys.path."""

from __future__ import annotations

from pathlib import Path

import pytest

from netspectra.engine.groups import load_group_class
from netspectra.engine.sketch.count_min import CountMin
from netspectra.engine.sketch.registry import describe_all, discover, load_algorithm
from netspectra.errors import ConfigError, PluginError
from netspectra.plugins import DuplicatePluginError, PluginRegistry, UnknownPluginError


def install(root: Path, distribution: str, version: str, entry_points: str, modules: dict[str, str]) -> None:
    """A distribution as pip leaves it: its modules and a ``.dist-info`` with METADATA and entry points."""
    info = root / f"{distribution.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(entry_points)
    for name, source in modules.items():
        (root / f"{name}.py").write_text(source)


@pytest.fixture
def two_dists_one_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``alpha-sketches`` and ``beta-sketches`` both register ``topk``; alpha also ``alpha_only``."""
    install(
        tmp_path,
        "alpha-sketches",
        "1.2",
        "[netspectra.sketches]\ntopk = alpha_mod:TopK\nalpha_only = alpha_mod:TopK\n"
        "[netspectra.aggregators]\nexact = alpha_mod:TopK\n",
        {"alpha_mod": "class TopK:\n    origin = 'alpha'\n"},
    )
    install(
        tmp_path,
        "beta-sketches",
        "3.4",
        "[netspectra.sketches]\ntopk = beta_mod:TopK\nbroken = beta_missing_module_xyz:Nothing\n",
        {"beta_mod": "class TopK:\n    origin = 'beta'\n"},
    )
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_duplicate_name_is_refused_naming_both_distributions(two_dists_one_name: None) -> None:
    registry = PluginRegistry("sketch algorithm", "netspectra.sketches", {})
    with pytest.raises(DuplicatePluginError) as caught:
        registry.load("topk")
    message = str(caught.value)
    assert "'topk'" in message
    assert "alpha-sketches 1.2 (alpha_mod:TopK)" in message and "beta-sketches 3.4 (beta_mod:TopK)" in message


def test_a_duplicate_does_not_take_the_other_names_down(two_dists_one_name: None) -> None:
    registry = PluginRegistry("sketch algorithm", "netspectra.sketches", {})
    assert registry.load("alpha_only").origin == "alpha"
    scan = registry.scan()
    assert "topk" not in scan and set(scan.duplicates) == {"topk"}
    with pytest.raises(
        PluginError, match=r"'broken' \(beta_missing_module_xyz:Nothing, distribution beta-sketches 3.4\)"
    ):
        scan.load("broken")
    assert scan.load("alpha_only").origin == "alpha"  # a failed import leaves the rest usable


def test_a_plugin_taking_a_builtin_name_is_refused_naming_netspectra(two_dists_one_name: None) -> None:
    with pytest.raises(PluginError) as caught:
        load_group_class("exact")
    message = str(caught.value)
    assert "alpha-sketches 1.2 (alpha_mod:TopK)" in message
    assert "netspectra" in message and "netspectra.engine.exact.group:ExactGroup" in message
    assert load_group_class("sketch").__name__ == "SketchGroup"


def test_the_sketch_registry_refuses_the_duplicate_and_lists_both(two_dists_one_name: None) -> None:
    with pytest.raises(DuplicatePluginError, match=r"alpha-sketches 1\.2.*beta-sketches 3\.4"):
        load_algorithm("topk")
    assert load_algorithm("count_min") is CountMin
    infos = [info for info in describe_all() if info.name == "topk"]
    assert [info.distribution for info in infos] == ["alpha-sketches", "beta-sketches"]
    assert all("more than one distribution" in (info.error or "") for info in infos)
    assert discover().duplicates["topk"][0].distribution == "alpha-sketches"


def test_an_unknown_name_suggests_and_lists() -> None:
    registry = PluginRegistry("writer type", None, {"file": "json:dumps", "text": "json:loads"})
    with pytest.raises(
        UnknownPluginError,
        match=r"unknown writer type 'fiel' \(did you mean 'file'\?\); available: file, text",
    ):
        registry.find("fiel")
    with pytest.raises(
        ConfigError, match=r"aggregator.types: unknown aggregator type 'exakt' \(did you mean 'exact'\?\)"
    ):
        load_group_class("exakt")


def test_builtins_resolve_and_netspectras_own_entry_points_are_not_duplicates() -> None:
    scan = discover()
    assert scan.duplicates == {}
    assert scan["count_min"].distribution == "netspectra"
    assert PluginRegistry("x", None, {"dumps": "json:dumps"}).load("dumps").__name__ == "dumps"
