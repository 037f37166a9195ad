"""The alerter's exact-task readings with change snapshots, on both backends: what Go's alerter
reads (each engine's in-memory cumulative snapshot of the running period), summed over engines.

Two engines (one with an incarnation and its lease, one a one-shot id) feed real store writers,
which get only the flows changed since their last snapshot, and, beside them, in-memory writers
of full snapshots. The truth is brute force over those: per engine its newest full snapshot (the
engine's running period as the store last heard of it), flows summed by key over engines. Most
flows go quiet after their first busy batch, a period reset drops them, and the engines' periods
begin at different instants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from netspectra.alerting.readings import StoreReader, flow_key
from netspectra.config.models import AlertRuleConfig, ExactTaskConfig, WriterConfig
from netspectra.engine.engine import Engine
from netspectra.engine.exact import ExactGroup
from netspectra.model.fields import FIELD_ORDER, KeyField
from netspectra.storage.query import QueryStore
from netspectra.storage.spool import QueuedWriter, SnapshotSpool
from tests.integration.alerting_helpers import wait_until
from tests.integration.test_storage_latest import RecordingBackend, backend
from tests.unit.engine.engine_helpers import random_batch
from tests.unit.engine.test_engine_exact_table import table_as_dict
from tests.unit.engine.test_engine_schedule import ManualClock, RecordingWriter

__all__ = ["backend"]  # the two-backend fixture

S = 1_000_000_000
TASKS = {"src": (KeyField.SRC_IP,), "five": FIELD_ORDER}


def running_period(writers: list[RecordingWriter]) -> dict[str, dict[str, tuple[int, int]]]:
    """task → flow key text → (packets, bytes): each engine's newest full snapshot, summed."""
    truth: dict[str, dict[str, tuple[int, int]]] = {task: {} for task in TASKS}
    for writer in writers:
        if not writer.snapshots:
            continue
        for table in writer.snapshots[-1].flows:
            for key, (packets, size, *_seen) in table_as_dict(table).items():
                fields = dict(zip(TASKS[table.task], key, strict=True))
                text = flow_key({field.value: str(fields[field]) for field in FIELD_ORDER if field in fields})
                old = truth[table.task].get(text, (0, 0))
                truth[table.task][text] = (old[0] + int(packets), old[1] + int(size))
    return truth


async def test_the_alerters_readings_are_the_running_period_of_every_engine(
    backend: RecordingBackend, tmp_path: Path
) -> None:
    clock = ManualClock()
    rng = np.random.default_rng(13)
    every10 = WriterConfig(type="embedded", snapshot_interval=10)
    engines, fulls, stored = [], [], []
    for name, incarnation in (("a", ""), ("b", "i1")):
        group = ExactGroup([ExactTaskConfig(name=task, key_fields=fields) for task, fields in TASKS.items()])
        full = RecordingWriter()
        writer = QueuedWriter(
            backend, SnapshotSpool(tmp_path / name, 64), engine_id=name, incarnation=incarnation, label=name
        )
        writer.close_grace = 300.0
        engines.append(
            Engine(
                {"exact": group}, {"exact": [(every10, full), (every10, writer)]}, period_s=50, clock=clock
            )
        )
        fulls.append(full)
        stored.append(writer)
    t0 = clock.now
    await engines[0].start(schedule=False)
    await engines[0].start_writers()
    clock.now = t0 + 5 * S  # engine b's period (and snapshots) begin 5 s later
    await engines[1].start(schedule=False)
    await engines[1].start_writers()

    store = QueryStore(backend, description="test")
    reader = StoreReader(store, limit=10_000, clock=lambda: clock.now / S)
    rules = {
        (task, metric): AlertRuleConfig(name=f"{task}-{metric}", task_name=task, metric=metric, threshold=1)
        for task in TASKS
        for metric in ("total_packets", "total_bytes", "total_flows", "flow_packets", "flow_bytes")
    }
    checked = 0
    for step in range(1, 13):  # resets at 50 s (a) and 55 s (b); busy batches at 10 and 70 s
        busy = step in (1, 7)
        for engine in engines:
            if busy or step % 3 == 0:  # between busy batches a few flows change, some steps none
                count, hosts, ports = (2000, 60, 30) if busy else (50, 2, 2)
                await engine.ingest(random_batch(rng, count, hosts=hosts, ports=ports))
        clock.now = t0 + step * 10 * S
        for engine in engines:
            await engine.run_due()
        for index, (full, writer) in enumerate(zip(fulls, stored, strict=True)):
            if index == 0 or step > 1:  # b's first snapshot is due at 15 s
                await wait_until(lambda f=full: f.snapshots and f.snapshots[-1].taken_at_ns == clock.now, 60)
            await wait_until(lambda f=full, w=writer: w.written >= len(f.snapshots), 300)
        truth = running_period(fulls)
        for (task, metric), rule in rules.items():
            readings = await reader.read(rule, now=clock.now / S)
            flows = truth[task]
            if metric == "total_packets":
                expected = {"": float(sum(p for p, _ in flows.values()))}
            elif metric == "total_bytes":
                expected = {"": float(sum(b for _, b in flows.values()))}
            elif metric == "total_flows":
                expected = {"": float(len(flows))}
            else:
                index = 0 if metric == "flow_packets" else 1
                expected = {key: float(counters[index]) for key, counters in flows.items()}
            assert {reading.key: reading.value for reading in readings} == expected, (step, task, metric)
            checked += 1
    for engine in engines:
        await engine.close()
    assert checked == 12 * len(rules)
    # the case the test is about did occur: flows went quiet (the newest change snapshot of an
    # engine held fewer flows than its running period), and a reset dropped flows
    newest_rows = await backend.select(
        "SELECT count() FROM flow_metrics WHERE Timestamp = toDateTime({at:UInt32})", {"at": t0 // S + 110}
    )
    assert int(newest_rows[0][0]) < sum(len(t) for f in fulls for t in f.snapshots[-1].flows)
