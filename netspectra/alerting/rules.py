"""A rule's condition: what value it reads, and when that value counts as "holds".

Go2NetSpectra compares one metric with ``operator`` and ``threshold``; a rule with a
``baseline`` compares the value with its learned normal instead (see :mod:`.baseline`).
"""

from __future__ import annotations

import operator as op
from collections.abc import Callable
from dataclasses import dataclass

from netspectra.config.models import AlertRuleConfig

COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">": op.gt,
    "<": op.lt,
    ">=": op.ge,
    "<=": op.le,
    "=": op.eq,
    "!=": op.ne,
}


@dataclass(frozen=True, slots=True)
class Observation:
    """One evaluated series of a rule at one check: its value, whether the condition holds, and why."""

    key: str
    value: float
    holds: bool
    #: What the value was compared with (the threshold, or the baseline's bound).
    bound: float
    labels: tuple[tuple[str, str], ...] = ()


def threshold_holds(rule: AlertRuleConfig, value: float) -> bool:
    return COMPARE[rule.operator](value, rule.threshold)


def describe(rule: AlertRuleConfig) -> str:
    """``total_bytes > 1e+06`` / ``flow_packets/s over 1m > 1000`` / ``total_packets/s off baseline``."""
    metric = rule.metric if rule.window is None else f"{rule.metric}/s over {rule.window:g}s"
    if rule.baseline is not None:
        b = rule.baseline
        return f"{metric} {b.direction} its {b.method} baseline by x{b.factor:g}"
    return f"{metric} {rule.operator} {rule.threshold:g}"
