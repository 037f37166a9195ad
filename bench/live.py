"""Live capture on ``lo``: how many packets/s each probe source takes without loss.

    sudo python bench/live.py [--rates 200000,500000,1000000,0] [--seconds 2] [--sources afpacket,dumpcap]
                              [--smoke]

The sender must outrun the probe, which Python cannot (a ``sendto`` loop tops out near
200 k/s here): a small C program using ``sendmmsg`` is compiled with gcc at bench time and
paces UDP datagrams to 127.0.0.1 at each rate (0 = as fast as it can). A bound UDP socket sinks
them, so the kernel sends no ICMP back. The probe side is the real source (``open_source``),
counting the datagrams it delivers; loss = sent - delivered, next to the drops the capture layer
reports itself (AF_PACKET ring drops, dumpcap's "dropped" counter). Capture only: publishing is
measured by bench/pipeline.py. ``--smoke``: both sources at 20 k/s for 0.2 s, one sender (CI);
without root or gcc it exits 77 (skipped) instead of 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from netspectra.config.models import ProbeConfig
from netspectra.probe.sources import PacketSource, open_source

SENDER_C = r"""
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    long count = atol(argv[1]);
    double rate = atof(argv[2]);
    int port = atoi(argv[3]);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int size = 1 << 24;
    setsockopt(s, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(0x7f000001);
    enum { B = 128 };
    static struct mmsghdr msgs[B];
    static struct iovec iov[B];
    static char payload[B][18];
    for (int i = 0; i < B; i++) {
        iov[i].iov_base = payload[i];
        iov[i].iov_len = sizeof payload[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &to;
        msgs[i].msg_hdr.msg_namelen = sizeof to;
    }
    double start = now();
    long sent = 0;
    while (sent < count) {
        if (rate > 0) {
            while (now() - start < sent / rate) {
            }
        }
        int n = count - sent < B ? (int)(count - sent) : B;
        int r = sendmmsg(s, msgs, n, 0);
        if (r > 0) sent += r;
        else if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR) { perror("sendmmsg"); return 1; }
    }
    printf("%ld %.6f\n", sent, now() - start);
    return 0;
}
"""


#: the longest any one stage of a measurement may take before the bench fails naming it
STAGE_SECONDS = 60
SKIPPED = 77  # the exit status of a smoke run that cannot run here (automake's "skipped")


def unable(reason: str, smoke: bool) -> None:
    if smoke:
        print(f"skipped: {reason}")
        sys.exit(SKIPPED)
    sys.exit(reason)


def build_sender(workdir: Path, smoke: bool = False) -> Path:
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        unable("bench/live.py needs gcc to build its sender (apt-get install gcc)", smoke)
        raise AssertionError("unreachable")
    source, binary = workdir / "sender.c", workdir / "sender"
    source.write_text(SENDER_C)
    subprocess.run([gcc, "-O2", "-o", str(binary), str(source)], check=True)
    return binary


def free_udp_pair() -> int:
    """A UDP port p on loopback with p + 1 free too (data and marker), so parallel runs never collide."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
            if port >= 65535:
                continue
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as second:
                try:
                    second.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port


async def measure(
    kind: str, sender: Path, rate: float, seconds: float, port: int, senders: int
) -> dict[str, float]:
    marker = port + 1
    extra = {"bpf_filter": f"udp and (dst port {port} or dst port {marker})"} if kind == "dumpcap" else {}
    source: PacketSource = open_source(ProbeConfig(source=kind, iface="lo", **extra))  # type: ignore[arg-type]
    counts = {"data": 0, "marker": 0}

    async def consume() -> None:
        async for batch in source.batches():
            udp = batch.protocol == 17
            counts["data"] += int(((batch.dst_port == port) & udp).sum())
            counts["marker"] += int(((batch.dst_port == marker) & udp).sum())

    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for sink, number in zip(sinks, (port, marker), strict=True):
        sink.bind(("127.0.0.1", number))
    task = asyncio.create_task(consume())
    loop = asyncio.get_running_loop()
    try:
        deadline = loop.time() + 15
        while counts["marker"] == 0:  # the source is capturing once a marker datagram shows up
            if loop.time() > deadline:
                raise RuntimeError(f"{kind}: nothing captured within 15 s")
            sinks[1].sendto(b"m", ("127.0.0.1", marker))
            await asyncio.sleep(0.05)
        count = (int(rate * seconds) if rate else 3_000_000) // senders
        cpu_before = time.process_time()
        processes = [
            await asyncio.create_subprocess_exec(
                str(sender), str(count), str(rate / senders), str(port), stdout=asyncio.subprocess.PIPE
            )
            for _ in range(senders)
        ]
        try:  # a stage that cannot end says which one, instead of hanging the bench (CI's smoke run)
            outputs = [
                (await asyncio.wait_for(process.communicate(), STAGE_SECONDS))[0].split()
                for process in processes
            ]
        except TimeoutError:
            for process in processes:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            raise RuntimeError(f"{kind}: the sender did not finish within {STAGE_SECONDS} s") from None
        sent = sum(int(out[0]) for out in outputs)
        elapsed = max(float(out[1]) for out in outputs)
        last, still = -1, 0
        settle_deadline = loop.time() + STAGE_SECONDS
        while still < 5:  # until the count stops moving for 0.5 s
            if loop.time() > settle_deadline:
                raise RuntimeError(f"{kind}: the captured count still moved after {STAGE_SECONDS} s")
            await asyncio.sleep(0.1)
            still = still + 1 if counts["data"] == last else 0
            last = counts["data"]
        # this process's CPU (event loop + the numba ring walk, or reading dumpcap's pipe), minus
        # the 0.5 s of idle polling above, per captured packet
        cpu = time.process_time() - cpu_before
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        stats = source.stats() if kind == "afpacket" else {}
        try:
            await asyncio.wait_for(source.close(), STAGE_SECONDS)
        except TimeoutError:
            print(f"{kind}: closing the source took over {STAGE_SECONDS} s", file=sys.stderr, flush=True)
        stats = stats or source.stats()
        for sink in sinks:
            sink.close()
    return {
        "sent": sent,
        "send_rate": sent / elapsed,
        "cpu_ns_per_packet": cpu * 1e9 / max(1, counts["data"]),
        "captured": counts["data"],
        "lost": sent - counts["data"],
        "reported_drops": stats.get("kernel_drops", 0) + stats.get("dumpcap_dropped", 0),
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rates", default="200000,500000,1000000,0", help="packets/s; 0 = sender's max")
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--sources", default="afpacket,dumpcap")
    parser.add_argument("--senders", type=int, default=2, help="parallel sender processes")
    parser.add_argument("--smoke", action="store_true", help="20 k/s for 0.2 s per source: seconds")
    args = parser.parse_args()
    if args.smoke:
        args.rates, args.seconds, args.senders = "20000", 0.2, 1
    if os.geteuid() != 0:
        unable("live capture needs root or CAP_NET_RAW (see docs/pipeline.md)", args.smoke)
    with tempfile.TemporaryDirectory() as tmp:
        sender = build_sender(Path(tmp), args.smoke)
        for kind in args.sources.split(","):
            for rate in (float(r) for r in args.rates.split(",")):
                result = await measure(kind, sender, rate, args.seconds, free_udp_pair(), args.senders)
                wanted = "max" if not rate else f"{rate / 1e3:.0f} k/s"
                sent, lost = result["sent"], result["lost"]
                print(
                    f"{kind:9s} offered {wanted:>9s}: sent {sent} at {result['send_rate'] / 1e3:.0f} k/s, "
                    f"captured {result['captured']} ({result['captured'] / max(1, sent):.3f}x of sent), "
                    f"lost {lost} ({lost / max(1, sent):.2%}); "
                    f"source reports {result['reported_drops']} drops; "
                    f"probe CPU {result['cpu_ns_per_packet']:.0f} ns/packet",
                    flush=True,
                )
                time.sleep(0.5)


if __name__ == "__main__":
    asyncio.run(main())
