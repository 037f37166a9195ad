"""The generator's ground truth against tshark and brute-force Python (never against our parser)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from netspectra.model.fields import FIELD_ORDER, KeyField, address_text
from netspectra.synth import TrafficSpec, exact_truth, write_trace

RICH = dict(ext_header_fraction=0.4, fragment_fraction=0.2, qinq_fraction=0.2, ipv6_fraction=0.5)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="needs tshark")
@pytest.mark.parametrize(
    ("fmt", "linktypes", "nanosecond", "big_endian"),
    [
        ("pcap", (1,), False, False),
        ("pcap", (113,), True, True),
        ("pcapng", (1, 113, 276, 0, 108, 101, 228, 229), True, True),
    ],
)
def test_truth_matches_tshark(
    tmp_path: Path, fmt: str, linktypes: tuple[int, ...], nanosecond: bool, big_endian: bool
) -> None:
    spec = TrafficSpec(packets=3000, flows=120, format=fmt, linktypes=linktypes, nanosecond=nanosecond,  # type: ignore[arg-type]
                       big_endian=big_endian, **RICH)  # fmt: skip
    path = tmp_path / f"t.{fmt}"
    truth = write_trace(path, spec)
    fields = ["ip.src", "ipv6.src", "frame.len", "frame.time_epoch", "tcp.dstport", "udp.dstport"]
    out = subprocess.run(
        ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "occurrence=f"]
        + [arg for f in fields for arg in ("-e", f)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == spec.packets
    seen = Counter((r[0] or r[1], int(r[2])) for r in rows if r[0] or r[1])
    expected = Counter(
        (address_text(a), int(n)) for a, n in zip(truth.packets.src_ip, truth.packets.length, strict=True)
    )
    assert seen == expected
    # Timestamps of emitted frames, to the nanosecond (tshark prints epoch with 9 decimals).
    stamps = [r[3] for i, r in enumerate(rows) if i in set(truth.frame_index.tolist())]
    assert [int(s.replace(".", "")) for s in stamps] == truth.packets.ts_ns.tolist()


def test_exact_truth_equals_brute_force(tmp_path: Path) -> None:
    truth = write_trace(tmp_path / "t.pcap", TrafficSpec(packets=5000, flows=300, **RICH))
    cols = truth.packets
    for fields in [FIELD_ORDER, (KeyField.DST_IP,), (KeyField.PROTOCOL, KeyField.SRC_PORT), ()]:
        brute: dict[tuple[object, ...], list[int]] = defaultdict(lambda: [0, 0, 2**63 - 1, -(2**63)])
        for i in range(len(cols)):
            value = {
                KeyField.SRC_IP: address_text(cols.src_ip[i]),
                KeyField.DST_IP: address_text(cols.dst_ip[i]),
                KeyField.SRC_PORT: int(cols.src_port[i]),
                KeyField.DST_PORT: int(cols.dst_port[i]),
                KeyField.PROTOCOL: int(cols.protocol[i]),
            }
            entry = brute[tuple(value[f] for f in fields)]
            entry[0] += 1
            entry[1] += int(cols.length[i])
            entry[2] = min(entry[2], int(cols.ts_ns[i]))
            entry[3] = max(entry[3], int(cols.ts_ns[i]))
        got = exact_truth(truth, fields)
        assert {k: [v.packets, v.bytes, v.first_ns, v.last_ns] for k, v in got.items()} == dict(brute)


def test_planted_spreaders_have_their_fanout(tmp_path: Path) -> None:
    truth = write_trace(
        tmp_path / "t.pcap", TrafficSpec(packets=20000, flows=500, spreaders=4, spreader_fanout=700)
    )
    sources: dict[bytes, set[bytes]] = defaultdict(set)
    for src, dst in zip(truth.packets.src_ip, truth.packets.dst_ip, strict=True):
        sources[bytes(dst)].add(bytes(src))
    assert len(truth.spreaders) == 4
    for spreader in truth.spreaders:
        assert len(sources[spreader]) == 700
    others = max(len(v) for k, v in sources.items() if k not in truth.spreaders)
    assert others < 700


def test_same_seed_same_bytes_and_zipf_skew(tmp_path: Path) -> None:
    spec = TrafficSpec(packets=20000, flows=1000, seed=5)
    write_trace(tmp_path / "a.pcap", spec)
    truth = write_trace(tmp_path / "b.pcap", spec)
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()
    sizes = sorted((f.packets for f in exact_truth(truth, FIELD_ORDER).values()), reverse=True)
    assert sizes[0] > 20 * sizes[len(sizes) // 2]  # heavy head, long tail


def test_generation_is_vectorised(tmp_path: Path) -> None:
    # CPU time of this process, not wall time: other work on a loaded machine does not count
    started = time.process_time()
    write_trace(tmp_path / "t.pcap", TrafficSpec(packets=300_000, flows=20_000))
    assert time.process_time() - started < 5.0  # about 1 s on the 2-core box; a per-packet loop takes >10 s


def test_bad_specs_are_refused() -> None:
    with pytest.raises(ValueError, match="exactly one link type"):
        TrafficSpec(packets=10, flows=1, linktypes=(1, 113))
    with pytest.raises(ValueError, match="exceeds packets"):
        TrafficSpec(packets=10, flows=1, spreaders=2, spreader_fanout=6)
