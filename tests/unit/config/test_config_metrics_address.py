"""``metrics_listen_addr`` at the top of the file (the issue's spelling) is ``metrics.listen_addr``."""

from __future__ import annotations

from pathlib import Path

import pytest

from netspectra.config import load_settings
from netspectra.errors import ConfigError


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return load_settings(path, environ={})


def test_the_top_level_spelling_sets_the_section(tmp_path: Path) -> None:
    assert _load(tmp_path, 'metrics_listen_addr: "127.0.0.1:9999"\n').metrics.listen_addr == "127.0.0.1:9999"


def test_the_default_is_loopback(tmp_path: Path) -> None:
    assert _load(tmp_path, "{}\n").metrics.listen_addr == "127.0.0.1:9464"


def test_both_spellings_must_agree(tmp_path: Path) -> None:
    text = 'metrics_listen_addr: "127.0.0.1:9999"\nmetrics:\n  listen_addr: "127.0.0.1:9998"\n'
    with pytest.raises(ConfigError, match="disagree"):
        _load(tmp_path, text)
    same = 'metrics_listen_addr: "127.0.0.1:9999"\nmetrics:\n  listen_addr: "127.0.0.1:9999"\n'
    assert _load(tmp_path, same).metrics.listen_addr == "127.0.0.1:9999"


def test_a_bad_top_level_address_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="metrics"):
        _load(tmp_path, 'metrics_listen_addr: "no-port"\n')


def test_a_disagreement_does_not_hide_the_file_s_other_problems(tmp_path: Path) -> None:
    from netspectra.config.validate import check

    path = tmp_path / "config.yaml"
    path.write_text(
        'metrics_listen_addr: "127.0.0.1:9999"\nmetrics:\n  listen_addr: "127.0.0.1:9998"\n'
        "api:\n  max_query_targets: -5\n"
    )
    problems = check(path, environ={}).problems
    assert {problem.path for problem in problems} == {"metrics.listen_addr", "api.max_query_targets"}
