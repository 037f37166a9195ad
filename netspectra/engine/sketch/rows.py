"""Rows of a sketch updated by one thread each, for sketches whose rows are independent.

Why threads and not numba's ``parallel=True``: on this 2-core machine, with other work on the
second core, an OpenMP ``prange`` over two rows fell from 45 to 9 M inserts/s (its workers
spin-wait at the barrier for a core that is busy), while plain threads calling the ``nogil``
row kernels never do worse than the serial loop. Threads are started per batch and joined
before returning (no pool to own or shut down); batches below :data:`PARALLEL_MIN_BATCH`
packets stay in the calling thread, where the start-up would cost more than it saves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

PARALLEL_MIN_BATCH = 16_384
"""Smallest batch worth a thread per row (a thread start is ~50 us; 16 k packets are ~0.5 ms a row)."""


def run_rows(depth: int, update_row: Callable[[int], None]) -> None:
    """Call ``update_row(r)`` for every row, rows 1.. on their own threads, row 0 in this one.

    ``update_row`` must only touch row ``r``'s state (cells, random stream), so the result is
    the serial one. The first exception raised by any row is re-raised here after all joined.
    """
    errors: list[BaseException] = []

    def guarded(row: int) -> None:
        try:
            update_row(row)
        except BaseException as error:  # re-raised in the caller below
            errors.append(error)

    threads = [
        threading.Thread(target=guarded, args=(row,), name=f"sketch-row-{row}", daemon=True)
        for row in range(1, depth)
    ]
    for thread in threads:
        thread.start()
    guarded(0)
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
