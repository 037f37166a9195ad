"""Supervision: restart with backoff, give up after N quick failures, stop in data order."""

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

    async def serve(self, stop: asyncio.Event) -> None:
        self.starts += 1
        self.log.append(f"start {self.name}")
        if self.starts <= self.crash_times:
            raise RuntimeError(f"{self.name} boom {self.starts}")
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
    await until(lambda: sum(line.startswith("start ") for line in log) == 3)
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

        async def serve(self, stop: asyncio.Event) -> None:
            Stubborn.started = True
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
        async def serve(self, stop: asyncio.Event) -> None:
            await asyncio.sleep(0.01)

    assert await asyncio.wait_for(Supervisor([("probe", OneShot())]).run(asyncio.Event()), 2) == 0


async def test_cancelling_the_supervisor_cancels_every_role_before_it_returns():
    log: list[str] = []

    class Slow:
        async def serve(self, stop: asyncio.Event) -> None:
            log.append("role started")
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

    async def serve(self, stop: asyncio.Event) -> None:
        self.starts += 1
        server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", self.port)
        server.close()


class Raiser:
    def __init__(self, errors: list[Exception]) -> None:
        self.errors, self.starts = errors, 0

    async def serve(self, stop: asyncio.Event) -> None:
        self.starts += 1
        if self.errors:
            raise self.errors.pop(0)
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
