"""`netspectra analyze FILE --html report.html` opened from file:// in a real browser.

The report is one offline file: Debian's chromium (through selenium) opens it with no server
running, and what its DOM shows is compared with the generator's truth: the top talkers of an
exact task by packets and by bytes, the task's totals, the count-min heavy hitters and the planted
super-spreaders. The file refers to nothing outside itself, and the browser log holds no error.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from netspectra.model.fields import KeyField, address_text
from netspectra.synth.traffic import TrafficSpec, exact_truth, write_trace
from tests.e2e.test_console_browser import browser, errors_in_log, loads, save, top_rows, wait_until

pytestmark = pytest.mark.slow
__all__ = ["browser"]  # the fixture, shared with the console's browser test

ROOT = Path(__file__).resolve().parents[2]
SPEC = TrafficSpec(packets=30_000, flows=1_500, seed=23, spreaders=3, spreader_fanout=300)
COUNT_THRESHOLD = 400


def _config(tmp_path: Path) -> Path:
    """The project's config.yaml with thresholds this trace crosses; its embedded writer is redirected."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    writer = {"type": "embedded", "snapshot_interval": "60s", "embedded": {"path": str(tmp_path / "db")}}
    for group in ("exact", "sketch"):
        config["aggregator"][group]["writers"] = [writer]
    for task in config["aggregator"]["sketch"]["tasks"]:
        if task["algorithm"] == "count_min":
            task["count_thereshold"] = COUNT_THRESHOLD
            task["size_thereshold"] = COUNT_THRESHOLD * 700
        else:
            task["count_thereshold"] = 100
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_offline_report_shows_the_generator_truth(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    pcap = tmp_path / "trace.pcap"
    truth = write_trace(pcap, SPEC)
    report = tmp_path / "report.html"
    command = [sys.executable, "-m", "netspectra", "analyze", str(pcap), "--config", str(_config(tmp_path))]
    result = subprocess.run(
        [*command, "--json", "--html", str(report)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["packets"] == len(truth.packets)
    assert f"the embedded store {tmp_path / 'db'} is not written this run" in result.stderr
    assert not (tmp_path / "db").exists()
    page = report.read_text()
    # one file: nothing loaded from a server, a CDN or a neighbouring file
    assert not re.search(r"""(src|href)=["'](?!#|data:)""", page), "the report refers to another file"
    assert "/console/" not in page

    session = browser
    session.get(report.as_uri())
    loads(session)
    loads(session, "#top-panel")
    assert Select(session.find_element(By.ID, "top-task")).first_selected_option.text == "per_src_ip"
    assert session.find_element(By.ID, "window-text").text == "offline report: trace.pcap"

    total_bytes = int(truth.packets.length.sum())
    by_source = exact_truth(truth, (KeyField.SRC_IP,))
    for by, column in (("packets", 0), ("bytes", 1)):
        if by == "bytes":
            before = loads(session, "#top-panel")
            Select(session.find_element(By.ID, "top-by")).select_by_value("bytes")  # reloads the panel
            loads(session, "#top-panel", before)
        shown = top_rows(session, 1)
        assert len(shown) == 20
        for source, packets, size in shown:
            flow = by_source[(source,)]
            assert (packets, size) == (flow.packets, flow.bytes), source
        values = sorted(((f.packets, f.bytes)[column] for f in by_source.values()), reverse=True)[:20]
        assert [row[1 + column] for row in shown] == values, by
    totals = session.find_element(By.ID, "top-totals")
    assert totals.get_attribute("data-packets") == str(len(truth.packets))
    assert totals.get_attribute("data-bytes") == str(total_bytes)
    assert totals.get_attribute("data-flows") == str(len(by_source))

    def hitters(task: str, kind: int) -> list[tuple[str, float]]:
        selector = f'.hitter-list[data-task={task}][data-type="{kind}"] tr'
        rows = session.execute_script(
            f"return [...document.querySelectorAll('{selector}')]"
            ".map(r => [r.cells[0].dataset.exact, Number(r.cells[1].dataset.exact)])"
        )
        return [(flow, value) for flow, value in rows]

    heavy = sorted(((key[0], f.packets) for key, f in by_source.items()), key=lambda item: -item[1])
    shown_heavy = hitters("cm_src_left", 0)
    assert len(shown_heavy) == min(10, sum(1 for _, packets in heavy if packets >= COUNT_THRESHOLD))
    for source, value in shown_heavy:
        assert abs(value - by_source[(source,)].packets) <= 0.02 * by_source[(source,)].packets, source
    assert {source for source, _ in heavy[:3]} <= {source for source, _ in shown_heavy}

    planted = {address_text(np.frombuffer(raw, np.uint8)) for raw in truth.spreaders}
    by_destination = exact_truth(truth, (KeyField.DST_IP, KeyField.SRC_IP))
    spread = {target: sum(1 for key in by_destination if key[0] == target) for target in planted}
    found = dict(hitters("ss_dst_src", 2))
    assert planted <= set(found)
    assert all(abs(found[t] - s) <= 0.15 * s for t, s in spread.items()), (found, spread)

    # the controls that would need the api say so instead of failing
    assert not session.find_element(By.ID, "range").is_displayed()
    assert session.find_element(By.ID, "f-src-ip").get_attribute("disabled") is not None
    assert "live console" in session.find_element(By.ID, "trace-result").text
    wait_until(session, lambda s: s.find_element(By.ID, "error").get_attribute("hidden") is not None)
    save(session, tmp_path, "console-report")
    assert errors_in_log(session) == []


def test_a_report_that_cannot_be_written_is_refused_before_the_file_is_read(tmp_path: Path) -> None:
    pcap = tmp_path / "trace.pcap"
    write_trace(pcap, TrafficSpec(packets=100, flows=10, seed=2))
    target = tmp_path / "missing" / "report.html"
    result = subprocess.run(
        [sys.executable, "-m", "netspectra", "analyze", str(pcap), "--json", "--html", str(target)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert f"Cannot write the report {target}: not a file in an existing directory" in result.stderr
    assert result.stdout == ""  # refused before the analysis: nothing counted, nothing written
