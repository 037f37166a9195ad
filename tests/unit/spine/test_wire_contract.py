"""betterproto2's generated messages against the official protobuf package, compiled from proto/ here.

The official package is an independent implementation: if both give the same bytes (or, for
messages with maps, the same decoded values) our wire format is the Go project's.
"""

from __future__ import annotations

import datetime as dt

import pytest

from netspectra.wire.generated import v1

UTC = dt.UTC


@pytest.fixture(scope="module")
def official(official_protos):
    return official_protos.traffic_pb2, official_protos.query_pb2


def _ts(seconds: int, micros: int = 0) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, UTC).replace(microsecond=micros)


def _cases(traffic, query):
    """(betterproto2 message, equivalent official message) pairs covering every message."""
    ts_pb = traffic.google_dot_protobuf_dot_timestamp__pb2.Timestamp(seconds=1_700_000_000, nanos=123_456_000)
    return [
        (
            v1.FiveTuple(
                src_ip=b"\x0a\x00\x00\x01", dst_ip=bytes(range(16)), src_port=443, dst_port=51000, protocol=6
            ),
            traffic.FiveTuple(
                src_ip=b"\x0a\x00\x00\x01", dst_ip=bytes(range(16)), src_port=443, dst_port=51000, protocol=6
            ),
        ),
        (v1.FiveTuple(), traffic.FiveTuple()),
        (
            v1.PacketInfo(
                timestamp=_ts(1_700_000_000, 123_456),
                five_tuple=v1.FiveTuple(
                    src_ip=b"\x01\x02\x03\x04", dst_ip=b"\x05\x06\x07\x08", src_port=1, protocol=17
                ),
                length=1514,
            ),
            traffic.PacketInfo(
                timestamp=ts_pb,
                five_tuple=traffic.FiveTuple(
                    src_ip=b"\x01\x02\x03\x04", dst_ip=b"\x05\x06\x07\x08", src_port=1, protocol=17
                ),
                length=1514,
            ),
        ),
        (
            v1.PacketBatch(packets=[v1.PacketInfo(length=60), v1.PacketInfo(length=2**40)]),
            traffic.PacketBatch(packets=[traffic.PacketInfo(length=60), traffic.PacketInfo(length=2**40)]),
        ),
        (
            v1.AggregationRequest(
                end_time=_ts(1_700_000_000),
                task_name="per_src_ip",
                src_ip="10.0.0.1",
                dst_ip="::1",
                src_port=80,
                dst_port=8080,
                protocol=6,
            ),
            query.AggregationRequest(
                end_time=traffic.google_dot_protobuf_dot_timestamp__pb2.Timestamp(seconds=1_700_000_000),
                task_name="per_src_ip",
                src_ip="10.0.0.1",
                dst_ip="::1",
                src_port=80,
                dst_port=8080,
                protocol=6,
            ),
        ),
        (
            v1.QueryTotalCountsResponse(
                summaries=[
                    v1.TaskSummary(task_name="a", total_bytes=2**63, total_packets=7, flow_count=3),
                    v1.TaskSummary(),
                    v1.TaskSummary(
                        task_name="s",
                        total_bytes=2**40,
                        total_packets=700,
                        raw=v1.RawCounts(packets=7, bytes=2),
                    ),
                ]
            ),
            query.QueryTotalCountsResponse(
                summaries=[
                    query.TaskSummary(task_name="a", total_bytes=2**63, total_packets=7, flow_count=3),
                    query.TaskSummary(),
                    query.TaskSummary(
                        task_name="s",
                        total_bytes=2**40,
                        total_packets=700,
                        raw=query.RawCounts(packets=7, bytes=2),
                    ),
                ]
            ),
        ),
        (
            v1.FlowLifecycle(total_packets=9, raw=v1.RawCounts(packets=3, bytes=2**63)),
            query.FlowLifecycle(total_packets=9, raw=query.RawCounts(packets=3, bytes=2**63)),
        ),
        (
            v1.TraceFlowResponse(
                lifecycle=v1.FlowLifecycle(
                    first_seen=_ts(5), last_seen=_ts(9, 1), total_packets=2, total_bytes=3
                )
            ),
            query.TraceFlowResponse(
                lifecycle=query.FlowLifecycle(
                    first_seen=traffic.google_dot_protobuf_dot_timestamp__pb2.Timestamp(seconds=5),
                    last_seen=traffic.google_dot_protobuf_dot_timestamp__pb2.Timestamp(seconds=9, nanos=1000),
                    total_packets=2,
                    total_bytes=3,
                )
            ),
        ),
        (v1.HealthCheckRequest(), query.HealthCheckRequest()),
        (v1.HealthCheckResponse(status="ok"), query.HealthCheckResponse(status="ok")),
        (v1.SearchTasksRequest(), query.SearchTasksRequest()),
        (
            v1.SearchTasksResponse(
                task_names=["per_src_ip", "", "ss"], task_kinds=["exact", "", "sketch:super_spread"]
            ),
            query.SearchTasksResponse(
                task_names=["per_src_ip", "", "ss"], task_kinds=["exact", "", "sketch:super_spread"]
            ),
        ),
        (
            v1.HeavyHittersRequest(task_name="cm", type=2, end_time=_ts(7), limit=-1),
            query.HeavyHittersRequest(
                task_name="cm",
                type=2,
                end_time=traffic.google_dot_protobuf_dot_timestamp__pb2.Timestamp(seconds=7),
                limit=-1,
            ),
        ),
        (
            v1.HeavyHittersResponse(
                hitters=[v1.HeavyHitter(flow="10.0.0.1 443", value=99), v1.HeavyHitter()]
            ),
            query.HeavyHittersResponse(
                hitters=[query.HeavyHitter(flow="10.0.0.1 443", value=99), query.HeavyHitter()]
            ),
        ),
        (
            v1.ListAlertsRequest(state="firing", rule="ddos", limit=5),
            query.ListAlertsRequest(state="firing", rule="ddos", limit=5),
        ),
        (
            v1.ListAlertsResponse(
                alerts=[
                    v1.Alert(
                        id="a1",
                        rule="ddos",
                        key="SrcIP=10.0.0.1",
                        task_name="ss",
                        status="firing",
                        value=6100.5,
                        bound=5000,
                        labels={"team": "net"},
                        fired_at=_ts(9),
                    ),
                    v1.Alert(),
                ]
            ),
            query.ListAlertsResponse(
                alerts=[
                    query.Alert(
                        id="a1",
                        rule="ddos",
                        key="SrcIP=10.0.0.1",
                        task_name="ss",
                        status="firing",
                        value=6100.5,
                        bound=5000,
                        labels={"team": "net"},
                        fired_at=traffic.google_dot_protobuf_dot_timestamp__pb2.Timestamp(seconds=9),
                    ),
                    query.Alert(),
                ]
            ),
        ),
    ]


def _flow_cases(flow, traffic):
    """proto/v1/flow.proto (our flow-export extension)."""
    record = dict(
        packets=2**40,
        bytes=3,
        first_seen_ns=1_700_000_000 * 10**9,
        last_seen_ns=5,
        exporter=b"\xc0\x00\x02\x01",
    )
    more = dict(sampling_rate=2048, raw_packets=1, raw_bytes=2)
    ours_tuple = v1.FiveTuple(src_ip=b"\x0a\x00\x00\x01", dst_ip=bytes(range(16)), src_port=443, protocol=6)
    theirs_tuple = traffic.FiveTuple(
        src_ip=b"\x0a\x00\x00\x01", dst_ip=bytes(range(16)), src_port=443, protocol=6
    )
    return [
        (
            v1.FlowRecord(five_tuple=ours_tuple, **record, **more),
            flow.FlowRecord(five_tuple=theirs_tuple, **record, **more),
        ),
        (
            v1.FlowRecordBatch(records=[v1.FlowRecord(**record), v1.FlowRecord()]),
            flow.FlowRecordBatch(records=[flow.FlowRecord(**record), flow.FlowRecord()]),
        ),
    ]


def test_every_message_encodes_to_the_official_bytes_and_back(official, official_protos):
    traffic, query = official
    cases = _cases(traffic, query) + _flow_cases(official_protos.flow_pb2, traffic)
    covered = {type(ours).__name__ for ours, _ in cases}
    nested = {"TraceFlowRequest", "FlowLifecycle", "TaskSummary", "HeavyHitter", "Alert", "RawCounts"}
    assert covered | nested >= set(v1.__all__) - {"QueryServiceBase", "QueryServiceStub"}
    for ours, theirs in cases:
        expected = theirs.SerializeToString(deterministic=True)
        assert bytes(ours) == expected, type(ours).__name__
        decoded = type(ours).parse(expected)
        assert bytes(decoded) == expected, type(ours).__name__
        assert type(theirs).FromString(bytes(ours)) == theirs


def test_trace_flow_request_with_a_map_decodes_equal(official):
    _, query = official
    keys = {"SrcIP": "10.0.0.1", "DstPort": "443", "Protocol": "6"}
    ours = v1.TraceFlowRequest(task_name="per_five_tuple", flow_keys=keys, end_time=_ts(1_700_000_000))
    theirs = query.TraceFlowRequest.FromString(bytes(ours))
    assert theirs.task_name == "per_five_tuple"
    assert dict(theirs.flow_keys) == keys
    assert theirs.end_time.seconds == 1_700_000_000
    back = v1.TraceFlowRequest.parse(theirs.SerializeToString())
    assert back.flow_keys == keys and back.task_name == "per_five_tuple"
