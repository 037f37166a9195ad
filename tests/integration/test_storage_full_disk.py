"""Loud when it cannot keep its promise: a spool on a full disk, the embedded store on a full disk,
a store that refuses credentials.

The spool sits on a real 1 MiB tmpfs filled to the last byte (skipped with the reason where
mounting is not permitted); the engine is a real process, the store a real clickhouse-server.
The embedded store is real chdb with its data directory and its spool on a filled 48 MiB tmpfs.
"""

from __future__ import annotations

import contextlib
import logging
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from netspectra.config.models import ClickHouseOptions, WriterConfig
from netspectra.errors import StorageAuthError
from netspectra.model.snapshot import Snapshot
from netspectra.storage.clickhouse import ClickHouseBackend
from netspectra.storage.context import StorageContext
from netspectra.storage.embedded import EmbeddedWriter
from netspectra.storage.query import FlowFilter, QueryStore
from netspectra.storage.registry import build_writer
from netspectra.storage.spool import QueuedWriter
from tests.fixtures.clickhouse import ClickHouseServer
from tests.fixtures.nats import NatsServer
from tests.integration.api_truth import EXACT_TASKS, T0, flow_table, make_packets
from tests.integration.durability_helpers import (
    engine_config,
    every_task,
    publish_trace,
    query_store,
    start_engine,
    stored_packets,
    wait_until,
)


@contextlib.contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> None:
    """Write ``disk/filler`` until not one more byte fits."""
    with contextlib.suppress(OSError), open(disk / "filler", "ab") as filler:
        for chunk in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    filler.write(b"\0" * chunk)
                    filler.flush()


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs with no byte free."""
    with tmpfs(tmp_path / "tiny", "1m") as mount:
        fill(mount)
        yield mount


async def test_a_full_spool_disk_is_an_error_counted_as_failed_and_nothing_stops(
    nats_server: NatsServer,
    clickhouse_server: ClickHouseServer,
    clickhouse_database: str,
    tmp_path: Path,
    full_disk: Path,
) -> None:
    # the spool's directories exist before the disk fills: only snapshot files fail
    config = engine_config(nats_server.url, clickhouse_server, clickhouse_database, full_disk / "spool")
    (full_disk / "filler").unlink()
    engine = start_engine(tmp_path, "engine", config)
    with contextlib.suppress(OSError), open(full_disk / "filler", "wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()
    store = query_store(clickhouse_server, clickhouse_database)
    try:
        published = publish_trace(tmp_path, "probe", nats_server.url, 8_000, seed=61)
        error = engine.wait_for_message("cannot write the snapshot to the spool")
        assert "No space left on device" in error and "memory only" in error and "LOST" in error
        # the store is up: what the spool could not keep still reaches it, and counting goes on

        async def stored() -> bool:
            return await stored_packets(store) == every_task(published)

        await wait_until(stored, "the trace stored", on_timeout=engine.tail)
        stats = [m for m in engine.messages() if m.startswith("Engine stats") and "accepted" in m]
        failed = [int(x) for x in re.findall(r"(\d+) failed", stats[-1])]
        assert failed and failed[0] > 0, stats[-1]
        records = [r for r in engine.records() if "cannot write the snapshot to the spool" in r["message"]]
        assert all(r["level"] == "ERROR" for r in records)
        assert len(records) <= 2, "rate-limited, not a line (or a traceback) per snapshot"
        assert "Traceback" not in engine.log_path.read_text()
        assert list(full_disk.rglob("*.tmp")) == []
        assert engine.stop() == 0, engine.tail()
    finally:
        engine.kill()
        await store.backend.close()


async def test_refused_credentials_are_reported_as_such(
    clickhouse_server: ClickHouseServer, clickhouse_database: str
) -> None:
    options = ClickHouseOptions(
        host=clickhouse_server.host,
        port=clickhouse_server.tcp_port,
        database=clickhouse_database,
        password="nope",
    )
    backend = ClickHouseBackend(options)
    try:
        with pytest.raises(StorageAuthError, match="refused the credentials"):
            await backend.select("SELECT 1")
    finally:
        await backend.close()


def cumulative_snapshots(count: int) -> list[tuple[Snapshot, int]]:
    """``count`` snapshots of one period, each holding more packets than the last: (snapshot, packets)."""
    packets = sorted(make_packets(count=3000), key=lambda packet: packet.ts_ns)
    out = []
    for i in range(count):
        subset = packets[: 1000 + 400 * i]
        tables = tuple(flow_table(task, fields, subset) for task, fields in EXACT_TASKS.items())
        out.append((Snapshot("exact", (T0 + i) * 10**9, (T0 - 100) * 10**9, flows=tables), len(subset)))
    return out


async def test_the_embedded_store_on_a_full_disk_is_an_error_counted_as_failed_with_memory_bounded(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="netspectra.storage")
    with tmpfs(tmp_path / "disk", "48m") as disk:
        config = WriterConfig.model_validate(
            {
                "type": "embedded",
                "snapshot_interval": 1,
                "embedded": {"path": str(disk / "store"), "max_queued_snapshots": 2},
            }
        )
        context = StorageContext(engine_id="e1", incarnation="only")
        writer = build_writer(config, "exact", context)
        assert isinstance(writer, EmbeddedWriter)
        writer.backoff_initial = writer.backoff_max = 0.05
        store = QueryStore(context.embedded_session(str(disk / "store")), description="test")

        async def totals() -> dict[str, int]:
            return {total.task: total.total_packets for total in await store.aggregate_flows(FlowFilter())}

        try:
            snapshots = cumulative_snapshots(6)
            await writer.start()
            await writer.write(snapshots[0][0])
            await writer.flush(60)
            assert await totals() == dict.fromkeys(EXACT_TASKS, snapshots[0][1])
            fill(disk)
            for snapshot, _ in snapshots[1:]:
                failures = writer.stats.failed
                await writer.write(snapshot)  # never raises: the engine keeps counting

                async def tried(before: int = failures) -> bool:
                    return writer.stats.failed > before + 1  # the spool's failure and an insert's

                await wait_until(tried, "an insert attempted on the full disk")
            stats = writer.stats
            # stored only what the store took; every failed attempt counted; memory bounded at 2
            assert stats.stored == 1 and stats.failed >= 10, stats
            assert stats.memory_only == 2 and stats.queued == 2 and stats.dropped == 3, stats
            errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
            refused = [m for m in errors if "refused the snapshot (its disk is full)" in m]
            assert refused and "in memory only: lost if the process stops" in refused[0], errors
            assert any("dropped the oldest snapshot kept only in memory" in m for m in errors), errors
            assert any("cannot write the snapshot to the spool" in m for m in errors), errors
            assert not [
                r for r in caplog.records if r.levelno == logging.WARNING and "retrying" in r.getMessage()
            ]
            # the query side still answers what is stored, never an empty answer
            assert await totals() == dict.fromkeys(EXACT_TASKS, snapshots[0][1])
            # room again: what memory kept reaches the store, the newest snapshot is the answer
            (disk / "filler").unlink()
            await writer.flush(60)
            assert writer.stats.stored == 3 and writer.stats.memory_only == 0
            assert await totals() == dict.fromkeys(EXACT_TASKS, snapshots[-1][1])
        finally:
            await writer.close()
            await context.close()


async def test_a_writer_whose_credentials_are_refused_says_so_at_once_not_as_an_outage(
    clickhouse_server: ClickHouseServer,
    clickhouse_database: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="netspectra.storage")
    config = WriterConfig.model_validate(
        {
            "type": "clickhouse",
            "snapshot_interval": 1,
            "clickhouse": {
                "host": clickhouse_server.host,
                "port": clickhouse_server.tcp_port,
                "database": clickhouse_database,
                "password": "nope",
                "queue_dir": str(tmp_path / "spool"),
            },
        }
    )
    context = StorageContext(engine_id="e1", incarnation="only")
    writer = build_writer(config, "exact", context)
    assert isinstance(writer, QueuedWriter)
    writer.close_grace = 1.0
    try:
        await writer.start()
        snapshot, _ = cumulative_snapshots(1)[0]
        await writer.write(snapshot)

        async def attempted() -> bool:
            return writer.stats.failed >= 1

        await wait_until(attempted, "an insert attempted")
        assert writer.stats.stored == 0 and writer.stats.queued == 1
        records = [r for r in caplog.records if r.name.startswith("netspectra.storage")]
        refused = [r for r in records if "refused our credentials" in r.getMessage()]
        assert refused and all(r.levelno == logging.ERROR for r in refused), [r.getMessage() for r in records]
        assert "clickhouse.username/password" in refused[0].getMessage()
        outage_words = ("not reachable", "unreachable", "retrying")
        assert not [r.getMessage() for r in records if any(w in r.getMessage() for w in outage_words)]
    finally:
        await writer.close()
        await context.close()
    assert (
        len(list((tmp_path / "spool").rglob("*.snapshot"))) == 1
    )  # kept for a start with the right password
