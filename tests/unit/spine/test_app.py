"""The composition root picks each role's bus from that role's own settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from netspectra.app import Application, parse_roles
from netspectra.config.models import Settings
from netspectra.errors import ConfigError


@pytest.fixture
def trace(tmp_path: Path) -> str:
    """A capture file that exists: building the roles checks the settings as `run` does."""
    path = tmp_path / "trace.pcap"
    path.write_bytes(b"")
    return str(path)


def _settings(pcap: str, **engine: str) -> Settings:
    return Settings.model_validate(
        {
            "probe": {"nats_url": "nats://probe-side:4222", "source": "file", "pcap": pcap},
            "engine": engine,
            "aggregator": {"types": ["exact"], "exact": {"tasks": [{"name": "t", "key_fields": ["SrcIP"]}]}},
        }
    )


def test_a_probe_only_process_publishes_where_the_probe_section_says(trace: str):
    application = Application(_settings(trace, nats_url="nats://engine-side:4222"), ["probe"])
    application.build()
    assert [bus.url for bus in application.buses] == ["nats://probe-side:4222"]


def test_probe_and_engine_share_one_bus_unless_the_engine_overrides_it(trace: str):
    shared = Application(_settings(trace), ["probe", "engine"])
    shared.build()
    assert [bus.url for bus in shared.buses] == ["nats://probe-side:4222"]
    split = Application(_settings(trace, nats_url="nats://engine-side:4222"), ["probe", "engine"])
    split.build()
    assert [bus.url for bus in split.buses] == ["nats://probe-side:4222", "nats://engine-side:4222"]


def test_an_embedded_probe_needs_an_engine_on_the_same_embedded_bus():
    settings = Settings.model_validate({"probe": {"source": "file", "pcap": "trace.pcap"}})
    with pytest.raises(ConfigError, match="in-process bus"):
        Application(settings, ["probe"]).build()


@pytest.mark.parametrize(("text", "roles"), [("api,engine", ("engine", "api")), ("probe", ("probe",))])
def test_roles_are_ordered_by_the_data_path(text, roles):
    assert parse_roles(text) == roles


@pytest.mark.parametrize("text", ["", "engine,ingest", "Probe"])
def test_unknown_roles_are_named(text):
    with pytest.raises(ConfigError, match="choose from probe, engine, api"):
        parse_roles(text)
