"""A seeded traffic generator that writes pcap/pcapng files together with their exact ground truth.

Tests and benchmarks need traces whose every packet is known. The generator draws per-packet
attributes with numpy (flows with Zipf-distributed sizes, planted super-spreaders, address
families, tags, extension headers, fragments, ICMP, ARP, lengths), assembles the bytes of all
records at once as rows of a matrix (one vectorised write per header field, never a Python loop
per packet) and writes the captured prefix of each row. The truth is derived from the drawn
attributes and the header layout the generator itself chose — not by parsing the file — so it
is an independent check of :mod:`netspectra.capture`.

The truth follows the documented decoding rules of :mod:`netspectra.capture.kernel`: outermost IP
header; wire length as bytes; ports 0 for ICMP, non-first fragments and TCP/UDP headers cut
before the port bytes; an IPv6 extension chain cut by the snap length leaves the protocol at the
header that could not be walked; ARP is skipped as ``non_ip``; a frame cut inside the link layer
is ``truncated_l2`` and inside the fixed IP header ``truncated_ip``.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from netspectra.model.fields import KeyField, address_text
from netspectra.model.packets import ADDRESS_WIDTH, IPV4_MAPPED_PREFIX, PacketColumns

#: Link types the generator can frame packets in.
GENERATOR_LINKTYPES = (0, 1, 101, 108, 113, 228, 229, 276)
_L2_LEN = {0: 4, 1: 14, 101: 0, 108: 4, 113: 16, 228: 0, 229: 0, 276: 20}
# IPv6 extension-header chains: (type, length in bytes) each; the fragment header is appended separately.
_EXT_CHAINS: tuple[tuple[tuple[int, int], ...], ...] = (
    (),
    ((0, 8),),
    ((0, 8), (60, 16)),
    ((0, 8), (43, 8), (60, 16)),
)
_MAX_HEADER = 22 + 40 + 40 + 8 + 20  # QinQ + IPv6 + longest chain + fragment + TCP


@dataclass(frozen=True)
class TrafficSpec:
    """What to generate. Fractions are of packets (``ipv6_fraction`` and ``icmp_fraction`` of flows)."""

    packets: int
    flows: int
    seed: int = 1
    snaplen: int = 96
    zipf: float = 1.1
    ipv6_fraction: float = 0.2
    vlan_fraction: float = 0.1
    qinq_fraction: float = 0.05
    ext_header_fraction: float = 0.05
    fragment_fraction: float = 0.02
    icmp_fraction: float = 0.03
    arp_fraction: float = 0.01
    spreaders: int = 0
    spreader_fanout: int = 0
    #: number of the first planted spreader (198.18.k.1): traces of several time slices plant
    #: different (or overlapping) spreaders, and the same sources 100.64.x.y hear each one
    spreader_base: int = 0
    start_ns: int = 1_700_000_000_000_000_000
    duration_s: float = 60.0
    format: Literal["pcap", "pcapng"] = "pcap"
    nanosecond: bool = False
    big_endian: bool = False
    #: pcap: exactly one link type; pcapng: one interface per entry, packets spread over them.
    linktypes: tuple[int, ...] = (1,)

    def __post_init__(self) -> None:
        if self.packets < 0 or self.flows < 1:
            raise ValueError(f"need packets >= 0 and flows >= 1 (got {self.packets}, {self.flows})")
        if self.spreader_base < 0 or self.spreader_base + self.spreaders > 238 * 256:
            raise ValueError(
                f"spreader_base + spreaders must be 0..{238 * 256} (198.18.0.1 .. 198.255.255.1); "
                f"got {self.spreader_base} + {self.spreaders}"
            )
        if self.spreaders * self.spreader_fanout > self.packets:
            raise ValueError(
                f"spreaders x fanout = {self.spreaders * self.spreader_fanout} exceeds packets={self.packets}"
            )
        if self.snaplen < 1 or self.snaplen > 262_144:
            raise ValueError(f"snaplen must be 1..262144 (got {self.snaplen})")
        if not self.linktypes or any(lt not in GENERATOR_LINKTYPES for lt in self.linktypes):
            raise ValueError(f"linktypes must be a non-empty subset of {GENERATOR_LINKTYPES}")
        if self.format == "pcap" and len(self.linktypes) != 1:
            raise ValueError("a classic pcap file has exactly one link type; use format='pcapng' for several")


@dataclass(frozen=True)
class GroundTruth:
    """Exactly what an ideal parser emits for the file, in file order, plus what it skips."""

    packets: PacketColumns
    skipped: dict[str, int]
    spreaders: tuple[bytes, ...]  # 16-byte destination addresses of the planted spreaders
    frames: int = 0
    #: For each row of ``packets``, the 0-based number of the frame (record) it came from.
    frame_index: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass(frozen=True)
class FlowTruth:
    packets: int
    bytes: int
    first_ns: int
    last_ns: int


@dataclass
class _Rows:
    """Per-packet attributes (all arrays of length n)."""

    ts_ns: npt.NDArray[np.int64]
    iface: npt.NDArray[np.int64]
    linktype: npt.NDArray[np.int64]
    arp: npt.NDArray[np.bool_]
    v6: npt.NDArray[np.bool_]
    src: npt.NDArray[np.uint8]
    dst: npt.NDArray[np.uint8]
    sport: npt.NDArray[np.int64]
    dport: npt.NDArray[np.int64]
    proto: npt.NDArray[np.int64]
    tags: npt.NDArray[np.int64]
    outer_tpid: npt.NDArray[np.int64]
    chain: npt.NDArray[np.int64]
    frag: npt.NDArray[np.int64]  # 0 none, 1 first fragment, 2 non-first fragment
    af_swap: npt.NDArray[np.bool_]
    af6: npt.NDArray[np.int64]
    l2len: npt.NDArray[np.int64]
    iplen: npt.NDArray[np.int64]  # IP header incl. extension headers
    ip_total: npt.NDArray[np.int64]
    wire: npt.NDArray[np.int64]
    caplen: npt.NDArray[np.int64]
    extra: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)


def _addresses(
    rng: np.random.Generator, v6: npt.NDArray[np.bool_], v4_net: int, v6_net: int
) -> npt.NDArray[np.uint8]:
    n = v6.shape[0]
    out = np.zeros((n, ADDRESS_WIDTH), np.uint8)
    out[:, :] = rng.integers(0, 256, (n, ADDRESS_WIDTH), dtype=np.uint8)
    out[v6, 0:2] = (0x20, 0x01)
    out[v6, 2:4] = (0x0D, 0xB8)
    out[v6, 4] = v6_net
    v4 = ~v6
    out[v4, :12] = np.frombuffer(IPV4_MAPPED_PREFIX, np.uint8)
    out[v4, 12] = v4_net
    return out


def _draw(spec: TrafficSpec) -> _Rows:
    rng = np.random.default_rng(spec.seed)
    n = spec.packets
    planted = spec.spreaders * spec.spreader_fanout
    regular = n - planted

    # Flows with Zipf-distributed sizes.
    flow_v6 = rng.random(spec.flows) < spec.ipv6_fraction
    flow_src = _addresses(rng, flow_v6, 10, 0x10)
    flow_dst = _addresses(rng, flow_v6, 10, 0x20)
    flow_icmp = rng.random(spec.flows) < spec.icmp_fraction
    flow_proto = np.where(rng.random(spec.flows) < 0.6, 6, 17)
    flow_proto = np.where(flow_icmp, np.where(flow_v6, 58, 1), flow_proto)
    flow_sport = rng.integers(1024, 65536, spec.flows)
    flow_dport = rng.choice(np.array([53, 80, 443, 8080, 123, 22, 5353]), spec.flows)
    flow_dport = np.where(rng.random(spec.flows) < 0.3, rng.integers(1, 65536, spec.flows), flow_dport)
    weights = 1.0 / np.arange(1, spec.flows + 1, dtype=np.float64) ** spec.zipf
    flow_of_row = rng.choice(spec.flows, size=regular, p=weights / weights.sum())

    v6 = np.concatenate([flow_v6[flow_of_row], np.zeros(planted, bool)])
    src = np.concatenate([flow_src[flow_of_row], np.zeros((planted, ADDRESS_WIDTH), np.uint8)])
    dst = np.concatenate([flow_dst[flow_of_row], np.zeros((planted, ADDRESS_WIDTH), np.uint8)])
    proto = np.concatenate([flow_proto[flow_of_row], np.full(planted, 6)])
    sport = np.concatenate([flow_sport[flow_of_row], rng.integers(1024, 65536, planted)])
    dport = np.concatenate([flow_dport[flow_of_row], np.full(planted, 80)])

    # Planted super-spreaders: spreader k (198.18.k.1) hears from fanout distinct 100.64.x.y sources.
    spreaders: list[bytes] = []
    if planted:
        first = spec.spreader_base
        k = np.repeat(np.arange(first, first + spec.spreaders), spec.spreader_fanout)
        j = np.tile(np.arange(spec.spreader_fanout), spec.spreaders)
        rows = slice(regular, n)
        dst[rows, :12] = np.frombuffer(IPV4_MAPPED_PREFIX, np.uint8)
        dst[rows, 12] = 198
        dst[rows, 13] = 18 + (k >> 8)
        dst[rows, 14] = k & 0xFF
        dst[rows, 15] = 1
        src[rows, :12] = np.frombuffer(IPV4_MAPPED_PREFIX, np.uint8)
        src[rows, 12] = 100
        src[rows, 13] = 64 + ((j >> 16) & 0x3F)
        src[rows, 14] = (j >> 8) & 0xFF
        src[rows, 15] = j & 0xFF
        spreaders = [
            IPV4_MAPPED_PREFIX + bytes([198, 18 + (s >> 8), s & 0xFF, 1])
            for s in range(spec.spreader_base, spec.spreader_base + spec.spreaders)
        ]
    order = rng.permutation(n)
    v6, src, dst, proto, sport, dport = (
        v6[order],
        src[order],
        dst[order],
        proto[order],
        sport[order],
        dport[order],
    )

    iface = rng.integers(0, len(spec.linktypes), n)
    linktype = np.asarray(spec.linktypes, np.int64)[iface]
    # Families forced by the link type.
    only4 = linktype == 228
    only6 = linktype == 229
    if only4.any() or only6.any():
        fix = (only4 & v6) | (only6 & ~v6)
        v6 = np.where(only6, True, np.where(only4, False, v6))
        fresh = _addresses(rng, v6, 11, 0x30)
        src[fix] = fresh[fix]
        fresh = _addresses(rng, v6, 11, 0x40)
        dst[fix] = fresh[fix]
        proto = np.where(fix & ((proto == 1) | (proto == 58)), np.where(v6, 58, 1), proto)
    ether = linktype == 1
    can_arp = ether | (linktype == 113) | (linktype == 276) | (linktype == 0) | (linktype == 108)
    planted_row = order >= regular  # spreader packets stay IP so every planted source is seen
    arp = can_arp & ~planted_row & (rng.random(n) < spec.arp_fraction)
    u = rng.random(n)
    tags = np.where(
        ether & (u < spec.qinq_fraction),
        2,
        np.where(ether & (u < spec.qinq_fraction + spec.vlan_fraction), 1, 0),
    )
    outer_tpid = np.where(rng.random(n) < 0.5, 0x88A8, 0x9100)
    chain = np.where(v6 & (rng.random(n) < spec.ext_header_fraction), rng.integers(1, len(_EXT_CHAINS), n), 0)
    u = rng.random(n)
    frag = np.where(~arp & (u < spec.fragment_fraction), np.where(u < spec.fragment_fraction / 2, 1, 2), 0)
    # NULL carries the AF in the capturing host's order (readers accept both); LOOP in network order.
    af_swap = (rng.random(n) < 0.5) | (linktype == 108)
    af6 = rng.choice(np.array([24, 28, 30]), n)

    l2len = np.array([_L2_LEN[lt] for lt in GENERATOR_LINKTYPES])[
        np.searchsorted(GENERATOR_LINKTYPES, linktype)
    ]
    l2len = l2len + 4 * tags
    chain_len = np.array([sum(length for _, length in c) for c in _EXT_CHAINS])[chain]
    iplen = np.where(v6, 40 + chain_len + np.where(frag > 0, 8, 0), 20)
    l4len = np.where(proto == 6, 20, 8)
    mtu_room = 1500 - iplen - l4len
    u = rng.random(n)
    payload = np.where(u < 0.3, 0, np.where(u < 0.7, (rng.random(n) * mtu_room).astype(np.int64), mtu_room))
    payload = np.where(frag == 2, np.maximum(payload, 8), payload)
    ip_total = iplen + l4len + payload
    wire = np.where(arp, l2len + 28, l2len + ip_total)
    wire = np.where(ether, np.maximum(wire, 60), wire)
    caplen = np.minimum(wire, spec.snaplen)

    offsets = np.sort(rng.integers(0, max(int(spec.duration_s * 1e9), 1), n))
    ts_ns = spec.start_ns + offsets
    if not spec.nanosecond:
        ts_ns = ts_ns // 1000 * 1000
    return _Rows(
        ts_ns=ts_ns.astype(np.int64), iface=iface, linktype=linktype, arp=arp, v6=v6, src=src, dst=dst,
        sport=sport, dport=dport, proto=proto, tags=tags, outer_tpid=outer_tpid, chain=chain, frag=frag,
        af_swap=af_swap, af6=af6, l2len=l2len, iplen=iplen, ip_total=ip_total, wire=wire, caplen=caplen,
        extra={"spreaders": np.frombuffer(b"".join(spreaders), np.uint8).reshape(-1, ADDRESS_WIDTH)},
    )  # fmt: skip


def _truth(rows: _Rows) -> tuple[PacketColumns, dict[str, int], npt.NDArray[np.int64]]:
    """What an ideal parser emits for ``rows`` (the decoding rules of the module docstring)."""
    cap = rows.caplen
    l3 = rows.l2len
    truncated_l2 = ~rows.arp & (cap < l3)
    truncated_ip = ~rows.arp & ~truncated_l2 & (cap < l3 + np.where(rows.v6, 40, 20))
    emitted = ~rows.arp & ~truncated_l2 & ~truncated_ip
    # Arp frames that are cut inside the link layer are still counted as truncated_l2.
    arp_cut = rows.arp & (cap < l3)
    proto = rows.proto.copy()
    walked = np.ones(len(cap), bool)
    # IPv6 extension chain walk: each header needs its first 2 bytes (fragment: 4) captured.
    pos = l3 + 40
    for index, chain in enumerate(_EXT_CHAINS):
        sel = rows.v6 & (rows.chain == index)
        at = pos.copy()
        for header_type, length in chain:
            cut = sel & walked & (at + 2 > cap)
            proto[cut] = header_type
            walked &= ~cut
            at = at + length
        pos = np.where(sel, at, pos)
    frag6 = rows.v6 & (rows.frag > 0)
    cut = frag6 & walked & (pos + 4 > cap)
    proto[cut] = 44
    walked &= ~cut
    l4 = l3 + rows.iplen
    ports = walked & ((rows.proto == 6) | (rows.proto == 17)) & (rows.frag != 2) & (l4 + 4 <= cap)
    sport = np.where(ports, rows.sport, 0)
    dport = np.where(ports, rows.dport, 0)
    skipped = {
        "non_ip": int((rows.arp & ~arp_cut).sum()),
        "truncated_l2": int((truncated_l2 | arp_cut).sum()),
        "truncated_ip": int(truncated_ip.sum()),
    }
    columns = PacketColumns(
        ts_ns=rows.ts_ns[emitted].copy(),
        src_ip=rows.src[emitted].copy(),
        dst_ip=rows.dst[emitted].copy(),
        src_port=sport[emitted].astype(np.uint16),
        dst_port=dport[emitted].astype(np.uint16),
        protocol=proto[emitted].astype(np.uint8),
        length=rows.wire[emitted].astype(np.uint64),
        ip_version=np.where(rows.v6[emitted], 6, 4).astype(np.uint8),
    )
    skips = {reason: count for reason, count in skipped.items() if count}
    return columns, skips, np.nonzero(emitted)[0].astype(np.int64)


class _Matrix:
    """Rows of record bytes; ``put`` writes one big-endian (or little-endian) field in every row."""

    def __init__(self, n: int, width: int) -> None:
        self.m = np.zeros((n, width), np.uint8)
        self.r = np.arange(n)

    def put(self, sel, col, value, nbytes: int, little: bool = False) -> None:  # type: ignore[no-untyped-def]
        rows = self.r[sel]
        col = np.broadcast_to(np.asarray(col, np.int64), self.r.shape)[sel]
        value = np.broadcast_to(np.asarray(value).astype(np.uint64), self.r.shape)[sel]
        for k in range(nbytes):
            shift = np.uint64(8 * (k if little else nbytes - 1 - k))
            self.m[rows, col + k] = ((value >> shift) & np.uint64(0xFF)).astype(np.uint8)

    def bytes_of(self, sel, col, data: npt.NDArray[np.uint8]) -> None:  # type: ignore[no-untyped-def]
        rows = self.r[sel]
        col = np.broadcast_to(np.asarray(col, np.int64), self.r.shape)[sel]
        for k in range(data.shape[1]):
            self.m[rows, col + k] = data[sel, k]


def _frames(m: _Matrix, rows: _Rows, a: int, b: int, d: int) -> None:
    """Write the frame headers of rows a..b-1 into matrix rows, data starting at column ``d``."""
    s = slice(a, b)
    lt = rows.linktype[s]
    arp = rows.arp[s]
    v6 = rows.v6[s]
    ether = lt == 1
    # Link layer.
    m.put(ether, d, 0x020000000001, 6)
    m.put(ether, d + 6, 0x020000000002, 6)
    tags = rows.tags[s]
    m.put(ether & (tags == 2), d + 12, rows.outer_tpid[s], 2)
    m.put(ether & (tags == 2), d + 14, 100, 2)
    inner = d + 12 + 4 * (tags == 2)
    m.put(ether & (tags >= 1), inner, 0x8100, 2)
    m.put(ether & (tags >= 1), inner + 2, 42, 2)
    ethertype = np.where(arp, 0x0806, np.where(v6, 0x86DD, 0x0800))
    m.put(ether, d + 12 + 4 * tags, ethertype, 2)
    sll = lt == 113
    m.put(sll, d + 2, 1, 2)
    m.put(sll, d + 4, 6, 2)
    m.put(sll, d + 6, 0x020000000003, 6)
    m.put(sll, d + 14, ethertype, 2)
    sll2 = lt == 276
    m.put(sll2, d, ethertype, 2)
    m.put(sll2, d + 4, 2, 4)
    m.put(sll2, d + 8, 1, 2)
    m.put(sll2, d + 11, 6, 1)
    m.put(sll2, d + 12, 0x020000000004, 6)
    null = (lt == 0) | (lt == 108)
    af = np.where(arp, 7, np.where(v6, rows.af6[s], 2))
    swap = rows.af_swap[s]
    m.put(null & swap, d, af, 4)
    m.put(null & ~swap, d, af, 4, little=True)
    l3 = d + rows.l2len[s]
    # ARP.
    m.put(arp, l3, 0x0001080006040001, 8)
    m.put(arp, l3 + 8, 0x020000000002, 6)
    m.put(arp, l3 + 14, 0x0A000001, 4)
    m.put(arp, l3 + 24, 0x0A000002, 4)
    # IPv4.
    ip = ~arp
    v4 = ip & ~v6
    frag = rows.frag[s]
    proto = rows.proto[s]
    m.put(v4, l3, 0x45, 1)
    m.put(v4, l3 + 2, rows.ip_total[s], 2)
    m.put(v4, l3 + 4, rows.ts_ns[s] & 0xFFFF, 2)
    flags = np.where(frag == 1, 0x2000, np.where(frag == 2, 185, 0x4000))
    m.put(v4, l3 + 6, flags, 2)
    m.put(v4, l3 + 8, 64, 1)
    m.put(v4, l3 + 9, proto, 1)
    m.bytes_of(v4, l3 + 12, rows.src[s, 12:])
    m.bytes_of(v4, l3 + 16, rows.dst[s, 12:])
    # IPv6 and its extension chain.
    m.put(v6 & ip, l3, 0x60000000, 4)
    m.put(v6 & ip, l3 + 4, rows.ip_total[s] - 40, 2)
    m.put(v6 & ip, l3 + 7, 64, 1)
    m.bytes_of(v6 & ip, l3 + 8, rows.src[s])
    m.bytes_of(v6 & ip, l3 + 24, rows.dst[s])
    chain = rows.chain[s]
    has_frag6 = v6 & ip & (frag > 0)
    for index, headers in enumerate(_EXT_CHAINS):
        sel = v6 & ip & (chain == index)
        at = l3 + 40
        previous = l3 + 6  # where the "next header" of the previous header lives
        for header_type, length in headers:
            m.put(sel, previous, header_type, 1)
            m.put(sel, at + 1, length // 8 - 1, 1)
            previous = at
            at = at + length
        m.put(sel & has_frag6, previous, 44, 1)
        m.put(sel & has_frag6, at, proto, 1)
        m.put(sel & has_frag6, at + 2, np.where(frag == 2, 185 << 3, 1), 2)
        m.put(sel & has_frag6, at + 4, 0xABCD0000 + (np.arange(a, b) & 0xFFFF), 4)
        m.put(sel & ~has_frag6, previous, proto, 1)
    # Transport (a non-first fragment carries payload bytes, which we leave zero).
    l4 = l3 + rows.iplen[s]
    first = ip & (frag != 2)
    ports = first & ((proto == 6) | (proto == 17))
    m.put(ports, l4, rows.sport[s], 2)
    m.put(ports, l4 + 2, rows.dport[s], 2)
    tcp = first & (proto == 6)
    m.put(tcp, l4 + 4, np.arange(a, b) * 1460, 4)
    m.put(tcp, l4 + 12, 0x5018, 2)
    m.put(tcp, l4 + 14, 0xFFFF, 2)
    udp = first & (proto == 17)
    m.put(udp, l4 + 4, rows.ip_total[s] - rows.iplen[s], 2)
    icmp = first & ((proto == 1) | (proto == 58))
    m.put(icmp, l4, np.where(proto == 1, 0x0800, 0x8000), 2)
    m.put(icmp, l4 + 4, np.arange(a, b) & 0xFFFFFFFF, 4)


def _file_header(spec: TrafficSpec) -> bytes:
    e = ">" if spec.big_endian else "<"
    if spec.format == "pcap":
        magic = 0xA1B23C4D if spec.nanosecond else 0xA1B2C3D4
        return _pack(e + "IHHiIII", magic, 2, 4, 0, 0, spec.snaplen, spec.linktypes[0])
    out = _pack(e + "IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + _pack(e + "I", 28)
    for linktype in spec.linktypes:
        options = _pack(e + "HHBxxx", 9, 1, 9) if spec.nanosecond else b""
        options += _pack(e + "HH", 0, 0) if options else b""
        length = 20 + len(options)
        out += _pack(e + "IIHHI", 1, length, linktype, 0, spec.snaplen) + options + _pack(e + "I", length)
    return out


def _pack(fmt: str, *values: int) -> bytes:
    return struct.pack(fmt, *values)


def write_trace(path: str | os.PathLike[str], spec: TrafficSpec) -> GroundTruth:
    """Write the trace ``spec`` describes to ``path`` and return its exact ground truth."""
    rows = _draw(spec)
    n = spec.packets
    little = not spec.big_endian
    pcap = spec.format == "pcap"
    d = 16 if pcap else 28
    max_cap = int(rows.caplen.max()) if n else 0
    width = d + max(_MAX_HEADER, max_cap) + 8
    step = max(1, (64 << 20) // width)
    with open(path, "wb") as out:
        out.write(_file_header(spec))
        for a in range(0, n, step):
            b = min(n, a + step)
            s = slice(a, b)
            m = _Matrix(b - a, width)
            every = np.ones(b - a, bool)
            cap = rows.caplen[s]
            ts = rows.ts_ns[s]
            _frames(m, rows, a, b, d)
            if pcap:
                frac = ts % 1_000_000_000 if spec.nanosecond else ts % 1_000_000_000 // 1000
                m.put(every, 0, ts // 1_000_000_000, 4, little)
                m.put(every, 4, frac, 4, little)
                m.put(every, 8, cap, 4, little)
                m.put(every, 12, rows.wire[s], 4, little)
                record = 16 + cap
            else:
                padded = (cap + 3) // 4 * 4
                record = 32 + padded
                units = ts if spec.nanosecond else ts // 1000
                cols = np.arange(width)
                pad = (cols[None, :] >= (d + cap)[:, None]) & (cols[None, :] < (d + padded)[:, None])
                m.m[pad] = 0
                m.put(every, 0, 6, 4, little)
                m.put(every, 4, record, 4, little)
                m.put(every, 8, rows.iface[s], 4, little)
                m.put(every, 12, units >> 32, 4, little)
                m.put(every, 16, units & 0xFFFFFFFF, 4, little)
                m.put(every, 20, cap, 4, little)
                m.put(every, 24, rows.wire[s], 4, little)
                m.put(every, record - 4, record, 4, little)
            keep = np.arange(width)[None, :] < record[:, None]
            out.write(m.m[keep].tobytes())
    columns, skipped, frame_index = _truth(rows)
    spreaders = tuple(bytes(row) for row in rows.extra["spreaders"])
    return GroundTruth(columns, skipped, spreaders, frames=n, frame_index=frame_index)


def exact_truth(truth: GroundTruth, fields: Sequence[KeyField]) -> dict[tuple[object, ...], FlowTruth]:
    """Per-flow packets, bytes, first and last timestamp for a key of ``fields``, computed with numpy.

    Keys are tuples in ``fields`` order: addresses as :func:`~netspectra.model.fields.address_text`
    text, ports and protocol as ints.
    """
    cols = truth.packets
    n = len(cols)
    if n == 0:
        return {}
    parts: list[npt.NDArray[np.uint8]] = []
    for f in fields:
        if f is KeyField.SRC_IP:
            parts.append(cols.src_ip)
        elif f is KeyField.DST_IP:
            parts.append(cols.dst_ip)
        elif f is KeyField.SRC_PORT:
            parts.append(cols.src_port.astype(">u2").view(np.uint8).reshape(n, 2))
        elif f is KeyField.DST_PORT:
            parts.append(cols.dst_port.astype(">u2").view(np.uint8).reshape(n, 2))
        elif f is KeyField.PROTOCOL:
            parts.append(cols.protocol.reshape(n, 1))
    raw = np.ascontiguousarray(np.concatenate(parts, axis=1)) if parts else np.zeros((n, 1), np.uint8)
    keys = raw.view(np.dtype((np.void, raw.shape[1]))).ravel()
    unique, inverse = np.unique(keys, return_inverse=True)
    inverse = inverse.ravel()
    packets = np.bincount(inverse)
    byte_sums = np.zeros(len(unique), np.int64)
    np.add.at(byte_sums, inverse, cols.length.astype(np.int64))
    first = np.full(len(unique), np.iinfo(np.int64).max)
    last = np.full(len(unique), np.iinfo(np.int64).min)
    np.minimum.at(first, inverse, cols.ts_ns)
    np.maximum.at(last, inverse, cols.ts_ns)
    result: dict[tuple[object, ...], FlowTruth] = {}
    for index, key in enumerate(unique):
        data = bytes(key)
        values: list[object] = []
        at = 0
        for f in fields:
            if f in (KeyField.SRC_IP, KeyField.DST_IP):
                values.append(address_text(data[at : at + 16]))
                at += 16
            elif f in (KeyField.SRC_PORT, KeyField.DST_PORT):
                values.append(int.from_bytes(data[at : at + 2], "big"))
                at += 2
            else:
                values.append(data[at])
                at += 1
        result[tuple(values)] = FlowTruth(
            int(packets[index]), int(byte_sums[index]), int(first[index]), int(last[index])
        )
    return result
