"""Loud when it cannot keep its promise: a spool on a full disk, a store that refuses credentials.

The spool sits on a real 1 MiB tmpfs filled to the last byte (skipped with the reason where
mounting is not permitted); the engine is a real process, the store a real clickhouse-server.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from netspectra.config.models import ClickHouseOptions
from netspectra.errors import StorageAuthError
from netspectra.storage.clickhouse import ClickHouseBackend
from tests.fixtures.clickhouse import ClickHouseServer
from tests.fixtures.nats import NatsServer
from tests.integration.durability_helpers import (
    engine_config,
    every_task,
    publish_trace,
    query_store,
    start_engine,
    stored_packets,
    wait_until,
)


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs with no byte free."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip() or result.returncode})")
    try:
        with contextlib.suppress(OSError), open(mount / "filler", "wb") as filler:
            while True:
                filler.write(b"\0" * 65536)
                filler.flush()
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


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
