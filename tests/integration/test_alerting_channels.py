"""Every channel against a real receiver: aiosmtpd (STARTTLS + AUTH) gets Go's email for Go's
rules from Go's head config, an HTTP server checks the webhook's HMAC, Slack's shape is checked
by a receiver, and Debian's prometheus-alertmanager lists the alert through its own API."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from netspectra.alerting.alerter import Alerter
from netspectra.alerting.channels import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertmanagerChannel,
    SlackChannel,
    WebhookChannel,
)
from netspectra.config.loader import load_settings
from netspectra.config.models import AlerterConfig, ChannelConfig
from tests.fixtures.clickhouse import free_port
from tests.fixtures.http_receiver import serving
from tests.integration.alerting_helpers import TraceRig, base_traffic, concat, scan
from tests.integration.test_api_cli import self_signed
from tests.unit.alerting.fakes import ManualClock, ScriptedReader

#: Go2NetSpectra's current config.yaml, byte for byte (its alerter:, smtp: and ai: sections)
HEAD_CONFIG = Path(__file__).resolve().parents[1] / "data" / "go2netspectra-config-head.yaml"


class Inbox:
    """aiosmtpd's handler: keeps every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.envelopes: list[tuple[str, list[str]]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos)))
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 OK"


def authenticator(user: str, password: str) -> Any:
    def check(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            user.encode(),
            password.encode(),
        )
        return AuthResult(success=ok)

    return check


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[Inbox, int, Path]]:
    cert, key = self_signed(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    inbox = Inbox()
    port = free_port()
    controller = Controller(
        inbox,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator("ns-user", "ns-pass"),
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield inbox, port, cert
    finally:
        controller.stop()


async def test_go_rules_from_go_head_config_mail_go_summary_over_starttls(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    smtp_server: tuple[Inbox, int, Path],
    clickhouse_server: Any,
    clickhouse_database: str,
) -> None:
    inbox, port, cert = smtp_server
    monkeypatch.chdir(tmp_path)  # Go's file names relative directories (the alert state, spools)
    environ = {
        "API_RPC_LISTEN_ADDR": "127.0.0.1:0",
        "API_HTTP_LISTEN_ADDR": "127.0.0.1:0",
        "AI_API_KEY": "unused",
        "AI_RPC_LISTEN_ADDR": "127.0.0.1:0",
        "ALERTER_AI_SERVICE_ADDR": "127.0.0.1:0",
        "NATS_URL": "nats://127.0.0.1:4222",
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_USER": "ns-user",
        "SMTP_FROM": "netspectra@example.org",
        "SMTP_TO": "noc@example.org, oncall@example.org",
        "CLICKHOUSE_HOST": clickhouse_server.host,
        "CLICKHOUSE_PORT": str(clickhouse_server.tcp_port),
        "CLICKHOUSE_DB": clickhouse_database,
        "CLICKHOUSE_USERNAME": "default",
        "CLICKHOUSE_PASSWORD": "",
        "NETSPECTRA_SMTP_PASSWORD": "ns-pass",  # the password from the environment
    }
    settings = load_settings(HEAD_CONFIG, environ)
    assert settings.smtp is not None and settings.smtp.password.get_secret_value() == "ns-pass"
    assert settings.smtp.to == ("noc@example.org", "oncall@example.org")
    assert settings.alerter.check_interval == 600 and settings.alerter.ai_analysis.enabled
    # our one addition: trust the test server's self-signed certificate
    settings = settings.model_copy(update={"smtp": settings.smtp.model_copy(update={"tls_ca": str(cert)})})
    packets = concat([base_traffic(tmp_path, seconds=180), scan(tmp_path, 70.0, 2.5, 6000)])
    async with TraceRig(settings) as rig:
        stop = asyncio.Event()
        delivery = asyncio.create_task(rig.alerter.deliver(stop))
        try:
            made = await rig.run(packets, 180.0, 60.0)  # Go's writers snapshot every 60 s
            await rig.alerter.wait_delivered(60)
        finally:
            stop.set()
            await delivery
    fired = {(note.rule, note.key) for _, note in made if note.status == "firing"}
    rules = {rule for rule, _ in fired}
    assert rules == {"Potential_DDoS_Source_Detected", "Potential_Nmap_Scan_Detected", "Total_Traffic_Spike"}
    assert ("Potential_DDoS_Source_Detected", "198.18.0.1") in fired  # the scanning source
    assert ("Potential_Nmap_Scan_Detected", "198.18.0.1") in fired
    assert [at for at, note in made if note.rule == "Total_Traffic_Spike"] == [60.0]
    assert inbox.envelopes and all(
        env == ("netspectra@example.org", ["noc@example.org", "oncall@example.org"])
        for env in inbox.envelopes
    )
    first = inbox.messages[0]
    assert "Total_Traffic_Spike" in first["Subject"]
    html = "".join(
        part.get_content() for message in inbox.messages for part in message.walk()
        if part.get_content_type() == "text/html"
    )  # fmt: skip
    for rule in rules:
        assert rule in html
    assert "198.18.0.1" in html
    assert len(inbox.messages) == len({at for at, _ in made})  # one summary per check that had news


class Receiver(BaseHTTPRequestHandler):
    """Records every POST; answers ``status`` (the test changes it)."""

    server: Any

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.posts.append((self.path, self.headers, body))  # header names: any case
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Any]:
    with serving(Receiver, posts=[], status=200) as server:
        yield server


def alerter_for(tmp_path: Path, channels: list[Any], clock: ManualClock, reader: ScriptedReader) -> Alerter:
    config = AlerterConfig.model_validate(
        {
            "enabled": True,
            "check_interval": "10s",
            "state_dir": str(tmp_path / "alerts"),
            "rules": [
                {
                    "name": "syn_flood",
                    "task_name": "per_dst_ip",
                    "metric": "flow_packets",
                    "threshold": 1000,
                    "severity": "critical",
                    "labels": {"team": "noc"},
                }
            ],
        }
    )
    return Alerter(config, reader, channels, clock=clock, sleep=clock.sleep)


async def test_the_webhook_is_signed_and_slack_gets_its_text(tmp_path: Path, receiver: Any) -> None:
    url = f"http://127.0.0.1:{receiver.server_address[1]}"
    hook = WebhookChannel(ChannelConfig(type="webhook", url=url + "/hook", secret="hmac-key"))  # type: ignore[arg-type]
    slack = SlackChannel(ChannelConfig(type="slack", url=url + "/slack"))
    clock, reader = ManualClock(), ScriptedReader()
    alerter = alerter_for(tmp_path, [hook, slack], clock, reader)
    stop = asyncio.Event()
    delivery = asyncio.create_task(alerter.deliver(stop))
    try:
        reader.values["syn_flood"] = {"DstIP=10.9.9.9": 5000}
        await alerter.check()
        clock.now += 10
        reader.values["syn_flood"] = {}
        await alerter.check()
        await alerter.wait_delivered(30)
    finally:
        stop.set()
        await delivery
    hooks = [(h, b) for path, h, b in receiver.posts if path == "/hook"]
    slacks = [json.loads(b) for path, _, b in receiver.posts if path == "/slack"]
    assert hooks  # one POST per batch: both notifications may travel in one
    for headers, body in hooks:
        stamp = headers[TIMESTAMP_HEADER]
        expected = "sha256=" + hmac.new(b"hmac-key", stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers[SIGNATURE_HEADER], expected)
        assert abs(int(stamp) - time.time()) < 600
    notes = [note for _, body in hooks for note in json.loads(body)["notifications"]]
    assert [(n["status"], n["key"], n["severity"], n["labels"]) for n in notes] == [
        ("firing", "DstIP=10.9.9.9", "critical", {"team": "noc"}),
        ("resolved", "DstIP=10.9.9.9", "critical", {"team": "noc"}),
    ]
    assert notes[0]["alert_id"] == notes[1]["alert_id"] and notes[0]["id"] != notes[1]["id"]
    lines = [line for message in slacks for line in message["text"].splitlines()]
    assert [line.split("]")[0] for line in lines] == ["[FIRING", "[RESOLVED"]
    assert "syn_flood (per_dst_ip, DstIP=10.9.9.9)" in lines[0]


def alertmanager_binary() -> str:
    found = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if found is None:
        pytest.skip("prometheus-alertmanager is not installed (scripts/dev test installs it)")
    return found


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = alertmanager_binary()
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: nobody\nreceivers:\n  - name: nobody\n")
    port, cluster = free_port(), free_port()
    log = open(tmp_path / "alertmanager.log", "wb")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am-data'}",
         f"--web.listen-address=127.0.0.1:{port}", f"--cluster.listen-address=127.0.0.1:{cluster}"],
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"alertmanager did not start: {(tmp_path / 'alertmanager.log').read_text()}"
                )
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def listed(url: str, active: bool) -> list[dict[str, Any]]:
    query = "?active=true&silenced=false&inhibited=false" if active else ""
    with urllib.request.urlopen(url + "/api/v2/alerts" + query, timeout=10) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


async def test_alertmanager_lists_the_alert_and_takes_its_resolve(tmp_path: Path, alertmanager: str) -> None:
    channel = AlertmanagerChannel(ChannelConfig(type="alertmanager", url=alertmanager))
    clock, reader = ManualClock(time.time() - 120), ScriptedReader()  # the resolve lands at real now
    alerter = alerter_for(tmp_path, [channel], clock, reader)
    stop = asyncio.Event()
    delivery = asyncio.create_task(alerter.deliver(stop))
    try:
        reader.values["syn_flood"] = {"DstIP=10.9.9.9": 5000}
        await alerter.check()
        await alerter.wait_delivered(30)
        alerts = listed(alertmanager, active=True)
        assert [(a["labels"]["alertname"], a["labels"]["flow"], a["labels"]["team"]) for a in alerts] == [
            ("syn_flood", "DstIP=10.9.9.9", "noc")
        ]
        assert alerts[0]["labels"]["severity"] == "critical" and alerts[0]["status"]["state"] == "active"
        ends = datetime.fromisoformat(alerts[0]["endsAt"].replace("Z", "+00:00")).timestamp()
        assert abs(ends - (clock.now + 240)) < 1  # valid for four refreshes
        clock.now += 61  # still firing a minute later: re-sent, valid for longer
        assert await alerter.check() == []
        await alerter.wait_delivered(30)
        (again,) = listed(alertmanager, active=True)
        assert datetime.fromisoformat(again["endsAt"].replace("Z", "+00:00")).timestamp() >= ends + 60
        clock.now = time.time()
        reader.values["syn_flood"] = {}
        await alerter.check()
        await alerter.wait_delivered(30)
    finally:
        stop.set()
        await delivery
    # resolved: endsAt is now, so Alertmanager no longer lists it as active
    deadline = time.monotonic() + 30
    while listed(alertmanager, active=True) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert listed(alertmanager, active=True) == []
