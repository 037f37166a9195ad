"""The column batch of flow records: what a NetFlow/IPFIX/sFlow collector hands the engine.

A flow record says "N packets, B bytes for this 5-tuple between first and last seen", so unlike
:class:`~netspectra.model.packets.PacketColumns` every row carries weights. ``packets`` and
``bytes`` are estimates of the real traffic: the exported counts multiplied by the sampling rate
in effect for that record; ``raw_packets`` and ``raw_bytes`` keep what the exporter sent.
Addresses are 16 bytes with IPv4 mapped, as in the packet columns, so the engine's key kernels
serve both.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from netspectra.model.packets import ADDRESS_WIDTH, PacketColumns


@dataclass(slots=True)
class FlowColumns:
    """A batch of flow records as parallel numpy columns (one row per record)."""

    first_ns: npt.NDArray[np.int64]
    last_ns: npt.NDArray[np.int64]
    src_ip: npt.NDArray[np.uint8]  # shape (n, 16)
    dst_ip: npt.NDArray[np.uint8]  # shape (n, 16)
    src_port: npt.NDArray[np.uint16]
    dst_port: npt.NDArray[np.uint16]
    protocol: npt.NDArray[np.uint8]
    ip_version: npt.NDArray[np.uint8]  # 4 or 6
    packets: npt.NDArray[np.uint64]  # raw_packets x sampling_rate
    bytes: npt.NDArray[np.uint64]  # raw_bytes x sampling_rate
    raw_packets: npt.NDArray[np.uint64]
    raw_bytes: npt.NDArray[np.uint64]
    sampling_rate: npt.NDArray[np.uint32]  # 1 = unsampled
    exporter: npt.NDArray[np.uint8]  # shape (n, 16): the exporter's (agent's) address, IPv4 mapped

    @classmethod
    def empty(cls, capacity: int = 0) -> FlowColumns:
        """Allocate uninitialised columns for ``capacity`` records (fill then :meth:`head`)."""
        return cls(
            first_ns=np.empty(capacity, np.int64),
            last_ns=np.empty(capacity, np.int64),
            src_ip=np.empty((capacity, ADDRESS_WIDTH), np.uint8),
            dst_ip=np.empty((capacity, ADDRESS_WIDTH), np.uint8),
            src_port=np.empty(capacity, np.uint16),
            dst_port=np.empty(capacity, np.uint16),
            protocol=np.empty(capacity, np.uint8),
            ip_version=np.empty(capacity, np.uint8),
            packets=np.empty(capacity, np.uint64),
            bytes=np.empty(capacity, np.uint64),
            raw_packets=np.empty(capacity, np.uint64),
            raw_bytes=np.empty(capacity, np.uint64),
            sampling_rate=np.empty(capacity, np.uint32),
            exporter=np.empty((capacity, ADDRESS_WIDTH), np.uint8),
        )

    def __len__(self) -> int:
        return int(self.first_ns.shape[0])

    def head(self, count: int) -> FlowColumns:
        """The first ``count`` rows, as views (no copy)."""
        return FlowColumns(*(getattr(self, f.name)[:count] for f in fields(self)))

    def rows(self, start: int, stop: int) -> FlowColumns:
        """Rows ``start:stop``, as views (no copy)."""
        return FlowColumns(*(getattr(self, f.name)[start:stop] for f in fields(self)))

    def take(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> FlowColumns:
        """The rows selected by a mask or an index array (copies)."""
        return FlowColumns(*(getattr(self, f.name)[rows] for f in fields(self)))

    @classmethod
    def concat(cls, parts: list[FlowColumns]) -> FlowColumns:
        """Join batches in order."""
        if not parts:
            return cls.empty(0)
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def as_packets(self) -> PacketColumns:
        """One packet row per record (timestamp = last seen, length = the renormalised bytes).

        For the tasks that count each element once whatever its weight (spread sketches: a
        distinct destination is distinct once), and for every task that has no weighted entry point.
        """
        return PacketColumns(
            ts_ns=self.last_ns,
            src_ip=self.src_ip,
            dst_ip=self.dst_ip,
            src_port=self.src_port,
            dst_port=self.dst_port,
            protocol=self.protocol,
            length=self.bytes,
            ip_version=self.ip_version,
        )
