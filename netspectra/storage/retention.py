"""Retention: ``flow_metrics``, ``heavy_hitters``, ``sketch_states`` and ``sketch_state_runs`` keep
``retention`` seconds, and ``flow_latest`` forgets with them (it used to keep flows whose
partitions were dropped, and answered for them).

Two mechanisms, chosen by the server's version:

* ClickHouse 19.6 and later (chdb, current servers) have table TTL: every table gets ``TTL
  Timestamp + INTERVAL retention SECOND``, row-precise, applied by the server's merges (a TTL
  merge runs at most every ``merge_with_ttl_timeout``, 4 h by default, each table on its own, so
  an expired flow can still be counted until both tables have merged).
* ClickHouse 18.16 (Debian's) has none: whole monthly partitions (``toYYYYMM(Timestamp)``, Go's
  partitioning) are dropped once their month ended more than ``retention`` ago, and the
  unpartitioned ``flow_latest`` loses every row older than the first month kept, through a
  mutation that is awaited, so both tables agree when :func:`apply_retention` returns. The
  granularity is a month: rows live between ``retention`` and ``retention`` + one month.
"""

from __future__ import annotations

import asyncio
import calendar
import logging
import re
import time

from netspectra.errors import StorageError
from netspectra.storage.sql import SqlBackend

logger = logging.getLogger(__name__)

#: The tables retention applies to; flow_latest follows flow_metrics.
RETAINED = ("flow_metrics", "heavy_hitters", "sketch_states", "sketch_state_runs")
_TTL_TABLES = (*RETAINED, "flow_latest")
#: The first version with table TTL (MergeTree ... TTL, ALTER TABLE ... MODIFY TTL).
TTL_VERSION = (19, 6)
_VERSION = "SELECT version()"
_PARTITIONS = (
    "SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase()"
    " AND table = {table:String} AND active"
)
_PENDING_MUTATIONS = (
    "SELECT count() FROM system.mutations WHERE database = currentDatabase()"
    " AND table = 'flow_latest' AND is_done = 0"
)
#: How long to wait for flow_latest's DELETE mutation before giving up (the next pass retries).
MUTATION_TIMEOUT_S = 120.0


def server_version(text: str) -> tuple[int, int]:
    """``"18.16.1"`` → ``(18, 16)``; ``(0, 0)`` when unreadable (treated as without TTL)."""
    match = re.match(r"(\d+)\.(\d+)", text.strip())
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def month_end(partition: str) -> int | None:
    """Epoch seconds when the ``YYYYMM`` partition's month ends (UTC); None for another shape."""
    text = partition.strip().strip("'")
    if not re.fullmatch(r"\d{6}", text):
        return None
    year, month = int(text[:4]), int(text[4:])
    if not 1 <= month <= 12:
        return None
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return calendar.timegm((year, month, 1, 0, 0, 0))


async def supports_ttl(backend: SqlBackend) -> bool:
    rows = await backend.select(_VERSION)
    return bool(rows) and server_version(str(rows[0][0])) >= TTL_VERSION


async def apply_retention(backend: SqlBackend, retention_s: float, *, now_s: int | None = None) -> str:
    """Apply a retention of ``retention_s`` seconds to the store; returns what was done (for logs)."""
    seconds = int(retention_s)
    if seconds <= 0:
        return "kept forever"
    if await supports_ttl(backend):
        for table in _TTL_TABLES:
            await backend.execute(f"ALTER TABLE {table} MODIFY TTL Timestamp + INTERVAL {seconds} SECOND")
        return f"TTL {seconds} s"
    cutoff = (int(time.time()) if now_s is None else now_s) - seconds
    dropped: list[str] = []
    boundary = 0
    for table in RETAINED:
        for (partition,) in await backend.select(_PARTITIONS, {"table": table}):
            end = month_end(str(partition))
            if end is not None and end <= cutoff:
                await backend.execute(
                    f"ALTER TABLE {table} DROP PARTITION {int(str(partition).strip(chr(39)))}"
                )
                dropped.append(f"{table} {partition}")
                if table == "flow_metrics":
                    boundary = max(boundary, end)
    if boundary:
        await backend.execute(f"ALTER TABLE flow_latest DELETE WHERE Timestamp < toDateTime({boundary})")
        await _await_mutations(backend)
    return f"dropped {', '.join(dropped)}" if dropped else "nothing old enough to drop"


async def _await_mutations(backend: SqlBackend) -> None:
    deadline = time.monotonic() + MUTATION_TIMEOUT_S
    delay = 0.05
    while True:
        rows = await backend.select(_PENDING_MUTATIONS)
        if not rows or int(rows[0][0]) == 0:
            return
        if time.monotonic() > deadline:
            raise StorageError("flow_latest's retention DELETE is still running; the next pass checks again")
        await asyncio.sleep(delay)  # a server-side mutation: nothing to await but its state
        delay = min(1.0, delay * 2)
