"""From readings to observations: rates over a window, baselines, thresholds.

A rate (``window: 1m``) is the growth of the cumulative value between the newest sample and the
newest one at least ``window`` older, divided by the seconds between them; while the history is
shorter than the window, the oldest sample stands in (a rate needs two samples). A value that
fell starts the series' samples afresh at that value: its rate is unknown until the next sample.
A sum falls when the period resets, but also when an engine incarnation leaves the view while
another one's counts are in the sum (an engine restarted ~3 snapshot intervals ago): counting the
new value from zero, as Prometheus treats a counter reset, read the surviving incarnation's whole
count as one interval's growth there, a false flood. Unknown holds the alert as it is, so the
price is one sample of delay after a reset, never a false alarm or a false resolve; and no later
rate mixes samples of the two counters (a restarted engine's count climbing back to its
predecessor's last value would read as no growth at all). A series that appears between two
checks of its rule (a new flow, a hitter reported for the first time) had zero at the previous
check, so a flood that starts between two checks has a rate at the first one. Series not seen
for ``2 x window`` (or 10 checks) are forgotten.

Samples are taken at the readings' **data time** (``Reading.at``: up to when the store held the
counts, see :mod:`.readings`; the check's time when the store cannot tell), so a rate is the
growth between two states of the store over the seconds between them, whatever the snapshot and
check intervals. A reading whose data time has not advanced since the series' last sample (the
engines have not written since; a restarted engine has not stored its first snapshot: data time
0) brings no new information: it is unknown, never "no growth", and adds no sample. Its value is
not taken either, even when it differs: rows of a snapshot whose time has not landed yet (the
writer records it after the rows), or an engine leaving the view, are seen with the next time.
Traffic that stopped still reads as rate 0: the writers record every snapshot's time, empty or
not, so the data time advances while the counts do not.

A rate that cannot be made yet (one sample) is **unknown**, not "does not hold": the series'
alert is left as it is (:meth:`Evaluator.unknown`). A check that had nothing stored to judge (the
reader answered None: the engine restarting, or one without a lease gone quiet) judges nothing;
:meth:`Evaluator.hold` records each check-time series' last value again, as the store holds it (a
data-time series needs nothing: the store's time did not move with the check's), so the next
rate counts what was stored meanwhile over the right seconds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from netspectra.alerting.baseline import Baseline
from netspectra.alerting.readings import Reading
from netspectra.alerting.rules import Observation, threshold_holds
from netspectra.config.models import AlertRuleConfig


@dataclass
class _Series:
    samples: deque[tuple[float, float]] = field(default_factory=deque)
    baseline: Baseline | None = None
    seen: float = 0.0
    #: the samples are at data times (the readings had one), not at check times
    timed: bool = False


class Evaluator:
    """Keeps each (rule, series)'s samples and baseline between checks."""

    def __init__(self, check_interval: float) -> None:
        self.check_interval = check_interval
        self._series: dict[tuple[str, str], _Series] = {}
        #: rule → when it was last evaluated
        self._checked: dict[str, float] = {}
        #: rule → keys read at its last evaluation whose value is not known yet
        self._unknown: dict[str, set[str]] = {}
        #: rules restored and not evaluated since (their unsaved series are not new)
        self._resumed: set[str] = set()
        #: rule → the newest data time its last evaluation read
        self._data_at: dict[str, float] = {}

    def evaluate(
        self,
        rule: AlertRuleConfig,
        readings: list[Reading],
        now: float,
        firing: set[str] | frozenset[str] = frozenset(),
    ) -> list[Observation]:
        """One observation per series that has a value now. ``firing``: keys whose alert is active
        (their values do not teach the baseline)."""
        observations = []
        unknown = self._unknown[rule.name] = set()
        previous = self._checked.get(rule.name)
        previous_at = self._data_at.get(rule.name)
        times = [reading.at for reading in readings if reading.at]
        if times:
            self._data_at[rule.name] = max(times)
        self._checked[rule.name] = now
        if rule.name in self._resumed:
            self._resumed.discard(rule.name)
            previous = previous_at = None
        for reading in readings:
            at = now if reading.at is None else reading.at
            series = self._series.get((rule.name, reading.key))
            if series is None:
                series = self._series[(rule.name, reading.key)] = _Series()
                before = previous if reading.at is None else previous_at
                if rule.window is not None and before is not None and before < at:
                    series.samples.append((before, 0.0))
            series.seen = now
            series.timed = reading.at is not None
            value = self._value(rule, series, reading.value, at)
            if value is None:
                unknown.add(reading.key)
                continue
            observations.append(self._judge(rule, series, reading, value, now, reading.key in firing))
        self._forget(rule, now)
        return observations

    def unknown(self, rule: str) -> set[str]:
        """Keys the rule's last evaluation read but could not judge yet (their alerts stay as they are)."""
        return set(self._unknown.get(rule, ()))

    def hold(self, rule: AlertRuleConfig, now: float) -> None:
        """A check of ``rule`` with nothing stored to judge: each series keeps its last value."""
        self._checked[rule.name] = now
        self._unknown[rule.name] = set()
        for (name, _), series in self._series.items():
            if name != rule.name:
                continue
            series.seen = now
            # at data time nothing is to be added: the store's time has not moved with the check's
            if (
                rule.window is not None
                and not series.timed
                and series.samples
                and series.samples[-1][0] < now
            ):
                self._value(rule, series, series.samples[-1][1], now)

    def _value(self, rule: AlertRuleConfig, series: _Series, value: float, now: float) -> float | None:
        if rule.window is None:
            return value
        samples = series.samples
        if series.timed and (now <= 0 or (samples and now <= samples[-1][0])):
            return None  # the store's data has not moved since the last sample: no new information
        if samples and samples[-1][0] == now:
            samples.pop()
        if samples and value < samples[-1][1]:  # another counter from here on: start afresh
            samples.clear()
        samples.append((now, value))
        while len(samples) > 2 and samples[1][0] <= now - rule.window:
            samples.popleft()
        if len(samples) < 2:
            return None
        then, before = samples[0]
        elapsed = now - then
        if elapsed <= 0:
            return None
        return (value - before) / elapsed

    def _judge(
        self, rule: AlertRuleConfig, series: _Series, reading: Reading, value: float, now: float, active: bool
    ) -> Observation:
        if rule.baseline is None:
            return Observation(
                reading.key, value, threshold_holds(rule, value), rule.threshold, reading.labels
            )
        if series.baseline is None:
            series.baseline = Baseline(rule.baseline, self.check_interval)
        deviates, bound = series.baseline.judge(value, now)
        if not deviates and not active:
            series.baseline.learn(value, now)
        return Observation(reading.key, value, deviates, bound, reading.labels)

    def _forget(self, rule: AlertRuleConfig, now: float) -> None:
        horizon = max(2 * (rule.window or 0.0), 10 * self.check_interval)
        for key in [k for k, s in self._series.items() if k[0] == rule.name and now - s.seen > horizon]:
            if self._series[key].baseline is None:  # a baseline is kept: it is the series' memory
                del self._series[key]

    def to_json(self, keep: set[tuple[str, str]] | None = None) -> dict[str, Any]:
        """Baselines, and the rate samples of the series in ``keep`` (every series when None), so
        a restart neither forgets the normal nor an active alert's window.

        The alerter keeps the samples of its active alerts only: a rule over every flow has
        thousands of series, and their samples made the state file megabytes written after every
        check (bench/alerting.py: 44 600 series, 7.6 MB). A series restored without samples has
        no rate at its first check after the restart (see :meth:`restore`)."""
        series = {
            f"{rule}\x1f{key}": {
                "samples": list(series.samples) if keep is None or (rule, key) in keep else [],
                "baseline": series.baseline.to_json() if series.baseline else None,
                "seen": series.seen,
                "timed": series.timed,
            }
            for (rule, key), series in self._series.items()
            if keep is None or series.baseline is not None or (rule, key) in keep
        }
        return {"series": series, "checked": dict(self._checked)}

    def restore(self, data: dict[str, Any], rules: dict[str, AlertRuleConfig]) -> None:
        """A series missing from ``data`` is not taken for new at the first check after the restart
        (a new one had zero at the previous check): its samples were not saved, and zero would
        make its whole count the growth of one interval. It has a rate from the second check."""
        self._checked = {
            name: float(at) for name, at in dict(data.get("checked", {})).items() if name in rules
        }
        self._resumed = set(self._checked)
        for name, item in dict(data.get("series", {})).items():
            rule_name, _, key = name.partition("\x1f")
            rule = rules.get(rule_name)
            if rule is None:
                continue
            series = _Series(deque((float(t), float(v)) for t, v in item.get("samples", [])))
            series.seen = float(item.get("seen", 0.0))
            series.timed = bool(item.get("timed", False))
            if rule.baseline is not None and item.get("baseline"):
                series.baseline = Baseline(rule.baseline, self.check_interval)
                series.baseline.restore(item["baseline"])
            self._series[(rule_name, key)] = series
