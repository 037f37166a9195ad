"""The engine-id lease's second defence: a holder that still counts itself as holding yields to an
incarnation that claimed since, and that newcomer does not yield in turn (storage/lease.py).

The store decides when a lease lapsed; our monotonic clock only guesses. Here the store is made to
see the holder's lease as given up (a Released row forged in its name, as a store whose clock ran
ahead would judge it lapsed) while the holder's own clock says it still holds: its next heartbeat
must find the newcomer and stop it writing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netspectra.errors import EngineIdInUseError
from netspectra.storage.embedded import EmbeddedBackend
from netspectra.storage.lease import EngineLease
from netspectra.storage.rows import as_arrow
from netspectra.storage.sql import ensure_schema


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[EmbeddedBackend]:
    store = EmbeddedBackend(str(tmp_path / "db"))
    await ensure_schema(store)
    try:
        yield store
    finally:
        await store.close()


def lease(backend: EmbeddedBackend, incarnation: str) -> EngineLease:
    return EngineLease(
        backend, engine_id="e1", writer="exact", incarnation=incarnation, holder=f"spool-{incarnation}",
        store="test store",
    )  # fmt: skip


async def forge_released(backend: EmbeddedBackend, holder: EngineLease) -> None:
    """A Released row for ``holder`` one second newer than its heartbeats: the store's view that it left."""
    (now,) = (await backend.select("SELECT toUInt32(now())"))[0]
    row = {
        "EngineId": [holder.engine_id], "Writer": [holder.writer], "Incarnation": [holder.incarnation],
        "Holder": [holder.holder], "Host": [holder.host], "Pid": [holder.pid],
        "Heartbeat": [int(now) + 1], "Released": [1],
    }  # fmt: skip
    await backend.insert("engine_leases", {name: as_arrow(name, values) for name, values in row.items()})


async def live_incarnations(backend: EmbeddedBackend) -> set[str]:
    rows = await backend.select(
        "SELECT Incarnation FROM engine_leases GROUP BY Incarnation HAVING argMax(Released, Heartbeat) = 0"
    )
    return {str(row[0]) for row in rows}


async def test_a_holder_yields_to_an_incarnation_that_claimed_since(backend: EmbeddedBackend) -> None:
    old, new = lease(backend, "old"), lease(backend, "new")
    await old.claim()
    with pytest.raises(EngineIdInUseError):
        await new.claim()  # the old one is live: refused, as before
    await forge_released(backend, old)
    await new.claim()  # the store says the old lease is gone: the newcomer takes it
    assert old.held  # ...while the old holder's own clock says it still holds

    await old._beat(released=False)  # the old holder's resumed heartbeat lands first
    await new.renew()  # the newcomer sees it live, but knew it at its claim: it keeps the lease
    assert new.claimed and not new.lost

    with pytest.raises(EngineIdInUseError, match="'e1' already writes 'exact'"):
        await old.renew()  # the old holder finds the newcomer after its heartbeat and yields
    assert old.lost and not old.claimed and not old.held
    assert await live_incarnations(backend) == {"new"}
    await new.renew()
    assert new.claimed and not new.lost


async def test_a_holder_alone_keeps_renewing(backend: EmbeddedBackend) -> None:
    only = lease(backend, "only")
    await only.claim()
    for _ in range(3):
        await only.renew()
    assert only.claimed and not only.lost
    assert await live_incarnations(backend) == {"only"}
