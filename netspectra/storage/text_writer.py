"""The ``text`` writer: sketch heavy hitters as plain text files, laid out as Go2NetSpectra does.

``<root_path>/<YYYY-MM-DD_HH-MM-SS>/<task>/count_hh.txt`` and ``size_hh.txt`` (count_min),
``spread_ss.txt`` (super_spread), one ``"<flow> <value>"`` line per hitter, descending. The
directory name is the snapshot's wall-clock time in local time (Go formats ``time.Now()``).
Files are written to a temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

from netspectra.config.models import WriterConfig
from netspectra.errors import ConfigError, StorageError
from netspectra.model.snapshot import HitterKind, SketchResult, Snapshot
from netspectra.storage.context import StorageContext

logger = logging.getLogger(__name__)

#: File name of each kind of hitter (Go's names).
FILE_OF_KIND: dict[HitterKind, str] = {
    HitterKind.COUNT: "count_hh.txt",
    HitterKind.SIZE: "size_hh.txt",
    HitterKind.SPREAD: "spread_ss.txt",
}
#: Kinds the built-ins always report, so an empty result still gets (empty) files, as in Go.
KINDS_OF_ALGORITHM: dict[str, tuple[HitterKind, ...]] = {
    "count_min": (HitterKind.COUNT, HitterKind.SIZE),
    "super_spread": (HitterKind.SPREAD,),
}
DIRECTORY_FORMAT = "%Y-%m-%d_%H-%M-%S"


def snapshot_directory_name(taken_at_ns: int) -> str:
    """``YYYY-MM-DD_HH-MM-SS`` of a wall-clock nanosecond timestamp, local time."""
    return time.strftime(DIRECTORY_FORMAT, time.localtime(taken_at_ns / 1e9))


class TextWriter:
    """Writes each sketch snapshot to a new timestamped directory under ``root_path``."""

    def __init__(self, root_path: str | os.PathLike[str]) -> None:
        self.root_path = Path(root_path)
        self._closed = False

    @classmethod
    def from_config(cls, config: WriterConfig, *, group: str, context: StorageContext) -> TextWriter:
        if group != "sketch":
            raise ConfigError(
                f"aggregator.{group}.writers: the 'text' writer writes sketch heavy hitters only; "
                "use 'file' (or Go's 'gob') for exact flows"
            )
        return cls(config.path_options.root_path)

    async def write(self, snapshot: Snapshot) -> None:
        """Write every task's hitters (file IO in a worker thread)."""
        if self._closed:
            raise StorageError("text writer is closed")
        if not snapshot.sketches:
            return
        await asyncio.to_thread(self._write_files, snapshot)

    def _write_files(self, snapshot: Snapshot) -> None:
        directory = self.root_path / snapshot_directory_name(snapshot.taken_at_ns)
        total = 0
        try:
            for result in snapshot.sketches:
                total += self._write_task(directory / result.task, result)
        except OSError as error:
            raise StorageError(f"text writer cannot write under {directory}: {error}") from error
        logger.info("Wrote %d heavy hitters of %d tasks to %s", total, len(snapshot.sketches), directory)

    @staticmethod
    def _write_task(task_directory: Path, result: SketchResult) -> int:
        task_directory.mkdir(parents=True, exist_ok=True)
        kinds = list(KINDS_OF_ALGORITHM.get(result.algorithm, ()))
        kinds += [hitter.kind for hitter in result.hitters if hitter.kind not in kinds]
        for kind in kinds:
            hitters = sorted(
                (hitter for hitter in result.hitters if hitter.kind == kind),
                key=lambda hitter: (-hitter.value, hitter.flow),
            )
            target = task_directory / FILE_OF_KIND[kind]
            temporary = target.with_suffix(".tmp")
            temporary.write_text("".join(f"{hitter.flow} {hitter.value}\n" for hitter in hitters))
            temporary.replace(target)
        return len(result.hitters)

    async def close(self) -> None:
        """Nothing is buffered; further writes are refused."""
        self._closed = True
