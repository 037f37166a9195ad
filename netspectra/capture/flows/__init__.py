"""Flow-export input: NetFlow v5/v9, IPFIX and sFlow v5 datagrams decoded into flow-record columns.

See docs/flow-export.md. :class:`ExportDecoder` reads the protocol of every datagram from its
first bytes, so one socket (or one capture) may carry all four.
"""

from __future__ import annotations

from netspectra.capture.flows.collector import ExportDecoder, is_sflow
from netspectra.capture.flows.datagrams import DatagramBatch, read_capture_datagrams

__all__ = ["DatagramBatch", "ExportDecoder", "is_sflow", "read_capture_datagrams"]
