"""The console's HTTP JSON over a real store (clickhouse-server and embedded): equal to the truth.

Totals, heavy hitters and traces come from the same QueryService the gRPC tests check, so here
they are compared with the packets' brute-force truth once more through HTTP; top talkers and
traffic over time are the console's own reads. Errors keep the gRPC side's meaning.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from netspectra.model.snapshot import HitterKind
from tests.integration.api_truth import T0, T1, hitters_truth
from tests.integration.console_serving import PACKETS, Console, console, top_truth

pytestmark = pytest.mark.slow
FIRST = [p for p in PACKETS if p.ts_ns < T0 * 10**9]
SECOND = [p for p in PACKETS if p.ts_ns >= T0 * 10**9]


@pytest.fixture(params=["clickhouse", "embedded"])
async def served(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Console]:
    async with console(request.param, tmp_path, request) as serving:
        yield serving


def rows(answer: dict, *names: str) -> list[tuple]:
    return [(*(flow[name] for name in names), flow["packets"], flow["bytes"]) for flow in answer["flows"]]


async def test_top_talkers_totals_and_series_equal_the_truth(served: Console) -> None:
    post = served.post
    status, top = await asyncio.to_thread(post, "top", {"task": "per_src_ip", "limit": 20})
    assert status == 200, top
    assert rows(top, "src_ip") == top_truth(PACKETS, "per_src_ip")
    assert all(flow["dst_ip"] is None and flow["src_port"] is None for flow in top["flows"])
    status, top = await asyncio.to_thread(post, "top", {"task": "five_tuple", "limit": 15, "by": "bytes"})
    names = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol")
    assert rows(top, *names) == top_truth(PACKETS, "five_tuple", limit=15, by="bytes")
    # filters: the same rows the truth keeps
    body = {"task": "five_tuple", "limit": 1000, "dst_port": 443, "protocol": "6"}
    status, top = await asyncio.to_thread(post, "top", body)
    keep = lambda p: p.dport == 443 and p.proto == 6  # noqa: E731
    assert rows(top, *names) == top_truth(PACKETS, "five_tuple", limit=1000, keep=keep)
    status, top = await asyncio.to_thread(post, "top", {"task": "per_src_ip", "src_ip": "2001:0db8::0001"})
    six = [p for p in PACKETS if p.src == "2001:db8::1"]
    assert rows(top, "src_ip") == [("2001:db8::1", len(six), sum(p.length for p in six))]
    # windows: the end bound picks the T0 snapshot; a start after T0 leaves what came since
    status, top = await asyncio.to_thread(post, "top", {"task": "per_src_ip", "end": T0, "limit": 20})
    assert rows(top, "src_ip") == top_truth(FIRST, "per_src_ip")
    status, top = await asyncio.to_thread(
        post, "top", {"task": "per_src_ip", "start": T0 + 1, "end": T1, "limit": 20}
    )
    assert rows(top, "src_ip") == top_truth(SECOND, "per_src_ip")

    status, totals = await asyncio.to_thread(post, "totals", {"task": "five_tuple"})
    assert totals == {
        "totals": [
            {"task": "five_tuple", "packets": 3000, "bytes": sum(p.length for p in PACKETS), "flows": 3000}
        ]
    }
    status, totals = await asyncio.to_thread(post, "totals", {"task": "per_dst_port", "end": T0})
    assert totals["totals"][0]["packets"] == len(FIRST)

    status, series = await asyncio.to_thread(post, "series", {"task": "five_tuple"})
    assert series["points"] == [
        {"time": T0, "packets": len(FIRST), "bytes": sum(p.length for p in FIRST)},
        {"time": T1, "packets": len(PACKETS), "bytes": sum(p.length for p in PACKETS)},
    ]
    seconds = T1 - T0
    assert series["rates"] == [
        {
            "time": T1,
            "packets_per_s": len(SECOND) / seconds,
            "bytes_per_s": sum(p.length for p in SECOND) / seconds,
        }
    ]


async def test_hitters_trace_tasks_and_status(served: Console) -> None:
    post = served.post
    truth = hitters_truth(PACKETS)
    for task, kind in (
        ("cm_src", HitterKind.COUNT),
        ("cm_src", HitterKind.SIZE),
        ("ss_dst", HitterKind.SPREAD),
    ):
        status, answer = await asyncio.to_thread(
            post, "hitters", {"task": task, "type": int(kind), "limit": 7}
        )
        assert status == 200, answer
        expected = sorted(truth[kind].items(), key=lambda item: (-item[1], item[0]))[:7]
        assert [(h["flow"], h["value"]) for h in answer["hitters"]] == expected
    six = [p for p in PACKETS if p.src == "2001:db8::1"]
    status, trace = await asyncio.to_thread(
        post, "trace", {"task": "per_src_ip", "keys": {"SrcIP": "2001:db8::1"}}
    )
    assert trace == {
        "task": "per_src_ip",
        "found": True,
        "first_seen": min(p.ts_ns for p in six) // 10**9,
        "last_seen": max(p.ts_ns for p in six) // 10**9,
        "packets": len(six),
        "bytes": sum(p.length for p in six),
    }
    status, trace = await asyncio.to_thread(
        post, "trace", {"task": "per_src_ip", "keys": {"SrcIP": "10.9.9.9"}}
    )
    assert status == 200 and trace["found"] is False and "matches" in trace["message"]
    status, tasks = await asyncio.to_thread(post, "tasks", {})
    assert {t["name"]: t["kind"] for t in tasks["tasks"]} == {
        "per_src_ip": "exact",
        "per_dst_port": "exact",
        "five_tuple": "exact",
        "cm_src": "sketch:count_min",
        "ss_dst": "sketch:super_spread",
    }
    status, state = await asyncio.to_thread(post, "status", {})
    assert state["stored_tasks"] == 5 and state["snapshot_interval_s"] == 60.0
    assert state["alerting"] == {"configured": False, "message": "alerting is not configured"}


async def test_bad_requests_get_the_grpc_sides_answers(served: Console) -> None:
    post = served.post
    cases = [
        ("top", {"task": "nope"}, 404),
        ("top", {}, 400),
        ("top", {"task": "per_src_ip", "src_ip": "10.0.0"}, 400),
        ("top", {"task": "per_src_ip", "dst_port": 70000}, 400),
        ("top", {"task": "per_src_ip", "by": "flows"}, 400),
        ("top", {"task": "per_src_ip", "start": T1, "end": T0}, 400),
        ("top", {"task": "per_src_ip", "end": -1}, 400),
        ("totals", {"task": "per_src_ip", "protocol": "tcp"}, 400),
        ("hitters", {"task": "cm_src", "type": 9}, 400),
        ("hitters", {"task": "nope", "type": 0}, 404),
        ("trace", {"task": "per_src_ip", "keys": {"Nope": "1"}}, 400),
        ("series", {"task": "nope"}, 404),
        ("alerts", {}, 503),  # no alerter: ListAlerts' FAILED_PRECONDITION
        ("alerts", {"limit": "ten"}, 400),
        ("nothing", {}, 404),
    ]
    for name, body, expected in cases:
        status, answer = await asyncio.to_thread(post, name, body)
        assert status == expected, (name, body, answer)
        assert "error" in answer and "Traceback" not in answer["error"] and "SELECT" not in answer["error"]
    # another page's origin is refused; the console's own origin (Host) is not
    status, answer = await asyncio.to_thread(post, "status", {}, Origin="http://evil.example")
    assert status == 403
    status, answer = await asyncio.to_thread(post, "status", {}, Origin=served.url)
    assert status == 200
    # a name rebound to this host (DNS rebinding) is not "our own page": only listed origins are
    rebound = f"evil.example:{served.role.http_port}"
    status, answer = await asyncio.to_thread(post, "status", {}, Origin=f"http://{rebound}", Host=rebound)
    assert status == 403
    # Grafana's routes keep their meaning: GET / without text/html is the health answer
    status, headers, body = await asyncio.to_thread(served.get, "/", Accept="application/json")
    assert status == 200 and body == b'{"status": "ok"}'
    status, headers, body = await asyncio.to_thread(served.get, "/", Accept="text/html")
    assert status == 200 and headers["Content-Type"].startswith("text/html") and b"NetSpectra" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    for name, kind in (("console.js", "text/javascript"), ("uPlot.iife.min.js", "text/javascript")):
        status, headers, body = await asyncio.to_thread(served.get, f"/console/{name}")
        assert status == 200 and headers["Content-Type"].startswith(kind)
    status, headers, body = await asyncio.to_thread(served.get, "/console/../role.py")
    assert status == 404


async def test_the_token_guards_the_json_and_metrics_not_the_page(tmp_path: Path, request) -> None:
    async with console("embedded", tmp_path, request, fill=False, auth_token="s3cret") as served:
        status, answer = await asyncio.to_thread(served.post, "status", {})
        assert status == 401
        status, answer = await asyncio.to_thread(served.post, "status", {}, Authorization="Bearer s3cret")
        assert status == 200 and answer["stored_tasks"] == 0
        status, _, body = await asyncio.to_thread(served.get, "/metrics")
        assert status == 401
        status, _, body = await asyncio.to_thread(served.get, "/metrics", Authorization="Bearer s3cret")
        assert (
            status == 200
            and b'netspectra_api_query_seconds_count{role="api",rpc="console/status"} 1.0' in body
        )
        status, _headers, page = await asyncio.to_thread(served.get, "/", Accept="text/html")
        assert status == 200 and b"s3cret" not in page
