"""Capture: turn pcap/pcapng bytes (files, pipes, probes) into packet column batches.

* :mod:`.kernel` — the per-frame decoder (link layer → outermost IP → ports), its rules, and the
  numba walkers over pcap records and pcapng blocks;
* :mod:`.stream` — :class:`CaptureStreamParser`, the incremental parser for arbitrary pieces;
* :mod:`.reader` — :class:`CaptureReader`, files in bounded memory via ``readinto``.
"""

from netspectra.capture.reader import CaptureReader
from netspectra.capture.stream import CaptureStreamParser

__all__ = ["CaptureReader", "CaptureStreamParser"]
