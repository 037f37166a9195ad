"""Measure where gopacket 1.1.19 (Go2NetSpectra's parser) and ours give a frame different keys.

    python bench/go_parser.py [--packets 2000000] [--trace PATH] [--smoke]

Reads the analyze bench's generated trace (the same generator, seed and snap length; made here
if missing) with a small pure-Python header walker, independent of the numba parser, and counts
the frames in each class where gopacket's answer differs from ours (and tshark's):

* outer EtherType 0x9100 (an old QinQ TPID): gopacket has no decoder for it, the frame is dropped;
* IPv4 first fragments (MF set, offset 0) of TCP/UDP: gopacket yields a Fragment layer, ports 0;
* IPv6 packets with a Fragment header (first or not): ports 0, which differs from ours for first
  fragments of TCP/UDP (later fragments have ports 0 in both);
* IPv6 packets whose first next-header is an extension header: gopacket reports that value (0 hop
  by hop, 44 fragment, 43, 60, ...) as the protocol, we the upper-layer protocol after the chain;
* TCP headers cut by the snap length (at least the 4 port bytes but fewer than 20 captured):
  gopacket's TCP decoder fails before it reads the ports, ports 0; ours reads them. (With 20
  bytes or more but fewer than the data offset the decoder fails after reading them, and the TCP
  layer is kept: the real ports, as ours.) UDP headers with 4 to 7 bytes captured: ports 0 there.

The classes follow gopacket 1.1.19's source (layers/ethernet.go, ip4.go, ip6.go, tcp.go, udp.go)
and were checked against gopacket itself (tests/unit/capture/test_capture_compat.py builds a small
Go program against Debian's gopacket 1.1.19; ``probe.compat: go`` agrees with it frame by frame).
Prints each class's share of the frames, and "frames Go keys as we do" as a ratio. ``--smoke``:
20 000 packets in a temporary folder.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.analyze import SNAPLEN, generate_trace

_TAGS = {0x8100, 0x88A8, 0x9100, 0x9200}
_EXTENSIONS = {0, 43, 60, 44, 51, 135, 139, 140}


def classify(frame: bytes) -> set[str]:
    """The difference classes of one Ethernet frame (empty: gopacket and we agree)."""
    found: set[str] = set()
    if len(frame) < 14:
        return found
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == 0x9100:
        return {"outer EtherType 0x9100: frame dropped"}
    at = 14
    while ethertype in _TAGS and at + 4 <= len(frame):
        ethertype = struct.unpack_from("!H", frame, at + 2)[0]
        at += 4
    if ethertype == 0x0800 and at + 20 <= len(frame):
        ihl = (frame[at] & 0xF) * 4
        flags = struct.unpack_from("!H", frame, at + 6)[0]
        protocol = frame[at + 9]
        if protocol in (6, 17) and flags & 0x2000 and flags & 0x1FFF == 0:
            found.add("IPv4 first fragment (MF, offset 0): ports 0")
        elif protocol in (6, 17) and flags & 0x3FFF == 0:
            _l4_cut(frame, at + ihl, protocol, found)
    elif ethertype == 0x86DD and at + 40 <= len(frame):
        header = frame[at + 6]
        if header in _EXTENSIONS:
            found.add(f"IPv6 first next-header {header}: reported as the protocol")
        position = at + 40
        fragment = False
        while header in _EXTENSIONS and position + 2 <= len(frame):
            if header == 44:
                # a first fragment carries the L4 header (we read its ports); later ones do not
                first = (
                    position + 4 <= len(frame) and struct.unpack_from("!H", frame, position + 2)[0] >> 3 == 0
                )
                fragment = fragment or first
                header, position = frame[position], position + 8
            elif header == 51:
                header, position = frame[position], position + (frame[position + 1] + 2) * 4
            else:
                header, position = frame[position], position + (frame[position + 1] + 1) * 8
        if fragment and header in (6, 17) and position + 4 <= len(frame):
            found.add("IPv6 first fragment of TCP/UDP: ports 0")
        elif header in (6, 17) and not fragment:
            _l4_cut(frame, position, header, found)
    return found


def _l4_cut(frame: bytes, at: int, protocol: int, found: set[str]) -> None:
    captured = len(frame) - at
    if captured < 4:
        return  # we give ports 0 too
    if protocol == 6 and captured < 20:
        found.add("TCP header cut by the snap length (< 20 bytes): ports 0")
    elif protocol == 17 and captured < 8:
        found.add("UDP header cut by the snap length (< 8 bytes): ports 0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=2_000_000)
    parser.add_argument("--trace", type=Path)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.packets = 20_000
    folder = Path(tempfile.mkdtemp(prefix="netspectra-bench-")) if args.smoke else Path(tempfile.gettempdir())
    trace = args.trace or folder / f"netspectra-bench-synth-{args.packets}-snap{SNAPLEN}.pcap"
    if not trace.exists():
        print(f"generating {trace} ...", flush=True)
        generate_trace(trace, args.packets, flows=1_000 if args.smoke else 200_000)
    import dpkt

    classes: Counter[str] = Counter()
    frames = differing = 0
    with open(trace, "rb") as handle:
        for _ts, frame in dpkt.pcap.Reader(handle):
            frames += 1
            found = classify(frame)
            differing += bool(found)
            classes.update(found)
    print(f"{trace}: {frames:,} frames")
    print(f"{'where gopacket 1.1.19 differs from us (and tshark)':60} {'frames':>10} {'share':>8}")
    for name, count in sorted(classes.items()):
        print(f"{name:60} {count:10,} {count / frames:8.2%}")
    print(f"{'any of these':60} {differing:10,} {differing / frames:8.2%}")
    print(f"frames Go keys as we do: {(frames - differing) / frames:.4f}x of ours")
    if args.smoke:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
