"""Go's head config (alerter:, smtp:, ai:, api.rpc_listen_addr, ${VAR}, .env) and our rule checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from netspectra.app import ai_notice
from netspectra.config.loader import expand_variables, load_settings, read_dotenv
from netspectra.config.validate import check
from netspectra.errors import ConfigError

HEAD = Path(__file__).resolve().parents[2] / "data" / "go2netspectra-config-head.yaml"
VARIABLES = {
    "API_RPC_LISTEN_ADDR": "127.0.0.1:0",
    "API_HTTP_LISTEN_ADDR": "127.0.0.1:0",
    "AI_API_KEY": "k",
    "AI_RPC_LISTEN_ADDR": "127.0.0.1:0",
    "ALERTER_AI_SERVICE_ADDR": "127.0.0.1:0",
    "NATS_URL": "nats://127.0.0.1:4222",
    "SMTP_HOST": "smtp.example.org",
    "SMTP_PORT": "587",
    "SMTP_USER": "alerts",
    "SMTP_PASSWORD": "app-password",
    "SMTP_FROM": "ns@example.org",
    "SMTP_TO": "a@example.org,b@example.org",
    "CLICKHOUSE_HOST": "127.0.0.1",
    "CLICKHOUSE_PORT": "9000",
    "CLICKHOUSE_DB": "default",
    "CLICKHOUSE_USERNAME": "default",
    "CLICKHOUSE_PASSWORD": "",
}


def test_go_head_config_checks_ok_with_its_variables_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    checked = check(HEAD, environ=VARIABLES)
    assert checked.problems == ()
    settings = checked.settings
    assert settings is not None
    assert settings.api.grpc_listen_addr == "127.0.0.1:0"  # Go's rpc_listen_addr
    rules = {r.name: (r.task_name, r.metric, r.operator, r.threshold) for r in settings.alerter.rules}
    assert rules == {
        "Potential_DDoS_Source_Detected": ("ss_src_dst", "super_spreader_spread", ">", 5000),
        "Potential_Nmap_Scan_Detected": ("cm_src_left", "heavy_hitter_count", ">", 10),
        "Total_Traffic_Spike": ("per_five_tuple", "total_bytes", ">", 1_000_000),
    }
    assert settings.alerter.enabled and settings.alerter.check_interval == 600
    assert (
        settings.smtp is not None and settings.smtp.port == 587 and settings.smtp.sender == "ns@example.org"
    )
    assert settings.smtp.password.get_secret_value() == "app-password"
    assert settings.ai is not None and settings.ai.api_key.get_secret_value() == "k"
    notice = ai_notice(settings)
    assert notice is not None and "not offered" in notice


def test_a_dot_env_next_to_the_file_fills_the_variables_and_never_overrides(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    shutil.copy(HEAD, config)
    lines = [f"{name}={value}" for name, value in VARIABLES.items() if name != "SMTP_PORT"]
    (tmp_path / ".env").write_text(
        "# Go's .env\n" + "\n".join(lines) + "\nexport SMTP_PORT='2525'\nSMTP_HOST=from-dotenv # comment\n"
    )
    settings = load_settings(config, {"SMTP_HOST": "from-environment"})
    assert settings.smtp is not None
    assert (settings.smtp.host, settings.smtp.port) == ("from-environment", 2525)
    assert read_dotenv(tmp_path / "missing") == {}


def test_an_unset_variable_is_reported_at_its_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    partial = {name: value for name, value in VARIABLES.items() if name != "SMTP_PORT"}
    checked = check(HEAD, environ=partial)
    assert [str(p) for p in checked.problems] == ["smtp.port: Input should be a valid integer"]
    assert expand_variables("a ${X} $Y ${Z}", {"X": "1", "Y": "2"}) == "a 1 $Y "


def test_bad_rules_are_named_by_rule_and_field_in_one_pass(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        """
aggregator:
  exact: {tasks: [{name: per_src, key_fields: [SrcIP]}]}
  sketch:
    tasks:
      - {name: ss, skt_type: 1, flow_fields: [SrcIP], element_fields: [DstIP]}
      - {name: cm, skt_type: 0, flow_fields: [SrcIP]}
alerter:
  enabled: true
  rules:
    - {name: typo, task_name: per_srcc, metric: total_bytes, threshold: 1}
    - {name: op, task_name: ss, metric: super_spreader_spread, operator: "=>"}
    - {name: kind, task_name: per_src, metric: heavy_hitter_size}
    - {name: algo, task_name: cm, metric: super_spreader_spread}
    - {name: dur, task_name: per_src, metric: flow_packets, window: 1 minute}
    - {name: chan, task_name: per_src, metric: flow_bytes, channels: [pager]}
    - {name: typo, task_name: per_src, metric: total_flows}
"""
    )
    checked = check(config, environ={})
    assert sorted(str(p) for p in checked.problems) == sorted(
        [
            "alerter.rules: rule name 'typo' is used twice",
            "alerter.rules[1].operator: rule 'op': Input should be '>', '<', '=', '>=', '<=' or '!='",
            "alerter.rules[4].window: rule 'dur': '1 minute' is not a duration; write e.g. '60s', '1h30m', "
            "'250ms' (units ns us ms s m h)",
        ]
    )
    # the duplicate name rejects the list; with unique names the semantic checks speak
    text = config.read_text().replace("- {name: typo, task_name: per_src, metric: total_flows}", "")
    config.write_text(text.replace('operator: "=>"', 'operator: ">="').replace("1 minute", "1m"))
    checked = check(config, environ={})
    assert sorted(str(p) for p in checked.problems) == sorted(
        [
            "alerter.rules[0].task_name: rule 'typo': unknown task 'per_srcc'; did you mean 'per_src'? "
            "counted tasks: cm, per_src, ss",
            "alerter.rules[2].metric: rule 'kind': heavy_hitter_size is a sketch metric; "
            "task 'per_src' is exact (use total_packets, total_bytes, total_flows, flow_packets, flow_bytes)",
            "alerter.rules[3].metric: rule 'algo': task 'cm' (count_min) has no super_spreader_spread; use "
            "heavy_hitter_count, heavy_hitter_size",
            "alerter.rules[5].channels[0]: rule 'chan': no channel named 'pager'; channels: (none)",
        ]
    )
    # the loader (run, every command) names the rule too
    path = tmp_path / "op.yaml"
    path.write_text(
        "alerter:\n  rules:\n    - {name: a, task_name: t, metric: total_bytes}\n"
        "    - {name: op, task_name: t, metric: total_bytes, operator: '=>'}\n"
    )
    with pytest.raises(ConfigError, match=r"alerter.rules\[1\].operator: rule 'op'"):
        load_settings(path, {})
