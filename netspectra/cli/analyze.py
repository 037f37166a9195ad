"""``netspectra analyze FILE``: a capture file through the live engine, then a summary.

Exit codes: 0 done (a file cut short by a corrupt record still counts what was read, and says
so); 2 the file cannot be opened or is not a pcap/pcapng capture; 3 the config is invalid;
130 interrupted (Ctrl-C): the summary and final snapshot cover what was read.
"""

from __future__ import annotations

import atexit
import gc
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from rich.console import Console

    from netspectra.analysis import AnalysisResult
    from netspectra.config import Settings

EXIT_BAD_INPUT = 2
EXIT_BAD_CONFIG = 3
EXIT_INTERRUPTED = 130


def _settings(config: Path | None) -> Settings:
    from netspectra.analysis import default_settings
    from netspectra.config import load_settings

    return load_settings(config) if config is not None else default_settings()


def _configure_logging(settings: Settings, console: Console) -> None:
    from rich.logging import RichHandler

    # Engine and writer lifecycle lines are noise next to the summary; warnings and errors stay.
    level = max(logging.WARNING, logging.getLevelNamesMapping()[settings.logging.level])
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
        force=True,
    )


def _run(
    path: Path, settings: Settings, console: Console, show_progress: bool, flows: bool = False
) -> AnalysisResult:
    from netspectra.app import analyze_capture

    if not show_progress:
        return _run_keeping_result(analyze_capture(path, settings, flows=flows))
    from rich.progress import (  # only with a terminal to draw it on: ~5 ms of every piped run
        BarColumn,
        DownloadColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[packets]:,} packets ({task.fields[rate]:,.0f}/s)"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(path.name, total=None, packets=0, rate=0.0)

        def update(bytes_read: int, total: int | None, packets: int) -> None:
            elapsed = progress.tasks[0].elapsed or 0.0
            rate = packets / elapsed if elapsed > 0 else 0.0
            progress.update(task, completed=bytes_read, total=total, packets=packets, rate=rate)

        return _run_keeping_result(analyze_capture(path, settings, progress=update))


def _run_keeping_result(work: Coroutine[Any, Any, AnalysisResult]) -> AnalysisResult:
    """``asyncio.run(work)``, with the result kept out of the main task.

    On leaving, ``asyncio.run`` asks ``signal.getsignal(SIGINT)``, which on Python 3.11 builds the
    repr of its handler, a partial holding the main task, and so the repr of the task's result:
    every array of every flow table (40-80 ms of a 1 000-frame analyze here, more with the flows).
    """
    import asyncio  # here, not at the top: every command's --help imports this module

    kept: list[AnalysisResult] = []

    async def main() -> None:
        kept.append(await work)

    asyncio.run(main())
    return kept[0]


def _print_summary(result: AnalysisResult, console: Console, top: int) -> None:
    from rich.table import Table

    from netspectra.analysis import top_flows

    console.print(
        f"[bold]{result.path}[/]: {result.packets:,} packets, {result.bytes:,} bytes "
        f"({result.frames:,} frames) in {result.elapsed_s:.2f}s = {result.packets_per_s:,.0f} packets/s"
    )
    if result.skips:
        skipped = ", ".join(f"{reason} {count:,}" for reason, count in sorted(result.skips.items()))
        console.print(f"Skipped frames: {skipped}")
    if result.error:
        console.print(f"[yellow]Stopped early:[/] {result.error} (counted everything before it)")
    for table in result.flow_tables():
        view = Table(
            title=f"{table.task}: top {min(top, len(table))} of {len(table):,} flows", title_justify="left"
        )
        for key_field in table.key_fields:
            view.add_column(key_field.value, overflow="fold")
        view.add_column("Packets", justify="right")
        view.add_column("Bytes", justify="right")
        for flow in top_flows(table, top):
            view.add_row(
                *(str(v) for v in flow["fields"].values()), f"{flow['packets']:,}", f"{flow['bytes']:,}"
            )
        console.print(view)
    for snapshot in result.snapshots.values():
        for sketch in snapshot.sketches:
            if not sketch.hitters:
                console.print(f"{sketch.task} ({sketch.algorithm}): no heavy hitters above the thresholds")
                continue
            view = Table(title=f"{sketch.task} ({sketch.algorithm}): heavy hitters", title_justify="left")
            view.add_column("Flow")
            view.add_column("Kind")
            view.add_column("Value", justify="right")
            for hitter in sketch.hitters[:top]:
                view.add_row(hitter.flow, hitter.kind.name.lower(), f"{hitter.value:,}")
            console.print(view)


def analyze(
    file: Path = typer.Argument(..., help="A pcap or pcapng capture file."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Config file (default: the project's default config)."
    ),
    json_output: bool = typer.Option(False, "--json", help="Print one JSON document instead of tables."),
    top: int = typer.Option(10, "--top", min=0, help="Flows shown per task."),
    flows: bool = typer.Option(
        False,
        "--flows",
        help="FILE holds NetFlow v5/v9, IPFIX or sFlow export datagrams: count their records.",
    ),
    html_report: Path | None = typer.Option(
        None,
        "--html",
        help="Also write the console's panels over this capture as one self-contained offline HTML file.",
    ),
) -> None:
    """Count every flow of FILE with the configured tasks, write the final snapshot, print a summary."""
    from rich.console import Console

    from netspectra.errors import CaptureError, ConfigError, PluginError

    _exit_without_final_collection()
    err_console = Console(stderr=True)
    out_console = err_console if json_output else Console()
    if not json_output and not out_console.is_terminal:
        out_console = Console(width=max(out_console.width, 160))  # piped: do not fold addresses
    try:
        settings = _settings(config)
    except ConfigError as error:
        err_console.print(str(error), markup=False, highlight=False)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    from netspectra.config.problems import format_problems
    from netspectra.config.validate import validate

    # what the engine needs (plugins, writers' directories), before the file is read
    problems = validate(settings, ["engine"], launching=False)
    if problems:
        source = str(config) if config is not None else "defaults"
        err_console.print(format_problems(source, problems), markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_BAD_CONFIG)
    _configure_logging(settings, err_console)
    writes = html_report is not None or any(  # --html adds an embedded store below
        writer.enabled
        for group in (settings.aggregator.exact, settings.aggregator.sketch)
        for writer in group.writers
    )
    _compile_kernels_if_needed(err_console, flows=flows, writes=writes)
    report_dir = None
    if html_report is not None:
        if not html_report.parent.is_dir() or html_report.is_dir():
            # said before the file is read: the report's store is the only one an embedded writer fills
            err_console.print(
                f"Cannot write the report {html_report}: not a file in an existing directory",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )
            raise typer.Exit(EXIT_BAD_INPUT)
        settings, report_dir = _with_report_store(settings, err_console)
    try:
        result = _run(
            file, settings, out_console, show_progress=out_console.is_terminal and not flows, flows=flows
        )
    except CaptureError as error:
        err_console.print(f"Cannot analyze {file}: {error}", markup=False, highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except (ConfigError, PluginError) as error:
        err_console.print(str(error), markup=False, highlight=False)
        raise typer.Exit(EXIT_BAD_CONFIG) from None
    if result.unreadable:
        err_console.print(f"Cannot analyze {file}: {result.error}", markup=False, highlight=False)
        raise typer.Exit(EXIT_BAD_INPUT)
    if html_report is not None and report_dir is not None:
        _write_report(settings, report_dir, html_report, file, err_console)
    if json_output:
        import json

        sys.stdout.write(json.dumps(result.to_json(top)) + "\n")
    else:
        _print_summary(result, out_console, top)
    if result.interrupted:
        err_console.print("Interrupted: the summary and the final snapshot cover what was read until then")
        raise typer.Exit(EXIT_INTERRUPTED)


def _with_report_store(settings: Settings, console: Console) -> tuple[Settings, Path]:
    """Settings that also write into a temporary embedded store, which the report is made from."""
    import atexit
    import shutil
    import tempfile

    from netspectra.api.console_report import report_settings

    report_dir = Path(tempfile.mkdtemp(prefix="netspectra-report-"))
    atexit.register(shutil.rmtree, report_dir, ignore_errors=True)
    settings, redirected = report_settings(settings, report_dir / "store")
    for path in redirected:
        console.print(
            f"--html: the embedded store {path} is not written this run (chdb serves one data "
            "directory per process; the report's own store takes the snapshot)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    return settings, report_dir / "store"


def _write_report(settings: Settings, store_dir: Path, output: Path, capture: Path, console: Console) -> None:
    import asyncio

    from netspectra.api.console_report import write_report

    try:
        size = asyncio.run(write_report(settings, store_dir, output, capture.name))
    except OSError as error:
        console.print(
            f"Cannot write the report {output}: {error}", markup=False, highlight=False, soft_wrap=True
        )
        raise typer.Exit(EXIT_BAD_INPUT) from None
    console.print(f"Report: {output} ({size:,} bytes)", markup=False, highlight=False, soft_wrap=True)


def _compile_kernels_if_needed(console: Console, *, flows: bool, writes: bool) -> None:
    """Compile the kernels before the file is read when numba's cache lacks one, and say so.

    Only the first run after an install (or after the cache was cleared) compiles, ~10 s that
    would otherwise sit inside the timed part and make the printed rate meaningless. Kernels the
    ahead-of-time module holds (see :mod:`netspectra.jit`) are not asked about: asking imports numba.
    """
    from netspectra.jit import AOT_MODULES, aot_state
    from netspectra.warmup import (
        ANALYZE_FLOWS_KERNEL_MODULES,
        ANALYZE_KERNEL_MODULES,
        ANALYZE_WRITER_KERNEL_MODULE,
        missing_kernels,
        warm_up,
    )

    modules = [*ANALYZE_KERNEL_MODULES, *(ANALYZE_FLOWS_KERNEL_MODULES if flows else ())]
    if not writes:  # only the writers run the text kernels: a stale one must not start a warm-up
        modules.remove(ANALYZE_WRITER_KERNEL_MODULE)
    if aot_state() is not None:
        modules = [module for module in modules if module not in AOT_MODULES]
    if not modules or not missing_kernels(modules):
        return
    gc.enable()  # numba's compiler leaves cycles behind, unlike a start-up that only loads
    console.print("compiling kernels (first run after install): ", end="", markup=False, highlight=False)
    console.print(f"{warm_up():.1f} s", markup=False, highlight=False)


def _exit_without_final_collection() -> None:
    """Let the interpreter skip its last garbage collection when the process exits.

    After numba has loaded its kernels the final collection walks the hundreds of thousands of
    objects numba and LLVM built, which took 0.25-0.4 s of every ``analyze`` run here (a third
    of the fixed start-up). Freezing them at exit skips that walk; nothing is lost, because every
    resource (file, writer, store) is closed explicitly before the command returns and Python
    never promised finalizers at exit. Registered at most once, and only ever runs at exit.
    """
    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


def register(app: typer.Typer) -> None:
    """Add ``analyze`` to the root app."""
    app.command("analyze")(analyze)
