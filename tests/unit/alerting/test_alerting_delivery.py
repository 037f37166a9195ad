"""Delivery with a controllable clock: a channel refusing for 30 s then recovering gets every
notification once and in order; a down channel never delays another."""

from __future__ import annotations

import asyncio
from pathlib import Path

from netspectra.alerting.alerter import Alerter
from netspectra.config.models import AlerterConfig
from tests.unit.alerting.fakes import ManualClock, RecordingChannel, ScriptedReader


def config(tmp_path: Path) -> AlerterConfig:
    return AlerterConfig.model_validate(
        {
            "enabled": True,
            "check_interval": "1s",
            "cooldown": "0s",
            "retry_initial": "1s",
            "retry_max": "8s",
            "state_dir": str(tmp_path / "alerts"),
            "rules": [{"name": "r", "task_name": "t", "metric": "flow_bytes", "threshold": 10}],
        }
    )


async def until(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(poll(), timeout)


async def test_a_channel_down_for_30_s_gets_everything_once_in_order_and_the_other_is_not_delayed(
    tmp_path: Path,
) -> None:
    clock, reader = ManualClock(), ScriptedReader()
    down_until = clock.now + 30
    flaky = RecordingChannel("flaky", refusing=lambda: clock.now < down_until)
    healthy = RecordingChannel("healthy")
    alerter = Alerter(config(tmp_path), reader, [flaky, healthy], clock=clock, sleep=clock.sleep)
    stop = asyncio.Event()
    delivery = asyncio.create_task(alerter.deliver(stop))
    made = []
    try:
        for step in range(6):  # six notifications while the flaky channel refuses
            reader.values["r"] = {f"flow{step // 2}": 50} if step % 2 == 0 else {}
            made += await alerter.check(now=clock.now)
            await until(lambda n=len(made): len(healthy.received) == n)  # the healthy one keeps up
            clock.now += 1
        assert flaky.received == []
        while len(flaky.received) < len(made):  # time passes one second at a time
            await until(lambda: clock.sleepers > 0 or len(flaky.received) == len(made))
            clock.now += 1
            assert clock.now < down_until + 60, "the channel was not retried after it recovered"
    finally:
        stop.set()
        await delivery
    assert [n.id for n in healthy.received] == [n.id for n in made]
    assert [n.id for n in flaky.received] == [n.id for n in made]  # once each, in order
    assert [(n.status, n.key) for n in made] == [
        ("firing", "flow0"),
        ("resolved", "flow0"),
        ("firing", "flow1"),
        ("resolved", "flow1"),
        ("firing", "flow2"),
        ("resolved", "flow2"),
    ]
    assert clock.now >= down_until and flaky.attempts > 2
    # backoff doubled to its cap: 1 + 2 + 4 + 8 + 8 + 8 ≥ 30, so few attempts, not hundreds
    assert flaky.attempts <= 10


async def test_undelivered_notifications_survive_a_restart_and_go_out_in_order(tmp_path: Path) -> None:
    clock, reader = ManualClock(), ScriptedReader()
    refusing = RecordingChannel("flaky", refusing=lambda: True)
    first = Alerter(config(tmp_path), reader, [refusing], clock=clock, sleep=clock.sleep)
    reader.values["r"] = {"a": 50}
    made = await first.check()
    reader.values["r"] = {}
    clock.now += 1
    made += await first.check()
    later = RecordingChannel("flaky")
    second = Alerter(config(tmp_path), reader, [later], clock=clock, sleep=clock.sleep)
    second.load()
    stop = asyncio.Event()
    delivery = asyncio.create_task(second.deliver(stop))
    try:
        await until(lambda: len(later.received) == 2)  # it never refuses: no backoff, no clock needed
    finally:
        stop.set()
        await delivery
    assert [n.id for n in later.received] == [n.id for n in made]
    third = Alerter(config(tmp_path), reader, [RecordingChannel("flaky")], clock=clock)
    third.load()
    assert not third.outboxes["flaky"].pending  # delivered ones are not sent again
