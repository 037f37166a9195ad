"""What a rule's metric is at this moment, read from the store's merged view.

The query layer's answers already merge every engine's rows (counts and sizes add up, a spread
is the largest estimate), so the alerter sees one network whichever engine counted a packet.
Every value is the running period's cumulative figure, as Go's alerter reads the engine's
snapshot: per engine incarnation, each flow's latest row of the engine's running period
(``QueryStore.current_*``; change snapshots hold only changed flows, so the period start
recorded in ``engine_periods`` says which rows count), so what a period reset or a restart
dropped is not read; hitters from the engines' merged sketch states of the running period when
the store has them (``QueryStore.states``). Rates are made from successive readings by
:mod:`.evaluation`, over the readings' **data time** (``Reading.at``): the time up to which the
store holds every live engine's counts (``QueryStore.current_data_time``, from the snapshot times
the writers record), not the check's time. The store's counts change once per snapshot interval
(60 s by default) while checks come every few seconds, and after an engine restarts the new
incarnation stores nothing for up to one interval while its predecessor's last counts stay in
view: over check times those frozen counts read as "no growth" and resolved a flood mid-way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from netspectra.config.models import AlertRuleConfig
from netspectra.errors import MergeRefusedError
from netspectra.model.snapshot import HitterKind
from netspectra.storage.query import QueryStore

logger = logging.getLogger(__name__)

_HITTER_KINDS = {
    "heavy_hitter_count": HitterKind.COUNT,
    "heavy_hitter_size": HitterKind.SIZE,
    "super_spreader_spread": HitterKind.SPREAD,
}


@dataclass(frozen=True, slots=True)
class Reading:
    """One series of a rule: ``key`` names the flow ("" for a task-wide metric)."""

    key: str
    value: float
    labels: tuple[tuple[str, str], ...] = ()
    #: The data time of ``value`` (epoch seconds): up to when the store held the counts it was
    #: made from (QueryStore.current_data_time); 0 while a live engine in view has stored none
    #: yet (it restarted: its counts are not in, so no rate can be made). None when the store
    #: cannot tell: the check's time stands in.
    at: float | None = None


class StoreReader:
    """Reads rule metrics through :class:`QueryStore`'s public queries.

    ``limit`` caps what a per-flow rule reads (largest first; ``flow_scan`` with a window, as a
    flow's rate may be high while its total is not yet); ``engine_staleness`` drops an engine whose
    newest flow row and lease heartbeat are older (it stopped); ``hitter_freshness`` is how far
    back a hitter counts as still reported (a little over the sketch writers' snapshot interval).

    Rules of one check that need the same store answer (total_packets and total_bytes of a task,
    several thresholds on one hitter task) share one query: a check passes one ``now`` to every
    rule, and the answers are kept until ``now`` changes. With 20 rules at a 1 s interval on a
    saturated machine the queries were the whole check time (bench/alerting.py).
    """

    def __init__(
        self,
        store: QueryStore,
        *,
        limit: int = 100,
        flow_scan: int = 10_000,
        engine_staleness: float = 180.0,
        hitter_freshness: float = 90.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.limit = limit
        self.flow_scan = flow_scan
        self.engine_staleness = engine_staleness
        self.hitter_freshness = hitter_freshness
        self.clock = clock
        self._warned: set[str] = set()
        self._answers: dict[Hashable, Any] = {}
        self._answered_at: float | None = None

    async def _once(self, now: float, key: Hashable, ask: Callable[[], Awaitable[Any]]) -> Any:
        """The store's answer to ``key`` at ``now``, asked once per check (an error is not kept)."""
        if self._answered_at != now:
            self._answers.clear()
            self._answered_at = now
        if key not in self._answers:
            self._answers[key] = await ask()
        return self._answers[key]

    async def _hitters(self, rule: AlertRuleConfig, now: float) -> list[tuple[str, int]]:
        limit = self.flow_scan if rule.window is not None else self.limit
        since = max(0, int(now - self.hitter_freshness))
        kind = _HITTER_KINDS[rule.metric]
        return await self._once(  # type: ignore[no-any-return]
            now,
            ("hitters", rule.task_name, kind, limit, since),
            lambda: _hitters_of(self.store, rule, kind, limit, since, self._warned),
        )

    async def read(self, rule: AlertRuleConfig, now: float | None = None) -> list[Reading] | None:
        """Raises StorageError when the store cannot answer (the check is then skipped, not resolved).

        None when an exact task's running period holds no flow at all in the store: no engine
        heard from has stored a snapshot of it yet, as in the seconds after the engine restarts
        (its previous incarnation is gone, the new one has not written). Nothing can be judged
        then, so the rule's alerts stay as they are: a firing one is not resolved by a restart
        (nor a "traffic stopped" one fired by it). The price: a task that has had no packet at all
        since its period began is not judged either.
        """
        now = self.clock() if now is None else now
        metric = rule.metric
        since = max(0, int(now - self.engine_staleness))
        if metric in _HITTER_KINDS:
            hitters = await self._hitters(rule, now)
            sketch_time = await self._once(
                now,
                ("sketch data time", rule.task_name, since),
                lambda: self.store.current_data_time(rule.task_name, since=since, group="sketch"),
            )
            at = None if sketch_time is None else float(sketch_time)
            return [Reading(flow, float(value), (("flow", flow),), at) for flow, value in hitters]
        data_time = await self._once(
            now,
            ("data time", rule.task_name, since),
            lambda: self.store.current_data_time(rule.task_name, since=since),
        )
        at = None if data_time is None else float(data_time)
        if metric in ("total_packets", "total_bytes", "total_flows"):
            totals = await self._once(
                now,
                ("totals", rule.task_name, since),
                lambda: self.store.current_totals(rule.task_name, since=since),
            )
            if totals.flow_count == 0:
                return None
            value = {
                "total_packets": totals.total_packets,
                "total_bytes": totals.total_bytes,
                "total_flows": totals.flow_count,
            }[metric]
            return [Reading("", float(value), at=at)]
        by = "packets" if metric == "flow_packets" else "bytes"
        limit = self.flow_scan if rule.window is not None else self.limit
        flows = await self._once(
            now,
            ("flows", rule.task_name, by, limit, since),
            lambda: self.store.current_flows(rule.task_name, by=by, limit=limit, since=since),
        )
        if not flows:
            return None
        readings = []
        for keys, packets, size in flows:
            key = flow_key(keys)
            amount = float(packets if by == "packets" else size)
            readings.append(Reading(key, amount, tuple(keys.items()), at))
        return readings


async def _hitters_of(
    store: QueryStore, rule: AlertRuleConfig, kind: HitterKind, limit: int, since: int, warned: set[str]
) -> list[tuple[str, int]]:
    """The running period's hitters: merged from every engine's stored sketch states (the answer one
    engine would give), else the hitter rows reported since ``since`` (Go's rows, and algorithms
    that cannot merge: with several engines their spread is the largest engine's, an underestimate)."""
    try:
        merged = await store.states.heavy_hitters(rule.task_name, kind, limit, None, None)
    except MergeRefusedError as error:
        if rule.name not in warned:
            warned.add(rule.name)
            logger.warning("Alert rule %r reads the hitter rows: %s", rule.name, error)
        merged = None
    if merged is not None:
        return merged
    return await store.current_hitters(rule.task_name, kind, limit=limit, since=since)


def flow_key(keys: Mapping[str, str]) -> str:
    """``SrcIP=10.0.0.1,DstPort=80`` (fields in key order): the flow part of an alert's identity."""
    return ",".join(f"{name}={value}" for name, value in keys.items())
