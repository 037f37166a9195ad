"""The column batch every stage of the data path hands to the next.

Packets never travel one by one inside NetSpectra: capture parsers, the wire decoder and the
replay source all produce :class:`PacketColumns`, and the engine's numba kernels consume the
arrays directly. Addresses are always 16 bytes (IPv4 as ``::ffff:a.b.c.d``) so one kernel
serves both families; ``ip_version`` tells which text form to print.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from netspectra.model.fields import IPV4_MAPPED_PREFIX as IPV4_MAPPED_PREFIX

#: Bytes of every address column row; IPv4 is mapped into IPv6 (RFC 4291 section 2.5.5.2).
ADDRESS_WIDTH = 16

#: :meth:`PacketColumns.arrays`: the columns in field order (a fixed-length tuple, so type checkers
#: can match it against a kernel's parameters when it is splatted into a call).
ColumnArrays = tuple[
    npt.NDArray[np.int64],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint16],
    npt.NDArray[np.uint16],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint64],
    npt.NDArray[np.uint8],
]


@dataclass(slots=True)
class PacketColumns:
    """A batch of parsed packets as parallel numpy columns (one row per packet)."""

    ts_ns: npt.NDArray[np.int64]
    src_ip: npt.NDArray[np.uint8]  # shape (n, 16)
    dst_ip: npt.NDArray[np.uint8]  # shape (n, 16)
    src_port: npt.NDArray[np.uint16]
    dst_port: npt.NDArray[np.uint16]
    protocol: npt.NDArray[np.uint8]
    length: npt.NDArray[np.uint64]  # wire length (orig_len), not the captured length
    ip_version: npt.NDArray[np.uint8]  # 4 or 6

    @classmethod
    def empty(cls, capacity: int = 0) -> PacketColumns:
        """Allocate uninitialised columns for ``capacity`` packets (fill then :meth:`head`)."""
        return cls(
            ts_ns=np.empty(capacity, np.int64),
            src_ip=np.empty((capacity, ADDRESS_WIDTH), np.uint8),
            dst_ip=np.empty((capacity, ADDRESS_WIDTH), np.uint8),
            src_port=np.empty(capacity, np.uint16),
            dst_port=np.empty(capacity, np.uint16),
            protocol=np.empty(capacity, np.uint8),
            length=np.empty(capacity, np.uint64),
            ip_version=np.empty(capacity, np.uint8),
        )

    def __len__(self) -> int:
        return int(self.ts_ns.shape[0])

    def arrays(self) -> ColumnArrays:
        """The eight columns in field order, to splat into a numba kernel's arguments.

        Kernels take the columns one by one (numba cannot take this dataclass), always in this
        order: ``ts_ns, src_ip, dst_ip, src_port, dst_port, protocol, length, ip_version``.
        """
        return (
            self.ts_ns,
            self.src_ip,
            self.dst_ip,
            self.src_port,
            self.dst_port,
            self.protocol,
            self.length,
            self.ip_version,
        )

    def head(self, count: int) -> PacketColumns:
        """The first ``count`` rows, as views (no copy)."""
        return PacketColumns(
            self.ts_ns[:count],
            self.src_ip[:count],
            self.dst_ip[:count],
            self.src_port[:count],
            self.dst_port[:count],
            self.protocol[:count],
            self.length[:count],
            self.ip_version[:count],
        )

    def copy(self) -> PacketColumns:
        """An owned copy, for when the producer reuses its buffers."""
        return PacketColumns(
            self.ts_ns.copy(),
            self.src_ip.copy(),
            self.dst_ip.copy(),
            self.src_port.copy(),
            self.dst_port.copy(),
            self.protocol.copy(),
            self.length.copy(),
            self.ip_version.copy(),
        )

    @classmethod
    def concat(cls, parts: list[PacketColumns]) -> PacketColumns:
        """Join batches in order (used to gather small NATS batches into big engine batches)."""
        if not parts:
            return cls.empty(0)
        return cls(
            np.concatenate([p.ts_ns for p in parts]),
            np.concatenate([p.src_ip for p in parts]),
            np.concatenate([p.dst_ip for p in parts]),
            np.concatenate([p.src_port for p in parts]),
            np.concatenate([p.dst_port for p in parts]),
            np.concatenate([p.protocol for p in parts]),
            np.concatenate([p.length for p in parts]),
            np.concatenate([p.ip_version for p in parts]),
        )
