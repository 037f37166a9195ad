"""``probe.compat: go``: frames decoded as gopacket 1.1.19 (Go2NetSpectra's parser) decodes them.

Two truths, independent of our parser: each frame below is built with scapy and carries the answer
gopacket's rules give (docs/go-compatibility.md, one case per rule) beside tshark's, which the
default parser keeps; and, where Debian's Go toolchain and gopacket 1.1.19 source are installed
(scripts/dev test installs them), gopacket itself, through a 60-line Go program
(tests/fixtures/gopacket_oracle), decodes the same frames and a generated trace, and every frame's
key must equal ours in compat mode. A frame gopacket cannot decode is counted as a skip with its
reason, never lost silently.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import LLC, SNAP, Dot1AD, Dot1Q, Dot3, Ether
from scapy.packet import Raw

from netspectra.capture import CaptureReader
from netspectra.capture.stream import CaptureStreamParser
from netspectra.config import load_settings
from netspectra.errors import ConfigError
from netspectra.synth import TrafficSpec, write_trace

ORACLE_SOURCE = Path(__file__).parents[2] / "fixtures" / "gopacket_oracle"
GOPATH = Path("/usr/share/gocode")  # where golang-github-google-gopacket-dev puts gopacket's source
GOPACKET = GOPATH / "src" / "github.com" / "google" / "gopacket"

A, B = "192.0.2.1", "198.51.100.2"
A6, B6 = "2001:db8::1", "2001:db8::2"
SEGMENT = TCP(sport=1234, dport=80) / Raw(b"x" * 8)
DATAGRAM = UDP(sport=5353, dport=53) / Raw(b"x" * 8)


def _sll2(payload: bytes, protocol: int = 0x0800) -> bytes:
    """A Linux cooked v2 header (link type 276): protocol, reserved, ifindex, ARPHRD, type, addr."""
    return struct.pack("!HHIHBB8s", protocol, 0, 1, 1, 0, 6, bytes(8)) + payload


# (name, frame, link type, bytes captured (None: all), tshark's answer, gopacket's answer). An
# answer is ("ok", protocol, src port, dst port) or ("skip", reason).
CASES: list[tuple[str, bytes, int, int | None, tuple[Any, ...], tuple[Any, ...]]] = [
    ("outer EtherType 0x9100: no gopacket decoder",
     bytes(Ether(type=0x9100) / Dot1Q(vlan=7) / IP(src=A, dst=B) / SEGMENT), 1, None,
     ("ok", 6, 1234, 80), ("skip", "go_undecoded")),
    ("0x9100 behind an 802.1Q tag: no decoder either",
     bytes(Ether() / Dot1Q(vlan=7, type=0x9100) / Dot1Q(vlan=8) / IP(src=A, dst=B) / SEGMENT), 1, None,
     ("ok", 6, 1234, 80), ("skip", "go_undecoded")),
    ("0x9200 tag: no decoder",
     bytes(Ether(type=0x9200) / Dot1Q(vlan=7) / IP(src=A, dst=B) / SEGMENT), 1, None,
     ("ok", 6, 1234, 80), ("skip", "go_undecoded")),
    ("802.1ad + 802.1Q: decoded by both",
     bytes(Ether() / Dot1AD(vlan=7) / Dot1Q(vlan=8) / IP(src=A, dst=B) / SEGMENT), 1, None,
     ("ok", 6, 1234, 80), ("ok", 6, 1234, 80)),
    ("IPv4 first fragment (MF, offset 0): a Fragment layer, ports 0",
     bytes(Ether() / IP(src=A, dst=B, flags="MF") / SEGMENT), 1, None,
     ("ok", 6, 1234, 80), ("ok", 6, 0, 0)),
    ("IPv4 later fragment: ports 0 in both",
     bytes(Ether() / IP(src=A, dst=B, frag=3, proto=6) / Raw(b"y" * 24)), 1, None,
     ("ok", 6, 0, 0), ("ok", 6, 0, 0)),
    ("IPv6 first fragment: ports 0, protocol 44",
     bytes(Ether() / IPv6(src=A6, dst=B6) / IPv6ExtHdrFragment(offset=0, m=1) / DATAGRAM), 1, None,
     ("ok", 17, 5353, 53), ("ok", 44, 0, 0)),
    ("IPv6 hop-by-hop: the protocol is its first next-header, 0",
     bytes(Ether() / IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / SEGMENT), 1, None,
     ("ok", 6, 1234, 80), ("ok", 0, 1234, 80)),
    ("IPv6 hop-by-hop + destination options, then UDP",
     bytes(Ether() / IPv6(src=A6, dst=B6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / DATAGRAM), 1, None,
     ("ok", 17, 5353, 53), ("ok", 0, 5353, 53)),
    ("IPv6 routing type 0: walked",
     bytes(Ether() / IPv6(src=A6, dst=B6) / IPv6ExtHdrRouting(type=0, addresses=[B6]) / SEGMENT), 1, None,
     ("ok", 6, 1234, 80), ("ok", 43, 1234, 80)),
    ("IPv6 routing type 2: gopacket's decoder fails, ports 0",
     bytes(Ether() / IPv6(src=A6, dst=B6) / IPv6ExtHdrRouting(type=2, addresses=[B6]) / SEGMENT), 1, None,
     ("ok", 6, 1234, 80), ("ok", 43, 0, 0)),
    ("TCP header cut by the snap length (10 of 20 bytes): ports 0",
     bytes(Ether() / IP(src=A, dst=B) / SEGMENT), 1, 14 + 20 + 10,
     ("ok", 6, 1234, 80), ("ok", 6, 0, 0)),
    ("TCP header of 20 bytes captured, data offset 8: the TCP layer is kept, with its ports",
     bytes(Ether() / IP(src=A, dst=B) / TCP(sport=1234, dport=80, options=[("NOP", None)] * 12)), 1,
     14 + 20 + 20, ("ok", 6, 1234, 80), ("ok", 6, 1234, 80)),
    ("UDP header cut (6 of 8 bytes): ports 0",
     bytes(Ether() / IP(src=A, dst=B) / DATAGRAM), 1, 14 + 20 + 6,
     ("ok", 17, 5353, 53), ("ok", 17, 0, 0)),
    ("IPv4 total length ends inside the TCP header: gopacket's payload ends there",
     bytes(Ether() / IP(src=A, dst=B, len=30) / SEGMENT), 1, None,
     ("ok", 6, 1234, 80), ("ok", 6, 0, 0)),
    ("IPv4 total length 0 (TSO): the captured bytes",
     bytes(Ether() / IP(src=A, dst=B, len=0) / SEGMENT), 1, None,
     ("ok", 6, 1234, 80), ("ok", 6, 1234, 80)),
    ("IPv4 IHL 4: refused by tshark, counted by Go with ports 0",
     bytes(Ether() / IP(src=A, dst=B, ihl=4) / SEGMENT), 1, None,
     ("skip", "bad_ip_header"), ("ok", 6, 0, 0)),
    ("IPv4 AH: gopacket walks it to the TCP header",
     bytes(Ether() / IP(src=A, dst=B) / AH(spi=1, payloadlen=4, icv=b"\x00" * 12, nh=6) / SEGMENT), 1, None,
     ("ok", 51, 0, 0), ("ok", 51, 1234, 80)),
    ("ICMP: ports 0 in both",
     bytes(Ether() / IP(src=A, dst=B) / ICMP()), 1, None, ("ok", 1, 0, 0), ("ok", 1, 0, 0)),
    ("802.3 + LLC/SNAP: decoded by both",
     bytes(Dot3(dst="ff:ff:ff:ff:ff:ff") / LLC(dsap=0xAA, ssap=0xAA, ctrl=3) / SNAP(code=0x0800)
           / IP(src=A, dst=B) / SEGMENT), 1, None,
     ("ok", 6, 1234, 80), ("ok", 6, 1234, 80)),
    ("802.3 + LLC SAP 6: gopacket's LLC knows only SNAP",
     bytes(Dot3(dst="ff:ff:ff:ff:ff:ff") / LLC(dsap=6, ssap=6, ctrl=3) / IP(src=A, dst=B) / SEGMENT),
     1, None, ("ok", 6, 1234, 80), ("skip", "go_undecoded")),
    ("Linux cooked v2 (link type 276): no gopacket decoder",
     _sll2(bytes(IP(src=A, dst=B) / SEGMENT)), 276, None, ("ok", 6, 1234, 80), ("skip", "go_undecoded")),
    ("raw IPv4 (link type 101): decoded by both",
     bytes(IP(src=A, dst=B) / DATAGRAM), 101, None, ("ok", 17, 5353, 53), ("ok", 17, 5353, 53)),
]  # fmt: skip


def _pcap(frames: list[tuple[bytes, int | None]], linktype: int) -> bytes:
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262_144, linktype)
    for second, (frame, caplen) in enumerate(frames):
        kept = frame[: len(frame) if caplen is None else caplen]
        out += struct.pack("<IIII", second + 1, 0, len(kept), len(frame)) + kept
    return out


def _answer(path: Path, compat: str | None) -> tuple[Any, ...]:
    with CaptureReader(path, compat=compat) as reader:
        batches = [batch for batch in reader if len(batch)]
        if not batches:
            ((reason, count),) = reader.skips.items()  # the one frame: skipped, for one reason
            assert count == 1 and reader.frames == 1
            return ("skip", reason)
        row = batches[0]
        return ("ok", int(row.protocol[0]), int(row.src_port[0]), int(row.dst_port[0]))


@pytest.mark.parametrize(("name", "frame", "linktype", "caplen", "tshark", "gopacket"), CASES,
                         ids=[case[0] for case in CASES])  # fmt: skip
def test_each_rule_gives_gopackets_answer_in_compat_mode_and_tsharks_by_default(
    tmp_path: Path, name: str, frame: bytes, linktype: int, caplen: int | None, tshark: tuple, gopacket: tuple
) -> None:
    path = tmp_path / "one.pcap"
    path.write_bytes(_pcap([(frame, caplen)], linktype))
    assert _answer(path, None) == tshark
    assert _answer(path, "go") == gopacket


def test_compat_mode_keeps_the_addresses_and_counts_every_frame(tmp_path: Path) -> None:
    frames = [(frame, caplen) for _, frame, linktype, caplen, _, _ in CASES if linktype == 1]
    path = tmp_path / "all.pcap"
    path.write_bytes(_pcap(frames, 1))
    with CaptureReader(path, compat="go") as reader:
        rows = [batch for batch in reader]
        packets = sum(len(batch) for batch in rows)
        assert reader.frames == len(frames) == packets + sum(reader.skips.values())
        assert reader.skips == {"go_undecoded": 4}
    addresses = {ipaddress.ip_address(bytes(row)) for batch in rows for row in batch.src_ip}
    assert addresses == {ipaddress.ip_address(f"::ffff:{A}"), ipaddress.ip_address(A6)}


def test_an_unknown_compat_value_is_refused() -> None:
    with pytest.raises(ValueError, match="compat"):
        CaptureStreamParser(compat="gopacket")


def test_config_names_a_bad_compat_value_and_a_source_it_cannot_apply_to(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("probe:\n  compat: gopacket\n  snaplen: 1\n")
    with pytest.raises(ConfigError) as bad:
        load_settings(config)
    assert "probe.compat" in str(bad.value) and "probe.snaplen" in str(bad.value)  # one pass, both named
    config.write_text("probe:\n  compat: go\n  source: pyshark\n")
    with pytest.raises(ConfigError, match="tshark's dissectors"):
        load_settings(config)
    config.write_text("probe:\n  compat: go\n  source: file\n  pcap: x.pcap\n")
    assert load_settings(config).probe.compat == "go"


def test_the_file_source_decodes_with_the_configured_compat(tmp_path: Path) -> None:
    from netspectra.config.models import ProbeConfig
    from netspectra.probe.sources import open_source

    path = tmp_path / "one.pcap"
    path.write_bytes(_pcap([(CASES[0][1], None)], 1))
    source = open_source(ProbeConfig(source="file", pcap=str(path), compat="go"))
    default = open_source(ProbeConfig(source="file", pcap=str(path)))
    try:
        assert source._reader._parser._walk_pcap.__name__ == "walk_pcap_go"  # type: ignore[attr-defined]
        assert default._reader._parser._walk_pcap.__name__ == "walk_pcap"  # type: ignore[attr-defined]
    finally:
        source._reader.close()  # type: ignore[attr-defined]
        default._reader.close()  # type: ignore[attr-defined]


# -- against gopacket itself ------------------------------------------------------------------


@pytest.fixture(scope="module")
def oracle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    go = shutil.which("go")
    if go is None or not GOPACKET.is_dir():
        pytest.skip(
            "needs Go and gopacket 1.1.19's source "
            "(apt-get install golang-go golang-github-google-gopacket-dev)"
        )
    scratch = tmp_path_factory.mktemp("gopacket-oracle")
    binary = scratch / "oracle"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": str(GOPATH), "GOCACHE": str(scratch / "cache"),
           "GOFLAGS": ""}  # fmt: skip
    subprocess.run([go, "build", "-o", str(binary), "."], cwd=ORACLE_SOURCE, env=env, check=True, timeout=600)
    return binary


def _gopacket(oracle: Path, frames: list[tuple[bytes, int]]) -> list[str]:
    lines = "".join(f"{linktype} {frame.hex()}\n" for frame, linktype in frames)
    done = subprocess.run([str(oracle)], input=lines.encode(), capture_output=True, check=True, timeout=600)
    return done.stdout.decode().splitlines()


def _ours(path: Path) -> tuple[list[str], int]:
    """Our compat keys in frame order, in the oracle's format, and the number of frames skipped."""
    keys: list[str] = []
    with CaptureReader(path, compat="go") as reader:
        for batch in reader:
            for i in range(len(batch)):
                src = ipaddress.ip_address(bytes(batch.src_ip[i]))
                dst = ipaddress.ip_address(bytes(batch.dst_ip[i]))
                if batch.ip_version[i] == 4:
                    src, dst = src.ipv4_mapped, dst.ipv4_mapped  # type: ignore[union-attr]
                keys.append(f"ok {src} {dst} {batch.protocol[i]} {batch.src_port[i]} {batch.dst_port[i]}")
        return keys, sum(reader.skips.values())


def test_gopacket_itself_gives_each_rules_answer(oracle: Path) -> None:
    answers = _gopacket(
        oracle, [(frame[: caplen or len(frame)], linktype) for _, frame, linktype, caplen, _, _ in CASES]
    )
    for (name, *_rest, gopacket), line in zip(CASES, answers, strict=True):
        fields = line.split()
        got = ("skip", "go_undecoded") if fields[0] == "drop" else ("ok", *map(int, fields[3:]))
        assert got == gopacket, name


def test_every_frame_of_a_generated_trace_gets_gopackets_key(oracle: Path, tmp_path: Path) -> None:
    """VLAN/QinQ/0x9100 tags, IPv6 extension chains, fragments and a 96-byte snap length: the
    generator's mix, where the default parser differs from gopacket on ~4% of frames."""
    import dpkt

    path = tmp_path / "mix.pcap"
    write_trace(path, TrafficSpec(packets=20_000, flows=500, spreaders=2, spreader_fanout=50, snaplen=96))
    with open(path, "rb") as handle:
        frames = [(bytes(frame), 1) for _ts, frame in dpkt.pcap.Reader(handle)]
    theirs = _gopacket(oracle, frames)
    ours, skipped = _ours(path)
    kept = [line for line in theirs if line != "drop"]
    # both in frame order: a frame kept by one and dropped by the other would shift the lists
    assert skipped == len(theirs) - len(kept) > 0
    differing = [(index, o, t) for index, (o, t) in enumerate(zip(ours, kept, strict=True)) if o != t]
    assert not differing, differing[:5]
    with CaptureReader(path) as reader:  # the default parser does differ on this trace
        default = sum(len(batch) for batch in reader)
    assert default > len(kept)  # it counts the 0x9100 frames gopacket drops


def test_compat_walkers_run_ahead_of_time_compiled_and_give_the_jit_s_rows(tmp_path: Path) -> None:
    """The AOT module holds the compat variants too: compat mode does not fall back to numba."""
    from netspectra import jit

    state = jit.aot_state()
    if state is None:
        pytest.skip("no current ahead-of-time module (`python -m netspectra.warmup` builds it)")
    before, fell_back = dict(state.calls), dict(state.fallback_calls)
    rows = {}
    for capture_format in ("pcap", "pcapng"):
        path = tmp_path / f"mix.{capture_format}"
        write_trace(path, TrafficSpec(packets=2_000, flows=50, format=capture_format))  # type: ignore[arg-type]
        with CaptureReader(path, compat="go") as reader:
            rows[capture_format] = [column.copy() for batch in reader for column in batch.arrays()]
        with jit.forced_jit(), CaptureReader(path, compat="go") as reader:
            jitted = [column.copy() for batch in reader for column in batch.arrays()]
        assert len(rows[capture_format]) == len(jitted)
        assert all((a == b).all() for a, b in zip(rows[capture_format], jitted, strict=True))
    for kernel in ("netspectra.capture.kernel.walk_pcap_go", "netspectra.capture.kernel.walk_pcapng_go"):
        assert state.calls.get(kernel, 0) > before.get(kernel, 0), kernel
        assert state.fallback_calls.get(kernel, 0) == fell_back.get(kernel, 0), kernel
