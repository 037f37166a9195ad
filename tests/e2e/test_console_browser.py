"""The console in a real browser (Debian's chromium + chromium-driver, driven by selenium).

The page is loaded from the api role over a store filled with generated packets; what the DOM
shows is compared with the packets' brute-force truth: the top-talker table and totals, the
heavy-hitter lists, a trace; the filters and the time range change the panels to that slice's
truth; an empty store says why it is empty; the browser log holds no error. Every wait is on a
condition of the page (a panel's load counter), never a sleep. Screenshots go to the test's
tmp_path (artifacts) and, with NETSPECTRA_SCREENSHOTS=DIR, to DIR.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from netspectra.model.snapshot import HitterKind
from tests.integration.api_truth import T0, hitters_truth
from tests.integration.console_serving import PACKETS, Console, console, top_truth

pytestmark = pytest.mark.slow
FIRST = [p for p in PACKETS if p.ts_ns < T0 * 10**9]
WAIT_S = 60


def browser_paths() -> tuple[str, str]:
    """chromium and chromedriver as apt installs them (scripts/dev test installs both)."""
    chromium = shutil.which("chromium")
    driver = shutil.which("chromedriver")
    if chromium is None or driver is None:
        pytest.fail("chromium and chromium-driver are not installed: run scripts/dev test (it installs them)")
    return chromium, driver


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1800")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    session = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield session
    finally:
        session.quit()


def errors_in_log(session: Any) -> list[dict[str, Any]]:
    return [entry for entry in session.get_log("browser") if entry["level"] in ("SEVERE", "ERROR")]


def wait_until(session: Any, condition: Callable[[Any], Any]) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(session, WAIT_S, poll_frequency=0.05).until(condition)


def loads(session: Any, element: str = "body", previous: int = 0) -> int:
    """Wait until ``element``'s load counter passes ``previous``; returns the new count."""

    def counted(s: Any) -> int | None:
        value = s.execute_script(f"return document.querySelector({element!r}).dataset.loaded || '0'")
        return int(value) if int(value) > previous else None

    return int(wait_until(session, counted))


def top_rows(session: Any, fields: int) -> list[tuple[Any, ...]]:
    """The top-talker table as (key values..., packets, bytes), exact values from data-exact."""
    rows = session.execute_script(
        "return [...document.querySelectorAll('#top-table tbody tr')]"
        ".map(r => [...r.cells].map(c => [c.dataset.exact, c.textContent]))"
    )
    out = []
    for cells in rows:
        keys = [cells[i][0] for i in range(5)]
        kept = [k for k in keys if k != ""][:fields]
        out.append((*[int(k) if k.isdigit() else k for k in kept], int(cells[5][0]), int(cells[6][0])))
    return out


def save(session: Any, tmp_path: Path, name: str) -> None:
    session.save_screenshot(str(tmp_path / f"{name}.png"))
    folder = os.environ.get("NETSPECTRA_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        session.save_screenshot(str(Path(folder) / f"{name}.png"))


def in_thread(function: Callable[[], Any]) -> Any:
    """Selenium blocks; the api serves from this test's event loop, so the browser runs in a thread."""
    return asyncio.to_thread(function)


async def test_the_console_shows_the_truth_and_follows_filters_and_time_range(
    browser: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with console("embedded", tmp_path, request) as served:
        await in_thread(lambda: check_the_page(browser, served, tmp_path))


def check_the_page(session: Any, served: Console, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    session.get(served.url + "/")
    loads(session)
    loads(session, "#top-panel")
    # the default window is the whole period; the first exact task is per_src_ip
    assert Select(session.find_element(By.ID, "top-task")).first_selected_option.text == "per_src_ip"
    assert top_rows(session, 1) == top_truth(PACKETS, "per_src_ip")
    totals = session.find_element(By.ID, "top-totals")
    assert totals.get_attribute("data-packets") == str(len(PACKETS))
    assert totals.get_attribute("data-bytes") == str(sum(p.length for p in PACKETS))
    assert totals.text.startswith("Total: 3.00 k packets, ")  # 3000 for people
    first_cell = session.find_element(By.CSS_SELECTOR, "#top-table tbody tr td:nth-child(6)")
    assert first_cell.text == str(top_truth(PACKETS, "per_src_ip")[0][1])  # under 1000: as is
    assert session.find_element(By.ID, "alerts-text").text == "Alerting is not configured."
    # heavy hitters and super-spreaders, one list per sketch task and kind
    truth = hitters_truth(PACKETS)
    for task, kind in (
        ("cm_src", HitterKind.COUNT),
        ("cm_src", HitterKind.SIZE),
        ("ss_dst", HitterKind.SPREAD),
    ):
        selector = f'.hitter-list[data-task={task}][data-type="{int(kind)}"] tr'
        shown = session.execute_script(
            f"return [...document.querySelectorAll('{selector}')]"
            ".map(r => [r.cells[0].dataset.exact, Number(r.cells[1].dataset.exact)])"
        )
        expected = sorted(truth[kind].items(), key=lambda item: (-item[1], item[0]))[:10]
        assert [tuple(row) for row in shown] == [tuple(row) for row in expected], (task, kind)
    # traffic over time: two snapshots make one rate point on each chart
    assert session.find_element(By.ID, "chart-packets").get_attribute("data-points") == "1"
    assert session.find_elements(By.CSS_SELECTOR, "#chart-packets canvas")
    save(session, tmp_path, "console-overview")

    # a filter: the IPv6 source alone, shown in full
    before = loads(session, "#top-panel")
    session.find_element(By.ID, "f-src-ip").send_keys("2001:db8::1")
    session.find_element(By.ID, "top-apply").click()
    loads(session, "#top-panel", before)
    six = [p for p in PACKETS if p.src == "2001:db8::1"]
    assert top_rows(session, 1) == [("2001:db8::1", len(six), sum(p.length for p in six))]
    address = session.find_element(By.CSS_SELECTOR, "#top-table tbody tr td").text
    assert address == "2001:0db8:0000:0000:0000:0000:0000:0001"
    assert session.find_element(By.ID, "top-totals").get_attribute("data-packets") == str(len(six))
    # a filter nothing matches says so
    before = loads(session, "#top-panel")
    session.find_element(By.ID, "f-src-ip").clear()
    session.find_element(By.ID, "f-dst-port").send_keys("9")
    session.find_element(By.ID, "top-apply").click()
    loads(session, "#top-panel", before)
    assert session.find_element(By.ID, "top-empty").text == "no flow matches these filters in this window"
    session.find_element(By.ID, "f-dst-port").clear()

    # the time range: up to the first snapshot, every panel shows that snapshot's truth
    before = loads(session)
    Select(session.find_element(By.ID, "range-preset")).select_by_value("custom")
    session.execute_script(
        "document.getElementById('range-start').value = '';"
        f"document.getElementById('range-end').value = toLocalInput({T0});"
    )
    session.find_element(By.ID, "range-apply").click()
    loads(session, "body", before)
    assert session.find_element(By.ID, "window-text").get_attribute("data-end") == str(T0)
    assert top_rows(session, 1) == top_truth(FIRST, "per_src_ip")
    assert session.find_element(By.ID, "top-totals").get_attribute("data-packets") == str(len(FIRST))
    truth = hitters_truth(FIRST)
    shown = session.execute_script(
        "return [...document.querySelectorAll('.hitter-list[data-task=ss_dst] tr')]"
        ".map(r => [r.cells[0].dataset.exact, Number(r.cells[1].dataset.exact)])"
    )
    expected = sorted(truth[HitterKind.SPREAD].items(), key=lambda item: (-item[1], item[0]))[:10]
    assert [tuple(row) for row in shown] == [tuple(row) for row in expected]
    assert (
        session.find_element(By.ID, "traffic-empty").text == "one snapshot in this window: a rate needs two"
    )
    # a flow trace of the IPv6 source, inside this window
    session.find_element(By.ID, "t-src-ip").send_keys("2001:db8::1")
    session.find_element(By.ID, "trace-apply").click()
    first_six = [p for p in FIRST if p.src == "2001:db8::1"]
    wait_until(session, lambda s: s.find_element(By.ID, "trace-result").get_attribute("data-packets"))
    result = session.find_element(By.ID, "trace-result")
    assert result.get_attribute("data-packets") == str(len(first_six))
    assert result.get_attribute("data-bytes") == str(sum(p.length for p in first_six))
    save(session, tmp_path, "console-window")
    assert session.find_element(By.ID, "error").get_attribute("hidden") is not None
    assert errors_in_log(session) == []


async def test_an_empty_store_says_why_each_panel_is_empty(
    browser: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    async with console("embedded", tmp_path, request, fill=False) as served:
        await in_thread(lambda: check_empty(browser, served, tmp_path))


def check_empty(session: Any, served: Console, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    session.get(served.url + "/")
    loads(session)
    why = "no snapshot yet: the first comes after 60 s"
    assert session.find_element(By.ID, "top-empty").text == why
    assert session.find_element(By.ID, "traffic-empty").text == why
    hitters = session.find_elements(By.CSS_SELECTOR, "#hitters .empty")
    assert hitters and all(element.text == why for element in hitters)
    assert session.find_element(By.ID, "top-totals").get_attribute("data-packets") == "0"
    save(session, tmp_path, "console-empty")
    assert errors_in_log(session) == []


async def test_the_alerts_panel_lists_the_alerters_alerts(
    browser: Any, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Two alerts of a rule fire, one resolves: the panel shows both as the alerter holds them."""
    from netspectra.alerting.alerter import Alerter
    from netspectra.config.models import AlerterConfig
    from tests.unit.alerting.fakes import ManualClock, ScriptedReader

    config = AlerterConfig.model_validate(
        {
            "enabled": True,
            "check_interval": "10s",
            "state_dir": str(tmp_path / "alerts"),
            "rules": [
                {
                    "name": "syn_flood",
                    "task_name": "per_dst_ip",
                    "metric": "flow_packets",
                    "threshold": 1000,
                    "severity": "critical",
                }
            ],
        }
    )
    clock, reader = ManualClock(), ScriptedReader()
    alerter = Alerter(config, reader, [], clock=clock, sleep=clock.sleep)
    reader.values["syn_flood"] = {"DstIP=2001:db8::9": 5000, "DstIP=10.9.9.9": 2000}
    await alerter.check()
    fired_at = clock.now
    clock.now += 10
    reader.values["syn_flood"] = {"DstIP=2001:db8::9": 6000}
    await alerter.check()
    truth = {
        ("DstIP=2001:db8::9", "firing", 6000.0, None),
        ("DstIP=10.9.9.9", "resolved", 2000.0, clock.now),
    }
    async with console("embedded", tmp_path, request, alerter=alerter) as served:
        status, answer = await in_thread(lambda: served.post("alerts", {"state": "all"}))
        assert status == 200
        got = {(a["key"], a["status"], a["value"], a["resolved_at"]) for a in answer["alerts"]}
        assert got == truth
        assert {a["fired_at"] for a in answer["alerts"]} == {fired_at}
        assert (await in_thread(lambda: served.post("alerts", {"state": "burning"})))[0] == 400
        await in_thread(lambda: check_alerts(browser, served, tmp_path, truth))


def check_alerts(session: Any, served: Console, tmp_path: Path, truth: set[tuple[Any, ...]]) -> None:
    from selenium.webdriver.common.by import By

    session.get(served.url + "/")
    loads(session)
    rows = session.execute_script(
        "return [...document.querySelectorAll('#alerts-table tbody tr')]"
        ".map(r => [...r.cells].map(c => c.dataset.exact ?? c.textContent))"
    )
    shown = {(row[4], row[0], float(row[5]), row[8]) for row in rows}
    assert {(key, status, value) for key, status, value, _ in shown} == {(k, s, v) for k, s, v, _ in truth}
    assert [row[0] for row in rows] == ["firing", "resolved"]  # active first, then history
    assert all(row[1] == "critical" and row[2] == "syn_flood" and row[3] == "per_dst_ip" for row in rows)
    assert rows[0][8] == "\u2013" and rows[1][8].endswith(" UTC")
    assert session.find_element(By.ID, "alerts-text").text == "1 firing, 1 pending or resolved"
    save(session, tmp_path, "console-alerts")
    assert errors_in_log(session) == []
