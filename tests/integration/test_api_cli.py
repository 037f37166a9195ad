"""`netspectra query` against a live API with TLS and a bearer token; answers equal the truth.

The CLI runs as a real subprocess; the truth is the brute-force one of api_truth. The token and
TLS are checked with grpcio (generated from proto/ at test time), independent of our client.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import pytest

from netspectra.api.role import ApiRole
from netspectra.config.models import Settings
from netspectra.model.snapshot import HitterKind
from netspectra.storage.context import StorageContext
from netspectra.storage.registry import build_writer
from tests.integration.api_truth import EXACT_TASKS, T0, T1, flows_of, hitters_truth, make_packets, snapshots

PACKETS = make_packets(seed=11, count=800)
TOKEN = "s3cret-token"


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
async def secured_api(tmp_path: Path) -> AsyncIterator[tuple[int, Path, int]]:
    cert, key = self_signed(tmp_path)
    writer = {"type": "embedded", "embedded": {"path": str(tmp_path / "store")}}
    settings = Settings.model_validate(
        {
            "aggregator": {
                "exact": {
                    "writers": [writer],
                    "tasks": [{"name": n, "key_fields": list(f)} for n, f in EXACT_TASKS.items()],
                },
                "sketch": {"writers": [writer]},
            },
            "api": {
                "grpc_listen_addr": "127.0.0.1:0",
                "http_listen_addr": "127.0.0.1:0",
                "tls_cert": str(cert),
                "tls_key": str(key),
                "auth_token": TOKEN,
            },
        }
    )
    context = StorageContext()
    exact = build_writer(settings.aggregator.exact.writers[0], "exact", context)
    sketch = build_writer(settings.aggregator.sketch.writers[0], "sketch", context)
    exact0, exact1, sketch0, sketch1 = snapshots(PACKETS)
    for w, snapshot in ((exact, exact0), (exact, exact1), (sketch, sketch0), (sketch, sketch1)):
        await w.write(snapshot)
    await exact.flush(60)  # type: ignore[attr-defined]
    await sketch.flush(60)  # type: ignore[attr-defined]
    role = ApiRole(settings, context)
    stop = asyncio.Event()
    serving = asyncio.create_task(role.serve(stop))
    await asyncio.wait_for(role.ready.wait(), 30)
    try:
        yield role.grpc_port, cert, role.http_port
    finally:
        stop.set()
        await serving
        await exact.close()
        await sketch.close()
        await context.close()


def cli(port: int, cert: Path, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "from netspectra.cli.main import app; app()", "query", *args,
               "--addr", f"127.0.0.1:{port}", "--ca", str(cert), "--token", token, "--json"]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


async def test_cli_modes_answer_the_truth(secured_api: tuple[int, Path, int]) -> None:
    port, cert, _ = secured_api
    aggregate = await asyncio.to_thread(cli, port, cert, "aggregate")
    assert aggregate.returncode == 0, aggregate.stderr
    got = {
        s["task_name"]: (int(s["total_packets"]), int(s["flow_count"]))
        for s in json.loads(aggregate.stdout)["summaries"]
    }
    assert got == {
        task: (len(PACKETS), len(flows_of(PACKETS, fields))) for task, fields in EXACT_TASKS.items()
    }

    first = PACKETS[0]
    key = f"SrcIP={first.src},DstIP={first.dst},SrcPort={first.sport},DstPort={first.dport}"
    key += f",Protocol={first.proto}"
    trace = await asyncio.to_thread(cli, port, cert, "trace", "--task", "five_tuple", "--key", key)
    assert trace.returncode == 0, trace.stderr
    packets, total_bytes, _, _ = flows_of(PACKETS, EXACT_TASKS["five_tuple"])[
        (first.src, first.dst, first.sport, first.dport, first.proto)
    ]
    life = json.loads(trace.stdout)["lifecycle"]
    assert (int(life["total_packets"]), int(life["total_bytes"])) == (packets, total_bytes)

    spread = sorted(hitters_truth(PACKETS)[HitterKind.SPREAD].items(), key=lambda i: (-i[1], i[0]))
    result = await asyncio.to_thread(cli, port, cert, "superspreaders", "--task", "ss_dst", "--limit", "3")
    assert result.returncode == 0, result.stderr
    assert [(h["flow"], int(h["value"])) for h in json.loads(result.stdout)["hitters"]] == spread[:3]

    early = await asyncio.to_thread(
        cli, port, cert, "heavyhitters", "--task", "cm_src", "--type", "1", "--end", str(T0)
    )
    size = sorted(
        hitters_truth([p for p in PACKETS if p.ts_ns < T0 * 10**9])[HitterKind.SIZE].items(),
        key=lambda i: (-i[1], i[0]),
    )
    assert [(h["flow"], int(h["value"])) for h in json.loads(early.stdout)["hitters"]] == size[:10]

    bad = await asyncio.to_thread(cli, port, cert, "trace", "--task", "five_tuple", "--key", "Nope=1")
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr
    denied = await asyncio.to_thread(cli, port, cert, "tasks", token="wrong")
    assert denied.returncode == 1 and "UNAUTHENTICATED" in denied.stderr


async def test_cli_windows_answer_the_truth_of_the_window(secured_api: tuple[int, Path, int]) -> None:
    """The snapshots are at T0 (the first half) and T1 (everything): (T0, T1] is the second half."""
    port, cert, _ = secured_api
    second = [p for p in PACKETS if p.ts_ns >= T0 * 10**9]
    window = await asyncio.to_thread(cli, port, cert, "aggregate", "--from", str(T0), "--to", str(T1))
    assert window.returncode == 0, window.stderr
    got = {
        s["task_name"]: (int(s["total_packets"]), int(s["total_bytes"]), int(s["flow_count"]))
        for s in json.loads(window.stdout)["summaries"]
    }
    assert got == {
        task: (len(second), sum(p.length for p in second), len(flows_of(second, fields)))
        for task, fields in EXACT_TASKS.items()
    }
    # --since reaching back before the first snapshot: everything
    since = f"{int(time.time()) - (T0 - 200)}s"
    everything = await asyncio.to_thread(
        cli, port, cert, "aggregate", "--task", "per_src_ip", "--since", since
    )
    assert everything.returncode == 0, everything.stderr
    summary = json.loads(everything.stdout)["summaries"][0]
    assert int(summary["total_packets"]) == len(PACKETS)

    late = second[0]
    key = f"SrcIP={late.src},DstIP={late.dst},SrcPort={late.sport},DstPort={late.dport},Protocol={late.proto}"
    trace = await asyncio.to_thread(
        cli, port, cert, "trace", "--task", "five_tuple", "--key", key, "--from", str(T0), "--end", str(T1)
    )
    assert trace.returncode == 0, trace.stderr
    packets, total_bytes, first_ns, last_ns = flows_of(second, EXACT_TASKS["five_tuple"])[
        (late.src, late.dst, late.sport, late.dport, late.proto)
    ]
    life = json.loads(trace.stdout)["lifecycle"]
    assert (int(life["total_packets"]), int(life["total_bytes"])) == (packets, total_bytes)
    began_before = (late.src, late.dst, late.sport, late.dport, late.proto) in flows_of(
        [p for p in PACKETS if p.ts_ns < T0 * 10**9], EXACT_TASKS["five_tuple"]
    )
    first = T0 if began_before else first_ns // 10**9  # already active at the start: the start
    seen = (life["first_seen"][:19], life["last_seen"][:19])
    assert seen == tuple(datetime.fromtimestamp(t, UTC).isoformat()[:19] for t in (first, last_ns // 10**9))

    for args, message in (
        (("--since", "15x"), "is not a duration"),
        (("--since", "1h", "--from", str(T0)), "give --since or --from, not both"),
        (("--from", str(T1), "--to", str(T0)), "the window starts"),
        (("--to", str(T1), "--end", str(T1)), "the same bound"),
        (("--from", "yesterday"), "is not an RFC 3339 time"),
    ):
        bad = await asyncio.to_thread(cli, port, cert, "aggregate", *args)
        assert bad.returncode == 2 and message in " ".join(bad.stderr.split()), (args, bad.stderr)


async def test_token_and_tls_with_grpcio(secured_api: tuple[int, Path, int], official_protos) -> None:
    port, cert, http_port = secured_api
    pb, pb_grpc = official_protos.query_pb2, official_protos.query_pb2_grpc

    def run() -> tuple[grpc.StatusCode, list[str]]:
        credentials = grpc.ssl_channel_credentials(cert.read_bytes())
        with grpc.secure_channel(f"127.0.0.1:{port}", credentials) as channel:
            stub = pb_grpc.QueryServiceStub(channel)
            with pytest.raises(grpc.RpcError) as denied:
                stub.SearchTasks(pb.SearchTasksRequest(), timeout=30)
            tasks = stub.SearchTasks(
                pb.SearchTasksRequest(), timeout=30, metadata=[("authorization", f"Bearer {TOKEN}")]
            )
            return denied.value.code(), list(tasks.task_names)

    def https(path: str, token: str | None) -> int:
        context = ssl.create_default_context(cafile=str(cert))
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        request = urllib.request.Request(f"https://127.0.0.1:{http_port}{path}", data=b"{}", headers=headers)
        try:
            with urllib.request.urlopen(request, context=context, timeout=30) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code

    assert await asyncio.to_thread(https, "/search", TOKEN) == 200
    assert await asyncio.to_thread(https, "/search", None) == 401
    denied, names = await asyncio.to_thread(run)
    assert denied == grpc.StatusCode.UNAUTHENTICATED
    # configured exact tasks first, then names only the store knows (no sketch tasks configured here)
    assert names == [*EXACT_TASKS, "cm_src", "ss_dst"]
