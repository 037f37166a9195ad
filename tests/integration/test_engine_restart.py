"""Restarts continue, never replace: an engine SIGKILLed and started again under the same engine id.

Real processes throughout: nats-server, clickhouse-server, ``netspectra run --roles=engine``
(killed by pid with SIGKILL) and probe processes replaying generated traces. The truth is what
the probes published; the stored totals are read through the query layer (AggregateFlows).
Nothing is published while the engine is down, so the loss for the downtime is zero and every
stored total must equal everything published.
"""

from __future__ import annotations

from pathlib import Path

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
