"""Supervision: start consumers first once each is ready, restart with backoff, give up after N
quick failures, stop in data order."""

from __future__ import annotations

import asyncio

import pytest

from netspectra.supervisor import RestartPolicy, Supervisor

FAST = RestartPolicy(max_failures=3, window_s=60, backoff_initial_s=0.01, backoff_max_s=0.02)


async def until(condition, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    """Poll ``condition`` (a deadline only bounds a failure; no test waits on the clock)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


class Recorder:
    def __init__(self, name: str, log: list[str], *, crash_times: int = 0, stop_delay: float = 0.0) -> None:
        self.name, self.log, self.crash_times, self.stop_delay = name, log, crash_times, stop_delay
        self.starts = 0

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        self.starts += 1
        self.log.append(f"start {self.name}")
        if self.starts <= self.crash_times:
            raise RuntimeError(f"{self.name} boom {self.starts}")
        for _ in range(3):  # let anything that wrongly runs meanwhile show up in the log
            await asyncio.sleep(0)
        self.log.append(f"ready {self.name}")
        ready.set()
        await stop.wait()
        await asyncio.sleep(self.stop_delay)
        self.log.append(f"stopped {self.name}")


async def test_a_crashing_role_is_restarted_and_the_rest_keep_running(caplog):
    log: list[str] = []
    flaky = Recorder("engine", log, crash_times=2)
    steady = Recorder("api", log)
    stop = asyncio.Event()
    supervisor = Supervisor([("engine", flaky), ("api", steady)], policy=FAST, grace_s=1)
    runner = asyncio.create_task(supervisor.run(stop))
    await until(lambda: flaky.starts == 3 and steady.starts == 1)
    stop.set()
    assert await runner == 0
    assert flaky.starts == 3 and steady.starts == 1
    assert "engine boom 1" in caplog.text and "Traceback" in caplog.text


async def test_too_many_failures_end_the_process_with_a_reason():
    log: list[str] = []
    doomed = Recorder("engine", log, crash_times=99)
    steady = Recorder("api", log)
    supervisor = Supervisor([("engine", doomed), ("api", steady)], policy=FAST, grace_s=1)
    code = await asyncio.wait_for(supervisor.run(asyncio.Event()), 5)
    assert code == 1
    assert doomed.starts == 3
    assert supervisor.failure and "engine failed 3 times" in supervisor.failure
    assert "stopped api" in log


async def test_roles_stop_in_data_order_each_waiting_for_the_previous():
    log: list[str] = []
    roles = [
        ("probe", Recorder("probe", log, stop_delay=0.05)),
        ("engine", Recorder("engine", log, stop_delay=0.05)),
        ("api", Recorder("api", log)),
    ]
    stop = asyncio.Event()
    runner = asyncio.create_task(Supervisor(roles, policy=FAST, grace_s=1).run(stop))
    await until(lambda: "ready probe" in log)  # the last to start
    stop.set()
    assert await runner == 0
    assert [line for line in log if line.startswith("stopped")] == [
        "stopped probe",
        "stopped engine",
        "stopped api",
    ]


async def test_a_role_that_ignores_stop_is_cancelled_after_the_grace_period():
    class Stubborn:
        cancelled = started = False

        async def serve(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
            Stubborn.started = True
            ready.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                Stubborn.cancelled = True
                raise

    stop = asyncio.Event()
    runner = asyncio.create_task(Supervisor([("probe", Stubborn())], grace_s=0.05).run(stop))
    await until(lambda: Stubborn.started)
    stop.set()
    assert await asyncio.wait_for(runner, 2) == 0
    assert Stubborn.cancelled


async def test_when_every_role_finishes_its_work_the_process_ends():
    class OneShot:
        async def serve(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
            await asyncio.sleep(0.01)  # done without ever saying ready: nothing waits on it

    assert await asyncio.wait_for(Supervisor([("probe", OneShot())]).run(asyncio.Event()), 2) == 0


async def test_cancelling_the_supervisor_cancels_every_role_before_it_returns():
    log: list[str] = []

    class Slow:
        async def serve(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
            log.append("role started")
            ready.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                log.append("role cancelled")
                raise

    runner = asyncio.create_task(
        Supervisor([("engine", Slow()), ("api", Slow())], grace_s=60).run(asyncio.Event())
    )
    await until(lambda: log.count("role started") == 2)
    runner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert log.count("role cancelled") == 2


class PortTaker:
    """A role that listens on a port some other socket already holds (a permanent fault)."""

    def __init__(self, port: int) -> None:
        self.port, self.starts = port, 0

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        self.starts += 1
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", self.port)
        server.close()


class Raiser:
    def __init__(self, errors: list[Exception]) -> None:
        self.errors, self.starts = errors, 0

    async def serve(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
        self.starts += 1
        if self.errors:
            raise self.errors.pop(0)
        ready.set()
        await stop.wait()


async def test_a_taken_port_ends_the_process_with_one_line_not_five_restarts(caplog):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taker = PortTaker(holder.getsockname()[1])
        steady = Recorder("engine", [])
        supervisor = Supervisor([("api", taker), ("engine", steady)], policy=FAST, grace_s=1)
        code = await asyncio.wait_for(supervisor.run(asyncio.Event()), 5)
    assert code == 1 and taker.starts == 1
    assert "Traceback" not in caplog.text and "Restarting" not in caplog.text
    assert len([r for r in caplog.records if "cannot run" in r.getMessage()]) == 1


async def test_a_config_error_inside_a_role_is_final_with_exit_2(caplog):
    from netspectra.errors import ConfigError, PermanentError

    for error, expected in ((ConfigError("api.store: no store"), 2), (PermanentError("gone"), 1)):
        role = Raiser([error])
        supervisor = Supervisor([("api", role)], policy=FAST, grace_s=1)
        assert await asyncio.wait_for(supervisor.run(asyncio.Event()), 5) == expected
        assert role.starts == 1 and supervisor.failure and str(error) in supervisor.failure
    assert "Traceback" not in caplog.text


async def test_a_bus_that_is_down_is_retried_without_counting_as_crashes(caplog):
    from netspectra.errors import BusError, StorageError

    # more unavailable faults than the policy allows crashes: still retried, then it serves
    role = Raiser([BusError("cannot connect to NATS"), StorageError("store down")] * 3)
    stop = asyncio.Event()
    supervisor = Supervisor([("engine", role)], policy=FAST, grace_s=1)
    runner = asyncio.create_task(supervisor.run(stop))
    await until(lambda: role.starts == 7)
    stop.set()
    assert await runner == 0 and role.starts == 7
    assert "Traceback" not in caplog.text
    assert len([r for r in caplog.records if "waits: cannot connect to NATS" in r.getMessage()]) == 3


async def test_roles_start_consumers_first_each_after_the_previous_is_ready():
    log: list[str] = []
    roles = [(name, Recorder(name, log)) for name in ("probe", "engine", "api")]
    stop = asyncio.Event()
    runner = asyncio.create_task(Supervisor(roles, policy=FAST, grace_s=1).run(stop))
    probe = roles[0][1]
    while probe.starts == 0 or "ready probe" not in log:
        await asyncio.sleep(0.001)
    stop.set()
    assert await runner == 0
    assert log[:6] == [
        "start api",
        "ready api",
        "start engine",
        "ready engine",
        "start probe",
        "ready probe",
    ]
    assert [line for line in log if line.startswith("stopped")] == [
        "stopped probe",
        "stopped engine",
        "stopped api",
    ]


async def test_a_role_restarted_before_ready_still_holds_back_its_producers():
    log: list[str] = []
    roles = [("probe", Recorder("probe", log)), ("engine", Recorder("engine", log, crash_times=2))]
    stop = asyncio.Event()
    runner = asyncio.create_task(Supervisor(roles, policy=FAST, grace_s=1).run(stop))
    while "ready probe" not in log:
        await asyncio.sleep(0.001)
    stop.set()
    assert await runner == 0
    assert log.index("start probe") > log.index("ready engine") > log.index("start engine")
    assert log.count("start engine") == 3


async def test_a_role_never_ready_ends_the_start_with_a_clear_reason_and_starts_no_producer():
    log: list[str] = []

    class Deaf:
        async def serve(self, stop: asyncio.Event, ready: asyncio.Event) -> None:
            log.append("start engine")
            await stop.wait()
            log.append("stopped engine")

    roles = [("probe", Recorder("probe", log)), ("engine", Deaf())]
    supervisor = Supervisor(roles, policy=FAST, grace_s=1, ready_timeout_s=0.05)
    assert await asyncio.wait_for(supervisor.run(asyncio.Event()), 5) == 1
    assert supervisor.failure and "role engine was not ready within" in supervisor.failure
    assert log == ["start engine", "stopped engine"]  # the probe was never started


async def test_real_roles_on_the_embedded_bus_lose_nothing_to_start_order(tmp_path):
    """Probe, engine role and engine on one embedded bus: every packet of the file is counted.

    Started all at once, the probe's first publishes could precede the engine's subscriptions
    and vanish (the bus counts them as no_subscriber); started consumers first, none can.
    """
    from netspectra.bus.embedded import EmbeddedBus
    from netspectra.config.models import ExactTaskConfig, Settings, WriterConfig
    from netspectra.engine.engine import Engine
    from netspectra.engine.exact import ExactGroup
    from netspectra.engine.role import EngineRole
    from netspectra.model.fields import KeyField
    from netspectra.probe.role import ProbeRole
    from netspectra.synth import TrafficSpec, write_trace
    from tests.unit.engine.test_engine_schedule import RecordingWriter

    pcap = tmp_path / "t.pcap"
    truth = write_trace(pcap, TrafficSpec(packets=3000, flows=40))
    settings = Settings.model_validate(
        {
            "probe": {"source": "file", "pcap": str(pcap)},
            "engine": {"flush_interval": 0.02, "stats_interval": 60},
        }
    )
    bus = EmbeddedBus()
    engine = Engine(
        {"exact": ExactGroup([ExactTaskConfig(name="t", key_fields=(KeyField.SRC_IP,))])},
        {"exact": [(WriterConfig(type="file", snapshot_interval=3600), RecordingWriter())]},
        kernel_threads=1,
    )
    engine_role = EngineRole(settings, bus, engine)
    probe_role = ProbeRole(settings, bus, probe_id="p")
    supervisor = Supervisor([("probe", probe_role), ("engine", engine_role)], policy=FAST, grace_s=10)
    stop = asyncio.Event()
    runner = asyncio.create_task(supervisor.run(stop))
    while engine_role.stats.published != len(truth.packets) or engine_role.stats.gap != 0:
        assert not runner.done(), supervisor.failure
        await asyncio.sleep(0.01)
    stop.set()
    assert await runner == 0
    await bus.close()
    assert bus.stats.no_subscriber == 0
    assert engine_role.stats.packets == len(truth.packets)


async def test_a_role_waiting_for_a_service_that_is_down_is_not_hung_and_holds_back_its_producers():
    """Past the ready timeout, a role that keeps saying "NATS is down" is waited for, not failed."""
    from netspectra.errors import BusError

    log: list[str] = []
    engine = Raiser([BusError("cannot connect to NATS")] * 4)
    roles = [("probe", Recorder("probe", log)), ("engine", engine)]
    fast_retry = RestartPolicy(max_failures=3, window_s=60, backoff_initial_s=0.03, backoff_max_s=0.03)
    supervisor = Supervisor(roles, policy=fast_retry, grace_s=1, ready_timeout_s=0.05)
    stop = asyncio.Event()
    runner = asyncio.create_task(supervisor.run(stop))
    while "ready probe" not in log:
        assert not runner.done(), supervisor.failure
        await asyncio.sleep(0.001)
    stop.set()
    assert await runner == 0
    assert engine.starts == 5 and supervisor.failure is None
