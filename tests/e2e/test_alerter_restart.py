"""An alert firing while the process restarts: one "firing" notification, one resolve.

Real processes and parts: nats-server, ``netspectra run --roles=engine,api`` (the console script
next to the interpreter, see tests/fixtures/tools.py: engine, embedded chdb store, the alerter
beside the api) stopped by pid with SIGTERM or SIGKILL while the alert fires and started again
with the same config and state directory, and an HTTP receiver in the test process that takes
the webhook. The planted event is the generator's flood toward one target (198.18.0.1),
published by the test on the bus the way a probe publishes it (``PacketBatch`` messages) and
paced by the wall clock, so it goes on while no engine listens and ends exactly when the test
ends it.

The truth is the test's own: when the flood began and ended. Every wait is on a condition (a
notification received, the alerter's saved state showing a later check); the flood is 50 times
the rule's threshold over a 10 s window, so a loaded machine delays checks but does not make the
condition fail (only a store lagging the engine by a whole window would).
"""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import nats
import numpy as np
import pytest

from netspectra.model.packets import PacketColumns
from netspectra.wire.codec import encode_packet_batch
from netspectra.wire.subjects import DEFAULT_SUBJECT, batch_subject
from tests.fixtures.http_receiver import serving
from tests.fixtures.nats import NatsServer
from tests.fixtures.processes import free_port
from tests.fixtures.tools import venv_tool
from tests.integration.alerting_helpers import ddos
from tests.integration.pipeline_helpers import NetspectraProcess

NETSPECTRA = venv_tool("netspectra")
RULE, TARGET = "flood", "DstIP=198.18.0.1"
FIELDS = ("src_ip", "dst_ip", "src_port", "dst_port", "protocol", "length", "ip_version")
CHECK, WINDOW = 1.0, 10.0
THRESHOLD, FLOOD_RATE = 20, 1000  # packets/s: the rule's bound, and what the test publishes


class Receiver(BaseHTTPRequestHandler):
    """Answers ``server.status``; records the notifications of every batch it accepted (200)."""

    server: Any

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        status = self.server.status
        with self.server.lock:
            if status == 200:
                self.server.accepted.extend(json.loads(body)["notifications"])
            else:
                self.server.refused += 1
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Any]:
    with serving(Receiver, accepted=[], refused=0, status=200, lock=threading.Lock()) as server:
        yield server


def ours(note: dict[str, Any], status: str) -> bool:
    return (note["rule"], note["key"], note["status"]) == (RULE, TARGET, status)


def received(receiver: Any, status: str) -> list[dict[str, Any]]:
    with receiver.lock:
        return [note for note in receiver.accepted if ours(note, status)]


def config(tmp_path: Path, nats_url: str, hook: str) -> dict[str, Any]:
    return {
        "probe": {"nats_url": nats_url},
        "engine": {"flush_interval": 0.02, "stats_interval": 1.0, "engine_id": "e1"},
        "aggregator": {
            "types": ["exact"],
            "exact": {
                "writers": [
                    {
                        "type": "embedded",
                        "snapshot_interval": 0.5,
                        "embedded": {"path": str(tmp_path / "store")},
                    }
                ],
                "tasks": [{"name": "per_dst_ip", "key_fields": ["DstIP"]}],
            },
        },
        "api": {
            "grpc_listen_addr": f"127.0.0.1:{free_port()}",
            "http_listen_addr": f"127.0.0.1:{free_port()}",
        },
        "alerter": {
            "enabled": True,
            "check_interval": CHECK,
            "state_dir": str(tmp_path / "alerts"),
            "retry_initial": 0.2,
            "retry_max": 1.0,
            "rules": [
                {
                    "name": RULE,
                    "task_name": "per_dst_ip",
                    "metric": "flow_packets",
                    "window": WINDOW,
                    "operator": ">",
                    "threshold": THRESHOLD,
                    "severity": "critical",
                }
            ],
            "channels": [{"type": "webhook", "name": "hook", "url": hook}],
        },
        "logging": {"format": "json", "level": "INFO"},
    }


def saved_state(tmp_path: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((tmp_path / "alerts" / "state.json").read_text()))
    except FileNotFoundError:
        return {}


def last_check(tmp_path: Path) -> float:
    """When the alerter last checked the rule, as it saved it (the state is written after each check)."""
    return float(saved_state(tmp_path).get("evaluator", {}).get("checked", {}).get(RULE, 0.0))


def judged_a_window_since(tmp_path: Path, moment: float) -> bool:
    """The saved rate samples of the flood's series, taken after ``moment`` (epoch s), grew over
    a whole window: the alerter has judged the flood on what the restarted engine stored."""
    series = saved_state(tmp_path).get("evaluator", {}).get("series", {}).get(f"{RULE}\x1f{TARGET}", {})
    after = [(t, v) for t, v in series.get("samples", []) if t > moment]
    return len(after) >= 2 and after[-1][0] - after[0][0] >= WINDOW and after[-1][1] > after[0][1]


def queued(tmp_path: Path) -> list[dict[str, Any]]:
    return list(saved_state(tmp_path).get("outbox", {}).get("hook", []))


class Flood:
    """The planted event: the generator's packets toward 198.18.0.1, published at FLOOD_RATE
    (paced on the wall clock: a slow loop publishes bigger batches, never a lower rate)."""

    def __init__(self, nats_url: str, packets: PacketColumns) -> None:
        self.url = nats_url
        self.packets = packets
        self.published = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Flood:
        self.client = await nats.connect(self.url)
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        began = time.monotonic()
        subject = batch_subject(DEFAULT_SUBJECT)
        while not self._stop.is_set():
            due = min(int((time.monotonic() - began) * FLOOD_RATE) - self.published, 5000)
            if due > 0:  # at most 5000 a message (NATS's 1 MB limit); the rest at the next turn
                picked = np.arange(self.published, self.published + due) % len(self.packets)
                now_ns = time.time_ns()
                batch = PacketColumns(
                    np.full(due, now_ns, dtype=self.packets.ts_ns.dtype),
                    *(np.ascontiguousarray(getattr(self.packets, f)[picked]) for f in FIELDS),
                )
                await self.client.publish(subject, encode_packet_batch(batch))
                self.published += due
            await asyncio.sleep(0.05)

    async def end(self) -> None:
        """The event ends here: nothing more toward the target."""
        self._stop.set()
        if self._task is not None:
            await self._task
        await self.client.flush()

    async def __aexit__(self, *exc: object) -> None:
        await self.end()
        await self.client.close()


async def until(condition: Any, what: str, process: NetspectraProcess, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.process.poll() is not None:
            code = process.process.returncode
            raise AssertionError(f"{process.name} exited ({code}) before {what}:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout} s\n{process.tail()}")
        await asyncio.sleep(0.05)


def start(tmp_path: Path, name: str, document: dict[str, Any]) -> NetspectraProcess:
    process = NetspectraProcess(tmp_path, name, document, "--roles=engine,api", program=[NETSPECTRA])
    process.wait_for_message("Engine subscribed to", timeout=120)
    process.wait_for_message("Started alerter", timeout=120)
    return process


async def checks_after(tmp_path: Path, process: NetspectraProcess, moment: float, checks: int) -> None:
    """Until the alerter has checked the rule ``checks`` intervals after ``moment`` (epoch s)."""
    await until(lambda: last_check(tmp_path) >= moment + checks * CHECK, f"{checks} checks", process)


def flood_packets(tmp_path: Path) -> PacketColumns:
    """The generator's flood (1000 sources → 198.18.0.1); its encoder compiled before any process
    starts, so the flood begins as soon as the test starts it."""
    packets = ddos(tmp_path, 0.0, 1.0, 1000)
    encode_packet_batch(packets)
    return packets


def stop(process: NetspectraProcess, how: signal.Signals) -> None:
    if how is signal.SIGKILL:
        process.kill()
    else:
        assert process.stop(60) == 0, process.tail()


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
async def test_a_restart_while_an_alert_fires_notifies_firing_once_and_still_resolves(
    how: signal.Signals, nats_server: NatsServer, receiver: Any, tmp_path: Path
) -> None:
    document = config(tmp_path, nats_server.url, f"http://127.0.0.1:{receiver.server_address[1]}/hook")
    packets = flood_packets(tmp_path)
    first = start(tmp_path, "first", document)
    second: NetspectraProcess | None = None
    try:
        async with Flood(nats_server.url, packets) as flood:
            await until(lambda: received(receiver, "firing"), "the firing notification", first)
            # delivered and recorded as delivered: the queue the alerter saved is empty
            await until(lambda: not queued(tmp_path), "the delivery saved", first)
            stop(first, how)  # the flood goes on: the condition still holds
            restarted = time.time()
            second = start(tmp_path, "second", document)
            restored = "Alert state restored: 1 active alert(s)"
            assert any(restored in m for m in second.messages()), second.tail()
            # a whole window judged on what the restarted engine stored: the condition seen holding
            await until(lambda: judged_a_window_since(tmp_path, restarted), "a window judged", second)
            assert len(received(receiver, "firing")) == 1, receiver.accepted
            assert received(receiver, "resolved") == [], receiver.accepted
            await flood.end()
            ended = time.time()
            await until(lambda: received(receiver, "resolved"), "the resolved notification", second)
            await checks_after(tmp_path, second, time.time(), 3)
        firing, resolved = received(receiver, "firing"), received(receiver, "resolved")
        assert len(firing) == 1, receiver.accepted
        assert len(resolved) == 1, receiver.accepted
        assert firing[0]["alert_id"] == resolved[0]["alert_id"]  # the same alert, across the restart
        assert resolved[0]["at"] > ended
        assert second.stop(60) == 0, second.tail()
    finally:
        first.kill()
        if second is not None:
            second.kill()


async def test_a_notification_queued_before_a_sigkill_is_delivered_once_after_the_restart(
    nats_server: NatsServer, receiver: Any, tmp_path: Path
) -> None:
    """The receiver refuses: the firing notification waits in the outbox (saved with the check that
    made it) when the process is killed; the restarted alerter delivers it, once."""
    document = config(tmp_path, nats_server.url, f"http://127.0.0.1:{receiver.server_address[1]}/hook")
    packets = flood_packets(tmp_path)
    receiver.status = 503
    first = start(tmp_path, "first", document)
    second: NetspectraProcess | None = None
    try:
        async with Flood(nats_server.url, packets):

            def waiting() -> bool:
                return any(ours(note, "firing") for note in queued(tmp_path)) and receiver.refused > 0

            await until(waiting, "the firing notification queued and refused", first)
            first.kill()
            receiver.status = 200
            restarted = time.time()
            second = start(tmp_path, "second", document)
            await until(lambda: received(receiver, "firing"), "the queued notification delivered", second)
            await until(lambda: judged_a_window_since(tmp_path, restarted), "a window judged", second)
            await until(lambda: not queued(tmp_path), "the delivery saved", second)
            firing = received(receiver, "firing")
            assert len(firing) == 1, receiver.accepted
            assert receiver.accepted == firing  # nothing else: no resolve while the flood goes on
        assert second.stop(60) == 0, second.tail()
    finally:
        first.kill()
        if second is not None:
            second.kill()
