"""asynch's private internals NetSpectra relies on; nothing else touches them.

Written against asynch 0.4 (0.4.0 checked; pyproject pins ``asynch<0.5``). Each use is
checked by ``tests/unit/contracts/test_asynch_internals.py``, which names the attribute and the
installed version when an upgrade breaks it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asynch.connection import Connection


async def execute_columnar(connection: Connection, sql: str, columns: Sequence[Any]) -> Any:
    """``INSERT ... VALUES`` from whole columns (one sequence per column, in the statement's order).

    asynch's public cursor takes rows only; its protocol connection (``Connection._connection``)
    takes columns and skips building a tuple per row, which is most of an insert's cost.
    """
    return await connection._connection.execute(sql, columns, columnar=True)
