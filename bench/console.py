"""Console page load in a real browser over 1 M stored flow rows, beside the raw API calls it makes.

    python bench/console.py [--rows 1000000] [--loads 30] [--smoke]

Loads ``rows`` flow rows into the embedded store (10 cumulative snapshots of rows/10 five-tuple
flows, as bench/query.py does) plus 10 snapshots of hitters, starts the api role on a free port
and opens the console in Debian's chromium (headless, through selenium) ``loads`` times. A page
load is measured inside the browser: from the first byte of the page
(``PerformanceNavigationTiming.responseStart``) to the ``netspectra-panels-rendered`` mark that
console.js sets at the frame painting every panel (status, tasks, traffic, top talkers with
totals, hitter lists), so selenium's own round trips are not in it.

Baseline in the same run: the POST /api/v1/* calls the page made (read from the browser's
resource timings), each timed alone from Python, and their sum one after the other. The ratio is
the page's p50 over that sum's p50: above 1x is the browser's own cost (scripts, DOM, charts),
below 1x is what the page's parallel calls save. ``--smoke``: 20 000 rows, 3 loads; exit 77 when
chromium or chromium-driver is missing (scripts/dev test installs both).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from netspectra.api.role import ApiRole  # noqa: E402
from netspectra.config.models import Settings  # noqa: E402
from netspectra.storage.context import StorageContext  # noqa: E402
from netspectra.storage.registry import build_writer  # noqa: E402

SKIPPED = 77
SNAPSHOTS = 10
MARK = "netspectra-panels-rendered"
LOAD_TIME = f"""
const mark = performance.getEntriesByName({MARK!r})[0];
if (!mark) return null;
const page = performance.getEntriesByType("navigation")[0];
const calls = performance.getEntriesByType("resource").filter((e) => e.name.includes("/api/v1/"));
return [mark.startTime - page.responseStart, calls.length];
"""


def _bench_query() -> Any:
    """bench/query.py's snapshot builders (the same 1 M rows its figures are over)."""
    spec = importlib.util.spec_from_file_location("bench_query", ROOT / "bench" / "query.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def open_browser(chromium: str, driver: str) -> Any:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.add_argument("--window-size=1400,1800")
    return webdriver.Chrome(service=Service(driver), options=options)


def page_loads(session: Any, url: str, loads: int) -> tuple[list[float], int]:
    from selenium.webdriver.support.ui import WebDriverWait

    samples, calls = [], 0
    for number in range(loads + 1):  # the first load warms the browser's and the store's caches
        session.get(url)
        elapsed, calls = WebDriverWait(session, 120, poll_frequency=0.02).until(
            lambda s: s.execute_script(LOAD_TIME)
        )
        if number:
            samples.append(float(elapsed))
    return samples, int(calls)


def page_requests(session: Any) -> list[tuple[str, dict[str, Any]]]:
    """The (query, body) pairs the last page load sent, from a wrapper of fetch installed before it."""
    return [(name, json.loads(body)) for name, body in session.execute_script("return window.__calls || []")]


def raw_call(url: str, name: str, body: dict[str, Any]) -> float:
    request = urllib.request.Request(
        f"{url}/api/v1/{name}", json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as answer:
        answer.read()
    return (time.perf_counter() - start) * 1000


RECORD_CALLS = """
window.__calls = [];
const original = window.fetch;
window.fetch = (url, init) => {
  window.__calls.push([String(url).split("/api/v1/")[1], init && init.body ? init.body : "{}"]);
  return original(url, init);
};
"""


def measure(url: str, loads: int, chromium: str, driver: str) -> None:
    session = open_browser(chromium, driver)
    try:
        samples, calls = page_loads(session, url + "/", loads)
        # the calls a load makes: recorded on one more load (the wrapper runs before the page's script)
        session.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CALLS})
        session.get(url + "/")
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(session, 120).until(lambda s: s.execute_script(LOAD_TIME))
        requests = page_requests(session)
    finally:
        session.quit()
    assert len(requests) == calls, (requests, calls)
    rows: list[tuple[str, float, float]] = []
    sums = [0.0] * loads
    for name, body in requests:
        timings = [raw_call(url, name, body) for _ in range(loads + 1)][1:]
        for i, value in enumerate(timings):
            sums[i] += value
        label = (
            name
            + (f" {body['task']}" if "task" in body else "")
            + (f" type {body['type']}" if "type" in body else "")
        )
        rows.append((label, *percentiles(timings)))
    raw50, raw99 = percentiles(sums)
    page50, page99 = percentiles(samples)
    for label, p50, p99 in rows:
        print(f"  POST /api/v1/{label:30} p50 {p50:8.1f} ms  p99 {p99:8.1f} ms")
    print(f"  {'the page calls one after another':43} p50 {raw50:8.1f} ms  p99 {raw99:8.1f} ms  (baseline)")
    print(
        f"  {'console page load (first byte → panels)':43} p50 {page50:8.1f} ms  p99 {page99:8.1f} ms  "
        f"({page50 / raw50:.2f}x the calls; {calls} calls, {loads} loads)"
    )


async def run(rows: int, loads: int, hitters: int, workdir: Path, chromium: str, driver: str) -> None:
    query = _bench_query()
    writer = {"type": "embedded", "embedded": {"path": str(workdir / "embedded")}}
    settings = Settings.model_validate(
        {
            "aggregator": {"exact": {"writers": [writer]}, "sketch": {"writers": [writer]}},
            "api": {"grpc_listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0"},
        }
    )
    context = StorageContext()
    try:
        exact = build_writer(settings.aggregator.exact.writers[0], "exact", context)
        sketch = build_writer(settings.aggregator.sketch.writers[0], "sketch", context)
        import numpy as np

        rng = np.random.default_rng(1)
        start = time.perf_counter()
        for step in range(SNAPSHOTS):
            await exact.write(query.flow_snapshot(rows // SNAPSHOTS, step, rng))
            await sketch.write(query.hitter_snapshot(hitters, step))
        await exact.flush(600)  # type: ignore[attr-defined]
        await sketch.flush(600)  # type: ignore[attr-defined]
        loaded = time.perf_counter() - start
        print(f"embedded: loaded {rows:,} flow rows + {SNAPSHOTS * hitters:,} hitter rows in {loaded:.1f} s")
        role = ApiRole(settings, context)
        stop = asyncio.Event()
        serving = asyncio.create_task(role.serve(stop))
        try:
            await role.ready.wait()
            # selenium and urllib block: in a thread, while the api serves from this loop
            await asyncio.to_thread(measure, f"http://127.0.0.1:{role.http_port}", loads, chromium, driver)
        finally:
            stop.set()
            await serving
            await exact.close()
            await sketch.close()
    finally:
        await context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--loads", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="20 000 rows, 3 loads: seconds")
    args = parser.parse_args()
    hitters = 10_000
    if args.smoke:
        args.rows, args.loads, hitters = 20_000, 3, 1_000
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver is None:
        print("bench/console.py: skipped, chromium or chromium-driver is not installed (scripts/dev test)")
        sys.exit(SKIPPED)
    try:
        import selenium  # noqa: F401
    except ImportError:
        print("bench/console.py: skipped, selenium is not installed (pip install -e '.[test]')")
        sys.exit(SKIPPED)
    with tempfile.TemporaryDirectory(prefix="netspectra-bench-") as tmp:
        asyncio.run(run(args.rows, args.loads, hitters, Path(tmp), chromium, driver))


if __name__ == "__main__":
    main()
