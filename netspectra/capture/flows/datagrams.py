"""Export datagrams in a batch, and a reader that takes them out of a capture of export traffic.

A collector never sees one datagram at a time either: the UDP sources gather what one
``recvmmsg``-like drain returns, ``netspectra analyze --flows`` what one pcap holds, and the
decoders take the whole batch (one buffer, offsets into it), so their numba kernels run once per
batch.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from netspectra.model.packets import IPV4_MAPPED_PREFIX

_NS = 1_000_000_000


def mapped_address(address: str | bytes) -> bytes:
    """16 bytes for an address (IPv4 mapped into IPv6, as every address column holds it)."""
    if isinstance(address, bytes):
        if len(address) == 16:
            return address
        if len(address) == 4:
            return IPV4_MAPPED_PREFIX + address
        raise ValueError(f"an address is 4 or 16 bytes, got {len(address)}")
    parsed = ipaddress.ip_address(address)
    if isinstance(parsed, ipaddress.IPv4Address):
        return IPV4_MAPPED_PREFIX + parsed.packed
    return parsed.packed


def address_text(address: bytes) -> str:
    """The printed form of a 16-byte column address (IPv4 for mapped ones)."""
    if address[:12] == IPV4_MAPPED_PREFIX:
        return str(ipaddress.IPv4Address(address[12:]))
    return str(ipaddress.IPv6Address(address))


@dataclass(slots=True)
class DatagramBatch:
    """Datagrams ``buf[offsets[i] : offsets[i] + lengths[i]]``, each with its sender and arrival time."""

    buf: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]
    lengths: npt.NDArray[np.int64]
    exporter: npt.NDArray[np.uint8]  # (n, 16): the UDP source address, IPv4 mapped
    recv_ns: npt.NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.offsets.shape[0])

    @classmethod
    def from_datagrams(cls, datagrams: Iterable[tuple[bytes, str | bytes, int]]) -> DatagramBatch:
        """A batch from ``(payload, sender address, arrival ns)`` triples."""
        payloads: list[bytes] = []
        senders: list[bytes] = []
        stamps: list[int] = []
        for payload, sender, stamp in datagrams:
            payloads.append(payload)
            senders.append(mapped_address(sender))
            stamps.append(stamp)
        lengths = np.fromiter((len(p) for p in payloads), np.int64, len(payloads))
        offsets = np.zeros(len(payloads), np.int64)
        if len(payloads) > 1:
            offsets[1:] = np.cumsum(lengths[:-1])
        return cls(
            buf=np.frombuffer(b"".join(payloads), np.uint8).copy(),
            offsets=offsets,
            lengths=lengths,
            exporter=np.frombuffer(b"".join(senders), np.uint8).reshape(len(senders), 16).copy(),
            recv_ns=np.asarray(stamps, np.int64),
        )

    def payload(self, i: int) -> bytes:
        start = int(self.offsets[i])
        return self.buf[start : start + int(self.lengths[i])].tobytes()


@dataclass(frozen=True, slots=True)
class CapturedDatagram:
    """One UDP datagram out of a capture file."""

    ts_ns: int
    src: str
    dst_port: int
    payload: bytes


def _ip_payload(frame: bytes, linktype: int) -> tuple[int, bytes] | None:
    """(IP version, IP packet) of a frame; None for anything else."""
    if linktype == 1:
        pos = 12
        ethertype = struct.unpack_from("!H", frame, pos)[0] if len(frame) >= 14 else 0
        pos = 14
        while ethertype in (0x8100, 0x88A8, 0x9100) and len(frame) >= pos + 4:
            ethertype = struct.unpack_from("!H", frame, pos + 2)[0]
            pos += 4
        if ethertype == 0x0800:
            return 4, frame[pos:]
        if ethertype == 0x86DD:
            return 6, frame[pos:]
        return None
    if linktype in (101, 12, 14, 228, 229):
        version = frame[0] >> 4 if frame else 0
        return (version, frame) if version in (4, 6) else None
    if linktype in (0, 108):
        return _ip_payload(frame[4:], 101)
    if linktype == 113 and len(frame) >= 16:  # Linux cooked: the protocol at 14, the packet at 16
        ethertype = struct.unpack_from("!H", frame, 14)[0]
        return {0x0800: (4, frame[16:]), 0x86DD: (6, frame[16:])}.get(ethertype)
    return None


def _udp(ip: tuple[int, bytes]) -> tuple[str, int, bytes] | None:
    """(source address, destination port, UDP payload) of an unfragmented IP/UDP packet."""
    version, packet = ip
    if version == 4:
        if len(packet) < 20:
            return None
        ihl = (packet[0] & 0x0F) * 4
        total = struct.unpack_from("!H", packet, 2)[0]
        flags_fragment = struct.unpack_from("!H", packet, 6)[0]
        if packet[9] != 17 or flags_fragment & 0x3FFF:  # not UDP, or a fragment
            return None
        source = str(ipaddress.IPv4Address(packet[12:16]))
        udp = packet[ihl : total if total else len(packet)]
    else:
        if len(packet) < 40 or packet[6] != 17:  # extension headers: not exported over by routers
            return None
        source = str(ipaddress.IPv6Address(packet[8:24]))
        udp = packet[40 : 40 + struct.unpack_from("!H", packet, 4)[0]]
    if len(udp) < 8:
        return None
    length = struct.unpack_from("!H", udp, 4)[0]
    return source, struct.unpack_from("!H", udp, 2)[0], udp[8 : length if length >= 8 else len(udp)]


_PCAP_FORMATS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),
    b"\xa1\xb2\x3c\x4d": (">", 1),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


def _pcap_frames(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    order, frac_ns = _PCAP_FORMATS[data[:4]]
    linktype = struct.unpack_from(order + "I", data, 20)[0] & 0x0FFFFFFF
    pos = 24
    while pos + 16 <= len(data):
        seconds, fraction, caplen, _wirelen = struct.unpack_from(order + "IIII", data, pos)
        yield seconds * _NS + fraction * frac_ns, linktype, data[pos + 16 : pos + 16 + caplen]
        pos += 16 + caplen


def _ticks_to_ns(ticks: int, resolution: int) -> int:
    """pcapng's if_tsresol: high bit clear = 10^-v seconds per tick, set = 2^-v."""
    if resolution & 0x80:
        return (ticks * _NS) >> (resolution & 0x7F)
    if resolution <= 9:
        return ticks * 10 ** (9 - resolution)
    return ticks // 10 ** (resolution - 9)


def _interface(body: bytes, order: str) -> tuple[int, int, int]:
    """(link type, if_tsresol, if_tsoffset seconds) of an Interface Description Block's body."""
    linktype = struct.unpack_from(order + "H", body, 0)[0]
    resolution, offset_s = 6, 0
    pos = 8
    while pos + 4 <= len(body):
        code, length = struct.unpack_from(order + "HH", body, pos)
        value = body[pos + 4 : pos + 4 + length]
        if code == 0:
            break
        if code == 9 and length >= 1:
            resolution = value[0]
        elif code == 14 and length == 8:
            offset_s = struct.unpack_from(order + "q", value)[0]
        pos += 4 + (length + 3) // 4 * 4
    return linktype, resolution, offset_s


def _pcapng_frames(data: bytes) -> Iterator[tuple[int, int, bytes]]:
    """Frames of every section: Enhanced, Simple and (obsolete) Packet Blocks; the rest skipped.

    A block that overruns the file or has an impossible length ends the walk (what came before
    it is kept), as a truncated capture does.
    """
    order = "<"
    interfaces: list[tuple[int, int, int]] = []
    pos = 0
    while pos + 12 <= len(data):
        if data[pos : pos + 4] == _PCAPNG_SHB:
            magic = data[pos + 8 : pos + 12]
            order = "<" if magic == b"\x4d\x3c\x2b\x1a" else ">"
            interfaces = []  # a new section numbers its interfaces from 0
        kind, length = struct.unpack_from(order + "II", data, pos)
        if length < 12 or length % 4 or pos + length > len(data):
            return
        body = data[pos + 8 : pos + length - 4]
        pos += length
        if kind == 1 and len(body) >= 8:
            interfaces.append(_interface(body, order))
        elif kind in (6, 2) and len(body) >= 20:
            if kind == 6:
                iface, high, low, caplen = struct.unpack_from(order + "IIII", body, 0)
            else:
                iface, _drops, high, low, caplen = struct.unpack_from(order + "HHIII", body, 0)
            if iface >= len(interfaces):
                continue
            linktype, resolution, offset_s = interfaces[iface]
            stamp = _ticks_to_ns((high << 32) | low, resolution) + offset_s * _NS
            yield stamp, linktype, body[20 : 20 + caplen]
        elif kind == 3 and len(body) >= 4 and interfaces:  # Simple Packet Block: interface 0, no time
            (wirelen,) = struct.unpack_from(order + "I", body, 0)
            yield 0, interfaces[0][0], body[4 : 4 + min(wirelen, len(body) - 4)]


def read_capture_datagrams(path: Path) -> Iterator[CapturedDatagram]:
    """Every UDP datagram of a pcap (either byte order, µs or ns timestamps) or pcapng file.

    A capture of export traffic is small (a datagram carries tens of records), so this walks
    frames in Python; the records inside go to the batch kernels.
    """
    data = path.read_bytes()
    if len(data) < 24:
        raise ValueError(f"{path}: too short for a pcap or pcapng file header")
    magic = data[:4]
    if magic in _PCAP_FORMATS:
        frames = _pcap_frames(data)
    elif magic == _PCAPNG_SHB:
        frames = _pcapng_frames(data)
    else:
        raise ValueError(f"{path}: not a pcap or pcapng file (magic {magic.hex()})")
    for stamp, linktype, frame in frames:
        ip = _ip_payload(frame, linktype)
        udp = _udp(ip) if ip is not None else None
        if udp is not None:
            yield CapturedDatagram(stamp, udp[0], udp[1], udp[2])


#: Distinct exporters counted one by one; past it (a spoofed flood without an allow-list) the
#: rest are summed under ``"other"``, so the counters (and metric labels) stay bounded.
EXPORTER_LIMIT = 1024


@dataclass(slots=True)
class ExporterTally:
    """Per-exporter counters (``datagrams``, ``records``, ``missed_packets``, ...), bounded in size.

    Keyed by the exporter's printed address (IPv4 for mapped ones); updated per datagram or per
    batch, never per record.
    """

    limit: int = EXPORTER_LIMIT
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    _names: dict[bytes, str] = field(default_factory=dict)

    def add(self, exporter: bytes, name: str, value: int = 1) -> None:
        if not value:
            return
        text = self._names.get(exporter)
        if text is None:
            text = address_text(exporter) if len(self._names) < self.limit else "other"
            if text != "other":
                self._names[exporter] = text
        counts = self.counts.get(text)
        if counts is None:
            counts = self.counts[text] = Counter()
        counts[name] += value

    def add_all(self, name: str, values: Mapping[bytes, int]) -> None:
        """``add`` for a batch's tallies (exporter → value): callers count per datagram locally."""
        for exporter, value in values.items():
            self.add(exporter, name, value)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {exporter: dict(counts) for exporter, counts in sorted(self.counts.items())}
