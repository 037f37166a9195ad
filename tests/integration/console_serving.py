"""Shared by the console tests: an api role (with telemetry) over a store filled from generated packets.

The packets and their brute-force truth are api_truth's (two cumulative snapshots, T0 and T1, of
three exact and two sketch tasks); the console only ever sees what the writers stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netspectra.api.role import ApiRole
from netspectra.config.models import Settings
from netspectra.model.fields import KeyField
from netspectra.storage.context import StorageContext
from netspectra.storage.registry import build_writer
from netspectra.telemetry import Telemetry
from tests.integration.api_serving import store_writer
from tests.integration.api_truth import EXACT_TASKS, SKETCH_TASKS, Packet, flows_of, make_packets, snapshots

PACKETS = make_packets()


def console_settings(writer: dict[str, Any], **api: Any) -> Settings:
    return Settings.model_validate(
        {
            "aggregator": {
                "exact": {
                    "writers": [writer],
                    "tasks": [
                        {"name": n, "key_fields": [f.value for f in fs]} for n, fs in EXACT_TASKS.items()
                    ],
                },
                "sketch": {
                    "writers": [writer],
                    "tasks": [
                        {"name": n, "algorithm": a, "flow_fields": ["SrcIP"], "element_fields": ["DstIP"]}
                        for n, a in SKETCH_TASKS.items()
                    ],
                },
            },
            "api": {"grpc_listen_addr": "127.0.0.1:0", "http_listen_addr": "127.0.0.1:0", **api},
        }
    )


@dataclass
class Console:
    role: ApiRole
    telemetry: Telemetry

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.role.http_port}"

    def post(self, name: str, body: dict[str, Any], **headers: str) -> tuple[int, Any]:
        """A blocking POST /api/v1/<name> (run it in a thread: the server shares this loop)."""
        request = urllib.request.Request(
            f"{self.url}/api/v1/{name}",
            json.dumps(body).encode(),
            {"Content-Type": "application/json", **headers},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        request = urllib.request.Request(f"{self.url}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                return answer.status, dict(answer.headers), answer.read()
        except urllib.error.HTTPError as error:
            return error.code, dict(error.headers), error.read()


@contextlib.asynccontextmanager
async def console(
    kind: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
    *,
    fill: bool = True,
    alerter: Any = None,
    **api: Any,
) -> AsyncIterator[Console]:
    """The api role over a ``kind`` store holding both snapshots (nothing when ``fill`` is False);
    ``alerter``: the alerter whose alerts it lists."""
    settings = console_settings(store_writer(kind, tmp_path, request), **api)
    context = StorageContext(engine_id="e1")
    writers = [
        build_writer(settings.aggregator.exact.writers[0], "exact", context),
        build_writer(settings.aggregator.sketch.writers[0], "sketch", context),
    ]
    if fill:
        exact0, exact1, sketch0, sketch1 = snapshots(PACKETS)
        for snapshot in (exact0, exact1):
            await writers[0].write(snapshot)
        for snapshot in (sketch0, sketch1):
            await writers[1].write(snapshot)
        for writer in writers:
            await writer.flush(60)  # type: ignore[attr-defined]
    telemetry = Telemetry()
    role = ApiRole(settings, context, telemetry=telemetry, alerter=alerter)
    stop = asyncio.Event()
    serving = asyncio.create_task(role.serve(stop))
    try:
        await asyncio.wait_for(role.ready.wait(), 60)
        yield Console(role, telemetry)
    finally:
        stop.set()
        await serving
        for writer in writers:
            await writer.close()
        await context.close()


def top_truth(
    packets: list[Packet], task: str, *, limit: int = 20, by: str = "packets", keep: Any = lambda p: True
) -> list[tuple[Any, ...]]:
    """(key values..., packets, bytes) of the largest flows, ordered as the console orders them."""
    fields: tuple[KeyField, ...] = EXACT_TASKS[task]
    flows = flows_of([p for p in packets if keep(p)], fields)
    column = 0 if by == "packets" else 1
    ordered = sorted(flows.items(), key=lambda item: (-item[1][column], *item[0]))
    return [(*key, entry[0], entry[1]) for key, entry in ordered[:limit]]
