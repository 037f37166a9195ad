"""`netspectra analyze` as a user runs it: a pcap written by dpkt, flows checked against the generator."""

from __future__ import annotations

import json
import random
import socket
import subprocess
from collections import defaultdict
from pathlib import Path

import dpkt
import pytest

from tests.fixtures.tools import venv_tool

NETSPECTRA = venv_tool("netspectra")
FIELDS = {
    "per_src_ip": ("SrcIP",),
    "per_dst_port": ("DstPort",),
    "per_protocol": ("Protocol",),
    "per_five_tuple": ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol"),
}
S = 1_000_000_000


def write_pcap(path: Path, seed: int = 5) -> tuple[list[dict], int]:
    """IPv4 and IPv6 TCP/UDP/ICMP packets plus ARP frames; returns each IP packet's truth and ARP count."""
    rng = random.Random(seed)
    hosts4 = [f"10.0.{i}.{j}" for i in range(3) for j in range(1, 5)]
    hosts6 = ["2001:db8::1", "2001:db8::2", "fe80::abcd"]
    truth = []
    arp = 0
    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle)  # microsecond stamps: exact through dpkt's float ts
        stamp = 1_714_564_800 * S
        for _ in range(400):
            stamp += rng.randrange(1, 500_000) * 1000
            if rng.random() < 0.05:
                frame = dpkt.ethernet.Ethernet(type=dpkt.ethernet.ETH_TYPE_ARP, data=dpkt.arp.ARP())
                writer.writepkt(bytes(frame), ts=stamp / S)
                arp += 1
                continue
            v6 = rng.random() < 0.3
            proto = rng.choice([6, 17, 1])
            sport, dport = rng.choice([80, 443, 5353, 40000]), rng.choice([53, 443, 8080])
            payload = bytes(rng.randrange(0, 300))
            if proto == 6:
                l4 = dpkt.tcp.TCP(sport=sport, dport=dport, data=payload)
            elif proto == 17:
                l4 = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
            else:
                sport = dport = 0
                l4 = dpkt.icmp.ICMP(type=8, data=payload)
            if v6:
                src, dst = rng.choice(hosts6), rng.choice(hosts6)
                proto = 58 if proto == 1 else proto
                if proto == 58:
                    l4 = dpkt.icmp6.ICMP6(type=128, data=payload)
                ip = dpkt.ip6.IP6(
                    src=socket.inet_pton(socket.AF_INET6, src),
                    dst=socket.inet_pton(socket.AF_INET6, dst),
                    nxt=proto,
                    hlim=64,
                    data=l4,
                    plen=len(bytes(l4)),
                )
                ethertype = dpkt.ethernet.ETH_TYPE_IP6
            else:
                src, dst = rng.choice(hosts4), rng.choice(hosts4)
                ip = dpkt.ip.IP(
                    src=socket.inet_aton(src), dst=socket.inet_aton(dst), p=proto, ttl=64, data=l4
                )
                ethertype = dpkt.ethernet.ETH_TYPE_IP
            frame = bytes(dpkt.ethernet.Ethernet(type=ethertype, data=ip))
            writer.writepkt(frame, ts=stamp / S)
            truth.append(
                {
                    "SrcIP": src,
                    "DstIP": dst,
                    "SrcPort": sport,
                    "DstPort": dport,
                    "Protocol": proto,
                    "bytes": len(frame),
                    "ts": stamp,
                }
            )
    return truth, arp


def expected(truth: list[dict], fields: tuple[str, ...]) -> dict[tuple, list[int]]:
    flows: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 2**63, 0])
    for packet in truth:
        entry = flows[tuple(packet[f] for f in fields)]
        entry[0] += 1
        entry[1] += packet["bytes"]
        entry[2] = min(entry[2], packet["ts"])
        entry[3] = max(entry[3], packet["ts"])
    return dict(flows)


def nanoseconds(text: str) -> int:
    from calendar import timegm
    from time import strptime

    whole, fraction = text.rstrip("Z").split(".")
    return timegm(strptime(whole, "%Y-%m-%dT%H:%M:%S")) * S + int(fraction)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    tasks = [{"name": name, "key_fields": list(fields)} for name, fields in FIELDS.items()]
    document = {
        "aggregator": {
            "types": ["exact"],
            "exact": {
                "writers": [{"type": "file", "file": {"root_path": str(tmp_path / "snapshots")}}],
                "tasks": tasks,
            },
        }
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(document))
    return path


def test_analyze_writes_every_flow_and_summarises(tmp_path: Path, config: Path) -> None:
    pcap = tmp_path / "mixed.pcap"
    truth, arp = write_pcap(pcap)
    run = subprocess.run(
        [NETSPECTRA, "analyze", str(pcap), "--config", str(config), "--json", "--top", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["packets"] == len(truth)
    assert summary["bytes"] == sum(p["bytes"] for p in truth)
    assert summary["frames"] == len(truth) + arp
    assert sum(summary["skips"].values()) == arp
    assert summary["error"] is None
    top_src = expected(truth, ("SrcIP",))
    best = max(top_src.items(), key=lambda item: (item[1][0], item[1][1]))
    assert summary["exact"]["per_src_ip"]["flows"] == len(top_src)
    assert summary["exact"]["per_src_ip"]["top"][0]["fields"] == {"SrcIP": best[0][0]}
    assert summary["exact"]["per_src_ip"]["top"][0]["packets"] == best[1][0]

    (directory,) = (tmp_path / "snapshots").iterdir()
    for task, fields in FIELDS.items():
        written = {}
        for line in (directory / f"{task}.jsonl").read_text().splitlines():
            record = json.loads(line)
            assert record["task"] == task and tuple(record["fields"]) == fields
            written[tuple(record["fields"].values())] = [
                record["packets"],
                record["bytes"],
                nanoseconds(record["first_seen"]),
                nanoseconds(record["last_seen"]),
            ]
        assert written == expected(truth, fields), task


def test_analyze_rejects_a_file_that_is_not_a_capture(tmp_path: Path, config: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello, this is not a pcap\n" * 10)
    run = subprocess.run(
        [NETSPECTRA, "analyze", str(text), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert "Cannot analyze" in run.stderr and "notes.txt" in run.stderr
    missing = subprocess.run(
        [NETSPECTRA, "analyze", str(tmp_path / "missing.pcap"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "missing.pcap" in missing.stderr
