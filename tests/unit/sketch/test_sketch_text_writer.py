"""The text writer's files, parsed back and compared with the snapshot they came from."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from netspectra.config.models import WriterConfig
from netspectra.errors import ConfigError
from netspectra.model.snapshot import HeavyHitter, HitterKind, SketchResult, Snapshot
from netspectra.storage.text_writer import TextWriter

TAKEN_AT_NS = 1_700_000_000 * 10**9


def parse(path: Path) -> list[tuple[str, int]]:
    lines = path.read_text().splitlines()
    return [(line.rsplit(" ", 1)[0], int(line.rsplit(" ", 1)[1])) for line in lines]


async def test_writes_go_layout(tmp_path: Path) -> None:
    config = WriterConfig.model_validate({"type": "text", "text": {"root_path": str(tmp_path)}})
    writer = TextWriter.from_config(config, group="sketch", context=None)
    count = [
        HeavyHitter("10.0.0.1 443", 50, HitterKind.COUNT),
        HeavyHitter("10.0.0.2 80", 900, HitterKind.COUNT),
    ]
    size = [HeavyHitter("10.0.0.2 80", 123456, HitterKind.SIZE)]
    spread = [
        HeavyHitter("2001:db8::1", 7, HitterKind.SPREAD),
        HeavyHitter("192.0.2.1", 4000, HitterKind.SPREAD),
    ]
    snapshot = Snapshot(
        group="sketch",
        taken_at_ns=TAKEN_AT_NS,
        period_start_ns=0,
        sketches=(
            SketchResult("cm_all", "count_min", tuple(count + size)),
            SketchResult("ss_dst", "super_spread", tuple(spread)),
            SketchResult("cm_empty", "count_min", ()),
        ),
    )
    await writer.write(snapshot)
    await writer.close()
    directory = tmp_path / time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(1_700_000_000))
    assert sorted(p.name for p in directory.iterdir()) == ["cm_all", "cm_empty", "ss_dst"]
    assert parse(directory / "cm_all" / "count_hh.txt") == [("10.0.0.2 80", 900), ("10.0.0.1 443", 50)]
    assert parse(directory / "cm_all" / "size_hh.txt") == [("10.0.0.2 80", 123456)]
    assert parse(directory / "ss_dst" / "spread_ss.txt") == [("192.0.2.1", 4000), ("2001:db8::1", 7)]
    assert (directory / "cm_empty" / "count_hh.txt").read_text() == ""
    assert sorted(p.name for p in (directory / "cm_all").iterdir()) == ["count_hh.txt", "size_hh.txt"]


def test_refuses_exact_group(tmp_path: Path) -> None:
    config = WriterConfig.model_validate({"type": "text", "text": {"root_path": str(tmp_path)}})
    with pytest.raises(ConfigError, match="sketch heavy hitters only"):
        TextWriter.from_config(config, group="exact", context=None)
