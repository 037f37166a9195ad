"""``netspectra analyze FILE --html report.html``: the console's panels as one offline file.

One code path with the live console: the answers are made by :class:`ConsoleHandler`'s own
queries over a store the analysis filled (the same JSON the page fetches), and the page is the
console's ``index.html`` + ``console.js`` with the script, styles and uPlot inlined. When the page
finds the answers embedded (``<script type="application/json" id="netspectra-report">``) it reads
them instead of calling the api, so the file opens from ``file://`` with no network at all (its
Content-Security-Policy allows no fetch).

The report holds what the page asks for over the whole capture: status, tasks, every exact
task's series, top talkers by packets and by bytes with its totals, every sketch task's hitter
lists. Filters, other windows and traces need the live console; the report says so.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from netspectra.api.console import ConsoleHandler, static_files
from netspectra.api.service import QueryService
from netspectra.config.models import EmbeddedStoreOptions, Settings, StoreConfig, WriterConfig

#: What console.js asks for (keep in step with loadTopPanel and loadHitters).
TOP_LIMIT = 20
HITTER_LIMIT = 10
_HITTER_TYPES = {"count_min": (0, 1)}
#: The file reaches nothing: inline scripts and styles only, images as data: URLs.
_REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "connect-src 'none'"
)


def request_key(name: str, body: dict[str, Any]) -> str:
    """The report's key of one query: the name and the body without null fields, keys sorted.

    console.js computes the same key (``reportKey``) for the query it would have sent.
    """
    kept = {key: value for key, value in body.items() if value is not None}
    return f"{name} {json.dumps(kept, sort_keys=True, separators=(',', ':'), ensure_ascii=False)}"


def hitter_types(kind: str) -> tuple[int, ...]:
    """The hitter lists the page shows for a sketch task's kind (``sketch:<algorithm>``)."""
    algorithm = kind.partition(":")[2]
    if algorithm in _HITTER_TYPES:
        return _HITTER_TYPES[algorithm]
    return (2,) if "spread" in algorithm else (0,)


async def report_answers(handler: ConsoleHandler) -> dict[str, Any]:
    """Every answer the page asks for over the whole store, keyed by :func:`request_key`."""
    answers: dict[str, Any] = {}

    async def ask(name: str, body: dict[str, Any]) -> Any:
        answer = await handler.routes[name](dict(body))
        answers[request_key(name, body)] = answer
        return answer

    await ask("status", {})
    tasks = (await ask("tasks", {}))["tasks"]
    for task in tasks:
        name, kind = task["name"], task["kind"]
        if kind == "exact":
            await ask("series", {"task": name})
            await ask("totals", {"task": name})
            for by in ("packets", "bytes"):
                await ask("top", {"task": name, "by": by, "limit": TOP_LIMIT})
        elif kind.startswith("sketch"):
            for kind_number in hitter_types(kind):
                await ask("hitters", {"task": name, "type": kind_number, "limit": HITTER_LIMIT})
    return answers


def _inline_json(value: Any) -> str:
    """JSON safe inside a <script> element (no ``</script>``, no ``<!--``)."""
    return json.dumps(value, separators=(",", ":")).replace("<", "\\u003c")


def _inline_script(code: bytes) -> str:
    text = code.decode()
    return re.sub(r"</(script)", r"<\\/\1", text, flags=re.IGNORECASE)


def render_report(answers: dict[str, Any], title: str) -> str:
    """The console page as one file: scripts, styles, the uPlot licence and the answers inlined."""
    files = static_files()
    page = files["index.html"].decode()
    page = page.replace(
        "<title>NetSpectra console</title>", f"<title>NetSpectra: {html.escape(title)}</title>"
    )
    page = page.replace(
        '<meta charset="utf-8">',
        f'<meta charset="utf-8">\n<meta http-equiv="Content-Security-Policy" content="{_REPORT_CSP}">',
    )
    for name in ("uPlot.min.css", "console.css"):
        tag = f'<link rel="stylesheet" href="/console/{name}">'
        page = page.replace(tag, f"<style>\n{files[name].decode()}\n</style>")
    blob = {"title": title, "answers": answers}
    data = f'<script type="application/json" id="netspectra-report">{_inline_json(blob)}</script>\n'
    for name in ("uPlot.iife.min.js", "console.js"):
        tag = f'<script src="/console/{name}"></script>'
        page = page.replace(tag, f"{data}<script>\n{_inline_script(files[name])}\n</script>")
        data = ""
    licence = html.escape(files["uPlot-LICENSE.txt"].decode())
    page = page.replace('href="/console/uPlot-LICENSE.txt"', 'href="#uplot-licence"')
    page = page.replace(
        "</footer>",
        '<details id="uplot-licence"><summary>uPlot licence</summary>'
        f"<pre>{licence}</pre></details></footer>",
    )
    if "/console/" in page:
        raise AssertionError("the report still refers to a console file: index.html changed")
    return page


def report_settings(settings: Settings, store_dir: Path) -> tuple[Settings, list[str]]:
    """``settings`` whose exact and sketch groups also write into the report's store at ``store_dir``.

    chdb serves one data directory per process, so a configured embedded writer writes into the
    report's store this run; the paths it would have written are returned (the CLI says so).
    """
    report_writer = WriterConfig(type="embedded", embedded=EmbeddedStoreOptions(path=str(store_dir)))
    redirected: list[str] = []
    groups = {}
    for group_name in ("exact", "sketch"):
        group = getattr(settings.aggregator, group_name)
        kept = []
        for writer in group.writers:
            if writer.kind == "embedded":
                if writer.enabled:
                    redirected.append(writer.embedded_options.path)
                continue
            kept.append(writer)
        groups[group_name] = group.model_copy(update={"writers": (*kept, report_writer)})
    aggregator = settings.aggregator.model_copy(update=groups)
    return settings.model_copy(update={"aggregator": aggregator}), sorted(set(redirected))


async def write_report(settings: Settings, store_dir: Path, output: Path, title: str) -> int:
    """Query the report's store (filled by the analysis) as the console does; write ``output``.

    Returns the size written. The store is opened and closed here.
    """
    from netspectra.api.role import configured_tasks
    from netspectra.storage.context import StorageContext
    from netspectra.storage.registry import open_query_store

    context = StorageContext()
    try:
        store = open_query_store(
            StoreConfig(type="embedded", embedded=EmbeddedStoreOptions(path=str(store_dir))), context
        )
        tasks = configured_tasks(settings)
        handler = ConsoleHandler(
            store,
            tasks,
            None,
            service=QueryService(store, tasks),
            snapshot_interval_s=None,
        )
        answers = await report_answers(handler)
    finally:
        await context.close()
    page = render_report(answers, title)
    data = page.encode()
    output.write_bytes(data)
    return len(data)
