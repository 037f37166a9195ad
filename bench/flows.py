"""Benchmark: flow records/s decoded (NetFlow v5, v9, IPFIX, sFlow) vs a pure-Python baseline, same run.

Builds one export stream per protocol from seeded random flows (struct-packed here, so the
decoders under test share nothing with the encoder): v5 datagrams of 30 records, v9 and IPFIX
datagrams of 24 records behind one template datagram, sFlow datagrams of 8 flow samples with
128-byte Ethernet/IPv4/TCP headers. Times:

* ours: :class:`~netspectra.capture.flows.ExportDecoder` over the whole stream in batches of
  1024 datagrams (best of 3, kernels compiled first), records per second;
* the baseline: the ``netflow`` PyPI package (pure Python, v5/v9/IPFIX) on a slice of the same
  stream, and for sFlow, which it does not read, a minimal ``struct`` walk of the same datagrams;
* collected: the same v9 stream through the decoder and the engine's weighted exact tables
  (five-tuple task), records per second.

Run: ``python bench/flows.py [--records N]``; ``--smoke``: 20 k records per protocol (seconds; CI).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from netspectra.capture.flows import DatagramBatch, ExportDecoder

_SFLOW_HEADER = 128
FIVE_TUPLE = ("SrcIP", "DstIP", "SrcPort", "DstPort", "Protocol")


def _flows(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "src": rng.integers(0, 2**32, n, dtype=np.uint64),
        "dst": rng.integers(0, 2**32, n, dtype=np.uint64),
        "sport": rng.integers(1, 65536, n),
        "dport": rng.choice([53, 80, 443, 8080], n),
        "proto": rng.choice([6, 17], n),
        "packets": rng.integers(1, 1000, n),
        "bytes": rng.integers(40, 1_500_000, n),
    }


def v5_stream(n: int) -> list[bytes]:
    f = _flows(n, 1)
    out = []
    for start in range(0, n, 30):
        count = min(30, n - start)
        header = struct.pack("!HHIIIIBBH", 5, count, 100_000, 1_700_000_000, 0, start, 0, 0, 0)
        body = b"".join(
            struct.pack(
                "!IIIHHIIIIHHBBBBHHBBH",
                int(f["src"][i]),
                int(f["dst"][i]),
                0,
                1,
                2,
                int(f["packets"][i]),
                int(f["bytes"][i]),
                90_000,
                99_000,
                int(f["sport"][i]),
                int(f["dport"][i]),
                0,
                0,
                int(f["proto"][i]),
                0,
                0,
                0,
                24,
                24,
                0,
            )
            for i in range(start, start + count)
        )
        out.append(header + body)
    return out


_FIELDS = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (2, 4), (1, 4), (22, 4), (21, 4)]


def templated_stream(n: int, version: int) -> list[bytes]:
    f = _flows(n, 2 if version == 9 else 3)
    template_set_id, tid = (0, 256) if version == 9 else (2, 256)
    template = struct.pack("!HH", tid, len(_FIELDS)) + b"".join(struct.pack("!HH", *x) for x in _FIELDS)
    template_set = struct.pack("!HH", template_set_id, 4 + len(template)) + template
    datagrams = [_header(version, template_set, 0) + template_set]
    seq = 1
    for start in range(0, n, 24):
        count = min(24, n - start)
        records = b"".join(
            struct.pack(
                "!IIHHBIIII",
                int(f["src"][i]),
                int(f["dst"][i]),
                int(f["sport"][i]),
                int(f["dport"][i]),
                int(f["proto"][i]),
                int(f["packets"][i]),
                int(f["bytes"][i]),
                90_000,
                99_000,
            )
            for i in range(start, start + count)
        )
        data_set = struct.pack("!HH", tid, 4 + len(records)) + records
        datagrams.append(_header(version, data_set, seq) + data_set)
        seq += 1 if version == 9 else count
    return datagrams


def _header(version: int, sets: bytes, seq: int) -> bytes:
    if version == 9:
        return struct.pack("!HHIIII", 9, 1, 100_000, 1_700_000_000, seq, 0)
    return struct.pack("!HHIII", 10, 16 + len(sets), 1_700_000_000, seq, 0)


def sflow_stream(n: int) -> list[bytes]:
    f = _flows(n, 4)
    out = []
    for start in range(0, n, 8):
        count = min(8, n - start)
        samples = b""
        for i in range(start, start + count):
            ip = struct.pack(
                "!BBHHHBBHII", 0x45, 0, 1500, 0, 0, 64, 6, 0, int(f["src"][i]), int(f["dst"][i])
            ) + struct.pack("!HH", int(f["sport"][i]), int(f["dport"][i]))
            frame = (bytes(12) + b"\x08\x00" + ip).ljust(_SFLOW_HEADER, b"\x00")
            raw = struct.pack("!IIII", 1, 1514, 4, len(frame)) + frame
            record = struct.pack("!II", 1, len(raw)) + raw
            body = struct.pack("!IIIIIIII", i, 3, 1000, i * 1000, 0, 1, 2, 1) + record
            samples += struct.pack("!II", 1, len(body)) + body
        out.append(struct.pack("!II4sIIII", 5, 1, b"\x0a\x00\x00\x01", 0, start, 1000, count) + samples)
    return out


def ours(datagrams: list[bytes]) -> tuple[float, int]:
    batches = [
        DatagramBatch.from_datagrams((d, "192.0.2.1", 0) for d in datagrams[at : at + 1024])
        for at in range(0, len(datagrams), 1024)
    ]
    best, records = float("inf"), 0
    for _ in range(3):
        decoder = ExportDecoder()
        started = time.perf_counter()
        records = sum(len(decoder.decode(batch)) for batch in batches)
        best = min(best, time.perf_counter() - started)
    return records / best, records


def baseline_netflow(datagrams: list[bytes], limit: int) -> float:
    import netflow  # the pure-Python reference (test extra)

    templates: dict[str, dict[int, object]] = {"netflow": {}, "ipfix": {}}
    started = time.perf_counter()
    records = 0
    for datagram in datagrams[:limit]:
        records += len(netflow.parse_packet(datagram, templates).flows)
    return records / (time.perf_counter() - started)


def baseline_sflow(datagrams: list[bytes], limit: int) -> float:
    """The least a Python sFlow reader does: walk samples and records, read the header's 5-tuple."""
    started = time.perf_counter()
    records = 0
    for datagram in datagrams[:limit]:
        pos = 28
        for _ in range(struct.unpack_from("!I", datagram, 24)[0]):
            _fmt, length = struct.unpack_from("!II", datagram, pos)
            body = pos + 8
            nrec = struct.unpack_from("!I", datagram, body + 28)[0]
            r = body + 32
            for _ in range(nrec):
                rfmt, rlen = struct.unpack_from("!II", datagram, r)
                if rfmt == 1:
                    header = r + 24
                    _src, _dst = struct.unpack_from("!II", datagram, header + 14 + 12)
                    _ports = struct.unpack_from("!HH", datagram, header + 34)
                    records += 1
                r += 8 + rlen
            pos = body + length
    return records / (time.perf_counter() - started)


def collected(datagrams: list[bytes]) -> float:
    from netspectra.config.models import ExactTaskConfig
    from netspectra.engine.exact.group import ExactGroup
    from netspectra.model.fields import FIELD_ORDER

    batches = [
        DatagramBatch.from_datagrams((d, "192.0.2.1", 0) for d in datagrams[at : at + 1024])
        for at in range(0, len(datagrams), 1024)
    ]
    group = ExactGroup([ExactTaskConfig(name="five_tuple", key_fields=list(FIELD_ORDER))])
    decoder = ExportDecoder()
    started = time.perf_counter()
    records = 0
    for batch in batches:
        flows = decoder.decode(batch)
        records += len(flows)
        for _label, job in group.insert_flow_jobs(flows):
            job()
    return records / (time.perf_counter() - started)


# --- GoFlow2's published figures, and ours on the very datagrams they were measured on --------

CORPUS = Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus" / "flows"
#: GoFlow2's decoders as Akvorado runs them (its BenchmarkDecodeEncodeNetflow/Sflow, "without
#: encoding": GoFlow2's decode plus Akvorado's mapping to its flow schema), on an AMD Ryzen 5 5600X:
#: (nanoseconds per datagram, records in it, where it is published, the corpus file of the datagram)
GOFLOW2_PUBLISHED = {
    "NetFlow v9": (
        7306,
        4,
        "https://github.com/netsampler/goflow2/pull/264",
        ("akvorado-netflow-template.pcap", "akvorado-netflow-data.pcap"),
    ),
    "sFlow v5": (
        8686,
        5,
        "https://github.com/akvorado/akvorado/pull/998",
        ("akvorado-sflow-data-1140.pcap",),
    ),
}


def goflow2_comparison(copies: int) -> None:
    """Our decode of the datagram GoFlow2's figure was measured on, repeated, against that figure."""
    from netspectra.capture.flows.datagrams import read_capture_datagrams

    if not CORPUS.is_dir():
        print(f"GoFlow2 comparison skipped: no corpus at {CORPUS}")
        return
    print(
        "vs GoFlow2's published decode figures (their hardware: AMD Ryzen 5 5600X, one core; ours: this"
        f" shared machine, load average {os.getloadavg()[0]:.1f}; same datagram, decoded {copies:,} times):"
    )
    for name, (ns, records, url, files) in GOFLOW2_PUBLISHED.items():
        *setup, data = [d.payload for f in files for d in read_capture_datagrams(CORPUS / f)]
        rate, decoded = ours([*setup, *[data] * copies])
        assert decoded == records * copies, (name, decoded)
        theirs = records / (ns * 1e-9)
        print(
            f"  {name:10s} GoFlow2 {ns / 1e3:.2f} us per {records}-record datagram = {theirs / 1e6:.2f} M"
            f" records/s/core ({url}); ours {rate / 1e6:.2f} M records/s: {rate / theirs:.2f}x"
        )


# --- end to end: a sender process → real UDP on loopback → collector → bus → engine ------------

_RECORD = np.dtype(
    [
        ("src", ">u4"), ("dst", ">u4"), ("sport", ">u2"), ("dport", ">u2"), ("proto", "u1"),
        ("packets", ">u4"), ("bytes", ">u4"), ("last", ">u4"), ("first", ">u4"),
    ]
)  # fmt: skip  # the v9 template _FIELDS, 29 bytes a record
assert _RECORD.itemsize == 29


def export_bodies(per_datagram: int, distinct: int, seed: int = 5) -> tuple[list[bytes], list[int]]:
    """v9 data flowsets of ``per_datagram`` records over ``distinct`` flows, and each one's packets.

    Built once with numpy (no per-record Python), so the sender's per-datagram cost is a header.
    """
    rng = np.random.default_rng(seed)
    n = (distinct // per_datagram) * per_datagram
    records = np.zeros(n, _RECORD)
    records["src"] = rng.integers(0x0A000000, 0x0AFFFFFF, n)
    records["dst"] = rng.integers(0xC0000000, 0xC0FFFFFF, n)
    records["sport"] = rng.integers(1024, 65536, n)
    records["dport"] = rng.choice([53, 80, 443, 8080], n)
    records["proto"] = rng.choice([6, 17], n)
    records["packets"] = rng.integers(1, 1000, n)
    records["bytes"] = records["packets"].astype(np.int64) * rng.integers(40, 1500, n)
    records["last"], records["first"] = 99_000, 90_000
    bodies, packets = [], []
    for at in range(0, n, per_datagram):
        chunk = records[at : at + per_datagram]
        data = chunk.tobytes()
        bodies.append(struct.pack("!HH", 256, 4 + len(data)) + data)
        packets.append(int(chunk["packets"].sum()))
    return bodies, packets


def send_exports(
    port: int, rate: float, seconds: float, per_datagram: int, exporter: str, results: object
) -> None:
    """The sender process: v9 exports paced at ``rate`` records/s for ``seconds``, as a router does.

    The template goes first and again every 1000 datagrams (routers refresh theirs); sequence
    numbers count export packets (RFC 3954), so the collector sees a gap for every datagram lost.
    Sends ``(datagrams, records, packets, first_ns, last_ns)`` (monotonic clock) down ``results``.
    """
    template = struct.pack("!HH", 256, len(_FIELDS)) + b"".join(struct.pack("!HH", *x) for x in _FIELDS)
    template_set = struct.pack("!HH", 0, 4 + len(template)) + template
    bodies, body_packets = export_bodies(per_datagram, 48_000)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((exporter, 0))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    target = ("127.0.0.1", port)
    per_second = rate / per_datagram
    total = max(1, int(per_second * seconds))
    header = struct.Struct("!HHIIII")
    seq = datagrams = records = packets = 0
    started = time.monotonic_ns()
    while datagrams < total:
        due = min(total, int((time.monotonic_ns() - started) * per_second / 1e9) + 1)
        if datagrams >= due:
            time.sleep(0.0002)
            continue
        while datagrams < due:
            if datagrams % 1000 == 0:
                sock.sendto(header.pack(9, 1, 100_000, 1_700_000_000, seq, 0) + template_set, target)
                seq += 1
            k = datagrams % len(bodies)
            try:
                sock.sendto(header.pack(9, per_datagram, 100_000, 1_700_000_000, seq, 0) + bodies[k], target)
            except BlockingIOError:  # our own send buffer: not a loss of the collector's; retry
                time.sleep(0.0001)
                continue
            seq += 1
            datagrams += 1
            records += per_datagram
            packets += body_packets[k]
    ended = time.monotonic_ns()
    sock.close()
    results.send((datagrams, records, packets, started, ended))  # type: ignore[attr-defined]


def proc_udp_drops_by_port(port: int) -> int:
    """The kernel's ``drops`` for the UDP socket bound to ``port`` (/proc/net/udp): the collector's
    own counters are not the only witness."""
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rpartition(":")[2], 16) == port:
            return int(fields[-1])
    return -1


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_nats(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("nats-server")
    if binary is None:
        raise RuntimeError("nats-server not on PATH")
    process = subprocess.Popen(
        [binary, "-a", "127.0.0.1", "-p", "-1", "--ports_file_dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(1000):
        files = list(workdir.glob("*.ports"))
        if files and files[0].stat().st_size:
            return process, json.loads(files[0].read_text())["nats"][0]
        time.sleep(0.01)
    process.terminate()
    raise RuntimeError("nats-server did not start")


@dataclass
class EndToEnd:
    bus: str
    target: float
    datagrams: int
    records: int
    seconds_sent: float
    counted: int
    seconds_counted: float
    collector_datagrams: int
    collector_missed: int
    collector_kernel_drops: int
    proc_drops: int
    bus_refused: int
    exact: bool

    @property
    def offered(self) -> float:
        return self.records / self.seconds_sent

    @property
    def rate(self) -> float:
        return self.counted / self.seconds_counted

    @property
    def lost(self) -> int:
        return self.records - self.counted

    def line(self) -> str:
        return (
            f"  {self.bus:8s} target {self.target / 1e3:6.0f} k/s: offered {self.offered / 1e3:6.0f} k/s,"
            f" counted {self.rate / 1e3:6.0f} k/s ({self.counted:,}/{self.records:,};"
            f" {self.rate / self.offered:.3f}x offered), lost {self.lost:,} records"
            f" = {self.lost / max(1, self.records):.2%} [kernel drops: {self.proc_drops:,} datagrams"
            f" (/proc/net/udp), {self.collector_kernel_drops:,} (collector's count); collector sequence"
            f" gaps {self.collector_missed:,} datagrams; bus refused {self.bus_refused:,} records];"
            f" engine packets {'==' if self.exact else '!='} sent"
        )


async def _engine_subscribed(role: object, stop: asyncio.Event) -> asyncio.Task[None]:
    """The engine role as a task, once it holds its subscriptions (so no early datagram is lost to it)."""
    subscribed = asyncio.Event()

    class Subscribed(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("Engine subscribed"):
                subscribed.set()

    role_logger = logging.getLogger("netspectra.engine.role")
    handler = Subscribed()
    role_logger.addHandler(handler)
    role_logger.setLevel(logging.INFO)
    task = asyncio.create_task(role.serve(stop))  # type: ignore[attr-defined]
    waiting = asyncio.ensure_future(subscribed.wait())
    await asyncio.wait({waiting, task}, timeout=60, return_when="FIRST_COMPLETED")
    waiting.cancel()
    role_logger.removeHandler(handler)
    if task.done():
        task.result()
        raise RuntimeError("the engine role returned before subscribing")
    return task


async def end_to_end(bus_url: str, rate: float, seconds: float, per_datagram: int) -> EndToEnd:
    """One sustained run: exports at ``rate`` for ``seconds`` → collector → ``bus_url`` → engine."""
    from netspectra.app import build_engine
    from netspectra.bus import open_bus
    from netspectra.config.models import Settings
    from netspectra.engine.role import EngineRole
    from netspectra.probe.role import ProbeRole
    from netspectra.storage.context import StorageContext

    port = _free_udp_port()
    settings = Settings.model_validate(
        {
            "probe": {"nats_url": bus_url, "source": "netflow", "listen": [f"127.0.0.1:{port}"]},
            "engine": {"stats_interval": 3600},
            "aggregator": {
                "types": ["exact"],
                "exact": {"tasks": [{"name": "five_tuple", "key_fields": list(FIVE_TUPLE)}]},
            },
        }
    )
    probe_bus = open_bus(bus_url, name="bench-probe")
    engine_bus = probe_bus if bus_url == "embedded" else open_bus(bus_url, name="bench-engine")
    engine_role = EngineRole(settings, engine_bus, build_engine(settings, StorageContext()))
    probe_role = ProbeRole(settings, probe_bus)
    engine_stop, probe_stop = asyncio.Event(), asyncio.Event()
    engine_task = await _engine_subscribed(engine_role, engine_stop)
    probe_task = asyncio.create_task(probe_role.serve(probe_stop))
    while probe_role.source is None or not getattr(probe_role.source, "bound", None):
        await asyncio.sleep(0.01)
    source = probe_role.source
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe(duplex=False)
    sender = context.Process(
        target=send_exports, args=(port, rate, seconds, per_datagram, "127.0.0.2", theirs), daemon=True
    )
    sender.start()
    last_count, last_change = 0, time.monotonic_ns()
    result = None
    while True:  # until the sender is done and the engine has counted all, or nothing moves for 10 s
        await asyncio.sleep(0.02)
        count = engine_role.stats.flow_records
        if count != last_count:
            last_count, last_change = count, time.monotonic_ns()
        if result is None and ours.poll():
            result = ours.recv()
        if result is not None and (count >= result[1] or time.monotonic_ns() - last_change > 10e9):
            break
        if result is None and not sender.is_alive() and not ours.poll():
            raise RuntimeError(f"the sender process died (exit {sender.exitcode})")
    sender.join()
    datagrams, records, packets, started, ended = result
    stats = source.stats()  # type: ignore[attr-defined]
    proc_drops = proc_udp_drops_by_port(port)
    probe_stop.set()
    await probe_task
    engine_stop.set()
    await engine_task
    await probe_bus.close()
    if engine_bus is not probe_bus:
        await engine_bus.close()
    (table,) = engine_role.engine.final_snapshots["exact"].flows
    return EndToEnd(
        bus="embedded" if bus_url == "embedded" else "nats",
        target=rate,
        datagrams=datagrams,
        records=records,
        seconds_sent=(ended - started) / 1e9,
        counted=engine_role.stats.flow_records,
        seconds_counted=(last_change - started) / 1e9,
        collector_datagrams=stats["datagrams"],
        collector_missed=stats["missed_packets"],
        collector_kernel_drops=stats["kernel_dropped_datagrams"],
        proc_drops=proc_drops,
        bus_refused=probe_role.flow_records_failed,
        exact=int(table.packets.sum()) == packets,
    )


#: A run is sustained when nothing is lost and the engine kept up: counted within 10% of offered
#: (a lossless run at a lower counted rate only lasted because the socket buffer held the excess).
KEPT_UP = 0.9


def sustained(smoke: bool, seconds: float, per_datagram: int, workdir: Path) -> None:
    """200 k records/s on both buses, then the highest sustained rate (doubling, then one bisection)."""
    process, url = start_nats(workdir)
    try:
        target = 50_000.0 if smoke else 200_000.0
        length = 1.0 if smoke else seconds
        print(
            f"end to end (v9, {per_datagram} records/datagram, sender process -> UDP 127.0.0.1 -> collector"
            f" -> bus -> engine, exact five-tuple, one process), {length:.0f} s per run, load average"
            f" {os.getloadavg()[0]:.1f}:"
        )
        asyncio.run(end_to_end("embedded", 10_000, 0.2, per_datagram))  # compile every kernel first
        runs = {}
        for bus in ("embedded", url):
            run = asyncio.run(end_to_end(bus, target, length, per_datagram))
            runs[run.bus] = run
            print(run.line(), flush=True)
        if smoke:
            return
        for bus in ("embedded", url):
            best = runs["embedded" if bus == "embedded" else "nats"]
            if best.lost or best.rate < KEPT_UP * best.offered:
                continue
            low, high = target, target * 2
            while high <= 6_400_000:
                run = asyncio.run(end_to_end(bus, high, max(5.0, length / 2), per_datagram))
                print(run.line(), flush=True)
                if run.lost or run.rate < KEPT_UP * run.offered:
                    break
                best, low, high = run, high, high * 2
            middle = (low + high) / 2
            run = asyncio.run(end_to_end(bus, middle, max(5.0, length / 2), per_datagram))
            print(run.line(), flush=True)
            if not run.lost and run.rate >= KEPT_UP * run.offered:
                best = run
            print(
                f"  {best.bus}: highest sustained rate {best.offered / 1e3:.0f} k records/s offered,"
                f" {best.rate / 1e3:.0f} k/s counted, nothing lost ({best.offered / target:.2f}x the 200 k"
                f" target; load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    finally:
        process.terminate()
        process.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="20 k records per protocol, 1 s end to end")
    parser.add_argument("--seconds", type=float, default=10.0, help="end to end: seconds at 200 k records/s")
    parser.add_argument("--per-datagram", type=int, default=24, help="end to end: v9 records per datagram")
    parser.add_argument("--no-end-to-end", action="store_true", help="decode figures only")
    args = parser.parse_args()
    n = 20_000 if args.smoke else args.records
    try:
        import netflow  # noqa: F401
    except ImportError:
        print("the baseline needs the `netflow` package (pip install netflow; a test extra)", file=sys.stderr)
        return 77
    ours(v5_stream(300))  # compile or load every kernel before timing
    ours(templated_stream(300, 9))
    ours(sflow_stream(300))
    streams = {
        "NetFlow v5": v5_stream(n),
        "NetFlow v9": templated_stream(n, 9),
        "IPFIX": templated_stream(n, 10),
        "sFlow v5": sflow_stream(n),
    }
    print(f"{n:,} records per protocol")
    for name, stream in streams.items():
        rate, records = ours(stream)
        limit = max(10, len(stream) // 10)
        base = baseline_sflow(stream, limit) if name == "sFlow v5" else baseline_netflow(stream, limit)
        label = "struct walk" if name == "sFlow v5" else "netflow (PyPI)"
        assert records == n, (name, records)
        print(
            f"{name:11s} ours {rate / 1e6:6.2f} M records/s   {label} {base / 1e3:8.1f} k/s"
            f"   {rate / base:7.1f}x"
        )
    v9 = streams["NetFlow v9"]
    rate = collected(v9)
    decode_only = ours(v9)[0]
    print(
        f"v9 decoded + counted (exact five-tuple): {rate / 1e6:.2f} M records/s"
        f" ({rate / decode_only:.2f}x decode only)"
    )
    goflow2_comparison(2_000 if args.smoke else 50_000)
    if not args.no_end_to_end:
        with tempfile.TemporaryDirectory(prefix="bench-flows-") as work:
            sustained(args.smoke, args.seconds, args.per_datagram, Path(work))
    return 0


if __name__ == "__main__":
    sys.exit(main())
