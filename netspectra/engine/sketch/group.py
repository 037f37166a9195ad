"""The ``sketch`` aggregator group: one sketch per configured task, each from a plugin.

A task whose plugin cannot be imported, fails the protocol check, rejects its parameters or
raises while counting is logged at ERROR (task, plugin, distribution, reason), recorded in
:attr:`SketchGroup.failed_tasks` and skipped: the other tasks keep running.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint

import numpy as np
import numpy.typing as npt

from netspectra.config.models import Settings, SketchTaskConfig
from netspectra.engine.keys import build_keys
from netspectra.engine.sketch.protocol import SketchAlgorithm
from netspectra.engine.sketch.registry import discover, distribution_of, load_algorithm, validate_params
from netspectra.engine.snapshot import SketchResult, Snapshot
from netspectra.errors import PluginError
from netspectra.fields import KeyField
from netspectra.packets import PacketColumns

logger = logging.getLogger(__name__)


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
        available: dict[str, EntryPoint] | None = None,
    ) -> None:
        points = available if available is not None else discover()
        self.failed_tasks: dict[str, str] = {}
        self._tasks: list[SketchTask] = []
        for config in tasks:
            try:
                self._tasks.append(self._build(config, points))
            except PluginError as error:
                self._fail(config.name, config.algorithm, points, str(error))
            except Exception as error:  # a plugin's constructor is third-party code
                self._fail(config.name, config.algorithm, points, f"{type(error).__name__}: {error}")

    @staticmethod
    def _build(config: SketchTaskConfig, points: dict[str, EntryPoint]) -> SketchTask:
        algorithm = load_algorithm(config.algorithm, points)
        params = validate_params(algorithm, config.params, config.name)
        sketch = algorithm(params, flow_fields=config.flow_fields, element_fields=config.element_fields)
        return SketchTask(config.name, config.algorithm, config.flow_fields, config.element_fields, sketch)

    def _fail(self, task: str, plugin: str, points: dict[str, EntryPoint], reason: str) -> None:
        point = points.get(plugin)
        package = " ".join(distribution_of(point)) if point is not None else "not installed"
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
        if not len(batch) or not self._tasks:
            return
        keys: dict[tuple[KeyField, ...], npt.NDArray[np.uint8]] = {}

        def keys_of(fields: tuple[KeyField, ...]) -> npt.NDArray[np.uint8]:
            if fields not in keys:
                keys[fields] = build_keys(batch, fields)
            return keys[fields]

        sizes = np.ascontiguousarray(batch.length, dtype=np.uint64)
        for task in list(self._tasks):
            try:
                task.sketch.insert(keys_of(task.flow_fields), keys_of(task.element_fields), sizes)
            except Exception as error:  # third-party kernels must not stop the other tasks
                logger.exception("Sketch task %r failed while counting; disabling it", task.name)
                self._tasks.remove(task)
                self.failed_tasks[task.name] = f"insert raised {type(error).__name__}: {error}"

    def snapshot(self, taken_at_ns: int, period_start_ns: int) -> Snapshot:
        """Heavy hitters of every task (the sketches keep counting; nothing is reset)."""
        results = tuple(
            SketchResult(task=task.name, algorithm=task.algorithm, hitters=task.sketch.heavy_hitters())
            for task in self._tasks
        )
        return Snapshot(
            group=self.name, taken_at_ns=taken_at_ns, period_start_ns=period_start_ns, sketches=results
        )

    def reset(self) -> None:
        for task in self._tasks:
            task.sketch.reset()

    @property
    def nbytes(self) -> int:
        """Memory held by all sketches (for the stats line)."""
        return sum(int(task.sketch.memory_bytes) for task in self._tasks)
