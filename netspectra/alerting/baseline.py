"""Learned normals of one series: an EWMA, or a seasonal median.

Why both: an EWMA follows a level that drifts (a week of growth) and needs nothing but its last
value; a seasonal median knows that 03:00 is quiet and 14:00 busy, and one outlier in a season's
history does not move it. Either is learned only from values that did not deviate (an attack
must not become the new normal), after ``warmup`` checks. A deviation is ``value > bound_high``
(baseline x factor) or ``value < bound_low`` (baseline / factor): "traffic stopped" is a rate
falling under baseline / factor. A baseline under ``floor`` counts as ``floor``, so a near-idle
series does not fire on one packet. A value outside the band (above baseline x factor or under
baseline / factor) in the direction the rule does not watch (a surge, for a "traffic stopped"
rule) still teaches an EWMA, at a tenth of its weight: a flood does not make the normal level
look like an outage once it ends, while a lasting change of level is learned after a while.

An EWMA's ``alpha`` is its weight per :data:`EWMA_ALPHA_PER` seconds (the default check
interval), not per check: a check every ``dt`` seconds learns ``1 - (1 - alpha) ** (dt / 30)``.
Per check, the baseline's memory was ``1 / alpha`` checks: 150 s at 30 s checks, 5 s at 1 s, so a
36 s flood at 1 s checks was 36 lessons, crept within ``factor`` of the flood (where it is learned
at full weight), became the normal, and the normal traffic after it read as "traffic stopped"
(bench/alerting.py). Per time, every check interval learns the same normal.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from netspectra.config.models import BaselineConfig

#: Seconds an EWMA's ``alpha`` weighs (the default ``check_interval``, where alpha is per check).
EWMA_ALPHA_PER = 30.0


@dataclass
class Baseline:
    """One series' learned normal under ``config``; :meth:`judge` then :meth:`learn` at each check."""

    config: BaselineConfig
    check_interval: float
    learned: int = 0
    ewma: float = 0.0
    #: seasonal slot → the last ``seasons`` values seen in that slot
    slots: dict[int, deque[float]] = field(default_factory=dict)

    def _slot(self, now: float) -> int:
        width = max(self.check_interval, 1.0)
        return int((now % self.config.season) // width)

    def expected(self, now: float) -> float | None:
        """The normal value at ``now``; None while still warming up."""
        if self.learned < self.config.warmup:
            return None
        if self.config.method == "ewma":
            return self.ewma
        values = self.slots.get(self._slot(now))
        if not values:
            return None
        return statistics.median(values)

    def judge(self, value: float, now: float) -> tuple[bool, float]:
        """(deviates, the bound crossed or nearest): never deviates while warming up."""
        expected = self.expected(now)
        if expected is None:
            return False, 0.0
        base = max(expected, self.config.floor)
        high, low = base * self.config.factor, base / self.config.factor
        direction = self.config.direction
        if direction in ("above", "both") and value > high:
            return True, high
        if direction in ("below", "both") and value < low and expected >= self.config.floor:
            return True, low
        return False, high if direction != "below" else low

    def learn(self, value: float, now: float) -> None:
        expected = self.expected(now)
        outside = False
        if expected is not None:
            base = max(expected, self.config.floor)
            outside = not base / self.config.factor <= value <= base * self.config.factor
        if self.config.method == "ewma":
            per_time = self.config.alpha / 10 if outside else self.config.alpha
            alpha = 1.0 - (1.0 - per_time) ** (self.check_interval / EWMA_ALPHA_PER)
            self.ewma = value if self.learned == 0 else alpha * value + (1 - alpha) * self.ewma
        else:
            slot = self.slots.setdefault(self._slot(now), deque(maxlen=self.config.seasons))
            slot.append(value)
        self.learned += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "learned": self.learned,
            "ewma": self.ewma,
            "slots": {str(k): list(v) for k, v in self.slots.items()},
        }

    def restore(self, data: dict[str, Any]) -> None:
        self.learned = int(data.get("learned", 0))
        self.ewma = float(data.get("ewma", 0.0))
        self.slots = {
            int(k): deque((float(x) for x in v), maxlen=self.config.seasons)
            for k, v in dict(data.get("slots", {})).items()
        }
