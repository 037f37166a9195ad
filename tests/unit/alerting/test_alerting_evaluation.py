"""Rates over a window and baselines, against values computed by hand from the scripted series."""

from __future__ import annotations

import json
import math

from netspectra.alerting.evaluation import Evaluator
from netspectra.alerting.readings import Reading
from netspectra.config.models import AlertRuleConfig


def rule(**fields: object) -> AlertRuleConfig:
    base = {"name": "r", "task_name": "t", "metric": "total_packets", "threshold": 0}
    return AlertRuleConfig.model_validate({**base, **fields})


def test_a_window_rate_is_the_growth_over_the_window_not_since_the_period_began() -> None:
    evaluator = Evaluator(check_interval=10)
    r = rule(window="1m", threshold=50)
    counts = [0, 100, 200, 300, 400, 500, 600, 10_600, 11_600]  # 10 pkt/s, then one burst of 10 000
    values = []
    for step, count in enumerate(counts):
        observed = evaluator.evaluate(r, [Reading("", count)], now=step * 10.0)
        values.append(observed[0].value if observed else None)
    assert values[0] is None  # one sample: no rate yet
    assert values[1:7] == [10.0] * 6
    assert values[7] == (10_600 - 100) / 60  # newest sample >= 60 s older is t=10 (count 100)
    assert values[8] == (11_600 - 200) / 60
    # since the period began it would be 11_600 / 80 = 145: not what a window means
    assert not math.isclose(values[8], 145)


def test_a_counter_that_fell_starts_its_rate_afresh() -> None:
    """The period reset (or an engine left the sum): unknown once, then the new counter's rate."""
    evaluator = Evaluator(check_interval=10)
    r = rule(window="10s")
    evaluator.evaluate(r, [Reading("", 1000)], now=0)
    assert evaluator.evaluate(r, [Reading("", 30)], now=10) == []  # the period reset
    assert evaluator.unknown("r") == {""}
    observed = evaluator.evaluate(r, [Reading("", 60)], now=20)
    assert observed[0].value == 3.0


def test_an_engine_leaving_the_sum_is_not_a_flood() -> None:
    """Two incarnations in the sum (the old one frozen at 50 000, the restarted one counting
    10 pkt/s), then the old one leaves the view: the sum falls to the new one's 2 000. Counting that
    from zero read 2 000 in 10 s = 200 pkt/s, over the threshold with no flood."""
    evaluator = Evaluator(check_interval=10)
    r = rule(window="10s", threshold=100)
    fired = []
    for now, count in ((0, 51_800), (10, 51_900), (20, 2_000), (30, 2_100), (40, 2_200)):
        observed = evaluator.evaluate(r, [Reading("", count)], now=float(now))
        fired.append([o.value for o in observed])
    assert fired == [[], [10.0], [], [10.0], [10.0]]


def test_an_ewma_baseline_fires_on_a_surge_and_on_traffic_that_stopped_and_not_on_noise() -> None:
    evaluator = Evaluator(check_interval=10)
    r = rule(window="10s", baseline={"method": "ewma", "alpha": 0.3, "factor": 3, "warmup": 5})
    count, now, fired = 0.0, 0.0, []
    rates = [100, 110, 90, 105, 95, 100, 120, 80, 100, 100, 900, 100, 100, 0, 0, 100]
    for rate in [100, *rates]:
        count += rate * 10
        observed = evaluator.evaluate(r, [Reading("", count)], now=now)
        fired.append(bool(observed and observed[0].holds))
        now += 10
    # index 0 has no rate; 1..5 warm up; noise within x3 never fires; 900 and the two zeros do
    assert [i for i, f in enumerate(fired) if f] == [11, 14, 15]


def test_a_seasonal_median_knows_the_quiet_hour() -> None:
    evaluator = Evaluator(check_interval=3600)
    r = rule(
        metric="total_bytes",
        baseline={"method": "seasonal_median", "season": "24h", "seasons": 3, "factor": 2, "warmup": 1},
    )
    day = [10.0 if hour < 6 else 1000.0 for hour in range(24)]
    fired = []
    for d in range(4):
        for hour in range(24):
            value = day[hour]
            if d == 3 and hour == 3:
                value = 1000.0  # busy at 03:00: normal at 14:00, a surge at 03:00
            observed = evaluator.evaluate(r, [Reading("", value)], now=(d * 24 + hour) * 3600.0)
            fired.append((d, hour, observed[0].holds))
    assert [(d, h) for d, h, f in fired if f] == [(3, 3)]


def _traffic_stopped_after_a_flood(interval: float) -> list[tuple[float, bool]]:
    """A "traffic stopped" EWMA rule checked every ``interval`` s on a manual clock: 200 pkt/s for
    300 s, a 36 s flood of 1200 pkt/s, 200 pkt/s again, and at 600 s the traffic stops. Returns
    (check time, deviates) per check (bench/alerting.py's trace, as cumulative readings)."""
    evaluator = Evaluator(check_interval=interval)
    r = rule(
        window=f"{interval}s",
        baseline={"method": "ewma", "factor": 4, "direction": "below", "warmup": 3},
    )

    def rate(t: float) -> float:
        if t >= 600:
            return 0.0
        return 1200.0 if 300 <= t < 336 else 200.0

    checks, count, now = [], 0.0, 0.0
    while now < 700:
        now += interval
        count += rate(now - interval) * interval
        observed = evaluator.evaluate(r, [Reading("", count)], now=now)
        if observed:
            checks.append((now, observed[0].holds))
    return checks


def test_a_flood_does_not_teach_the_normal_more_at_short_check_intervals() -> None:
    """The EWMA's weight is per time, not per check: at 1 s checks a 36 s flood was 36 checks of
    learning (30 times what it is at 30 s checks), the baseline followed the flood, and normal
    traffic after it read as "traffic stopped" (bench/alerting.py at 1 s). Now the same at
    every interval: nothing before the stop, and the stop is seen at the first check after it."""
    for interval in (1.0, 5.0, 30.0):
        checks = _traffic_stopped_after_a_flood(interval)
        assert not [t for t, holds in checks if holds and t <= 600], interval
        first = min(t for t, holds in checks if holds)
        assert first == 600 + interval, interval


def test_after_a_fall_no_rate_mixes_the_two_counters() -> None:
    """1000 pkt/s; the view freezes at 2000 for four checks (the engine stopped, its restart not
    stored yet), then the restarted engine's own count (500, 1500, 2500: 1000 pkt/s again). At
    t=9 the window's start (t=4) holds the old counter's 2000: 500 of growth in 5 s would read a
    flood at a tenth of its rate. Its new counter alone says 2500 since t=6."""
    r = rule(window="5s", threshold=500)
    evaluator = Evaluator(check_interval=1)
    counts = [0, 1000, 2000, 2000, 2000, 2000, 2000, 500, 1500, 2500]
    values = []
    for now, count in enumerate(counts):
        observed = evaluator.evaluate(r, [Reading("", count)], now=float(now))
        values.append(observed[0].value if observed else None)
    assert values[7] is None  # another counter: unknown until its second sample
    assert values[8] == 1000.0
    assert values[9] == 1000.0  # (2500 - 500) / 2: none of the old counter's samples
    assert evaluator.unknown("r") == set()


def test_a_check_with_nothing_stored_to_judge_holds_the_last_value() -> None:
    """An engine without a lease goes quiet (no new rows: stale, nothing to read) and comes back:
    its counts did not change meanwhile, so the rate when it is back is the growth since the last
    held check, not since the last check that read something."""
    r = rule(window="5s", threshold=50)
    evaluator = Evaluator(check_interval=5)
    evaluator.evaluate(r, [Reading("", 0)], now=0.0)
    evaluator.evaluate(r, [Reading("", 1000)], now=5.0)
    for now in (10.0, 15.0, 20.0):
        evaluator.hold(r, now)
    observed = evaluator.evaluate(r, [Reading("", 1500)], now=25.0)
    assert observed[0].value == 100.0  # 500 in the last 5 s; across the 20 s since t=5 it is 25


def test_only_active_alerts_keep_their_samples_and_a_restored_flow_is_not_new() -> None:
    """The state keeps the rate samples of the series with an active alert (and every baseline);
    a flow saved without them has no rate at the first check after the restart, rather than its
    whole count read as one interval's growth (a flow new since the previous check had zero)."""
    r = rule(window="10s", threshold=500)
    before = Evaluator(check_interval=10)
    for now, counts in ((0.0, (0, 0)), (10.0, (10_000, 100_000))):
        before.evaluate(r, [Reading("busy", counts[0]), Reading("big", counts[1])], now=now)
    saved = json.loads(json.dumps(before.to_json(keep={("r", "busy")})))  # as the state file holds it
    assert [item["samples"] for item in saved["series"].values()] == [[[0.0, 0.0], [10.0, 10_000.0]]]
    after = Evaluator(check_interval=10)
    after.restore(saved, {"r": r})
    observed = after.evaluate(r, [Reading("busy", 20_000), Reading("big", 110_000)], now=20.0)
    assert [(o.key, o.value) for o in observed] == [("busy", 1000.0)]
    assert after.unknown("r") == {"big"}  # not 110 000 / 10 s
    observed = after.evaluate(r, [Reading("busy", 30_000), Reading("big", 111_000)], now=30.0)
    assert [(o.key, o.value) for o in observed] == [("busy", 1000.0), ("big", 100.0)]


def test_rates_are_made_over_the_data_time_and_a_reading_without_new_data_is_unknown() -> None:
    """Checks every 10 s over a store written every 60 s: growth per second of data time; the checks
    between snapshots (same data time), and those while a restarted engine has stored nothing yet
    (data time 0), judge nothing; a counter that fell starts afresh (unknown once); counts that stop
    growing while the data time advances (traffic stopped) read as rate 0."""
    evaluator = Evaluator(check_interval=10)
    r = rule(window="1m", threshold=50)
    # (check time, count, data time): 100 pkt/s; snapshots at 60, 120, 180; a restart after 180,
    # the new incarnation's first snapshot at 250 (its count alone: the old one left the view)
    script = [
        (60, 6000, 60.0),
        (70, 6000, 60.0),
        (120, 12000, 120.0),
        (130, 12000, 120.0),
        (190, 18000, 180.0),
        (200, 18000, 0.0),
        (240, 18000, 0.0),
        (250, 7000, 250.0),
        (310, 7000, 310.0),
    ]
    values = []
    for now, count, at in script:
        observed = evaluator.evaluate(r, [Reading("", count, at=at)], now=float(now))
        values.append(observed[0].value if observed else None)
        assert (observed == []) == ("" in evaluator.unknown("r"))
    assert values == [None, None, 100.0, None, 100.0, None, None, None, 0.0]
