"""`netspectra query`'s tables: raw counts and the effective rate appear when an answer was sampled."""

from __future__ import annotations

import io

from rich.console import Console

from netspectra.cli.query import Mode, _render
from netspectra.wire.generated import v1


def rendered(mode: Mode, response: object) -> str:
    out = io.StringIO()
    _render(mode, response, Console(file=out, width=200))
    return out.getvalue()


def test_a_sampled_answer_shows_raw_counts_and_the_rate() -> None:
    answer = v1.QueryTotalCountsResponse(
        summaries=[
            v1.TaskSummary(
                task_name="t", total_packets=700, total_bytes=90_000, flow_count=3,
                raw=v1.RawCounts(packets=7, bytes=900),
            ),
            v1.TaskSummary(
                task_name="u", total_packets=5, total_bytes=50, flow_count=1,
                raw=v1.RawCounts(packets=5, bytes=50),
            ),
        ]
    )  # fmt: skip
    text = rendered(Mode.AGGREGATE, answer)
    assert "raw packets" in text and "raw bytes" in text and "rate" in text
    assert "900" in text and " 100 " in text  # 700 / 7
    trace = v1.TraceFlowResponse(
        lifecycle=v1.FlowLifecycle(total_packets=4096, total_bytes=8192, raw=v1.RawCounts(packets=2, bytes=4))
    )
    assert "2,048" in rendered(Mode.TRACE, trace)


def test_unsampled_and_old_servers_answers_look_as_before() -> None:
    for raw in (v1.RawCounts(packets=5, bytes=50), None):  # unsampled; a server without raw counts
        answer = v1.QueryTotalCountsResponse(
            summaries=[v1.TaskSummary(task_name="u", total_packets=5, total_bytes=50, flow_count=1, raw=raw)]
        )
        assert "raw" not in rendered(Mode.AGGREGATE, answer)
        trace = v1.TraceFlowResponse(lifecycle=v1.FlowLifecycle(total_packets=5, total_bytes=50, raw=raw))
        assert "raw" not in rendered(Mode.TRACE, trace)
