"""Live capture from a raw AF_PACKET socket with a TPACKET_V3 memory-mapped ring, parsed by numba.

No external process and no per-packet system call: the kernel fills blocks of the ring, a numba
kernel (:func:`~netspectra.capture.kernel.walk_tpacket_v3`) walks every ready block, parses each
frame straight out of the shared memory into packet columns and hands the block back. A prototype
captured ~700 k packets/s on ``lo`` without loss at 24-69 ns of CPU per packet. ``fanout_group``
joins a ``PACKET_FANOUT`` (hash) group so several processes share one interface, each getting
whole flows.

Needs CAP_NET_RAW: run as root, or
``sudo setcap cap_net_raw,cap_net_admin=eip $(readlink -f $(which python3))``.
BPF capture filters are not compiled here: use ``probe.source: dumpcap`` for ``bpf_filter``.
"""

from __future__ import annotations

import asyncio
import contextlib
import mmap
import socket
import struct
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from netspectra.capture.kernel import SKIP_REASONS, walk_tpacket_v3, walk_tpacket_v3_go
from netspectra.errors import CaptureError
from netspectra.model.packets import PacketColumns

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
PACKET_FANOUT = 18
TPACKET_V3 = 2
PACKET_FANOUT_HASH = 0
ETH_P_ALL = 0x0003
BLOCK_SIZE = 1 << 20  # 1 MiB blocks: at most ~20 k minimal frames each
BATCH_CAPACITY = 1 << 16


def interface_linktype(iface: str) -> int:
    """pcap link type of what AF_PACKET SOCK_RAW returns for ``iface`` (from its ARPHRD type)."""
    try:
        with open(f"/sys/class/net/{iface}/type") as handle:
            arphrd = int(handle.read())
    except OSError:
        return 1
    return {1: 1, 772: 1, 65534: 101, 776: 101, 778: 101}.get(arphrd, 1)


def _arphrd(iface: str) -> int:
    try:
        with open(f"/sys/class/net/{iface}/type") as handle:
            return int(handle.read())
    except (OSError, ValueError):
        return -1


def check_interface(iface: str) -> None:
    try:
        socket.if_nametoindex(iface)
    except OSError:
        available = ", ".join(name for _, name in socket.if_nameindex())
        raise CaptureError(f"interface {iface!r} does not exist; available: {available}") from None


def warm_up_kernel(compat: str | None = None) -> None:
    """Compile (or load) the ring kernel on an empty block (also run by ``netspectra warmup``)."""
    empty = PacketColumns.empty(1)
    (walk_tpacket_v3_go if compat == "go" else walk_tpacket_v3)(
        np.zeros(64, np.uint8),
        64,
        1,
        0,
        1,
        True,
        *empty.arrays(),
        np.zeros(len(SKIP_REASONS), np.int64),
        np.zeros(2, np.int64),
    )


class AfPacketSource:
    name = "afpacket"

    def __init__(
        self,
        iface: str,
        *,
        snaplen: int = 262_144,
        buffer_mb: int = 64,
        fanout_group: int | None = None,
        bpf_filter: str = "",
        compat: str | None = None,
    ) -> None:
        if bpf_filter:
            raise CaptureError(
                "the afpacket source does not compile BPF filters: set probe.source: dumpcap to use "
                f"bpf_filter {bpf_filter!r}"
            )
        check_interface(iface)
        self._walk = walk_tpacket_v3_go if compat == "go" else walk_tpacket_v3  # chosen once
        warm_up_kernel(compat)  # compile (or load) the kernel before the ring starts filling
        self.iface = iface
        self.linktype = interface_linktype(iface)
        self.loopback = _arphrd(iface) == 772
        try:
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # receives nothing until bind
        except PermissionError:
            raise CaptureError(
                f"capturing on {iface!r} needs CAP_NET_RAW: run as root, or grant it with "
                "`sudo setcap cap_net_raw,cap_net_admin=eip $(readlink -f $(which python3))`"
            ) from None
        self.block_nr = max(4, buffer_mb * (1 << 20) // BLOCK_SIZE)
        frame_size = 1 << 11
        self.sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        request = struct.pack(
            "7I", BLOCK_SIZE, self.block_nr, frame_size, BLOCK_SIZE // frame_size * self.block_nr, 10, 0, 0
        )
        try:
            self.sock.setsockopt(SOL_PACKET, PACKET_RX_RING, request)
            self.ring_map = mmap.mmap(self.sock.fileno(), BLOCK_SIZE * self.block_nr, mmap.MAP_SHARED)
        except OSError as error:
            self.sock.close()
            raise CaptureError(f"cannot set up the AF_PACKET ring ({buffer_mb} MiB): {error}") from error
        self.sock.bind((iface, ETH_P_ALL))
        if fanout_group is not None:
            self.sock.setsockopt(SOL_PACKET, PACKET_FANOUT, fanout_group | (PACKET_FANOUT_HASH << 16))
        self.ring = np.frombuffer(self.ring_map, np.uint8)
        self.state = np.zeros(2, np.int64)
        self.skips = np.zeros(len(SKIP_REASONS), np.int64)
        self.packets = 0
        self.kernel_drops = 0
        self.kernel_packets = 0
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="netspectra-afpacket")

    def _read_kernel_stats(self) -> None:
        if self._closed:
            return
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        packets, drops, _ = struct.unpack("3I", raw)  # reset by every read: accumulate
        self.kernel_packets += packets
        self.kernel_drops += drops

    def stats(self) -> dict[str, int]:
        self._read_kernel_stats()
        skipped = {f"skipped_{SKIP_REASONS[i]}": int(c) for i, c in enumerate(self.skips) if c}
        return {"packets": self.packets, "kernel_drops": self.kernel_drops, **skipped}

    def _poll(self) -> PacketColumns:
        columns = PacketColumns.empty(BATCH_CAPACITY)
        rows = self._walk(
            self.ring,
            BLOCK_SIZE,
            self.block_nr,
            int(self.state[0]),
            self.linktype,
            self.loopback,
            *columns.arrays(),
            self.skips,
            self.state,
        )
        return columns.head(rows)

    async def batches(self) -> AsyncIterator[PacketColumns]:
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        fd = self.sock.fileno()
        loop.add_reader(fd, readable.set)
        try:
            while not self._closed:
                batch = await loop.run_in_executor(self._executor, self._poll)
                if len(batch):
                    self.packets += len(batch)
                    yield batch
                    continue
                readable.clear()
                # the block retire timeout (10 ms) makes partly filled blocks ready, too
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(readable.wait(), 0.05)
        finally:
            if not self._closed:
                loop.remove_reader(fd)

    async def close(self) -> None:
        if self._closed:
            return
        self._read_kernel_stats()
        self._closed = True
        with _suppress_oserror():
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
        self._executor.shutdown(wait=True)
        del self.ring
        self.ring_map.close()
        self.sock.close()


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return exc[0] is not None and issubclass(exc[0], (OSError, ValueError))  # type: ignore[arg-type]


__all__ = ["AfPacketSource", "check_interface", "interface_linktype"]
