"""The frame kernel on hand-built frames whose decoding is known byte by byte (not via the generator)."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from numba import njit

from netspectra.capture.kernel import SKIP_REASONS, decode_frame, parse_frame
from netspectra.model.fields import address_text
from netspectra.model.packets import PacketColumns

MAC = bytes(6) + bytes.fromhex("020000000001")


def ipv4(proto: int = 6, ihl: int = 5, total: int = 60, frag: int = 0, l4: bytes = b"") -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl, 0, total, 1, frag, 64, proto, 0,
                         bytes([192, 0, 2, 1]), bytes([198, 51, 100, 2]))  # fmt: skip
    return header + bytes(max(4 * ihl - 20, 0)) + l4


def ipv6(next_header: int, rest: bytes) -> bytes:
    src = bytes.fromhex("20010db8000000000000000000000001")
    dst = bytes.fromhex("20010db8000000000000000000000002")
    return struct.pack("!IHBB", 0x60000000, len(rest), next_header, 64) + src + dst + rest


PORTS = struct.pack("!HH", 1234, 443) + bytes(16)


def eth(ethertype: int, payload: bytes, tags: tuple[int, ...] = ()) -> bytes:
    out = MAC
    for tpid in tags:
        out += struct.pack("!HH", tpid, 7)
    return out + struct.pack("!H", ethertype) + payload


def decode(frame: bytes, linktype: int = 1, caplen: int | None = None) -> tuple[str, int, str, int, int, int]:
    buf = np.frombuffer(b"\xee" * 3 + frame, np.uint8)  # non-zero offset on purpose
    status, version, l3, proto, sport, dport = decode_frame(
        buf, 3, len(frame) if caplen is None else caplen, linktype
    )
    if status:
        return SKIP_REASONS[status], 0, "", 0, 0, 0
    src = bytes(buf[l3 + 12 : l3 + 16]) if version == 4 else bytes(buf[l3 + 8 : l3 + 24])
    return (
        "ok",
        int(version),
        str(address_text(bytes(10) + b"\xff\xff" + src if version == 4 else src)),
        int(proto),
        int(sport),
        int(dport),
    )


V4_TCP = ("ok", 4, "192.0.2.1", 6, 1234, 443)
V6_UDP = ("ok", 6, "2001:db8::1", 17, 1234, 443)


@pytest.mark.parametrize(
    ("frame", "linktype", "expected"),
    [
        (eth(0x0800, ipv4(l4=PORTS)), 1, V4_TCP),
        (eth(0x0800, ipv4(l4=PORTS), tags=(0x8100, 0x8100, 0x88A8)), 1, V4_TCP),
        (eth(0x0800, ipv4(l4=PORTS), tags=(0x9100, 0x8100)), 1, V4_TCP),
        (eth(0x86DD, ipv6(17, PORTS)), 1, V6_UDP),
        # 802.3 length + LLC/SNAP carrying IPv4
        (
            MAC + struct.pack("!H", 100) + bytes.fromhex("aaaa03000000") + b"\x08\x00" + ipv4(l4=PORTS),
            1,
            V4_TCP,
        ),
        # PPPoE session, PPP protocol 0x0021
        (eth(0x8864, bytes.fromhex("1100000100400021") + ipv4(l4=PORTS)), 1, V4_TCP),
        # two MPLS labels, bottom of stack on the second
        (eth(0x8847, bytes.fromhex("00010040") + bytes.fromhex("00020140") + ipv6(17, PORTS)), 1, V6_UDP),
        (eth(0x0806, bytes(28)), 1, ("non_ip", 0, "", 0, 0, 0)),
        (eth(0x88CC, bytes(40)), 1, ("non_ip", 0, "", 0, 0, 0)),
        (eth(0x0800, ipv4(l4=PORTS), tags=(0x8100,))[:16], 1, ("truncated_l2", 0, "", 0, 0, 0)),
        (eth(0x0800, ipv4(l4=PORTS))[:33], 1, ("truncated_ip", 0, "", 0, 0, 0)),
        (eth(0x0800, ipv4(ihl=4, l4=PORTS)), 1, ("bad_ip_header", 0, "", 0, 0, 0)),
        (eth(0x0800, ipv4(total=12, l4=PORTS)), 1, ("bad_ip_header", 0, "", 0, 0, 0)),
        (eth(0x0800, ipv4(total=0, l4=PORTS)), 1, V4_TCP),  # TSO: total length 0 is accepted
        (eth(0x0800, b"\x50" + bytes(40)), 1, ("bad_ip_version", 0, "", 0, 0, 0)),
        # IPv4 options; first fragment keeps ports, later fragment does not
        (eth(0x0800, ipv4(ihl=7, l4=PORTS)), 1, V4_TCP),
        (eth(0x0800, ipv4(frag=0x2000, l4=PORTS)), 1, V4_TCP),
        (eth(0x0800, ipv4(frag=0x0010, l4=PORTS)), 1, ("ok", 4, "192.0.2.1", 6, 0, 0)),
        (eth(0x0800, ipv4(proto=1, l4=PORTS)), 1, ("ok", 4, "192.0.2.1", 1, 0, 0)),
        # ports cut by the snap length: packet kept, ports 0 (tshark still shows ip.src)
        (eth(0x0800, ipv4(l4=PORTS))[:37], 1, ("ok", 4, "192.0.2.1", 6, 0, 0)),
        # IPv6: hop-by-hop, routing, AH, destination options, then UDP
        (
            eth(
                0x86DD,
                ipv6(
                    0,
                    bytes([43, 0])
                    + bytes(6)
                    + bytes([51, 0])
                    + bytes(6)
                    + bytes([60, 1])
                    + bytes(10)
                    + bytes([17, 0])
                    + bytes(6)
                    + PORTS,
                ),
            ),
            1,
            V6_UDP,
        ),
        # IPv6 first fragment keeps ports; non-first does not
        (eth(0x86DD, ipv6(44, bytes([17, 0, 0, 1]) + bytes(4) + PORTS)), 1, V6_UDP),
        (
            eth(0x86DD, ipv6(44, bytes([17, 0, 0, 8]) + bytes(4) + PORTS)),
            1,
            ("ok", 6, "2001:db8::1", 17, 0, 0),
        ),
        # chain cut by the capture: protocol is the header that could not be walked
        (eth(0x86DD, ipv6(0, bytes([60, 0]) + bytes(6) + bytes([6]))), 1, ("ok", 6, "2001:db8::1", 60, 0, 0)),
        (
            eth(0x86DD, ipv6(0, bytes([60, 0]) + bytes(6) + bytes([6, 0]))),
            1,
            ("ok", 6, "2001:db8::1", 6, 0, 0),
        ),
        (ipv4(l4=PORTS), 101, V4_TCP),
        (ipv6(17, PORTS), 101, V6_UDP),
        (ipv4(l4=PORTS), 228, V4_TCP),
        (ipv6(17, PORTS), 229, V6_UDP),
        (ipv4(l4=PORTS), 229, ("bad_ip_version", 0, "", 0, 0, 0)),
        (bytes(16), 101, ("bad_ip_version", 0, "", 0, 0, 0)),
        (struct.pack("<I", 2) + ipv4(l4=PORTS), 0, V4_TCP),
        (struct.pack(">I", 2) + ipv4(l4=PORTS), 0, V4_TCP),
        (struct.pack("<I", 30) + ipv6(17, PORTS), 108, V6_UDP),
        (struct.pack(">I", 28) + ipv6(17, PORTS), 108, V6_UDP),
        (struct.pack(">I", 24) + ipv6(17, PORTS), 0, V6_UDP),
        (struct.pack("<I", 7) + ipv4(l4=PORTS), 0, ("non_ip", 0, "", 0, 0, 0)),
        (bytes(14) + b"\x08\x00" + ipv4(l4=PORTS), 113, V4_TCP),
        (bytes(14) + b"\x81\x00\x00\x07\x86\xdd" + ipv6(17, PORTS), 113, V6_UDP),
        (b"\x86\xdd" + bytes(18) + ipv6(17, PORTS), 276, V6_UDP),
        (b"\x08\x00" + bytes(10), 276, ("truncated_l2", 0, "", 0, 0, 0)),
        (ipv4(l4=PORTS), 147, ("unsupported_linktype", 0, "", 0, 0, 0)),
    ],
)
def test_decode_frame(frame: bytes, linktype: int, expected: tuple[str, int, str, int, int, int]) -> None:
    assert decode(frame, linktype) == expected


@njit(cache=False)
def _probe_loop(buf, offsets, caplens, linktype, ts, src, dst, sport, dport, proto, length, ver):  # type: ignore[no-untyped-def]
    n = 0
    for j in range(offsets.shape[0]):
        status = parse_frame(buf, offsets[j], caplens[j], caplens[j] + 100, linktype, 1000 + j, n,
                             ts, src, dst, sport, dport, proto, length, ver)  # fmt: skip
        if status == 0:
            n += 1
    return n


def test_parse_frame_is_callable_from_another_njit_loop() -> None:
    frames = [eth(0x0800, ipv4(l4=PORTS)), eth(0x0806, bytes(28)), eth(0x86DD, ipv6(17, PORTS))]
    buf = np.frombuffer(b"".join(frames), np.uint8)
    caplens = np.array([len(f) for f in frames], np.int64)
    offsets = np.concatenate([[0], np.cumsum(caplens)[:-1]])
    cols = PacketColumns.empty(3)
    n = _probe_loop(buf, offsets, caplens, 1, cols.ts_ns, cols.src_ip, cols.dst_ip, cols.src_port,
                    cols.dst_port, cols.protocol, cols.length, cols.ip_version)  # fmt: skip
    assert n == 2
    got = cols.head(2)
    assert [address_text(a) for a in got.src_ip] == ["192.0.2.1", "2001:db8::1"]
    assert [address_text(a) for a in got.dst_ip] == ["198.51.100.2", "2001:db8::2"]
    assert got.ts_ns.tolist() == [1000, 1002]
    assert got.length.tolist() == [len(frames[0]) + 100, len(frames[2]) + 100]
    assert got.protocol.tolist() == [6, 17]
    assert got.src_port.tolist() == [1234, 1234] and got.dst_port.tolist() == [443, 443]
    assert got.ip_version.tolist() == [4, 6]
