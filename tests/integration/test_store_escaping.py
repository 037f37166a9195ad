"""Both backends quote a request value exactly as ClickHouse parses it: the same adversarial task
names are stored, listed and queried back byte for byte on a real clickhouse-server and on chdb,
and a name that only matches after an unescape (``per\\x5fsrc\\x5fip``) matches nothing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from grpclib import GRPCError
from grpclib.client import Channel
from grpclib.const import Status

from netspectra.model.fields import KeyField
from netspectra.model.snapshot import Snapshot
from netspectra.storage.context import StorageContext
from netspectra.storage.registry import build_writer
from netspectra.wire.generated import v1
from tests.integration.api_serving import api_settings, serving, store_writer
from tests.integration.api_truth import T0, flow_table, make_packets

ADVERSARIAL = [
    "per\\x5fsrc\\x5fip",  # literal backslashes: must not read as per_src_ip
    "trailing\\",
    "\\",
    "quote'inside",
    "back\\'slash-quote",
    "double\\\\back",
    "new\nline\ttab\rcr",
    "nul\0byte",
    "%(task)s %s",
    "{task:String}",
    "ünïcødé ☃",
    "'; DROP TABLE flow_metrics; --",
]  # fmt: skip
FIELDS = (KeyField.SRC_IP,)


@pytest.mark.parametrize("kind", ["clickhouse", "embedded"])
async def test_adversarial_task_names_round_trip_exactly(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    packets = make_packets(count=300)
    writer_config = store_writer(kind, tmp_path, request)
    settings = api_settings(writer_config)
    # the victim of the escape confusion, then every adversarial name with its own packet count
    names = ["per_src_ip", *ADVERSARIAL]
    tables = tuple(flow_table(name, FIELDS, packets[: 10 + 10 * i]) for i, name in enumerate(names))
    context = StorageContext(engine_id="e1")
    writer = build_writer(settings.aggregator.exact.writers[0], "exact", context)
    await writer.write(Snapshot("exact", T0 * 10**9, (T0 - 100) * 10**9, flows=tables))
    await writer.flush(60)  # type: ignore[attr-defined]
    await writer.close()
    await context.close()
    async with serving(settings) as api:
        channel = Channel("127.0.0.1", api.role.grpc_port)
        try:
            stub = v1.QueryServiceStub(channel, timeout=30)
            listed = await stub.search_tasks(v1.SearchTasksRequest())
            assert set(names) <= set(listed.task_names)
            for i, name in enumerate(names):
                answer = await stub.aggregate_flows(v1.AggregationRequest(task_name=name))
                assert [(s.task_name, s.total_packets) for s in answer.summaries] == [(name, 10 + 10 * i)], (
                    name
                )
            for never_stored in ("per\\x5fsrc\\x5fip\\", "per\\_src\\_ip", "x\\", "\\x00"):
                with pytest.raises(GRPCError) as missing:
                    await stub.aggregate_flows(v1.AggregationRequest(task_name=never_stored))
                assert missing.value.status is Status.NOT_FOUND, (never_stored, missing.value.message)
                with pytest.raises(GRPCError) as missing:
                    await stub.query_heavy_hitters(v1.HeavyHittersRequest(task_name=never_stored, type=0))
                assert missing.value.status is Status.NOT_FOUND, never_stored
        finally:
            channel.close()

        def grpcio_trace(name: str) -> grpc.StatusCode:
            with grpc.insecure_channel(api.grpc) as official:
                call = official.unary_unary("/v1.QueryService/TraceFlow")
                payload = v1.TraceFlowRequest(task_name=name, flow_keys={"SrcIP": packets[0].src})
                try:
                    call(bytes(payload), timeout=30)
                except grpc.RpcError as error:
                    return error.code()
                return grpc.StatusCode.OK

        for name in ADVERSARIAL:
            assert await asyncio.to_thread(grpcio_trace, name) is grpc.StatusCode.OK, name
