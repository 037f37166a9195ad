"""Kernel lanes: each task's counting pinned to one thread, batches in order, no per-batch barrier.

Why lanes and not a pool that every batch waits for: the kernels release the GIL, so two
threads really count at once on two cores, but on a shared machine a thread is often
descheduled for a few milliseconds. With a barrier after every batch the other thread then
sits idle at the barrier (measured here with a busy neighbour process: 2 threads with a
per-batch barrier were ~40 % *slower* than 1). A lane instead runs ahead by up to ``depth``
batches, so a stall of one lane costs the other nothing until that lead is used up.

Rules that keep results identical to a serial run:

* a job label (``"exact.per_src_ip"``) always runs on one lane, so each task sees its batches
  in order and never from two threads at once;
* labels move between lanes only after :meth:`KernelLanes.drain` (all lanes idle): at the
  first batch, then at growing intervals, the labels are re-spread longest-first (by each
  label's measured seconds per batch) onto the least-loaded lane;
* the engine drains the lanes before every snapshot, reset and close, under its lock, so a
  snapshot still never sees half a batch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence

#: One independent piece of a batch's counting: (label for placement and timing, work).
InsertJob = tuple[str, Callable[[], None]]
#: Batches a lane may hold beyond the one it is counting (bounds memory and snapshot latency).
_DEPTH = 3
#: Longest interval, in batches, between two re-balancings (they start at 2 and double).
_MAX_BALANCE_INTERVAL = 256
#: Weight of the newest measurement in a label's running seconds-per-batch.
_SMOOTHING = 0.2


class KernelLanes:
    """``threads`` worker threads fed per-lane job lists; see the module docstring."""

    def __init__(self, threads: int, *, depth: int = _DEPTH, name: str = "netspectra-lane") -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1 (got {threads})")
        self._queues: list[queue.Queue[list[InsertJob] | None]] = [
            queue.Queue(maxsize=depth) for _ in range(threads)
        ]
        self._threads = [
            threading.Thread(target=self._work, args=(lane,), name=f"{name}-{lane}", daemon=True)
            for lane in range(threads)
        ]
        self._lane_of: dict[str, int] = {}
        self.seconds: dict[str, float] = {}
        """Running seconds per batch of each label (written by the lane that owns the label)."""
        self._errors: list[BaseException] = []
        self._batches_since_balance = 0
        self._balance_interval = 2
        self._closed = False
        for thread in self._threads:  # last: the threads read the attributes above
            thread.start()

    @property
    def lanes(self) -> int:
        return len(self._queues)

    def placement(self) -> dict[str, int]:
        """Which lane runs each label now (for tests and the stats line)."""
        return dict(self._lane_of)

    def submit(self, jobs: Sequence[InsertJob]) -> None:
        """Queue one batch's jobs on their lanes (blocks while a lane is ``depth`` batches behind)."""
        if self._closed:
            raise RuntimeError("KernelLanes.submit after close()")
        if not jobs:
            return
        if self._batches_since_balance >= self._balance_interval or any(
            label not in self._lane_of for label, _ in jobs
        ):
            self.wait()
            self._balance([label for label, _ in jobs])
        work: list[list[InsertJob]] = [[] for _ in self._queues]
        for label, job in jobs:
            work[self._lane_of[label]].append((label, job))
        for lane, items in enumerate(work):
            if items:
                self._queues[lane].put(items)
        self._batches_since_balance += 1

    def wait(self) -> None:
        """Return when every queued job has run (errors stay for :meth:`take_errors`)."""
        for lane_queue in self._queues:
            lane_queue.join()

    def drain(self) -> list[BaseException]:
        """:meth:`wait`, then the errors not yet taken, oldest first."""
        self.wait()
        return self.take_errors()

    def take_errors(self) -> list[BaseException]:
        """Errors raised by jobs so far (without waiting), oldest first; they are reported once."""
        if not self._errors:
            return []
        errors, self._errors = self._errors, []
        return errors

    def close(self) -> list[BaseException]:
        """Run what is queued, stop the threads (idempotent); returns the errors not yet taken."""
        if self._closed:
            return []
        errors = self.drain()
        self._closed = True
        for lane_queue in self._queues:
            lane_queue.put(None)
        for thread in self._threads:
            thread.join()
        return errors

    def _balance(self, labels: list[str]) -> None:
        """Longest first onto the least-loaded lane (all lanes are idle when this runs)."""
        seconds = self.seconds
        loads = [0.0] * len(self._queues)
        placement: dict[str, int] = {}
        # Unmeasured labels count as average so they spread evenly instead of piling on lane 0.
        known = [seconds[label] for label in labels if label in seconds]
        default = sum(known) / len(known) if known else 1.0
        for label in sorted(labels, key=lambda item: seconds.get(item, default), reverse=True):
            lane = loads.index(min(loads))
            placement[label] = lane
            loads[lane] += seconds.get(label, default)
        self._lane_of = placement
        self._batches_since_balance = 0
        if known:
            self._balance_interval = min(_MAX_BALANCE_INTERVAL, self._balance_interval * 2)

    def _work(self, lane: int) -> None:
        lane_queue = self._queues[lane]
        seconds = self.seconds
        while True:
            items = lane_queue.get()
            try:
                if items is None:
                    return
                for label, job in items:
                    started = time.perf_counter()
                    try:
                        job()
                    except BaseException as error:  # handed to the engine by take_errors/drain
                        self._errors.append(error)
                    took = time.perf_counter() - started
                    previous = seconds.get(label)
                    seconds[label] = took if previous is None else previous + _SMOOTHING * (took - previous)
            finally:
                lane_queue.task_done()
