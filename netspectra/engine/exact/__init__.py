"""Exact per-flow aggregation: every flow of every task counted in numba hash tables."""

from netspectra.engine.exact.group import ExactGroup
from netspectra.engine.exact.table import FlowHashTable

__all__ = ["ExactGroup", "FlowHashTable"]
