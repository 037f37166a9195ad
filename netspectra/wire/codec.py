"""The one place where packet columns become wire bytes and wire bytes become packet columns.

The wire contract is Go2NetSpectra's ``PacketInfo`` (proto/v1/traffic.proto): one protobuf
message per packet, IPv4 addresses as 4 bytes, IPv6 as 16, the timestamp as seconds + nanos.
Our batched extension ``PacketBatch`` is the concatenation of ``PacketInfo`` messages, each
framed as field 1.

Both directions run as numba kernels over whole batches: the official upb decoder manages
about 1 M messages/s with field reads and betterproto2 about 36 k/s, while the hot path needs
several million. The encoder's bytes equal the official ``protobuf`` package's encoding of the
same message (proto3: zero scalars and empty bytes omitted, ``timestamp`` and ``five_tuple``
always present, as the Go probe sends them); the decoder accepts everything the official
parser accepts (unknown fields of every wire type including groups, fields in any order,
repeated sub-messages merged, scalars last-one-wins, wrong wire types kept as unknown) and
rejects what it rejects. Messages the official parser would reject, and messages it accepts
but that carry no usable five-tuple or values that cannot be true (a timestamp outside
1970 .. 2106, nanos outside 0 .. 999,999,999, a wire length above 256 KiB), are counted by
reason and skipped.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numba as nb
import numpy as np
import numpy.typing as npt

from netspectra.model.packets import ADDRESS_WIDTH, PacketColumns

# --- decode outcome reasons (index into the counters array) ---------------------------------

#: Reasons a message (or a batch entry) is skipped, in counter order.
REJECT_REASONS: tuple[str, ...] = (
    "truncated",  # a varint, length or fixed field runs past the end of its message
    "varint_too_long",  # more than 10 varint bytes
    "bad_tag",  # field number 0, tag above 32 bits, wire type 6/7, unmatched end-group
    "too_deep",  # nesting (groups) deeper than we follow
    "bad_address",  # an address that is neither 4 nor 16 bytes
    "missing_address",  # no five_tuple, or an empty src/dst address
    "bad_value",  # a port above 65535 or a protocol above 255
    "bad_timestamp",  # outside 1970-01-01T00:00:00Z .. 2106-02-07T06:28:15Z, or nanos not in 0..1e9-1
    "bad_length",  # a wire length above MAX_PACKET_LENGTH
)
_TRUNCATED = 0
_VARINT_TOO_LONG = 1
_BAD_TAG = 2
_TOO_DEEP = 3
_BAD_ADDRESS = 4
_MISSING_ADDRESS = 5
_BAD_VALUE = 6
_BAD_TIMESTAMP = 7
_BAD_LENGTH = 8
_N_REASONS = len(REJECT_REASONS)

# message kinds a context on the decoder's stack can be
_K_BATCH = 0
_K_INFO = 1
_K_TIMESTAMP = 2
_K_TUPLE = 3
_K_GROUP = 4
_MAX_DEPTH = 64

#: Kind of a top-level message handed to :func:`decode_messages`.
KIND_PACKET_INFO = np.uint8(_K_INFO)
KIND_PACKET_BATCH = np.uint8(_K_BATCH)

#: Upper bound of one encoded PacketInfo with its PacketBatch frame (24 timestamp + 56 tuple
#: + 11 length + 2 frame bytes): every length prefix therefore fits in one varint byte.
_MAX_FRAMED = 96
_NANOS = 1_000_000_000

#: The latest timestamp second a packet may carry: ClickHouse's ``DateTime`` is 32-bit seconds
#: (2106-02-07T06:28:15Z), and the store must hold every time the engine counted. Anything
#: before the epoch, or past this, is a forged or corrupt message, not a capture: without the
#: bound, 253402300800 s (year 10000) wrapped the int64 nanoseconds to 1816 and 2**62 s to 1970.
MAX_TIMESTAMP_SECONDS = 2**32 - 1
#: The largest wire length accepted: libpcap's largest snapshot length (262144), above IPv4's
#: 64 KiB and every jumbo frame (9 KiB) or GRO/TSO super-packet a capture shows. Without it a
#: forged 2**64 - 1 wrapped the engine's byte counters.
MAX_PACKET_LENGTH = 256 * 1024


# --- tags ------------------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True, inline="always")
def tag_is_valid(tag: np.uint64) -> bool:
    """Whether the official parser takes ``tag``'s shape (end-group matching is the caller's).

    It refuses a tag above 32 bits (field numbers stop at 2**29 - 1), field number 0 and wire
    types 6/7; shared with :mod:`netspectra.wire.flow_codec` so both decoders refuse alike.
    """
    return bool(
        tag <= np.uint64(0xFFFFFFFF)
        and (tag >> np.uint64(3)) != np.uint64(0)
        and (tag & np.uint64(7)) < np.uint64(6)
    )


# --- encoder ---------------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True, inline="always")
def _varint_size(value: np.uint64) -> int:
    size = 1
    while value >= 0x80:
        value >>= np.uint64(7)
        size += 1
    return size


@nb.njit(cache=True, nogil=True)
def _encode_kernel(ts_ns, src_ip, dst_ip, src_port, dst_port, protocol, length, ip_version, out, starts):  # type: ignore[no-untyped-def]
    """Write every packet as ``0a <len> PacketInfo`` into ``out``; ``starts[i]`` is row i's frame.

    The PacketInfo body of row i is ``out[starts[i] + 2 : starts[i + 1]]`` (its length is below
    128, so the frame is always two bytes) and rows i..j-1 framed are a valid PacketBatch.
    """
    n = ts_ns.shape[0]
    pos = 0
    for i in range(n):
        starts[i] = pos
        seconds = ts_ns[i] // _NANOS
        nanos = ts_ns[i] - seconds * _NANOS
        useconds = np.uint64(seconds)  # two's complement, as protobuf writes a negative int64
        unanos = np.uint64(nanos)
        ts_len = 0
        if useconds != 0:
            ts_len += 1 + _varint_size(useconds)
        if unanos != 0:
            ts_len += 1 + _varint_size(unanos)
        alen = 4 if ip_version[i] == 4 else 16
        aoff = 12 if alen == 4 else 0
        sport = np.uint64(src_port[i])
        dport = np.uint64(dst_port[i])
        proto = np.uint64(protocol[i])
        ft_len = 2 * (2 + alen)
        if sport != 0:
            ft_len += 1 + _varint_size(sport)
        if dport != 0:
            ft_len += 1 + _varint_size(dport)
        if proto != 0:
            ft_len += 1 + _varint_size(proto)
        wire_len = np.uint64(length[i])
        body = 2 + ts_len + 2 + ft_len
        if wire_len != 0:
            body += 1 + _varint_size(wire_len)
        out[pos] = 0x0A
        out[pos + 1] = body
        pos += 2
        # field 1: timestamp
        out[pos] = 0x0A
        out[pos + 1] = ts_len
        pos += 2
        if useconds != 0:
            out[pos] = 0x08
            pos += 1
            v = useconds
            while v >= 0x80:
                out[pos] = (v & np.uint64(0x7F)) | np.uint64(0x80)
                v >>= np.uint64(7)
                pos += 1
            out[pos] = v
            pos += 1
        if unanos != 0:
            out[pos] = 0x10
            pos += 1
            v = unanos
            while v >= 0x80:
                out[pos] = (v & np.uint64(0x7F)) | np.uint64(0x80)
                v >>= np.uint64(7)
                pos += 1
            out[pos] = v
            pos += 1
        # field 2: five_tuple
        out[pos] = 0x12
        out[pos + 1] = ft_len
        pos += 2
        out[pos] = 0x0A
        out[pos + 1] = alen
        pos += 2
        for k in range(alen):
            out[pos + k] = src_ip[i, aoff + k]
        pos += alen
        out[pos] = 0x12
        out[pos + 1] = alen
        pos += 2
        for k in range(alen):
            out[pos + k] = dst_ip[i, aoff + k]
        pos += alen
        for tag, value in ((0x18, sport), (0x20, dport), (0x28, proto)):
            if value != 0:
                out[pos] = tag
                pos += 1
                v = value
                while v >= 0x80:
                    out[pos] = (v & np.uint64(0x7F)) | np.uint64(0x80)
                    v >>= np.uint64(7)
                    pos += 1
                out[pos] = v
                pos += 1
        # field 3: length
        if wire_len != 0:
            out[pos] = 0x18
            pos += 1
            v = wire_len
            while v >= 0x80:
                out[pos] = (v & np.uint64(0x7F)) | np.uint64(0x80)
                v >>= np.uint64(7)
                pos += 1
            out[pos] = v
            pos += 1
    starts[n] = pos
    return pos


@dataclass(slots=True)
class EncodedPackets:
    """A batch encoded once, publishable either per packet or as PacketBatch chunks."""

    data: bytes
    starts: npt.NDArray[np.int64]  # frame offset of row i; starts[n] = len(data)

    def __len__(self) -> int:
        return int(self.starts.shape[0] - 1)

    def messages(self) -> list[bytes]:
        """One Go-compatible ``PacketInfo`` per packet (the frame's two bytes cut off)."""
        data = self.data
        starts = self.starts.tolist()
        return [data[a + 2 : b] for a, b in itertools.pairwise(starts)]

    def batches(self, size: int) -> list[tuple[bytes, int]]:
        """``PacketBatch`` messages of at most ``size`` packets each, with their packet counts."""
        n = len(self)
        starts = self.starts
        return [
            (self.data[int(starts[i]) : int(starts[min(i + size, n)])], min(size, n - i))
            for i in range(0, n, size)
        ]


def encode_packets(columns: PacketColumns) -> EncodedPackets:
    """Encode every row of ``columns`` (see :func:`_encode_kernel` for the layout)."""
    n = len(columns)
    out = np.empty(n * _MAX_FRAMED, np.uint8)
    starts = np.empty(n + 1, np.int64)
    used = _encode_kernel(
        *columns.arrays(),
        out,
        starts,
    )
    return EncodedPackets(out[:used].tobytes(), starts)


def encode_packet_infos(columns: PacketColumns) -> list[bytes]:
    """One ``PacketInfo`` per row, byte-identical to the official protobuf encoding."""
    return encode_packets(columns).messages()


def encode_packet_batch(columns: PacketColumns) -> bytes:
    """All rows as one ``PacketBatch`` message."""
    return encode_packets(columns).data


# --- decoder ---------------------------------------------------------------------------------


@nb.njit(cache=True, nogil=True)
def _decode_kernel(  # type: ignore[no-untyped-def]
    data, offsets, kinds, ts_ns, src_ip, dst_ip, src_port, dst_port, protocol, length, ip_version, rejects
):
    """Decode messages ``data[offsets[m]:offsets[m+1]]`` of kind ``kinds[m]`` into the columns.

    One flat loop with an explicit stack of open messages, so tags and varints are read in a
    single place. Returns the number of rows written. A structural error rejects the whole
    top-level message (as the official parser does) and rolls its rows back; an entry whose
    five-tuple is unusable is skipped on its own.
    """
    stack_kind = np.empty(_MAX_DEPTH, np.int64)
    stack_end = np.empty(_MAX_DEPTH, np.int64)
    stack_field = np.empty(_MAX_DEPTH, np.int64)
    row = 0
    n_msgs = offsets.shape[0] - 1
    # per-PacketInfo state
    seconds = np.int64(0)
    nanos = np.int64(0)
    src_off = 0
    src_len = -1
    dst_off = 0
    dst_len = -1
    sport = 0
    dport = 0
    proto = 0
    wire_len = np.uint64(0)
    for m in range(n_msgs):
        pos = offsets[m]
        msg_end = offsets[m + 1]
        first_row = row
        depth = 0
        stack_kind[0] = kinds[m]
        stack_end[0] = msg_end
        stack_field[0] = 0
        if kinds[m] == _K_INFO:
            seconds = np.int64(0)
            nanos = np.int64(0)
            src_len = -1
            dst_len = -1
            sport = 0
            dport = 0
            proto = 0
            wire_len = np.uint64(0)
        error = -1
        while True:
            # close every message that ends here
            while depth >= 0 and pos == stack_end[depth]:
                kind = stack_kind[depth]
                if kind == _K_GROUP:
                    error = _TRUNCATED  # a group must end with its end-group tag
                    break
                if kind == _K_INFO:
                    if src_len <= 0 or dst_len <= 0:
                        rejects[_MISSING_ADDRESS] += 1
                    elif (src_len != 4 and src_len != 16) or (dst_len != 4 and dst_len != 16):
                        rejects[_BAD_ADDRESS] += 1
                    elif sport > 0xFFFF or dport > 0xFFFF or proto > 0xFF:
                        rejects[_BAD_VALUE] += 1
                    elif seconds < 0 or seconds > MAX_TIMESTAMP_SECONDS or nanos < 0 or nanos >= _NANOS:
                        rejects[_BAD_TIMESTAMP] += 1
                    elif wire_len > np.uint64(MAX_PACKET_LENGTH):
                        rejects[_BAD_LENGTH] += 1
                    else:
                        s = (np.int64(seconds) * _NANOS) + nanos
                        ts_ns[row] = s
                        for k in range(16):
                            src_ip[row, k] = 0
                            dst_ip[row, k] = 0
                        if src_len == 4:
                            src_ip[row, 10] = 0xFF
                            src_ip[row, 11] = 0xFF
                            for k in range(4):
                                src_ip[row, 12 + k] = data[src_off + k]
                        else:
                            for k in range(16):
                                src_ip[row, k] = data[src_off + k]
                        if dst_len == 4:
                            dst_ip[row, 10] = 0xFF
                            dst_ip[row, 11] = 0xFF
                            for k in range(4):
                                dst_ip[row, 12 + k] = data[dst_off + k]
                        else:
                            for k in range(16):
                                dst_ip[row, k] = data[dst_off + k]
                        src_port[row] = sport
                        dst_port[row] = dport
                        protocol[row] = proto
                        length[row] = wire_len
                        ip_version[row] = 4 if (src_len == 4 and dst_len == 4) else 6
                        row += 1
                depth -= 1
            if error >= 0 or depth < 0:
                break
            ctx_end = stack_end[depth]
            ctx_kind = stack_kind[depth]
            # tag varint
            tag = np.uint64(0)
            shift = np.uint64(0)
            nbytes = 0
            while True:
                if pos >= ctx_end:
                    error = _TRUNCATED
                    break
                b = np.uint64(data[pos])
                pos += 1
                tag |= (b & np.uint64(0x7F)) << shift
                nbytes += 1
                if b < 0x80:
                    break
                if nbytes == 10:
                    error = _VARINT_TOO_LONG
                    break
                shift += np.uint64(7)
            if error >= 0:
                break
            if not tag_is_valid(tag):
                error = _BAD_TAG
                break
            wt = np.int64(tag & np.uint64(7))
            field = np.int64(tag >> np.uint64(3))
            if wt == 4:
                if ctx_kind == _K_GROUP and stack_field[depth] == field:
                    depth -= 1
                    continue
                error = _BAD_TAG
                break
            if wt == 3:
                if depth + 1 >= _MAX_DEPTH:
                    error = _TOO_DEEP
                    break
                depth += 1
                stack_kind[depth] = _K_GROUP
                stack_end[depth] = ctx_end
                stack_field[depth] = field
                continue
            if wt == 1 or wt == 5:
                step = 8 if wt == 1 else 4
                if pos + step > ctx_end:
                    error = _TRUNCATED
                    break
                pos += step
                continue
            # wire type 0 or 2: one varint (the value or the length)
            value = np.uint64(0)
            shift = np.uint64(0)
            nbytes = 0
            while True:
                if pos >= ctx_end:
                    error = _TRUNCATED
                    break
                b = np.uint64(data[pos])
                pos += 1
                value |= (b & np.uint64(0x7F)) << shift
                nbytes += 1
                if b < 0x80:
                    break
                if nbytes == 10:
                    error = _VARINT_TOO_LONG
                    break
                shift += np.uint64(7)
            if error >= 0:
                break
            if wt == 0:
                if ctx_kind == _K_INFO:
                    if field == 3:
                        wire_len = value
                elif ctx_kind == _K_TIMESTAMP:
                    if field == 1:
                        seconds = np.int64(value)
                    elif field == 2:
                        nanos = np.int64(np.int32(np.uint32(value & np.uint64(0xFFFFFFFF))))
                elif ctx_kind == _K_TUPLE:
                    if field == 3:
                        sport = np.int64(value & np.uint64(0xFFFFFFFF))
                    elif field == 4:
                        dport = np.int64(value & np.uint64(0xFFFFFFFF))
                    elif field == 5:
                        proto = np.int64(value & np.uint64(0xFFFFFFFF))
                continue
            # wire type 2
            if value > np.uint64(ctx_end - pos):
                error = _TRUNCATED
                break
            sub_end = pos + np.int64(value)
            child = -1
            if ctx_kind == _K_BATCH and field == 1:
                child = _K_INFO
                seconds = np.int64(0)
                nanos = np.int64(0)
                src_len = -1
                dst_len = -1
                sport = 0
                dport = 0
                proto = 0
                wire_len = np.uint64(0)
            elif ctx_kind == _K_INFO and field == 1:
                child = _K_TIMESTAMP
            elif ctx_kind == _K_INFO and field == 2:
                child = _K_TUPLE
            elif ctx_kind == _K_TUPLE and field == 1:
                src_off = pos
                src_len = sub_end - pos
            elif ctx_kind == _K_TUPLE and field == 2:
                dst_off = pos
                dst_len = sub_end - pos
            if child >= 0:
                if depth + 1 >= _MAX_DEPTH:
                    error = _TOO_DEEP
                    break
                depth += 1
                stack_kind[depth] = child
                stack_end[depth] = sub_end
                stack_field[depth] = field
            else:
                pos = sub_end
        if error >= 0:
            rejects[error] += 1
            row = first_row
    return row


@dataclass(slots=True)
class DecodeResult:
    """Decoded rows and the count of skipped messages or entries per reason."""

    columns: PacketColumns
    rejects: dict[str, int]

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())


def decode_messages(
    data: bytes | npt.NDArray[np.uint8],
    offsets: npt.NDArray[np.int64],
    kinds: npt.NDArray[np.uint8] | None = None,
) -> DecodeResult:
    """Decode the messages ``data[offsets[m]:offsets[m+1]]`` (all PacketInfo unless ``kinds`` says).

    ``kinds[m]`` is :data:`KIND_PACKET_INFO` or :data:`KIND_PACKET_BATCH`. Never raises on bad
    bytes: such messages are counted in ``rejects`` and skipped.
    """
    buffer = np.frombuffer(data, np.uint8) if isinstance(data, bytes | bytearray | memoryview) else data
    n_msgs = int(offsets.shape[0]) - 1
    if kinds is None:
        kinds = np.full(n_msgs, KIND_PACKET_INFO, np.uint8)
        capacity = n_msgs
    else:
        sizes = np.diff(offsets)
        is_batch = kinds == KIND_PACKET_BATCH
        # a usable entry takes at least 14 bytes (frame, tuple header, two 4-byte addresses)
        capacity = int(np.count_nonzero(~is_batch)) + int(sizes[is_batch].sum()) // 8 + 1
    columns = PacketColumns.empty(capacity)
    rejects = np.zeros(_N_REASONS, np.int64)
    rows = _decode_kernel(
        buffer,
        offsets,
        kinds,
        *columns.arrays(),
        rejects,
    )
    return DecodeResult(columns.head(rows), dict(zip(REJECT_REASONS, rejects.tolist(), strict=True)))


def decode_packet_infos(messages: list[bytes]) -> DecodeResult:
    """Decode a list of ``PacketInfo`` messages (joined once, then one kernel run)."""
    offsets = np.zeros(len(messages) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, messages), np.int64, len(messages)), out=offsets[1:])
    return decode_messages(b"".join(messages), offsets)


def decode_packet_batch(message: bytes) -> DecodeResult:
    """Decode one ``PacketBatch`` message."""
    offsets = np.array([0, len(message)], np.int64)
    return decode_messages(message, offsets, np.array([KIND_PACKET_BATCH], np.uint8))


__all__ = [
    "ADDRESS_WIDTH",
    "KIND_PACKET_BATCH",
    "KIND_PACKET_INFO",
    "MAX_PACKET_LENGTH",
    "MAX_TIMESTAMP_SECONDS",
    "REJECT_REASONS",
    "DecodeResult",
    "EncodedPackets",
    "decode_messages",
    "decode_packet_batch",
    "decode_packet_infos",
    "encode_packet_batch",
    "encode_packet_infos",
    "encode_packets",
]
