"""Replay a capture file through the probe: as fast as possible, at ``rate`` packets/s, or at
``speed`` times the capture's own pace (for tests and demos)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from netspectra.capture.reader import CaptureReader
from netspectra.model.packets import PacketColumns

#: Packets per yielded batch: small enough to pace smoothly and keep publish latency low.
CHUNK = 4096


class FileReplaySource:
    name = "file"

    def __init__(
        self, path: str, *, rate: float | None = None, speed: float | None = None, compat: str | None = None
    ) -> None:
        self.path = path
        self.rate = rate
        self.speed = speed
        self._reader = CaptureReader(path, compat=compat)  # raises CaptureError naming the file when missing
        self.packets = 0

    def stats(self) -> dict[str, int]:
        return {"packets": self.packets, **{f"skipped_{k}": v for k, v in self._reader.skips.items()}}

    async def batches(self) -> AsyncIterator[PacketColumns]:
        loop = asyncio.get_running_loop()
        iterator = iter(self._reader)
        start = time.monotonic()
        first_ts: int | None = None
        while True:
            batch = await loop.run_in_executor(None, next, iterator, None)
            if batch is None:
                break
            arrays: tuple[Any, ...] = batch.arrays()  # each column sliced alike: dtypes do not matter
            for begin in range(0, len(batch), CHUNK):
                chunk = PacketColumns(*(column[begin : begin + CHUNK] for column in arrays))
                if self.rate is not None:
                    due = start + self.packets / self.rate
                    await _sleep_until(due)
                elif self.speed is not None and len(chunk):
                    if first_ts is None:
                        first_ts = int(chunk.ts_ns[0])
                    due = start + (int(chunk.ts_ns[0]) - first_ts) / 1e9 / self.speed
                    await _sleep_until(due)
                self.packets += len(chunk)
                yield chunk
        if self._reader.error:
            raise_error = self._reader.error
            import logging

            logging.getLogger(__name__).warning("Replay of %s ended early: %s", self.path, raise_error)

    async def close(self) -> None:
        self._reader.close()


async def _sleep_until(due: float) -> None:
    delay = due - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)
