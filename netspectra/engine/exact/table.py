"""The exact per-flow table: an open-addressing hash index over a dense array of flow rows.

Layout (chosen for the hot loop, measured on this machine):

* ``entries`` is one ``uint64`` matrix with a row per flow: the key words, then packets, bytes,
  first seen, last seen (timestamps stored as the bits of an ``int64``) and the epoch of the
  flow's last change (see below). A lookup that hits
  touches one row, so key compare and counter update share a cache line or two.
* ``index`` is a power-of-two array of ``uint64`` slots, ``0`` = empty, otherwise
  ``(hash >> 32) << 32 | (row + 1)``: the stored upper hash bits reject almost every
  mismatching probe without touching ``entries``. Linear probing, load factor at most 1/2.
* Key words are packed from the packet columns directly: each address field is two words (the
  16 column bytes viewed as native ``uint64``), and ports and protocol share one word
  (source port bits 0-15, destination port 16-31, protocol 32-39). So a five-tuple key is 5
  words, one address 2, ports or protocol 1.

Rows are appended in first-seen order, so a snapshot is a slice copy, and growth never moves
more than it must: when the rows or the index are full, the kernel stops and returns the packet
where it stopped; Python grows the arrays (rehash kernel for the index) and resumes there.

Change epochs (so a snapshot costs what changed, not what the table holds): the caller passes
an epoch with every batch, and the insert kernel stores it in the row of every flow the batch
touches: one more store into a row the update has in cache anyway. :meth:`FlowHashTable.flow_table`
with ``since`` returns only the rows stamped ``>= since``; the group advances the epoch after each
snapshot, so a writer that remembers the epoch of its last written snapshot gets exactly the flows
changed since. Epochs never restart (not at a period reset either), so a stamp is never ambiguous.

Numba kernel note: the key gather (packet ``i``'s key words from the columns) is written out in
both :func:`_hash_kernel` and :func:`_insert_kernel` on purpose; keep the two copies identical.
Folds measured against it (six default exact tasks over 1 M packets, interleaved runs): an
inline helper taking the column arrays, 0.2x (wall clock, an earlier attempt: numba refcounts
each array argument per packet); in thread CPU time, an inline helper taking the loaded scalars
and returning the five words, 0.84x (every column is read for every task), and the hash pass
storing the words in a per-batch scratch that the insert pass reads, 0.95-0.99x (40 more bytes
written and read per packet and task) — below the 0.97x kept as the bar, so the copies stay.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from netspectra.jit import njit, numba_only
from netspectra.model.fields import KeyField
from netspectra.model.snapshot import FlowTable

# numba-only helpers: imported when a kernel is compiled (not at all with the ahead-of-time module)
prefetch_row = numba_only("netspectra.engine.sketch.intrinsics", "prefetch_row")

_SRC_IP, _DST_IP, _SRC_PORT, _DST_PORT, _PROTOCOL = 1, 2, 4, 8, 16
_FIELD_BIT = {
    KeyField.SRC_IP: _SRC_IP,
    KeyField.DST_IP: _DST_IP,
    KeyField.SRC_PORT: _SRC_PORT,
    KeyField.DST_PORT: _DST_PORT,
    KeyField.PROTOCOL: _PROTOCOL,
}
#: Counter columns after the key words: packets, bytes, first seen, last seen, change epoch.
_COUNTERS = 5
_INITIAL_ROWS = 1024

_M0 = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S32 = np.uint64(32)
_S16 = np.uint64(16)
_LOW32 = np.uint64(0xFFFFFFFF)
_ONE = np.uint64(1)


@njit(cache=True, nogil=True, inline="always")
def _absorb(h: np.uint64, word: np.uint64) -> np.uint64:  # scalars only: no refcounts in the loop
    h = (h ^ word) * _M0
    return h ^ (h >> _S32)


@njit(cache=True, nogil=True, inline="always")
def _finish(h: np.uint64) -> np.uint64:
    h ^= h >> _S33
    h *= _M1
    h ^= h >> _S33
    h *= _M2
    return h ^ (h >> _S33)


@njit(cache=True, nogil=True)
def _hash_kernel(fmask, width, src, dst, sport, dport, proto, hashes):  # type: ignore[no-untyped-def]
    """``hashes[i]`` = the 64-bit hash of packet i's key words (a pass of its own, so the insert
    loop knows every slot it will touch and can prefetch it)."""
    key = np.zeros(5, np.uint64)
    has_small = (fmask & (_SRC_PORT | _DST_PORT | _PROTOCOL)) != 0
    for i in range(hashes.shape[0]):
        w = 0
        if fmask & _SRC_IP:
            key[w] = src[i, 0]
            key[w + 1] = src[i, 1]
            w += 2
        if fmask & _DST_IP:
            key[w] = dst[i, 0]
            key[w + 1] = dst[i, 1]
            w += 2
        if has_small:
            small = np.uint64(0)
            if fmask & _SRC_PORT:
                small |= np.uint64(sport[i])
            if fmask & _DST_PORT:
                small |= np.uint64(dport[i]) << _S16
            if fmask & _PROTOCOL:
                small |= np.uint64(proto[i]) << _S32
            key[w] = small
        h = np.uint64(width)
        for j in range(width):
            h = _absorb(h, key[j])
        hashes[i] = _finish(h)


_PREFETCH_AHEAD = 32
"""Packets between prefetching a packet's index slot and probing it; at half that distance the
slot (by then in cache) is read and the flow row it points to is prefetched too. Tables of
100 k+ flows are megabytes, so without this nearly every packet waits for memory twice."""


@njit(cache=True, nogil=True)
def _insert_kernel(  # type: ignore[no-untyped-def]
    index, entries, count, fmask, width, src, dst, sport, dport, proto, ts, length, hashes, start, epoch
):
    """Count packets ``start..`` into the table; return -1 when done, else the packet to resume at."""
    n = count[0]
    packets = ts.shape[0]
    mask = np.uint64(index.shape[0] - 1)
    limit_index = index.shape[0] // 2
    limit_rows = entries.shape[0]
    key = np.zeros(5, np.uint64)
    has_small = (fmask & (_SRC_PORT | _DST_PORT | _PROTOCOL)) != 0
    near = _PREFETCH_AHEAD // 2
    for i in range(start, packets):
        if i + _PREFETCH_AHEAD < packets:
            prefetch_row(index, np.int64(hashes[i + _PREFETCH_AHEAD] & mask))
        if i + near < packets:
            ahead = index[hashes[i + near] & mask]
            if ahead != 0:
                prefetch_row(entries, np.int64(ahead & _LOW32) - 1)
        w = 0
        if fmask & _SRC_IP:
            key[w] = src[i, 0]
            key[w + 1] = src[i, 1]
            w += 2
        if fmask & _DST_IP:
            key[w] = dst[i, 0]
            key[w + 1] = dst[i, 1]
            w += 2
        if has_small:
            small = np.uint64(0)
            if fmask & _SRC_PORT:
                small |= np.uint64(sport[i])
            if fmask & _DST_PORT:
                small |= np.uint64(dport[i]) << _S16
            if fmask & _PROTOCOL:
                small |= np.uint64(proto[i]) << _S32
            key[w] = small
        h = hashes[i]
        tag = (h >> _S32) << _S32
        pos = h & mask
        while True:
            slot = index[pos]
            if slot == 0:
                if n >= limit_rows or n + 1 > limit_index:
                    count[0] = n
                    return i
                for j in range(width):
                    entries[n, j] = key[j]
                entries[n, width] = 1
                entries[n, width + 1] = length[i]
                entries[n, width + 2] = np.uint64(ts[i])
                entries[n, width + 3] = np.uint64(ts[i])
                entries[n, width + 4] = epoch
                n += 1
                index[pos] = tag | np.uint64(n)
                break
            if (slot & ~_LOW32) == tag:
                row = np.int64(slot & _LOW32) - 1
                same = True
                for j in range(width):
                    if entries[row, j] != key[j]:
                        same = False
                        break
                if same:
                    entries[row, width] += _ONE
                    entries[row, width + 1] += length[i]
                    stamp = ts[i]
                    if stamp < np.int64(entries[row, width + 2]):
                        entries[row, width + 2] = np.uint64(stamp)
                    if stamp > np.int64(entries[row, width + 3]):
                        entries[row, width + 3] = np.uint64(stamp)
                    entries[row, width + 4] = epoch
                    break
            pos = (pos + _ONE) & mask
    count[0] = n
    return -1


@njit(cache=True, nogil=True)
def _rehash_kernel(index, entries, count, width):  # type: ignore[no-untyped-def]
    """Place rows ``0..count`` into an empty (larger) index."""
    mask = np.uint64(index.shape[0] - 1)
    for row in range(count):
        h = np.uint64(width)
        for j in range(width):
            h = _absorb(h, entries[row, j])
        h = _finish(h)
        pos = h & mask
        while index[pos] != 0:
            pos = (pos + _ONE) & mask
        index[pos] = ((h >> _S32) << _S32) | np.uint64(row + 1)


def field_mask(fields: Sequence[KeyField]) -> int:
    """The kernel's bit set of key fields."""
    mask = 0
    for field in fields:
        mask |= _FIELD_BIT[field]
    return mask


def key_words(fields: Sequence[KeyField]) -> int:
    """Key words per row: two per address field, one shared by ports and protocol."""
    small = any(f in (KeyField.SRC_PORT, KeyField.DST_PORT, KeyField.PROTOCOL) for f in fields)
    return 2 * sum(f in (KeyField.SRC_IP, KeyField.DST_IP) for f in fields) + int(small)


def address_words(column: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint64]:
    """A ``(n, 16)`` address column as ``(n, 2)`` native words (no copy when contiguous)."""
    return np.ascontiguousarray(column).view(np.uint64)


class FlowHashTable:
    """Per-flow packets, bytes, first and last seen of one exact task (the engine serialises calls)."""

    def __init__(self, task: str, key_fields: Sequence[KeyField], initial_rows: int = _INITIAL_ROWS) -> None:
        self.task = task
        self.key_fields = tuple(key_fields)
        self._mask = field_mask(self.key_fields)
        self._width = key_words(self.key_fields)
        self._initial_rows = max(16, 1 << (int(initial_rows) - 1).bit_length())
        self._count = np.zeros(1, np.int64)
        self._hashes = np.empty(0, np.uint64)  # scratch: the current batch's key hashes
        #: Per row, what renormalisation added (packets, bytes): scaled minus raw, see
        #: :func:`insert_weighted`. None until the period's first flow record: packets add nothing.
        self._upscaled: npt.NDArray[np.uint64] | None = None
        self._allocate(self._initial_rows)

    def _allocate(self, rows: int) -> None:
        self._entries = np.empty((rows, self._width + _COUNTERS), np.uint64)
        self._index = np.zeros(rows * 2, np.uint64)
        self._count[0] = 0
        self._upscaled = None

    def __len__(self) -> int:
        return int(self._count[0])

    @property
    def nbytes(self) -> int:
        """Bytes held by the table's arrays (rows allocated, not only used)."""
        upscaled = 0 if self._upscaled is None else self._upscaled.nbytes
        return int(self._entries.nbytes + self._index.nbytes + upscaled)

    def insert(
        self,
        src_words: npt.NDArray[np.uint64],
        dst_words: npt.NDArray[np.uint64],
        src_port: npt.NDArray[np.uint16],
        dst_port: npt.NDArray[np.uint16],
        protocol: npt.NDArray[np.uint8],
        ts_ns: npt.NDArray[np.int64],
        length: npt.NDArray[np.uint64],
        epoch: int = 1,
    ) -> None:
        """Count a batch (addresses as :func:`address_words`) in change epoch ``epoch`` (≥ 1);
        grows the table as often as needed."""
        packets = ts_ns.shape[0]
        if self._hashes.shape[0] < packets:
            self._hashes = np.empty(max(packets, 2 * self._hashes.shape[0]), np.uint64)
        hashes = self._hashes[:packets]
        _hash_kernel(self._mask, self._width, src_words, dst_words, src_port, dst_port, protocol, hashes)
        start = 0
        while True:
            start = _insert_kernel(
                self._index,
                self._entries,
                self._count,
                self._mask,
                self._width,
                src_words,
                dst_words,
                src_port,
                dst_port,
                protocol,
                ts_ns,
                length,
                hashes,
                start,
                np.uint64(epoch),
            )
            if start < 0:
                return
            self._grow()

    def _grow(self) -> None:
        rows = len(self)
        if rows >= self._entries.shape[0]:
            grown = np.empty((self._entries.shape[0] * 2, self._entries.shape[1]), np.uint64)
            grown[:rows] = self._entries[:rows]
            self._entries = grown
            if self._upscaled is not None:
                upscaled = np.zeros((grown.shape[0], 2), np.uint64)
                upscaled[:rows] = self._upscaled[:rows]
                self._upscaled = upscaled
        if rows + 1 > self._index.shape[0] // 2:
            self._index = np.zeros(self._index.shape[0] * 2, np.uint64)
            _rehash_kernel(self._index, self._entries, rows, self._width)

    def reset(self) -> None:
        """Forget every flow; shrink back to the initial size so a quiet period does not pin memory."""
        if self._entries.shape[0] > self._initial_rows:
            self._allocate(self._initial_rows)
        else:
            self._index.fill(0)
            self._count[0] = 0
            self._upscaled = None

    def flow_table(self, since: int = 0) -> FlowTable:
        """A copy of every flow changed in epoch ``since`` or later (all when 0) as columns (fields
        not in the key are zero), each with its change epoch."""
        data = self._entries[: len(self)]
        upscaled = None if self._upscaled is None else self._upscaled[: len(self)]
        width = self._width
        if since > 0:
            keep = data[:, width + 4] >= np.uint64(since)
            if not bool(keep.all()):  # all changed: the slice, not a second copy of the table
                data = data[keep]
                upscaled = None if upscaled is None else upscaled[keep]
        rows = data.shape[0]
        src_ip = np.zeros((rows, 16), np.uint8)
        dst_ip = np.zeros((rows, 16), np.uint8)
        column = 0
        if self._mask & _SRC_IP:
            src_ip = np.ascontiguousarray(data[:, column : column + 2]).view(np.uint8).reshape(rows, 16)
            column += 2
        if self._mask & _DST_IP:
            dst_ip = np.ascontiguousarray(data[:, column : column + 2]).view(np.uint8).reshape(rows, 16)
            column += 2
        if column < width:
            small = data[:, column]
            src_port = (small & np.uint64(0xFFFF)).astype(np.uint16)
            dst_port = ((small >> np.uint64(16)) & np.uint64(0xFFFF)).astype(np.uint16)
            protocol = ((small >> np.uint64(32)) & np.uint64(0xFF)).astype(np.uint8)
        else:
            src_port = np.zeros(rows, np.uint16)
            dst_port = np.zeros(rows, np.uint16)
            protocol = np.zeros(rows, np.uint8)
        packets = data[:, width].copy()
        nbytes = data[:, width + 1].copy()
        return FlowTable(
            task=self.task,
            key_fields=self.key_fields,
            src_ip=src_ip,
            dst_ip=dst_ip,
            src_port=src_port,
            dst_port=dst_port,
            protocol=protocol,
            packets=packets,
            bytes=nbytes,
            first_seen_ns=data[:, width + 2].view(np.int64).copy(),
            last_seen_ns=data[:, width + 3].view(np.int64).copy(),
            changed_epoch=data[:, width + 4].copy(),
            raw_packets=None if upscaled is None else packets - upscaled[:, 0],
            raw_bytes=None if upscaled is None else nbytes - upscaled[:, 1],
        )


@njit(cache=True, nogil=True)
def _direct_kernel(counters, which, sport, dport, proto, ts, length, epoch):  # type: ignore[no-untyped-def]
    """Count packets into a table indexed by the key itself (one port, or the protocol)."""
    for i in range(ts.shape[0]):
        if which == _SRC_PORT:
            key = np.int64(sport[i])
        elif which == _DST_PORT:
            key = np.int64(dport[i])
        else:
            key = np.int64(proto[i])
        stamp = ts[i]
        if counters[key, 0] == 0:
            counters[key, 2] = np.uint64(stamp)
            counters[key, 3] = np.uint64(stamp)
        else:
            if stamp < np.int64(counters[key, 2]):
                counters[key, 2] = np.uint64(stamp)
            if stamp > np.int64(counters[key, 3]):
                counters[key, 3] = np.uint64(stamp)
        counters[key, 0] += _ONE
        counters[key, 1] += length[i]
        counters[key, 4] = epoch


_DIRECT_SIZE = {KeyField.SRC_PORT: 1 << 16, KeyField.DST_PORT: 1 << 16, KeyField.PROTOCOL: 1 << 8}


class DirectTable:
    """A task keyed on one port or the protocol: counters indexed by the key value, no hashing.

    65,536 (or 256) rows of four counters cost 2 MB (8 KB) whatever the traffic, and an update is
    one array access instead of a hash and a probe: the three small default tasks run 3-5x faster.
    """

    def __init__(self, task: str, key_field: KeyField) -> None:
        self.task = task
        self.key_fields = (key_field,)
        self._which = _FIELD_BIT[key_field]
        self._counters = np.zeros((_DIRECT_SIZE[key_field], _COUNTERS), np.uint64)
        #: as FlowHashTable's: allocated by the first flow record of a period
        self._upscaled: npt.NDArray[np.uint64] | None = None

    def __len__(self) -> int:
        return int(np.count_nonzero(self._counters[:, 0]))

    @property
    def nbytes(self) -> int:
        return int(self._counters.nbytes) + (0 if self._upscaled is None else int(self._upscaled.nbytes))

    def insert(
        self,
        src_words: npt.NDArray[np.uint64],
        dst_words: npt.NDArray[np.uint64],
        src_port: npt.NDArray[np.uint16],
        dst_port: npt.NDArray[np.uint16],
        protocol: npt.NDArray[np.uint8],
        ts_ns: npt.NDArray[np.int64],
        length: npt.NDArray[np.uint64],
        epoch: int = 1,
    ) -> None:
        _direct_kernel(
            self._counters, self._which, src_port, dst_port, protocol, ts_ns, length, np.uint64(epoch)
        )

    def reset(self) -> None:
        self._counters.fill(0)
        self._upscaled = None

    def flow_table(self, since: int = 0) -> FlowTable:
        used = self._counters[:, 0] != 0
        if since > 0:
            used &= self._counters[:, 4] >= np.uint64(since)
        keys = np.flatnonzero(used)
        rows = keys.shape[0]
        data = self._counters[keys]
        upscaled = None if self._upscaled is None else self._upscaled[keys]
        zeros16 = np.zeros(rows, np.uint16)
        return FlowTable(
            task=self.task,
            key_fields=self.key_fields,
            src_ip=np.zeros((rows, 16), np.uint8),
            dst_ip=np.zeros((rows, 16), np.uint8),
            src_port=keys.astype(np.uint16) if self._which == _SRC_PORT else zeros16,
            dst_port=keys.astype(np.uint16) if self._which == _DST_PORT else zeros16.copy(),
            protocol=keys.astype(np.uint8) if self._which == _PROTOCOL else np.zeros(rows, np.uint8),
            packets=data[:, 0].copy(),
            bytes=data[:, 1].copy(),
            first_seen_ns=data[:, 2].view(np.int64).copy(),
            last_seen_ns=data[:, 3].view(np.int64).copy(),
            changed_epoch=data[:, 4].copy(),
            raw_packets=None if upscaled is None else data[:, 0] - upscaled[:, 0],
            raw_bytes=None if upscaled is None else data[:, 1] - upscaled[:, 1],
        )


def make_table(task: str, key_fields: Sequence[KeyField]) -> FlowHashTable | DirectTable:
    """The fastest table for these key fields: direct for one port or the protocol, else hashed."""
    if len(key_fields) == 1 and key_fields[0] in _DIRECT_SIZE:
        return DirectTable(task, key_fields[0])
    return FlowHashTable(task, key_fields)


# --- weighted entry points (flow records: N packets, B bytes between first and last seen) ------
# Added beside the packet kernels, not folded into them: the packet path keeps its measured loop.
#
# Raw values: a flow record's packets and bytes are renormalised (raw x sampling rate); the table
# keeps the raw sums too, as what renormalisation added per flow (``upscaled``: scaled minus raw)
# in a side array of two words per row, allocated by the first flow record of a period. Stored as
# the difference, not the raw sums, so the packet kernels never touch it: a captured packet adds
# nothing to it (raw = scaled), and a flow fed by both packets and records still reads raw = scaled
# minus upscaled. Tasks that only see packets keep no side array, so their rows, snapshots and
# writers stay as they were. The arithmetic is modulo 2**64 like every counter: exact.


@njit(cache=True, nogil=True)
def _insert_weighted_kernel(  # type: ignore[no-untyped-def]
    index,
    entries,
    upscaled,
    count,
    fmask,
    width,
    src,
    dst,
    sport,
    dport,
    proto,
    first,
    last,
    packets,
    nbytes,
    raw_packets,
    raw_bytes,
    hashes,
    start,
    epoch,
):
    """Like :func:`_insert_kernel`, but record i adds ``packets[i]`` and ``nbytes[i]``, seen
    first..last, and ``packets[i] - raw_packets[i]`` (bytes alike) to the row's ``upscaled``."""
    n = count[0]
    records = first.shape[0]
    mask = np.uint64(index.shape[0] - 1)
    limit_index = index.shape[0] // 2
    limit_rows = entries.shape[0]
    key = np.zeros(5, np.uint64)
    has_small = (fmask & (_SRC_PORT | _DST_PORT | _PROTOCOL)) != 0
    for i in range(start, records):
        w = 0
        if fmask & _SRC_IP:
            key[w] = src[i, 0]
            key[w + 1] = src[i, 1]
            w += 2
        if fmask & _DST_IP:
            key[w] = dst[i, 0]
            key[w + 1] = dst[i, 1]
            w += 2
        if has_small:
            small = np.uint64(0)
            if fmask & _SRC_PORT:
                small |= np.uint64(sport[i])
            if fmask & _DST_PORT:
                small |= np.uint64(dport[i]) << _S16
            if fmask & _PROTOCOL:
                small |= np.uint64(proto[i]) << _S32
            key[w] = small
        h = hashes[i]
        tag = (h >> _S32) << _S32
        pos = h & mask
        while True:
            slot = index[pos]
            if slot == 0:
                if n >= limit_rows or n + 1 > limit_index:
                    count[0] = n
                    return i
                for j in range(width):
                    entries[n, j] = key[j]
                entries[n, width] = packets[i]
                entries[n, width + 1] = nbytes[i]
                entries[n, width + 2] = np.uint64(first[i])
                entries[n, width + 3] = np.uint64(last[i])
                entries[n, width + 4] = epoch
                upscaled[n, 0] = packets[i] - raw_packets[i]
                upscaled[n, 1] = nbytes[i] - raw_bytes[i]
                n += 1
                index[pos] = tag | np.uint64(n)
                break
            if (slot & ~_LOW32) == tag:
                row = np.int64(slot & _LOW32) - 1
                same = True
                for j in range(width):
                    if entries[row, j] != key[j]:
                        same = False
                        break
                if same:
                    entries[row, width] += packets[i]
                    entries[row, width + 1] += nbytes[i]
                    if first[i] < np.int64(entries[row, width + 2]):
                        entries[row, width + 2] = np.uint64(first[i])
                    if last[i] > np.int64(entries[row, width + 3]):
                        entries[row, width + 3] = np.uint64(last[i])
                    entries[row, width + 4] = epoch
                    upscaled[row, 0] += packets[i] - raw_packets[i]
                    upscaled[row, 1] += nbytes[i] - raw_bytes[i]
                    break
            pos = (pos + _ONE) & mask
    count[0] = n
    return -1


@njit(cache=True, nogil=True)
def _direct_weighted_kernel(  # type: ignore[no-untyped-def]
    counters, upscaled, which, sport, dport, proto, first, last, packets, nbytes, raw_packets, raw_bytes,
    epoch,
):  # fmt: skip
    """Like :func:`_direct_kernel`, with each record's packets, bytes, first and last seen."""
    for i in range(first.shape[0]):
        if which == _SRC_PORT:
            key = np.int64(sport[i])
        elif which == _DST_PORT:
            key = np.int64(dport[i])
        else:
            key = np.int64(proto[i])
        if (
            counters[key, 0] == 0
            and counters[key, 1] == 0
            and counters[key, 2] == 0
            and counters[key, 3] == 0
        ):
            counters[key, 2] = np.uint64(first[i])
            counters[key, 3] = np.uint64(last[i])
        else:
            if first[i] < np.int64(counters[key, 2]):
                counters[key, 2] = np.uint64(first[i])
            if last[i] > np.int64(counters[key, 3]):
                counters[key, 3] = np.uint64(last[i])
        counters[key, 0] += packets[i]
        counters[key, 1] += nbytes[i]
        counters[key, 4] = epoch
        upscaled[key, 0] += packets[i] - raw_packets[i]
        upscaled[key, 1] += nbytes[i] - raw_bytes[i]


def insert_weighted(
    table: FlowHashTable | DirectTable,
    src_words: npt.NDArray[np.uint64],
    dst_words: npt.NDArray[np.uint64],
    src_port: npt.NDArray[np.uint16],
    dst_port: npt.NDArray[np.uint16],
    protocol: npt.NDArray[np.uint8],
    first_ns: npt.NDArray[np.int64],
    last_ns: npt.NDArray[np.int64],
    packets: npt.NDArray[np.uint64],
    nbytes: npt.NDArray[np.uint64],
    raw_packets: npt.NDArray[np.uint64],
    raw_bytes: npt.NDArray[np.uint64],
    epoch: int = 1,
) -> None:
    """Count flow records into ``table`` in change epoch ``epoch``: each adds its (renormalised)
    packets and bytes, and the table keeps the raw ones beside them (growing as needed)."""
    if isinstance(table, DirectTable):
        if table._upscaled is None:
            table._upscaled = np.zeros((table._counters.shape[0], 2), np.uint64)
        _direct_weighted_kernel(
            table._counters, table._upscaled, table._which, src_port, dst_port, protocol, first_ns, last_ns,
            packets, nbytes, raw_packets, raw_bytes, np.uint64(epoch),
        )  # fmt: skip
        return
    if table._upscaled is None:  # rows counted from packets so far: nothing upscaled
        table._upscaled = np.zeros((table._entries.shape[0], 2), np.uint64)
    records = first_ns.shape[0]
    hashes = np.empty(records, np.uint64)
    _hash_kernel(table._mask, table._width, src_words, dst_words, src_port, dst_port, protocol, hashes)
    start = 0
    while True:
        start = _insert_weighted_kernel(
            table._index, table._entries, table._upscaled, table._count, table._mask, table._width,
            src_words, dst_words, src_port, dst_port, protocol, first_ns, last_ns, packets, nbytes,
            raw_packets, raw_bytes, hashes, start, np.uint64(epoch),
        )  # fmt: skip
        if start < 0:
            return
        table._grow()
