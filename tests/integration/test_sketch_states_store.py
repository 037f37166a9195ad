"""Sketch states through a real store: engines and epochs merged, windows, refusals, bad rows.

Both backends (a real clickhouse-server and the embedded chdb). Several "engines" are writers
with their own engine ids over one store, each fed by its own SketchGroup: the snapshots they
write are exactly what engine processes write. Truth is brute force (packets per source counted
in Python) and, for spread_sketch, a sketch fed only the batches of the window (its merge is
exact, so the answer must equal it value for value).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from grpclib import GRPCError
from grpclib.const import Status

from netspectra.api.service import QueryService
from netspectra.config.models import ClickHouseOptions, Settings
from netspectra.engine.sketch.group import SketchGroup
from netspectra.model.packets import PacketColumns
from netspectra.storage.embedded import EmbeddedBackend
from netspectra.storage.query import QueryStore
from netspectra.storage.spool import QueuedWriter, SnapshotSpool
from netspectra.storage.sql import SqlBackend
from netspectra.wire.generated import v1
from tests.fixtures.clickhouse import ClickHouseServer
from tests.unit.sketch.sketch_traffic import exact_totals, f1_and_are, zipf_trace

T = 1_700_000_000
NS = 1_000_000_000
COUNT = 80
CM = {"algorithm": "count_min", "flow_fields": ["SrcIP"], "width": 2048, "depth": 2,
      "count_thereshold": COUNT, "size_thereshold": COUNT * 780}  # fmt: skip
SPREAD = {"algorithm": "spread_sketch", "flow_fields": ["SrcIP"], "element_fields": ["DstIP"],
          "width": 512, "count_thereshold": 40}  # fmt: skip
GO_SPREAD = {"skt_type": 1, "flow_fields": ["SrcIP"], "element_fields": ["DstIP"], "width": 512,
             "depth": 2, "count_thereshold": 40}  # fmt: skip


def group(tasks: list[dict[str, Any]]) -> SketchGroup:
    return SketchGroup(
        Settings.model_validate({"aggregator": {"sketch": {"tasks": tasks}}}).aggregator.sketch.tasks
    )


def as_batch(flow_keys: np.ndarray, element_keys: np.ndarray, sizes: np.ndarray) -> PacketColumns:
    batch = PacketColumns.empty(sizes.shape[0])
    for column in (batch.src_port, batch.dst_port, batch.protocol, batch.ts_ns, batch.ip_version):
        column[:] = 0
    batch.src_ip[:] = flow_keys
    batch.dst_ip[:] = element_keys
    batch.length[:] = sizes
    return batch


@dataclass
class Epochs:
    """Three epochs of traffic (different heavy sources in each), split packet by packet between engines."""

    batches: list[PacketColumns]  # one per epoch, whole
    counts: list[dict[bytes, int]]  # brute-force packets per source, per epoch


@pytest.fixture(scope="module")
def epochs() -> Epochs:
    batches, counts = [], []
    for seed in (31, 32, 33):
        trace = zipf_trace(packets=40_000, flows=4_000, alpha=1.15, seed=seed)
        batches.append(as_batch(trace.flow_keys, trace.element_keys, trace.sizes))
        counts.append(exact_totals(trace)[0])
    return Epochs(batches, counts)


def backend_for(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> SqlBackend:
    if kind == "clickhouse":
        from netspectra.storage.clickhouse import ClickHouseBackend

        server: ClickHouseServer = request.getfixturevalue("clickhouse_server")
        database = request.getfixturevalue("clickhouse_database")
        return ClickHouseBackend(ClickHouseOptions(host=server.host, port=server.tcp_port, database=database))
    if kind == "clickhouse-cluster":  # two shards: tables local per shard, Distributed in front
        from netspectra.storage.clickhouse import ClickHouseBackend

        cluster = request.getfixturevalue("clickhouse_cluster")
        first, database = cluster.servers[0], request.getfixturevalue("cluster_database")
        options = ClickHouseOptions(
            host=first.host, port=first.tcp_port, database=database, cluster=cluster.name
        )
        return ClickHouseBackend(options)
    return EmbeddedBackend(str(tmp_path / "store"))


@dataclass
class Store:
    backend: SqlBackend
    service: QueryService
    query: QueryStore


async def write(backend: SqlBackend, tmp_path: Path, engine: str, snapshots: list[Any]) -> None:
    writer = QueuedWriter(
        backend, SnapshotSpool(tmp_path / f"spool-{engine}", 8), engine_id=engine, label=engine
    )
    for snapshot in snapshots:
        await writer.write(snapshot)
    await writer.flush(60)
    await writer.close()


def run_engines(epochs: Epochs, tasks: list[dict[str, Any]], engines: int, seed: int = 3) -> list[list[Any]]:
    """Each engine's snapshots at T+10, T+20, T+30 (one per epoch) of a random packet split."""
    groups = [group(tasks) for _ in range(engines)]
    out: list[list[Any]] = [[] for _ in range(engines)]
    rng = np.random.default_rng(seed)
    for index, batch in enumerate(epochs.batches):
        owner = rng.integers(0, engines, len(batch))
        for part, sketches in enumerate(groups):
            rows = np.flatnonzero(owner == part)
            sketches.insert(as_batch(batch.src_ip[rows], batch.dst_ip[rows], batch.length[rows]))
            out[part].append(sketches.snapshot((T + 10 * (index + 1)) * NS, T * NS))
    return out


@pytest.fixture(params=["clickhouse", "clickhouse-cluster", "embedded"])
async def store(request: pytest.FixtureRequest, tmp_path: Path, epochs: Epochs) -> AsyncIterator[Store]:
    backend = backend_for(request.param, tmp_path, request)
    tasks = [{"name": "cm", **CM}, {"name": "spread", **SPREAD}, {"name": "go_spread", **GO_SPREAD}]
    for engine, snapshots in zip(("a", "b"), run_engines(epochs, tasks, 2), strict=True):
        await write(backend, tmp_path, engine, snapshots)
    # "solo": a super_spread task that only engine "c" counts; "drift": engines disagree on width
    solo = run_engines(epochs, [{"name": "solo", **GO_SPREAD}, {"name": "drift", **CM}], 1)[0]
    await write(backend, tmp_path, "c", solo)
    drift = run_engines(epochs, [{"name": "drift", **CM, "width": 4096}], 1)[0]
    await write(backend, tmp_path, "d", drift)
    query = QueryStore(backend, description=request.param)
    try:
        yield Store(backend, QueryService(query, {}), query)
    finally:
        await backend.close()


async def hitters(store: Store, task: str, kind: int, start: int = 0, end: int = 0) -> dict[str, int]:
    request = v1.HeavyHittersRequest(task_name=task, type=kind, limit=10_000)
    if start:
        request.start_time = v1_time(start)
    if end:
        request.end_time = v1_time(end)
    reply = await store.service.query_heavy_hitters(request)
    return {hitter.flow: hitter.value for hitter in reply.hitters}


def v1_time(seconds: int) -> Any:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC)


def text_keys(counts: dict[bytes, int]) -> dict[str, int]:
    from netspectra.model.fields import address_text

    return {address_text(key): value for key, value in counts.items()}


def window_truth(epochs: Epochs, chosen: range) -> dict[str, int]:
    total: dict[bytes, int] = {}
    for index in chosen:
        for key, value in epochs.counts[index].items():
            total[key] = total.get(key, 0) + value
    return text_keys(total)


def spread_sketch_of(epochs: Epochs, chosen: range) -> dict[str, int]:
    """What one engine's spread_sketch reports for only the batches of ``chosen``."""
    sketches = group([{"name": "spread", **SPREAD}])
    for index in chosen:
        sketches.insert(epochs.batches[index])
    (result,) = sketches.snapshot(1, 0).sketches
    return {hitter.flow: hitter.value for hitter in result.hitters}


@pytest.mark.parametrize(("start", "chosen"), [(0, range(3)), (T + 10, range(1, 3)), (T + 20, range(2, 3))])
async def test_engines_and_epochs_merge_to_the_truth_of_the_window(
    store: Store, epochs: Epochs, start: int, chosen: range
) -> None:
    truth = window_truth(epochs, chosen)
    reported = await hitters(store, "cm", 0, start=start)
    f1, are = f1_and_are(reported, truth, COUNT)  # type: ignore[arg-type]
    assert f1 >= 0.98 and are < 0.05, (f1, are)
    # spread_sketch merges bit for bit: two engines' epochs = one sketch of exactly those batches
    assert await hitters(store, "spread", 2, start=start) == spread_sketch_of(epochs, chosen)


async def test_end_time_bounds_the_epochs(store: Store, epochs: Epochs) -> None:
    assert await hitters(store, "spread", 2, end=T + 20) == spread_sketch_of(epochs, range(2))
    assert await hitters(store, "spread", 2, start=T + 10, end=T + 20) == spread_sketch_of(
        epochs, range(1, 2)
    )
    with pytest.raises(GRPCError) as refused:
        await hitters(store, "spread", 2, start=T + 20, end=T + 10)
    assert refused.value.status is Status.INVALID_ARGUMENT
    assert await hitters(store, "spread", 2, start=T + 30, end=T + 90) == {}  # no epoch ends in it


async def test_a_sketch_that_cannot_merge_answers_one_engine_and_refuses_the_rest(store: Store) -> None:
    solo = await hitters(store, "solo", 2)  # one engine, no window: its rows, as before
    assert solo
    for task, start, why in (("go_spread", 0, "2 engines (a, b)"), ("solo", T + 10, "a time window")):
        with pytest.raises(GRPCError) as refused:
            await hitters(store, task, 2, start=start)
        assert refused.value.status is Status.FAILED_PRECONDITION
        assert "super_spread" in str(refused.value.message) and why in str(refused.value.message)


async def test_states_that_disagree_are_refused_naming_task_and_difference(store: Store) -> None:
    with pytest.raises(GRPCError) as refused:
        await hitters(store, "drift", 0)
    assert refused.value.status is Status.FAILED_PRECONDITION
    message = str(refused.value.message)
    assert "'drift'" in message and "width" in message and "4096" in message and "2048" in message


async def test_a_corrupted_state_row_is_skipped_counted_and_logged(
    store: Store, epochs: Epochs, caplog: pytest.LogCaptureFixture
) -> None:
    expected = await hitters(store, "spread", 2)
    # engine "x" wrote one epoch whose bytes were damaged on the way (one byte flipped, one cut)
    good = run_engines(epochs, [{"name": "spread", **SPREAD}], 1)[0][0].sketches[0].state
    assert good is not None
    flipped = bytearray(good)
    flipped[len(flipped) // 2] ^= 0xFF
    for engine, state in (("x", bytes(flipped)), ("y", good[: len(good) // 3])):
        await store.backend.insert(
            "sketch_states",
            {"TaskName": ["spread"], "EngineId": [engine], "PeriodStart": [T], "Epoch": [0],
             "EpochStart": [T], "Timestamp": [T + 5], "Algorithm": ["spread_sketch"],
             "StateSize": [len(state)], "StateCheck": [int.from_bytes(state[-4:], "little")],
             "State": [state]},
        )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="netspectra.storage.states"):
        assert await hitters(store, "spread", 2) == expected
        assert await hitters(store, "spread", 2) == expected  # counted once, not per query
    assert store.query.states.corrupt_states == 2
    logged = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(logged) == 2 and "engine 'x'" in logged[0] + logged[1] and "CRC32" in logged[0] + logged[1]


async def test_rows_of_the_old_state_format_answer_as_the_new_ones(
    store: Store, epochs: Epochs, tmp_path: Path
) -> None:
    """A store written before format version 2 (zlib, read as hex then): its rows still merge, alone
    and beside version-2 rows of the same task, into the answer the version-2 rows give."""
    import dataclasses

    from netspectra.engine.sketch.protocol import decode_state, encode_state

    def as_version_1(state: bytes) -> bytes:
        decoded = decode_state(state)
        return encode_state(decoded.algorithm, decoded.params, decoded.flow_fields,
                            decoded.element_fields, dict(decoded.arrays), version=1)  # fmt: skip

    tasks = [{"name": "old", **CM}, {"name": "new", **CM}, {"name": "mixed", **CM}]
    for engine, snapshots in zip(("p", "q"), run_engines(epochs, tasks, 2, seed=9), strict=True):
        rewritten = []
        for snapshot in snapshots:
            results = []
            for result in snapshot.sketches:
                state = result.state_bytes()
                assert state is not None and state[4] == 2  # what an engine writes now
                if result.task == "old" or (result.task == "mixed" and engine == "p"):
                    state = as_version_1(state)
                results.append(dataclasses.replace(result, state=state, deferred_state=None))
            rewritten.append(dataclasses.replace(snapshot, sketches=tuple(results)))
        await write(store.backend, tmp_path, engine, rewritten)
    new = await hitters(store, "new", 0, start=T)
    assert new and await hitters(store, "old", 0, start=T) == new
    assert await hitters(store, "mixed", 0, start=T) == new
    assert store.query.states.corrupt_states == 0
