"""The ``sketch`` aggregator group: one sketch per configured task, each from a plugin.

A task whose plugin cannot be imported, fails the protocol check, rejects its parameters or
raises while counting is logged at ERROR (task, plugin, distribution, reason), recorded in
:attr:`SketchGroup.failed_tasks` and skipped: the other tasks keep running.

Epochs (``include_state``, the default). A store answers windows ("the heavy hitters between 10:00
and 10:15") by merging the states of the epochs inside the window, so each snapshot must carry what
was counted since the previous one, not since the period began. A mergeable task therefore keeps two
sketches: ``sketch`` counts the current epoch, ``period`` holds the epochs before it, merged. A
snapshot writes ``sketch``'s state (the epoch), merges it into ``period``, reads the hitters from
``period`` (cumulative, as Go writes them) and hands the epoch's sketch over detached (a fresh one
counts the next epoch). Counting costs the same (one sketch per packet); under the engine's lock a
snapshot costs one merge and the hitter scan, and the serialisation (shuffle and zstd over megabytes, the
costly part) happens in the writer's thread when it reads the state
(:class:`~netspectra.model.snapshot.DeferredState`; measured in bench/sketch_state.py). The first
epoch of a period is not merged: ``sketch`` simply becomes ``period``, so a run with a single
snapshot (``analyze``) reports exactly what the sketch counted. spread_sketch merges bit for bit, so
its hitters are the same as without epochs; count_min's merged hitters come from its candidate
summaries (see count_min.py). An algorithm that cannot merge counts the whole period in one sketch,
as before.

Runs (:mod:`netspectra.engine.sketch.runs`). The snapshot that closes the last epoch of an aligned
run of :data:`~netspectra.engine.sketch.runs.RUN_EPOCHS` epochs, or the period's last epoch (the
engine takes that snapshot with :meth:`SketchGroup.snapshot_closing_period`), also carries the
run's merged state (:class:`~netspectra.model.snapshot.RunState`), so a query over the whole run
reads one state instead of eight. Under the lock that costs a list append per epoch; the merge
(from the epochs' stored bytes: ~150 ms CPU for the three default tasks, once per 8 snapshots,
measured in bench/sketch_state.py's setting) happens in the writer's thread, like the epoch's
serialisation. A run of one epoch is not written: it would be its epoch again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np
import numpy.typing as npt

from netspectra.config.models import Settings, SketchTaskConfig
from netspectra.engine.sketch import runs
from netspectra.engine.sketch.merging import labelled
from netspectra.engine.sketch.params import SketchParams
from netspectra.engine.sketch.protocol import SketchAlgorithm
from netspectra.engine.sketch.registry import discover, distribution_of, load_algorithm, validate_params
from netspectra.errors import PluginError
from netspectra.model.fields import KeyField
from netspectra.model.flows import FlowColumns
from netspectra.model.packets import PacketColumns
from netspectra.model.snapshot import DeferredState, HeavyHitter, RunState, SketchResult, Snapshot
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
    params: SketchParams | None = None
    #: the period's epochs before the current one, merged (None: first epoch, or no epochs kept)
    period: SketchAlgorithm | None = None
    #: the epochs of the run not closed yet: (epoch, its start, its end, its state as its row stores it)
    run: list[tuple[int, int, int, Callable[[], bytes | None]]] = field(default_factory=list)

    @property
    def keeps_epochs(self) -> bool:
        return bool(getattr(self.sketch, "mergeable", False)) and self.params is not None

    def fresh_sketch(self) -> SketchAlgorithm:
        """An empty sketch with this task's parameters (and so its seeds)."""
        assert self.params is not None
        fields = {"flow_fields": self.flow_fields, "element_fields": self.element_fields}
        return type(self.sketch)(self.params, **fields)


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
        #: snapshots taken since the engine started (each one closes an epoch) and the last one's time
        self._epoch = 0
        self._epoch_start_ns = 0
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
        return SketchTask(
            config.name, config.algorithm, config.flow_fields, config.element_fields, sketch, params
        )

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

    def insert_flow_jobs(self, flows: FlowColumns) -> list[tuple[str, Callable[[], None]]]:
        """Flow records: a sketch with ``insert_weighted`` (count_min) adds each record's packets and
        bytes; any other (spread sketches: a distinct element counts once) sees each record once."""
        if not len(flows) or not self._tasks:
            return []
        keys = _BatchKeys(flows.as_packets())
        sizes = np.ascontiguousarray(flows.bytes, dtype=np.uint64)
        weights = np.ascontiguousarray(flows.packets, dtype=np.uint64)
        return [
            (f"sketch.{task.name}", partial(self._insert_task, task, keys, sizes, weights))
            for task in self._tasks
        ]

    def _insert_task(
        self,
        task: SketchTask,
        keys: _BatchKeys,
        sizes: npt.NDArray[np.uint64],
        weights: npt.NDArray[np.uint64] | None = None,
    ) -> None:
        try:
            weighted = getattr(task.sketch, "insert_weighted", None) if weights is not None else None
            if weighted is not None:
                weighted(keys.get(task.flow_fields), keys.get(task.element_fields), sizes, weights)
                return
            task.sketch.insert(keys.get(task.flow_fields), keys.get(task.element_fields), sizes)
        except Exception as error:  # third-party kernels must not stop the other tasks
            logger.exception("Sketch task %r failed while counting; disabling it", task.name)
            with self._failures:
                if task in self._tasks:
                    self._tasks.remove(task)
                self.failed_tasks[task.name] = f"insert raised {type(error).__name__}: {error}"

    def snapshot(self, taken_at_ns: int, period_start_ns: int) -> Snapshot:
        """Cumulative heavy hitters of every task and, for each that merges, the state of the epoch
        this snapshot closes and of the run it closes, if it closes one (see the module docstring)."""
        return self._snapshot(taken_at_ns, period_start_ns, closes_period=False)

    def snapshot_closing_period(self, taken_at_ns: int, period_start_ns: int) -> Snapshot:
        """:meth:`snapshot` taken just before the period's reset: it closes every task's run too."""
        return self._snapshot(taken_at_ns, period_start_ns, closes_period=True)

    def _snapshot(self, taken_at_ns: int, period_start_ns: int, *, closes_period: bool) -> Snapshot:
        epoch_start = max(self._epoch_start_ns, period_start_ns)
        results: list[SketchResult] = []
        for task in list(self._tasks):
            try:
                deferred: DeferredState | None = None
                state: bytes | None = None
                run: RunState | None = None
                if self.include_state and task.keeps_epochs:
                    hitters, made = self._close_epoch(task)
                    if isinstance(made, DeferredState):
                        deferred = made
                    else:
                        state = made
                    run = self._extend_run(task, (epoch_start, taken_at_ns), made, closes_period)
                else:
                    hitters = task.sketch.heavy_hitters()
            except Exception as error:  # third-party merge/reset/heavy_hitters code
                logger.exception("Sketch task %r failed while taking a snapshot; disabling it", task.name)
                with self._failures:
                    if task in self._tasks:
                        self._tasks.remove(task)
                    self.failed_tasks[task.name] = f"snapshot raised {type(error).__name__}: {error}"
                continue
            results.append(
                SketchResult(
                    task=task.name,
                    algorithm=task.algorithm,
                    hitters=hitters,
                    state=state,
                    epoch=self._epoch,
                    epoch_start_ns=epoch_start,
                    deferred_state=deferred,
                    run=run,
                )
            )
        self._epoch += 1
        self._epoch_start_ns = taken_at_ns
        return Snapshot(
            group=self.name, taken_at_ns=taken_at_ns, period_start_ns=period_start_ns, sketches=tuple(results)
        )

    def _close_epoch(self, task: SketchTask) -> tuple[tuple[HeavyHitter, ...], bytes | DeferredState | None]:
        """The period's hitters and the closing epoch's state; a fresh ``sketch`` starts the next one.

        The epoch's sketch leaves the task, so it is serialised later, off the engine's lock, by
        the writer that reads the state (a period's first epoch becomes ``period`` and changes
        with the next merge: it is serialised now, once per period).
        """
        epoch = task.sketch
        task.sketch = task.fresh_sketch()
        if task.period is None:
            task.period = epoch
            return epoch.heavy_hitters(), self._state_of(task.name, epoch)
        task.period.merge(epoch)
        return task.period.heavy_hitters(), DeferredState(partial(self._state_of, task.name, epoch))

    def _extend_run(
        self,
        task: SketchTask,
        bounds: tuple[int, int],
        made: bytes | DeferredState | None,
        closes_period: bool,
    ) -> RunState | None:
        """Add the closing epoch (``bounds``: its start and end) to ``task``'s run; the run's state
        when this epoch closes the run."""
        state = made if isinstance(made, DeferredState) else partial(_given, made)
        task.run.append((self._epoch, *bounds, state))
        if not (runs.closes_run(self._epoch) or closes_period):
            return None
        epochs, task.run = task.run, []
        if len(epochs) < 2:
            return None
        states = tuple((epoch, state) for epoch, _, _, state in epochs)
        merge = partial(self._run_state_of, task.name, type(task.sketch), states)
        first, first_start, first_end, _ = epochs[0]
        return RunState(first, epochs[-1][0], first_start, first_end, states, DeferredState(merge))

    @staticmethod
    def _run_state_of(
        task: str,
        algorithm: type[SketchAlgorithm],
        epochs: Sequence[tuple[int, Callable[[], bytes | None]]],
    ) -> bytes | None:
        """The run's merged state from its epochs' bytes (:func:`runs.run_state`); None when an epoch
        has none or the merge fails (logged: the epoch rows are still written, queries read them)."""
        try:
            states = []
            for epoch, state in epochs:
                data = state()
                if not data:
                    return None
                states.append(labelled(f"epoch {epoch}", data))
            return runs.run_state(task, algorithm, states)
        except Exception:  # third-party merge/serialisation code: the snapshot must still be written
            logger.exception(
                "Sketch task %r: the state of a run of epochs could not be made; epochs only", task
            )
            return None

    @staticmethod
    def _state_of(task: str, sketch: SketchAlgorithm) -> bytes | None:
        """``sketch``'s state bytes; None when its ``to_bytes`` fails (logged: the hitter rows are
        still written; multi-engine and windowed answers of this task are refused, naming why)."""
        try:
            return bytes(sketch.to_bytes())
        except Exception:  # third-party code: the snapshot must still be taken
            logger.exception("Sketch task %r: its state could not be serialised; writing hitters only", task)
            return None

    def reset(self) -> None:
        for task in self._tasks:
            task.sketch.reset()
            task.period = None
            task.run = []

    @property
    def nbytes(self) -> int:
        """Memory held by all sketches (for the stats line)."""
        return sum(
            int(task.sketch.memory_bytes) + (int(task.period.memory_bytes) if task.period is not None else 0)
            for task in self._tasks
        )


def _given(state: bytes | None) -> bytes | None:
    return state
