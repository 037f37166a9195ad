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
import struct
import sys
import time

import numpy as np

from netspectra.capture.flows import DatagramBatch, ExportDecoder

_SFLOW_HEADER = 128


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--smoke", action="store_true", help="20 k records per protocol")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
