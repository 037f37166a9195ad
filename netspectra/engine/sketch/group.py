"""The ``sketch`` aggregator group: one sketch per configured task, each from a plugin.

A task whose plugin cannot be imported, fails the protocol check, rejects its parameters or
raises while counting is logged at ERROR (task, plugin, distribution, reason), recorded in
:attr:`SketchGroup.failed_tasks` and skipped: the other tasks keep running.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import numpy.typing as npt

from netspectra.config.models import Settings, SketchTaskConfig
from netspectra.engine.sketch.protocol import SketchAlgorithm
from netspectra.engine.sketch.registry import discover, distribution_of, load_algorithm, validate_params
from netspectra.errors import PluginError
from netspectra.model.fields import KeyField
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import SketchResult, Snapshot
from netspectra.plugins import PluginScan

logger = logging.getLogger(__name__)


class _BatchKeys:
    """The key matrices of one batch, each built once, on first use, by whichever thread asks first.

    A single address field is the batch's own ``(n, 16)`` column (no copy): keys are the
    fields' big-endian bytes, which is exactly how addresses are stored.
    """

    def __init__(self, batch: PacketColumns) -> None:
        self._batch = batch
        self._keys: dict[tuple[KeyField, ...], npt.NDArray[np.uint8]] = {}
        self._lock = threading.Lock()

    def get(self, fields: tuple[KeyField, ...]) -> npt.NDArray[np.uint8]:
        keys = self._keys.get(fields)
        if keys is None:
            with self._lock:
                keys = self._keys.get(fields)
                if keys is None:
                    keys = self._keys[fields] = _build(self._batch, fields)
        return keys


def _build(batch: PacketColumns, fields: tuple[KeyField, ...]) -> npt.NDArray[np.uint8]:
    if fields == (KeyField.SRC_IP,) and batch.src_ip.flags.c_contiguous:
        return batch.src_ip
    if fields == (KeyField.DST_IP,) and batch.dst_ip.flags.c_contiguous:
        return batch.dst_ip
    from netspectra.model.key_kernel import build_keys  # numba, once the group counts

    return build_keys(batch, fields)


@dataclass(slots=True)
class SketchTask:
    """One running task: its config and the sketch instance counting for it."""

    name: str
    algorithm: str
    flow_fields: tuple[KeyField, ...]
    element_fields: tuple[KeyField, ...]
    sketch: SketchAlgorithm


class SketchGroup:
    """Runs every sketch task over the same batches (keys built once per distinct field list)."""

    name = "sketch"

    def __init__(
        self,
        tasks: Sequence[SketchTaskConfig],
        *,
        available: PluginScan | None = None,
        include_state: bool = True,
    ) -> None:
        points = available if available is not None else discover()
        #: put each mergeable task's state into its SketchResult (off: hitters only, as Go writes)
        self.include_state = include_state
        self.failed_tasks: dict[str, str] = {}
        self._failures = threading.Lock()  # tasks fail from the engine's kernel threads
        self._tasks: list[SketchTask] = []
        for config in tasks:
            try:
                self._tasks.append(self._build(config, points))
            except PluginError as error:
                self._fail(config.name, config.algorithm, points, str(error))
            except Exception as error:  # a plugin's constructor is third-party code
                self._fail(config.name, config.algorithm, points, f"{type(error).__name__}: {error}")

    @staticmethod
    def _build(config: SketchTaskConfig, points: PluginScan) -> SketchTask:
        algorithm = load_algorithm(config.algorithm, points)
        params = validate_params(algorithm, config.params, config.name)
        sketch = algorithm(params, flow_fields=config.flow_fields, element_fields=config.element_fields)
        return SketchTask(config.name, config.algorithm, config.flow_fields, config.element_fields, sketch)

    def _fail(self, task: str, plugin: str, points: PluginScan, reason: str) -> None:
        point = points.get(plugin)
        if point is not None:
            package = " ".join(distribution_of(point))
        elif plugin in points.duplicates:
            package = " and ".join(source.origin for source in points.duplicates[plugin])
        else:
            package = "not installed"
        logger.error(
            "Sketch task %r disabled: plugin %r (distribution %s): %s", task, plugin, package, reason
        )
        self.failed_tasks[task] = reason

    @classmethod
    def from_config(cls, settings: Settings) -> SketchGroup:
        """The group described by ``settings.aggregator.sketch``."""
        group = cls(settings.aggregator.sketch.tasks)
        logger.info(
            "Sketch group ready: %d tasks running, %d disabled", len(group._tasks), len(group.failed_tasks)
        )
        return group

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(task.name for task in self._tasks)

    @property
    def tasks(self) -> tuple[SketchTask, ...]:
        return tuple(self._tasks)

    def insert(self, batch: PacketColumns) -> None:
        """Feed the batch to every task: one key build per distinct field list, one kernel per task."""
        for _label, job in self.insert_jobs(batch):
            job()

    def insert_jobs(self, batch: PacketColumns) -> list[tuple[str, Callable[[], None]]]:
        """One job per task, for the engine to spread over its threads.

        Tasks share the batch's key matrices (built once per distinct field list, by whichever
        job needs one first); a job touches only its own sketch. A task that raises is disabled
        and logged; the other tasks keep counting.
        """
        if not len(batch) or not self._tasks:
            return []
        keys = _BatchKeys(batch)
        sizes = np.ascontiguousarray(batch.length, dtype=np.uint64)
        return [
            (f"sketch.{task.name}", partial(self._insert_task, task, keys, sizes)) for task in self._tasks
        ]

    def _insert_task(self, task: SketchTask, keys: _BatchKeys, sizes: npt.NDArray[np.uint64]) -> None:
        try:
            task.sketch.insert(keys.get(task.flow_fields), keys.get(task.element_fields), sizes)
        except Exception as error:  # third-party kernels must not stop the other tasks
            logger.exception("Sketch task %r failed while counting; disabling it", task.name)
            with self._failures:
                if task in self._tasks:
                    self._tasks.remove(task)
                self.failed_tasks[task.name] = f"insert raised {type(error).__name__}: {error}"

    def snapshot(self, taken_at_ns: int, period_start_ns: int) -> Snapshot:
        """Heavy hitters of every task, and the state of each that merges (nothing is reset)."""
        results = tuple(
            SketchResult(
                task=task.name,
                algorithm=task.algorithm,
                hitters=task.sketch.heavy_hitters(),
                state=self._state_of(task),
            )
            for task in self._tasks
        )
        return Snapshot(
            group=self.name, taken_at_ns=taken_at_ns, period_start_ns=period_start_ns, sketches=results
        )

    def _state_of(self, task: SketchTask) -> bytes | None:
        """The task's state bytes; None when it cannot merge or its ``to_bytes`` fails (logged:
        the hitter rows are still written, only multi-engine answers lose this task)."""
        if not getattr(task.sketch, "mergeable", False) or not self.include_state:
            return None
        try:
            return bytes(task.sketch.to_bytes())
        except Exception:  # third-party code: the snapshot must still be taken
            logger.exception(
                "Sketch task %r: its state could not be serialised; writing hitters only", task.name
            )
            return None

    def reset(self) -> None:
        for task in self._tasks:
            task.sketch.reset()

    @property
    def nbytes(self) -> int:
        """Memory held by all sketches (for the stats line)."""
        return sum(int(task.sketch.memory_bytes) for task in self._tasks)
