"""Seeing alerts: the ListAlerts RPC (reflection lists it, grpcurl calls it), ``netspectra alerts``
and Grafana annotations, over a planted DDoS counted on trace time; an api without the alerter in
its process lists the alerter's saved state."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

from netspectra.api.role import ApiRole
from netspectra.config.models import ApiConfig
from tests.fixtures.tools import venv_tool
from tests.integration.alerting_helpers import T0, TraceRig, base_traffic, concat, ddos
from tests.integration.api_serving import exchange, http_request
from tests.integration.test_alerting_traces import INTERVAL, settings


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "240"}  # rich's table, wide enough not to wrap
    return subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)


async def test_list_alerts_over_grpc_cli_and_grafana_annotations(tmp_path: Path) -> None:
    config = settings(tmp_path)
    config = config.model_copy(
        update={"api": ApiConfig(grpc_listen_addr="127.0.0.1:0", http_listen_addr="127.0.0.1:0")}
    )
    packets = concat([base_traffic(tmp_path, seconds=100), ddos(tmp_path, 32.5, 20.0, 1000)])
    async with TraceRig(config) as rig:
        await rig.run(packets, 45.0, INTERVAL)  # the flood fires at 45 (for 10 s from 35)
        role = ApiRole(config, rig.alert_storage, alerter=rig.alerter)
        stop = asyncio.Event()
        task = asyncio.create_task(role.serve(stop))
        try:
            await asyncio.wait_for(role.ready.wait(), 60)
            address = f"127.0.0.1:{role.grpc_port}"
            grpcurl = venv_tool("grpcurl")
            described = await asyncio.to_thread(
                run, grpcurl, "-plaintext", address, "describe", "v1.QueryService"
            )
            assert (
                "rpc ListAlerts ( .v1.ListAlertsRequest ) returns ( .v1.ListAlertsResponse );"
                in described.stdout
            )
            called = await asyncio.to_thread(
                run, grpcurl, "-plaintext", "-d", '{"state": "firing"}', address, "v1.QueryService/ListAlerts"
            )
            assert called.returncode == 0, called.stderr
            alerts = json.loads(called.stdout)["alerts"]
            assert [(a["rule"], a["key"], a["status"], a["severity"]) for a in alerts] == [
                ("ddos", "DstIP=198.18.0.1", "firing", "critical")
            ]
            assert alerts[0]["firedAt"] == "2025-06-15T15:07:25Z" and T0 + 45 == 1_750_000_045
            bad = await asyncio.to_thread(
                run,
                grpcurl,
                "-plaintext",
                "-d",
                '{"state": "burning"}',
                address,
                "v1.QueryService/ListAlerts",
            )
            assert "Code: InvalidArgument" in bad.stderr
            cli = await asyncio.to_thread(run, venv_tool("netspectra"), "alerts", "--addr", address, "--json")
            assert cli.returncode == 0, cli.stderr
            assert [a["key"] for a in json.loads(cli.stdout)["alerts"]] == ["DstIP=198.18.0.1"]
            await rig.run(packets, 75.0, INTERVAL)  # the flood ended at 52.5: resolved by 60
            cli = await asyncio.to_thread(
                run, venv_tool("netspectra"), "alerts", "history", "--addr", address
            )
            assert cli.returncode == 0 and "resolved" in cli.stdout and "ddos" in cli.stdout, cli.stdout
            body = json.dumps(
                {"range": {"from": (T0 + 0) * 1000, "to": (T0 + 100) * 1000}, "annotation": {"query": "ddos"}}
            ).encode()
            reply = await exchange(
                role.http_port, http_request("POST", "/annotations", body, Content_Type="application/json")
            )
            assert reply.status == 200
            (region,) = reply.json()
            assert (
                region["time"] == (T0 + 45) * 1000
                and (T0 + 52.5) * 1000 < region["timeEnd"] <= (T0 + 60) * 1000
            )
            assert region["title"] == "ddos (critical)" and "DstIP=198.18.0.1" in region["text"]
        finally:
            stop.set()
            await task
    # an api of another process on this host reads the state file the alerter saved
    other = ApiRole(config, rig.alert_storage)
    assert other.alerts is not None
    active, history = other.alerts()
    assert active == [] and [(a.rule, a.status) for a in history] == [("ddos", "resolved")]


def test_list_alerts_without_alerting_is_failed_precondition() -> None:
    from netspectra.api.service import QueryService

    service = QueryService(store=Any, configured={})  # type: ignore[arg-type]
    from grpclib import GRPCError
    from grpclib.const import Status

    from netspectra.wire.generated import v1

    try:
        asyncio.run(service.list_alerts(v1.ListAlertsRequest()))
    except GRPCError as error:
        assert error.status is Status.FAILED_PRECONDITION
    else:
        raise AssertionError("ListAlerts answered without an alerter")
