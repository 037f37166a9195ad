"""Restarts continue, never replace: an engine SIGKILLed and started again under the same engine id.

Real processes throughout: nats-server, clickhouse-server, ``netspectra run --roles=engine``
(killed by pid with SIGKILL) and probe processes replaying generated traces. The truth is what
the probes published; the stored totals are read through the query layer (AggregateFlows).
Nothing is published while the engine is down, so the loss for the downtime is zero and every
stored total must equal everything published.
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

from netspectra.storage.lease import LEASE_TIMEOUT_S
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
from tests.integration.pipeline_helpers import NetspectraProcess


async def test_a_killed_engine_restarted_under_its_id_adds_to_what_it_stored(
    nats_server: NatsServer, clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    config = engine_config(nats_server.url, clickhouse_server, clickhouse_database, tmp_path / "spool")
    store = query_store(clickhouse_server, clickhouse_database)
    first = start_engine(tmp_path, "engine-first", config)
    try:
        before = publish_trace(tmp_path, "probe-a", nats_server.url, 20_000, seed=41)

        async def first_stored() -> bool:
            return await stored_packets(store) == every_task(before)

        await wait_until(first_stored, "the first trace stored", on_timeout=first.tail)
        first.kill()  # SIGKILL: no final snapshot, no lease release, no goodbye

        second = start_engine(tmp_path, "engine-second", config)  # same id, same spool: takes over
        try:
            after = publish_trace(tmp_path, "probe-c", nats_server.url, 15_000, seed=43)
            seen: list[dict[str, int]] = []

            async def both_stored() -> bool:
                seen.append(await stored_packets(store))
                return seen[-1] == every_task(before + after)

            await wait_until(both_stored, "both traces stored", on_timeout=second.tail)
            # never below what was stored before the kill: the new rows add, never replace
            assert all(min(totals.values(), default=0) >= before for totals in seen), seen
            assert second.stop() == 0, second.tail()
            assert await stored_packets(store) == every_task(before + after)
            assert any("taking over" in message for message in second.messages()), second.tail()
        finally:
            second.kill()
    finally:
        first.kill()
        await store.backend.close()


async def test_a_second_live_engine_under_the_same_id_is_refused(
    nats_server: NatsServer, clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    # Different spool directories: as two hosts would have; only the store is shared.
    first = start_engine(
        tmp_path,
        "engine-one",
        engine_config(nats_server.url, clickhouse_server, clickhouse_database, tmp_path / "a"),
    )
    try:
        rival = NetspectraProcess(
            tmp_path,
            "engine-two",
            engine_config(nats_server.url, clickhouse_server, clickhouse_database, tmp_path / "b"),
            "--roles=engine",
        )
        assert rival.process.wait(60) != 0, rival.tail()
        refusal = rival.wait_for_message("already writes")
        assert "engine id 'e1'" in refusal and "incarnation" in refusal and "engine.engine_id" in refusal
        # the rival stored nothing: every stored row is the first engine's incarnation
        engines = clickhouse_server.query(
            f"SELECT DISTINCT EngineId FROM {clickhouse_database}.flow_metrics FORMAT TSV"
        ).split()
        assert len({engine.partition("@")[2] for engine in engines}) <= 1, engines
        assert first.process.poll() is None, "the first engine keeps running"
        assert first.stop() == 0, first.tail()
    finally:
        first.kill()


async def test_an_engine_whose_lease_lapsed_and_was_taken_stops_instead_of_writing_beside_the_new_holder(
    nats_server: NatsServer, clickhouse_server: ClickHouseServer, clickhouse_database: str, tmp_path: Path
) -> None:
    """Engine A goes silent (SIGSTOP: as a partition or a long outage looks to the store) past the
    lease timeout; engine B takes the id; A comes back and must stop, loudly, without one insert."""
    store = query_store(clickhouse_server, clickhouse_database)
    silent = start_engine(
        tmp_path,
        "engine-a",
        engine_config(nats_server.url, clickhouse_server, clickhouse_database, tmp_path / "a"),
    )
    taker: NetspectraProcess | None = None
    try:
        before = publish_trace(tmp_path, "probe-a", nats_server.url, 10_000, seed=71)

        async def first_stored() -> bool:
            return await stored_packets(store) == every_task(before)

        await wait_until(first_stored, "the first trace stored", on_timeout=silent.tail)
        claimed = silent.wait_for_message("as incarnation")
        incarnation = re.search(r"as incarnation (\S+)", claimed)
        assert incarnation is not None, claimed
        os.kill(silent.process.pid, signal.SIGSTOP)

        async def lapsed() -> bool:  # in the store's own clock, as the taker judges it
            age = clickhouse_server.query(
                f"SELECT toUInt32(now()) - toUInt32(max(Heartbeat)) FROM {clickhouse_database}.engine_leases "
                f"WHERE Incarnation = '{incarnation[1]}' FORMAT TSV"
            )
            return int(age.strip() or 0) >= LEASE_TIMEOUT_S

        await wait_until(lapsed, "engine A's lease lapsed", timeout=120)
        taker = start_engine(
            tmp_path,
            "engine-b",
            engine_config(nats_server.url, clickhouse_server, clickhouse_database, tmp_path / "b"),
        )
        taker.wait_for_message("as incarnation")
        rows_of_a = (
            f"SELECT count() FROM {clickhouse_database}.flow_metrics WHERE EngineId LIKE '%@{incarnation[1]}'"
        )
        rows_before = clickhouse_server.query(rows_of_a)
        os.kill(silent.process.pid, signal.SIGCONT)
        assert silent.process.wait(60) == 1, silent.tail()
        refusal = silent.wait_for_message("lease lapsed")
        assert "took it" in refusal and "stops writing" in refusal, refusal
        assert any("already writes" in m for m in silent.messages()), silent.tail()
        # not one row of A's after B took over; B goes on counting alone
        assert clickhouse_server.query(rows_of_a) == rows_before
        after = publish_trace(tmp_path, "probe-b", nats_server.url, 8_000, seed=73)

        async def both_stored() -> bool:
            return await stored_packets(store) == every_task(before + after)

        await wait_until(both_stored, "the second trace stored by B", on_timeout=taker.tail)
        assert taker.stop() == 0, taker.tail()
    finally:
        if silent.process.poll() is None:
            os.kill(silent.process.pid, signal.SIGCONT)
        silent.kill()
        if taker is not None:
            taker.kill()
        await store.backend.close()
