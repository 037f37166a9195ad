"""Config for clusters: several NATS servers in ``nats_url``, a ClickHouse cluster name."""

from __future__ import annotations

from pathlib import Path

import pytest

from netspectra.config import load_settings
from netspectra.errors import ConfigError

A, B, C = "nats://127.0.0.1:4222", "nats://10.0.0.2:4222", "nats://10.0.0.3:4222"


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_settings(path, environ={})


def test_a_yaml_list_of_servers_is_the_comma_list_go_takes(tmp_path: Path) -> None:
    listed = _load(tmp_path, f"probe:\n  nats_url:\n    - {A}\n    - {B}\n    - {C}\n")
    comma = _load(tmp_path, f'probe:\n  nats_url: "{A}, {B},{C}"\n')
    assert listed.probe.nats_url == comma.probe.nats_url == f"{A},{B},{C}"
    assert listed.bus_url == listed.probe.nats_url  # the engine follows the probe unless overridden
    engine = _load(tmp_path, f"probe:\n  nats_url: {A}\nengine:\n  nats_url: [{B}, {C}]\n")
    assert (engine.probe.nats_url, engine.bus_url) == (A, f"{B},{C}")


def test_one_server_loads_as_before(tmp_path: Path) -> None:
    assert _load(tmp_path, f"probe:\n  nats_url: {A}\n").bus_url == A
    assert _load(tmp_path, "probe:\n  nats_url: embedded\n").bus_url == "embedded"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (f'"{A},,{B}"', "empty server between commas"),
        (f"[{A}, embedded]", "in-process bus"),
        ("[]", "one or more URL strings"),
        (f"[{A}, 5]", "one or more URL strings"),
    ],
)
def test_bad_server_lists_are_named(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        _load(tmp_path, f"probe:\n  nats_url: {value}\n")
    assert "probe.nats_url" in str(caught.value)


def test_a_bad_list_does_not_show_the_password(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, 'probe:\n  nats_url: "nats://alice:hunter2@a:4222,,nats://b:4222"\n')
    assert "hunter2" not in str(caught.value)
