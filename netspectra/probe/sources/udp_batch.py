"""UDP datagrams taken from a socket a batch at a time, with the kernel's drops counted.

Why not asyncio's datagram endpoint: it makes one ``recvfrom`` per wake-up, a bytes object, a
tuple and a protocol call per datagram, so a collector spends its time in the event loop, not in
the decoder; and what the kernel drops when the socket buffer overflows is invisible to it.

Here one non-blocking ``recvmmsg(2)`` call (Linux, through ctypes: no library wraps it) fills up
to ``batch`` slots of one numpy buffer straight from the kernel, so a wake-up costs one system
call and a few vectorised numpy operations, whatever the number of datagrams; the result is a
:class:`~netspectra.capture.flows.DatagramBatch` the decoders take as it is. The call is made
through ``ctypes.PyDLL`` (the GIL stays held): it never blocks (``MSG_DONTWAIT``), and a call
that released the GIL would wait for it again behind the decoder thread (the GIL's switch
interval, 5 ms, per call).

Loss the collector cannot see is the worst kind, so kernel drops are counted twice over:
``SO_RXQ_OVFL`` makes the kernel attach its running drop count to every datagram received after
a drop, and :func:`proc_udp_drops` reads the ``drops`` column of ``/proc/net/udp{,6}`` for the
socket (which also sees drops after the last datagram). ``kernel_drops`` is the larger of both.

Elsewhere (not Linux, or not 64-bit) a ``recvmsg_into`` loop fills the same buffer.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import logging
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np

from netspectra.capture.flows.datagrams import DatagramBatch
from netspectra.model.packets import IPV4_MAPPED_PREFIX

logger = logging.getLogger(__name__)

#: Bytes per datagram slot: a jumbo frame's payload (GoFlow2 reads 9000); a longer datagram is
#: cut by the kernel and counted as ``oversize`` (no exporter sends one: they fit their MTU).
SLOT = 9216
SO_RXQ_OVFL = getattr(socket, "SO_RXQ_OVFL", 40)  # Linux value; not exported by Python
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
MSG_DONTWAIT = getattr(socket, "MSG_DONTWAIT", 0x40)
MSG_TRUNC = getattr(socket, "MSG_TRUNC", 0x20)
_NAME = 32  # sockaddr_in6 (28) rounded up
_CONTROL = 32  # one cmsghdr (16) + a uint32 drop count, aligned

# struct mmsghdr on LP64 Linux: msghdr (56 bytes) + msg_len (uint32) + padding = 64 bytes
_MMSG = 64
_OFF_NAME, _OFF_NAMELEN, _OFF_IOV, _OFF_IOVLEN = 0, 8, 16, 24
_OFF_CONTROL, _OFF_CONTROLLEN, _OFF_FLAGS, _OFF_LEN = 32, 40, 48, 56


def _load_recvmmsg() -> object | None:
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        libc = ctypes.PyDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        function = libc.recvmmsg
    except (OSError, AttributeError):
        return None
    function.restype = ctypes.c_int
    function.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    return function


_RECVMMSG = _load_recvmmsg()


def set_receive_buffer(sock: socket.socket, wanted: int) -> int:
    """Ask for ``wanted`` bytes of socket receive buffer; return what the kernel granted.

    ``SO_RCVBUF`` is capped at ``net.core.rmem_max`` (often 208 KiB: a few hundred datagrams);
    ``SO_RCVBUFFORCE`` passes the cap when the process may (CAP_NET_ADMIN). What is granted below
    ``wanted`` is logged as a WARNING naming the sysctl, since that buffer is all that holds a
    burst while a batch is decoded. Linux reports twice the bookkeeping size it sets; the figure
    returned is the usable half, comparable with ``wanted``.
    """
    linux = sys.platform.startswith("linux")
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, wanted)
    granted = _granted(sock, linux)
    if granted < wanted and linux:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, wanted)
        granted = _granted(sock, linux)
    if granted < wanted:
        logger.warning(
            "Flow collector socket %s: asked for a %d-byte receive buffer, the kernel granted %d"
            " (net.core.rmem_max caps it and this process may not pass the cap): bursts beyond it"
            " are dropped by the kernel (counted as kernel drops). Raise it with"
            " `sysctl -w net.core.rmem_max=%d`",
            _address(sock),
            wanted,
            granted,
            wanted,
        )
    return granted


def _granted(sock: socket.socket, linux: bool) -> int:
    value = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    return value // 2 if linux else value


def _address(sock: socket.socket) -> str:
    try:
        host, port = sock.getsockname()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


def proc_udp_drops(inodes: set[int], root: Path = Path("/proc/net")) -> dict[int, int]:
    """``drops`` of the UDP sockets with these inodes (``/proc/net/udp`` and ``udp6``); {} if unreadable."""
    found: dict[int, int] = {}
    for name in ("udp", "udp6"):
        try:
            lines = (root / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) >= 13 and fields[9].isdigit() and int(fields[9]) in inodes:
                found[int(fields[9])] = int(fields[-1])
    return found


class BatchReceiver:
    """One bound UDP socket read in batches; owns the socket (``close()``), counts what it loses.

    Datagrams accumulate in one buffer of ``batch`` slots: :meth:`fill` (called from the event
    loop whenever the socket is readable) takes every datagram queued, without blocking, into the
    free slots; :meth:`take` hands the filled slots over as one DatagramBatch and starts a fresh
    buffer, so what arrives while a batch is decoded becomes the next batch. A full buffer is
    ``full``: the caller stops reading, and the socket's kernel buffer holds the rest (what it
    cannot hold is dropped there, and counted by :meth:`kernel_drops`).
    """

    def __init__(self, sock: socket.socket, *, batch: int, use_recvmmsg: bool = True) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.batch = batch
        self.inode = os.fstat(sock.fileno()).st_ino
        self.kernel_drops_seen = 0  # from SO_RXQ_OVFL
        self.oversize = 0
        self.datagrams = 0
        self.receive_calls = 0
        self._closed_drops: int | None = None
        self._recvmmsg = _RECVMMSG if use_recvmmsg else None
        self._rxq_ovfl = False
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
            self._rxq_ovfl = True
        self._slot_offsets = np.arange(batch, dtype=np.int64) * SLOT
        self._v6 = sock.family == socket.AF_INET6
        if self._recvmmsg is not None:
            self._headers = np.zeros(batch * _MMSG, np.uint8)
            self._names = np.zeros(batch * _NAME, np.uint8)
            self._controls = np.zeros(batch * _CONTROL, np.uint8)
            self._iovecs = np.zeros((batch, 2), np.uint64)
            words = self._headers.view(np.uint64).reshape(batch, _MMSG // 8)
            slots = np.arange(batch, dtype=np.uint64)
            words[:, _OFF_NAME // 8] = np.uint64(self._names.ctypes.data) + slots * np.uint64(_NAME)
            words[:, _OFF_IOV // 8] = np.uint64(self._iovecs.ctypes.data) + slots * np.uint64(16)
            words[:, _OFF_IOVLEN // 8] = 1
            words[:, _OFF_CONTROL // 8] = np.uint64(self._controls.ctypes.data) + slots * np.uint64(_CONTROL)
            self._words = words
            self._halves = self._headers.view(np.uint32).reshape(batch, _MMSG // 4)
            self._iovecs[:, 1] = SLOT
        self._fresh()

    def _fresh(self) -> None:
        # np.empty: pages the kernel never writes into are never touched (a quiet socket's buffer
        # costs address space, not memory)
        self._buf = np.empty(self.batch * SLOT, np.uint8)
        self._lengths = np.zeros(self.batch, np.int64)
        self._exporter = np.zeros((self.batch, 16), np.uint8)
        if not self._v6:
            self._exporter[:, :12] = np.frombuffer(IPV4_MAPPED_PREFIX, np.uint8)
        self._stamps = np.zeros(self.batch, np.int64)
        self._filled = 0
        if self._recvmmsg is not None:
            self._iovecs[:, 0] = np.uint64(self._buf.ctypes.data) + self._slot_offsets.astype(np.uint64)

    @property
    def batched(self) -> bool:
        """True when a wake-up is one recvmmsg call (False: a recvmsg_into loop)."""
        return self._recvmmsg is not None

    @property
    def full(self) -> bool:
        return self._filled >= self.batch

    @property
    def pending(self) -> int:
        """Datagrams received and not yet taken."""
        return self._filled

    def fill(self) -> int:
        """Receive what is queued into the free slots (never blocks); the number received."""
        if self.full:
            return 0
        self.receive_calls += 1
        got = self._fill_mmsg() if self._recvmmsg is not None else self._fill_loop()
        self.datagrams += got
        return got

    def take(self) -> DatagramBatch | None:
        """The datagrams received so far as one batch (None if none); later ones go to a new buffer."""
        if not self._filled:
            return None
        n = self._filled
        keep = self._lengths[:n] >= 0  # -1: cut by the kernel (longer than a slot)
        batch = DatagramBatch(
            self._buf,
            self._slot_offsets[:n][keep],
            self._lengths[:n][keep],
            self._exporter[:n][keep],
            self._stamps[:n][keep],
        )
        self._fresh()
        return batch if len(batch) else None

    def _fill_mmsg(self) -> int:
        start = self._filled
        room = self.batch - start
        self._halves[start:, _OFF_NAMELEN // 4] = _NAME
        self._words[start:, _OFF_CONTROLLEN // 8] = _CONTROL if self._rxq_ovfl else 0
        address = self._headers.ctypes.data + start * _MMSG
        count = self._recvmmsg(self.sock.fileno(), address, room, MSG_DONTWAIT, None)  # type: ignore[misc,operator]
        if count < 0:
            code = ctypes.get_errno()
            if code in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(code, f"recvmmsg on {_address(self.sock)}: {os.strerror(code)}")
        if count == 0:
            return 0
        end = start + count
        halves = self._halves[start:end]
        lengths = halves[:, _OFF_LEN // 4].astype(np.int64)
        cut = (halves[:, _OFF_FLAGS // 4] & MSG_TRUNC) != 0
        if cut.any():
            self.oversize += int(cut.sum())
            lengths[cut] = -1
        self._lengths[start:end] = lengths
        names = self._names[start * _NAME : end * _NAME].reshape(count, _NAME)
        if self._v6:  # sockaddr_in6 for every sender (IPv4 ones arrive mapped on a dual-stack socket)
            self._exporter[start:end] = names[:, 8:24]
        else:  # sockaddr_in
            self._exporter[start:end, 12:] = names[:, 4:8]
        self._stamps[start:end] = time.time_ns()
        if self._rxq_ovfl:
            self._read_drop_count(start, end)
        self._filled = end
        return int(count)

    def _read_drop_count(self, start: int, end: int) -> None:
        """The kernel's running drop count from the last datagram that carries one (it only grows)."""
        carrying = np.flatnonzero(self._words[start:end, _OFF_CONTROLLEN // 8] >= 20)
        if not len(carrying):
            return
        at = (start + int(carrying[-1])) * _CONTROL
        control = self._controls[at : at + _CONTROL]
        level, kind = (int(x) for x in control[8:16].view(np.int32))
        if level == socket.SOL_SOCKET and kind == SO_RXQ_OVFL:
            self.kernel_drops_seen = max(self.kernel_drops_seen, int(control[16:20].view(np.uint32)[0]))

    def _fill_loop(self) -> int:
        view = memoryview(self._buf.data)
        start = slot = self._filled
        while slot < self.batch:
            try:
                size, _ancillary, flags, address = self.sock.recvmsg_into(
                    [view[slot * SLOT : (slot + 1) * SLOT]]
                )
            except (BlockingIOError, InterruptedError):
                break
            if flags & MSG_TRUNC:
                self.oversize += 1
                size = -1
            self._lengths[slot] = size
            self._exporter[slot] = np.frombuffer(_mapped(address[0]), np.uint8)
            self._stamps[slot] = time.time_ns()
            slot += 1
        self._filled = slot
        return slot - start

    def kernel_drops(self, *, read_proc: bool = True) -> int:
        """Datagrams the kernel dropped for this socket (buffer full), as far as either source saw.

        ``read_proc=False`` skips ``/proc/net/udp`` (a file of every UDP socket of the host: cheap
        here, not on a host with very many): while datagrams flow, SO_RXQ_OVFL alone sees a drop
        with the next datagram, so the hot path need not read the file.
        """
        if self._closed_drops is not None:
            return self._closed_drops
        if not read_proc and self._rxq_ovfl and self._recvmmsg is not None:
            return self.kernel_drops_seen
        return max(self.kernel_drops_seen, proc_udp_drops({self.inode}).get(self.inode, 0))

    def close(self) -> None:
        """Close the socket (idempotent); its counts stay readable."""
        if self._closed_drops is None:
            self._closed_drops = self.kernel_drops()
            self.sock.close()


def _mapped(host: str) -> bytes:
    packed = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host.split("%")[0])
    return IPV4_MAPPED_PREFIX + packed if len(packed) == 4 else packed
