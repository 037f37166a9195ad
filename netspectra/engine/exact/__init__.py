"""Exact per-flow aggregation: every flow of every task counted in numba hash tables.

:class:`ExactGroup` imports its tables' kernels (:mod:`.table`) when it is built, so importing
the group type stays numba-free.
"""

from netspectra.engine.exact.group import ExactGroup

__all__ = ["ExactGroup"]
