"""The alert state machine over scripted readings and a manual clock: pending → firing → resolved,
dedup, for, repeat interval, cooldown, and a restart that neither repeats nor forgets."""

from __future__ import annotations

from pathlib import Path

from netspectra.alerting.alerter import Alerter
from netspectra.config.models import AlerterConfig
from tests.unit.alerting.fakes import ManualClock, RecordingChannel, ScriptedReader


def config(tmp_path: Path, **rule: object) -> AlerterConfig:
    base = {"name": "big", "task_name": "t", "metric": "flow_packets", "operator": ">", "threshold": 100}
    return AlerterConfig.model_validate(
        {
            "enabled": True,
            "check_interval": "10s",
            "repeat_interval": "1h",
            "cooldown": "5m",
            "state_dir": str(tmp_path / "alerts"),
            "rules": [{**base, **rule}],
        }
    )


def statuses(notes: list) -> list[tuple[str, str]]:  # type: ignore[type-arg]
    return [(n.status, n.key) for n in notes]


async def test_for_holds_the_alert_pending_then_it_fires_once_and_resolves(tmp_path: Path) -> None:
    clock, reader = ManualClock(), ScriptedReader()
    alerter = Alerter(config(tmp_path, **{"for": "30s"}), reader, [], clock=clock)
    reader.values["big"] = {"a": 150, "b": 5}
    made = []
    for _ in range(3):  # t = 0, 10, 20: pending
        made += await alerter.check()
        clock.now += 10
    assert made == []
    assert [a.status for a in alerter.book.active.values()] == ["pending"]
    made = await alerter.check()  # t = 30: held for 30 s
    assert statuses(made) == [("firing", "a")]
    for _ in range(20):  # still holds: no second firing within the repeat interval
        clock.now += 10
        assert await alerter.check() == []
    reader.values["big"] = {"a": 50}
    clock.now += 10
    resolved = await alerter.check()
    assert statuses(resolved) == [("resolved", "a")]
    assert resolved[0].alert_id == made[0].alert_id
    assert alerter.book.active == {}
    assert [a.status for a in alerter.book.history] == ["resolved"]


async def test_a_condition_that_ends_while_pending_notifies_nothing(tmp_path: Path) -> None:
    clock, reader = ManualClock(), ScriptedReader()
    alerter = Alerter(config(tmp_path, **{"for": "30s"}), reader, [], clock=clock)
    reader.values["big"] = {"a": 150}
    assert await alerter.check() == []
    clock.now += 20
    reader.values["big"] = {}
    assert await alerter.check() == []
    assert alerter.book.active == {} and list(alerter.book.history) == []


async def test_repeat_interval_renotifies_the_same_alert(tmp_path: Path) -> None:
    clock, reader = ManualClock(), ScriptedReader()
    alerter = Alerter(config(tmp_path, repeat_interval="60s"), reader, [], clock=clock)
    reader.values["big"] = {"a": 150}
    made = []
    for _ in range(13):  # t = 0 .. 120
        made += await alerter.check()
        clock.now += 10
    assert [(n.status, n.repeat, n.at - made[0].at) for n in made] == [
        ("firing", False, 0),
        ("firing", True, 60),
        ("firing", True, 120),
    ]
    assert len({n.alert_id for n in made}) == 1


async def test_cooldown_keeps_a_flapping_condition_quiet(tmp_path: Path) -> None:
    clock, reader = ManualClock(), ScriptedReader()
    alerter = Alerter(config(tmp_path), reader, [], clock=clock)  # cooldown 5 m
    made = []
    for step in range(40):  # flaps every check for 400 s
        reader.values["big"] = {"a": 150 if step % 2 == 0 else 0}
        made += await alerter.check()
        clock.now += 10
    # fired and resolved once, then quiet until the cooldown passed (t=310: fires again)
    assert [(n.status, n.at - made[0].at) for n in made][:2] == [("firing", 0), ("resolved", 10)]
    assert [n.at - made[0].at for n in made if n.status == "firing"][1] >= 300
    assert len(made) < 8


async def test_a_store_outage_resolves_nothing(tmp_path: Path) -> None:
    clock, reader = ManualClock(), ScriptedReader()
    alerter = Alerter(config(tmp_path), reader, [], clock=clock)
    reader.values["big"] = {"a": 150}
    assert statuses(await alerter.check()) == [("firing", "a")]
    reader.down = True
    clock.now += 10
    assert await alerter.check() == []
    assert [a.status for a in alerter.book.active.values()] == ["firing"]


async def test_a_restart_while_firing_neither_repeats_firing_nor_loses_the_resolve(tmp_path: Path) -> None:
    clock, reader = ManualClock(), ScriptedReader()
    channel = RecordingChannel()
    first = Alerter(config(tmp_path), reader, [channel], clock=clock)
    reader.values["big"] = {"a": 150, "b": 300}
    assert statuses(await first.check()) == [("firing", "a"), ("firing", "b")]
    # the process dies here: nothing was delivered yet, the outbox is in the state file
    clock.now += 10
    channel_after = RecordingChannel()
    second = Alerter(config(tmp_path), reader, [channel_after], clock=clock)
    assert await second.check() == []  # both still firing: no second "firing"
    assert [n.status for n in second.outboxes["rec"].pending] == ["firing", "firing"]
    reader.values["big"] = {"b": 300}
    clock.now += 10
    third = Alerter(config(tmp_path), reader, [channel_after], clock=clock)
    assert statuses(await third.check()) == [("resolved", "a")]
    assert [(n.status, n.key) for n in third.outboxes["rec"].pending] == [
        ("firing", "a"),
        ("firing", "b"),
        ("resolved", "a"),
    ]


async def test_a_rule_whose_read_fails_costs_the_others_nothing(tmp_path: Path) -> None:
    clock, reader = ManualClock(), ScriptedReader()
    two = config(tmp_path).model_copy(
        update={
            "rules": (
                *config(tmp_path).rules,
                config(tmp_path).rules[0].model_copy(update={"name": "other"}),
            )
        }
    )
    channel = RecordingChannel()
    alerter = Alerter(two, reader, [channel], clock=clock)
    reader.values = {"big": {"a": 150}, "other": {"b": 150}}
    reader.broken = {"big"}
    assert statuses(await alerter.check()) == [("firing", "b")]
    assert [(n.rule, n.key) for n in alerter.outboxes["rec"].pending] == [("other", "b")]


class GapReader(ScriptedReader):
    """Answers None (nothing stored to judge: the engine restarting) while ``gap`` is set."""

    gap = False

    async def read(self, rule, now=None):  # type: ignore[no-untyped-def]
        return None if self.gap else await super().read(rule, now)


async def test_nothing_stored_to_judge_neither_resolves_nor_fires(tmp_path: Path) -> None:
    clock, reader = ManualClock(), GapReader()
    two = config(tmp_path).model_copy(
        update={
            "rules": (
                *config(tmp_path).rules,
                config(tmp_path, name="quiet", metric="total_packets", operator="<", threshold=10).rules[0],
            )
        }
    )
    alerter = Alerter(two, reader, [], clock=clock)
    reader.values = {"big": {"a": 150}, "quiet": {"": 500}}
    assert statuses(await alerter.check()) == [("firing", "a")]
    reader.gap = True
    for _ in range(3):
        clock.now += 10
        assert await alerter.check() == []  # "big" is not resolved, "quiet" (0 packets) not fired
    assert [(a.rule, a.status) for a in alerter.book.active.values()] == [("big", "firing")]
    reader.gap = False
    reader.values = {"big": {}, "quiet": {"": 500}}
    clock.now += 10
    assert statuses(await alerter.check()) == [("resolved", "a")]
