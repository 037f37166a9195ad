"""Read a pcap or pcapng file as batches of packet columns, in bounded memory.

The reader is the stream parser fed by ``readinto`` into one reused buffer: a prototype walked
13.5 M packets/s this way, while memory-mapping the file was 3x slower from page faults. Memory
stays at about ``chunk_bytes`` plus one batch, whatever the file size.

Example::

    with CaptureReader("trace.pcap") as reader:
        for batch in reader:
            engine.process(batch)
        print(reader.packets, reader.skips, reader.error)
"""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Iterator
from types import TracebackType
from typing import BinaryIO

from netspectra.capture.stream import CaptureStreamParser
from netspectra.errors import CaptureError
from netspectra.model.packets import PacketColumns


class CaptureReader:
    """Iterate a capture file (path or binary file object) as :class:`PacketColumns` batches.

    Each yielded batch owns its arrays (the reader never writes to them again). Counters are
    cumulative and readable during iteration: ``bytes_read``/``total_bytes`` drive a progress
    bar (``total_bytes`` is ``None`` for pipes), ``frames``/``packets``/``bytes``/``skips`` are
    those of :class:`~netspectra.capture.stream.CaptureStreamParser`, and ``error`` holds the
    message that ended a corrupt or truncated file early (packets before it were yielded).
    Opening a path that does not exist raises :class:`~netspectra.errors.CaptureError`.
    ``compat="go"`` decodes as gopacket 1.1.19 (``probe.compat``; docs/go-compatibility.md).
    """

    def __init__(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        *,
        batch_size: int = 65536,
        chunk_bytes: int = 8 << 20,
        compat: str | None = None,
    ) -> None:
        if batch_size < 1 or chunk_bytes < 64:
            raise ValueError(
                f"batch_size must be >= 1 and chunk_bytes >= 64 (got {batch_size}, {chunk_bytes})"
            )
        self._owns_file = not hasattr(source, "read")
        if self._owns_file:
            try:
                self._file: BinaryIO = open(source, "rb", buffering=0)  # type: ignore[arg-type,assignment]  # noqa: SIM115
            except OSError as exc:
                name = os.fspath(source)  # type: ignore[arg-type]
                raise CaptureError(f"cannot open capture file {name!r}: {exc.strerror}") from exc
        else:
            self._file = source  # type: ignore[assignment]
        self.total_bytes: int | None = None
        try:
            info = os.fstat(self._file.fileno())
            if stat.S_ISREG(info.st_mode):
                self.total_bytes = info.st_size
        except (OSError, AttributeError, io.UnsupportedOperation):
            pass
        self.bytes_read = 0
        self._batch_size = batch_size
        self._chunk_bytes = chunk_bytes
        self._parser = CaptureStreamParser(initial_buffer=chunk_bytes, compat=compat)
        self._iterated = False

    # Counters delegate to the stream parser.
    @property
    def frames(self) -> int:
        return self._parser.frames

    @property
    def packets(self) -> int:
        return self._parser.packets

    @property
    def bytes(self) -> int:
        return self._parser.bytes

    @property
    def skips(self) -> dict[str, int]:
        return self._parser.skips

    @property
    def error(self) -> str | None:
        return self._parser.error

    @property
    def linktypes(self) -> list[int]:
        """Link types declared by the file (pcap: one; pcapng: one per interface)."""
        return self._parser.linktypes

    def __iter__(self) -> Iterator[PacketColumns]:
        """Yield the batches; the file (if the reader opened it) is closed when this ends, however."""
        if self._iterated:
            raise CaptureError("a CaptureReader can be iterated only once; open a new one")
        self._iterated = True
        try:
            parser = self._parser
            readinto = getattr(self._file, "readinto", None)
            columns = PacketColumns.empty(self._batch_size)
            n = 0
            while parser.error is None:
                # Leftover is less than one record; grow only if a single record exceeds the buffer.
                view = parser._writable(max(self._chunk_bytes - parser.pending, parser.pending + 1, 64))
                if readinto is not None:
                    got = readinto(view)
                else:
                    data = self._file.read(len(view))
                    got = len(data)
                    view[:got] = data
                if not got:
                    break
                parser._commit(got)
                self.bytes_read += got
                while True:
                    n = parser.parse_into(columns, n, self._batch_size)
                    if n < self._batch_size:
                        break
                    yield columns
                    columns = PacketColumns.empty(self._batch_size)
                    n = 0
            parser.close()
            if n:
                yield columns.head(n)
        finally:
            self.close()  # exhausted, broken off (generator closed) or failed: the file is done

    def close(self) -> None:
        """Close the file if this reader opened it (idempotent)."""
        if self._owns_file and not self._file.closed:
            self._file.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
