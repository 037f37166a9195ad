"""Config loading: the Go project's file, our default, bad files, secrets from the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netspectra.config import load_settings
from netspectra.config.durations import parse_duration
from netspectra.errors import ConfigError
from netspectra.model.fields import KeyField

ROOT = Path(__file__).resolve().parents[3]
GO_CONFIG = ROOT / "tests" / "data" / "go2netspectra-config.yaml"  # a verbatim copy of the seed
DEFAULT_CONFIG = ROOT / "config.yaml"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("120s", 120), ("720h", 2_592_000), ("1h30m", 5400), ("250ms", 0.25), ("1.5s", 1.5), (60, 60)],
)
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1x", "s", "10 s", "-5s", "1h 30m", True])
def test_bad_durations_say_why(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_the_go_config_loads_unchanged_with_its_meaning():
    settings = load_settings(GO_CONFIG, environ={})
    aggregator = settings.aggregator
    assert aggregator.types == ("sketch", "exact")
    assert aggregator.period == 720 * 3600
    assert [t.name for t in aggregator.exact.tasks] == [
        "per_src_ip", "per_dst_ip", "per_src_port", "per_dst_port", "per_protocol", "per_five_tuple",
    ]  # fmt: skip
    assert aggregator.exact.tasks[5].key_fields == tuple(KeyField)
    assert aggregator.exact.tasks[0].num_shards == 64
    gob = aggregator.exact.writers[0]
    assert (gob.type, gob.kind, gob.enabled, gob.snapshot_interval) == ("gob", "file", False, 3600)
    assert gob.path_options.root_path == "test/res"
    ss, cm_src, cm_all = aggregator.sketch.tasks
    assert (ss.algorithm, cm_src.algorithm, cm_all.algorithm) == ("super_spread", "count_min", "count_min")
    assert ss.params == {
        "width": 32768, "depth": 2, "count_thereshold": 36, "m": 128, "size": 5, "b": 1.08, "base": 0.5,
    }  # fmt: skip
    assert cm_src.element_fields == (KeyField.DST_IP, KeyField.SRC_PORT, KeyField.DST_PORT, KeyField.PROTOCOL)
    assert cm_all.element_fields == ()
    assert settings.bus_url == "nats://localhost:4222"
    assert settings.bus_subject == "gons.packets.raw"
    store = settings.query_store()
    assert (
        store is not None and store.type == "clickhouse" and store.clickhouse.host == "azure.clickhouse.cloud"
    )


def test_the_default_config_runs_without_servers_and_carries_the_go_task_set():
    settings = load_settings(DEFAULT_CONFIG, environ={})
    assert settings.bus_url == "embedded"
    assert [t.name for t in settings.aggregator.exact.tasks] == [
        "per_src_ip", "per_dst_ip", "per_src_port", "per_dst_port", "per_protocol", "per_five_tuple",
    ]  # fmt: skip
    assert [t.name for t in settings.aggregator.sketch.tasks] == ["ss_dst_src", "cm_src_left", "cm_all_none"]
    assert settings.query_store().type == "embedded"


def test_secrets_come_from_the_environment_or_a_file(tmp_path):
    secret_file = tmp_path / "ch-password"
    secret_file.write_text("s3cret-from-file\n")
    settings = load_settings(
        GO_CONFIG,
        environ={
            "NETSPECTRA_NATS_PASSWORD": "natspw",
            "NETSPECTRA_NATS_USER": "probe",
            "NETSPECTRA_CLICKHOUSE_PASSWORD_FILE": str(secret_file),
        },
    )
    assert settings.probe.auth.user == "probe"
    assert settings.probe.auth.password.get_secret_value() == "natspw"
    for group in (settings.aggregator.exact, settings.aggregator.sketch):
        for writer in group.writers:
            if writer.type == "clickhouse":
                assert writer.clickhouse_options.password.get_secret_value() == "s3cret-from-file"
    assert "natspw" not in repr(settings) and "s3cret" not in repr(settings)


BAD_CONFIG = """\
probe:
  snaplen: 5
  sbject: gons.packets.raw
aggregator:
  period: "1x"
  exact:
    writers:
      - type: parquet
    tasks:
      - name: a
        key_fields: [SrcIp]
  sketch:
    tasks:
      - name: b
        flow_fields: [DstIP]
"""


def test_config_check_names_every_bad_field_and_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(BAD_CONFIG)
    result = subprocess.run(
        [sys.executable, "-m", "netspectra", "config", "check", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2, result.stderr
    for expected in [
        "probe.snaplen",
        "probe.sbject: unknown setting",
        "aggregator.period: '1x' is not a duration",
        "aggregator.exact.writers[0].type",
        "aggregator.exact.tasks[0].key_fields[0]",
        "aggregator.sketch.tasks[0]: set 'algorithm'",
    ]:
        assert expected in result.stderr, (expected, result.stderr)


def test_config_check_accepts_a_good_file():
    result = subprocess.run(
        [sys.executable, "-m", "netspectra", "config", "check", str(DEFAULT_CONFIG)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "6 exact, 3 sketch tasks" in result.stdout


def test_unreadable_and_non_yaml_files_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("probe: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken)


def test_config_check_resolves_sketch_plugins_and_hides_passwords(tmp_path):
    path = tmp_path / "sketchy.yaml"
    path.write_text(
        "probe:\n  nats_url: nats://alice:hunter2@127.0.0.1:4222\n"
        "aggregator:\n  sketch:\n    tasks:\n"
        "      - {name: typo, algorithm: count_mni, flow_fields: [SrcIP]}\n"
        "      - {name: badparam, algorithm: count_min, flow_fields: [SrcIP], widht: 5}\n"
        "      - {name: fine, algorithm: super_spread, flow_fields: [DstIP], element_fields: [SrcIP]}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "netspectra", "config", "check", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 2, result.stdout
    assert "tasks[0].algorithm: unknown sketch algorithm 'count_mni'" in result.stderr
    assert "did you mean 'count_min'" in result.stderr
    assert "tasks[1].widht: unknown parameter of count_min" in result.stderr
    assert "tasks[2]" not in result.stderr
    assert "hunter2" not in result.stdout + result.stderr

    path.write_text("probe:\n  nats_url: nats://alice:hunter2@127.0.0.1:4222\n")
    result = subprocess.run(
        [sys.executable, "-m", "netspectra", "config", "check", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0 and "nats://127.0.0.1:4222" in result.stdout
    assert "hunter2" not in result.stdout


def test_nats_secrets_reach_an_engine_that_has_its_own_credentials(tmp_path):
    path = tmp_path / "split.yaml"
    path.write_text("engine:\n  auth:\n    user: engine\n")
    settings = load_settings(path, environ={"NETSPECTRA_NATS_PASSWORD": "pw"})
    assert settings.engine_auth.user == "engine"
    assert settings.engine_auth.password.get_secret_value() == "pw"
    assert settings.probe.auth.password.get_secret_value() == "pw"
